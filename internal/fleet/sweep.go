package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/watch"
)

// ErrConflict is wrapped by Relabel's error when the pod's owner is no
// longer the one that was read: another adopter won.
var ErrConflict = errors.New("adoption: the pod changed owner while being adopted")

// Relabel makes pod the executor newOwner's with a metadata-only JSON patch
// of its executor label. The patch tests that the pod's UID and executor
// label are still those that were read, so of two adopters racing for one
// pod exactly one wins; the other gets an error wrapping ErrConflict.
// Anything else that changed meanwhile (the node writes a running pod's
// status all the time) does not matter: the API server applies the patch
// to the current pod. A pod already owned by newOwner or gone is not an
// error.
func Relabel(ctx context.Context, client kubernetes.Interface, pod metav1.Object, newOwner string) error {
	old, ok := pod.GetLabels()[kubexec.LabelExecutor]
	if old == newOwner {
		return nil
	}
	patch, err := relabelPatch(pod.GetUID(), old, ok, newOwner)
	if err != nil {
		return err
	}
	_, err = client.CoreV1().Pods(pod.GetNamespace()).Patch(ctx, pod.GetName(), types.JSONPatchType, patch, metav1.PatchOptions{})
	switch {
	case err == nil, apierrors.IsNotFound(err):
		return nil
	case apierrors.IsInvalid(err), apierrors.IsConflict(err):
		// A failed test operation is a 422.
		return fmt.Errorf("%w: pod %s/%s was %q's: %v", ErrConflict, pod.GetNamespace(), pod.GetName(), old, err)
	default:
		return fmt.Errorf("adoption: relabel pod %s/%s: %w", pod.GetNamespace(), pod.GetName(), err)
	}
}

// relabelPatch is the JSON patch of Relabel.
func relabelPatch(uid types.UID, old string, hadLabel bool, newOwner string) ([]byte, error) {
	path := "/metadata/labels/" + strings.ReplaceAll(strings.ReplaceAll(kubexec.LabelExecutor, "~", "~0"), "/", "~1")
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	ops := []op{{"test", "/metadata/uid", string(uid)}}
	if hadLabel {
		ops = append(ops, op{"test", path, old}, op{"replace", path, newOwner})
	} else {
		ops = append(ops, op{"add", path, newOwner})
	}
	return json.Marshal(ops)
}

// SweepConfig configures a Sweeper.
type SweepConfig struct {
	// ExecutorID is the instance that adopts. Required.
	ExecutorID string
	// Group is the adoption group of the instance (kubexec.LabelGroup):
	// the sweep takes over only pods of the same group whose
	// kubexec.AnnotationLeaseNamespace is LeaseNamespace, so that two
	// deployments sharing a namespace never touch each other's pods. With
	// no group the sweep adopts no pod (it still deletes expired Leases).
	Group string
	// Namespaces to sweep; a single "" sweeps all namespaces. Required.
	Namespaces []string
	// PageSize is the list page size. Default 500.
	PageSize int64
	// Concurrency is the most relabels in flight at once (each is one
	// patch, paced by the client's own rate limiter). Default 16, at most
	// 1,000.
	Concurrency int
	// LeaseNamespace holds the Leases of the group's instances, and of the
	// claims. When ExpiredLeaseAge is set, each
	// sweep also deletes the kubexec Leases of the same group in LeaseNamespace that nobody
	// has renewed for that long (by this instance's clock), other than
	// ExecutorID's own, so that instances that never come back (a new
	// random id on every start) leave no Lease behind. A missing Lease
	// counts as dead, as an expired one does, so this changes no liveness
	// decision; keep ExpiredLeaseAge well above any Lease's duration (the
	// executor uses ten durations). Default: Leases are not swept.
	LeaseNamespace  string
	ExpiredLeaseAge time.Duration
	// Settle, when set, takes over an ended pod (Succeeded or Failed) of a
	// dead instance without relabelling it: it tracks the pod as its
	// executor's own, so that its result is saved and the pod released by
	// the executor's workers, and returns without waiting for that. It
	// reports whether it took the pod over now (false: an earlier sweep's
	// Settle did, and the pod is not released yet). An error leaves the
	// pod to a later sweep and is reported by this one.
	//
	// The pod is the sweep's list's: Settle copies what it keeps.
	//
	// With Settle, one adopter settles a dead instance's ended pods in
	// each namespace swept: the sweeper first claims them by writing the
	// claim Lease (ClaimName, in LeaseNamespace; a create, or the holder's
	// renewal at each later sweep that finds the instance's pods) and
	// leaves them to the claim's holder while that is alive. The sweep
	// makes no write per ended pod; releasing it (the executor's delete
	// and patch) is all. Pods being deleted that have not ended are
	// relabelled, as without Settle. Saving is idempotent, so a claim
	// taken over from an adopter that died halfway, or a host's Adopt of
	// the same pods, only saves some results twice. Default: every
	// settled pod is relabelled.
	Settle func(pod *corev1.Pod) (bool, error)
	// Verify, when set, tells the pods the group's instances made from
	// pods someone else created with the same labels: a pod it returns an
	// error for is never relabelled nor settled, only counted
	// (SweepStats.Foreign). The executor checks the pod's provenance mark
	// (the provenance mark). Default: every pod of the group is taken.
	Verify func(pod *corev1.Pod) error
}

// Sweeper finds pods of dead executor instances that no longer need their
// owner's decision — finished (Succeeded or Failed) or being deleted — and
// hands them to its own executor, which saves their results and releases
// them: ended pods through SweepConfig.Settle when it is set, the others by
// a relabel that brings them into the executor's watch. Nobody has to pass
// them in: this is how results of a crashed instance's pods are never
// lost, and how no pod stays Terminating forever on the tracking
// finalizer. Pods of live instances are never
// touched; running pods of dead instances are left to Adopt, where the host
// decides.
type Sweeper struct {
	client   kubernetes.Interface
	liveness Liveness
	cfg      SweepConfig
}

// SweepStats counts what one Sweep did.
type SweepStats struct {
	// Listed is the number of active kubexec pods of other instances seen.
	Listed int
	// Adopted is the number of pods taken over by this instance: relabelled
	// to it, or given to Settle.
	Adopted int
	// Settled is the number of the Adopted pods given to Settle.
	Settled int
	// DeadOwners is the number of distinct dead instances found.
	DeadOwners int
	// LeasesDeleted is the number of expired Leases deleted.
	LeasesDeleted int
	// Foreign is the number of pods of dead instances that Verify
	// refused.
	Foreign int
	// APICalls is the number of requests sent (lists, lease reads, claims,
	// patches, lease deletions).
	APICalls int
}

// NewSweeper returns a Sweeper.
func NewSweeper(client kubernetes.Interface, liveness Liveness, cfg SweepConfig) (*Sweeper, error) {
	if client == nil || liveness == nil {
		return nil, errors.New("adoption: NewSweeper needs a client and a Liveness")
	}
	if err := kubexec.ValidateExecutorID(cfg.ExecutorID); err != nil {
		return nil, fmt.Errorf("%w: SweepConfig.ExecutorID: %w", kubexec.ErrInvalidConfig, err)
	}
	if len(cfg.Namespaces) == 0 {
		return nil, fmt.Errorf(`%w: SweepConfig.Namespaces is empty: list the namespaces, or [""] for all`, kubexec.ErrInvalidConfig)
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = 500
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 16
	}
	if cfg.Concurrency < 0 || cfg.Concurrency > 1000 {
		return nil, fmt.Errorf("%w: SweepConfig.Concurrency is %d: it must be between 1 and 1000 (0 for the default)", kubexec.ErrInvalidConfig, cfg.Concurrency)
	}
	if cfg.ExpiredLeaseAge < 0 {
		return nil, fmt.Errorf("%w: SweepConfig.ExpiredLeaseAge is negative (%s): use 0 to keep Leases", kubexec.ErrInvalidConfig, cfg.ExpiredLeaseAge)
	}
	if err := kubexec.ValidateGroup(cfg.Group); err != nil {
		return nil, fmt.Errorf("%w: SweepConfig.Group: %w", kubexec.ErrInvalidConfig, err)
	}
	if cfg.LeaseNamespace == "" {
		cfg.LeaseNamespace = "default"
	}
	return &Sweeper{client: client, liveness: liveness, cfg: cfg}, nil
}

// Sweep runs once over every namespace.
func (s *Sweeper) Sweep(ctx context.Context) (SweepStats, error) {
	var st SweepStats
	alive := map[string]bool{}
	var errs []error
	var take []*corev1.Pod // the page's pods to adopt
	namespaces := s.cfg.Namespaces
	var sel labels.Selector
	if s.cfg.Group == "" {
		namespaces = nil // no group: no other instance's pod is this one's to take
	} else {
		var err error
		if sel, err = kubexec.GroupSelector(s.cfg.Group, s.cfg.ExecutorID); err != nil {
			return st, err
		}
	}
	otherLeases := map[string]bool{} // owners whose pods name another Lease namespace, reported once
	for _, ns := range namespaces {
		claimed := map[string]bool{} // dead owners whose pods in ns are ours to settle
		opts := metav1.ListOptions{LabelSelector: sel.String(), Limit: s.cfg.PageSize}
		for {
			list, err := s.client.CoreV1().Pods(ns).List(ctx, opts)
			st.APICalls++
			if err != nil {
				errs = append(errs, fmt.Errorf("adoption: list pods in %q: %w", ns, err))
				break
			}
			for i := range list.Items {
				pod := &list.Items[i]
				st.Listed++
				if !settled(pod) {
					continue
				}
				owner := pod.Labels[kubexec.LabelExecutor]
				if !kubexec.SameDeployment(pod, s.cfg.Group, s.cfg.LeaseNamespace) {
					// The group's name, but a Lease elsewhere: its owner's
					// liveness cannot be read here, so it is never taken.
					if !otherLeases[owner] {
						otherLeases[owner] = true
						errs = append(errs, fmt.Errorf("adoption: pods of executor %q in group %q keep their Lease in namespace %q, this instance in %q: instances of one group must share a LeaseNamespace; those pods are left alone",
							owner, s.cfg.Group, pod.Annotations[kubexec.AnnotationLeaseNamespace], s.cfg.LeaseNamespace))
					}
					continue
				}
				if s.cfg.Verify != nil && s.cfg.Verify(pod) != nil {
					st.Foreign++
					continue
				}
				isAlive, err := s.isAlive(ctx, owner, alive, &st)
				if err != nil {
					errs = append(errs, fmt.Errorf("adoption: liveness of %q: %w", owner, err))
					continue // unknown: never adopt
				}
				if isAlive {
					continue
				}
				if s.cfg.Settle != nil {
					mine, known := claimed[owner]
					if !known {
						mine, err = s.claim(ctx, owner, ns, alive, &st)
						if err != nil {
							errs = append(errs, err) // the next sweep tries again
						}
						claimed[owner] = mine
					}
					if !mine {
						continue // the claim's live holder settles them
					}
					if watch.Ended(pod) {
						taken, err := s.cfg.Settle(pod)
						if err != nil {
							errs = append(errs, fmt.Errorf("adoption: settle pod %s/%s of %q: %w", pod.Namespace, pod.Name, owner, err))
						} else if taken {
							st.Adopted++
							st.Settled++
						}
						continue
					}
				}
				take = append(take, pod)
			}
			adopted, relabelErrs := s.relabelAll(ctx, take)
			st.APICalls += len(take)
			st.Adopted += adopted
			errs = append(errs, relabelErrs...)
			take = take[:0]
			if list.Continue == "" {
				break
			}
			opts.Continue = list.Continue
		}
	}
	if s.cfg.ExpiredLeaseAge > 0 {
		if err := s.sweepLeases(ctx, alive, &st); err != nil {
			errs = append(errs, err)
		}
	}
	return st, errors.Join(errs...)
}

// isAlive reports whether the instance id is alive, asking the Liveness
// once per sweep (known holds the answers) and counting the dead instances
// found.
func (s *Sweeper) isAlive(ctx context.Context, id string, known map[string]bool, st *SweepStats) (bool, error) {
	if alive, ok := known[id]; ok {
		return alive, nil
	}
	alive, err := s.liveness.Alive(ctx, id)
	st.APICalls++
	if err != nil {
		return false, err
	}
	known[id] = alive
	if !alive {
		st.DeadOwners++
	}
	return alive, nil
}

// relabelAll relabels pods to this instance, Concurrency at a time, and
// returns how many it took and the errors of the others.
func (s *Sweeper) relabelAll(ctx context.Context, pods []*corev1.Pod) (int, []error) {
	var (
		mu      sync.Mutex
		adopted int
		errs    []error
		wg      sync.WaitGroup
	)
	sem := make(chan struct{}, s.cfg.Concurrency)
	for _, pod := range pods {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := Relabel(ctx, s.client, pod, s.cfg.ExecutorID)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			adopted++
		})
	}
	wg.Wait()
	return adopted, errs
}

// sweepLeases deletes the kubexec Leases not renewed for ExpiredLeaseAge.
// Each delete is guarded by the resourceVersion that was read, so a Lease
// renewed meanwhile stays.
func (s *Sweeper) sweepLeases(ctx context.Context, alive map[string]bool, st *SweepStats) error {
	leases := s.client.CoordinationV1().Leases(s.cfg.LeaseNamespace)
	list, err := leases.List(ctx, metav1.ListOptions{LabelSelector: leaseSelector(s.cfg.Group).String()})
	st.APICalls++
	if err != nil {
		return fmt.Errorf("adoption: list Leases in %q: %w", s.cfg.LeaseNamespace, err)
	}
	own := LeaseName(s.cfg.ExecutorID)
	now := time.Now()
	var errs []error
	for i := range list.Items {
		l := &list.Items[i]
		if l.Name == own || !leaseExpiredFor(l, now, s.cfg.ExpiredLeaseAge) {
			continue
		}
		if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != s.cfg.ExecutorID {
			// An instance's Lease whose renewTime looks old may be renewed
			// by a holder whose clock is behind; a claim is renewed only by
			// its holder's sweeps that still find pods to settle. Either
			// is kept while its holder is alive (judged by what this
			// instance saw change, not by the clocks). This sweeper's own
			// claims it renewed above if they are in use.
			if isAlive, err := s.isAlive(ctx, *l.Spec.HolderIdentity, alive, st); err != nil || isAlive {
				continue
			}
		}
		rv := l.ResourceVersion
		err := leases.Delete(ctx, l.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
		st.APICalls++
		switch {
		case err == nil:
			st.LeasesDeleted++
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
			// Gone already, or renewed since it was read.
		default:
			errs = append(errs, fmt.Errorf("adoption: delete expired Lease %s/%s: %w", l.Namespace, l.Name, err))
		}
	}
	return errors.Join(errs...)
}

// leaseSelector selects the kubexec Leases of the adoption group group
// (those with no group when it is empty): a sweep deletes no other
// deployment's Leases.
func leaseSelector(group string) labels.Selector {
	sel, err := kubexec.LeaseSelector(group)
	if err != nil {
		panic(err) // validated by NewSweeper
	}
	return sel
}

// leaseExpiredFor reports whether l was last renewed (or, never renewed,
// created) longer than age before now.
func leaseExpiredFor(l *coordinationv1.Lease, now time.Time, age time.Duration) bool {
	last := l.CreationTimestamp.Time
	if l.Spec.RenewTime != nil {
		last = l.Spec.RenewTime.Time
	}
	return now.Sub(last) > age
}

// settled reports whether a pod needs no decision from its owner any more:
// it has ended, or it is being deleted.
func settled(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp != nil || watch.Ended(pod)
}

// Run sweeps every interval until ctx ends, reporting each sweep's counts
// and errors to report (which may be nil; it is not called for a sweep cut
// short by ctx).
func (s *Sweeper) Run(ctx context.Context, interval time.Duration, report func(SweepStats, error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		st, err := s.Sweep(ctx)
		if report != nil && ctx.Err() == nil {
			report(st, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
