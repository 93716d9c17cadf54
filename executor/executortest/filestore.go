package executortest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/executor"
)

// FileStore is a durable StateStore for tests: each first save of a key is
// appended to a file as one JSON line and synced before SaveResult returns,
// so a process killed at any moment loses nothing that was saved. It counts
// every SaveResult call, including idempotent repeats, so crash tests can
// report them. It is not meant for production (it reads the whole file at
// open and keeps everything in memory).
type FileStore struct {
	path string

	mu      sync.Mutex
	f       *os.File
	results map[kubexec.TaskKey]kubexec.Result
	order   []kubexec.TaskKey
	repeats int
}

var _ executor.StateStore = (*FileStore)(nil)

// OpenFileStore opens (or creates) the store at path. A torn last line,
// from a process killed while writing it, is ignored: its save had not
// returned.
func OpenFileStore(path string) (*FileStore, error) {
	s := &FileStore{path: path, results: map[kubexec.TaskKey]kubexec.Result{}}
	if data, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(data)
		sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
		for sc.Scan() {
			var r kubexec.Result
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				continue // torn write
			}
			if _, ok := s.results[r.Key]; ok {
				continue
			}
			s.results[r.Key] = r
			s.order = append(s.order, r.Key)
		}
		data.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("executortest: read %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	// A torn line must not glue itself to the next record.
	if _, err := f.WriteString("\n"); err != nil {
		f.Close()
		return nil, err
	}
	s.f = f
	return s, nil
}

// SaveResult appends r and syncs, unless r.Key is already saved.
func (s *FileStore) SaveResult(ctx context.Context, r kubexec.Result) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.results[r.Key]; ok {
		s.repeats++
		return nil
	}
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := s.f.Write(append(line, '\n')); err != nil {
		return err
	}
	if err := s.f.Sync(); err != nil {
		return err
	}
	s.results[r.Key] = r
	s.order = append(s.order, r.Key)
	return nil
}

// LoadResult returns the saved result of key.
func (s *FileStore) LoadResult(ctx context.Context, key kubexec.TaskKey) (kubexec.Result, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.results[key]
	return r, ok, ctx.Err()
}

// Results returns the saved results in the order they were first saved.
func (s *FileStore) Results() []kubexec.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]kubexec.Result, 0, len(s.order))
	for _, k := range s.order {
		out = append(out, s.results[k])
	}
	return out
}

// Repeats returns how many SaveResult calls in this process found their
// key already saved.
func (s *FileStore) Repeats() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.repeats
}

// Close closes the file.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Close()
}
