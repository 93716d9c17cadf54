package executor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/internal/devcluster"
	"github.com/kubexec/kubexec/internal/provenance"
	"github.com/kubexec/kubexec/podtemplate"
)

// hookStore is a MemoryStore whose SaveResult first calls before (when
// set): a hook that may block, act on the cluster, or fail the save.
type hookStore struct {
	*executor.MemoryStore
	mu     sync.Mutex
	before func(ctx context.Context, r kubexec.Result) error
	calls  atomic.Int64
}

func newHookStore() *hookStore { return &hookStore{MemoryStore: executor.NewMemoryStore()} }

func (s *hookStore) setBefore(f func(ctx context.Context, r kubexec.Result) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.before = f
}

func (s *hookStore) SaveResult(ctx context.Context, r kubexec.Result) error {
	s.calls.Add(1)
	s.mu.Lock()
	before := s.before
	s.mu.Unlock()
	if before != nil {
		if err := before(ctx, r); err != nil {
			return err
		}
	}
	return s.MemoryStore.SaveResult(ctx, r)
}

// withOverride returns spec with the override YAML merged into its pod.
func withOverride(t *testing.T, spec podtemplate.TaskSpec, yaml string) podtemplate.TaskSpec {
	t.Helper()
	o, err := podtemplate.ParseOverride(spec.Key.TaskID, []byte(yaml))
	require.NoError(t, err)
	spec.Override = o
	return spec
}

// podHistory records, from a watch of ns, whether any pod was ever bound
// to a node or had a container start, and which pods exist.
type podHistory struct {
	mu      sync.Mutex
	bound   []string
	started []string
}

func podHistoryOf(t *testing.T, ns string) *podHistory {
	t.Helper()
	h := &podHistory{}
	w, err := cluster.Client().CoreV1().Pods(ns).Watch(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	t.Cleanup(w.Stop)
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			h.mu.Lock()
			if p.Spec.NodeName != "" {
				h.bound = append(h.bound, p.Name+" on "+p.Spec.NodeName)
			}
			for _, cs := range p.Status.ContainerStatuses {
				if cs.State.Running != nil || cs.State.Terminated != nil {
					h.started = append(h.started, p.Name+"/"+cs.Name)
				}
			}
			h.mu.Unlock()
		}
	}()
	return h
}

// labelNode sets (value non-nil) or removes a label of a process node.
func labelNode(t *testing.T, node, key string, value *string) {
	t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]*string{key: value}}})
	require.NoError(t, err)
	_, err = cluster.Client().CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, patch, metav1.PatchOptions{})
	require.NoError(t, err)
}

// requirePodGone waits until the pod of k is gone from ns.
func requirePodGone(t *testing.T, ns string, k kubexec.TaskKey) {
	t.Helper()
	name, err := kubexec.PodName(k)
	require.NoError(t, err)
	require.NoError(t, wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := cluster.Client().CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}), "pod %s/%s is not gone", ns, name)
}

// TestNoContainerStartsAfterTheResult: an attempt whose pod cannot be
// scheduled ends (by its pending timeout, or revoked), and its pod's node
// becomes schedulable right then: while the (slow) StateStore saves the
// result. The pod was deleted before the save began, so the scheduler can
// no longer bind it: no container of it ever starts, and it is gone.
func TestNoContainerStartsAfterTheResult(t *testing.T) {
	cluster.Need(t)
	for _, tc := range []struct {
		name   string
		revoke bool
		reason kubexec.Reason
	}{
		{"pending timeout", false, kubexec.ReasonUnschedulable},
		{"revoked while pending", true, kubexec.ReasonRevoked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := cluster.NewNamespace(t, "late-node", nil)
			history := podHistoryOf(t, ns)
			label := "kubexec-test/late-" + ns
			node := cluster.NodeNames()[0]
			t.Cleanup(func() { labelNode(t, node, label, nil) })
			store := newHookStore()
			// The node becomes schedulable as the save begins, and the
			// save takes 5 s: time enough for the scheduler and the node
			// to start the pod, were it not deleted.
			yes := "yes"
			store.setBefore(func(ctx context.Context, r kubexec.Result) error {
				labelNode(t, node, label, &yes)
				select {
				case <-time.After(5 * time.Second):
				case <-ctx.Done():
				}
				return nil
			})
			cfg := testConfig(ns)
			e := startExecutor(t, cluster.RESTConfig(), store, cfg)
			k := key("late", 1)
			require.NoError(t, e.Queue(withOverride(t, shell(k, "echo started; sleep 30"), fmt.Sprintf("spec: {nodeSelector: {%q: %q}}", label, "yes"))))
			drive(t, e, 3*time.Minute, "pod pending", func() bool {
				st, _ := e.Attempt(k)
				return st.State == kubexec.StatePending
			})
			if tc.revoke {
				require.NoError(t, e.Revoke(k))
			}
			drive(t, e, 3*time.Minute, "result", func() bool { return len(store.Results()) == 1 })
			r := store.Results()[0]
			require.Equal(t, tc.reason, r.Reason, "%+v", r)
			require.False(t, r.PodMayStillRun, "%+v", r)
			requirePodGone(t, ns, k)
			history.mu.Lock()
			defer history.mu.Unlock()
			require.Empty(t, history.bound, "the ended attempt's pod was bound after its result")
			require.Empty(t, history.started, "a container of the ended attempt started")
		})
	}
}

// TestOutcomeSurvivesARestartDuringTheStop: a revoked attempt's pod takes
// its grace period to stop; the executor stops meanwhile, and one with
// the same id starts. The result is Revoked (kubexec's decision, recorded
// on the pod before the delete), not DeletedExternally.
func TestOutcomeSurvivesARestartDuringTheStop(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "revoke-restart", nil)
	store := executor.NewMemoryStore()
	cfg := testConfig(ns)
	cfg.RevokeGracePeriod = 8 * time.Second
	e, err := executor.New(cluster.RESTConfig(), store, cfg)
	require.NoError(t, err)
	require.NoError(t, e.Start(ctx))
	k := key("revoke-restart", 1)
	// The shell ignores SIGTERM: the pod stops at the end of its grace.
	require.NoError(t, e.Queue(shell(k, "trap '' TERM; echo started; sleep 60 & wait; sleep 60")))
	drive(t, e, 3*time.Minute, "running", func() bool {
		st, _ := e.Attempt(k)
		return st.State == kubexec.StateRunning
	})
	require.NoError(t, e.Revoke(k))
	name, err := kubexec.PodName(k)
	require.NoError(t, err)
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := cluster.Client().CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && p.DeletionTimestamp != nil, err
	}), "the revoked pod is being deleted")
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	require.Error(t, e.Stop(stopped), "the result is left unsaved")
	require.Empty(t, store.Results())

	startExecutor(t, cluster.RESTConfig(), store, cfg)
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*time.Minute, true, func(context.Context) (bool, error) {
		return len(store.Results()) == 1, nil
	}))
	r := store.Results()[0]
	require.Equal(t, kubexec.ReasonRevoked, r.Reason, "%+v", r)
	require.Equal(t, "the host revoked the attempt", r.Message)
	requireNoTrackedPods(t, ns)
}

// TestReleaseLeavesAnotherPodOfTheName: while an attempt's result is
// saved, its pod is removed and another pod of the same name appears. The
// release (a delete and a patch) is guarded by the UID: the new pod keeps
// its finalizers and labels.
func TestReleaseLeavesAnotherPodOfTheName(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "release-uid", nil)
	client := cluster.Client()
	store := newHookStore()
	k := key("release-uid", 1)
	name, err := kubexec.PodName(k)
	require.NoError(t, err)
	var replaced types.UID
	store.setBefore(func(ctx context.Context, r kubexec.Result) error {
		if replaced != "" {
			return nil
		}
		// Someone removes the pod (finalizer and all) and another pod of
		// its name appears.
		_, err := client.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
		require.NoError(t, err)
		zero := int64(0)
		require.NoError(t, client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}))
		require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		}))
		p, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Finalizers: []string{kubexec.FinalizerResultTracking}, Labels: map[string]string{"owner": "someone-else"}},
			Spec: corev1.PodSpec{
				SchedulerName: "kubexec-test-no-scheduler",
				Containers:    []corev1.Container{{Name: "c", Image: "busybox:1.36"}},
			},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		replaced = p.UID
		t.Cleanup(func() {
			_, _ = client.CoreV1().Pods(ns).Patch(context.Background(), name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
		})
		return nil
	})
	e := startExecutor(t, cluster.RESTConfig(), store, testConfig(ns))
	require.NoError(t, e.Queue(shell(k, "exit 0")))
	drive(t, e, 3*time.Minute, "released", func() bool {
		_, tracked := e.Attempt(k)
		return len(store.Results()) == 1 && !tracked
	})
	p, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err, "the other pod of the name was deleted")
	require.Equal(t, replaced, p.UID)
	require.Nil(t, p.DeletionTimestamp, "the other pod of the name was deleted")
	require.Equal(t, []string{kubexec.FinalizerResultTracking}, p.Finalizers, "the other pod lost its finalizer")
	require.NotContains(t, p.Labels, kubexec.LabelDone, "the other pod was labelled done")
}

// TestForeignLivePodHoldsTheAttempt: B is asked to run an attempt whose
// pod A runs. No result is saved for it while that pod lives, though B's
// QueuedTimeout passes many times over; once A saved the real outcome,
// B's attempt ends with that same result and no second pod.
func TestForeignLivePodHoldsTheAttempt(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "held", nil)
	history := podHistoryOf(t, ns)
	store := executor.NewMemoryStore()
	a := startExecutor(t, cluster.RESTConfig(), store, testConfig(ns))
	cfgB := testConfig(ns)
	cfgB.QueuedTimeout = time.Second
	b := startExecutor(t, cluster.RESTConfig(), store, cfgB)
	k := key("held", 1)
	require.NoError(t, a.Queue(shell(k, "sleep 8; exit 0")))
	drive(t, a, 3*time.Minute, "A's pod running", func() bool {
		st, _ := a.Attempt(k)
		return st.State == kubexec.StateRunning
	})
	require.NoError(t, b.Queue(shell(k, "exit 7")))
	drive(t, b, 3*time.Minute, "B's attempt held", func() bool {
		st, _ := b.Attempt(k)
		return st.State == kubexec.StateQueued && st.Message != ""
	})
	st, _ := b.Attempt(k)
	require.Contains(t, st.Message, "belongs to executor")
	drive(t, a, 3*time.Minute, "A's result", func() bool { _, ok, _ := store.LoadResult(ctx, k); return ok })
	drive(t, b, 3*time.Minute, "B's attempt ended", func() bool { _, tracked := b.Attempt(k); return !tracked })
	r, _, err := store.LoadResult(ctx, k)
	require.NoError(t, err)
	require.Equal(t, kubexec.ReasonSucceeded, r.Reason, "the real outcome is kept: %+v", r)
	history.mu.Lock()
	defer history.mu.Unlock()
	pods := map[string]bool{}
	for _, s := range history.started {
		pods[s] = true
	}
	require.Len(t, pods, 1, "one pod ran: %v", history.started)
}

// TestInvalidUTF8IsSavedValid: a termination message that is not valid
// UTF-8 reaches a strict store (as PostgreSQL's text columns are) as valid
// UTF-8, and the result is saved. The real kubelet writes the raw bytes
// through protobuf, and the executor reads them the same way.
func TestInvalidUTF8IsSavedValid(t *testing.T) {
	cluster.Need(t)
	for _, pin := range []struct {
		name string
		pin  nodePin
	}{{"process node", onAnyNode}, {"kubelet node", onKubelet}} {
		t.Run(pin.name, func(t *testing.T) {
			ns := cluster.NewNamespace(t, "utf8", nil)
			store := newHookStore()
			store.setBefore(func(_ context.Context, r kubexec.Result) error {
				if !utf8.ValidString(r.Message) {
					return errors.New("invalid byte sequence for encoding UTF8")
				}
				return nil
			})
			e := startExecutor(t, cluster.RESTConfig(), store, testConfig(ns))
			k := key("utf8", 1)
			require.NoError(t, e.Queue(pin.pin.apply(t, shell(k, `printf 'bad \377\376 bytes' > /dev/termination-log; exit 3`), "")))
			drive(t, e, 3*time.Minute, "result", func() bool { return len(store.Results()) == 1 })
			r := store.Results()[0]
			pin.pin.requireRanThere(t, r)
			require.Equal(t, kubexec.ReasonFailed, r.Reason, "%+v", r)
			require.Regexp(t, `bad \x{FFFD}+ bytes`, r.Message)
		})
	}
}

// TestInvalidUTF8FromAProtobufStatus: a node agent that writes its pods'
// status through protobuf (as a virtual kubelet's client may) stores a
// termination message's raw bytes, invalid UTF-8 included, and the
// executor reads them the same way. The result reaches a strict store as
// valid UTF-8, and is saved.
func TestInvalidUTF8FromAProtobufStatus(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "utf8-proto", nil)
	rc := cluster.RESTConfig()
	rc.ContentType = runtime.ContentTypeProtobuf
	node, err := kubernetes.NewForConfig(rc)
	require.NoError(t, err)
	cfg := testConfig(ns)
	cfg.ProvenanceKey = []byte("a provenance key of 32 bytes ...")
	marks, err := provenance.New(cfg.ProvenanceKey)
	require.NoError(t, err)
	k := key("utf8-proto", 1)
	devcluster.CreatePods(t, node, ns, 1, func(int) (*corev1.Pod, error) {
		pod := &corev1.Pod{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			SchedulerName: "kubexec-test-no-scheduler",
			Containers:    []corev1.Container{{Name: "base", Image: "busybox:1.36"}},
		}}
		if err := kubexec.ApplyMetadata(pod, cfg.ExecutorID, k); err != nil {
			return nil, err
		}
		if err := kubexec.ApplyGroup(pod, testGroup, ns); err != nil {
			return nil, err
		}
		pod.Namespace = ns
		return pod, marks.Sign(pod) // as the executor would have
	}, func(_ int, st *corev1.PodStatus) bool {
		now := metav1.Now()
		st.Phase = corev1.PodFailed
		st.ContainerStatuses = []corev1.ContainerStatus{{Name: "base", Image: "busybox:1.36", State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: 3, Message: "bad \xff\xfe bytes", StartedAt: now, FinishedAt: now},
		}}}
		return true
	})
	store := newHookStore()
	store.setBefore(func(_ context.Context, r kubexec.Result) error {
		if !utf8.ValidString(r.Message) {
			return errors.New("invalid byte sequence for encoding UTF8")
		}
		return nil
	})
	e := startExecutor(t, cluster.RESTConfig(), store, cfg)
	drive(t, e, 3*time.Minute, "result", func() bool { return len(store.Results()) == 1 })
	r := store.Results()[0]
	require.Equal(t, kubexec.ReasonFailed, r.Reason, "%+v", r)
	require.Regexp(t, `bad \x{FFFD}+ bytes`, r.Message)
}

// TestFailingStoreBacksOffAndPausesLaunches: a store that refuses every
// save is called with backoff, not once per Heartbeat; once
// MaxUnsavedResults results wait, nothing more is launched (Stats says so)
// until the store takes them.
func TestFailingStoreBacksOffAndPausesLaunches(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "backlog", nil)
	store := newHookStore()
	var down atomic.Bool
	down.Store(true)
	store.setBefore(func(context.Context, kubexec.Result) error {
		if down.Load() {
			return errors.New("database is down")
		}
		return nil
	})
	backlog := &backlogMetrics{}
	cfg := testConfig(ns)
	cfg.MaxUnsavedResults = 2
	cfg.Metrics = backlog
	e := startExecutor(t, cluster.RESTConfig(), store, cfg)
	first := []kubexec.TaskKey{key("backlog", 1), key("backlog", 2)}
	for _, k := range first {
		require.NoError(t, e.Queue(shell(k, "exit 0")))
	}
	drive(t, e, 3*time.Minute, "results waiting", func() bool { return e.Stats().Unsaved == 2 })
	require.True(t, e.Stats().SavesBacklogged)

	// 100 ticks, each a Heartbeat: with backoff (100 ms doubling) the two
	// failing saves are tried a few times each, not 100.
	calls := store.calls.Load()
	late := key("backlog", 3)
	require.NoError(t, e.Queue(shell(late, "exit 0")))
	for range 100 {
		require.NoError(t, e.Heartbeat())
		time.Sleep(10 * time.Millisecond)
	}
	tried := store.calls.Load() - calls
	require.Less(t, tried, int64(40), "the failing store was called %d times in 100 ticks", tried)
	st := e.Stats()
	require.Equal(t, 1, st.Queued, "an attempt was launched while results piled up: %+v", st)
	require.True(t, st.SavesBacklogged)
	require.True(t, backlog.backlogged.Load(), "BacklogMetrics was told")

	down.Store(false)
	drive(t, e, 3*time.Minute, "every result saved", func() bool { return len(store.Results()) == 3 })
	require.False(t, e.Stats().SavesBacklogged)
	require.False(t, backlog.backlogged.Load())
}

type backlogMetrics struct {
	executor.NopMetrics
	backlogged atomic.Bool
}

func (m *backlogMetrics) SetSavesBacklogged(b bool) { m.backlogged.Store(b) }

// TestStopIsBounded: Stop returns when its context ends, or after
// Config.StopTimeout when it has no deadline, even while a SaveResult
// ignores its context; its error says what it left.
func TestStopIsBounded(t *testing.T) {
	cluster.Need(t)
	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"context deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 2*time.Second)
		}},
		{"background context", func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := cluster.NewNamespace(t, "stop-bounded", nil)
			store := newHookStore()
			release := make(chan struct{})
			defer close(release)
			entered := make(chan struct{}, 1)
			store.setBefore(func(context.Context, kubexec.Result) error {
				select {
				case entered <- struct{}{}:
				default:
				}
				<-release // ignores its context
				return nil
			})
			cfg := testConfig(ns)
			cfg.StopTimeout = 2 * time.Second
			e, err := executor.New(cluster.RESTConfig(), store, cfg)
			require.NoError(t, err)
			require.NoError(t, e.Start(t.Context()))
			require.NoError(t, e.Queue(shell(key("stop", 1), "exit 0")))
			drive(t, e, 3*time.Minute, "a save in progress", func() bool { return len(entered) == 1 })
			ctx, cancel := tc.ctx()
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- e.Stop(ctx) }()
			select {
			case err := <-done:
				require.ErrorContains(t, err, "1 results not yet saved")
				require.ErrorContains(t, err, "did not return after its context ended")
			case <-time.After(3 * time.Minute):
				t.Fatal("Stop did not return")
			}
		})
	}
}
