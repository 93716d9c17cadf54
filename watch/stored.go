package watch

import (
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubexec/kubexec"
)

// storedPod is how a Watcher's cache holds a pod: exactly what Trim keeps,
// in a struct of about 480 bytes where a corev1.Pod takes 1,280 and each
// of its containers 416. A Watcher holds one per tracked pod, so this is
// most of its memory; Get, List and the Handler receive the pod as a
// *corev1.Pod again (unpack), a copy made for each of them that shares
// the stored strings, maps and slices.
type storedPod struct {
	metav1.ObjectMeta

	nodeName              string
	schedulerName         string
	restartPolicy         corev1.RestartPolicy
	activeDeadlineSeconds *int64
	initContainers        []storedContainer
	containers            []storedContainer

	phase                 corev1.PodPhase
	reason                string
	message               string
	startTime             *metav1.Time
	conditions            []corev1.PodCondition
	initContainerStatuses []corev1.ContainerStatus
	containerStatuses     []corev1.ContainerStatus
}

// storedContainer is what Trim keeps of a container.
type storedContainer struct {
	name, image   string
	restartPolicy *corev1.ContainerRestartPolicy // init containers only: marks a sidecar
}

var _ metav1.Object = (*storedPod)(nil)

// GetObjectKind implements runtime.Object.
func (*storedPod) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object.
func (s *storedPod) DeepCopyObject() runtime.Object {
	return pack(s.unpack().DeepCopy())
}

// pack trims pod (in place, see trimInPlace: it must be fresh from the
// decoder) and returns it in its stored form, with the strings that many
// pods share (see share) kept once.
func pack(pod *corev1.Pod) *storedPod {
	trimInPlace(pod)
	pod.Namespace = share(pod.Namespace)
	pod.Labels = shareMeta(pod.Labels)
	pod.Annotations = shareMeta(pod.Annotations)
	for i := range pod.Status.Conditions {
		c := &pod.Status.Conditions[i]
		c.Type, c.Status, c.Reason = share(c.Type), share(c.Status), share(c.Reason)
	}
	shareStatuses(pod.Status.InitContainerStatuses)
	shareStatuses(pod.Status.ContainerStatuses)
	return &storedPod{
		ObjectMeta:            pod.ObjectMeta,
		nodeName:              share(pod.Spec.NodeName),
		schedulerName:         share(pod.Spec.SchedulerName),
		restartPolicy:         share(pod.Spec.RestartPolicy),
		activeDeadlineSeconds: pod.Spec.ActiveDeadlineSeconds,
		initContainers:        packContainers(pod.Spec.InitContainers),
		containers:            packContainers(pod.Spec.Containers),
		phase:                 share(pod.Status.Phase),
		reason:                share(pod.Status.Reason),
		message:               pod.Status.Message,
		startTime:             pod.Status.StartTime,
		conditions:            pod.Status.Conditions,
		initContainerStatuses: pod.Status.InitContainerStatuses,
		containerStatuses:     pod.Status.ContainerStatuses,
	}
}

func packContainers(cs []corev1.Container) []storedContainer {
	if len(cs) == 0 {
		return nil
	}
	out := make([]storedContainer, len(cs))
	for i, c := range cs {
		out[i] = storedContainer{name: share(c.Name), image: share(c.Image), restartPolicy: c.RestartPolicy}
	}
	return out
}

// share returns s, or an equal string already held elsewhere: the decoder
// gives every pod its own copy of strings that thousands of pods carry
// (namespace, node, image, container names, condition types, kubexec's
// label keys and the executor's and run's values). unique keeps one copy of
// each while any pod uses it, and forgets it after.
func share[S ~string](s S) S {
	if s == "" {
		return s
	}
	return S(unique.Make(string(s)).Value())
}

// sharedValues are the kubexec label keys (the annotations use the same
// keys) whose values many pods have in common: all of an executor's or a
// run's pods. The task's value (kubexec.LabelTask) is left alone, as are
// the values of other keys, which kubexec does not know.
var sharedValues = map[string]bool{
	kubexec.LabelManagedBy: true, kubexec.LabelExecutor: true, kubexec.LabelWorkflow: true,
	kubexec.LabelRun: true, kubexec.LabelMapIndex: true, kubexec.LabelAttempt: true,
	kubexec.LabelDone: true,
}

// shareMeta returns a copy of labels or annotations m with shared keys,
// and shared values for the keys of sharedValues.
func shareMeta(m map[string]string) map[string]string {
	if len(m) == 0 {
		return m
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if sharedValues[k] {
			v = share(v)
		}
		out[share(k)] = v
	}
	return out
}

func shareStatuses(ss []corev1.ContainerStatus) {
	for i := range ss {
		s := &ss[i]
		s.Name, s.Image = share(s.Name), share(s.Image)
		for _, st := range []*corev1.ContainerState{&s.State, &s.LastTerminationState} {
			if st.Waiting != nil {
				st.Waiting.Reason = share(st.Waiting.Reason)
			}
			if st.Terminated != nil {
				st.Terminated.Reason = share(st.Terminated.Reason)
			}
		}
	}
}

// unpack returns the stored pod as the trimmed *corev1.Pod it was made
// from. The pod shares s's strings, maps and slices: neither may be
// modified.
func (s *storedPod) unpack() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: s.ObjectMeta,
		Spec: corev1.PodSpec{
			NodeName:              s.nodeName,
			SchedulerName:         s.schedulerName,
			RestartPolicy:         s.restartPolicy,
			ActiveDeadlineSeconds: s.activeDeadlineSeconds,
			InitContainers:        unpackContainers(s.initContainers),
			Containers:            unpackContainers(s.containers),
		},
		Status: corev1.PodStatus{
			Phase:                 s.phase,
			Reason:                s.reason,
			Message:               s.message,
			StartTime:             s.startTime,
			Conditions:            s.conditions,
			InitContainerStatuses: s.initContainerStatuses,
			ContainerStatuses:     s.containerStatuses,
		},
	}
}

func unpackContainers(cs []storedContainer) []corev1.Container {
	if len(cs) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i] = corev1.Container{Name: c.name, Image: c.image, RestartPolicy: c.restartPolicy}
	}
	return out
}

// podOf returns the pod an informer object holds: a stored pod unpacked,
// or a *corev1.Pod as it is (one that never went through the transform).
func podOf(obj any) (*corev1.Pod, bool) {
	switch o := obj.(type) {
	case *storedPod:
		if o == nil {
			return nil, false
		}
		return o.unpack(), true
	case *corev1.Pod:
		return o, true
	}
	return nil, false
}

// sameVersion reports whether two informer objects are the same version
// of one pod, without unpacking them.
func sameVersion(a, b any) (sameUID, sameRV bool) {
	ma, ok1 := a.(metav1.Object)
	mb, ok2 := b.(metav1.Object)
	if !ok1 || !ok2 {
		return false, false
	}
	return ma.GetUID() == mb.GetUID(), ma.GetResourceVersion() == mb.GetResourceVersion()
}
