package sqlitestore_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/examples/scheduler/sqlitestore"
	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/executor/executortest"
)

func open(t *testing.T, path string) *sqlitestore.Store {
	t.Helper()
	s, err := sqlitestore.Open(context.Background(), path)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStateStoreConformance(t *testing.T) {
	executortest.RunStateStoreConformance(t, func(t *testing.T) (executor.StateStore, func() executor.StateStore) {
		path := filepath.Join(t.TempDir(), "scheduler.db")
		s := open(t, path)
		return s, func() executor.StateStore {
			// Close the first handle, as a process that exits would, then
			// open the file again.
			require.NoError(t, s.Close())
			return open(t, path)
		}
	})
}

func TestSavedSignalsNewResultsOnly(t *testing.T) {
	t.Parallel()
	s := open(t, filepath.Join(t.TempDir(), "db"))
	r := kubexec.Result{
		Key:   kubexec.TaskKey{WorkflowID: "w", TaskID: "t", RunID: "w-1", MapIndex: kubexec.NotMapped, Attempt: 1},
		State: kubexec.StateSucceeded, Reason: kubexec.ReasonSucceeded, FinishedAt: time.Now(),
	}
	require.NoError(t, s.SaveResult(t.Context(), r))
	select {
	case <-s.Saved():
	default:
		t.Fatal("no signal after a new result")
	}
	require.NoError(t, s.SaveResult(t.Context(), r))
	select {
	case <-s.Saved():
		t.Fatal("a repeated save signalled")
	default:
	}
}

func TestExecutorIDIsStable(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "db")
	s := open(t, path)
	id, err := s.ExecutorID(t.Context())
	require.NoError(t, err)
	require.NoError(t, kubexec.ValidateExecutorID(id))
	again, err := s.ExecutorID(t.Context())
	require.NoError(t, err)
	require.Equal(t, id, again)
	require.NoError(t, s.Close())
	reopened, err := open(t, path).ExecutorID(t.Context())
	require.NoError(t, err)
	require.Equal(t, id, reopened, "a restarted scheduler must reuse its executor id")
}

func TestRunsTasksAndAttempts(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "db"))
	run, err := s.CreateRun(ctx, sqlitestore.Run{Workflow: "etl", Source: "etl.yaml", Definition: []byte("x"), Namespace: "default", Cluster: "c1"}, []string{"b", "a"})
	require.NoError(t, err)
	require.Equal(t, "etl-1", run.ID)
	second, err := s.CreateRun(ctx, sqlitestore.Run{Workflow: "etl", Source: "etl.yaml", Definition: []byte("x"), Namespace: "default", Cluster: "c1"}, []string{"a"})
	require.NoError(t, err)
	require.Equal(t, "etl-2", second.ID)

	tasks, err := s.Tasks(ctx, run.ID)
	require.NoError(t, err)
	require.Len(t, tasks, 2)
	require.Equal(t, "b", tasks[0].TaskID, "tasks keep workflow order")
	require.Equal(t, sqlitestore.TaskWaiting, tasks[0].State)

	task := tasks[1]
	task.State, task.Attempt, task.StartedAt = sqlitestore.TaskLaunched, 1, time.Now()
	require.NoError(t, s.Launch(ctx, task, sqlitestore.Attempt{RunID: run.ID, TaskID: "a", Attempt: 1, Namespace: "default", PodName: "etl-a-x-1", LaunchedAt: time.Now()}))
	err = s.Launch(ctx, task, sqlitestore.Attempt{RunID: run.ID, TaskID: "a", Attempt: 1, Namespace: "default", PodName: "etl-a-x-1", LaunchedAt: time.Now()})
	require.Error(t, err, "an attempt is recorded once")

	key := kubexec.TaskKey{WorkflowID: "etl", TaskID: "a", RunID: run.ID, MapIndex: kubexec.NotMapped, Attempt: 1}
	require.NoError(t, s.SaveResult(ctx, kubexec.Result{Key: key, State: kubexec.StateFailed, Reason: kubexec.ReasonFailed, ExitCode: 3, Container: "base", FinishedAt: time.Now()}))
	attempts, err := s.Attempts(ctx, "etl", run.ID, "a")
	require.NoError(t, err)
	require.Len(t, attempts, 1)
	require.NotNil(t, attempts[0].Result)
	require.Equal(t, int32(3), attempts[0].Result.ExitCode)

	got, err := s.GetTask(ctx, run.ID, "a")
	require.NoError(t, err)
	require.Equal(t, sqlitestore.TaskLaunched, got.State)
	require.Equal(t, 1, got.Attempt)

	require.NoError(t, s.RequestCancel(ctx, run.ID, "a"))
	require.ErrorIs(t, s.RequestCancel(ctx, run.ID, "nope"), sqlitestore.ErrNotFound)
	require.NoError(t, s.RequestCancel(ctx, run.ID, ""))
	r, err := s.GetRun(ctx, run.ID)
	require.NoError(t, err)
	require.True(t, r.CancelRequested)

	unfinished, err := s.ListRuns(ctx, 10, true)
	require.NoError(t, err)
	require.Len(t, unfinished, 2)
	require.NoError(t, s.FinishRun(ctx, run.ID, sqlitestore.RunCancelled, "cancelled on request"))
	unfinished, err = s.ListRuns(ctx, 10, true)
	require.NoError(t, err)
	require.Len(t, unfinished, 1)
	require.Equal(t, "etl-2", unfinished[0].ID)
	_, err = s.GetRun(ctx, "etl-9")
	require.ErrorIs(t, err, sqlitestore.ErrNotFound)
}
