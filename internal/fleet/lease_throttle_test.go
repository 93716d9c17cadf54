package fleet

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
)

// TestLeaseRenewalsBypassClientRateLimiter: a client at client-go's
// default-like 5 requests/s (burst 10), kept saturated by 20 goroutines
// listing pods through it, would make every request wait seconds, longer
// than the Lease's RenewDeadline. The holder using that same client still
// renews every RetryPeriod: OnLost is never called, and no two successful
// renewals are further apart than RenewDeadline.
func TestLeaseRenewalsBypassClientRateLimiter(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "lease-throttle", nil)
	rc := cluster.RESTConfig()
	rc.QPS, rc.Burst = 5, 10
	client, err := kubernetes.NewForConfig(rc)
	require.NoError(t, err)

	const (
		leaseDuration = 3 * time.Second
		renewDeadline = 2 * time.Second
		retryPeriod   = 500 * time.Millisecond
		renewals      = 12
	)
	var (
		mu        sync.Mutex
		successes []time.Time
		failures  []string
		lost      atomic.Bool
		enough    = make(chan struct{})
	)
	holder, err := NewLeaseHolder(client, LeaseConfig{
		ExecutorID: "busy", Namespace: ns,
		LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod,
		OnLost: func() { lost.Store(true) },
		OnRenew: func(err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failures = append(failures, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
				return
			}
			successes = append(successes, time.Now())
			if len(successes) == renewals {
				close(enough)
			}
		},
	})
	require.NoError(t, err)
	// Before the flood: the test is about Run's renewals.
	require.NoError(t, holder.Acquire(ctx))
	lease, err := cluster.Client().CoordinationV1().Leases(ns).Get(ctx, LeaseName("busy"), metav1.GetOptions{})
	require.NoError(t, err)
	require.EqualValues(t, 3, *lease.Spec.LeaseDurationSeconds)

	floodCtx, stopFlood := context.WithCancel(ctx)
	var flood sync.WaitGroup
	defer func() { stopFlood(); flood.Wait() }()
	var listed atomic.Int64
	for range 20 {
		flood.Go(func() {
			for floodCtx.Err() == nil {
				if _, err := client.CoreV1().Pods(ns).List(floodCtx, metav1.ListOptions{}); err == nil {
					listed.Add(1)
				}
			}
		})
	}
	// The client's shared limiter is saturated: no token is free. (20
	// waiters at 5/s: each request waits about 4s.)
	shared := client.CoreV1().RESTClient().GetRateLimiter()
	saturated := func() bool { return !shared.TryAccept() }
	require.Eventually(t, saturated, time.Minute, 10*time.Millisecond, "the flood does not saturate the client's limiter")

	runCtx, stopRun := context.WithCancel(ctx)
	started := time.Now()
	ran := make(chan struct{})
	go func() { holder.Run(runCtx); close(ran) }()
	defer func() { stopRun(); <-ran }()

	deadline := time.NewTimer(3 * time.Minute)
	defer deadline.Stop()
	check := time.NewTicker(50 * time.Millisecond)
	defer check.Stop()
wait:
	for {
		select {
		case <-enough:
			break wait
		case <-deadline.C:
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("%d of %d renewals in 3 minutes; failures: %s", len(successes), renewals, strings.Join(failures, "; "))
		case <-check.C:
			if lost.Load() {
				break wait
			}
		}
	}
	require.True(t, saturated(), "the client's limiter was free by the end: the flood did not keep it saturated")
	stopRun()
	<-ran

	mu.Lock()
	defer mu.Unlock()
	require.False(t, lost.Load(), "OnLost was called; renewals: %d, failures: %s", len(successes), strings.Join(failures, "; "))
	prev := started
	for i, at := range successes {
		require.LessOrEqual(t, at.Sub(prev), renewDeadline, "renewal %d came %s after the one before; failures: %s", i, at.Sub(prev), strings.Join(failures, "; "))
		prev = at
	}
	t.Logf("%d renewals, most %s apart, %d failed; %d flood lists meanwhile", len(successes), maxGap(started, successes), len(failures), listed.Load())
}

func maxGap(start time.Time, at []time.Time) time.Duration {
	var most time.Duration
	prev := start
	for _, a := range at {
		most = max(most, a.Sub(prev))
		prev = a
	}
	return most
}

// nilRESTClient is a coordination client whose RESTClient is a nil
// *rest.RESTClient, as client-go's fakes return; otherRESTClient's is not
// a *rest.RESTClient at all. The holder then uses the typed client as it
// is.
type (
	coordinationOnly struct {
		kubernetes.Interface
		rest rest.Interface
	}
	coordinationWith struct {
		coordinationv1client.CoordinationV1Interface
		rest rest.Interface
	}
	otherRESTClient struct{ rest.Interface }
)

func (c coordinationOnly) CoordinationV1() coordinationv1client.CoordinationV1Interface {
	return coordinationWith{c.Interface.CoordinationV1(), c.rest}
}

func (c coordinationWith) RESTClient() rest.Interface { return c.rest }

// TestLeaseHolderOtherClients: a client whose coordination REST client is
// not a usable *rest.RESTClient (nil, as in client-go's fakes, or another
// implementation) still holds its Lease, through its typed client.
func TestLeaseHolderOtherClients(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "lease-clients", nil)
	base := cluster.Client()
	for name, rc := range map[string]rest.Interface{
		"nil":   (*rest.RESTClient)(nil),
		"other": otherRESTClient{base.CoordinationV1().RESTClient()},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			id := "client-" + name
			h, err := NewLeaseHolder(coordinationOnly{base, rc}, LeaseConfig{ExecutorID: id, Namespace: ns})
			require.NoError(t, err)
			require.NoError(t, h.Acquire(ctx))
			alive, err := NewLeaseLiveness(base, ns).Alive(ctx, id)
			require.NoError(t, err)
			require.True(t, alive)
			require.NoError(t, h.Release(ctx))
			alive, err = NewLeaseLiveness(base, ns).Alive(ctx, id)
			require.NoError(t, err)
			require.False(t, alive)
		})
	}
}
