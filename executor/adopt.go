package executor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/fleet"
	"github.com/kubexec/kubexec/watch"
)

// ErrOwnerAlive is wrapped by Adopt's error for attempts whose pod belongs
// to an executor instance that is still alive: they are not taken.
var ErrOwnerAlive = errors.New("executor: the pod's executor is alive")

// ErrOtherDeployment is wrapped by Adopt's error for attempts whose pod
// belongs to an executor instance of another deployment: another
// Config.AdoptionGroup (or none), or another LeaseNamespace. Such pods are
// never taken, whatever their owner's Lease says, and the attempt is not
// reported as having no pod.
var ErrOtherDeployment = errors.New("executor: the pod belongs to another deployment")

// Adopt takes over the pods of attempts launched by executor instances
// that are gone: each pod found is tracked (relabelled to this executor
// if it has not ended) until its result is saved and it is released. It returns the attempts that have no pod and no saved
// result, for the host to reset. It is idempotent and safe to call
// while running.
//
// For each key it looks for the attempt's pod
// (its name is derived from the key) in the watched namespaces, then in
// those where the other instances of its adoption group create pods (their
// Leases list them). A pod of another instance is taken only if it belongs
// to the same deployment (the same Config.AdoptionGroup and LeaseNamespace;
// otherwise the error wraps ErrOtherDeployment) and that instance is dead
// (by Config.Liveness; by default its Lease). A pod in a namespace this
// executor does not watch is named in an error, never taken. A pod that
// has not ended is relabelled to this executor with a metadata-only patch
// guarded by the pod's UID and owner, so two adopters cannot both win, and
// the watch then tracks it like any other. An ended pod is not relabelled:
// its result is saved from the pod read and the pod released, as the sweep
// does (an adoption sweep elsewhere may save the same result too; saving
// is idempotent). A pod labelled done is accounted for already. Attempts
// with no pod are returned for the host to reset, except those whose
// result is saved already when the StateStore is a ResultLoader (without
// one, the host checks its own records before resetting: the adoption
// sweep may have saved a result meanwhile). Attempts whose owner is alive
// are left alone and named in an error wrapping ErrOwnerAlive. Liveness
// by Leases does not trust the holders' clocks: a Lease this executor has
// not seen change counts as alive until it has seen it unchanged for the
// Lease's duration (adoption.LeaseLiveness), so a host that gets
// ErrOwnerAlive right after a crash (or right after this executor started)
// calls Adopt again after that time.
func (e *Executor) Adopt(ctx context.Context, keys []kubexec.TaskKey) ([]kubexec.TaskKey, error) {
	if err := e.checkRunning(); err != nil {
		return nil, err
	}
	var noPod []kubexec.TaskKey
	var errs []error
	alive := map[string]bool{}
	var elsewhere *[]string // the group's other namespaces, read once
	for _, key := range keys {
		hasPod, err := e.adoptOne(ctx, key, alive, &elsewhere)
		var abort abortError
		switch {
		case errors.As(err, &abort):
			return noPod, abort.error
		case err != nil:
			errs = append(errs, err)
		case !hasPod:
			if ended, err := e.endedWithoutPod(ctx, key); err != nil {
				return noPod, err
			} else if !ended {
				noPod = append(noPod, key)
			}
		}
	}
	return noPod, errors.Join(errs...)
}

// abortError is an error that ends Adopt at once: the API server cannot
// answer.
type abortError struct{ error }

// maxAdoptTries bounds the re-reads of one pod whose owner changed under
// Adopt (each one means another adopter or the owner moved).
const maxAdoptTries = 5

// adoptOne takes over key's pod if its owner is dead. It reports whether
// the attempt has a pod. A relabel that loses a race is not a failure by
// itself: the pod is read again and its owner checked again, and the error
// is ErrOwnerAlive only when a live instance really holds it.
func (e *Executor) adoptOne(ctx context.Context, key kubexec.TaskKey, alive map[string]bool, elsewhere **[]string) (bool, error) {
	for try := 1; ; try++ {
		pod, err := e.findPod(ctx, key, elsewhere)
		if err != nil {
			return false, abortError{err}
		}
		if pod == nil {
			return false, nil
		}
		owner := pod.Labels[kubexec.LabelExecutor]
		if owner == e.cfg.ExecutorID || pod.Labels[kubexec.LabelDone] == kubexec.DoneValue {
			return true, nil // ours, or saved and released (by a sweep) already
		}
		if !e.watches(pod.Namespace) {
			return true, fmt.Errorf("executor: adopt %s: its pod %s/%s of executor %q is in a namespace this executor does not watch: add %q to Config.Namespaces to adopt it", key, pod.Namespace, pod.Name, owner, pod.Namespace)
		}
		if !kubexec.SameDeployment(pod, e.cfg.AdoptionGroup, e.cfg.LeaseNamespace) {
			return true, fmt.Errorf("%w: %s has pod %s/%s of executor %q (adoption group %q, Lease namespace %q), and this executor's group is %q with Lease namespace %q: only instances of one Config.AdoptionGroup with one LeaseNamespace adopt each other's pods",
				ErrOtherDeployment, key, pod.Namespace, pod.Name, owner, pod.Labels[kubexec.LabelGroup], pod.Annotations[kubexec.AnnotationLeaseNamespace], e.cfg.AdoptionGroup, e.cfg.LeaseNamespace)
		}
		if reason, err := e.genuine(pod, key, ""); err != nil {
			e.reportForeign(pod, reason, err)
			return true, fmt.Errorf("executor: adopt %s: %w: it is left alone; delete it, then reset the attempt", key, err)
		}
		isAlive, known := alive[owner]
		if !known {
			isAlive, err = e.liveness.Alive(ctx, owner)
			if err != nil {
				return true, fmt.Errorf("executor: adopt %s: liveness of executor %q unknown: %w", key, owner, err)
			}
			alive[owner] = isAlive
		}
		if isAlive {
			return true, fmt.Errorf("%w: %s runs in pod %s/%s of executor %q", ErrOwnerAlive, key, pod.Namespace, pod.Name, owner)
		}
		if watch.Ended(pod) {
			// Ended: saved and released from the pod read, as the sweep
			// does, with no relabel.
			if _, err := e.settleAdopted(pod); err != nil {
				return true, fmt.Errorf("executor: adopt %s: %w", key, err)
			}
			return true, nil
		}
		err = fleet.Relabel(ctx, e.client, pod, e.cfg.ExecutorID)
		switch {
		case err == nil:
			e.log.Info("adopted pod", "task", key, "pod", pod.Namespace+"/"+pod.Name, "from", owner)
			return true, nil
		case errors.Is(err, fleet.ErrConflict) && try < maxAdoptTries:
			e.log.Debug("pod changed owner while being adopted; reading it again", "task", key, "pod", pod.Namespace+"/"+pod.Name)
			continue
		default:
			return true, fmt.Errorf("executor: adopt %s: %w", key, err)
		}
	}
}

// endedWithoutPod reports whether an attempt with no pod is nonetheless
// accounted for: tracked by this executor (its result being saved), or,
// when the StateStore is a ResultLoader, already saved (its pod released,
// for example by the adoption sweep). Such attempts must not be reset.
func (e *Executor) endedWithoutPod(ctx context.Context, key kubexec.TaskKey) (bool, error) {
	e.mu.Lock()
	_, tracked := e.attempts[key]
	e.unlock()
	if tracked {
		return true, nil
	}
	_, saved, err := e.store.LoadResult(ctx, key)
	if err != nil {
		return false, fmt.Errorf("executor: adopt %s: StateStore.LoadResult: %w", key, err)
	}
	return saved, nil
}

// watches reports whether ns is one of the executor's namespaces.
func (e *Executor) watches(ns string) bool {
	return e.cfg.allNamespaces() || slices.Contains(e.cfg.Namespaces, ns)
}

// findPod returns the attempt's pod, or nil when there is none. It looks
// in the executor's namespaces, then in those where the other instances
// of its adoption group create pods (their Leases say which: see
// groupNamespaces), read once per Adopt into elsewhere.
func (e *Executor) findPod(ctx context.Context, key kubexec.TaskKey, elsewhere **[]string) (*corev1.Pod, error) {
	pod, err := e.findPodIn(ctx, key, e.cfg.Namespaces)
	if pod != nil || err != nil || e.cfg.allNamespaces() || e.cfg.AdoptionGroup == "" {
		return pod, err
	}
	if *elsewhere == nil {
		others, err := e.groupNamespaces(ctx)
		if err != nil {
			return nil, fmt.Errorf("executor: adopt %s: %w", key, err)
		}
		*elsewhere = &others
	}
	if len(**elsewhere) == 0 {
		return nil, nil
	}
	return e.findPodIn(ctx, key, **elsewhere)
}

// groupNamespaces returns the namespaces, other than the executor's own,
// where the instances of its adoption group create pods, from the
// kubexec.AnnotationNamespaces of their Leases in LeaseNamespace ("" when
// one of them creates pods in every namespace).
func (e *Executor) groupNamespaces(ctx context.Context) ([]string, error) {
	sel, err := kubexec.LeaseSelector(e.cfg.AdoptionGroup)
	if err != nil {
		return nil, err
	}
	list, err := e.client.CoordinationV1().Leases(e.cfg.LeaseNamespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("list the Leases of adoption group %q in %q: %w", e.cfg.AdoptionGroup, e.cfg.LeaseNamespace, err)
	}
	var out []string
	for _, l := range list.Items {
		v, ok := l.Annotations[kubexec.AnnotationNamespaces]
		if !ok {
			continue
		}
		for ns := range strings.SplitSeq(v, ",") {
			if ns == "" {
				return []string{""}, nil
			}
			if !e.watches(ns) && !slices.Contains(out, ns) {
				out = append(out, ns)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// findPodIn returns the attempt's pod in namespaces ([""]: all), or nil.
func (e *Executor) findPodIn(ctx context.Context, key kubexec.TaskKey, namespaces []string) (*corev1.Pod, error) {
	name, err := kubexec.PodName(key)
	if err != nil {
		return nil, err
	}
	if len(namespaces) == 1 && namespaces[0] == "" {
		list, err := e.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(),
			LabelSelector: kubexec.ManagedSelector().String(),
		})
		if err != nil {
			return nil, fmt.Errorf("executor: adopt %s: %w", key, err)
		}
		for i := range list.Items {
			if k, err := kubexec.KeyFromObject(&list.Items[i]); err == nil && k == key {
				return &list.Items[i], nil
			}
		}
		return nil, nil
	}
	for _, ns := range namespaces {
		pod, err := e.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("executor: adopt %s: %w", key, err)
		}
		if k, err := kubexec.KeyFromObject(pod); err == nil && k == key {
			return pod, nil
		}
	}
	return nil, nil
}
