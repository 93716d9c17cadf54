package executor_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/executor"
)

// sweepCounter counts an executor's adoption sweeps.
type sweepCounter struct {
	executor.NopMetrics
	sweeps atomic.Int64
}

func (c *sweepCounter) ObserveSweep(int, error) { c.sweeps.Add(1) }

// TestDeploymentsStayApart: three schedulers with stores of their own share
// one namespace and one Lease namespace. A (no adoption group, the default)
// is stopped and its Lease deleted; C (group "team-c") crashes: every
// request it sends fails, its Lease expires. B (group "team-b") sweeps all
// along, long past both Leases' expiry, and is asked to Adopt their
// attempts. B never touches their pods: no owner changes, no result of
// theirs in B's store. When A restarts with its id and C comes back, each
// attempt gets exactly one result, in its own store, from its one pod.
func TestDeploymentsStayApart(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "deployments", nil)
	short := func(cfg executor.Config, group string) executor.Config {
		cfg.AdoptionGroup = group
		cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod = 2*time.Second, 1500*time.Millisecond, 500*time.Millisecond
		cfg.SweepInterval = 300 * time.Millisecond
		return cfg
	}
	cfgA, cfgB, cfgC := short(testConfig(ns), ""), short(testConfig(ns), "team-b"), short(testConfig(ns), "team-c")
	cfgA.DeleteLeaseOnStop = true // a missing Lease counts as dead
	storeA, storeB, storeC := executor.NewMemoryStore(), executor.NewMemoryStore(), executor.NewMemoryStore()
	sweepsB := &sweepCounter{}
	cfgB.Metrics = sweepsB

	crashC := &faults{}
	rcC := cluster.RESTConfig()
	rcC.Wrap(func(rt http.RoundTripper) http.RoundTripper { crashC.next = rt; return crashC })
	a, err := executor.New(cluster.RESTConfig(), storeA, cfgA)
	require.NoError(t, err)
	require.NoError(t, a.Start(ctx))
	b := startExecutor(t, cluster.RESTConfig(), storeB, cfgB)
	c := startExecutor(t, rcC, storeC, cfgC)

	owners := watchOwners(t, ns)

	queue := func(e *executor.Executor, workflow string, n int) []kubexec.TaskKey {
		var keys []kubexec.TaskKey
		for i := range n {
			k := key(workflow, i)
			script := "sleep 1" // ends while its owner is gone: the sweep's case
			if i%2 == 1 {
				script = "sleep 8" // still running when B is asked to Adopt it
			}
			require.NoError(t, e.Queue(shell(k, script)))
			keys = append(keys, k)
		}
		return keys
	}
	keysA, keysB, keysC := queue(a, "dep-a", 4), queue(b, "dep-b", 2), queue(c, "dep-c", 4)
	drive(t, a, 3*time.Minute, "A launched", func() bool { return a.Stats().Running == 4 })
	drive(t, c, 3*time.Minute, "C launched", func() bool { return c.Stats().Running == 4 })

	// A stops; C crashes.
	require.NoError(t, a.Stop(ctx))
	crashC.crashed.Store(true)
	gone := time.Now()

	// A's and C's short pods end while their owners are gone.
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		if changes := owners.list(); len(changes) > 0 {
			return false, fmt.Errorf("B took over another deployment's pods: %+v", changes)
		}
		for _, r := range storeB.Results() {
			if r.Key.WorkflowID != "dep-b" {
				return false, fmt.Errorf("B saved another deployment's result: %+v", r)
			}
		}
		pods, err := cluster.Client().CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		ended := 0
		for _, p := range pods.Items {
			if p.Labels[kubexec.LabelExecutor] != cfgB.ExecutorID && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed) {
				ended++
			}
		}
		return ended >= 4, nil
	}))
	// B sweeps, and is asked to adopt their attempts, well past both
	// Leases' expiry (counted in B's sweeps, however slow they are).
	expired := gone.Add(3 * cfgC.LeaseDuration)
	var since int64
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		require.NoError(t, b.Heartbeat())
		if time.Now().Before(expired) {
			since = sweepsB.sweeps.Load()
			return false, nil
		}
		return sweepsB.sweeps.Load() >= since+5, nil
	}))
	for _, keys := range [][]kubexec.TaskKey{keysA, keysC} {
		noPod, err := b.Adopt(ctx, keys)
		require.ErrorIs(t, err, executor.ErrOtherDeployment)
		require.Empty(t, noPod, "their pods exist: the host must not reset them")
	}
	drive(t, b, 2*time.Minute, "B's own results", func() bool { return len(storeB.Results()) == len(keysB) })
	for _, r := range storeB.Results() {
		require.Equal(t, "dep-b", r.Key.WorkflowID, "B saved another deployment's result: %+v", r)
	}
	require.Empty(t, owners.list(), "B touched another deployment's pods")

	// A restarts with its id; C comes back. Each saves its own results.
	a2 := startExecutor(t, cluster.RESTConfig(), storeA, cfgA)
	crashC.crashed.Store(false)
	drive(t, a2, 3*time.Minute, "A's results", func() bool { return len(storeA.Results()) == len(keysA) })
	drive(t, c, 3*time.Minute, "C's results", func() bool { return len(storeC.Results()) == len(keysC) })
	for _, s := range []struct {
		store *executor.MemoryStore
		keys  []kubexec.TaskKey
	}{{storeA, keysA}, {storeB, keysB}, {storeC, keysC}} {
		require.Len(t, s.store.Results(), len(s.keys))
		for _, k := range s.keys {
			r, ok, err := s.store.LoadResult(ctx, k)
			require.NoError(t, err)
			require.True(t, ok, "%s has no result in its own store", k)
			require.Equal(t, kubexec.ReasonSucceeded, r.Reason, "%s: %+v", k, r)
			require.Equal(t, 1, s.store.Calls(k), "%s saved more than once", k)
		}
	}
	requireNoTrackedPods(t, ns)
	require.Empty(t, owners.list(), "a pod changed owner or an attempt got a second pod")
}

// ownerChange is a change of a pod's owner label, or (newPod) another pod
// of a name seen before.
type ownerChange struct {
	pod, from, to string
	newPod        bool
	at            time.Time
}

// ownerLog records, from a watch of a namespace, every ownerChange.
type ownerLog struct {
	mu      sync.Mutex
	changes []ownerChange
}

func watchOwners(t *testing.T, ns string) *ownerLog {
	t.Helper()
	l := &ownerLog{}
	w, err := cluster.Client().CoreV1().Pods(ns).Watch(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	t.Cleanup(w.Stop)
	go func() {
		owners := map[string]string{}
		uids := map[string]types.UID{}
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			owner := p.Labels[kubexec.LabelExecutor]
			l.mu.Lock()
			if prev, ok := owners[p.Name]; ok && prev != owner {
				l.changes = append(l.changes, ownerChange{pod: p.Name, from: prev, to: owner, at: time.Now()})
			}
			if prev, ok := uids[p.Name]; ok && prev != p.UID {
				l.changes = append(l.changes, ownerChange{pod: p.Name, from: owners[p.Name], to: owner, newPod: true, at: time.Now()})
			}
			owners[p.Name], uids[p.Name] = owner, p.UID
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *ownerLog) list() []ownerChange {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.changes)
}
