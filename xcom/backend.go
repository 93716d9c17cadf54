package xcom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/atomicfile"
)

// Backend stores attempts' values: the host's storage (a database table,
// an object store). It returns a reference, which the executor keeps in
// Result.XComRef, and returns the value for a reference.
//
// Put is called from the executor's goroutines when an attempt has ended,
// Get from any goroutine (Pass, the host); calls overlap, also for the
// same key.
type Backend interface {
	// Put stores value (one JSON value) as key's, replacing any value
	// stored for key before, and returns a reference to it. Storing the
	// same key again must give a reference that still works.
	Put(ctx context.Context, key kubexec.TaskKey, value json.RawMessage) (ref string, err error)
	// Get returns the value that ref refers to, or an error wrapping
	// ErrNotFound.
	Get(ctx context.Context, ref string) (json.RawMessage, error)
}

// MemoryBackend is a Backend that keeps values in memory, for tests and
// examples. Its references look like "memory:<name>". The zero value is
// ready to use.
type MemoryBackend struct {
	mu     sync.RWMutex
	values map[string]json.RawMessage
}

var (
	_ Backend = (*MemoryBackend)(nil)
	_ Backend = (*FileBackend)(nil)
)

const (
	memoryPrefix = "memory:"
	filePrefix   = "file:"
)

// Put implements Backend.
func (b *MemoryBackend) Put(ctx context.Context, key kubexec.TaskKey, value json.RawMessage) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	name, err := kubexec.UniqueName(key)
	if err != nil {
		return "", err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.values == nil {
		b.values = map[string]json.RawMessage{}
	}
	b.values[name] = append(json.RawMessage(nil), value...)
	return memoryPrefix + name, nil
}

// Get implements Backend.
func (b *MemoryBackend) Get(ctx context.Context, ref string) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name, ok := strings.CutPrefix(ref, memoryPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a memory backend reference", ErrNotFound, ref)
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	v, ok := b.values[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, ref)
	}
	return append(json.RawMessage(nil), v...), nil
}

// FileBackend is a Backend that keeps each value as a JSON file in a
// folder. Its references look like "file:<name>.json", relative to the
// folder, so the folder can move. Files are written to a temporary file
// and renamed into place.
type FileBackend struct {
	dir string
}

// NewFileBackend returns a FileBackend that keeps values in dir, which is
// created if needed.
func NewFileBackend(dir string) (*FileBackend, error) {
	if dir == "" {
		return nil, errors.New("xcom: NewFileBackend: dir is empty: name the folder that keeps the values")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("xcom: NewFileBackend: %w", err)
	}
	return &FileBackend{dir: dir}, nil
}

// fileRef matches the names FileBackend makes, so that a reference cannot
// name a file outside its folder.
var fileRef = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*\.json$`)

// Put implements Backend.
func (b *FileBackend) Put(ctx context.Context, key kubexec.TaskKey, value json.RawMessage) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	name, err := kubexec.UniqueName(key)
	if err != nil {
		return "", err
	}
	name += ".json"
	if err := atomicfile.WriteFile(filepath.Join(b.dir, name), value); err != nil {
		return "", fmt.Errorf("xcom: store value: %w", err)
	}
	return filePrefix + name, nil
}

// Get implements Backend.
func (b *FileBackend) Get(ctx context.Context, ref string) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name, ok := strings.CutPrefix(ref, filePrefix)
	if !ok || !fileRef.MatchString(name) {
		return nil, fmt.Errorf("%w: %q is not a file backend reference", ErrNotFound, ref)
	}
	data, err := os.ReadFile(filepath.Join(b.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, ref)
	}
	if err != nil {
		return nil, fmt.Errorf("xcom: read value: %w", err)
	}
	return data, nil
}
