package sqlitestore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
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

// The database holds XCom values and secrets: a new one and the files
// SQLite keeps beside it are private to their owner (0600), whatever the
// umask lets through, and Open takes the group's and others' permissions
// away from an existing one.
func TestOpenMakesTheFilesPrivate(t *testing.T) {
	// Not parallel: the umask is the process's. 022 is the usual one,
	// which leaves files SQLite creates readable by all.
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
	ctx := context.Background()
	requireModes := func(t *testing.T, path string) {
		t.Helper()
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			fi, err := os.Stat(p)
			require.NoError(t, err, "WAL mode keeps %s while the database is open", p)
			require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "mode of %s", p)
		}
	}
	// write makes SQLite write the WAL.
	write := func(t *testing.T, s *sqlitestore.Store) {
		t.Helper()
		_, err := s.ExecutorID(ctx)
		require.NoError(t, err)
	}

	t.Run("new", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "new", "scheduler.db")
		s := open(t, path)
		write(t, s)
		requireModes(t, path)
	})

	t.Run("existing", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "scheduler.db")
		// A database made before, with its WAL and shared memory files
		// left by a process that was killed, all readable by all.
		s := open(t, path)
		write(t, s)
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			require.NoError(t, os.Chmod(p, 0o644))
		}
		require.NoError(t, s.Close())
		for _, p := range []string{path + "-wal", path + "-shm"} {
			if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
				require.NoError(t, os.WriteFile(p, nil, 0o644))
			}
		}

		s = open(t, path)
		requireModes(t, path)
		write(t, s)
		requireModes(t, path)
	})
}
