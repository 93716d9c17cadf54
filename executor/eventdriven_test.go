package executor_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/executor"
)

// reentrantMetrics calls back into the executor from every method, as a
// Metrics that reads Stats to compute a ratio would.
type reentrantMetrics struct {
	e     atomic.Pointer[executor.Executor]
	calls atomic.Int64
}

func (m *reentrantMetrics) back() {
	m.calls.Add(1)
	if e := m.e.Load(); e != nil {
		_ = e.Stats()
		_, _ = e.Attempt(key("reentrant", 0))
	}
}

func (m *reentrantMetrics) SetSlots(int, int, int)                              { m.back() }
func (m *reentrantMetrics) ObserveLaunch(executor.LaunchOutcome, time.Duration) { m.back() }
func (m *reentrantMetrics) ObserveResult(kubexec.Reason, time.Duration)         { m.back() }
func (m *reentrantMetrics) ObserveSaveError(kubexec.Reason)                     { m.back() }
func (m *reentrantMetrics) SetSavesBacklogged(bool)                             { m.back() }
func (m *reentrantMetrics) ObserveWatchRestart(string, bool)                    { m.back() }
func (m *reentrantMetrics) ObserveLeaseRenewal(error)                           { m.back() }
func (m *reentrantMetrics) SetLeaseLost(bool)                                   { m.back() }
func (m *reentrantMetrics) ObserveSweep(int, error)                             { m.back() }
func (m *reentrantMetrics) ObserveForeignPod(string)                            { m.back() }

// reentrantHandler is a slog.Handler that calls back into the executor on
// every record.
type reentrantHandler struct {
	slog.Handler
	m *reentrantMetrics
}

func (h reentrantHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h reentrantHandler) Handle(ctx context.Context, r slog.Record) error {
	h.m.back()
	return h.Handler.Handle(ctx, r)
}
func (h reentrantHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return reentrantHandler{h.Handler.WithAttrs(as), h.m}
}
func (h reentrantHandler) WithGroup(g string) slog.Handler {
	return reentrantHandler{h.Handler.WithGroup(g), h.m}
}

// TestMetricsMayCallBackBeforeStart: the executor calls no host code under
// its lock, so a Metrics that calls Stats does not deadlock Queue. No
// cluster is needed: Queue sends no request.
func TestMetricsMayCallBackBeforeStart(t *testing.T) {
	m := &reentrantMetrics{}
	client, err := kubernetes.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1"})
	require.NoError(t, err)
	e, err := executor.NewForClient(client, executor.NewMemoryStore(), executor.Config{
		Metrics: m,
		Logger:  slog.New(reentrantHandler{slog.DiscardHandler, m}),
	})
	require.NoError(t, err)
	m.e.Store(e)
	done := make(chan error, 1)
	go func() { done <- e.Queue(shell(key("reentrant", 1), "true")) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("Queue deadlocked: it called Metrics under the executor's lock")
	}
	require.NotZero(t, m.calls.Load())
	require.Equal(t, 1, e.Stats().Queued)
	require.NoError(t, e.Stop(t.Context()))
}

// TestMetricsMayCallBack: an attempt runs from Queue to its released pod
// with a Metrics and a Logger whose every call reads Stats and Attempt.
func TestMetricsMayCallBack(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "reentrant", nil)
	cfg := testConfig(ns)
	m := &reentrantMetrics{}
	cfg.Metrics = m
	cfg.Logger = slog.New(reentrantHandler{slog.DiscardHandler, m})
	e, err := executor.New(cluster.RESTConfig(), executor.NewMemoryStore(), cfg)
	require.NoError(t, err)
	m.e.Store(e)
	t.Cleanup(func() { _ = e.Stop(context.Background()) })
	require.NoError(t, e.Start(t.Context()))
	k := key("reentrant", 2)
	require.NoError(t, e.Queue(shell(k, "exit 3")))
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	r, err := e.Wait(ctx, k)
	require.NoError(t, err, "the attempt did not finish: a callback deadlocked the executor? (stats %+v)", e.Stats())
	require.Equal(t, kubexec.ReasonFailed, r.Reason)
	require.EqualValues(t, 3, r.ExitCode)
	require.NoError(t, e.Stop(t.Context()))
}

// TestNoTicker: a host that never calls Heartbeat or Sync runs its
// attempts: Queue launches at once while a slot is open, a freed slot
// launches the next, and Wait and Subscribe tell the host what happens.
func TestNoTicker(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "noticker", nil)
	cfg := testConfig(ns)
	cfg.Parallelism = 1
	store := executor.NewMemoryStore()
	e := startExecutor(t, cluster.RESTConfig(), store, cfg)

	first, second := key("noticker", 1), key("noticker", 2)
	require.NoError(t, e.Queue(shell(first, "sleep 1; exit 0")))
	require.NoError(t, e.Queue(shell(second, "exit 4")))
	updates, cancel, err := e.Subscribe(second)
	require.NoError(t, err)
	defer cancel()
	st, ok := e.Attempt(second)
	require.True(t, ok)
	require.Equal(t, kubexec.StateQueued, st.State, "one slot: the second attempt waits behind the first")

	ctx, stop := context.WithTimeout(t.Context(), 3*time.Minute)
	defer stop()
	r, err := e.Wait(ctx, first)
	require.NoError(t, err)
	require.Equal(t, kubexec.ReasonSucceeded, r.Reason)
	saved, ok, err := store.LoadResult(ctx, first)
	require.NoError(t, err)
	require.True(t, ok, "Wait returned before the result was saved")
	require.Equal(t, r.Reason, saved.Reason)

	// The second attempt got the slot the first freed, with no tick.
	var states []kubexec.State
	var last executor.AttemptStatus
	for done := false; !done; {
		select {
		case st, ok := <-updates:
			if !ok {
				done = true
				break
			}
			if len(states) == 0 || states[len(states)-1] != st.State {
				states = append(states, st.State)
			}
			last = st
		case <-ctx.Done():
			t.Fatalf("no final status for %s; saw %v", second, states)
		}
	}
	require.True(t, last.Saved, "the channel closed before the result was saved; saw %v", states)
	require.NotNil(t, last.Result)
	require.Equal(t, kubexec.ReasonFailed, last.Result.Reason)
	require.EqualValues(t, 4, last.Result.ExitCode)
	require.Equal(t, kubexec.StateFailed, states[len(states)-1])

	_, _, err = e.Subscribe(first)
	require.ErrorIs(t, err, executor.ErrUnknownAttempt, "a done attempt is read from the StateStore")
	_, err = e.Wait(ctx, key("noticker", 99))
	require.ErrorIs(t, err, executor.ErrUnknownAttempt)
}

// TestWaitEndsAtStop: Wait returns ErrStopped when the executor stops
// before the result is saved, and ctx's error when ctx ends first.
func TestWaitEndsAtStop(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "waitstop", nil)
	cfg := testConfig(ns)
	e := startExecutor(t, cluster.RESTConfig(), executor.NewMemoryStore(), cfg)
	k := key("waitstop", 1)
	require.NoError(t, e.Queue(shell(k, "sleep 600")))

	short, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := e.Wait(short, k)
	require.ErrorIs(t, err, context.Canceled)

	waited := make(chan error, 1)
	go func() {
		_, err := e.Wait(t.Context(), k)
		waited <- err
	}()
	ch, unsubscribe, err := e.Subscribe(k)
	require.NoError(t, err)
	defer unsubscribe()
	deadline := time.After(3 * time.Minute)
	for running := false; !running; {
		select {
		case st, ok := <-ch:
			require.True(t, ok, "the subscription ended before the attempt ran")
			running = st.State == kubexec.StateRunning
		case <-deadline:
			t.Fatal("the attempt was not running after 3m")
		}
	}
	stopCtx, stop := context.WithTimeout(t.Context(), time.Minute)
	defer stop()
	_ = e.Stop(stopCtx)
	select {
	case err := <-waited:
		require.ErrorIs(t, err, executor.ErrStopped)
	case <-time.After(time.Minute):
		t.Fatal("Wait did not return when the executor stopped")
	}
}

// TestHealthy: Healthy says the executor works once started, names a
// failing pod watch and a lost Lease, recovers with them, and reports a
// stopped executor.
func TestHealthy(t *testing.T) {
	cluster.Need(t)
	f, rc, cfg := withFaults(t, "healthy")
	cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod = 3*time.Second, 2*time.Second, 500*time.Millisecond
	e, err := executor.New(rc, executor.NewMemoryStore(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Stop(context.Background()) })
	require.ErrorIs(t, e.Healthy(t.Context()), executor.ErrNotStarted)
	require.NoError(t, e.Start(t.Context()))
	require.NoError(t, e.Healthy(t.Context()))
	require.NotNil(t, e.Client())

	f.failLeases.Store(true)
	eventually(t, "Healthy reports the lost Lease", func() bool {
		err := e.Healthy(t.Context())
		return err != nil && containsAll(err.Error(), "Lease", "RenewDeadline")
	})
	f.failLeases.Store(false)
	eventually(t, "Healthy again once the Lease is renewed", func() bool { return e.Healthy(t.Context()) == nil })

	// The open stream breaks, and every reconnect fails.
	f.failPodWatches.Store(true)
	f.breakWatches()
	eventually(t, "Healthy reports the failing pod watch", func() bool {
		err := e.Healthy(t.Context())
		return err != nil && containsAll(err.Error(), "watch of namespace "+cfg.Namespace)
	})
	f.failPodWatches.Store(false)
	eventually(t, "Healthy again once the watch reconnects", func() bool { return e.Healthy(t.Context()) == nil })

	require.NoError(t, e.Stop(t.Context()))
	require.ErrorIs(t, e.Healthy(t.Context()), executor.ErrStopped)
}

// eventually waits, with a generous deadline, until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so after 2m", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
