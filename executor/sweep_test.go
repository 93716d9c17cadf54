package executor_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/adoption"
	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/internal/devcluster"
	"github.com/kubexec/kubexec/internal/fleet"
	"github.com/kubexec/kubexec/internal/provenance"
)

// makeEndedPods creates n pods of the instance owner (of testGroup, its
// Lease in ns) that ended while it was alive, as it made them: kubexec's
// metadata with the tracking finalizer, the provenance mark of the group's
// key (the Secret an instance of the group keeps in ns, made here when
// there is none yet), a terminated container, phase Succeeded for exit
// code 0 and Failed otherwise. No scheduler or node touches them. Their
// keys are key(workflow, i).
func makeEndedPods(tb testing.TB, client kubernetes.Interface, ns, owner, workflow string, n int, exitCode func(i int) int32) []*corev1.Pod {
	tb.Helper()
	marks := groupProvenance(tb, client, ns)
	return devcluster.CreatePods(tb, client, ns, n, func(i int) (*corev1.Pod, error) {
		pod := &corev1.Pod{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			SchedulerName: "kubexec-test-no-scheduler",
			Containers:    []corev1.Container{{Name: "base", Image: "busybox:1.36"}},
		}}
		if err := kubexec.ApplyMetadata(pod, owner, key(workflow, i)); err != nil {
			return nil, err
		}
		if err := kubexec.ApplyGroup(pod, testGroup, ns); err != nil {
			return nil, err
		}
		pod.Namespace = ns
		return pod, marks.Sign(pod)
	}, func(i int, st *corev1.PodStatus) bool {
		code, now := exitCode(i), metav1.Now()
		st.Phase = corev1.PodSucceeded
		if code != 0 {
			st.Phase = corev1.PodFailed
		}
		st.ContainerStatuses = []corev1.ContainerStatus{{
			Name: "base", Image: "busybox:1.36",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, StartedAt: now, FinishedAt: now}},
		}}
		return true
	})
}

// groupProvenance returns the provenance of testGroup's instances in ns:
// the key in the group's Secret, which it creates as the group's first
// instance would when there is none.
func groupProvenance(tb testing.TB, client kubernetes.Interface, ns string) *provenance.Marker {
	tb.Helper()
	name := executor.DefaultProvenanceSecret + "-" + testGroup
	key := []byte("the test group's provenance key.")
	_, err := client.CoreV1().Secrets(ns).Create(tb.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Data:       map[string][]byte{executor.ProvenanceSecretKey: key},
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		s, err := client.CoreV1().Secrets(ns).Get(tb.Context(), name, metav1.GetOptions{})
		require.NoError(tb, err)
		key = s.Data[executor.ProvenanceSecretKey]
	} else {
		require.NoError(tb, err)
	}
	p, err := provenance.New(key)
	require.NoError(tb, err)
	return p
}

// TestSweepSettlesEndedPods: the ended pods of an instance that died
// without a Lease get their results saved and are released by the sweep
// of an executor that starts later, without ever changing owner: the
// succeeded ones deleted, the failed ones kept and labelled done, as the
// GC policy says, and no tracking finalizer left.
func TestSweepSettlesEndedPods(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "settle", nil)
	client := cluster.Client()
	const n = 10
	exitCode := func(i int) int32 { return int32(i%3) * 3 } // 0, 3, 6, 0, ...
	pods := makeEndedPods(t, client, ns, "gone-instance", "settle", n, exitCode)

	patches, rc := countRelabels()

	store := executor.NewMemoryStore()
	cfg := testConfig(ns)
	e := startExecutor(t, rc, store, cfg)
	drive(t, e, 3*time.Minute, "results of the dead instance's pods", func() bool { return len(store.Results()) == n })
	results := resultsByKey(store)
	for i := range n {
		r, ok := results[key("settle", i)]
		require.True(t, ok, "task %d has no result", i)
		require.Equal(t, pods[i].Name, r.PodName)
		if code := exitCode(i); code == 0 {
			require.Equal(t, kubexec.ReasonSucceeded, r.Reason, "%+v", r)
		} else {
			require.Equal(t, kubexec.ReasonFailed, r.Reason, "%+v", r)
			require.Equal(t, code, r.ExitCode, "%+v", r)
		}
	}
	requireNoTrackedPods(t, ns)
	for i, p := range pods {
		got, err := client.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
		if exitCode(i) == 0 {
			if err == nil {
				require.NotNil(t, got.DeletionTimestamp, "succeeded pod %s must be deleted", p.Name)
			} else {
				require.True(t, apierrors.IsNotFound(err), "%v", err)
			}
			continue
		}
		require.NoError(t, err, "failed pod %s is kept", p.Name)
		require.Equal(t, "gone-instance", got.Labels[kubexec.LabelExecutor], "settled without a relabel")
	}
	require.Zero(t, patches.n.Load(), "no pod was relabelled")
	claim, err := client.CoordinationV1().Leases(ns).Get(ctx, fleet.ClaimName("gone-instance", ns), metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, cfg.ExecutorID, *claim.Spec.HolderIdentity)
	drive(t, e, time.Minute, "no attempt left", func() bool { return e.Stats().Finishing == 0 })
}

// requestCounter counts the requests sent through it (those match
// accepts, when set).
type requestCounter struct {
	next  http.RoundTripper
	match func(*http.Request) bool
	n     atomic.Int64
}

func (c *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	c.next = rt
	return c
}

// countRelabels returns the dev cluster's config with a counter of the
// relabels sent through it: patches of the JSON patch type, which only a
// relabel sends.
func countRelabels() (*requestCounter, *rest.Config) {
	c := &requestCounter{match: func(r *http.Request) bool {
		return r.Method == http.MethodPatch && r.Header.Get("Content-Type") == string(types.JSONPatchType)
	}}
	rc := cluster.RESTConfig()
	rc.Wrap(c.wrap)
	return c, rc
}

func (c *requestCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if c.match == nil || c.match(req) {
		c.n.Add(1)
	}
	return c.next.RoundTrip(req)
}

// BenchmarkAdoptEnded5000 starts an executor beside 5,000 ended pods of an
// instance that died without a Lease, and reports how long after Start all
// their results were saved and all the pods released (deleted, the default
// GC policy for succeeded pods), and the API requests the executor sent
// meanwhile.
func BenchmarkAdoptEnded5000(b *testing.B) {
	cluster.Need(b)
	const n = 5000
	for b.Loop() {
		b.StopTimer()
		ns := cluster.NewNamespace(b, "adopt-bench", nil)
		rc := cluster.RESTConfig()
		rc.QPS, rc.Burst = 2000, 2000
		client, err := kubernetes.NewForConfig(rc)
		require.NoError(b, err)
		pods := makeEndedPods(b, client, ns, "gone-instance", "adopt", n, func(int) int32 { return 0 })
		w, err := client.CoreV1().Pods(ns).Watch(context.Background(), metav1.ListOptions{ResourceVersion: pods[n-1].ResourceVersion})
		require.NoError(b, err)
		released := make(chan time.Time, 1)
		go func() {
			gone := 0
			for ev := range w.ResultChan() {
				if ev.Type == watch.Deleted {
					if gone++; gone == n {
						released <- time.Now()
					}
				}
			}
		}()

		store := executor.NewMemoryStore()
		cfg := testConfig(ns)
		counter := &requestCounter{}
		erc := cluster.RESTConfig()
		erc.QPS, erc.Burst = 2000, 2000
		erc.Wrap(counter.wrap)
		e, err := executor.New(erc, store, cfg)
		require.NoError(b, err)
		b.StartTimer()
		start := time.Now()
		require.NoError(b, e.Start(context.Background()))
		var saved time.Duration
		deadline := time.Now().Add(10 * time.Minute)
		for len(store.Results()) < n {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d results saved after 10 minutes (stats %+v)", len(store.Results()), n, e.Stats())
			}
			time.Sleep(20 * time.Millisecond)
		}
		saved = time.Since(start)
		var last time.Time
		select {
		case last = <-released:
		case <-time.After(10 * time.Minute):
			b.Fatalf("not all %d pods released after 10 minutes (stats %+v)", n, e.Stats())
		}
		calls := counter.n.Load()
		b.StopTimer()
		w.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		require.NoError(b, e.Stop(ctx))
		cancel()
		b.ReportMetric(saved.Seconds(), "saved-5000-s")
		b.ReportMetric(last.Sub(start).Seconds(), "released-5000-s")
		b.ReportMetric(float64(calls), "adopter-requests")
		b.StartTimer()
		b.Logf("5,000 ended pods of a dead instance: results saved %.2f s after Start, all released %.2f s after it, %d API requests",
			saved.Seconds(), last.Sub(start).Seconds(), calls)
	}
}

// TestAdoptEndedPodsWithoutRelabel: the host's Adopt of ended pods of a
// dead instance saves their results from the pods read and releases them,
// with no relabel; a second Adopt of the same keys, once the kept pods
// are labelled done, finds them accounted for and writes nothing.
func TestAdoptEndedPodsWithoutRelabel(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "adopt-ended", nil)
	const n = 4
	exitCode := func(i int) int32 { return int32(i % 2) } // kept: the failed ones
	makeEndedPods(t, cluster.Client(), ns, "gone-2", "adopt-ended", n, exitCode)
	var dead atomic.Bool // alive at Start, so the first sweep leaves them
	cfg := testConfig(ns)
	cfg.SweepInterval = 720 * time.Hour
	cfg.Liveness = adoption.LivenessFunc(func(_ context.Context, id string) (bool, error) {
		return id != "gone-2" || !dead.Load(), nil
	})
	patches, rc := countRelabels()
	store := executor.NewMemoryStore()
	e := startExecutor(t, rc, store, cfg)
	var keys []kubexec.TaskKey
	for i := range n {
		keys = append(keys, key("adopt-ended", i))
	}
	_, err := e.Adopt(ctx, keys)
	require.ErrorIs(t, err, executor.ErrOwnerAlive)

	dead.Store(true)
	noPod, err := e.Adopt(ctx, keys)
	require.NoError(t, err)
	require.Empty(t, noPod)
	drive(t, e, 3*time.Minute, "results of the adopted pods", func() bool { return len(store.Results()) == n })
	requireNoTrackedPods(t, ns)
	drive(t, e, time.Minute, "no attempt left", func() bool { return e.Stats().Finishing == 0 })
	noPod, err = e.Adopt(ctx, keys)
	require.NoError(t, err)
	require.Empty(t, noPod, "released pods are accounted for")
	require.Zero(t, patches.n.Load(), "no pod was relabelled")
	for i, r := range resultsByKey(store) {
		require.Equal(t, kubexec.ReasonSucceeded == r.Reason, r.ExitCode == 0, "%v: %+v", i, r)
	}
}
