package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubexec/kubexec"
)

// Annotations of a claim Lease: the dead executor instance whose ended
// pods the Lease's holder settles, and the namespace the claim covers ("" for
// all).
const (
	AnnotationClaimedExecutor  = "kubexec.io/claimed-executor"
	AnnotationClaimedNamespace = "kubexec.io/claimed-namespace"
)

// ClaimName returns the name of the Lease by which one adopter claims the
// ended pods of the dead executor id in namespace ("" for every
// namespace): "kubexec-adopt-", a DNS-safe form of the id and a hash of the
// exact id and namespace (a LeaseName could only equal it if two 40-bit
// hash prefixes collided). Claims are per namespace swept, so that an
// adopter that sweeps other namespaces than the holder's still finds the
// pods there.
func ClaimName(id, namespace string) string {
	sum := sha256.Sum256([]byte("claim\x00" + id + "\x00" + namespace))
	return "kubexec-adopt-" + kubexec.Slug(id, 38) + "-" + hex.EncodeToString(sum[:])[:10]
}

// groupLabels are the labels of a Lease of an instance of group.
func groupLabels(group string) map[string]string {
	l := map[string]string{kubexec.LabelManagedBy: kubexec.ManagedByValue}
	if group != "" {
		l[kubexec.LabelGroup] = group
	}
	return l
}

// claim makes this sweeper the one that settles the ended pods of the dead
// instance owner in namespace ns ("" for all), with one write to their
// claim Lease: a create when there is none, an update guarded by the
// resourceVersion read when its holder is dead, a renewal when the holder
// is this sweeper. It reports false, with no error, when a live instance
// holds the claim (that instance settles the pods) or won the race for it.
// alive caches the liveness answers of the sweep.
func (s *Sweeper) claim(ctx context.Context, owner, ns string, alive map[string]bool, st *SweepStats) (bool, error) {
	leases := s.client.CoordinationV1().Leases(s.cfg.LeaseNamespace)
	name := ClaimName(owner, ns)
	self := s.cfg.ExecutorID
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, name, metav1.GetOptions{})
	st.APICalls++
	switch {
	case apierrors.IsNotFound(err):
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Labels:      groupLabels(s.cfg.Group),
				Annotations: map[string]string{AnnotationClaimedExecutor: owner, AnnotationClaimedNamespace: ns},
			},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &self, AcquireTime: &now, RenewTime: &now},
		}, metav1.CreateOptions{})
		st.APICalls++
		switch {
		case err == nil:
			return true, nil
		case apierrors.IsAlreadyExists(err):
			return false, nil // another adopter created it first
		default:
			return false, fmt.Errorf("adoption: claim the ended pods of %q: create Lease %s/%s: %w", owner, s.cfg.LeaseNamespace, name, err)
		}
	case err != nil:
		return false, fmt.Errorf("adoption: claim the ended pods of %q: get Lease %s/%s: %w", owner, s.cfg.LeaseNamespace, name, err)
	}
	holder := ""
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	if holder == self {
		// Renewed at each sweep that still finds the instance's pods, so
		// that sweeps deleting expired Leases leave the claim in use.
		l.Spec.RenewTime = &now
	} else {
		if holder != "" {
			isAlive, err := s.isAlive(ctx, holder, alive, st)
			if err != nil {
				return false, fmt.Errorf("adoption: claim the ended pods of %q: liveness of its claim's holder %q: %w", owner, holder, err)
			}
			if isAlive {
				return false, nil
			}
		}
		// The holder died before it settled them all: take the claim over.
		l.Spec.HolderIdentity, l.Spec.AcquireTime, l.Spec.RenewTime = &self, &now, &now
	}
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	st.APICalls++
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsConflict(err), apierrors.IsNotFound(err):
		return false, nil // taken over, or swept, since it was read: next sweep
	default:
		// A renewal that failed leaves the claim this sweeper's.
		return holder == self, fmt.Errorf("adoption: claim the ended pods of %q: update Lease %s/%s: %w", owner, s.cfg.LeaseNamespace, name, err)
	}
}
