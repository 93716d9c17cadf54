package executor_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/internal/devcluster"
	"github.com/kubexec/kubexec/podtemplate"
	"github.com/kubexec/kubexec/watch"
)

var cluster *devcluster.Cluster

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		// TestCrashAndRestart's executor process: it uses the parent's
		// cluster. A cluster of its own would be killed with it, its
		// kubelet node's cgroups and its folder left behind.
		os.Exit(m.Run())
	}
	os.Exit(devcluster.Main(m, devcluster.Options{
		Nodes: 2, NodeCPU: "32", NodeMemory: "64Gi", NodePods: 300,
		// A real kubelet node for the cases that run on both kinds
		// (TestOnBothNodeKinds); tainted, so other tests' pods stay on the
		// process nodes.
		KubeletNodes: 1, KubeletNodeTaint: true,
	}, &cluster))
}

var executorSeq atomic.Int64

// testGroup is the adoption group of testConfig's executors: the
// executors of one test adopt each other's pods.
const testGroup = "test-group"

// testConfig is a config with short timeouts, for one test namespace. Its
// pods run as user 1000: the default template is restricted (runAsNonRoot),
// and the process node, like a kubelet, refuses to run them as root. The
// builder has no ExecutorID: the executor hands it its own.
func testConfig(ns string) executor.Config {
	id := fmt.Sprintf("test-%d-%d", os.Getpid(), executorSeq.Add(1))
	template := podtemplate.DefaultTemplate()
	uid := int64(1000)
	template.Spec.SecurityContext.RunAsUser = &uid
	builder, err := podtemplate.New(template, podtemplate.Config{Namespace: ns})
	if err != nil {
		panic(err)
	}
	return executor.Config{
		ExecutorID:     id,
		AdoptionGroup:  testGroup,
		Builder:        builder,
		Namespace:      ns,
		Parallelism:    50,
		CreateQPS:      200,
		CreateBurst:    200,
		ResyncInterval: 200 * time.Millisecond,
		Classify:       watch.ClassifyOptions{ImagePullGrace: 2 * time.Second, PendingTimeout: 5 * time.Second},
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// startExecutor starts an executor that stops when the test ends.
func startExecutor(t *testing.T, rc *rest.Config, store executor.StateStore, cfg executor.Config) *executor.Executor {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	e, err := executor.New(rc, store, cfg)
	require.NoError(t, err)
	require.NoError(t, e.Start(t.Context()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = e.Stop(ctx)
	})
	return e
}

// drive calls Heartbeat until cond holds or the deadline passes.
func drive(t *testing.T, e *executor.Executor, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not done after %s (stats %+v)", what, timeout, e.Stats())
		}
		require.NoError(t, e.Heartbeat())
		time.Sleep(100 * time.Millisecond)
	}
}

func key(workflow string, i int) kubexec.TaskKey {
	return kubexec.TaskKey{WorkflowID: workflow, TaskID: fmt.Sprintf("task-%d", i), RunID: "run-1", MapIndex: kubexec.NotMapped, Attempt: 1}
}

func shell(k kubexec.TaskKey, script string) podtemplate.TaskSpec {
	return podtemplate.TaskSpec{Key: k, Image: "busybox:1.36", Command: []string{"sh", "-c", script}}
}

func resultsByKey(store *executor.MemoryStore) map[kubexec.TaskKey]kubexec.Result {
	out := map[kubexec.TaskKey]kubexec.Result{}
	for _, r := range store.Results() {
		out[r.Key] = r
	}
	return out
}

// requireNoTrackedPods checks that no pod in ns still carries the tracking
// finalizer, and that every pod left is labelled done.
func requireNoTrackedPods(t *testing.T, ns string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := cluster.Client().CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			for _, f := range p.Finalizers {
				if f == kubexec.FinalizerResultTracking {
					return false, nil
				}
			}
			if p.DeletionTimestamp == nil && p.Labels[kubexec.LabelDone] != kubexec.DoneValue {
				return false, nil
			}
		}
		return true, nil
	})
	require.NoError(t, err, "pods in %s still carry the tracking finalizer or are not done", ns)
}

// TestMixedOutcomes runs many attempts with every kind of ending and checks
// that each gets exactly one result with the right reason.
func TestMixedOutcomes(t *testing.T) {
	cluster.Need(t)
	n := 500
	if testing.Short() {
		n = 60
	}
	testMixedOutcomes(t, n, onAnyNode)
}

func testMixedOutcomes(t *testing.T, n int, pin nodePin) {
	ns := cluster.NewNamespace(t, "mixed", nil)
	store := executor.NewMemoryStore()
	e := startExecutor(t, cluster.RESTConfig(), store, testConfig(ns))

	want := map[kubexec.TaskKey]kubexec.Reason{}
	for i := range n {
		k := key("mixed", i)
		spec := shell(k, "exit 0")
		var reason kubexec.Reason
		extra := "" // pod spec fields of the task's override
		switch i % 6 {
		case 0:
			reason = kubexec.ReasonSucceeded
			spec = shell(k, "echo hello; sleep 0.2")
		case 1:
			reason = kubexec.ReasonFailed
			spec = shell(k, "echo failing >&2; exit 3")
		case 2:
			reason = kubexec.ReasonOOMKilled
			spec = shell(k, "dd if=/dev/zero of=/dev/null bs=256M count=1")
			spec.Limits = map[corev1.ResourceName]string{corev1.ResourceMemory: "64Mi"}
		case 3:
			reason = kubexec.ReasonImagePullError
			spec.Image = "registry.example/does-not-exist/app:1"
		case 4:
			reason = kubexec.ReasonUnschedulable
			spec.Requests = map[corev1.ResourceName]string{corev1.ResourceCPU: "1000"}
		case 5:
			reason = kubexec.ReasonDeadlineExceeded
			spec = shell(k, "sleep 60")
			extra = "activeDeadlineSeconds: 2"
		}
		want[k] = reason
		require.NoError(t, e.Queue(pin.apply(t, spec, extra)))
	}
	require.ErrorIs(t, e.Queue(shell(key("mixed", 0), "exit 0")), executor.ErrDuplicate)

	drive(t, e, 10*time.Minute, "all results saved", func() bool { return len(store.Results()) == n })
	got := resultsByKey(store)
	require.Len(t, got, n)
	for k, reason := range want {
		r := got[k]
		require.Equal(t, reason, r.Reason, "%s: %+v", k, r)
		require.Equal(t, 1, store.Calls(k), "%s saved more than once", k)
		require.NoError(t, r.Validate())
		switch reason {
		case kubexec.ReasonFailed:
			require.Equal(t, int32(3), r.ExitCode)
			require.Equal(t, podtemplate.DefaultMainContainer, r.Container)
		case kubexec.ReasonOOMKilled:
			require.Equal(t, int32(137), r.ExitCode)
		}
		if reason != kubexec.ReasonUnschedulable {
			pin.requireRanThere(t, r)
		}
		require.NotEmpty(t, r.Message, "%s: a result must say what happened", k)
	}
	requireNoTrackedPods(t, ns)
	require.Eventually(t, func() bool { s := e.Stats(); return s.Running == 0 && s.Queued == 0 && s.Finishing == 0 },
		3*time.Minute, 100*time.Millisecond)
}

// TestQuotaKeepsAttemptsQueued: with a quota of 3 pods, 20 attempts all
// succeed: the creates the quota refuses keep their attempts queued, and
// none fails because of the quota. How many pods exist at once is the
// API server's to enforce, and it is not exact: the quota controller frees
// room from a pod cache that may lag behind admission, so on a loaded
// machine a fourth or fifth pod is sometimes admitted (seen: 5). What
// kubexec owns is checked: the quota did refuse creates, and no attempt
// ended for it.
func TestQuotaKeepsAttemptsQueued(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "quota", nil)
	cluster.NewQuota(t, ns, "pods", corev1.ResourceList{corev1.ResourcePods: resource.MustParse("3")})

	refusals := &quotaRefusals{}
	rc := cluster.RESTConfig()
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { refusals.next = rt; return refusals })
	store := executor.NewMemoryStore()
	e := startExecutor(t, rc, store, testConfig(ns))
	runAllSucceed(t, e, store, "quota", 20, "sleep 0.3")
	require.Positive(t, refusals.n.Load(), "the quota never refused a create: the test did not test queueing")
}

// quotaRefusals counts pod creates the API server refused with 403
// Forbidden (an exceeded quota).
type quotaRefusals struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (q *quotaRefusals) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := q.next.RoundTrip(req)
	if err == nil && req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/pods") && resp.StatusCode == http.StatusForbidden {
		q.n.Add(1)
	}
	return resp, err
}

// TestDeletedExternally: a running pod deleted by someone else, and one
// force-deleted, each end in one DeletedExternally result, even when the
// executor was stopped at the time and started again later: the tracking
// finalizer holds the pod until the result is saved.
func TestDeletedExternally(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "deleted", nil)
	store := executor.NewMemoryStore()
	cfg := testConfig(ns)
	e := startExecutor(t, cluster.RESTConfig(), store, cfg)

	graceful, forced, whileStopped, gracefulWhileStopped := key("deleted", 1), key("deleted", 2), key("deleted", 3), key("deleted", 4)
	all := []kubexec.TaskKey{graceful, forced, whileStopped, gracefulWhileStopped}
	for _, k := range all {
		require.NoError(t, e.Queue(shell(k, "sleep 300")))
	}
	pods := cluster.Client().CoreV1().Pods(ns)
	waitRunning := func(k kubexec.TaskKey) string {
		name, err := kubexec.PodName(k)
		require.NoError(t, err)
		drive(t, e, 2*time.Minute, "pod running", func() bool {
			p, err := pods.Get(ctx, name, metav1.GetOptions{})
			return err == nil && p.Status.Phase == corev1.PodRunning
		})
		return name
	}
	gName, fName, sName, sgName := waitRunning(graceful), waitRunning(forced), waitRunning(whileStopped), waitRunning(gracefulWhileStopped)

	// A process that is its container's first process ignores SIGTERM
	// without a handler, as in a real container: a short grace period.
	two, zero := int64(2), int64(0)
	require.NoError(t, pods.Delete(ctx, gName, metav1.DeleteOptions{GracePeriodSeconds: &two}))
	require.NoError(t, pods.Delete(ctx, fName, metav1.DeleteOptions{GracePeriodSeconds: &zero}))
	drive(t, e, 2*time.Minute, "two results", func() bool { return len(store.Results()) == 2 })
	got := resultsByKey(store)
	require.Equal(t, kubexec.ReasonDeletedExternally, got[graceful].Reason, "%+v", got[graceful])
	require.Equal(t, kubexec.ReasonDeletedExternally, got[forced].Reason, "%+v", got[forced])

	// Stop the executor, delete the third pod (forced) and the fourth
	// (short grace), and let the node stop their containers and mark them
	// Failed before a new executor with the same id starts: it finds the
	// pods held by the finalizer and saves their results, classified by
	// cause (the deletion killed them), not by the exit code the kill left.
	stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, e.Stop(stopCtx))
	require.NoError(t, pods.Delete(ctx, sName, metav1.DeleteOptions{GracePeriodSeconds: &zero}))
	require.NoError(t, pods.Delete(ctx, sgName, metav1.DeleteOptions{GracePeriodSeconds: &two}))
	for _, name := range []string{sName, sgName} {
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			p, err := pods.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, fmt.Errorf("the tracking finalizer must hold the deleted pod: %w", err)
			}
			return p.DeletionTimestamp != nil && p.Status.Phase == corev1.PodFailed, nil
		}), "pod %s: the node marks the deleted pod Failed", name)
	}

	e2 := startExecutor(t, cluster.RESTConfig(), store, cfg)
	drive(t, e2, 2*time.Minute, "four results", func() bool { return len(store.Results()) == 4 })
	got = resultsByKey(store)
	require.Equal(t, kubexec.ReasonDeletedExternally, got[whileStopped].Reason, "%+v", got[whileStopped])
	require.Equal(t, kubexec.ReasonDeletedExternally, got[gracefulWhileStopped].Reason, "%+v", got[gracefulWhileStopped])
	for _, k := range all {
		require.Equal(t, 1, store.Calls(k))
	}
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := pods.List(ctx, metav1.ListOptions{})
		return err == nil && len(list.Items) == 0, err
	}), "deleted pods must be released once their results are saved")
}

// TestRevokeAndTimeouts covers Revoke of a queued, a pending and a running
// attempt, the queued timeout, and Stop then Start resuming a running pod.
func TestRevokeAndTimeouts(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "revoke", nil)
	full := cluster.NewNamespace(t, "revoke-full", nil)
	cluster.NewQuota(t, full, "no-pods", corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")})
	store := executor.NewMemoryStore()
	cfg := testConfig(ns)
	cfg.Namespaces = []string{ns, full}
	cfg.Parallelism = 4
	cfg.QueuedTimeout = 3 * time.Second
	cfg.RevokeGracePeriod = time.Second
	cfg.Classify.PendingTimeout = time.Hour // the pending one stays pending until revoked
	e := startExecutor(t, cluster.RESTConfig(), store, cfg)

	pending, running, resumed := key("revoke", 1), key("revoke", 2), key("revoke", 3)
	pendingSpec := shell(pending, "exit 0")
	pendingSpec.Requests = map[corev1.ResourceName]string{corev1.ResourceCPU: "1000"}
	require.NoError(t, e.Queue(pendingSpec))
	require.NoError(t, e.Queue(shell(running, "sleep 300")))
	require.NoError(t, e.Queue(shell(resumed, "sleep 12")))
	// The fourth gets a slot, but its namespace's quota allows no pod: its
	// creates are refused until it times out.
	timedOut := key("revoke", 4)
	timedOutSpec := shell(timedOut, "exit 0")
	timedOutSpec.Namespace = full
	require.NoError(t, e.Queue(timedOutSpec))

	pods := cluster.Client().CoreV1().Pods(ns)
	phaseOf := func(k kubexec.TaskKey) corev1.PodPhase {
		name, _ := kubexec.PodName(k)
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return p.Status.Phase
	}
	drive(t, e, 2*time.Minute, "pods pending and running", func() bool {
		return phaseOf(pending) == corev1.PodPending && phaseOf(running) == corev1.PodRunning && phaseOf(resumed) == corev1.PodRunning
	})
	drive(t, e, 3*time.Minute, "queued timeout", func() bool { _, ok := resultsByKey(store)[timedOut]; return ok })
	require.Equal(t, kubexec.ReasonQueuedTimeout, resultsByKey(store)[timedOut].Reason)
	require.Contains(t, resultsByKey(store)[timedOut].Message, "ResourceQuota is exhausted")

	require.NoError(t, e.Revoke(pending))
	require.NoError(t, e.Revoke(running))
	require.ErrorIs(t, e.Revoke(key("revoke", 99)), executor.ErrUnknownAttempt)

	// Stop while the third runs; a new executor with the same id resumes
	// it and saves its result.
	stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	drive(t, e, 3*time.Minute, "revoked results", func() bool { return len(store.Results()) == 3 })
	require.NoError(t, e.Stop(stopCtx))
	require.NoError(t, e.Stop(stopCtx), "Stop is idempotent")
	require.ErrorIs(t, e.Queue(shell(key("revoke", 5), "exit 0")), executor.ErrStopped)

	e2 := startExecutor(t, cluster.RESTConfig(), store, cfg)
	drive(t, e2, 2*time.Minute, "resumed result", func() bool { return len(store.Results()) == 4 })
	got := resultsByKey(store)
	require.Equal(t, kubexec.ReasonRevoked, got[pending].Reason)
	require.Equal(t, kubexec.ReasonRevoked, got[running].Reason)
	require.Equal(t, kubexec.ReasonSucceeded, got[resumed].Reason)
	require.True(t, got[pending].Reason.SystemFailure() || !got[pending].Reason.Retryable(), "revoked attempts must not look like task failures to retry")
	requireNoTrackedPods(t, ns)
}

// TestFanOutWiderThanParallelism: a host that queues three times
// Parallelism of slow tasks at once (as a fan-out does) sees every task
// succeed: waiting for a slot is not a queued timeout, even when it lasts
// much longer than QueuedTimeout.
func TestFanOutWiderThanParallelism(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "fanout", nil)
	store := executor.NewMemoryStore()
	cfg := testConfig(ns)
	cfg.Parallelism = 3
	cfg.QueuedTimeout = time.Second
	e := startExecutor(t, cluster.RESTConfig(), store, cfg)
	runAllSucceed(t, e, store, "fanout", 9, "sleep 2")
}

// runAllSucceed queues n attempts of script and requires each to succeed.
func runAllSucceed(t *testing.T, e *executor.Executor, store *executor.MemoryStore, workflow string, n int, script string) {
	t.Helper()
	for i := range n {
		require.NoError(t, e.Queue(shell(key(workflow, i), script)))
	}
	drive(t, e, 5*time.Minute, "all results", func() bool { return len(store.Results()) == n })
	for _, r := range store.Results() {
		require.Equal(t, kubexec.ReasonSucceeded, r.Reason, "%+v", r)
	}
}

// flakyStore fails the first failures saves of every key.
type flakyStore struct {
	*executor.MemoryStore
	failures int
	mu       sync.Mutex
	attempts map[kubexec.TaskKey]int
	failed   chan kubexec.TaskKey
}

func (s *flakyStore) SaveResult(ctx context.Context, r kubexec.Result) error {
	s.mu.Lock()
	s.attempts[r.Key]++
	n := s.attempts[r.Key]
	s.mu.Unlock()
	if n <= s.failures {
		select {
		case s.failed <- r.Key:
		default:
		}
		return errors.New("database is unavailable")
	}
	return s.MemoryStore.SaveResult(ctx, r)
}

// healthMetrics records the optional health measurements.
type healthMetrics struct {
	executor.NopMetrics
	saveErrors, renewals, sweeps atomic.Int64
}

func (m *healthMetrics) ObserveSaveError(kubexec.Reason)     { m.saveErrors.Add(1) }
func (m *healthMetrics) ObserveLeaseRenewal(err error)       { m.renewals.Add(1) }
func (m *healthMetrics) SetLeaseLost(bool)                   {}
func (m *healthMetrics) ObserveSweep(adopted int, err error) { m.sweeps.Add(1) }
func (m *healthMetrics) ObserveWatchRestart(string, bool)    {}

var _ executor.Metrics = (*healthMetrics)(nil)

// TestSaveResultRetried: a failing StateStore keeps the pod's finalizer
// until a save succeeds, and each failed save is counted; lease renewals
// and sweeps are measured too.
func TestSaveResultRetried(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "flaky", nil)
	store := &flakyStore{MemoryStore: executor.NewMemoryStore(), failures: 4, attempts: map[kubexec.TaskKey]int{}, failed: make(chan kubexec.TaskKey, 1)}
	cfg := testConfig(ns)
	metrics := &healthMetrics{}
	cfg.Metrics = metrics
	cfg.RetryPeriod, cfg.RenewDeadline, cfg.LeaseDuration = 500*time.Millisecond, 2*time.Second, 3*time.Second
	cfg.SweepInterval = 500 * time.Millisecond
	e := startExecutor(t, cluster.RESTConfig(), store, cfg)
	k := key("flaky", 1)
	require.NoError(t, e.Queue(shell(k, "exit 0")))
	drive(t, e, 2*time.Minute, "first failed save", func() bool { return len(store.failed) > 0 })

	name, err := kubexec.PodName(k)
	require.NoError(t, err)
	p, err := cluster.Client().CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	require.Contains(t, p.Finalizers, kubexec.FinalizerResultTracking, "the finalizer must stay while the result is not saved")

	drive(t, e, 2*time.Minute, "saved", func() bool { return len(store.Results()) == 1 })
	require.Equal(t, kubexec.ReasonSucceeded, store.Results()[0].Reason)
	require.Equal(t, 5, store.attempts[k])
	require.EqualValues(t, 4, metrics.saveErrors.Load())
	drive(t, e, 3*time.Minute, "lease renewals and sweeps measured", func() bool {
		return metrics.renewals.Load() > 0 && metrics.sweeps.Load() > 1
	})
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := cluster.Client().CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}), "the succeeded pod is deleted once its result is saved")
}

// throttler answers the first n pod creates with 429 and Retry-After, in
// front of the real API server, and records when each create was sent.
type throttler struct {
	next  http.RoundTripper
	mu    sync.Mutex
	left  int
	sends []time.Time
	last  time.Time // when the last 429 was sent
}

func (t *throttler) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || !strings.HasSuffix(req.URL.Path, "/pods") {
		return t.next.RoundTrip(req)
	}
	t.mu.Lock()
	now := time.Now()
	t.sends = append(t.sends, now)
	if t.left > 0 {
		t.left--
		t.last = now
		t.mu.Unlock()
		return &http.Response{
			StatusCode: http.StatusTooManyRequests,
			Header:     http.Header{"Retry-After": []string{"2"}, "Content-Type": []string{"application/json"}},
			Body:       ioNopCloser(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too many requests","reason":"TooManyRequests","details":{"retryAfterSeconds":2},"code":429}`),
			Request:    req,
		}, nil
	}
	t.mu.Unlock()
	return t.next.RoundTrip(req)
}

// TestThrottledCreatesPauseForRetryAfter: a 429 with Retry-After pauses every
// create for that long, and all attempts still launch.
func TestThrottledCreatesPauseForRetryAfter(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "throttle", nil)
	th := &throttler{left: 1}
	rc := cluster.RESTConfig()
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { th.next = rt; return th })
	store := executor.NewMemoryStore()
	cfg := testConfig(ns)
	// One create every 200 ms, so none is in flight when the 429 arrives.
	cfg.CreateQPS, cfg.CreateBurst = 5, 1
	e := startExecutor(t, rc, store, cfg)
	const n = 10
	for i := range n {
		require.NoError(t, e.Queue(shell(key("throttle", i), "exit 0")))
	}
	drive(t, e, 3*time.Minute, "all results", func() bool { return len(store.Results()) == n })
	for _, r := range store.Results() {
		require.Equal(t, kubexec.ReasonSucceeded, r.Reason)
	}
	th.mu.Lock()
	defer th.mu.Unlock()
	require.False(t, th.last.IsZero(), "no 429 was sent")
	var after int
	for _, s := range th.sends {
		if s.After(th.last) {
			after++
			require.GreaterOrEqual(t, s.Sub(th.last), 2*time.Second-50*time.Millisecond,
				"a create was sent before the Retry-After of the 429 elapsed")
		}
	}
	// The 429 answered the first create; the other creates and the retry
	// of the first all waited for the pause.
	require.Equal(t, n, after)
}

func ioNopCloser(s string) *nopBody { return &nopBody{strings.NewReader(s)} }

type nopBody struct{ *strings.Reader }

func (nopBody) Close() error { return nil }

// TestLateSecretIsFound: a container waiting in CreateContainerConfigError
// for a Secret that is created a little later (as External Secrets or a CSI
// driver do) runs once it exists; one whose Secret never comes fails with
// ConfigError and the node's message after Classify.ConfigErrorGrace.
func TestLateSecretIsFound(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "latesecret", nil)
	store := executor.NewMemoryStore()
	cfg := testConfig(ns)
	cfg.Classify.ConfigErrorGrace = time.Hour
	e := startExecutor(t, cluster.RESTConfig(), store, cfg)
	late, never := key("latesecret", 1), key("latesecret", 2)
	withSecret := func(k kubexec.TaskKey, secret string) podtemplate.TaskSpec {
		spec := shell(k, `test "$TOKEN" = s3cret`)
		spec.Env = []corev1.EnvVar{{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: "token"}}}}
		return spec
	}
	require.NoError(t, e.Queue(withSecret(late, "late")))
	name, err := kubexec.PodName(late)
	require.NoError(t, err)
	drive(t, e, 3*time.Minute, "the container waits for its Secret", func() bool {
		p, err := cluster.Client().CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || len(p.Status.ContainerStatuses) == 0 {
			return false
		}
		w := p.Status.ContainerStatuses[0].State.Waiting
		return w != nil && w.Reason == "CreateContainerConfigError"
	})
	require.Empty(t, store.Results(), "a missing Secret must not fail the attempt at once")
	_, err = cluster.Client().CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "late"},
		StringData: map[string]string{"token": "s3cret"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	drive(t, e, 3*time.Minute, "result", func() bool { return len(store.Results()) == 1 })
	require.Equal(t, kubexec.ReasonSucceeded, store.Results()[0].Reason, "%+v", store.Results()[0])

	cfg2 := testConfig(ns)
	cfg2.Classify.ConfigErrorGrace = 2 * time.Second
	store2 := executor.NewMemoryStore()
	e2 := startExecutor(t, cluster.RESTConfig(), store2, cfg2)
	require.NoError(t, e2.Queue(withSecret(never, "never")))
	drive(t, e2, 3*time.Minute, "result", func() bool { return len(store2.Results()) == 1 })
	r := store2.Results()[0]
	require.Equal(t, kubexec.ReasonConfigError, r.Reason, "%+v", r)
	require.Contains(t, r.Message, `"never"`)
	require.Contains(t, r.Message, "for more than 2s")
}

// TestQuickStartRunsAsShown: with the default template (no Builder), an
// attempt that names a non-root user the way the package doc's quick start
// does runs; one that does not ends with ConfigError, and the message says
// how to set runAsUser.
func TestQuickStartRunsAsShown(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "quickstart", nil)
	store := executor.NewMemoryStore()
	cfg := testConfig(ns)
	cfg.Builder = nil
	cfg.Classify.ConfigErrorGrace = time.Second
	e := startExecutor(t, cluster.RESTConfig(), store, cfg)
	asUser, err := podtemplate.ParseOverride("quick-start", []byte("spec: {securityContext: {runAsUser: 1000}}"))
	require.NoError(t, err)
	shown, asRoot := key("quickstart", 1), key("quickstart", 2)
	spec := shell(shown, "echo loaded")
	spec.Override = asUser
	require.NoError(t, e.Queue(spec))
	require.NoError(t, e.Queue(shell(asRoot, "echo loaded")))
	drive(t, e, 3*time.Minute, "results", func() bool { return len(store.Results()) == 2 })
	got := resultsByKey(store)
	require.Equal(t, kubexec.ReasonSucceeded, got[shown].Reason, "%+v", got[shown])
	require.Equal(t, kubexec.ReasonConfigError, got[asRoot].Reason, "%+v", got[asRoot])
	require.Contains(t, got[asRoot].Message, "runAsNonRoot and image will run as root")
	require.Contains(t, got[asRoot].Message, "set spec.securityContext.runAsUser")
}

// stopCheckingStore records, at each save, the containers of the
// attempt's pod that its node still reported running by then.
type stopCheckingStore struct {
	*executor.MemoryStore
	mu            sync.Mutex
	runningAtSave map[kubexec.TaskKey][]string
}

func (s *stopCheckingStore) SaveResult(ctx context.Context, r kubexec.Result) error {
	p, err := cluster.Client().CoreV1().Pods(r.Namespace).Get(ctx, r.PodName, metav1.GetOptions{})
	if err == nil {
		var running []string
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			if cs.State.Running != nil {
				running = append(running, cs.Name)
			}
		}
		if len(running) > 0 {
			s.mu.Lock()
			s.runningAtSave[r.Key] = running
			s.mu.Unlock()
		}
	}
	return s.MemoryStore.SaveResult(ctx, r)
}

// TestResultWaitsForThePodToStop: a revoked attempt and one whose pod
// someone else deleted keep running for a while after SIGTERM; their
// results are saved only once their pods have stopped, so that a retry
// never runs beside them (the Job controller's podReplacementPolicy
// Failed). With a negative PodStopWait the results are saved at once and
// say that the pod may still run.
func TestResultWaitsForThePodToStop(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	// The task takes stopSeconds to stop after SIGTERM (the grace periods
	// are 30 s).
	run := func(t *testing.T, stopWait time.Duration, stopSeconds int) (*stopCheckingStore, kubexec.TaskKey, kubexec.TaskKey) {
		slowStop := fmt.Sprintf(`trap 'sleep %d; exit 143' TERM; sleep 300 & wait; sleep 5`, stopSeconds)
		ns := cluster.NewNamespace(t, "stopwait", nil)
		store := &stopCheckingStore{MemoryStore: executor.NewMemoryStore(), runningAtSave: map[kubexec.TaskKey][]string{}}
		cfg := testConfig(ns)
		cfg.RevokeGracePeriod = 30 * time.Second
		cfg.PodStopWait = stopWait
		e := startExecutor(t, cluster.RESTConfig(), store, cfg)
		revoked, deleted := key("stopwait", 1), key("stopwait", 2)
		for _, k := range []kubexec.TaskKey{revoked, deleted} {
			require.NoError(t, e.Queue(shell(k, slowStop)))
		}
		pods := cluster.Client().CoreV1().Pods(ns)
		for _, k := range []kubexec.TaskKey{revoked, deleted} {
			name, err := kubexec.PodName(k)
			require.NoError(t, err)
			drive(t, e, 3*time.Minute, "pod running", func() bool {
				p, err := pods.Get(ctx, name, metav1.GetOptions{})
				return err == nil && p.Status.Phase == corev1.PodRunning
			})
		}
		require.NoError(t, e.Revoke(revoked))
		name, err := kubexec.PodName(deleted)
		require.NoError(t, err)
		grace := int64(30)
		require.NoError(t, pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &grace}))
		drive(t, e, 3*time.Minute, "two results", func() bool { return len(store.Results()) == 2 })
		got := resultsByKey(store.MemoryStore)
		require.Equal(t, kubexec.ReasonRevoked, got[revoked].Reason, "%+v", got[revoked])
		require.Equal(t, kubexec.ReasonDeletedExternally, got[deleted].Reason, "%+v", got[deleted])
		return store, revoked, deleted
	}
	t.Run("waits by default", func(t *testing.T) {
		store, revoked, deleted := run(t, 0, 3)
		store.mu.Lock()
		defer store.mu.Unlock()
		require.Empty(t, store.runningAtSave, "results were saved while their pods still ran")
		got := resultsByKey(store.MemoryStore)
		require.False(t, got[revoked].PodMayStillRun)
		require.False(t, got[deleted].PodMayStillRun)
	})
	t.Run("saves at once when told so", func(t *testing.T) {
		store, revoked, deleted := run(t, -1, 25)
		got := resultsByKey(store.MemoryStore)
		store.mu.Lock()
		defer store.mu.Unlock()
		for _, k := range []kubexec.TaskKey{revoked, deleted} {
			if _, running := store.runningAtSave[k]; running {
				require.True(t, got[k].PodMayStillRun, "a result saved while its pod ran must say so: %+v", got[k])
			}
		}
		require.NotEmpty(t, store.runningAtSave, "without waiting, the saves come before the pods stop (25 s after SIGTERM)")
	})
}

// TestAttemptStatus: a host can ask what an attempt is doing: queued while
// it waits for a slot, pending with the scheduler's reason, running with
// its pod and node, and the result's state once it ended; an attempt the
// executor does not track is not found.
func TestAttemptStatus(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "status", nil)
	store := executor.NewMemoryStore()
	cfg := testConfig(ns)
	cfg.Parallelism = 2
	cfg.Classify.PendingTimeout = time.Hour
	e := startExecutor(t, cluster.RESTConfig(), store, cfg)
	running, pending, queued := key("status", 1), key("status", 2), key("status", 3)
	require.NoError(t, e.Queue(shell(running, "sleep 300")))
	big := shell(pending, "exit 0")
	big.Requests = map[corev1.ResourceName]string{corev1.ResourceCPU: "1000"}
	require.NoError(t, e.Queue(big))
	require.NoError(t, e.Queue(shell(queued, "exit 0")))
	_, ok := e.Attempt(key("status", 99))
	require.False(t, ok)

	status := func(k kubexec.TaskKey) executor.AttemptStatus {
		st, ok := e.Attempt(k)
		require.True(t, ok, "%s is tracked", k)
		return st
	}
	drive(t, e, 3*time.Minute, "running and pending", func() bool {
		return status(running).State == kubexec.StateRunning && status(pending).State == kubexec.StatePending
	})
	r := status(running)
	name, err := kubexec.PodName(running)
	require.NoError(t, err)
	require.Equal(t, name, r.PodName)
	require.Equal(t, ns, r.Namespace)
	require.NotEmpty(t, r.Node)
	require.Nil(t, r.Result)
	require.Contains(t, status(pending).Message, "Insufficient cpu")
	require.Equal(t, kubexec.StateQueued, status(queued).State, "Parallelism 2 is full")

	require.NoError(t, e.Revoke(pending))
	drive(t, e, 3*time.Minute, "the third attempt's result", func() bool {
		st, ok := e.Attempt(queued)
		return !ok || st.State.Terminal()
	})
	drive(t, e, 3*time.Minute, "results saved", func() bool { return len(store.Results()) == 2 })
	require.Equal(t, kubexec.ReasonSucceeded, resultsByKey(store)[queued].Reason)
}
