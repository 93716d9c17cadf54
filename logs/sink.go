package logs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/atomicfile"
)

// LogSink stores the archived logs of attempts: the host's storage (a
// folder, an object store, a database). kubexec owns the archive's format,
// its size cap and when it is written; a sink only stores and returns
// bytes, one archive per attempt.
//
// Create is called from the executor's goroutines when an attempt has
// ended, Open from any goroutine that reads logs; calls overlap, also for
// the same key. A reader that opens an archive while a new one of the same
// key is being written must get the old one or the new one, never a mix.
type LogSink interface {
	// Create starts a new archive of key's logs. ctx bounds the whole
	// archive, from Create to Commit or Abort. What is written is not
	// visible to Open until Commit, which replaces an earlier archive of
	// key as one step.
	Create(ctx context.Context, key kubexec.TaskKey) (SinkWriter, error)
	// Open returns the committed archive of key, or an error wrapping
	// ErrNotArchived when there is none.
	Open(ctx context.Context, key kubexec.TaskKey) (io.ReadCloser, error)
}

// SinkWriter is one archive being written. One goroutine uses it; after
// Commit or Abort it is not used again.
type SinkWriter interface {
	io.Writer
	// Commit makes the archive visible to Open, replacing any earlier
	// archive of the same key.
	Commit() error
	// Abort discards what was written; an earlier archive stays.
	Abort() error
}

// FileSink is a LogSink that keeps each archive as one file in a folder.
// Archives are written to a temporary file and renamed into place, so a
// crash never leaves a half-written archive visible.
type FileSink struct {
	dir string
}

var _ LogSink = (*FileSink)(nil)

// NewFileSink returns a FileSink that keeps archives in dir, which is
// created if needed.
func NewFileSink(dir string) (*FileSink, error) {
	if dir == "" {
		return nil, errors.New("logs: NewFileSink: dir is empty: name the folder that keeps the archives")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("logs: NewFileSink: %w", err)
	}
	return &FileSink{dir: dir}, nil
}

// Path returns the file that holds (or will hold) key's archive: the
// attempt's pod name followed by a hash of the whole key, in the sink's
// folder.
func (s *FileSink) Path(key kubexec.TaskKey) (string, error) {
	name, err := kubexec.UniqueName(key)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.dir, name+".log"), nil
}

// Create implements LogSink.
func (s *FileSink) Create(ctx context.Context, key kubexec.TaskKey) (SinkWriter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	path, err := s.Path(key)
	if err != nil {
		return nil, err
	}
	f, err := atomicfile.Create(path)
	if err != nil {
		return nil, fmt.Errorf("logs: create archive: %w", err)
	}
	return &fileWriter{f: f, path: path}, nil
}

// Open implements LogSink.
func (s *FileSink) Open(ctx context.Context, key kubexec.TaskKey) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	path, err := s.Path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no file %s", ErrNotArchived, path)
	}
	if err != nil {
		return nil, fmt.Errorf("logs: open archive: %w", err)
	}
	return f, nil
}

// fileWriter is a FileSink archive being written: it appears at its path
// whole, and durably, on Commit.
type fileWriter struct {
	f    *atomicfile.File
	path string
}

func (w *fileWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

func (w *fileWriter) Commit() error {
	if err := w.f.Commit(); err != nil {
		return fmt.Errorf("logs: commit archive %s: %w", w.path, err)
	}
	return nil
}

func (w *fileWriter) Abort() error { return w.f.Abort() }
