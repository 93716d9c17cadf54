package kubexec

import corev1 "k8s.io/api/core/v1"

// AnnotationDefaultContainer is kubectl's annotation for the container that
// kubectl logs and kubectl exec use when none is named. podtemplate sets it
// to the main container; every part of kubexec that needs the main
// container reads it through [MainContainer].
const AnnotationDefaultContainer = "kubectl.kubernetes.io/default-container"

// MainContainer returns the index in pod.Spec.Containers of the container
// that runs the task: the one AnnotationDefaultContainer names, else the
// first; -1 when the pod has no container. It is the one rule for "the
// main container" in kubexec: classification, logs and XCom all use it.
func MainContainer(pod *corev1.Pod) int {
	if pod == nil || len(pod.Spec.Containers) == 0 {
		return -1
	}
	if name := pod.Annotations[AnnotationDefaultContainer]; name != "" {
		for i := range pod.Spec.Containers {
			if pod.Spec.Containers[i].Name == name {
				return i
			}
		}
	}
	return 0
}
