package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"k8s.io/client-go/util/workqueue"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/watch"
)

// releasedMemory bounds how long a released pod is remembered if the watch
// never reports it gone.
const releasedMemory = 10 * time.Minute

// observe handles a pod added or changed, on the watch's goroutine.
func (e *Executor) observe(pod *corev1.Pod) {
	key, err := kubexec.KeyFromObject(pod)
	if err != nil {
		e.log.Warn("ignoring a pod with malformed kubexec metadata", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		return
	}
	var foreign error
	var reason string
	defer func() {
		if foreign != nil { // reported after e.mu is unlocked
			e.reportForeign(pod, reason, foreign)
		}
	}()
	// Host code (the XCom collector) runs before the lock is taken.
	xcomWaiting := e.cfg.XCom != nil && e.cfg.XCom.Waiting(pod)
	e.mu.Lock()
	defer e.unlock()
	if _, ok := e.released[pod.UID]; ok {
		return // a stale event from before its release
	}
	a, ok := e.attempts[key]
	// Only a pod the executor can tell its deployment made decides
	// anything: the one it created (by UID), or one with a valid
	// provenance mark.
	var uid string
	if ok {
		uid = string(a.podUID)
	}
	if reason, foreign = e.genuine(pod, key, uid); foreign != nil {
		return
	}
	if !ok {
		// A pod of this executor that this process did not launch: left
		// by an earlier run with the same id, or adopted.
		a = &attempt{key: key, stage: stageLaunched, queuedAt: time.Now()}
		e.trackLocked(a)
		e.logLocked(slog.LevelInfo, "tracking an existing pod", "task", key, "pod", pod.Namespace+"/"+pod.Name)
	}
	switch a.stage {
	case stageStopping:
		// The result waits for this pod to stop: look again.
		a.lastPod = pod
		e.results.Add(key)
		return
	case stageCancelling:
		// Revoked during a create: stopping reads this pod once the
		// create returns.
		a.lastPod = pod
		return
	case stageQueued, stageLaunching, stageVerifying:
		// The pod of a create whose outcome is not known yet, or one
		// that came back into the watch.
		if !e.moveLocked(a, stageLaunched) {
			return
		}
		a.launch = nil // the pod exists: no create is sent again
	case stageLaunched:
	default:
		return // its outcome is known
	}
	a.setPod(pod)
	a.lastPod = pod
	e.classifyLocked(a, pod, time.Now())
	e.changedLocked(a) // its pod changed: pending, running, its node
	if xcomWaiting && a.stage == stageLaunched && !a.xcom.done {
		a.xcom.waiting = true
		a.lastPod = pod // the pod the value is collected from
		e.results.Add(key)
	}
	e.reportSlotsLocked()
}

// settleAdopted takes over an ended pod of a dead instance, for the
// adoption sweep that claimed it or for Adopt. The pod keeps its owner's
// label and never enters this executor's watch: it is tracked from a copy
// of the listed pod, which has ended and needs no later state, and its
// result is saved and the pod released as for a pod of this executor's
// own. A stopping executor takes nothing over (a later sweep does).
func (e *Executor) settleAdopted(pod *corev1.Pod) (bool, error) {
	key, err := kubexec.KeyFromObject(pod)
	if err != nil {
		return false, fmt.Errorf("malformed kubexec metadata: %w", err)
	}
	if reason, err := e.genuine(pod, key, ""); err != nil {
		e.reportForeign(pod, reason, err)
		return false, err
	}
	e.mu.Lock()
	defer e.unlock()
	if e.stopped {
		return false, nil
	}
	if _, ok := e.released[pod.UID]; ok {
		return false, nil // released since it was listed
	}
	if a, ok := e.attempts[key]; ok {
		if a.podUID == pod.UID {
			return false, nil // taken over already, not released yet
		}
		return false, fmt.Errorf("task %s is tracked already with another pod (%s/%s)", key, a.namespace, a.podName)
	}
	// A copy: the listed pod shares its page with hundreds of others.
	pod = pod.DeepCopy()
	pod.ManagedFields = nil
	a := &attempt{key: key, stage: stageLaunched, queuedAt: time.Now()}
	e.trackLocked(a)
	a.setPod(pod)
	e.classifyLocked(a, pod, time.Now()) // terminal: the pod has ended
	e.logLocked(slog.LevelDebug, "settling an ended pod of a dead instance", "task", key, "pod", pod.Namespace+"/"+pod.Name, "owner", pod.Labels[kubexec.LabelExecutor])
	return true, nil
}

// classifyLocked decides whether a's pod has ended and, if so, records the
// result.
func (e *Executor) classifyLocked(a *attempt, pod *corev1.Pod, now time.Time) {
	// The pod the result is read from is the one XCom and the log archive
	// read too (the watch's cache may be ahead of the events delivered).
	a.lastPod = pod
	// Timeouts count from this executor's own sightings of the pod, not
	// from timestamps that other machines' clocks wrote.
	c := watch.ClassifyObserved(pod, now, e.cfg.Classify, &a.obs)
	a.timed = !c.RecheckAt.IsZero()
	if pod.DeletionTimestamp != nil && !(c.Phase == watch.PhaseTerminal && c.Reason == kubexec.ReasonSucceeded) {
		if rec, ok := endedFromObject(pod); ok {
			// kubexec ended it (revoked, timed out) before a restart or
			// an adoption: its outcome is the one recorded.
			c = watch.Classification{Phase: watch.PhaseTerminal, Reason: rec.Reason, Message: rec.Message}
		} else {
			// Someone else deleted it: the tracking finalizer holds it
			// until the result is saved.
			c = watch.ClassifyDeleted(pod, now)
		}
	}
	if c.Phase != watch.PhaseTerminal {
		if a.stage == stageLaunched {
			a.lastPod = nil // the watch's state is the one (podLocked)
		}
		return
	}
	r := classifiedResult(a.key, c, pod, now)
	// A pod that ended by classification while it could still run
	// (unschedulable, image pull failure) is deleted whatever the GC
	// policy.
	a.podMayRun = !watch.Ended(pod)
	e.endLocked(a, r, a.settledStage())
}

// classifiedResult is the Result of an attempt whose pod's classification
// is terminal: the one place that turns a classification into a Result
// (newResultLocked makes those of attempts ended without one). FinishedAt
// is when the pod's containers say they finished, else now.
func classifiedResult(key kubexec.TaskKey, c watch.Classification, pod *corev1.Pod, now time.Time) kubexec.Result {
	r := kubexec.Result{
		Key:             key,
		State:           c.Reason.State(),
		Reason:          c.Reason,
		ExitCode:        c.ExitCode,
		Container:       c.Container,
		ContainerExited: c.ContainerExited,
		Message:         c.Message,
		PodName:         pod.Name,
		Namespace:       pod.Namespace,
		Node:            pod.Spec.NodeName,
		StartedAt:       c.StartedAt,
		FinishedAt:      c.FinishedAt,
	}
	if r.FinishedAt.IsZero() {
		r.FinishedAt = now
	}
	return r
}

// observeDeleted handles a pod that left the watch, on the watch's
// goroutine. It left because it was deleted, or because its labels no
// longer match (done, or adopted by another executor); the result worker
// finds out which.
func (e *Executor) observeDeleted(pod *corev1.Pod, gone bool) {
	key, err := kubexec.KeyFromObject(pod)
	if err != nil {
		return
	}
	e.mu.Lock()
	defer e.unlock()
	if _, ok := e.released[pod.UID]; ok {
		delete(e.released, pod.UID) // it left the watch: no more events
		return
	}
	a, ok := e.attempts[key]
	if !ok {
		return
	}
	if _, err := e.genuine(pod, key, string(a.podUID)); err != nil {
		return
	}
	switch a.stage {
	case stageStopping:
		// The pod the result waits for has stopped.
		if e.moveLocked(a, stageFinishing) {
			e.results.Add(key)
		}
	case stageCancelling:
		if a.pod == podMaybe {
			a.pod = podGone // the pod of an earlier create is gone
		}
	case stageLaunched, stageVerifying:
		if a.stage == stageLaunched && !e.moveLocked(a, stageVerifying) {
			return
		}
		a.lastPod = pod
		e.results.Add(key)
	}
}

// stopStep is the step of stageStopping, on a result worker. kubexec
// decided that the attempt's pod must end, or found it ending while it may
// still run. The step records the attempt's outcome on the pod
// (kubexec.AnnotationEnded, so that a restart or an adoption meanwhile
// saves that outcome), deletes the pod guarded by its UID, and moves the
// attempt to finishing only once the pod is gone or can no longer start a
// container (watch.Stopped): a retry the host starts on the result never runs
// beside it. After Config.PodStopWait (at once when it is negative) the
// result is saved anyway, with Result.PodMayStillRun set unless the pod
// had stopped.
func (e *Executor) stopStep(ctx context.Context, a *attempt) error {
	e.mu.Lock()
	if a.stage != stageStopping {
		e.unlock()
		return nil
	}
	sent, gone := a.stop.sent, a.stop.gone
	outcome := ended{Reason: a.result.Reason, Message: a.result.Message}
	e.unlock()
	if !sent {
		var err error
		if gone, err = e.endPod(ctx, a, outcome); err != nil {
			return err
		}
		e.mu.Lock()
		a.stop.sent, a.stop.gone = true, gone
		e.unlock()
	}
	if !gone {
		// The watch's view, or the pod's own when the watch does not hold
		// it (not seen yet, or left it).
		var err error
		if gone, err = e.refreshStopping(ctx, a); err != nil {
			return err
		}
	}
	e.mu.Lock()
	stopped := gone || watch.Stopped(a.lastPod)
	waited := time.Since(a.resultAt)
	ns, name := a.namespace, a.podName
	e.unlock()
	wait := e.cfg.PodStopWait
	if !stopped && wait > 0 && waited < wait {
		return nil // a pod event or the resync looks again
	}
	e.mu.Lock()
	if a.stage == stageStopping { // else the watch saw the pod go meanwhile
		if !stopped {
			a.result.PodMayStillRun = true
			if wait > 0 {
				e.logLocked(slog.LevelWarn, "the pod did not stop within PodStopWait; saving the result anyway", "task", a.key, "pod", ns+"/"+name, "waited", waited.Round(time.Second))
			}
		}
		e.moveLocked(a, stageFinishing)
	}
	e.unlock()
	return e.saveStep(ctx, a)
}

// endPod records outcome on the attempt's pod and deletes it, both guarded
// by the pod's UID. It reports whether the pod is gone: not found, or
// replaced by another of its name. A pod whose create's outcome was
// unknown is read first, and left alone unless it is this executor's pod
// of this attempt.
func (e *Executor) endPod(ctx context.Context, a *attempt, outcome ended) (bool, error) {
	e.mu.Lock()
	ns, name, uid, grace, last := a.namespace, a.podName, a.podUID, a.grace, a.lastPod
	e.unlock()
	if uid == "" {
		pod, err := e.readOwnPod(ctx, a.key, ns, name)
		if err != nil || pod == nil {
			return pod == nil && err == nil, err
		}
		uid, last = pod.UID, pod
		e.mu.Lock()
		a.podUID, a.lastPod = uid, watch.Trim(pod)
		e.unlock()
	}
	if last == nil || !watch.Ended(last) {
		gone, err := e.annotateEnded(ctx, ns, name, uid, outcome)
		if gone || err != nil {
			return gone, err
		}
	}
	return e.deletePod(ctx, ns, name, uid, grace)
}

// readOwnPod reads the pod ns/name and returns it when it is this
// executor's pod of key, else nil.
func (e *Executor) readOwnPod(ctx context.Context, key kubexec.TaskKey, ns, name string) (*corev1.Pod, error) {
	pod, err := e.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("get pod %s/%s: %w", ns, name, err)
	}
	if k, err := kubexec.KeyFromObject(pod); err != nil || k != key || pod.Labels[kubexec.LabelExecutor] != e.cfg.ExecutorID {
		return nil, nil
	}
	return pod, nil
}

// annotateEnded writes kubexec.AnnotationEnded on the pod with the given
// UID. It reports whether the pod is gone (not found, or another pod of
// that name).
func (e *Executor) annotateEnded(ctx context.Context, ns, name string, uid types.UID, outcome ended) (bool, error) {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"uid":         uid,
		"annotations": map[string]string{kubexec.AnnotationEnded: outcome.annotation()},
	}})
	if err != nil {
		return false, err
	}
	_, err = e.client.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	switch {
	case err == nil:
		return false, nil
	case apierrors.IsNotFound(err), apierrors.IsConflict(err), apierrors.IsInvalid(err):
		// Invalid or Conflict: the UID in the patch is not the pod's.
		return true, nil
	default:
		return false, fmt.Errorf("record the outcome on pod %s/%s: %w", ns, name, err)
	}
}

// refreshStopping updates the stopping attempt's view of its pod from the
// watch, or, when the watch does not hold that pod, from the API server.
// It reports whether the pod is gone.
func (e *Executor) refreshStopping(ctx context.Context, a *attempt) (bool, error) {
	e.mu.Lock()
	ns, name, uid := a.namespace, a.podName, a.podUID
	if e.watcher != nil {
		if pod, ok := e.watcher.Get(ns, name); ok && pod.UID == uid {
			a.lastPod = pod
			e.unlock()
			return false, nil
		}
	}
	e.unlock()
	pod, err := e.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("get pod %s/%s: %w", ns, name, err)
	case pod.UID != uid:
		return true, nil
	}
	e.mu.Lock()
	a.lastPod = watch.Trim(pod)
	e.unlock()
	return false, nil
}

// resyncLoop classifies tracked pods again every ResyncInterval, for
// outcomes that depend on time alone.
func (e *Executor) resyncLoop() {
	t := time.NewTicker(e.cfg.ResyncInterval)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
			e.resync(false)
		}
	}
}

// resync applies queued timeouts, classifies again with the current time
// the launched pods whose classification a timeout can change (an image
// pull, a start, a pod unschedulable: attempt.timed), and (when retryNow)
// hands the attempts whose result is known to their workers at once,
// except those whose last step failed: they wait for their backoff. The others change only by an event of
// their pod, so resync costs nothing per running pod.
func (e *Executor) resync(retryNow bool) {
	now := time.Now()
	e.mu.Lock()
	defer e.unlock()
	for uid, at := range e.released {
		if now.Sub(at) > releasedMemory {
			delete(e.released, uid)
		}
	}
	for _, a := range e.attempts {
		switch {
		case a.stage.hasResult():
			// A step that failed waits for its backoff: Sync does not
			// hammer a failing store or API server once per tick.
			if (retryNow || (a.stage == stageStopping && a.stop.sent)) && e.results.NumRequeues(a.key) == 0 && e.releases.NumRequeues(a.key) == 0 {
				e.enqueueLocked(a)
			}
		case a.stage == stageQueued && a.launch != nil && a.launch.heldBy == "" && !a.launch.firstTry.IsZero() && now.Sub(a.launch.firstTry) > e.cfg.QueuedTimeout:
			e.unlaunchedLocked(a)
			e.endLocked(a, e.newResultLocked(a, kubexec.ReasonQueuedTimeout, queuedTimeoutMessage(a, e.cfg.QueuedTimeout)), a.settledStage())
		case (a.stage == stageLaunched || a.stage == stageVerifying) && a.timed && e.watcher != nil:
			if pod, ok := e.watcher.Get(a.namespace, a.podName); ok && pod.UID == a.podUID {
				e.classifyLocked(a, pod, now)
			}
		}
	}
}

// queuedTimeoutMessage says why a could not be launched.
func queuedTimeoutMessage(a *attempt, timeout time.Duration) string {
	why := a.refusal()
	if why == "" {
		why = "no create could be sent (the executor's Lease was lost, or creates were paused)"
	}
	return fmt.Sprintf("the attempt could not be launched within %s of getting a slot: %s", timeout, why)
}

// worker runs step for the keys of queue until the queue shuts down,
// retrying a failed step with the queue's backoff.
func (e *Executor) worker(queue workqueue.TypedRateLimitingInterface[kubexec.TaskKey], what string, step func(context.Context, kubexec.TaskKey) error) {
	for {
		key, shutdown := queue.Get()
		if shutdown {
			return
		}
		err := step(e.ctx, key)
		if err != nil && e.ctx.Err() == nil {
			e.log.Warn(what+" failed; retrying", "task", key, "err", err)
			queue.AddRateLimited(key)
		} else {
			queue.Forget(key)
		}
		queue.Done(key)
	}
}

// enqueueLocked hands a to the workers of its stage: the result workers
// until its result is saved, the release workers after.
func (e *Executor) enqueueLocked(a *attempt) {
	switch a.stage {
	case stageStopping, stageFinishing:
		e.results.Add(a.key)
	case stageReleasing:
		e.releases.Add(a.key)
	}
}

// resultStep runs the step of key's stage that belongs to the result
// workers: verifying a pod that left the watch, collecting an XCom value
// that a sidecar waits for, waiting for a pod to stop, saving the result.
func (e *Executor) resultStep(ctx context.Context, key kubexec.TaskKey) error {
	e.mu.Lock()
	a, ok := e.attempts[key]
	if !ok {
		e.unlock()
		return nil
	}
	st, collect, pod := a.stage, a.xcom.waiting, e.podLocked(a)
	e.unlock()
	switch st {
	case stageVerifying:
		return e.verifyStep(ctx, a)
	case stageLaunched:
		if collect && pod != nil {
			// The main container ended and the xcom sidecar keeps the
			// pod running: read the value, which stops the sidecar.
			return e.collectXCom(ctx, a, pod)
		}
	case stageStopping:
		return e.stopStep(ctx, a)
	case stageFinishing:
		return e.saveStep(ctx, a)
	}
	return nil
}

// saveStep is the step of stageFinishing, on a result worker: it collects
// the XCom value and saves the result, then hands the attempt to the
// release workers (releasing takes API calls, and maybe a log archive:
// other results are not kept waiting behind it).
func (e *Executor) saveStep(ctx context.Context, a *attempt) error {
	e.mu.Lock()
	if a.stage != stageFinishing {
		e.unlock()
		return nil
	}
	hasPod, pod := a.hasPod(), a.lastPod
	e.unlock()
	if e.cfg.XCom != nil && hasPod && pod != nil {
		if err := e.collectXCom(ctx, a, pod); err != nil {
			return err
		}
	}
	e.mu.Lock()
	r, resultAt := a.result.ValidUTF8(), a.resultAt
	e.unlock()
	if err := e.store.SaveResult(ctx, r); err != nil {
		if ctx.Err() == nil {
			e.cfg.Metrics.ObserveSaveError(r.Reason)
		}
		return fmt.Errorf("StateStore.SaveResult: %w", err)
	}
	e.cfg.Metrics.ObserveResult(r.Reason, time.Since(resultAt))
	e.mu.Lock()
	moved := e.moveLocked(a, stageReleasing)
	e.unlock()
	e.log.Debug("result saved", "task", a.key, "reason", r.Reason)
	if moved {
		e.releases.Add(a.key)
	}
	return nil
}

// releaseStep is the step of stageReleasing, on a release worker: it
// archives the logs and releases the pod.
func (e *Executor) releaseStep(ctx context.Context, key kubexec.TaskKey) error {
	e.mu.Lock()
	a, ok := e.attempts[key]
	if !ok || a.stage != stageReleasing {
		e.unlock()
		return nil
	}
	hasPod, pod, archived := a.hasPod(), a.lastPod, a.release.archived
	e.unlock()
	if e.cfg.LogArchiver != nil && hasPod && pod != nil && !archived {
		// Before the pod may go: the tracking finalizer holds it until
		// the archive is complete, so a crash only archives again.
		if err := e.cfg.LogArchiver.Archive(ctx, pod, key); err != nil {
			return fmt.Errorf("archive logs: %w", err)
		}
		e.mu.Lock()
		a.release.archived = true
		e.unlock()
	}
	return e.release(ctx, a)
}

// collectXCom reads the attempt's XCom value once and records its
// reference in the result (or, for a value that is wrong, fails the
// result with the value's error). Errors other than a wrong value are
// retried by the caller; so is a Collect that did not return within
// Config.XComTimeout.
func (e *Executor) collectXCom(ctx context.Context, a *attempt, pod *corev1.Pod) error {
	e.mu.Lock()
	done := a.xcom.done
	e.unlock()
	if !done {
		timeout := e.cfg.XComTimeout
		cctx, cancel := context.WithTimeout(ctx, timeout)
		ref, err := e.cfg.XCom.Collect(cctx, pod, a.key)
		cut := ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded)
		cancel()
		if err != nil && cut && !errors.Is(err, kubexec.ErrXComValue) {
			err = fmt.Errorf("it did not return within %s, so other results are saved before it is tried again: %w", timeout, err)
		}
		switch {
		case errors.Is(err, kubexec.ErrXComValue):
			e.mu.Lock()
			a.xcom.done, a.xcom.err = true, err
			e.unlock()
		case err != nil:
			return fmt.Errorf("collect xcom: %w", err)
		default:
			e.mu.Lock()
			a.xcom.done, a.xcom.ref = true, ref
			e.unlock()
		}
	}
	e.mu.Lock()
	defer e.unlock()
	a.xcom.waiting = false
	if a.stage.hasResult() && a.stage != stageReleasing {
		a.result.XComRef = a.xcom.ref
		if a.xcom.err != nil && a.result.Reason == kubexec.ReasonSucceeded {
			// The task ran but its value is unusable: a failure of the
			// task, never a silent drop.
			a.result.Reason, a.result.State = kubexec.ReasonXComFailed, kubexec.StateFailed
			a.result.Message = "the task succeeded but its XCom value is unusable: " + a.xcom.err.Error()
		}
	}
	return nil
}

// release removes the tracking finalizer of a saved attempt's pod, then
// labels it done (kept) or deletes it, as the GC policy says.
func (e *Executor) release(ctx context.Context, a *attempt) error {
	e.mu.Lock()
	ns, name, uid := a.namespace, a.podName, a.podUID
	hasPod, released, force, grace, deleteAt := a.hasPod(), a.release.released, a.podMayRun, a.grace, a.release.deleteAt
	deleted := a.stop.sent // stopStep deleted it before the save
	succeeded := a.result.Reason == kubexec.ReasonSucceeded
	e.unlock()

	if hasPod && uid == "" {
		// A pod whose create's outcome was unknown: it is released (and
		// deleted) only if it is this executor's pod of this attempt.
		pod, err := e.readOwnPod(ctx, a.key, ns, name)
		if err != nil {
			return err
		}
		if pod != nil {
			uid = pod.UID
		}
	}
	if hasPod {
		plan := planGC(e.cfg.GC, succeeded, force, deleted)
		delayed := plan.deleteAfter > 0
		if plan.deleteNow && !released {
			// Delete before the finalizer goes: a crash in between leaves
			// a terminating pod that still holds the finalizer (a restart
			// releases it again), never a pod that nobody tracks.
			if _, err := e.deletePod(ctx, ns, name, uid, grace); err != nil {
				return err
			}
		}
		if !released {
			// Done label and finalizer removal in one patch: the pod leaves
			// the watch and is no longer held.
			if uid != "" {
				if err := e.releasePatch(ctx, ns, name, uid); err != nil {
					return err
				}
			}
			e.mu.Lock()
			a.release.released, a.podUID = true, uid
			if delayed {
				a.release.deleteAt = time.Now().Add(plan.deleteAfter)
				deleteAt = a.release.deleteAt
			}
			e.unlock()
		}
		if delayed {
			if wait := time.Until(deleteAt); wait > 0 {
				e.releases.AddAfter(a.key, wait)
				return nil
			}
			if _, err := e.deletePod(ctx, ns, name, uid, grace); err != nil {
				return err
			}
		}
	}
	e.mu.Lock()
	if e.moveLocked(a, stageDone) {
		e.untrackLocked(a)
	}
	if uid != "" && hasPod {
		e.released[uid] = time.Now()
	}
	e.reportSlotsLocked()
	e.unlock()
	return nil
}

// gcPlan is what happens to a saved attempt's pod besides its release (the
// done label and the finalizer's removal, always): deleted before the
// release, deleted deleteAfter after it, or kept (neither).
type gcPlan struct {
	deleteNow   bool
	deleteAfter time.Duration
}

// planGC is the GC decision for a pod whose attempt ended succeeded (or
// not), under policy: a pod that may still run (force) is deleted at once
// whatever the policy; one already deleted (by the stop step) is not
// deleted again.
func planGC(policy GCPolicy, succeeded, force, alreadyDeleted bool) gcPlan {
	del := force || (succeeded && !policy.KeepOnSuccess) || (!succeeded && policy.DeleteOnFailure)
	switch {
	case !del:
		return gcPlan{}
	case !force && policy.Delay > 0:
		return gcPlan{deleteAfter: policy.Delay}
	}
	return gcPlan{deleteNow: !alreadyDeleted}
}

// releasePatch labels the pod with the given UID done and removes its
// tracking finalizer, in one patch: it leaves the watch and is no longer
// held. The UID in the patch guards it: another pod of the same name (the
// attempt queued again after this one was deleted) is left alone.
func (e *Executor) releasePatch(ctx context.Context, ns, name string, uid types.UID) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"uid":                                 uid,
		"labels":                              map[string]string{kubexec.LabelDone: kubexec.DoneValue},
		"$deleteFromPrimitiveList/finalizers": []string{kubexec.FinalizerResultTracking},
	}})
	if err != nil {
		return err
	}
	_, err = e.client.CoreV1().Pods(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	switch {
	case err == nil, apierrors.IsNotFound(err), apierrors.IsConflict(err), apierrors.IsInvalid(err):
		// Released, or gone: another pod of the name (Conflict or
		// Invalid: the UID in the patch is not its own) is not this one.
		return nil
	default:
		return fmt.Errorf("release pod %s/%s: %w", ns, name, err)
	}
}

// deletePod deletes the pod, guarded by its UID, and reports whether it is
// gone already: not found, or replaced by another of the same name. A pod
// whose UID is not known is not deleted (it may not be this attempt's).
func (e *Executor) deletePod(ctx context.Context, ns, name string, uid types.UID, grace *int64) (bool, error) {
	if uid == "" {
		return false, nil
	}
	err := e.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: grace, Preconditions: &metav1.Preconditions{UID: &uid}})
	switch {
	case err == nil:
		return false, nil
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		return true, nil
	default:
		return false, fmt.Errorf("delete pod %s/%s: %w", ns, name, err)
	}
}

// verifyStep is the step of stageVerifying, on a result worker: it finds
// out why the watch reported a pod deleted before its result was known.
func (e *Executor) verifyStep(ctx context.Context, a *attempt) error {
	e.mu.Lock()
	if a.stage != stageVerifying {
		e.unlock()
		return nil
	}
	key, ns, name, uid, last := a.key, a.namespace, a.podName, a.podUID, a.lastPod
	e.unlock()
	pod, err := e.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("get pod %s/%s: %w", ns, name, err)
	}
	e.mu.Lock()
	defer e.unlock()
	if a.stage != stageVerifying {
		return nil // the watch saw it again, or it was revoked
	}
	now := time.Now()
	switch {
	case err != nil || (uid != "" && pod.UID != uid):
		// Vanished: deleted without our finalizer holding it.
		c := watch.ClassifyDeleted(last, now)
		a.pod = podGone
		r := classifiedResult(key, c, last, now)
		r.PodName, r.Namespace = name, ns
		e.endLocked(a, r, a.settledStage())
	case pod.Labels[kubexec.LabelExecutor] != e.cfg.ExecutorID:
		// Adopted by another executor: it saves the result now.
		e.logLocked(slog.LevelInfo, "pod adopted by another executor", "task", key, "pod", ns+"/"+name, "owner", pod.Labels[kubexec.LabelExecutor])
		e.forgetLocked(a)
	default:
		// Still ours (for example labelled done by hand): decide from its
		// current state.
		e.classifyLocked(a, pod, now)
		if a.stage == stageVerifying {
			e.logLocked(slog.LevelWarn, "pod left the watch but is still this executor's and not finished; no longer tracked", "task", key, "pod", ns+"/"+name)
			e.forgetLocked(a)
		}
	}
	return nil
}

// forgetLocked drops an attempt that has no result (its pod is no longer
// this executor's to watch).
func (e *Executor) forgetLocked(a *attempt) {
	if e.moveLocked(a, stageDone) {
		e.untrackLocked(a)
		e.reportSlotsLocked()
	}
}
