package podwatch

import (
	"maps"
	"slices"
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubexec/kubexec"
)

// storedPod is how a Watcher's cache holds a pod: exactly what Trim keeps,
// in a struct of about 500 bytes where a corev1.Pod takes 1,240 and each
// of its containers 416, with labels and annotations in one slice of
// key-value pairs instead of two maps, and container statuses in 96 bytes
// instead of 208. A Watcher holds one per tracked pod, so this is most of
// its memory; Get, List and the Handler receive the pod as a *corev1.Pod
// again (unpack), a copy made for each of them that shares the stored
// strings and slices (its label and annotation maps are its own).
type storedPod struct {
	// ObjectMeta without Labels and Annotations, which are in meta.
	metav1.ObjectMeta
	// meta is the labels then the annotations, as key, value, key,
	// value...; the first labels pairs are the labels. A nil map and an
	// empty one are both stored as no pairs and given back as nil.
	meta   []string
	labels int

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
	initContainerStatuses []storedStatus
	containerStatuses     []storedStatus
}

// storedStatus is what Trim keeps of a container status.
type storedStatus struct {
	name, image      string
	state, lastState corev1.ContainerState
	restartCount     int32
	ready            bool
	started          optionalBool
}

// optionalBool is a *bool held in a byte.
type optionalBool uint8

const (
	boolUnset optionalBool = iota
	boolFalse
	boolTrue
)

// falseValue and trueValue are what unpacked statuses' Started point to:
// shared, like everything an unpacked pod holds.
var falseValue, trueValue = false, true

func packBool(b *bool) optionalBool {
	switch {
	case b == nil:
		return boolUnset
	case *b:
		return boolTrue
	}
	return boolFalse
}

func (o optionalBool) unpack() *bool {
	switch o {
	case boolFalse:
		return &falseValue
	case boolTrue:
		return &trueValue
	}
	return nil
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
	meta, labels := packMeta(pod.Labels, pod.Annotations)
	pod.Labels, pod.Annotations = nil, nil
	pod.Finalizers = shareFinalizers(pod.Finalizers)
	// The decoder appends conditions one at a time, so their array has
	// room to spare (eight conditions' worth for five) and, trimmed, holds
	// fewer than it was decoded with: the stored pod keeps a copy of
	// exactly their length.
	pod.Status.Conditions = exact(pod.Status.Conditions)
	for i := range pod.Status.Conditions {
		c := &pod.Status.Conditions[i]
		c.Type, c.Status, c.Reason = share(c.Type), share(c.Status), share(c.Reason)
	}
	return &storedPod{
		ObjectMeta:            pod.ObjectMeta,
		meta:                  meta,
		labels:                labels,
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
		initContainerStatuses: packStatuses(pod.Status.InitContainerStatuses),
		containerStatuses:     packStatuses(pod.Status.ContainerStatuses),
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

// packMeta returns labels and annotations as one slice of key-value pairs,
// labels first, each in key order, and the number of label pairs. Keys are
// shared, and so are the values of the keys of sharedValues; an annotation
// whose value is its label's (kubexec's task annotation and label usually
// are) holds the label's string.
func packMeta(labels, annotations map[string]string) ([]string, int) {
	n := len(labels) + len(annotations)
	if n == 0 {
		return nil, 0
	}
	out := make([]string, 0, 2*n)
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		v := labels[k]
		if sharedValues[k] {
			v = share(v)
		}
		out = append(out, share(k), v)
	}
	for _, k := range slices.Sorted(maps.Keys(annotations)) {
		v := annotations[k]
		if sharedValues[k] {
			v = share(v)
		} else if lv, ok := labels[k]; ok && lv == v {
			v = lv // the string the label's pair holds
		}
		out = append(out, share(k), v)
	}
	return out, len(labels)
}

// unpackMeta returns the map of key-value pairs, nil for none.
func unpackMeta(pairs []string) map[string]string {
	if len(pairs) == 0 {
		return nil
	}
	m := make(map[string]string, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		m[pairs[i]] = pairs[i+1]
	}
	return m
}

// exact returns a copy of s with no spare capacity, or nil if s is empty.
func exact[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return append(make([]T, 0, len(s)), s...)
}

// trackingOnly is the finalizers of nearly every kubexec pod, held once.
var trackingOnly = []string{kubexec.FinalizerResultTracking}

// shareFinalizers returns f, or trackingOnly when that is what f holds.
func shareFinalizers(f []string) []string {
	if len(f) == 1 && f[0] == kubexec.FinalizerResultTracking {
		return trackingOnly
	}
	for i := range f {
		f[i] = share(f[i])
	}
	return f
}

func packStatuses(ss []corev1.ContainerStatus) []storedStatus {
	if len(ss) == 0 {
		return nil
	}
	out := make([]storedStatus, len(ss))
	for i := range ss {
		s := &ss[i]
		for _, st := range []*corev1.ContainerState{&s.State, &s.LastTerminationState} {
			if st.Waiting != nil {
				st.Waiting.Reason = share(st.Waiting.Reason)
			}
			if st.Terminated != nil {
				st.Terminated.Reason = share(st.Terminated.Reason)
			}
		}
		out[i] = storedStatus{
			name: share(s.Name), image: share(s.Image),
			state: s.State, lastState: s.LastTerminationState,
			restartCount: s.RestartCount, ready: s.Ready, started: packBool(s.Started),
		}
	}
	return out
}

func unpackStatuses(ss []storedStatus) []corev1.ContainerStatus {
	if len(ss) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, len(ss))
	for i, s := range ss {
		out[i] = corev1.ContainerStatus{
			Name: s.name, Image: s.image,
			State: s.state, LastTerminationState: s.lastState,
			RestartCount: s.restartCount, Ready: s.ready, Started: s.started.unpack(),
		}
	}
	return out
}

// unpack returns the stored pod as the trimmed *corev1.Pod it was made
// from. The pod shares s's strings and slices: neither may be modified.
func (s *storedPod) unpack() *corev1.Pod {
	meta := s.ObjectMeta
	meta.Labels = unpackMeta(s.meta[:2*s.labels])
	meta.Annotations = unpackMeta(s.meta[2*s.labels:])
	return &corev1.Pod{
		ObjectMeta: meta,
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
			InitContainerStatuses: unpackStatuses(s.initContainerStatuses),
			ContainerStatuses:     unpackStatuses(s.containerStatuses),
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
