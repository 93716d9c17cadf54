package executortest_test

import (
	"path/filepath"
	"testing"

	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/executor/executortest"
)

func TestMemoryStoreConformance(t *testing.T) {
	executortest.RunStateStoreConformance(t, func(t *testing.T) (executor.StateStore, func() executor.StateStore) {
		return executor.NewMemoryStore(), nil
	})
}

func TestFileStoreConformance(t *testing.T) {
	executortest.RunStateStoreConformance(t, func(t *testing.T) (executor.StateStore, func() executor.StateStore) {
		path := filepath.Join(t.TempDir(), "results.jsonl")
		s, err := executortest.OpenFileStore(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, func() executor.StateStore {
			again, err := executortest.OpenFileStore(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { again.Close() })
			return again
		}
	})
}
