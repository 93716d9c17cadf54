package main

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// statusLocked is the pod's status as the kubelet would report it. r.mu
// must be held.
func (r *podRuntime) statusLocked() corev1.PodStatus {
	pod := r.pod
	ip := r.p.cfg.address
	start := r.startTime
	s := corev1.PodStatus{
		HostIP:             ip,
		HostIPs:            []corev1.HostIP{{IP: ip}},
		PodIP:              ip,
		PodIPs:             []corev1.PodIP{{IP: ip}},
		StartTime:          &start,
		QOSClass:           pod.Status.QOSClass,
		ObservedGeneration: pod.Generation,
	}
	for _, c := range r.initCs {
		s.InitContainerStatuses = append(s.InitContainerStatuses, c.apiStatus())
	}
	for _, c := range r.mainCs {
		s.ContainerStatuses = append(s.ContainerStatuses, c.apiStatus())
	}
	// The phase is terminal only once every process is gone: after that,
	// virtual-kubelet writes no more status.
	initialized := false
	for _, c := range r.mainCs {
		initialized = initialized || c.runs > 0
	}
	s.Phase = podPhase(&pod.Spec, s.InitContainerStatuses, s.ContainerStatuses, r.finished, initialized)
	if !r.finished && (s.Phase == corev1.PodSucceeded || s.Phase == corev1.PodFailed) {
		s.Phase = corev1.PodPending
		for _, c := range r.mainCs {
			if c.runs > 0 {
				s.Phase = corev1.PodRunning
			}
		}
	}
	if r.finished && (r.stopping || r.lost) && s.Phase != corev1.PodSucceeded && s.Phase != corev1.PodFailed {
		// The kubelet's TerminatePod: a stopped pod ends Failed.
		s.Phase = corev1.PodFailed
	}
	if r.finished && r.stopReason == stopDeadline {
		s.Phase = corev1.PodFailed
		s.Reason = "DeadlineExceeded"
		s.Message = "Pod was active on the node longer than the specified deadline"
	}
	// Pods never leave a terminal phase.
	if p := pod.Status.Phase; p == corev1.PodSucceeded || p == corev1.PodFailed {
		s.Phase = p
		if s.Reason == "" {
			s.Reason, s.Message = pod.Status.Reason, pod.Status.Message
		}
	}

	ready := r.sandboxReady && !r.finished
	// The kubelet gives the False condition a reason.
	sandboxReason := ""
	if !ready {
		sandboxReason = "PodSandboxNotReady"
	}
	s.Conditions = []corev1.PodCondition{
		r.condition(corev1.PodReadyToStartContainers, boolStatus(ready), sandboxReason, ""),
		r.initializedCondition(&s),
	}
	cr := r.containersReadyCondition(&s)
	s.Conditions = append(s.Conditions, r.readyCondition(cr), cr,
		r.condition(corev1.PodScheduled, corev1.ConditionTrue, "", ""))
	return s
}

func boolStatus(b bool) corev1.ConditionStatus {
	if b {
		return corev1.ConditionTrue
	}
	return corev1.ConditionFalse
}

// condition builds a kubelet-owned condition, keeping its transition time
// while its status stays the same.
func (r *podRuntime) condition(t corev1.PodConditionType, status corev1.ConditionStatus, reason, msg string) corev1.PodCondition {
	st, ok := r.conds[t]
	if !ok || st.status != status {
		st = condState{status: status, since: metav1.Now()}
		r.conds[t] = st
	}
	return corev1.PodCondition{
		Type:               t,
		Status:             status,
		Reason:             reason,
		Message:            msg,
		LastTransitionTime: st.since,
		ObservedGeneration: r.pod.Generation,
	}
}

func (r *podRuntime) initializedCondition(s *corev1.PodStatus) corev1.PodCondition {
	if s.Phase == corev1.PodSucceeded {
		return r.condition(corev1.PodInitialized, corev1.ConditionTrue, "PodCompleted", "")
	}
	for _, cs := range s.ContainerStatuses {
		if cs.State.Running != nil || cs.State.Terminated != nil || cs.LastTerminationState.Terminated != nil {
			return r.condition(corev1.PodInitialized, corev1.ConditionTrue, "", "")
		}
	}
	var incomplete []string
	for i, cs := range s.InitContainerStatuses {
		done := cs.Ready
		if r.initCs[i].sidecar {
			done = cs.Started != nil && *cs.Started
		}
		if !done {
			incomplete = append(incomplete, cs.Name)
		}
	}
	if len(incomplete) > 0 {
		return r.condition(corev1.PodInitialized, corev1.ConditionFalse, "ContainersNotInitialized",
			fmt.Sprintf("containers with incomplete status: %s", incomplete))
	}
	return r.condition(corev1.PodInitialized, corev1.ConditionTrue, "", "")
}

func (r *podRuntime) containersReadyCondition(s *corev1.PodStatus) corev1.PodCondition {
	switch s.Phase {
	case corev1.PodSucceeded:
		return r.condition(corev1.ContainersReady, corev1.ConditionFalse, "PodCompleted", "")
	case corev1.PodFailed:
		return r.condition(corev1.ContainersReady, corev1.ConditionFalse, "PodFailed", "")
	}
	var unready []string
	for i, cs := range s.InitContainerStatuses {
		if r.initCs[i].sidecar && !cs.Ready {
			unready = append(unready, cs.Name)
		}
	}
	for _, cs := range s.ContainerStatuses {
		if !cs.Ready {
			unready = append(unready, cs.Name)
		}
	}
	if len(unready) > 0 {
		return r.condition(corev1.ContainersReady, corev1.ConditionFalse, "ContainersNotReady",
			fmt.Sprintf("containers with unready status: %s", unready))
	}
	return r.condition(corev1.ContainersReady, corev1.ConditionTrue, "", "")
}

func (r *podRuntime) readyCondition(containersReady corev1.PodCondition) corev1.PodCondition {
	if containersReady.Status != corev1.ConditionTrue {
		return r.condition(corev1.PodReady, containersReady.Status, containersReady.Reason, containersReady.Message)
	}
	var msgs []string
	for _, g := range r.pod.Spec.ReadinessGates {
		c := findCondition(r.pod.Status.Conditions, g.ConditionType)
		switch {
		case c == nil:
			msgs = append(msgs, fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", string(g.ConditionType)))
		case c.Status != corev1.ConditionTrue:
			msgs = append(msgs, fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but %v", string(g.ConditionType), c.Status))
		}
	}
	if len(msgs) > 0 {
		return r.condition(corev1.PodReady, corev1.ConditionFalse, "ReadinessGatesNotReady", strings.Join(msgs, ", "))
	}
	return r.condition(corev1.PodReady, corev1.ConditionTrue, "", "")
}

// apiStatus is the container's status. There are no probes: a running
// container is started and ready; an init container is ready once it has
// succeeded.
func (c *ctr) apiStatus() corev1.ContainerStatus {
	running := c.state.Running != nil
	cs := corev1.ContainerStatus{
		Name:                 c.spec.Name,
		State:                *c.state.DeepCopy(),
		LastTerminationState: *c.lastState.DeepCopy(),
		RestartCount:         c.restartCount,
		Image:                c.image.ref,
		ImageID:              c.image.id,
		ContainerID:          c.id,
		Started:              &running,
	}
	if c.isInit && !c.sidecar {
		cs.Ready = c.state.Terminated != nil && c.state.Terminated.ExitCode == 0
	} else {
		cs.Ready = running
	}
	return cs
}

// podPhase is the kubelet's getPhase: sidecars only keep a pod Pending
// until they have started, and their exit codes do not count.
func podPhase(spec *corev1.PodSpec, initStatuses, statuses []corev1.ContainerStatus, podIsTerminal, podHasInitialized bool) corev1.PodPhase {
	pendingInit, failedInit, pendingSidecars := 0, 0, 0
	var unknown, running, waiting, stopped, succeeded int
	for i, cs := range initStatuses {
		if c := spec.InitContainers[i]; c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			switch {
			case cs.State.Running != nil:
				if cs.Started == nil || !*cs.Started {
					pendingSidecars++
				}
				running++
			case cs.State.Terminated != nil:
			case cs.State.Waiting != nil:
				if cs.LastTerminationState.Terminated == nil {
					pendingSidecars++
					waiting++
				}
			default:
				pendingSidecars++
				unknown++
			}
			continue
		}
		switch {
		case cs.State.Running != nil:
			pendingInit++
		case cs.State.Terminated != nil:
			if cs.State.Terminated.ExitCode != 0 {
				failedInit++
			}
		case cs.State.Waiting != nil:
			if t := cs.LastTerminationState.Terminated; t != nil {
				if t.ExitCode != 0 {
					failedInit++
				}
			} else {
				pendingInit++
			}
		default:
			pendingInit++
		}
	}
	for _, cs := range statuses {
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil:
			if cs.LastTerminationState.Terminated != nil {
				stopped++
			} else {
				waiting++
			}
		default:
			unknown++
		}
	}
	if failedInit > 0 && spec.RestartPolicy == corev1.RestartPolicyNever {
		return corev1.PodFailed
	}
	switch {
	case pendingInit > 0, pendingSidecars > 0 && !podHasInitialized, waiting > 0:
		return corev1.PodPending
	case running > 0 && unknown == 0:
		return corev1.PodRunning
	case running == 0 && stopped > 0 && unknown == 0:
		if podIsTerminal {
			if stopped == succeeded {
				return corev1.PodSucceeded
			}
			return corev1.PodFailed
		}
		if spec.RestartPolicy == corev1.RestartPolicyAlways {
			return corev1.PodRunning
		}
		if stopped == succeeded {
			return corev1.PodSucceeded
		}
		if spec.RestartPolicy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
		return corev1.PodRunning
	}
	return corev1.PodPending
}
