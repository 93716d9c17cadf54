package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// deadSet is a Liveness for which every instance is alive but those
// marked dead.
type deadSet struct {
	mu   sync.Mutex
	dead map[string]bool
}

func newDeadSet(ids ...string) *deadSet {
	d := &deadSet{dead: map[string]bool{}}
	for _, id := range ids {
		d.kill(id)
	}
	return d
}

func (d *deadSet) kill(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dead[id] = true
}

func (d *deadSet) Alive(_ context.Context, id string) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.dead[id], nil
}

// settleRecorder is the Settle of several sweepers: it records which
// sweeper was given which pod.
type settleRecorder struct {
	mu  sync.Mutex
	got map[string][]string // sweeper id -> pod names
	err error               // returned by every call when set
}

func (r *settleRecorder) settle(id string) func(*corev1.Pod) (bool, error) {
	return func(pod *corev1.Pod) (bool, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.err != nil {
			return false, r.err
		}
		if r.got == nil {
			r.got = map[string][]string{}
		}
		r.got[id] = append(r.got[id], pod.Name)
		return true, nil
	}
}

func (r *settleRecorder) by(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got[id]...)
}

func podNames(pods []*corev1.Pod) []string {
	var names []string
	for _, p := range pods {
		names = append(names, p.Name)
	}
	return names
}

// TestSweeperSettlesEndedPodsOfDeadOwners: with Settle, the ended pods of
// a dead instance go to Settle without a relabel, after one claim; a pod
// being deleted that has not ended is relabelled; a second adopter leaves
// the pods to the claim's live holder and takes the claim over once that
// holder is dead.
func TestSweeperSettlesEndedPodsOfDeadOwners(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "settle", nil)
	client := cluster.Client()
	ended := append(makePods(t, client, ns, "dead-owner", "ended-ok", 3, corev1.PodSucceeded),
		makePods(t, client, ns, "dead-owner", "ended-failed", 2, corev1.PodFailed)...)
	running := makePods(t, client, ns, "dead-owner", "running", 1, corev1.PodRunning)[0]
	deleting := makePods(t, client, ns, "dead-owner", "deleting", 1, corev1.PodRunning)[0]
	liveEnded := makePods(t, client, ns, "live-owner", "live-ended", 2, corev1.PodSucceeded)
	// A finalizer keeps the deleted pod, as the tracking finalizer does.
	pods := client.CoreV1().Pods(ns)
	_, err := pods.Patch(ctx, deleting.Name, types.MergePatchType, []byte(`{"metadata":{"finalizers":["kubexec.io/test-hold"]}}`), metav1.PatchOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = pods.Patch(context.Background(), deleting.Name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
	})
	require.NoError(t, pods.Delete(ctx, deleting.Name, metav1.DeleteOptions{}))

	liveness := newDeadSet("dead-owner")
	var rec settleRecorder
	sweeper := func(id string) *Sweeper {
		s, err := NewSweeper(client, liveness, SweepConfig{
			ExecutorID: id, Group: testGroup, Namespaces: []string{ns}, LeaseNamespace: ns, PageSize: 3, Settle: rec.settle(id),
		})
		require.NoError(t, err)
		return s
	}
	a, b := sweeper("sweeper-a"), sweeper("sweeper-b")

	st, err := a.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 6, st.Adopted, "%+v", st)
	require.Equal(t, 5, st.Settled, "%+v", st)
	require.Equal(t, 9, st.Listed, "%+v", st)
	require.ElementsMatch(t, podNames(ended), rec.by("sweeper-a"))
	for _, p := range ended {
		require.Equal(t, "dead-owner", owner(t, client, p), "an ended pod is settled without a relabel")
	}
	require.Equal(t, "sweeper-a", owner(t, client, deleting), "a pod being deleted that has not ended is relabelled")
	require.Equal(t, "dead-owner", owner(t, client, running), "running pods wait for the host's Adopt")
	for _, p := range liveEnded {
		require.Equal(t, "live-owner", owner(t, client, p), "pods of a live owner are never touched")
	}
	claim, err := client.CoordinationV1().Leases(ns).Get(ctx, ClaimName("dead-owner", ns), metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "sweeper-a", *claim.Spec.HolderIdentity)
	require.Equal(t, "dead-owner", claim.Annotations[AnnotationClaimedExecutor])
	require.Equal(t, ns, claim.Annotations[AnnotationClaimedNamespace])

	// The holder's next sweep renews its claim, so that no sweep deletes it
	// as expired while it is in use.
	_, err = a.Sweep(ctx)
	require.NoError(t, err)
	renewed, err := client.CoordinationV1().Leases(ns).Get(ctx, ClaimName("dead-owner", ns), metav1.GetOptions{})
	require.NoError(t, err)
	require.True(t, renewed.Spec.RenewTime.After(claim.Spec.RenewTime.Time), "claim not renewed: %s, then %s", claim.Spec.RenewTime, renewed.Spec.RenewTime)
	require.Equal(t, "sweeper-a", *renewed.Spec.HolderIdentity)

	// While the claim's holder lives, the other adopter takes nothing of
	// the dead owner's.
	st, err = b.Sweep(ctx)
	require.NoError(t, err)
	require.Zero(t, st.Adopted, "%+v", st)
	require.Empty(t, rec.by("sweeper-b"))

	// The holder dies before its releases are done: the other takes the
	// claim over, settles the ended pods again (saving is idempotent) and
	// relabels the pod the dead holder had relabelled.
	liveness.kill("sweeper-a")
	st, err = b.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 6, st.Adopted, "%+v", st)
	require.Equal(t, 5, st.Settled, "%+v", st)
	require.ElementsMatch(t, podNames(ended), rec.by("sweeper-b"))
	require.Equal(t, "sweeper-b", owner(t, client, deleting))
	claim, err = client.CoordinationV1().Leases(ns).Get(ctx, ClaimName("dead-owner", ns), metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "sweeper-b", *claim.Spec.HolderIdentity)

	// The first adopter, back, finds the claim held by a live instance.
	st, err = a.Sweep(ctx)
	require.NoError(t, err)
	require.Zero(t, st.Settled, "%+v", st)
}

// TestClaimOneWinner: of adopters claiming a dead instance's ended pods at
// once, exactly one wins, and none sees an error; when the winner dies, of
// the others taking the claim over at once, exactly one wins again.
func TestClaimOneWinner(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "claim-race", nil)
	client := cluster.Client()
	liveness := newDeadSet("dead-owner")
	const n = 8
	sweepers := make([]*Sweeper, n)
	for i := range n {
		s, err := NewSweeper(client, liveness, SweepConfig{
			ExecutorID: fmt.Sprintf("adopter-%d", i), Group: testGroup, Namespaces: []string{ns}, LeaseNamespace: ns,
			Settle: func(*corev1.Pod) (bool, error) { return true, nil },
		})
		require.NoError(t, err)
		sweepers[i] = s
	}
	race := func(skip int) int {
		won := make([]bool, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i, s := range sweepers {
			if i == skip {
				continue
			}
			wg.Go(func() {
				var st SweepStats
				won[i], errs[i] = s.claim(ctx, "dead-owner", ns, map[string]bool{}, &st)
			})
		}
		wg.Wait()
		winner := -1
		for i := range n {
			require.NoError(t, errs[i])
			if won[i] {
				require.Equal(t, -1, winner, "claims won: %v", won)
				winner = i
			}
		}
		require.NotEqual(t, -1, winner, "nobody won the claim")
		return winner
	}
	first := race(-1)
	liveness.kill(fmt.Sprintf("adopter-%d", first))
	second := race(first)
	claim, err := client.CoordinationV1().Leases(ns).Get(ctx, ClaimName("dead-owner", ns), metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("adopter-%d", second), *claim.Spec.HolderIdentity)
}

// TestSettleErrorsAreReported: a pod Settle refuses is reported by the
// sweep and neither counted nor relabelled.
func TestSettleErrorsAreReported(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "settle-err", nil)
	client := cluster.Client()
	pod := makePods(t, client, ns, "dead-owner", "refused", 1, corev1.PodSucceeded)[0]
	rec := settleRecorder{err: errors.New("the executor is stopping")}
	s, err := NewSweeper(client, newDeadSet("dead-owner"), SweepConfig{
		ExecutorID: "sweeper", Group: testGroup, Namespaces: []string{ns}, LeaseNamespace: ns, Settle: rec.settle("sweeper"),
	})
	require.NoError(t, err)
	st, err := s.Sweep(t.Context())
	require.ErrorContains(t, err, "the executor is stopping")
	require.ErrorContains(t, err, pod.Name)
	require.Zero(t, st.Adopted)
	require.Equal(t, "dead-owner", owner(t, client, pod))
}
