// Package executortest helps hosts test their kubexec integration. Its
// conformance suite checks a StateStore implementation against the
// contract documented on executor.StateStore.
package executortest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/executor"
)

// StoreFactory returns a new, empty store for one subtest, and a function
// that reopens the same storage as a new store (as after a process
// restart), or nil when the store is not durable (like MemoryStore).
type StoreFactory func(t *testing.T) (store executor.StateStore, reopen func() executor.StateStore)

// RunStateStoreConformance runs the StateStore contract's tests against the
// stores that newStore makes. Call it from a host's test:
//
//	func TestStoreConformance(t *testing.T) {
//		executortest.RunStateStoreConformance(t, func(t *testing.T) (executor.StateStore, func() executor.StateStore) {
//			return mystore.Open(t.TempDir()), ...
//		})
//	}
//
// Stores that implement executor.ResultLoader are read back through it;
// the others are only checked for their return values.
func RunStateStoreConformance(t *testing.T, newStore StoreFactory) {
	t.Run("SaveAndLoad", func(t *testing.T) {
		store, _ := newStore(t)
		r := sampleResult(1)
		require.NoError(t, store.SaveResult(t.Context(), r))
		requireLoaded(t, store, r)
	})
	t.Run("IdempotentFirstWins", func(t *testing.T) {
		store, _ := newStore(t)
		first := sampleResult(2)
		second := first
		second.Reason, second.State, second.Message = kubexec.ReasonDeletedExternally, kubexec.StateFailed, "a later observation"
		require.NoError(t, store.SaveResult(t.Context(), first))
		require.NoError(t, store.SaveResult(t.Context(), first), "saving the same result again must succeed")
		require.NoError(t, store.SaveResult(t.Context(), second), "saving a second result for a saved key must succeed")
		requireLoaded(t, store, first)
	})
	t.Run("AttemptsAreDistinct", func(t *testing.T) {
		store, _ := newStore(t)
		a := sampleResult(3)
		b := a
		b.Key.Attempt++
		b.Reason, b.State = kubexec.ReasonSucceeded, kubexec.StateSucceeded
		c := a
		c.Key.MapIndex = 7
		for _, r := range []kubexec.Result{a, b, c} {
			require.NoError(t, store.SaveResult(t.Context(), r))
		}
		for _, r := range []kubexec.Result{a, b, c} {
			requireLoaded(t, store, r)
		}
	})
	t.Run("ExactKeys", func(t *testing.T) {
		// Keys are any UTF-8 strings of any length; a store must not
		// truncate, fold case or sanitise them.
		store, _ := newStore(t)
		long := make([]byte, 1000)
		for i := range long {
			long[i] = 'a' + byte(i%26)
		}
		keys := []kubexec.TaskKey{
			{WorkflowID: "Etl", TaskID: "Load", RunID: "r", MapIndex: kubexec.NotMapped},
			{WorkflowID: "etl", TaskID: "load", RunID: "r", MapIndex: kubexec.NotMapped},
			{WorkflowID: "étl/ünïcode ✓", TaskID: "load users; DROP TABLE results", RunID: "manual__2026-11-27T10:00:00+00:00", MapIndex: 0},
			{WorkflowID: string(long), TaskID: "t", RunID: "", MapIndex: kubexec.NotMapped, Attempt: 12},
		}
		for i, k := range keys {
			r := sampleResult(10 + i)
			r.Key = k
			require.NoError(t, store.SaveResult(t.Context(), r))
		}
		for i, k := range keys {
			r := sampleResult(10 + i)
			r.Key = k
			requireLoaded(t, store, r)
		}
	})
	t.Run("ConcurrentSaves", func(t *testing.T) {
		store, _ := newStore(t)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range 32 {
			wg.Add(2)
			for range 2 { // each key twice, concurrently
				go func() {
					defer wg.Done()
					errs <- store.SaveResult(t.Context(), sampleResult(100+i))
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		for i := range 32 {
			requireLoaded(t, store, sampleResult(100+i))
		}
	})
	t.Run("CanceledContext", func(t *testing.T) {
		store, _ := newStore(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		// A store may finish a save it has begun, but it must not block
		// forever on a canceled context.
		done := make(chan error, 1)
		go func() { done <- store.SaveResult(ctx, sampleResult(200)) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("SaveResult blocked on a canceled context")
		}
	})
	t.Run("Durable", func(t *testing.T) {
		store, reopen := newStore(t)
		if reopen == nil {
			t.Log("the store is not durable (no reopen function); nothing to check")
			return
		}
		r := sampleResult(300)
		require.NoError(t, store.SaveResult(t.Context(), r))
		again := reopen()
		requireLoaded(t, again, r)
		require.NoError(t, again.SaveResult(t.Context(), r), "saving again after a reopen must succeed")
	})
}

func requireLoaded(t *testing.T, store executor.StateStore, want kubexec.Result) {
	t.Helper()
	got, found, err := store.LoadResult(t.Context(), want.Key)
	require.NoError(t, err)
	require.True(t, found, "no result loaded for %s", want.Key)
	require.Equal(t, want.Key, got.Key)
	require.Equal(t, want.State, got.State)
	require.Equal(t, want.Reason, got.Reason)
	require.Equal(t, want.ExitCode, got.ExitCode)
	require.Equal(t, want.ContainerExited, got.ContainerExited)
	require.Equal(t, want.Container, got.Container)
	require.Equal(t, want.Message, got.Message)
	require.Equal(t, want.PodName, got.PodName)
	require.Equal(t, want.Namespace, got.Namespace)
	require.Equal(t, want.Node, got.Node)
	require.Equal(t, want.XComRef, got.XComRef)
	require.WithinDuration(t, want.StartedAt, got.StartedAt, time.Millisecond)
	require.WithinDuration(t, want.FinishedAt, got.FinishedAt, time.Millisecond)
}

// sampleResult returns a distinct, fully populated result for each n.
func sampleResult(n int) kubexec.Result {
	start := time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC).Add(time.Duration(n) * time.Minute)
	return kubexec.Result{
		Key: kubexec.TaskKey{
			WorkflowID: "conformance",
			TaskID:     fmt.Sprintf("task-%d", n),
			RunID:      "run-1",
			MapIndex:   kubexec.NotMapped,
			Attempt:    1,
		},
		State:           kubexec.StateFailed,
		Reason:          kubexec.ReasonFailed,
		ExitCode:        int32(n % 256),
		ContainerExited: true,
		Container:       "base",
		Message:         fmt.Sprintf("exit code %d", n%256),
		PodName:         fmt.Sprintf("conformance-task-%d-abc123-1", n),
		Namespace:       "default",
		Node:            "node-1",
		StartedAt:       start,
		FinishedAt:      start.Add(42 * time.Second),
		XComRef:         fmt.Sprintf("xcom://conformance/%d", n),
	}
}
