package watch

import corev1 "k8s.io/api/core/v1"

// Stopped reports whether pod no longer runs and can no longer start a
// container, so that a retry of its attempt can never run beside it: it ended (phase Succeeded or Failed), or it is being deleted
// and either was never bound to a node (the API server refuses to bind a
// pod that is being deleted) or none of its containers runs (a node starts
// no container in a pod being deleted; one that never started may keep
// phase Pending to the end). A pod not known (nil) may exist and run; a pod
// with no node that is not being deleted may be bound a moment later (an
// autoscaler's node arriving).
func Stopped(pod *corev1.Pod) bool {
	switch {
	case pod == nil:
		return false
	case Ended(pod):
		return true
	case pod.DeletionTimestamp == nil:
		return false
	}
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, cs := range list {
			if cs.State.Running != nil {
				return false
			}
		}
	}
	return true
}

// Ended reports whether pod has ended: its phase is Succeeded or Failed,
// so none of its containers runs or will run again. This is the one
// definition of "the pod has ended" in kubexec.
func Ended(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}
