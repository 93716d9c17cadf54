package adoption

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubexec/kubexec"
)

// ErrConflict is wrapped by Relabel's error when the pod changed between
// the read and the patch (another adopter may have won).
var ErrConflict = errors.New("adoption: the pod changed while being adopted")

// Relabel makes pod the executor newOwner's with a metadata-only merge
// patch of its executor label. The patch carries the resourceVersion that
// was read, so of two adopters racing for one pod exactly one wins; the
// other gets an error wrapping ErrConflict. A pod already owned by newOwner
// or gone is not an error.
func Relabel(ctx context.Context, client kubernetes.Interface, pod metav1.Object, newOwner string) error {
	if pod.GetLabels()[kubexec.LabelExecutor] == newOwner {
		return nil
	}
	patch := fmt.Sprintf(`{"metadata":{"resourceVersion":%q,"labels":{%q:%q}}}`,
		pod.GetResourceVersion(), kubexec.LabelExecutor, newOwner)
	_, err := client.CoreV1().Pods(pod.GetNamespace()).Patch(ctx, pod.GetName(), types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	switch {
	case err == nil, apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		return fmt.Errorf("%w: pod %s/%s: %v", ErrConflict, pod.GetNamespace(), pod.GetName(), err)
	default:
		return fmt.Errorf("adoption: relabel pod %s/%s: %w", pod.GetNamespace(), pod.GetName(), err)
	}
}

// SweepConfig configures a Sweeper.
type SweepConfig struct {
	// ExecutorID is the instance that adopts. Required.
	ExecutorID string
	// Namespaces to sweep; a single "" sweeps all namespaces. Required.
	Namespaces []string
	// PageSize is the list page size. Default 500.
	PageSize int64
}

// Sweeper finds pods of dead executor instances that no longer need their
// owner's decision — finished (Succeeded or Failed) or being deleted — and
// relabels them to its own executor, whose watch then saves their results
// and releases them. Nobody has to pass them in: this is how results of a
// crashed instance's pods are never lost, and how no pod stays Terminating
// forever on the tracking finalizer. Pods of live instances are never
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
	// Adopted is the number of pods relabelled to this instance.
	Adopted int
	// DeadOwners is the number of distinct dead instances found.
	DeadOwners int
	// APICalls is the number of requests sent (lists, lease reads, patches).
	APICalls int
}

// NewSweeper returns a Sweeper.
func NewSweeper(client kubernetes.Interface, liveness Liveness, cfg SweepConfig) (*Sweeper, error) {
	if client == nil || liveness == nil {
		return nil, errors.New("adoption: NewSweeper needs a client and a Liveness")
	}
	if err := kubexec.ValidateExecutorID(cfg.ExecutorID); err != nil {
		return nil, fmt.Errorf("adoption: SweepConfig.ExecutorID: %w", err)
	}
	if len(cfg.Namespaces) == 0 {
		return nil, errors.New(`adoption: SweepConfig.Namespaces is empty: list the namespaces, or [""] for all`)
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = 500
	}
	return &Sweeper{client: client, liveness: liveness, cfg: cfg}, nil
}

// othersSelector selects active kubexec pods not owned by self.
func othersSelector(self string) (labels.Selector, error) {
	managed, err := labels.NewRequirement(kubexec.LabelManagedBy, selection.Equals, []string{kubexec.ManagedByValue})
	if err != nil {
		return nil, err
	}
	notDone, err := labels.NewRequirement(kubexec.LabelDone, selection.NotEquals, []string{kubexec.DoneValue})
	if err != nil {
		return nil, err
	}
	notMine, err := labels.NewRequirement(kubexec.LabelExecutor, selection.NotEquals, []string{self})
	if err != nil {
		return nil, err
	}
	return labels.NewSelector().Add(*managed, *notDone, *notMine), nil
}

// Sweep runs once over every namespace.
func (s *Sweeper) Sweep(ctx context.Context) (SweepStats, error) {
	var st SweepStats
	sel, err := othersSelector(s.cfg.ExecutorID)
	if err != nil {
		return st, err
	}
	alive := map[string]bool{}
	var errs []error
	for _, ns := range s.cfg.Namespaces {
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
				isAlive, known := alive[owner]
				if !known {
					isAlive, err = s.liveness.Alive(ctx, owner)
					st.APICalls++
					if err != nil {
						errs = append(errs, fmt.Errorf("adoption: liveness of %q: %w", owner, err))
						continue // unknown: never adopt
					}
					alive[owner] = isAlive
					if !isAlive {
						st.DeadOwners++
					}
				}
				if isAlive {
					continue
				}
				st.APICalls++
				if err := Relabel(ctx, s.client, pod, s.cfg.ExecutorID); err != nil {
					errs = append(errs, err)
					continue
				}
				st.Adopted++
			}
			if list.Continue == "" {
				break
			}
			opts.Continue = list.Continue
		}
	}
	return st, errors.Join(errs...)
}

// settled reports whether a pod needs no decision from its owner any more:
// it has ended, or it is being deleted.
func settled(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// Run sweeps every interval until ctx ends, reporting each sweep's errors
// to onError (which may be nil).
func (s *Sweeper) Run(ctx context.Context, interval time.Duration, onError func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.Sweep(ctx); err != nil && onError != nil && ctx.Err() == nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
