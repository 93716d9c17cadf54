package executor_test

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/kubexec/kubexec/adoption"
	"github.com/kubexec/kubexec/executor"
)

// faults sits in front of the real API server and, while a rule is on,
// fails or holds the requests it matches.
type faults struct {
	next http.RoundTripper
	// holdPodLists: pod lists and watches wait until the request ends.
	holdPodLists atomic.Bool
	// failLeases: Lease requests fail as a dropped connection would.
	failLeases atomic.Bool
	// failPodWatches: pod watch requests fail as a dropped connection
	// would.
	failPodWatches atomic.Bool
	// crashed: every request fails, as for a process that died (its
	// goroutines keep running, and reach nothing).
	crashed atomic.Bool

	mu sync.Mutex
	// watches are the open pod watch streams' bodies (breakWatches).
	watches []io.Closer
	// createsWhileLeaseFailed counts pod creates sent while failLeases was
	// on.
	createsWhileLeaseFailed int
}

func (f *faults) RoundTrip(req *http.Request) (*http.Response, error) {
	path := req.URL.Path
	isPods := strings.HasSuffix(path, "/pods")
	switch {
	case f.crashed.Load():
		return nil, errors.New("faults: the process is gone (injected)")
	case f.holdPodLists.Load() && req.Method == http.MethodGet && isPods:
		<-req.Context().Done()
		return nil, req.Context().Err()
	case f.failPodWatches.Load() && req.Method == http.MethodGet && isPods && req.URL.Query().Get("watch") == "true":
		return nil, errors.New("faults: connection refused (injected)")
	case f.failLeases.Load() && strings.Contains(path, "/leases"):
		return nil, errors.New("faults: connection reset (injected)")
	case f.failLeases.Load() && req.Method == http.MethodPost && isPods:
		f.mu.Lock()
		f.createsWhileLeaseFailed++
		f.mu.Unlock()
	}
	resp, err := f.next.RoundTrip(req)
	if err == nil && isPods && req.URL.Query().Get("watch") == "true" {
		f.mu.Lock()
		f.watches = append(f.watches, resp.Body)
		f.mu.Unlock()
	}
	return resp, err
}

// breakWatches breaks the open pod watch streams, as a dropped connection
// would.
func (f *faults) breakWatches() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.watches {
		_ = c.Close()
	}
	f.watches = nil
}

// withFaults returns a new namespace's test config and a client
// configuration whose requests pass through faults.
func withFaults(t *testing.T, prefix string) (*faults, *rest.Config, executor.Config) {
	f := &faults{}
	rc := cluster.RESTConfig()
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { f.next = rt; return f })
	return f, rc, testConfig(cluster.NewNamespace(t, prefix, nil))
}

// TestFailedStartLeavesNothing: a Start whose watch cannot sync fails,
// holds no Lease and runs nothing (Heartbeat says it is not started), and
// a second Start succeeds and runs what was queued meanwhile.
func TestFailedStartLeavesNothing(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	f, rc, cfg := withFaults(t, "failedstart")
	ns := cfg.Namespace
	store := executor.NewMemoryStore()
	cfg.Logger = testLogger(t)
	e, err := executor.New(rc, store, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Stop(context.Background()) })

	f.holdPodLists.Store(true)
	startCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err = e.Start(startCtx)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "waiting for the pod watch to sync")

	_, err = cluster.Client().CoordinationV1().Leases(ns).Get(ctx, adoption.LeaseName(cfg.ExecutorID), metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err), "a failed Start must not hold the Lease (got %v)", err)
	k := key("failedstart", 1)
	require.NoError(t, e.Queue(shell(k, "exit 0")))
	require.ErrorIs(t, e.Heartbeat(), executor.ErrNotStarted)
	require.ErrorIs(t, e.Sync(), executor.ErrNotStarted)

	f.holdPodLists.Store(false)
	require.NoError(t, e.Start(ctx))
	drive(t, e, 2*time.Minute, "the queued attempt's result", func() bool { return len(store.Results()) == 1 })
	require.Equal(t, 1, store.Calls(k))
	require.NoError(t, e.Stop(ctx))
}

// TestLostLeasePausesLaunches: while the Lease cannot be renewed no pod is
// created, Stats says why, and launching resumes once a renewal succeeds.
func TestLostLeasePausesLaunches(t *testing.T) {
	cluster.Need(t)
	f, rc, cfg := withFaults(t, "leaselost")
	store := executor.NewMemoryStore()
	cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod = 3*time.Second, 2*time.Second, 500*time.Millisecond
	e := startExecutor(t, rc, store, cfg)

	f.failLeases.Store(true)
	drive(t, e, 2*time.Minute, "lease reported lost", func() bool { return e.Stats().LeaseLost })
	k := key("leaselost", 1)
	require.NoError(t, e.Queue(shell(k, "exit 0")))
	// Ticks while the Lease is lost launch nothing. The ticks are counted,
	// not timed: on a slow machine they take longer, never fewer.
	for range 20 {
		require.NoError(t, e.Heartbeat())
		time.Sleep(50 * time.Millisecond)
	}
	require.Equal(t, 1, e.Stats().Queued)
	f.mu.Lock()
	creates := f.createsWhileLeaseFailed
	f.mu.Unlock()
	require.Zero(t, creates, "a pod was created while the Lease was lost")

	f.failLeases.Store(false)
	drive(t, e, 2*time.Minute, "lease renewed", func() bool { return !e.Stats().LeaseLost })
	drive(t, e, 2*time.Minute, "result after the lease came back", func() bool { return len(store.Results()) == 1 })
	require.Equal(t, 1, store.Calls(k))
}

// TestConfigExtremesDoNotAllocate: the largest Parallelism allowed is
// accepted without allocating for it, and values beyond the bounds are
// refused by New (never a panic).
func TestConfigExtremesDoNotAllocate(t *testing.T) {
	cluster.Need(t)
	rc := cluster.RESTConfig()
	for _, cfg := range []executor.Config{
		{Parallelism: math.MaxInt},
		{CreateConcurrency: math.MaxInt32},
		{ResultWorkers: 1 << 40},
		{CreateQPS: math.NaN()},
		{CreateQPS: math.Inf(1)},
		{ClientQPS: float32(math.Inf(1))},
	} {
		_, err := executor.New(rc, executor.NewMemoryStore(), cfg)
		require.ErrorContains(t, err, "must be between", "%+v", cfg)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	e, err := executor.New(rc, executor.NewMemoryStore(), executor.Config{Parallelism: 1_000_000})
	require.NoError(t, err)
	runtime.ReadMemStats(&after)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(8<<20), "New allocated for Parallelism up front")
	require.Equal(t, 1_000_000, e.Stats().OpenSlots)
	require.NoError(t, e.Stop(context.Background()))
}

// TestStopDeletesTheLeaseOfARandomID: Stop deletes the Lease of an
// instance whose id was generated (nothing can resume it) and keeps the
// Lease of an instance whose id the host gave (a restart takes it back).
func TestStopDeletesTheLeaseOfARandomID(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "leasestop", nil)
	leases := cluster.Client().CoordinationV1().Leases(ns)
	stopAndGet := func(cfg executor.Config) error {
		t.Helper()
		e, err := executor.New(cluster.RESTConfig(), executor.NewMemoryStore(), cfg)
		require.NoError(t, err)
		require.NoError(t, e.Start(ctx))
		_, err = leases.Get(ctx, adoption.LeaseName(e.ID()), metav1.GetOptions{})
		require.NoError(t, err, "a started executor holds its Lease")
		require.NoError(t, e.Stop(ctx))
		_, err = leases.Get(ctx, adoption.LeaseName(e.ID()), metav1.GetOptions{})
		return err
	}
	random := testConfig(ns)
	random.ExecutorID = ""
	err := stopAndGet(random)
	require.True(t, apierrors.IsNotFound(err), "the Lease of a random id must be deleted at Stop (got %v)", err)
	require.NoError(t, stopAndGet(testConfig(ns)), "the Lease of a given id must stay for a restart")
	forced := testConfig(ns)
	forced.DeleteLeaseOnStop = true
	err = stopAndGet(forced)
	require.True(t, apierrors.IsNotFound(err), "DeleteLeaseOnStop must delete the Lease (got %v)", err)
}
