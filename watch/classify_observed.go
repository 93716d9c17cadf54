package watch

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Observations holds when a caller first saw, on its own clock, a pod in
// each state that a timeout of [ClassifyOptions] counts from. A caller that
// classifies a pod over its life (an executor tracking an attempt) keeps one
// per pod, starting from the zero value, and passes it to every
// [ClassifyObserved] of that pod, which records into it.
//
// Without Observations, [Classify] counts its timeouts from the pod's own
// timestamps: its creation (written by the API server), the PodScheduled
// condition's last transition (the scheduler or the API server), its start
// time (the node). Those are other machines' clocks, compared with the
// caller's now: with clock skew of minutes an attempt times out at once, or
// minutes late. With Observations every timeout, and
// [Classification.RecheckAt], is measured on the caller's clock alone, from
// the first time the caller saw the state. Use times from time.Now, whose
// monotonic reading also keeps the measure right across changes of the
// wall clock.
//
// A caller that first sees a pod late (after a restart, on adoption) starts
// its timeouts then: they can end later than the pod's timestamps say, never
// earlier.
//
// An Observations is a small value (two times) with no lock: keep it with
// the pod's other state and pass it from one goroutine at a time. To
// classify without recording (to describe a pod, say), pass a pointer to a
// copy.
type Observations struct {
	// Unscheduled is when the pod was first seen waiting for a node: not
	// on one (see Scheduled; a pod created with a nodeName waits until that
	// node reports it) and not held by scheduling gates.
	// [ClassifyOptions.PendingTimeout] counts from it. Seeing the pod held
	// by scheduling gates clears it: the wait for a node starts when the
	// gates are gone.
	Unscheduled time.Time
	// Scheduled is when the pod was first seen on its node: bound to it by
	// the scheduler (PodScheduled True) or reported by it (a start time,
	// container statuses). [ClassifyOptions.StartTimeout],
	// ImagePullGrace and ConfigErrorGrace count from it.
	Scheduled time.Time
}

// ClassifyObserved classifies pod as [Classify] does, but measures every
// timeout and grace period of opts, and RecheckAt, from the first-seen
// times in obs (on the caller's clock, now) instead of the pod's
// timestamps; it first records into obs what it sees of pod at now. See
// [Observations]. A nil obs makes it Classify.
func ClassifyObserved(pod *corev1.Pod, now time.Time, opts ClassifyOptions, obs *Observations) Classification {
	if pod != nil && obs != nil {
		obs.observe(pod, now)
	}
	return classify(pod, now, opts, obs)
}

// observe records what it sees of pod at now.
func (o *Observations) observe(pod *corev1.Pod, now time.Time) {
	switch {
	case onNode(pod):
		if o.Scheduled.IsZero() {
			o.Scheduled = now
		}
	case schedulingGated(pod):
		o.Unscheduled = time.Time{}
	default:
		if o.Unscheduled.IsZero() {
			o.Unscheduled = now
		}
	}
}

// onNode reports whether the pod has reached its node: bound to it by the
// scheduler (PodScheduled True) or reported by it (a start time, container
// statuses: only the node writes them). A nodeName alone is not enough: a
// pod created with one has reached nothing until that node reports it.
func onNode(pod *corev1.Pod) bool {
	if cond := podCondition(pod, corev1.PodScheduled); cond != nil && cond.Status == corev1.ConditionTrue {
		return true
	}
	return pod.Status.StartTime != nil || len(pod.Status.ContainerStatuses) > 0 || len(pod.Status.InitContainerStatuses) > 0
}

// schedulingGated reports whether the pod waits for its scheduling gates
// (the API server sets PodScheduled False, reason SchedulingGated, on a pod
// created with gates).
func schedulingGated(pod *corev1.Pod) bool {
	cond := podCondition(pod, corev1.PodScheduled)
	return cond != nil && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonSchedulingGated
}

// pendingSince is when the pod's wait for a node started: with obs, when
// the caller first saw it waiting; else the PodScheduled condition's last
// transition (cond, which may be nil), else the pod's creation.
func pendingSince(pod *corev1.Pod, cond *corev1.PodCondition, obs *Observations) time.Time {
	if obs != nil {
		return obs.Unscheduled
	}
	if cond != nil && !cond.LastTransitionTime.IsZero() {
		return cond.LastTransitionTime.Time
	}
	return pod.CreationTimestamp.Time
}

// scheduledSince is when the pod reached its node, for StartTimeout: with
// obs, when the caller first saw it there; else the PodScheduled True
// condition's last transition, else the pod's start on its node (a pod
// created with a nodeName has no condition until its node reports it),
// else its creation.
func scheduledSince(pod *corev1.Pod, obs *Observations) time.Time {
	if obs != nil {
		return obs.Scheduled
	}
	if cond := podCondition(pod, corev1.PodScheduled); cond != nil && cond.Status == corev1.ConditionTrue && !cond.LastTransitionTime.IsZero() {
		return cond.LastTransitionTime.Time
	}
	if pod.Status.StartTime != nil && !pod.Status.StartTime.IsZero() {
		return pod.Status.StartTime.Time
	}
	return pod.CreationTimestamp.Time
}

// pullSince is when image pulls (and container creation) could have
// started, for ImagePullGrace and ConfigErrorGrace: with obs, when the
// caller first saw the pod on a node; else the pod's start on its node,
// else when it was scheduled, else its creation.
func pullSince(pod *corev1.Pod, obs *Observations) time.Time {
	if obs != nil {
		return obs.Scheduled
	}
	if pod.Status.StartTime != nil && !pod.Status.StartTime.IsZero() {
		return pod.Status.StartTime.Time
	}
	if cond := podCondition(pod, corev1.PodScheduled); cond != nil && cond.Status == corev1.ConditionTrue && !cond.LastTransitionTime.IsZero() {
		return cond.LastTransitionTime.Time
	}
	return pod.CreationTimestamp.Time
}
