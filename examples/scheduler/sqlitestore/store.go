// Package sqlitestore is the example scheduler's database: one SQLite file
// (modernc.org/sqlite, pure Go, WAL mode) that holds the runs, their tasks
// and attempts, the results the executor saves, and the attempts' XCom
// values (XComBackend).
//
// Store implements executor.StateStore: the executor's result goroutines
// call SaveResult as pods end; it returns once the result is committed
// (synchronous=FULL), keeps the first result of an attempt, and then
// signals Saved so the scheduler's loop reacts at once. LoadResult reads a
// result back whole, for the executor and the scheduler.
//
// Everything else (runs, tasks, attempts) is the scheduler's own state,
// written by its loop. An attempt is recorded before it is handed to the
// executor, so after a crash the scheduler knows every attempt that may
// have a pod.
//
// The schema has a version (SQLite's user_version, SchemaVersion): Open
// brings a database of an earlier scheduler up to it (see migrations), and
// refuses one of a later scheduler, whose columns it would not know.
package sqlitestore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/executor"
)

// ErrNotFound is returned for a run, task or attempt that does not exist.
var ErrNotFound = errors.New("not found")

// Store is the scheduler's SQLite database. It is safe for concurrent use.
type Store struct {
	db    *sql.DB
	path  string
	saved chan struct{}
}

var _ executor.StateStore = (*Store)(nil)

const schema = `
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
	id               TEXT PRIMARY KEY,
	workflow         TEXT NOT NULL,
	seq              INTEGER NOT NULL,
	source           TEXT NOT NULL,
	definition       BLOB NOT NULL,
	namespace        TEXT NOT NULL,
	cluster          TEXT NOT NULL,
	state            TEXT NOT NULL,
	message          TEXT NOT NULL DEFAULT '',
	cancel_requested INTEGER NOT NULL DEFAULT 0,
	created_at       INTEGER NOT NULL,
	finished_at      INTEGER,
	driver_pid       INTEGER NOT NULL DEFAULT 0,
	driver_seen_at   INTEGER,
	UNIQUE (workflow, seq)
);
CREATE TABLE IF NOT EXISTS tasks (
	run_id           TEXT NOT NULL REFERENCES runs(id),
	task_id          TEXT NOT NULL,
	ord              INTEGER NOT NULL,
	state            TEXT NOT NULL,
	attempt          INTEGER NOT NULL DEFAULT 0,
	retries_used     INTEGER NOT NULL DEFAULT 0,
	system_retries   INTEGER NOT NULL DEFAULT 0,
	not_before       INTEGER,
	reason           TEXT NOT NULL DEFAULT '',
	message          TEXT NOT NULL DEFAULT '',
	started_at       INTEGER,
	finished_at      INTEGER,
	cancel_requested INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (run_id, task_id)
);
CREATE TABLE IF NOT EXISTS attempts (
	run_id      TEXT NOT NULL,
	task_id     TEXT NOT NULL,
	attempt     INTEGER NOT NULL,
	namespace   TEXT NOT NULL,
	pod_name    TEXT NOT NULL,
	launched_at INTEGER NOT NULL,
	PRIMARY KEY (run_id, task_id, attempt),
	FOREIGN KEY (run_id, task_id) REFERENCES tasks(run_id, task_id)
);
CREATE TABLE IF NOT EXISTS results (
	workflow    TEXT NOT NULL,
	task        TEXT NOT NULL,
	run         TEXT NOT NULL,
	map_index   INTEGER NOT NULL,
	attempt     INTEGER NOT NULL,
	state       TEXT NOT NULL,
	reason      TEXT NOT NULL,
	exit_code   INTEGER NOT NULL,
	container_exited INTEGER NOT NULL DEFAULT 0,
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
);
CREATE TABLE IF NOT EXISTS xcom (
	id          INTEGER PRIMARY KEY,
	workflow    TEXT NOT NULL,
	task        TEXT NOT NULL,
	run         TEXT NOT NULL,
	map_index   INTEGER NOT NULL,
	attempt     INTEGER NOT NULL,
	value       TEXT NOT NULL,
	saved_at    INTEGER NOT NULL,
	UNIQUE (workflow, task, run, map_index, attempt)
);
`

// Open opens (creating if needed) the database at path. The database holds
// XCom values and the workflows' definitions with their Secrets, so only
// its owner may read it: Open creates it with mode 0600, and removes the
// group's and others' permissions from an existing one and from its -wal,
// -shm and -journal files. SQLite creates those files with the mode of
// the database file.
func Open(ctx context.Context, path string) (*Store, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("database folder: %w", err)
		}
	}
	if err := makePrivate(path); err != nil {
		return nil, err
	}
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: create the schema: %w", path, err)
	}
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &Store{db: db, path: path, saved: make(chan struct{}, 1)}, nil
}

// SchemaVersion is the version of the database's schema that this
// scheduler writes, kept in SQLite's user_version: 0 for a database made
// before versions were recorded, 1 from results.container_exited on. It
// is len(migrations).
const SchemaVersion = 1

// migrations[i] brings a database from schema version i to i+1. schema
// (CREATE TABLE IF NOT EXISTS) makes a new database whole, at version 0
// until Open migrates it, so each migration checks whether what it adds is
// there already. Append new ones; never change one that has shipped.
var migrations = []func(ctx context.Context, tx *sql.Tx) error{
	// 1: results.container_exited (kubexec.Result.ContainerExited). A
	// result saved before it gets the best guess from what it holds: the
	// container exited if the attempt succeeded, was OOMKilled, or failed
	// with a non-zero exit code. One that failed with exit code 0 (its
	// XCom value was unusable) keeps false, and so reads as before.
	func(ctx context.Context, tx *sql.Tx) error {
		ok, err := hasColumn(ctx, tx, "results", "container_exited")
		if err != nil || ok {
			return err
		}
		if _, err := tx.ExecContext(ctx, `ALTER TABLE results ADD COLUMN container_exited INTEGER NOT NULL DEFAULT 0`); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE results SET container_exited = 1
			WHERE container != '' AND (reason IN ('Succeeded', 'OOMKilled') OR (reason = 'Failed' AND exit_code != 0))`)
		return err
	},
}

// migrate brings db up to the latest schema version, in one transaction
// (BEGIN IMMEDIATE, so two processes that open the database at once
// migrate it once). It refuses a database of a later scheduler.
func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate the schema: %w", err)
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil {
		return fmt.Errorf("read the schema version: %w", err)
	}
	latest := len(migrations)
	switch {
	case v == latest:
		return nil
	case v > latest:
		return fmt.Errorf("the database has schema version %d, made by a later scheduler; this one knows versions up to %d: use the later scheduler, or another --db", v, latest)
	case v < 0:
		return fmt.Errorf("the database has schema version %d, which no scheduler writes: it is not a scheduler's database; use another --db", v)
	}
	for i := v; i < latest; i++ {
		if err := migrations[i](ctx, tx); err != nil {
			return fmt.Errorf("migrate the schema from version %d to %d: %w", i, i+1, err)
		}
	}
	// PRAGMA takes no parameters; latest is an int.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, latest)); err != nil {
		return fmt.Errorf("record the schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate the schema: %w", err)
	}
	return nil
}

// hasColumn reports whether table has column.
func hasColumn(ctx context.Context, tx *sql.Tx, table, column string) (bool, error) {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ?`, table, column).Scan(&n)
	return n > 0, err
}

// makePrivate creates the database file at path with mode 0600 if it does
// not exist, and takes the group's and others' permissions away from it
// and from the files SQLite keeps beside it.
func makePrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			if err := os.Chmod(p, perm&^0o077); err != nil {
				return fmt.Errorf("open %s: it holds secrets and is open to others (mode %#o), and its mode cannot be changed: %w; make it private (chmod 600 %s)", path, perm, err, p)
			}
		}
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Saved is signalled (without blocking, at most one signal pending) after
// SaveResult commits a new result.
func (s *Store) Saved() <-chan struct{} { return s.saved }

// SaveResult implements executor.StateStore: it records r unless a result
// for r.Key is saved already, and returns once the result is durable.
func (s *Store) SaveResult(ctx context.Context, r kubexec.Result) error {
	k := r.Key
	res, err := s.db.ExecContext(ctx, `INSERT INTO results
		(workflow, task, run, map_index, attempt, state, reason, exit_code, container_exited, container, message,
		 pod_name, namespace, node, started_at, finished_at, xcom_ref, saved_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT DO NOTHING`,
		k.WorkflowID, k.TaskID, k.RunID, k.MapIndex, k.Attempt, string(r.State), string(r.Reason), r.ExitCode,
		r.ContainerExited, r.Container, r.Message, r.PodName, r.Namespace, r.Node, nanos(r.StartedAt), nanos(r.FinishedAt),
		r.XComRef, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("save result of %s: %w", k, err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		select {
		case s.saved <- struct{}{}:
		default:
		}
	}
	return nil
}

// LoadResult implements executor.StateStore: the result saved for key,
// as it was saved.
func (s *Store) LoadResult(ctx context.Context, key kubexec.TaskKey) (kubexec.Result, bool, error) {
	row := s.db.QueryRowContext(ctx, `SELECT state, reason, exit_code, container_exited, container, message, pod_name,
		namespace, node, started_at, finished_at, xcom_ref
		FROM results WHERE workflow = ? AND task = ? AND run = ? AND map_index = ? AND attempt = ?`,
		key.WorkflowID, key.TaskID, key.RunID, key.MapIndex, key.Attempt)
	r := kubexec.Result{Key: key}
	var state, reason string
	var started, finished sql.NullInt64
	err := row.Scan(&state, &reason, &r.ExitCode, &r.ContainerExited, &r.Container, &r.Message, &r.PodName, &r.Namespace,
		&r.Node, &started, &finished, &r.XComRef)
	if errors.Is(err, sql.ErrNoRows) {
		return kubexec.Result{}, false, nil
	}
	if err != nil {
		return kubexec.Result{}, false, fmt.Errorf("load result of %s: %w", key, err)
	}
	r.State, r.Reason = kubexec.State(state), kubexec.Reason(reason)
	r.StartedAt, r.FinishedAt = fromNanos(started), fromNanos(finished)
	return r, true, nil
}

// CountResults returns how many results are saved for the attempts of a
// workflow run's task (all attempts).
func (s *Store) CountResults(ctx context.Context, workflow, run, task string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM results WHERE workflow = ? AND run = ? AND task = ?`,
		workflow, run, task).Scan(&n)
	return n, err
}

// ExecutorID returns the id of this database's executor, creating it on
// first use. A scheduler restarted on the same database reuses it, so its
// executor picks up the pods it launched before.
func (s *Store) ExecutorID(ctx context.Context) (string, error) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	host, _ := os.Hostname()
	candidate := kubexec.SafeLabelValue("scheduler-" + truncate(host, 30) + "-" + hex.EncodeToString(b))
	if _, err := s.db.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('executor_id', ?) ON CONFLICT DO NOTHING`, candidate); err != nil {
		return "", fmt.Errorf("executor id: %w", err)
	}
	var id string
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'executor_id'`).Scan(&id); err != nil {
		return "", fmt.Errorf("executor id: %w", err)
	}
	return id, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func nanos(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

func fromNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64)
}
