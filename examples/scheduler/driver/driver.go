// Package driver drives one workflow run on a kubexec executor: it
// launches each task when its dependencies have succeeded, reads the
// results the executor saves in the SQLite store, retries by the result's
// Reason, and records every step in the store so that a scheduler killed at
// any point resumes the run without running an attempt twice.
//
// The protocol with the executor:
//
//  1. An attempt is recorded in the store (Store.Launch) before it is
//     handed to the executor (Executor.Queue); so after a crash every
//     attempt that may have a pod is on record.
//  2. The executor saves each attempt's result in the store from its own
//     goroutines; the store signals Saved and the loop reads it.
//  3. On restart, the executor (same ExecutorID, kept in the store) picks
//     up its pods at Start. Resume queues every recorded attempt that has no
//     result: Queue returns ErrDuplicate for those whose pod is tracked
//     again, and otherwise the executor creates the pod, whose name is
//     derived from the attempt, so a pod that already exists is adopted,
//     never duplicated.
//
// XCom: the executor's xcom.Collector stores each attempt's value in the
// store (sqlitestore.XComBackend) and its reference in the attempt's
// result, before the result is saved. A task with xcomInputs gets, at each
// launch, the values of its upstream tasks' succeeded attempts through
// xcom.Pass; RequireXComMiddleware makes those upstream tasks fail when
// they produce no value, so that a missing value is reported where it
// should have been written.
package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/examples/scheduler/sqlitestore"
	"github.com/kubexec/kubexec/examples/scheduler/workflow"
	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/podtemplate"
	"github.com/kubexec/kubexec/xcom"
)

// Executor is the part of *executor.Executor the scheduler uses.
type Executor interface {
	Queue(spec podtemplate.TaskSpec) error
	Heartbeat() error
	Revoke(key kubexec.TaskKey) error
}

// Environment variables every task receives.
const (
	EnvWorkflow = "KUBEXEC_WORKFLOW"
	EnvRun      = "KUBEXEC_RUN"
	EnvTask     = "KUBEXEC_TASK"
	EnvAttempt  = "KUBEXEC_ATTEMPT"
)

// Config configures a Scheduler.
type Config struct {
	// Store holds the run's state and receives the executor's results.
	// Required.
	Store *sqlitestore.Store
	// Executor runs the attempts. Required.
	Executor Executor
	// Workflow is the run's workflow. Required.
	Workflow *workflow.Workflow
	// RunID is the run to drive. Required.
	RunID string
	// XCom holds the attempts' XCom values, for tasks with xcomInputs.
	// Default: Store.XCom().
	XCom xcom.Backend
	// Tick is the longest wait between two steps (results wake the loop
	// at once). Default 1s.
	Tick time.Duration
	// Notef receives notes for a person (resumed attempts, decisions).
	// Default: none.
	Notef func(format string, args ...any)
	// Logger receives debug logs. Default: discarded.
	Logger *slog.Logger
}

// Scheduler drives one run. Run it with Run; it is not safe for concurrent
// use.
type Scheduler struct {
	cfg   Config
	store *sqlitestore.Store
	exec  Executor
	wf    *workflow.Workflow
	run   sqlitestore.Run
	order []*workflow.Task
	pid   int
}

// New returns a Scheduler for cfg.
func New(cfg Config) (*Scheduler, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("driver: Config.Store is nil")
	case cfg.Executor == nil:
		return nil, errors.New("driver: Config.Executor is nil")
	case cfg.Workflow == nil:
		return nil, errors.New("driver: Config.Workflow is nil")
	case cfg.RunID == "":
		return nil, errors.New("driver: Config.RunID is empty")
	}
	if cfg.XCom == nil {
		cfg.XCom = cfg.Store.XCom()
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.Notef == nil {
		cfg.Notef = func(string, ...any) {}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Scheduler{cfg: cfg, store: cfg.Store, exec: cfg.Executor, wf: cfg.Workflow, order: cfg.Workflow.Order(), pid: os.Getpid()}, nil
}

// Key returns the TaskKey of attempt n of task taskID in run.
func Key(run sqlitestore.Run, taskID string, n int) kubexec.TaskKey {
	return kubexec.TaskKey{WorkflowID: run.Workflow, TaskID: taskID, RunID: run.ID, MapIndex: kubexec.NotMapped, Attempt: n}
}

// Spec returns the TaskSpec of attempt n of task t in run.
func Spec(run sqlitestore.Run, t *workflow.Task, n int) podtemplate.TaskSpec {
	env := append([]corev1.EnvVar{}, t.Env...)
	env = append(env,
		corev1.EnvVar{Name: EnvWorkflow, Value: run.Workflow},
		corev1.EnvVar{Name: EnvRun, Value: run.ID},
		corev1.EnvVar{Name: EnvTask, Value: t.ID},
		corev1.EnvVar{Name: EnvAttempt, Value: strconv.Itoa(n)},
	)
	return podtemplate.TaskSpec{
		Key:       Key(run, t.ID, n),
		Namespace: run.Namespace,
		Image:     t.Image,
		Command:   t.Command,
		Args:      t.Args,
		Env:       env,
		Requests:  t.Requests,
		Limits:    t.Limits,
		// The task's timeout wins over the template's deadline; its
		// podOverride's activeDeadlineSeconds wins over both.
		ActiveDeadline: t.Timeout,
		Override:       t.Override,
	}
}

// RequireXComMiddleware marks the pods of tasks whose XCom value a
// downstream task reads (xcomInputs) with xcom.AnnotationRequired, so that
// such a task fails when it succeeds without writing a value, unless the
// pod already says otherwise (from a template or override).
func RequireXComMiddleware(wf *workflow.Workflow) podtemplate.Middleware {
	return func(ctx context.Context, pod *corev1.Pod) error {
		key, err := kubexec.KeyFromObject(pod)
		if err != nil {
			return err
		}
		if key.WorkflowID != wf.ID || !wf.XComRead(key.TaskID) {
			return nil
		}
		if _, ok := pod.Annotations[xcom.AnnotationRequired]; ok {
			return nil
		}
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[xcom.AnnotationRequired] = "true"
		return nil
	}
}

// InputError says why a task cannot get one of its XCom inputs: the
// upstream attempt produced no value, or its value is gone or too large to
// pass. Launching again would not help: the task fails without running.
type InputError struct {
	// Env is the task's environment variable; Upstream the task whose
	// value it should receive, and Attempt that task's succeeded attempt.
	Env      string
	Upstream string
	Attempt  int
	Err      error
}

func (e *InputError) Error() string {
	return fmt.Sprintf("its input %s is the XCom value of %s (attempt %d): %v", e.Env, e.Upstream, e.Attempt, e.Err)
}

func (e *InputError) Unwrap() error { return e.Err }

// spec returns the TaskSpec of attempt n of wt with its XCom inputs: each
// variable of wt.XComInputs set to the value of its upstream task's
// succeeded attempt, as JSON text (a text value as a JSON string). The
// error is an *InputError when an input cannot be had.
func (s *Scheduler) spec(ctx context.Context, wt *workflow.Task, n int) (podtemplate.TaskSpec, error) {
	spec := Spec(s.run, wt, n)
	if len(wt.XComInputs) == 0 {
		return spec, nil
	}
	envs := make([]string, 0, len(wt.XComInputs))
	for env := range wt.XComInputs {
		envs = append(envs, env)
	}
	sort.Strings(envs)
	for _, env := range envs {
		upID := wt.XComInputs[env]
		up, err := s.store.GetTask(ctx, s.run.ID, upID)
		if err != nil {
			return spec, err
		}
		if up.State != sqlitestore.TaskSucceeded {
			return spec, &InputError{Env: env, Upstream: upID, Attempt: up.Attempt, Err: fmt.Errorf("%s is %s, not succeeded", upID, up.State)}
		}
		r, ok, err := s.store.LoadResult(ctx, Key(s.run, upID, up.Attempt))
		if err != nil {
			return spec, err
		}
		if !ok || r.XComRef == "" {
			return spec, &InputError{Env: env, Upstream: upID, Attempt: up.Attempt,
				Err: fmt.Errorf("it produced none: the task must write its value, JSON or text, to the file named by $%s", xcom.EnvPath)}
		}
		err = xcom.Pass(ctx, s.cfg.XCom, &spec, xcom.Input{Ref: r.XComRef, Env: env})
		if errors.Is(err, xcom.ErrNotFound) || errors.Is(err, xcom.ErrTooLarge) {
			return spec, &InputError{Env: env, Upstream: upID, Attempt: up.Attempt, Err: err}
		}
		if err != nil {
			return spec, fmt.Errorf("XCom input %s of %s: %w", env, wt.ID, err)
		}
	}
	return spec, nil
}

// failInputs ends task t, whose XCom input cannot be had, without running
// it.
func (s *Scheduler) failInputs(ctx context.Context, t *sqlitestore.Task, ie *InputError, now time.Time) error {
	t.State, t.Reason, t.FinishedAt = sqlitestore.TaskFailed, "", now
	t.Message = "not run: " + ie.Error()
	s.cfg.Notef("%s: %s", t.TaskID, t.Message)
	return s.store.UpdateTask(ctx, *t)
}

// Run drives the run until it ends or ctx is done, and returns the run as
// it ended. It first resumes what an earlier scheduler left: see the
// package documentation.
func (s *Scheduler) Run(ctx context.Context) (sqlitestore.Run, error) {
	run, err := s.store.GetRun(ctx, s.cfg.RunID)
	if err != nil {
		return run, err
	}
	s.run = run
	if run.State.Terminal() {
		return run, nil
	}
	if err := s.resume(ctx); err != nil {
		return run, err
	}
	tick := time.NewTicker(s.cfg.Tick)
	defer tick.Stop()
	for {
		done, err := s.step(ctx)
		if err != nil {
			return s.run, err
		}
		if done {
			return s.store.GetRun(ctx, s.run.ID)
		}
		if err := s.exec.Heartbeat(); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("executor heartbeat failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return s.run, ctx.Err()
		case <-tick.C:
		case <-s.store.Saved():
		}
	}
}

// resume hands the executor again every recorded attempt that has no
// result yet.
func (s *Scheduler) resume(ctx context.Context) error {
	tasks, err := s.store.Tasks(ctx, s.run.ID)
	if err != nil {
		return err
	}
	for _, t := range tasks {
		if t.State != sqlitestore.TaskLaunched {
			continue
		}
		key := Key(s.run, t.TaskID, t.Attempt)
		if _, ok, err := s.store.LoadResult(ctx, key); err != nil {
			return err
		} else if ok {
			continue // the loop reads it
		}
		wt := s.wf.Task(t.TaskID)
		if wt == nil {
			return fmt.Errorf("run %s: task %q is not in its workflow definition", s.run.ID, t.TaskID)
		}
		spec, err := s.spec(ctx, wt, t.Attempt)
		var ie *InputError
		if errors.As(err, &ie) {
			if err := s.failInputs(ctx, &t, ie, time.Now()); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("resume %s attempt %d: %w", t.TaskID, t.Attempt, err)
		}
		err = s.exec.Queue(spec)
		switch {
		case errors.Is(err, executor.ErrDuplicate):
			s.cfg.Notef("%s: attempt %d: its pod was running before the restart; tracking it again", t.TaskID, t.Attempt)
		case err != nil:
			return fmt.Errorf("resume %s attempt %d: %w", t.TaskID, t.Attempt, err)
		default:
			s.cfg.Notef("%s: attempt %d: no pod was found after the restart; launching it (same attempt)", t.TaskID, t.Attempt)
		}
	}
	return nil
}

// step moves every task of the run forward once. It reports whether the
// run is over.
func (s *Scheduler) step(ctx context.Context) (bool, error) {
	run, err := s.store.GetRun(ctx, s.run.ID)
	if err != nil {
		return false, err
	}
	s.run = run
	if err := s.store.SetDriver(ctx, run.ID, s.pid); err != nil {
		return false, err
	}
	list, err := s.store.Tasks(ctx, run.ID)
	if err != nil {
		return false, err
	}
	tasks := make(map[string]*sqlitestore.Task, len(list))
	for i := range list {
		tasks[list[i].TaskID] = &list[i]
	}
	now := time.Now()

	// Cancellations.
	for _, t := range list {
		if t.State.Terminal() || !(run.CancelRequested || t.CancelRequested) {
			continue
		}
		if err := s.cancel(ctx, tasks[t.TaskID], now); err != nil {
			return false, err
		}
	}

	// Results of launched attempts.
	for _, wt := range s.order {
		t := tasks[wt.ID]
		if t == nil || t.State != sqlitestore.TaskLaunched {
			continue
		}
		r, ok, err := s.store.LoadResult(ctx, Key(run, t.TaskID, t.Attempt))
		if err != nil {
			return false, err
		}
		if !ok {
			continue
		}
		d := Decide(wt, *t, r)
		t.State, t.Reason, t.Message = d.State, r.Reason, d.Why
		switch d.State {
		case sqlitestore.TaskRetryWait:
			if d.System {
				t.SystemRetries++
			} else {
				t.RetriesUsed++
			}
			t.NotBefore = now.Add(d.Delay)
		default:
			t.FinishedAt = now
		}
		if err := s.store.UpdateTask(ctx, *t); err != nil {
			return false, err
		}
		s.cfg.Notef("%s: %s", t.TaskID, d.Why)
	}

	// Launches, in dependency order so that a failure propagates downstream
	// in one step.
	if !run.CancelRequested {
		for _, wt := range s.order {
			t := tasks[wt.ID]
			if t == nil {
				continue
			}
			switch t.State {
			case sqlitestore.TaskWaiting:
				ready, failed := true, ""
				for _, d := range wt.DependsOn {
					switch dep := tasks[d]; {
					case dep == nil:
						return false, fmt.Errorf("run %s: dependency %q of %q has no task state", run.ID, d, wt.ID)
					case dep.State == sqlitestore.TaskSucceeded:
					case dep.State.Terminal():
						failed = d
					default:
						ready = false
					}
				}
				if failed != "" {
					t.State, t.FinishedAt = sqlitestore.TaskUpstreamFailed, now
					t.Message = fmt.Sprintf("not run: its dependency %s ended %s", failed, tasks[failed].State)
					if err := s.store.UpdateTask(ctx, *t); err != nil {
						return false, err
					}
					continue
				}
				if ready {
					if err := s.launch(ctx, wt, t, 1, now); err != nil {
						return false, err
					}
				}
			case sqlitestore.TaskRetryWait:
				if !now.Before(t.NotBefore) {
					if err := s.launch(ctx, wt, t, t.Attempt+1, now); err != nil {
						return false, err
					}
				}
			}
		}
	}

	// The end.
	all, succeeded, cancelled := true, true, false
	for _, t := range tasks {
		all = all && t.State.Terminal()
		succeeded = succeeded && t.State == sqlitestore.TaskSucceeded
		cancelled = cancelled || t.State == sqlitestore.TaskCancelled
	}
	if !all {
		return false, nil
	}
	state, msg := sqlitestore.RunSucceeded, "every task succeeded"
	switch {
	case run.CancelRequested || (cancelled && !succeeded && !anyFailed(tasks)):
		state, msg = sqlitestore.RunCancelled, "cancelled on request"
	case !succeeded:
		state, msg = sqlitestore.RunFailed, failedSummary(s.order, tasks)
	}
	if err := s.store.FinishRun(ctx, run.ID, state, msg); err != nil {
		return false, err
	}
	return true, nil
}

func anyFailed(tasks map[string]*sqlitestore.Task) bool {
	for _, t := range tasks {
		if t.State == sqlitestore.TaskFailed {
			return true
		}
	}
	return false
}

func failedSummary(order []*workflow.Task, tasks map[string]*sqlitestore.Task) string {
	var failed []string
	for _, wt := range order {
		if t := tasks[wt.ID]; t != nil && t.State == sqlitestore.TaskFailed {
			failed = append(failed, wt.ID)
		}
	}
	switch len(failed) {
	case 0:
		return "some tasks did not succeed"
	case 1:
		return "task " + failed[0] + " failed"
	}
	return fmt.Sprintf("tasks %v failed", failed)
}

// launch records attempt n of t, then hands it to the executor. A task
// whose XCom inputs cannot be had fails without an attempt.
func (s *Scheduler) launch(ctx context.Context, wt *workflow.Task, t *sqlitestore.Task, n int, now time.Time) error {
	spec, err := s.spec(ctx, wt, n)
	var ie *InputError
	if errors.As(err, &ie) {
		return s.failInputs(ctx, t, ie, now)
	}
	if err != nil {
		return err
	}
	podName, err := kubexec.PodName(spec.Key)
	if err != nil {
		return err
	}
	t.State, t.Attempt, t.NotBefore = sqlitestore.TaskLaunched, n, time.Time{}
	if t.StartedAt.IsZero() {
		t.StartedAt = now
	}
	if n == 1 {
		t.Reason, t.Message = "", ""
	}
	a := sqlitestore.Attempt{RunID: s.run.ID, TaskID: t.TaskID, Attempt: n, Namespace: s.run.Namespace, PodName: podName, LaunchedAt: now}
	if err := s.store.Launch(ctx, *t, a); err != nil {
		return err
	}
	if err := s.exec.Queue(spec); err != nil && !errors.Is(err, executor.ErrDuplicate) {
		return fmt.Errorf("queue %s attempt %d: %w", t.TaskID, n, err)
	}
	return nil
}

// cancel ends a task that is not over: a launched attempt is revoked (its
// result, Revoked, ends the task), any other is cancelled at once.
func (s *Scheduler) cancel(ctx context.Context, t *sqlitestore.Task, now time.Time) error {
	if t.State == sqlitestore.TaskLaunched {
		err := s.exec.Revoke(Key(s.run, t.TaskID, t.Attempt))
		if err != nil && !errors.Is(err, executor.ErrUnknownAttempt) {
			return fmt.Errorf("revoke %s attempt %d: %w", t.TaskID, t.Attempt, err)
		}
		return nil
	}
	t.State, t.Reason, t.FinishedAt = sqlitestore.TaskCancelled, kubexec.ReasonRevoked, now
	t.Message = "cancelled on request before it ran"
	if t.Attempt > 0 {
		t.Message = fmt.Sprintf("cancelled on request while waiting to retry (after attempt %d)", t.Attempt)
	}
	s.cfg.Notef("%s: %s", t.TaskID, t.Message)
	return s.store.UpdateTask(ctx, *t)
}
