package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/apierr"
	"github.com/kubexec/kubexec/podtemplate"
	"github.com/kubexec/kubexec/watch"
)

// backoffState is a namespace's quota backoff: the refusals in a row, and
// when the next create may go.
type backoffState struct {
	until    time.Time
	failures int
}

const (
	quotaBackoffMin  = time.Second
	quotaBackoffMax  = time.Minute
	createBackoffMin = 500 * time.Millisecond
	createBackoffMax = 30 * time.Second
	defaultRetryWait = time.Second
	heldBackoffMin   = 2 * time.Second
	heldBackoffMax   = time.Minute
)

// launchReady moves queued attempts into launching, up to the open slots,
// oldest first, skipping attempts that wait for a retry and namespaces that
// back off from a quota. It returns when the earliest of the skipped
// attempts may go (zero: none waits for a time; a freed slot or a Lease
// regained wakes the launcher).
func (e *Executor) launchReady() (next time.Time) {
	e.mu.Lock()
	if e.stopped {
		e.unlock()
		return time.Time{}
	}
	st := e.statsLocked()
	changed := st.SavesBacklogged != e.backlogged
	e.backlogged = st.SavesBacklogged
	if !st.SavesBacklogged {
		next = e.launchReadyLocked(st.OpenSlots, time.Now())
	}
	if changed {
		e.later(func() {
			e.cfg.Metrics.SetSavesBacklogged(st.SavesBacklogged)
			if st.SavesBacklogged {
				e.log.Warn("results wait to be saved: launches are paused until the StateStore catches up", "unsaved", st.Unsaved, "max", e.cfg.MaxUnsavedResults)
			} else {
				e.log.Info("saves caught up: launches resume", "unsaved", st.Unsaved)
			}
		})
	}
	e.unlock()
	return next
}

// launchReadyLocked is launchReady's work, with open slots, at now.
func (e *Executor) launchReadyLocked(open int, now time.Time) (next time.Time) {
	if open == 0 || e.leaseLost || len(e.queue) == 0 {
		return time.Time{} // a freed slot or the Lease regained wakes the launcher
	}
	if now.Before(e.pauseUntil) {
		return e.pauseUntil
	}
	kept := e.queue[:0]
	handed := 0
	due := func(t time.Time) bool {
		if now.Before(t) {
			if next.IsZero() || t.Before(next) {
				next = t
			}
			return false
		}
		return true
	}
	for _, key := range e.queue {
		a, ok := e.attempts[key]
		if !ok || a.stage != stageQueued {
			continue // stale entry
		}
		if open == 0 || (a.launch != nil && !due(a.launch.notBefore)) || !due(e.nsBackoff[a.namespace].until) {
			kept = append(kept, key)
			continue
		}
		if !e.moveLocked(a, stageLaunching) {
			continue
		}
		if a.launch != nil && a.launch.firstTry.IsZero() {
			a.launch.firstTry = now
		}
		e.ready = append(e.ready, key)
		open--
		handed++
	}
	clear(e.queue[len(kept):])
	e.queue = kept
	if handed > 0 {
		e.readyCond.Broadcast()
		e.reportSlotsLocked()
	}
	return next
}

// launchWorker launches the attempts handed to it by launchReady until the
// executor stops.
func (e *Executor) launchWorker() {
	for {
		e.mu.Lock()
		for len(e.ready) == 0 && !e.stopped {
			e.readyCond.Wait()
		}
		if e.stopped {
			e.unlock()
			return
		}
		key := e.ready[0]
		e.ready[0] = kubexec.TaskKey{}
		e.ready = e.ready[1:]
		if len(e.ready) == 0 {
			e.ready = nil
		}
		e.unlock()
		e.launch(key)
	}
}

// requeueLocked puts a back in the queue after a create that did not
// happen. An attempt revoked meanwhile has nothing more to launch: it
// finishes.
func (e *Executor) requeueLocked(a *attempt, notBefore time.Time) {
	switch a.stage {
	case stageLaunching:
		if e.moveLocked(a, stageQueued) {
			if a.launch != nil {
				a.launch.notBefore = notBefore
			}
			e.queue = append(e.queue, a.key)
			e.reportSlotsLocked()
		}
	case stageCancelling:
		e.createEndedLocked(a)
	}
}

// unlaunchedLocked records what an attempt that ends before a create
// succeeded leaves behind: no pod, unless an earlier create's outcome was
// unknown (an error after the request was sent), in which case the pod of
// that name is deleted if it exists (it may run).
func (e *Executor) unlaunchedLocked(a *attempt) {
	if a.pod != podMaybe {
		return
	}
	a.podMayRun = true
	if a.result != nil {
		a.result.PodName, a.result.Namespace = a.podName, a.namespace
	}
}

// launch builds and creates the pod of one attempt, on a launch worker.
func (e *Executor) launch(key kubexec.TaskKey) {
	e.mu.Lock()
	a, ok := e.attempts[key]
	if !ok || !a.creating() {
		e.unlock()
		return
	}
	if a.stage == stageCancelling { // revoked before the create
		e.createEndedLocked(a)
		e.unlock()
		return
	}
	ls, queuedAt := a.launch, a.queuedAt
	e.unlock()
	if ls == nil { // only Queue makes queued attempts, each with its spec
		e.rejectLaunch(key, queuedAt, "the executor has no task spec for this attempt (it was not queued by this process)")
		return
	}
	if done, err := e.savedElsewhere(key, ls); done || err != nil {
		if err != nil {
			e.mu.Lock()
			a.refused("StateStore.LoadResult: " + err.Error())
			e.requeueLocked(a, time.Now().Add(backoff(heldBackoffMin, heldBackoffMax, 1)))
			e.unlock()
		}
		return
	}

	ctx := e.ctx
	pod, err := e.build(ctx, ls.spec)
	if err != nil {
		e.rejectLaunch(key, queuedAt, fmt.Sprintf("the pod could not be built: %v", err))
		return
	}
	if err := e.waitToCreate(ctx); err != nil {
		e.mu.Lock()
		e.requeueLocked(a, time.Time{})
		e.unlock()
		return
	}
	created, err := e.createPod(ctx, pod)
	e.handleCreate(key, pod, created, err, queuedAt)
}

// savedElsewhere ends an attempt that waited for another instance's pod
// of its key (launchState.heldBy) with the result that instance saved, when
// the StateStore has one: creating the pod again would run the attempt a
// second time. It reports whether it did.
func (e *Executor) savedElsewhere(key kubexec.TaskKey, ls *launchState) (bool, error) {
	if ls.heldBy == "" {
		return false, nil
	}
	r, saved, err := e.store.LoadResult(e.ctx, key)
	if err != nil {
		return false, err
	}
	e.mu.Lock()
	defer e.unlock()
	a, ok := e.attempts[key]
	if !saved {
		if ok && a.launch != nil {
			a.launch.heldBy = "" // a create tells again if that pod is still there
		}
		return false, nil
	}
	if ok && a.stage == stageLaunching {
		e.logLocked(slog.LevelInfo, "the attempt's result was saved by the executor that ran its pod", "task", key, "executor", ls.heldBy)
		e.endLocked(a, r, stageFinishing)
		return true, nil
	}
	return false, nil
}

// build runs the builder and applies kubexec's metadata for this executor
// again, after Config.XCom's PodMutator, so that neither a Builder of the
// host's own nor the mutator can mislabel a pod.
func (e *Executor) build(ctx context.Context, spec podtemplate.TaskSpec) (*corev1.Pod, error) {
	spec.ExecutorID = e.cfg.ExecutorID
	pod, err := e.builder.Build(ctx, spec)
	if err != nil {
		return nil, err
	}
	if pod == nil {
		return nil, errors.New("the builder returned no pod and no error")
	}
	if pod.Namespace == "" {
		pod.Namespace = e.cfg.Namespace
	}
	if e.cfg.XCom != nil {
		if err := e.cfg.XCom.MutatePod(ctx, pod); err != nil {
			return nil, fmt.Errorf("Config.XCom could not prepare the pod: %w", err)
		}
	}
	preset := presetInternal(pod)
	if err := kubexec.ApplyMetadata(pod, e.cfg.ExecutorID, spec.Key); err != nil {
		return nil, err
	}
	if err := kubexec.ApplyGroup(pod, e.cfg.AdoptionGroup, e.cfg.LeaseNamespace); err != nil {
		return nil, err
	}
	if !e.cfg.allNamespaces() && !slices.Contains(e.cfg.Namespaces, pod.Namespace) {
		return nil, fmt.Errorf("the pod's namespace %q is not one the executor watches (%v): add it to Config.Namespaces or change the task's namespace", pod.Namespace, e.cfg.Namespaces)
	}
	// The policy step: last, on the pod as it will be created.
	if err := e.checkPolicy(pod, spec, preset); err != nil {
		return nil, err
	}
	if e.provenance != nil {
		if err := e.provenance.Sign(pod); err != nil {
			return nil, err
		}
	}
	return pod, nil
}

// errLeaseLost: no create is sent while the Lease is lost.
var errLeaseLost = errors.New("executor: the Lease is lost")

// waitToCreate waits for the create rate limiter, then for a 429's
// Retry-After (checked last, so that a pause that began while this create
// waited for its token still holds it).
func (e *Executor) waitToCreate(ctx context.Context) error {
	if err := e.createLimiter.Wait(ctx); err != nil {
		return err
	}
	for {
		e.mu.Lock()
		wait, lost := time.Until(e.pauseUntil), e.leaseLost
		e.unlock()
		if lost {
			return errLeaseLost
		}
		if wait <= 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	return nil
}

// createPod sends the create with client-go's own retries off: the
// executor handles 429 and 5xx itself, for all creates at once.
func (e *Executor) createPod(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	out := &corev1.Pod{}
	err := e.client.CoreV1().RESTClient().Post().
		Namespace(pod.Namespace).
		Resource("pods").
		VersionedParams(&metav1.CreateOptions{}, metav1.ParameterCodec).
		MaxRetries(0).
		Body(pod).
		Do(ctx).
		Into(out)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// handleCreate applies the outcome of one create request.
func (e *Executor) handleCreate(key kubexec.TaskKey, pod, created *corev1.Pod, err error, queuedAt time.Time) {
	now := time.Now()
	switch {
	case err == nil:
		e.tracked(key, created, LaunchCreated, queuedAt)
	case apierrors.IsAlreadyExists(err):
		e.alreadyExists(key, pod, queuedAt)
	case IsQuotaExceeded(err):
		e.mu.Lock()
		b := e.nsBackoff[pod.Namespace]
		if now.After(b.until) {
			b.failures++
			b.until = now.Add(backoff(quotaBackoffMin, quotaBackoffMax, b.failures))
			e.nsBackoff[pod.Namespace] = b
		}
		if a, ok := e.attempts[key]; ok && a.creating() {
			a.refused("the namespace's ResourceQuota is exhausted: " + err.Error())
			e.requeueLocked(a, time.Time{})
		}
		e.unlock()
		e.cfg.Metrics.ObserveLaunch(LaunchQuotaExceeded, now.Sub(queuedAt))
		e.log.Debug("quota exceeded; the namespace backs off", "namespace", pod.Namespace, "backoff", b.until.Sub(now).Round(time.Millisecond), "task", key)
	case apierrors.IsTooManyRequests(err):
		delay, ok := apierrors.SuggestsClientDelay(err)
		wait := defaultRetryWait
		if ok && delay > 0 {
			wait = time.Duration(delay) * time.Second
		}
		e.mu.Lock()
		if until := now.Add(wait); until.After(e.pauseUntil) {
			e.pauseUntil = until
		}
		if a, ok := e.attempts[key]; ok && a.creating() {
			a.refused("the API server throttled the create (429)")
			e.requeueLocked(a, time.Time{})
		}
		e.unlock()
		e.cfg.Metrics.ObserveLaunch(LaunchThrottled, now.Sub(queuedAt))
		e.log.Info("the API server throttles creates; pausing them", "pause", wait)
	case apierr.Transient(err), apierr.ContextEnded(err):
		// A create cut short by the executor's stop is retried by the next
		// run like any create whose outcome is unknown.
		e.mu.Lock()
		if a, ok := e.attempts[key]; ok && a.creating() {
			failures := a.failed("the create failed: " + err.Error())
			// The server may have created the pod before the error: if the
			// attempt ends before a later create finds it, it is deleted.
			a.pod = podMaybe
			a.namespace, a.podName = pod.Namespace, pod.Name
			e.requeueLocked(a, now.Add(backoff(createBackoffMin, createBackoffMax, failures)))
		}
		e.unlock()
		e.cfg.Metrics.ObserveLaunch(LaunchServerError, now.Sub(queuedAt))
		e.log.Warn("pod create failed; retrying", "task", key, "err", err)
	default:
		e.rejectLaunch(key, queuedAt, launchRejectedMessage(pod, err))
	}
}

// alreadyExists handles a create that found the attempt's name taken: if
// the pod is this attempt's and this executor's, it is tracked (a repeated
// create after a crash or a lost response); otherwise the launch is
// rejected.
func (e *Executor) alreadyExists(key kubexec.TaskKey, pod *corev1.Pod, queuedAt time.Time) {
	existing, err := e.client.CoreV1().Pods(pod.Namespace).Get(e.ctx, pod.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		// Deleted between the create and the get: create again.
		e.mu.Lock()
		if a, ok := e.attempts[key]; ok {
			e.requeueLocked(a, time.Time{})
		}
		e.unlock()
		return
	case err != nil:
		e.handleCreate(key, pod, nil, err, queuedAt)
		return
	}
	got, keyErr := kubexec.KeyFromObject(existing)
	owner := existing.Labels[kubexec.LabelExecutor]
	var foreign error
	if keyErr == nil && got == key {
		var reason string
		if reason, foreign = e.genuine(existing, key, ""); foreign != nil {
			e.reportForeign(existing, reason, foreign)
		}
	}
	switch {
	case keyErr != nil || got != key:
		e.rejectLaunch(key, queuedAt, fmt.Sprintf("a pod named %s/%s already exists and belongs to another attempt (%v): delete it, or check for two schedulers using the same ids", pod.Namespace, pod.Name, describeKey(got, keyErr)))
	case foreign != nil:
		e.rejectLaunch(key, queuedAt, fmt.Sprintf("a pod named %s/%s already exists with the attempt's labels, and the executor cannot tell its deployment made it (%v): it decides nothing; delete it and queue the attempt again", pod.Namespace, pod.Name, foreign))
	case owner != e.cfg.ExecutorID && existing.Labels[kubexec.LabelDone] == kubexec.DoneValue:
		// Its owner saved its result and released it: the store holds
		// the real outcome, which a second result does not replace.
		e.rejectLaunch(key, queuedAt, fmt.Sprintf("the attempt's pod %s/%s already ran under executor %q, which saved its result: queue a new attempt number to run the task again", pod.Namespace, pod.Name, owner))
	case owner != e.cfg.ExecutorID:
		// A live pod of this attempt, another instance's: no result may
		// be saved for the attempt while it may still run, or the store
		// would keep that one and lose the pod's real outcome. The
		// attempt waits (QueuedTimeout does not end it), and once the pod
		// is gone its result is looked up before any create.
		e.mu.Lock()
		if a, ok := e.attempts[key]; ok && a.creating() {
			var failures int
			if a.launch != nil {
				a.launch.heldBy = owner
				a.launch.failures++
				failures = a.launch.failures
			}
			a.refused(fmt.Sprintf("the attempt's pod %s/%s exists and belongs to executor %q: the attempt waits for it to end (call Adopt for this attempt once that executor is gone)", pod.Namespace, pod.Name, owner))
			e.requeueLocked(a, time.Now().Add(backoff(heldBackoffMin, heldBackoffMax, failures)))
		}
		e.unlock()
		e.log.Warn("the attempt's pod belongs to another executor; waiting for it to end", "task", key, "pod", pod.Namespace+"/"+pod.Name, "owner", owner)
	default:
		e.tracked(key, existing, LaunchAdopted, queuedAt)
	}
}

func describeKey(k kubexec.TaskKey, err error) string {
	if err != nil {
		return err.Error()
	}
	return k.String()
}

// tracked records that the attempt's pod exists.
func (e *Executor) tracked(key kubexec.TaskKey, pod *corev1.Pod, outcome LaunchOutcome, queuedAt time.Time) {
	e.cfg.Metrics.ObserveLaunch(outcome, time.Since(queuedAt))
	e.mu.Lock()
	defer e.unlock()
	a, ok := e.attempts[key]
	if !ok {
		return
	}
	// A create that succeeds resets its namespace's quota backoff.
	delete(e.nsBackoff, pod.Namespace)
	switch a.stage {
	case stageLaunching:
		if !e.moveLocked(a, stageLaunched) {
			return
		}
		a.setPod(pod)
		a.launch = nil // no create is sent again
		// The watch has not seen the pod yet: until it does, the pod is
		// known as created (its first event drops this copy).
		a.lastPod = watch.Trim(pod)
		if pod.Labels[kubexec.LabelDone] == kubexec.DoneValue {
			// Queued again after its pod was kept (labelled done): the
			// watch no longer delivers that pod, so decide from it now.
			e.classifyLocked(a, pod, time.Now())
		}
	case stageCancelling:
		// Revoked while the create was in flight: release the new pod.
		if a.lastPod == nil {
			a.lastPod = pod
		}
		a.setPod(pod)
		a.result.PodName, a.result.Namespace = pod.Name, pod.Namespace
		e.createEndedLocked(a)
	}
	// Otherwise the watch saw the pod first and tracks it.
	e.reportSlotsLocked()
}

// rejectLaunch ends an attempt with LaunchRejected; it had no pod.
func (e *Executor) rejectLaunch(key kubexec.TaskKey, queuedAt time.Time, msg string) {
	e.cfg.Metrics.ObserveLaunch(LaunchRejected, time.Since(queuedAt))
	e.mu.Lock()
	defer e.unlock()
	a, ok := e.attempts[key]
	if !ok {
		return
	}
	switch a.stage {
	case stageLaunching:
		e.logLocked(slog.LevelWarn, "launch rejected", "task", key, "reason", msg)
		e.unlaunchedLocked(a)
		e.endLocked(a, e.newResultLocked(a, kubexec.ReasonLaunchRejected, msg), a.settledStage())
	case stageCancelling:
		e.createEndedLocked(a)
	}
	// Otherwise the watch saw the attempt's pod meanwhile and tracks it.
}

// IsQuotaExceeded reports a create refused by the ResourceQuota admission
// plugin. The API gives that refusal no reason or cause of its own (it is a
// 403 Forbidden like an RBAC denial or a PodSecurity violation), so the
// plugin's fixed message prefix is the only signal; this is the one place
// that reads an API error's message.
func IsQuotaExceeded(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	s := status.Status()
	return s.Code == http.StatusForbidden && strings.Contains(s.Message, "exceeded quota")
}

// launchRejectedMessage says what the API server refused and what to do.
func launchRejectedMessage(pod *corev1.Pod, err error) string {
	where := fmt.Sprintf("pod %s/%s", pod.Namespace, pod.Name)
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Sprintf("the API server refused to create %s (403): %v. If this is a permission problem, bind the executor's identity to the Role in executor/rbac.yaml in namespace %s; if an admission policy (for example PodSecurity) refused it, change the task's pod template or override", where, err, pod.Namespace)
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("the API server could not create %s (404): %v. Create namespace %s or change the task's namespace", where, err, pod.Namespace)
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return fmt.Sprintf("the API server rejected %s as invalid: %v. Fix the task's pod template or override", where, err)
	default:
		return fmt.Sprintf("the API server refused to create %s: %v", where, err)
	}
}

// backoff is the one backoff of the executor's own retries (creates that
// failed, quota refusals, pods held by another instance): the nth failure
// in a row waits base·2^(n-1), capped at ceiling, plus up to a fifth more
// (wait.Jitter), so that retries that failed together do not come back
// together.
func backoff(base, ceiling time.Duration, failures int) time.Duration {
	d := min(base<<min(max(failures-1, 0), 20), ceiling)
	return wait.Jitter(d, 0.2)
}
