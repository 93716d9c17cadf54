package fleet

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubexec/kubexec"
)

// TestSweepDeletesExpiredLeases: a sweep with ExpiredLeaseAge deletes the
// kubexec Leases not renewed for that long, claims of dead holders and its
// own unused claims included, and keeps fresh ones, its own (however old),
// those of live holders (however old: a clock may be behind) and Leases
// that are not kubexec's.
func TestSweepDeletesExpiredLeases(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "lease-sweep", nil)
	client := cluster.Client()
	leases := client.CoordinationV1().Leases(ns)
	put := func(id string, renewedAgo time.Duration, managed bool) string {
		t.Helper()
		renew := metav1.NewMicroTime(time.Now().Add(-renewedAgo))
		seconds := int32(15)
		l := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: LeaseName(id)},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &id, LeaseDurationSeconds: &seconds, RenewTime: &renew},
		}
		if managed {
			l.Labels = map[string]string{kubexec.LabelManagedBy: kubexec.ManagedByValue}
		}
		_, err := leases.Create(ctx, l, metav1.CreateOptions{})
		require.NoError(t, err)
		return l.Name
	}
	// Claims, renewed only by their holder's sweeps that find pods.
	claim := func(owner, holder string) string {
		t.Helper()
		renew := metav1.NewMicroTime(time.Now().Add(-time.Hour))
		l := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Name:        ClaimName(owner, ns),
				Labels:      map[string]string{kubexec.LabelManagedBy: kubexec.ManagedByValue},
				Annotations: map[string]string{AnnotationClaimedExecutor: owner, AnnotationClaimedNamespace: ns},
			},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, RenewTime: &renew},
		}
		_, err := leases.Create(ctx, l, metav1.CreateOptions{})
		require.NoError(t, err)
		return l.Name
	}
	gone := put("gone-for-good", time.Hour, true)
	recent := put("recently-dead", time.Minute, true)
	own := put("sweeper", time.Hour, true)
	// Renewed an hour ago by the sweeper's clock, but its holder lives:
	// its clock is behind.
	behind := put("clock-behind", time.Hour, true)
	foreign := put("not-kubexec", time.Hour, false)
	liveClaim := claim("dead-1", "live-holder")
	deadClaim := claim("dead-2", "dead-holder")
	ownUnused := claim("dead-3", "sweeper")

	s, err := NewSweeper(client, newDeadSet("dead-holder", "gone-for-good"), SweepConfig{
		ExecutorID: "sweeper", Namespaces: []string{ns}, LeaseNamespace: ns, ExpiredLeaseAge: 150 * time.Second,
	})
	require.NoError(t, err)
	st, err := s.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, st.LeasesDeleted)
	for _, name := range []string{gone, deadClaim, ownUnused} {
		_, err = leases.Get(ctx, name, metav1.GetOptions{})
		require.True(t, apierrors.IsNotFound(err), "Lease %s, expired for an hour, must be deleted (got %v)", name, err)
	}
	for _, name := range []string{recent, own, foreign, liveClaim, behind} {
		_, err := leases.Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err, "Lease %s must stay", name)
	}

	_, err = NewSweeper(client, NewLeaseLiveness(client, ns), SweepConfig{ExecutorID: "x", Namespaces: []string{ns}, ExpiredLeaseAge: -time.Second})
	require.ErrorContains(t, err, "ExpiredLeaseAge is negative")
}
