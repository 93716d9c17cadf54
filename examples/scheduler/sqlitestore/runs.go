package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kubexec/kubexec"
)

// RunState is where a run is.
type RunState string

// Run states.
const (
	RunRunning   RunState = "running"
	RunSucceeded RunState = "succeeded"
	RunFailed    RunState = "failed"
	RunCancelled RunState = "cancelled"
)

// Terminal reports whether the run is over.
func (s RunState) Terminal() bool { return s != RunRunning }

// TaskState is where a task of a run is.
type TaskState string

// Task states.
const (
	// TaskWaiting: its dependencies have not all succeeded yet.
	TaskWaiting TaskState = "waiting"
	// TaskLaunched: its current attempt was handed to the executor and has
	// no result yet (queued, pending or running).
	TaskLaunched TaskState = "launched"
	// TaskRetryWait: an attempt failed and the next one waits for its
	// retry delay.
	TaskRetryWait TaskState = "retry_wait"
	// TaskSucceeded: an attempt succeeded. Terminal.
	TaskSucceeded TaskState = "succeeded"
	// TaskFailed: the last attempt failed and no retry is left or likely
	// to help. Terminal.
	TaskFailed TaskState = "failed"
	// TaskUpstreamFailed: a dependency failed, so it never ran. Terminal.
	TaskUpstreamFailed TaskState = "upstream_failed"
	// TaskCancelled: cancelled on request. Terminal.
	TaskCancelled TaskState = "cancelled"
)

// Terminal reports whether the task is over.
func (s TaskState) Terminal() bool {
	switch s {
	case TaskSucceeded, TaskFailed, TaskUpstreamFailed, TaskCancelled:
		return true
	}
	return false
}

// Run is one run of a workflow.
type Run struct {
	ID       string
	Workflow string
	Seq      int
	// Source is the workflow file's name; Definition its contents when the
	// run started (a resumed run uses these, not the file as it is now).
	Source     string
	Definition []byte
	Namespace  string
	// Cluster identifies the cluster the run's pods are on (the UID of its
	// kube-system namespace).
	Cluster         string
	State           RunState
	Message         string
	CancelRequested bool
	CreatedAt       time.Time
	FinishedAt      time.Time
	// DriverPID and DriverSeenAt tell which scheduler process drives the
	// run and when it last said so.
	DriverPID    int
	DriverSeenAt time.Time
}

// Task is the state of one task of a run.
type Task struct {
	RunID  string
	TaskID string
	State  TaskState
	// Attempt is the number of the task's latest attempt, 0 before the
	// first.
	Attempt int
	// RetriesUsed counts retries after failures of the task's own code;
	// SystemRetries those after platform failures.
	RetriesUsed   int
	SystemRetries int
	// NotBefore is when a task in TaskRetryWait may start its next attempt.
	NotBefore time.Time
	// Reason and Message say why the task is where it is (the latest
	// attempt's result, or the scheduler's decision).
	Reason          kubexec.Reason
	Message         string
	StartedAt       time.Time
	FinishedAt      time.Time
	CancelRequested bool
}

// Attempt is one launched attempt of a task, with its result once saved.
type Attempt struct {
	RunID      string
	TaskID     string
	Attempt    int
	Namespace  string
	PodName    string
	LaunchedAt time.Time
	Result     *kubexec.Result
}

// CreateRun records a new run of workflow with the given tasks, all
// waiting, and returns it with its id ("<workflow>-<n>").
func (s *Store) CreateRun(ctx context.Context, r Run, taskIDs []string) (Run, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Run{}, err
	}
	defer tx.Rollback()
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) + 1 FROM runs WHERE workflow = ?`, r.Workflow).Scan(&r.Seq); err != nil {
		return Run{}, fmt.Errorf("create run: %w", err)
	}
	r.ID = fmt.Sprintf("%s-%d", r.Workflow, r.Seq)
	r.State = RunRunning
	r.CreatedAt = time.Now()
	_, err = tx.ExecContext(ctx, `INSERT INTO runs (id, workflow, seq, source, definition, namespace, cluster, state, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Workflow, r.Seq, r.Source, r.Definition, r.Namespace, r.Cluster, string(r.State), r.CreatedAt.UnixNano())
	if err != nil {
		return Run{}, fmt.Errorf("create run: %w", err)
	}
	for i, id := range taskIDs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO tasks (run_id, task_id, ord, state) VALUES (?, ?, ?, ?)`,
			r.ID, id, i, string(TaskWaiting)); err != nil {
			return Run{}, fmt.Errorf("create run: task %s: %w", id, err)
		}
	}
	return r, tx.Commit()
}

const runColumns = `id, workflow, seq, source, definition, namespace, cluster, state, message, cancel_requested,
	created_at, finished_at, driver_pid, driver_seen_at`

func scanRun(row interface{ Scan(...any) error }) (Run, error) {
	var r Run
	var state string
	var created int64
	var finished, seen sql.NullInt64
	err := row.Scan(&r.ID, &r.Workflow, &r.Seq, &r.Source, &r.Definition, &r.Namespace, &r.Cluster, &state,
		&r.Message, &r.CancelRequested, &created, &finished, &r.DriverPID, &seen)
	if err != nil {
		return Run{}, err
	}
	r.State = RunState(state)
	r.CreatedAt = time.Unix(0, created)
	r.FinishedAt, r.DriverSeenAt = fromNanos(finished), fromNanos(seen)
	return r, nil
}

// GetRun returns the run with the given id.
func (s *Store) GetRun(ctx context.Context, id string) (Run, error) {
	r, err := scanRun(s.db.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Run{}, fmt.Errorf("run %q: %w", id, ErrNotFound)
	}
	return r, err
}

// ListRuns returns the latest runs, newest first; with unfinished set,
// only those still running.
func (s *Store) ListRuns(ctx context.Context, limit int, unfinished bool) ([]Run, error) {
	q := `SELECT ` + runColumns + ` FROM runs`
	if unfinished {
		q += ` WHERE state = 'running'`
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY created_at DESC, rowid DESC LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// FinishRun sets a run's final state.
func (s *Store) FinishRun(ctx context.Context, id string, state RunState, message string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE runs SET state = ?, message = ?, finished_at = ? WHERE id = ?`,
		string(state), message, time.Now().UnixNano(), id)
	return err
}

// SetDriver records that process pid drives the run, now.
func (s *Store) SetDriver(ctx context.Context, id string, pid int) error {
	_, err := s.db.ExecContext(ctx, `UPDATE runs SET driver_pid = ?, driver_seen_at = ? WHERE id = ?`,
		pid, time.Now().UnixNano(), id)
	return err
}

// RequestCancel asks the run's driver to cancel the run (taskID "") or
// one of its tasks.
func (s *Store) RequestCancel(ctx context.Context, runID, taskID string) error {
	var res sql.Result
	var err error
	if taskID == "" {
		res, err = s.db.ExecContext(ctx, `UPDATE runs SET cancel_requested = 1 WHERE id = ?`, runID)
	} else {
		res, err = s.db.ExecContext(ctx, `UPDATE tasks SET cancel_requested = 1 WHERE run_id = ? AND task_id = ?`, runID, taskID)
	}
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("run %q task %q: %w", runID, taskID, ErrNotFound)
	}
	return nil
}

const taskColumns = `run_id, task_id, state, attempt, retries_used, system_retries, not_before, reason, message,
	started_at, finished_at, cancel_requested`

func scanTask(row interface{ Scan(...any) error }) (Task, error) {
	var t Task
	var state, reason string
	var notBefore, started, finished sql.NullInt64
	err := row.Scan(&t.RunID, &t.TaskID, &state, &t.Attempt, &t.RetriesUsed, &t.SystemRetries, &notBefore,
		&reason, &t.Message, &started, &finished, &t.CancelRequested)
	if err != nil {
		return Task{}, err
	}
	t.State, t.Reason = TaskState(state), kubexec.Reason(reason)
	t.NotBefore, t.StartedAt, t.FinishedAt = fromNanos(notBefore), fromNanos(started), fromNanos(finished)
	return t, nil
}

// Tasks returns a run's tasks in workflow order.
func (s *Store) Tasks(ctx context.Context, runID string) ([]Task, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+taskColumns+` FROM tasks WHERE run_id = ? ORDER BY ord`, runID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// GetTask returns one task of a run.
func (s *Store) GetTask(ctx context.Context, runID, taskID string) (Task, error) {
	t, err := scanTask(s.db.QueryRowContext(ctx, `SELECT `+taskColumns+` FROM tasks WHERE run_id = ? AND task_id = ?`, runID, taskID))
	if errors.Is(err, sql.ErrNoRows) {
		return Task{}, fmt.Errorf("task %q of run %q: %w", taskID, runID, ErrNotFound)
	}
	return t, err
}

// UpdateTask writes a task's state.
func (s *Store) UpdateTask(ctx context.Context, t Task) error {
	return updateTask(ctx, s.db, t)
}

func updateTask(ctx context.Context, db interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, t Task) error {
	_, err := db.ExecContext(ctx, `UPDATE tasks SET state = ?, attempt = ?, retries_used = ?, system_retries = ?,
		not_before = ?, reason = ?, message = ?, started_at = ?, finished_at = ? WHERE run_id = ? AND task_id = ?`,
		string(t.State), t.Attempt, t.RetriesUsed, t.SystemRetries, nanos(t.NotBefore), string(t.Reason), t.Message,
		nanos(t.StartedAt), nanos(t.FinishedAt), t.RunID, t.TaskID)
	if err != nil {
		return fmt.Errorf("update task %s of run %s: %w", t.TaskID, t.RunID, err)
	}
	return nil
}

// Launch records a new attempt of t and t's new state in one transaction.
// It must commit before the attempt is handed to the executor: after a
// crash, every attempt that may have a pod is on record.
func (s *Store) Launch(ctx context.Context, t Task, a Attempt) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	_, err = tx.ExecContext(ctx, `INSERT INTO attempts (run_id, task_id, attempt, namespace, pod_name, launched_at)
		VALUES (?, ?, ?, ?, ?, ?)`, a.RunID, a.TaskID, a.Attempt, a.Namespace, a.PodName, a.LaunchedAt.UnixNano())
	if err != nil {
		return fmt.Errorf("record attempt %d of task %s: %w", a.Attempt, a.TaskID, err)
	}
	if err := updateTask(ctx, tx, t); err != nil {
		return err
	}
	return tx.Commit()
}

// Attempts returns the attempts of a task, oldest first, each with its
// result when one is saved.
func (s *Store) Attempts(ctx context.Context, workflow, runID, taskID string) ([]Attempt, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT attempt, namespace, pod_name, launched_at FROM attempts
		WHERE run_id = ? AND task_id = ? ORDER BY attempt`, runID, taskID)
	if err != nil {
		return nil, err
	}
	var out []Attempt
	for rows.Next() {
		a := Attempt{RunID: runID, TaskID: taskID}
		var launched int64
		if err := rows.Scan(&a.Attempt, &a.Namespace, &a.PodName, &launched); err != nil {
			rows.Close()
			return nil, err
		}
		a.LaunchedAt = time.Unix(0, launched)
		out = append(out, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		key := kubexec.TaskKey{WorkflowID: workflow, TaskID: taskID, RunID: runID, MapIndex: kubexec.NotMapped, Attempt: out[i].Attempt}
		r, ok, err := s.LoadResult(ctx, key)
		if err != nil {
			return nil, err
		}
		if ok {
			out[i].Result = &r
		}
	}
	return out, nil
}
