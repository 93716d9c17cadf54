package podwatch

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// annotationLastApplied is kubectl's copy of the whole applied object: large
// and never read by kubexec.
const annotationLastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// Trim returns a copy of pod that keeps only what kubexec reads, so that a
// Watcher holding many pods stays small. pod is not modified; the copy
// shares its strings, maps and timestamps with pod. Trimming a trimmed pod
// changes nothing.
//
// Kept:
//   - metadata: name, generateName, namespace, uid, resourceVersion,
//     generation, creation and deletion timestamps, deletion grace period,
//     labels, annotations (except kubectl's last-applied-configuration),
//     owner references, finalizers. Dropped: managedFields.
//   - spec: nodeName, schedulerName, restartPolicy, activeDeadlineSeconds,
//     and for each container and init container its name and image (and an
//     init container's restartPolicy, which marks a sidecar). Dropped:
//     everything else (commands, env, volumes, resources, probes, ...).
//   - status: phase, reason, message, startTime, the PodScheduled and
//     DisruptionTarget conditions (without lastProbeTime and
//     observedGeneration), and for each container and init container status
//     its name, image, state, lastTerminationState, ready, started and
//     restartCount. Dropped: the other conditions (Ready, ContainersReady,
//     Initialized, PodReadyToStartContainers, readiness gates), IPs, QoS
//     class, ephemeral containers, resources, volume mounts, allocation and
//     resize status.
func Trim(pod *corev1.Pod) *corev1.Pod {
	if pod == nil {
		return nil
	}
	out := *pod
	out.Spec.InitContainers = slices.Clone(pod.Spec.InitContainers)
	out.Spec.Containers = slices.Clone(pod.Spec.Containers)
	out.Status.Conditions = slices.Clone(pod.Status.Conditions)
	out.Status.InitContainerStatuses = slices.Clone(pod.Status.InitContainerStatuses)
	out.Status.ContainerStatuses = slices.Clone(pod.Status.ContainerStatuses)
	trimInPlace(&out)
	return &out
}

// trimInPlace trims pod as Trim describes, reusing its memory: it
// overwrites pod's fields and the elements of its slices, and never
// modifies a map or anything else pod points to. The informer's transform
// uses it on pods fresh from the decoder, which nothing else holds.
func trimInPlace(pod *corev1.Pod) {
	pod.ObjectMeta = metav1.ObjectMeta{
		Name:                       pod.Name,
		GenerateName:               pod.GenerateName,
		Namespace:                  pod.Namespace,
		UID:                        pod.UID,
		ResourceVersion:            pod.ResourceVersion,
		Generation:                 pod.Generation,
		CreationTimestamp:          pod.CreationTimestamp,
		DeletionTimestamp:          pod.DeletionTimestamp,
		DeletionGracePeriodSeconds: pod.DeletionGracePeriodSeconds,
		Labels:                     pod.Labels,
		Annotations:                trimAnnotations(pod.Annotations),
		OwnerReferences:            pod.OwnerReferences,
		Finalizers:                 pod.Finalizers,
	}
	pod.Spec = corev1.PodSpec{
		NodeName:              pod.Spec.NodeName,
		SchedulerName:         pod.Spec.SchedulerName,
		RestartPolicy:         pod.Spec.RestartPolicy,
		ActiveDeadlineSeconds: pod.Spec.ActiveDeadlineSeconds,
		InitContainers:        trimContainers(pod.Spec.InitContainers, true),
		Containers:            trimContainers(pod.Spec.Containers, false),
	}
	pod.Status = corev1.PodStatus{
		Phase:                 pod.Status.Phase,
		Reason:                pod.Status.Reason,
		Message:               pod.Status.Message,
		StartTime:             pod.Status.StartTime,
		Conditions:            trimConditions(pod.Status.Conditions),
		InitContainerStatuses: trimStatuses(pod.Status.InitContainerStatuses),
		ContainerStatuses:     trimStatuses(pod.Status.ContainerStatuses),
	}
}

func trimAnnotations(in map[string]string) map[string]string {
	if _, ok := in[annotationLastApplied]; !ok {
		return in
	}
	out := make(map[string]string, len(in)-1)
	for k, v := range in {
		if k != annotationLastApplied {
			out[k] = v
		}
	}
	return out
}

func trimContainers(cs []corev1.Container, init bool) []corev1.Container {
	if len(cs) == 0 {
		return nil
	}
	for i, c := range cs {
		cs[i] = corev1.Container{Name: c.Name, Image: c.Image}
		if init {
			cs[i].RestartPolicy = c.RestartPolicy
		}
	}
	return cs
}

// keptConditions are the pod conditions Classify reads.
var keptConditions = map[corev1.PodConditionType]bool{corev1.PodScheduled: true, corev1.DisruptionTarget: true}

func trimConditions(cs []corev1.PodCondition) []corev1.PodCondition {
	out := cs[:0]
	for _, c := range cs {
		if keptConditions[c.Type] {
			out = append(out, corev1.PodCondition{
				Type:               c.Type,
				Status:             c.Status,
				Reason:             c.Reason,
				Message:            c.Message,
				LastTransitionTime: c.LastTransitionTime,
			})
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func trimStatuses(ss []corev1.ContainerStatus) []corev1.ContainerStatus {
	if len(ss) == 0 {
		return nil
	}
	for i, s := range ss {
		ss[i] = corev1.ContainerStatus{
			Name:                 s.Name,
			Image:                s.Image,
			State:                s.State,
			LastTerminationState: s.LastTerminationState,
			Ready:                s.Ready,
			Started:              s.Started,
			RestartCount:         s.RestartCount,
		}
	}
	return ss
}
