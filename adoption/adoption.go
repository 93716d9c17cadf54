package adoption

import (
	"k8s.io/client-go/kubernetes"

	"github.com/kubexec/kubexec/internal/fleet"
)

// Liveness tells whether an executor instance is alive. Implementations
// must be safe for concurrent use. Its one method:
//
//	// Alive reports whether the instance id is alive. An error means
//	// "unknown": callers must not adopt on an error.
//	Alive(ctx context.Context, id string) (bool, error)
//
// A host with its own record of its instances (a database heartbeat table)
// passes one as executor.Config.Liveness; the default is LeaseLiveness.
type Liveness = fleet.Liveness

// LivenessFunc adapts a function to Liveness.
type LivenessFunc = fleet.LivenessFunc

// LeaseLiveness decides liveness from the instances' Leases without relying
// on their clocks, as client-go's leader election does: an instance is dead
// when its Lease is missing, is held by another id, or has not changed for
// longer than the Lease's duration by this observer's own clock. A Lease
// seen for the first time counts as renewed at that moment, so an observer
// that starts after an instance died waits one Lease duration before it
// calls it dead. Every instance that may adopt from another must keep its
// Lease in the same namespace: a Lease that is not found counts as dead.
type LeaseLiveness = fleet.LeaseLiveness

// NewLeaseLiveness returns a Liveness that reads Leases in namespace
// ("default" when empty).
func NewLeaseLiveness(client kubernetes.Interface, namespace string) *LeaseLiveness {
	return fleet.NewLeaseLiveness(client, namespace)
}

// LeaseName returns the name of the Lease of executor id: "kubexec-" and a
// DNS-safe form of the id with a hash of the exact id, so that distinct ids
// never share a Lease.
func LeaseName(id string) string { return fleet.LeaseName(id) }
