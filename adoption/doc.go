// Package adoption lets executor instances survive crashes and restarts,
// and run side by side, without losing a result or fighting over a pod.
//
// # Identity and liveness
//
// Each executor instance has an id (kubexec.LabelExecutor on its pods) and
// holds its own coordination.k8s.io Lease (named [LeaseName]), renewed every
// RetryPeriod through a rate limiter of its own, so that renewals never
// wait behind the client's other requests. [LeaseLiveness] decides from
// the Leases who is alive without trusting other machines' clocks: an
// instance whose Lease is missing, or whose Lease this observer has seen
// unchanged for longer than the Lease's duration by its own clock, is dead.
// A Lease it reads for the first time counts as renewed at that moment,
// however old its renewTime looks. A host can bring its own [Liveness].
//
// # Taking over pods
//
// The executor moves a pod to a new owner with a metadata-only patch guarded by
// the resourceVersion it read: of two adopters, exactly one wins. The new
// owner's watch then sees the pod and handles it like its own.
//
// Its sweeper periodically lists the active kubexec pods of other instances
// (paginated) and takes over those that are settled — ended, or being
// deleted — when their owner is dead, so their results are saved and their
// tracking finalizers removed even if no host ever asks. The executor's
// sweeper settles ended pods straight from the list: a claim Lease per dead
// instance and namespace swept, written once a sweep, makes
// it the one adopter of them, and releasing each pod is then all the
// writing it takes. Pods being deleted that have not ended are relabelled. Pods of live
// instances are never touched. Running pods of
// dead instances are adopted when the host calls the executor's Adopt with
// their attempts.
//
// # An attempt across restarts
//
//	               crash / restart with the same id
//	launched ─────────────────────────────────────────▶ picked up at Start (watch lists the id's pods)
//	   │
//	   │ owner dies (Lease expires)
//	   ├──▶ pod ended ──▶ Sweeper claims the instance ──▶ new owner saves the result, releases the pod
//	   ├──▶ pod deleted while running ──▶ Sweeper relabels ──▶ new owner waits for it, saves, releases
//	   └──▶ pod running ──▶ host calls Adopt ──▶ relabelled, tracked; no pod ──▶ returned to the host
//
// In every path the pod keeps the tracking finalizer until some owner's
// StateStore.SaveResult returned nil, and saving is idempotent, so a crash
// between any two steps repeats a step and never loses or duplicates a
// result.
package adoption
