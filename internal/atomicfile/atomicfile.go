// Package atomicfile writes files that appear whole or not at all, and
// survive a crash once written: kubexec's one way to write a file (log
// archives, XCom values).
package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
)

// File is a file being written under a temporary name in its final folder.
// Commit makes it appear at its path, durably; Abort removes it. Exactly one
// of them takes effect.
type File struct {
	f    *os.File
	path string
	once sync.Once
}

// Create starts writing the file at path.
func Create(path string) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return nil, err
	}
	return &File{f: f, path: path}, nil
}

// Write writes p to the temporary file.
func (w *File) Write(p []byte) (int, error) { return w.f.Write(p) }

// Commit flushes the file to disk, renames it to its path and flushes the
// folder, so that the rename survives a crash too. On an error the
// temporary file is removed and nothing appears at the path.
func (w *File) Commit() error {
	err := errors.New("atomicfile: already committed or aborted")
	w.once.Do(func() {
		tmp := w.f.Name()
		err = w.f.Sync()
		if cerr := w.f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, w.path)
		}
		if err != nil {
			_ = os.Remove(tmp)
			return
		}
		if d, derr := os.Open(filepath.Dir(w.path)); derr == nil {
			err = d.Sync()
			_ = d.Close()
		}
	})
	return err
}

// Abort removes the temporary file; nothing appears at the path. It is a
// no-op after Commit.
func (w *File) Abort() error {
	w.once.Do(func() {
		_ = w.f.Close()
		_ = os.Remove(w.f.Name())
	})
	return nil
}

// WriteFile writes data to path atomically and durably.
func WriteFile(path string, data []byte) error {
	w, err := Create(path)
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		_ = w.Abort()
		return err
	}
	return w.Commit()
}
