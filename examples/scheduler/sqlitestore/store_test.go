package sqlitestore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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

// resultsV0 is the results table as schema version 0 made it, before
// container_exited.
const resultsV0 = `CREATE TABLE results (
	workflow    TEXT NOT NULL,
	task        TEXT NOT NULL,
	run         TEXT NOT NULL,
	map_index   INTEGER NOT NULL,
	attempt     INTEGER NOT NULL,
	state       TEXT NOT NULL,
	reason      TEXT NOT NULL,
	exit_code   INTEGER NOT NULL,
	container   TEXT NOT NULL,
	message     TEXT NOT NULL,
	pod_name    TEXT NOT NULL,
	namespace   TEXT NOT NULL,
	node        TEXT NOT NULL,
	started_at  INTEGER,
	finished_at INTEGER,
	xcom_ref    TEXT NOT NULL,
	saved_at    INTEGER NOT NULL,
	PRIMARY KEY (workflow, task, run, map_index, attempt)
)`

func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func schemaVersion(t *testing.T, path string) int {
	t.Helper()
	var v int
	require.NoError(t, rawDB(t, path).QueryRow(`PRAGMA user_version`).Scan(&v))
	return v
}

// A new database is at the latest schema version; opening it again
// changes nothing.
func TestSchemaVersionOfANewDatabase(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "db")
	require.NoError(t, open(t, path).Close())
	require.Equal(t, sqlitestore.SchemaVersion, schemaVersion(t, path))
	require.NoError(t, open(t, path).Close())
	require.Equal(t, sqlitestore.SchemaVersion, schemaVersion(t, path))
}

// A database of an earlier scheduler (version 0: no container_exited) is
// migrated when it is opened: its results keep what they held, get
// ContainerExited from it (a failure with exit code 0, an unusable XCom
// value then, keeps false), and new results round-trip it.
func TestMigrateFromVersion0(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "db")
	old := rawDB(t, path)
	_, err := old.Exec(resultsV0)
	require.NoError(t, err)
	key := func(task string) kubexec.TaskKey {
		return kubexec.TaskKey{WorkflowID: "w", TaskID: task, RunID: "w-1", MapIndex: kubexec.NotMapped, Attempt: 1}
	}
	for _, r := range []struct {
		task, state, reason, container string
		exitCode                       int32
	}{
		{"ok", "succeeded", "Succeeded", "base", 0},
		{"code", "failed", "Failed", "base", 3},
		{"xcom", "failed", "Failed", "base", 0},
		{"oom", "failed", "OOMKilled", "base", 137},
		{"lost", "failed", "Disrupted", "base", 137},
		{"rejected", "failed", "LaunchRejected", "", 0},
	} {
		_, err := old.Exec(`INSERT INTO results (workflow, task, run, map_index, attempt, state, reason, exit_code,
			container, message, pod_name, namespace, node, xcom_ref, saved_at)
			VALUES ('w', ?, 'w-1', -1, 1, ?, ?, ?, ?, 'm', 'p', 'default', 'n', '', 1)`,
			r.task, r.state, r.reason, r.exitCode, r.container)
		require.NoError(t, err)
	}
	require.NoError(t, old.Close())

	s := open(t, path)
	require.Equal(t, sqlitestore.SchemaVersion, schemaVersion(t, path))
	for task, exited := range map[string]bool{"ok": true, "code": true, "xcom": false, "oom": true, "lost": false, "rejected": false} {
		r, found, err := s.LoadResult(ctx, key(task))
		require.NoError(t, err)
		require.True(t, found, task)
		require.Equal(t, exited, r.ContainerExited, task)
		require.Equal(t, "m", r.Message, task)
	}
	r, _, err := s.LoadResult(ctx, key("code"))
	require.NoError(t, err)
	require.Equal(t, int32(3), r.ExitCode)

	want := kubexec.Result{Key: key("new"), State: kubexec.StateFailed, Reason: kubexec.ReasonXComFailed,
		ContainerExited: true, Container: "base", Message: "not JSON", FinishedAt: time.Unix(0, 5)}
	require.NoError(t, s.SaveResult(ctx, want))
	got, found, err := s.LoadResult(ctx, want.Key)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, want, got)

	// Opened again: nothing to migrate.
	require.NoError(t, s.Close())
	_, found, err = open(t, path).LoadResult(ctx, want.Key)
	require.NoError(t, err)
	require.True(t, found)
}

// A database of a later scheduler is refused, untouched.
func TestOpenRefusesALaterSchema(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "db")
	require.NoError(t, open(t, path).Close())
	_, err := rawDB(t, path).Exec(fmt.Sprintf(`PRAGMA user_version = %d`, sqlitestore.SchemaVersion+1))
	require.NoError(t, err)
	_, err = sqlitestore.Open(t.Context(), path)
	require.ErrorContains(t, err, fmt.Sprintf("the database has schema version %d, made by a later scheduler", sqlitestore.SchemaVersion+1))
	require.Equal(t, sqlitestore.SchemaVersion+1, schemaVersion(t, path))
}
