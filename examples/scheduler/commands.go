package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/examples/scheduler/sqlitestore"
	"github.com/kubexec/kubexec/examples/scheduler/termtext"
)

// openExisting opens the database for a command that only reads what runs
// left, and says so when there is none.
func openExisting(ctx context.Context, o *options) (*sqlitestore.Store, error) {
	if _, err := os.Stat(o.db); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no database at %s: no run yet (start one with `scheduler run FILE`, or pass --db)", o.db)
	}
	return sqlitestore.Open(ctx, o.db)
}

// resolveTask finds the task that ref names: RUN/TASK_ID, or TASK_ID in
// the latest run that has it.
func resolveTask(ctx context.Context, store *sqlitestore.Store, ref string) (sqlitestore.Run, sqlitestore.Task, error) {
	if runID, taskID, ok := strings.Cut(ref, "/"); ok {
		run, err := store.GetRun(ctx, runID)
		if err != nil {
			return run, sqlitestore.Task{}, err
		}
		t, err := store.GetTask(ctx, runID, taskID)
		return run, t, err
	}
	runs, err := store.ListRuns(ctx, 100, false)
	if err != nil {
		return sqlitestore.Run{}, sqlitestore.Task{}, err
	}
	for _, run := range runs {
		if t, err := store.GetTask(ctx, run.ID, ref); err == nil {
			return run, t, nil
		}
	}
	return sqlitestore.Run{}, sqlitestore.Task{}, fmt.Errorf("no run has a task %q: name it as RUN/TASK (see `scheduler status`)", ref)
}

// driverAlive reports whether a scheduler process said recently that it
// drives run.
func driverAlive(run sqlitestore.Run) bool {
	return !run.State.Terminal() && run.DriverPID != 0 && time.Since(run.DriverSeenAt) < 10*time.Second
}

// cmdStatus lists the latest runs, or shows one run's tasks.
func cmdStatus(ctx context.Context, o *options, runID string) error {
	store, err := openExisting(ctx, o)
	if err != nil {
		return err
	}
	defer store.Close()
	if runID != "" {
		run, err := store.GetRun(ctx, runID)
		if err != nil {
			return err
		}
		end := run.FinishedAt
		if end.IsZero() {
			end = time.Now()
		}
		fmt.Fprintf(o.stdout, "Run %s of workflow %s: %s after %s", termtext.Line(run.ID), termtext.Line(run.Workflow), run.State, end.Sub(run.CreatedAt).Round(time.Second))
		if m := termtext.Line(run.Message); m != "" {
			fmt.Fprintf(o.stdout, " (%s)", m)
		}
		fmt.Fprintf(o.stdout, "\nNamespace %s, started %s from %s", termtext.Line(run.Namespace), run.CreatedAt.Format(time.DateTime), termtext.Line(run.Source))
		switch {
		case driverAlive(run):
			fmt.Fprintf(o.stdout, ", driven by scheduler pid %d\n\n", run.DriverPID)
		case !run.State.Terminal():
			fmt.Fprintf(o.stdout, "\nNo scheduler is driving it: `scheduler --kubeconfig FILE resume %s` continues it.\n\n", run.ID)
		default:
			fmt.Fprint(o.stdout, "\n\n")
		}
		writeRunTable(ctx, o.stdout, o.db, store, nil, run)
		return nil
	}
	runs, err := store.ListRuns(ctx, 20, false)
	if err != nil {
		return err
	}
	if len(runs) == 0 {
		fmt.Fprintln(o.stdout, "No runs yet.")
		return nil
	}
	tw := tabwriter.NewWriter(o.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tWORKFLOW\tSTATE\tSTARTED\tTIME\tTASKS\tSCHEDULER")
	for _, run := range runs {
		tasks, err := store.Tasks(ctx, run.ID)
		if err != nil {
			return err
		}
		counts := map[string]int{}
		for _, t := range tasks {
			counts[string(t.State)]++
		}
		var parts []string
		for _, s := range []sqlitestore.TaskState{sqlitestore.TaskSucceeded, sqlitestore.TaskLaunched, sqlitestore.TaskRetryWait, sqlitestore.TaskWaiting, sqlitestore.TaskFailed, sqlitestore.TaskUpstreamFailed, sqlitestore.TaskCancelled} {
			if n := counts[string(s)]; n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n, s))
			}
		}
		end := run.FinishedAt
		if end.IsZero() {
			end = time.Now()
		}
		driver := "-"
		if driverAlive(run) {
			driver = fmt.Sprintf("pid %d", run.DriverPID)
		} else if !run.State.Terminal() {
			driver = "none (resume it)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", termtext.Line(run.ID), termtext.Line(run.Workflow), run.State, run.CreatedAt.Format(time.DateTime),
			end.Sub(run.CreatedAt).Round(time.Second), strings.Join(parts, ", "), driver)
	}
	return tw.Flush()
}

// pickAttempt returns attempt n of task (the latest when n is 0).
func pickAttempt(ctx context.Context, store *sqlitestore.Store, run sqlitestore.Run, task sqlitestore.Task, n int) (sqlitestore.Attempt, error) {
	attempts, err := store.Attempts(ctx, run.Workflow, run.ID, task.TaskID)
	if err != nil {
		return sqlitestore.Attempt{}, err
	}
	if len(attempts) == 0 {
		return sqlitestore.Attempt{}, fmt.Errorf("%s/%s has not started (it is %s): no pod, no logs yet", run.ID, task.TaskID, task.State)
	}
	if n == 0 {
		return attempts[len(attempts)-1], nil
	}
	for _, a := range attempts {
		if a.Attempt == n {
			return a, nil
		}
	}
	return sqlitestore.Attempt{}, usageError{fmt.Errorf("%s/%s has no attempt %d (it has 1 to %d)", run.ID, task.TaskID, n, attempts[len(attempts)-1].Attempt)}
}

// cmdCancel cancels a run or a task. A scheduler that drives the run
// carries the cancellation out; without one, a run's cancellation is
// driven here (its attempts are revoked), or, without a cluster, recorded.
func cmdCancel(ctx context.Context, o *options, ref string) (int, error) {
	store, err := openExisting(ctx, o)
	if err != nil {
		return exitFailed, err
	}
	defer store.Close()
	var run sqlitestore.Run
	taskID := ""
	if strings.Contains(ref, "/") {
		var t sqlitestore.Task
		if run, t, err = resolveTask(ctx, store, ref); err != nil {
			return exitFailed, err
		}
		taskID = t.TaskID
	} else if run, err = store.GetRun(ctx, ref); errors.Is(err, sqlitestore.ErrNotFound) {
		var t sqlitestore.Task
		if run, t, err = resolveTask(ctx, store, ref); err != nil {
			return exitFailed, fmt.Errorf("no run %q, and %w", ref, err)
		}
		taskID = t.TaskID
	} else if err != nil {
		return exitFailed, err
	}
	what := "run " + run.ID
	if taskID != "" {
		what = "task " + run.ID + "/" + taskID
	}
	if run.State.Terminal() {
		fmt.Fprintf(o.stdout, "Run %s is over (%s): nothing to cancel.\n", run.ID, run.State)
		return exitOK, nil
	}
	if taskID != "" {
		if t, err := store.GetTask(ctx, run.ID, taskID); err != nil {
			return exitFailed, err
		} else if t.State.Terminal() {
			fmt.Fprintf(o.stdout, "Task %s/%s is over (%s): nothing to cancel.\n", run.ID, taskID, t.State)
			return exitOK, nil
		}
	}
	if err := store.RequestCancel(ctx, run.ID, taskID); err != nil {
		return exitFailed, err
	}
	lk, err := acquireLock(o.db)
	if errors.Is(err, errLocked) {
		fmt.Fprintf(o.stdout, "Cancellation of %s requested; the running scheduler carries it out...\n", what)
		return waitCancelled(ctx, o, store, run.ID, taskID)
	}
	if err != nil {
		return exitFailed, err
	}
	defer lk.release()
	if taskID != "" {
		fmt.Fprintf(o.stdout, "Cancellation of %s recorded. No scheduler is driving run %s: it takes effect when `scheduler resume %s` runs.\n", what, run.ID, run.ID)
		return exitOK, nil
	}
	if o.kubeconfig == "" {
		if err := cancelOffline(ctx, store, run); err != nil {
			return exitFailed, err
		}
		fmt.Fprintf(o.stdout, "Run %s marked cancelled. No --kubeconfig was given, so no pod was touched: if the run's pods are on a cluster that still exists, pass its --kubeconfig to revoke them.\n", run.ID)
		return exitOK, nil
	}
	fmt.Fprintf(o.stdout, "No scheduler is driving run %s: revoking its attempts from here.\n", run.ID)
	return resumeRun(ctx, o, store, run)
}

// waitCancelled waits for the driving scheduler to end the cancelled run
// or task.
func waitCancelled(ctx context.Context, o *options, store *sqlitestore.Store, runID, taskID string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		run, err := store.GetRun(ctx, runID)
		if err != nil {
			return exitFailed, err
		}
		if taskID == "" && run.State.Terminal() {
			fmt.Fprintf(o.stdout, "Run %s: %s (%s)\n", run.ID, run.State, termtext.Line(run.Message))
			return exitOK, nil
		}
		if taskID != "" {
			t, err := store.GetTask(ctx, runID, taskID)
			if err != nil {
				return exitFailed, err
			}
			if t.State.Terminal() {
				fmt.Fprintf(o.stdout, "Task %s/%s: %s (%s)\n", runID, taskID, t.State, termtext.Line(t.Message))
				return exitOK, nil
			}
		}
		select {
		case <-ctx.Done():
			return exitFailed, fmt.Errorf("the scheduler driving run %s has not finished the cancellation yet; `scheduler status %s` shows where it is", runID, runID)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// cancelOffline marks every unfinished task of run cancelled, and the run.
func cancelOffline(ctx context.Context, store *sqlitestore.Store, run sqlitestore.Run) error {
	tasks, err := store.Tasks(ctx, run.ID)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, t := range tasks {
		if t.State.Terminal() {
			continue
		}
		t.State, t.Reason, t.FinishedAt = sqlitestore.TaskCancelled, kubexec.ReasonRevoked, now
		t.Message = "cancelled on request with no scheduler running"
		if err := store.UpdateTask(ctx, t); err != nil {
			return err
		}
	}
	return store.FinishRun(ctx, run.ID, sqlitestore.RunCancelled, "cancelled on request with no scheduler running")
}

// cmdCleanup deletes this scheduler's kept pods (labelled done: their
// results are saved) that finished longer ago than --older-than, like
// Airflow's `kubernetes cleanup-pods`.
func cmdCleanup(ctx context.Context, o *options) error {
	store, err := openExisting(ctx, o)
	if err != nil {
		return err
	}
	defer store.Close()
	cl, err := connect(ctx, o, false)
	if err != nil {
		return err
	}
	execID, err := store.ExecutorID(ctx)
	if err != nil {
		return err
	}
	namespaces := []string{o.namespace}
	if o.namespace == "" {
		runs, err := store.ListRuns(ctx, 1000, false)
		if err != nil {
			return err
		}
		namespaces = nil
		for _, r := range runs {
			if r.Cluster == cl.id && !slices.Contains(namespaces, r.Namespace) {
				namespaces = append(namespaces, r.Namespace)
			}
		}
	}
	sel, err := kubexec.DoneSelector(execID)
	if err != nil {
		return err
	}
	deleted, young, held := 0, 0, 0
	for _, ns := range namespaces {
		pods, err := cl.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return fmt.Errorf("list pods in %s: %w", ns, err)
		}
		for _, pod := range pods.Items {
			if slices.Contains(pod.Finalizers, kubexec.FinalizerResultTracking) {
				held++ // its result is not saved yet: the executor releases it
				continue
			}
			age := time.Since(finishedAt(&pod))
			if age < o.olderThan {
				young++
				continue
			}
			key, _ := kubexec.KeyFromObject(&pod)
			verb := "would delete"
			if !o.dryRun {
				verb = "deleted"
				err := cl.client.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}})
				if err != nil && !apierrors.IsNotFound(err) {
					return fmt.Errorf("delete pod %s/%s: %w", ns, pod.Name, err)
				}
			}
			deleted++
			fmt.Fprintf(o.stdout, "%s pod %s/%s (%s/%s attempt %d, %s, finished %s ago)\n", verb, ns, termtext.Line(pod.Name), termtext.Line(key.RunID), termtext.Line(key.TaskID), key.Attempt,
				termtext.Line(strings.ToLower(string(pod.Status.Phase))), age.Round(time.Second))
		}
	}
	verb := "Deleted"
	if o.dryRun {
		verb = "Would delete"
	}
	fmt.Fprintf(o.stdout, "%s %d kept pods in %s; %d finished less than %s ago are kept", verb, deleted, strings.Join(namespaces, ", "), young, o.olderThan)
	if held > 0 {
		fmt.Fprintf(o.stdout, "; %d still wait for their results to be saved (a running scheduler releases them)", held)
	}
	fmt.Fprintln(o.stdout, ".")
	return nil
}

// finishedAt is when a pod's last container finished, or when the pod was
// created.
func finishedAt(pod *corev1.Pod) time.Time {
	t := pod.CreationTimestamp.Time
	for _, cs := range pod.Status.ContainerStatuses {
		if term := cs.State.Terminated; term != nil && term.FinishedAt.After(t) {
			t = term.FinishedAt.Time
		}
	}
	return t
}
