package podwatch

import corev1 "k8s.io/api/core/v1"

// Handler receives a Watcher's pod events.
//
// A Watcher calls its Handler from one goroutine, the one running
// [Watcher.Run], one call at a time, in the order the changes happened for
// each pod. Calls never overlap, so a Handler needs no locking of its own
// for state that only it touches; a slow Handler delays later events, which
// queue in memory meanwhile.
//
// The pods are the Watcher's own trimmed copies (see [Trim]), shared with
// [Watcher.Get] and [Watcher.List]: a Handler must not modify them, nor
// anything they point to. Copy one with DeepCopy before changing it.
type Handler interface {
	// OnAdd is called for a pod the Watcher did not know: every pod of the
	// first list, then each pod that is created or starts to match the
	// selector.
	OnAdd(pod *corev1.Pod)
	// OnUpdate is called when a known pod changed; old is its previous
	// known state. Intermediate states can be skipped when the watch was
	// down, but every call carries a newer resourceVersion than the one
	// before for that pod, and a pod that did not change is never
	// delivered.
	OnUpdate(old, pod *corev1.Pod)
	// OnDelete is called when a known pod is gone from the watch: it was
	// deleted, or it no longer matches the selector (marked done, or
	// relabelled to another executor). With gone false, the watch saw it
	// go and pod is the state the API server sent: for a deletion, the pod
	// as it was deleted (its deletionTimestamp set); for a pod that stopped
	// matching, its last state that still matched. With gone true, it went
	// while the watch was down and the relist that followed found it
	// missing: pod is the last state the Watcher knew. In both cases,
	// whether the pod still exists (relabelled) or not (deleted) is for the
	// API server to say; ask it when that matters.
	OnDelete(pod *corev1.Pod, gone bool)
}

// HandlerFuncs adapts functions to a [Handler]. A nil field ignores its
// event.
type HandlerFuncs struct {
	// AddFunc is called by OnAdd.
	AddFunc func(pod *corev1.Pod)
	// UpdateFunc is called by OnUpdate.
	UpdateFunc func(old, pod *corev1.Pod)
	// DeleteFunc is called by OnDelete.
	DeleteFunc func(pod *corev1.Pod, gone bool)
}

var _ Handler = HandlerFuncs{}

// OnAdd calls AddFunc if it is not nil.
func (f HandlerFuncs) OnAdd(pod *corev1.Pod) {
	if f.AddFunc != nil {
		f.AddFunc(pod)
	}
}

// OnUpdate calls UpdateFunc if it is not nil.
func (f HandlerFuncs) OnUpdate(old, pod *corev1.Pod) {
	if f.UpdateFunc != nil {
		f.UpdateFunc(old, pod)
	}
}

// OnDelete calls DeleteFunc if it is not nil.
func (f HandlerFuncs) OnDelete(pod *corev1.Pod, gone bool) {
	if f.DeleteFunc != nil {
		f.DeleteFunc(pod, gone)
	}
}
