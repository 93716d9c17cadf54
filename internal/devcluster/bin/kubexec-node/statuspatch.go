package main

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// statusPatcher is the pod client given to virtual-kubelet's pod controller.
// Its UpdateStatus writes only the status, the way the kubelet does: a
// strategic merge patch of the pods/status subresource computed against the
// current status, with the pod's UID as a precondition.
//
// A plain UpdateStatus would send the provider's copy of the whole object,
// and the pods/status endpoint accepts changes to labels, annotations and
// finalizers: a finalizer that a controller removed a moment before would
// come back. Conditions owned by others (PodScheduled, DisruptionTarget,
// readiness gates) are kept as they are.
type statusPatcher struct {
	corev1client.PodsGetter
}

func (s *statusPatcher) Pods(namespace string) corev1client.PodInterface {
	return &podStatusPatcher{PodInterface: s.PodsGetter.Pods(namespace)}
}

type podStatusPatcher struct {
	corev1client.PodInterface
}

func (p *podStatusPatcher) UpdateStatus(ctx context.Context, pod *corev1.Pod, _ metav1.UpdateOptions) (*corev1.Pod, error) {
	// The patch is a diff against the base: the base must be the status
	// as it is now, not as an informer last saw it, or a field that changed
	// since would not be in the diff.
	current, err := p.Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if pod.UID != "" && current.UID != pod.UID {
		return nil, apierrors.NewNotFound(corev1.Resource("pods"), pod.Name)
	}
	desired := mergeStatus(current.Status, pod.Status)
	patch, unchanged, err := statusPatch(current.UID, current.Status, desired)
	if err != nil {
		return nil, err
	}
	if unchanged {
		return current, nil
	}
	return p.Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
}

// kubeletConditions are the pod conditions the kubelet owns.
var kubeletConditions = map[corev1.PodConditionType]bool{
	corev1.PodReadyToStartContainers: true,
	corev1.PodInitialized:            true,
	corev1.PodReady:                  true,
	corev1.ContainersReady:           true,
	corev1.PodScheduled:              true,
}

// mergeStatus is the provider's status with the conditions it does not own
// taken from the API server's.
func mergeStatus(current, provider corev1.PodStatus) corev1.PodStatus {
	out := *provider.DeepCopy()
	out.Conditions = nil
	for _, c := range current.Conditions {
		if !kubeletConditions[c.Type] {
			out.Conditions = append(out.Conditions, c)
		}
	}
	for _, c := range provider.Conditions {
		if !kubeletConditions[c.Type] {
			continue
		}
		if c.Type == corev1.PodScheduled {
			// The scheduler set it; keep its times.
			if old := findCondition(current.Conditions, c.Type); old != nil && old.Status == c.Status {
				c = *old
			}
		}
		out.Conditions = append(out.Conditions, c)
	}
	if out.QOSClass == "" {
		out.QOSClass = current.QOSClass
	}
	if out.NominatedNodeName == "" {
		out.NominatedNodeName = current.NominatedNodeName
	}
	if out.ResourceClaimStatuses == nil {
		out.ResourceClaimStatuses = current.ResourceClaimStatuses
	}
	return out
}

func findCondition(conds []corev1.PodCondition, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// statusPatch is the kubelet's preparePatchBytesForPodStatus.
func statusPatch(uid types.UID, oldStatus, newStatus corev1.PodStatus) ([]byte, bool, error) {
	oldData, err := json.Marshal(corev1.Pod{Status: oldStatus})
	if err != nil {
		return nil, false, err
	}
	newData, err := json.Marshal(corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: uid}, Status: newStatus})
	if err != nil {
		return nil, false, err
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(oldData, newData, corev1.Pod{})
	if err != nil {
		return nil, false, err
	}
	return patch, string(patch) == fmt.Sprintf(`{"metadata":{"uid":%q}}`, uid), nil
}
