package executortest_test

import (
	"testing"

	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/executor/executortest"
)

func TestMemoryStoreConformance(t *testing.T) {
	executortest.RunStateStoreConformance(t, func(t *testing.T) (executor.StateStore, func() executor.StateStore) {
		return executor.NewMemoryStore(), nil
	})
}
