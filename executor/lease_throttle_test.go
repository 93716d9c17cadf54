package executor_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes"

	"github.com/kubexec/kubexec/executor"
)

// leaseWatch records whether the Lease was ever reported lost.
type leaseWatch struct {
	executor.NopMetrics
	lost, renewals, failures atomic.Int64
}

func (m *leaseWatch) ObserveLeaseRenewal(err error) {
	if err != nil {
		m.failures.Add(1)
		return
	}
	m.renewals.Add(1)
}

func (m *leaseWatch) SetLeaseLost(lost bool) {
	if lost {
		m.lost.Add(1)
	}
}

// TestBusyExecutorKeepsItsLease: an executor on a host's client at
// client-go's default rate limit (5 requests/s, burst 10) works through
// 100 attempts, its creates, releases and deletes queued on that limiter
// for tens of seconds, with a Lease of 3 s renewed every 500 ms. The
// renewals never wait behind that traffic: the Lease is never lost.
func TestBusyExecutorKeepsItsLease(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "busy-lease", nil)
	rc := cluster.RESTConfig()
	rc.QPS, rc.Burst = 5, 10
	client, err := kubernetes.NewForConfig(rc)
	require.NoError(t, err)
	cfg := testConfig(ns)
	cfg.Parallelism = 100
	cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod = 3*time.Second, 2*time.Second, 500*time.Millisecond
	leases := &leaseWatch{}
	cfg.Metrics = leases
	cfg.Logger = testLogger(t)
	store := executor.NewMemoryStore()
	e, err := executor.NewForClient(client, store, cfg)
	require.NoError(t, err)
	require.NoError(t, e.Start(t.Context()))
	t.Cleanup(func() { _ = e.Stop(t.Context()) })
	const n = 100
	for i := range n {
		require.NoError(t, e.Queue(shell(key("busy", i), "exit 0")))
	}
	drive(t, e, 10*time.Minute, "every result", func() bool { return len(store.Results()) == n })
	t.Logf("%d renewals, %d failed, while %d attempts went through a 5 requests/s client", leases.renewals.Load(), leases.failures.Load(), n)
	require.Zero(t, leases.lost.Load(), "the Lease was lost behind the executor's own traffic")
	require.Positive(t, leases.renewals.Load())
}
