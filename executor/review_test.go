package executor_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/executor"
)

// TestQueueAgainAfterKeptPod: an attempt whose failed pod was kept
// (labelled done) and that the host queues again ends at once with its
// result saved again, instead of waiting for events that never come.
func TestQueueAgainAfterKeptPod(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "requeue", nil)
	store := executor.NewMemoryStore()
	e := startExecutor(t, cluster.RESTConfig(), store, testConfig(ns))
	k := key("requeue", 1)
	require.NoError(t, e.Queue(shell(k, "exit 3")))
	drive(t, e, 2*time.Minute, "first result", func() bool { return store.Calls(k) == 1 })
	require.Eventually(t, func() bool { return e.Stats() == executor.Stats{OpenSlots: 50} }, 3*time.Minute, 50*time.Millisecond)

	require.NoError(t, e.Queue(shell(k, "exit 3")))
	drive(t, e, 3*time.Minute, "result saved again", func() bool { return store.Calls(k) == 2 })
	require.Equal(t, kubexec.ReasonFailed, resultsByKey(store)[k].Reason)
	require.Eventually(t, func() bool { return e.Stats() == executor.Stats{OpenSlots: 50} }, 3*time.Minute, 50*time.Millisecond,
		"the attempt must not hold a slot")
}

// afterCreate lets pod creates reach the API server, then answers the
// client with 503 (the server did create the pod: an unknown outcome).
type afterCreate struct {
	next http.RoundTripper
	mu   sync.Mutex
	hits int
}

func (a *afterCreate) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(req)
	if err != nil || req.Method != http.MethodPost || !strings.HasSuffix(req.URL.Path, "/pods") {
		return resp, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	a.mu.Lock()
	a.hits++
	a.mu.Unlock()
	return &http.Response{
		StatusCode: http.StatusServiceUnavailable,
		Header:     http.Header{"Content-Type": []string{"application/json"}},
		Body:       ioNopCloser(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"the connection broke","reason":"ServiceUnavailable","code":503}`),
		Request:    req,
	}, nil
}

// TestRevokeAfterUnknownCreate: a create whose answer was lost (the server
// created the pod) is retried; an attempt revoked meanwhile still has its
// pod deleted, and its one result is Revoked.
func TestRevokeAfterUnknownCreate(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "unknown", nil)
	rt := &afterCreate{}
	rc := cluster.RESTConfig()
	rc.Wrap(func(next http.RoundTripper) http.RoundTripper { rt.next = next; return rt })
	store := executor.NewMemoryStore()
	cfg := testConfig(ns)
	cfg.RevokeGracePeriod = time.Second
	e := startExecutor(t, rc, store, cfg)
	k := key("unknown", 1)
	require.NoError(t, e.Queue(shell(k, "sleep 300")))
	require.NoError(t, e.Heartbeat())
	name, err := kubexec.PodName(k)
	require.NoError(t, err)
	pods := cluster.Client().CoreV1().Pods(ns)
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		_, err := pods.Get(ctx, name, metav1.GetOptions{})
		return rt.hits > 0 && err == nil, nil
	}), "the pod exists although its create failed")

	require.NoError(t, e.Revoke(k))
	drive(t, e, 3*time.Minute, "revoked", func() bool { return len(store.Results()) == 1 })
	require.Equal(t, kubexec.ReasonRevoked, store.Results()[0].Reason)
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := pods.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}), "the pod of the revoked attempt must be deleted")
	require.Equal(t, 1, store.Calls(k))
}
