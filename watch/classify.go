package watch

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubexec/kubexec"
)

// ClassifyOptions holds the grace periods of [Classify]. The zero value
// uses the defaults.
type ClassifyOptions struct {
	// ConfigErrorGrace is how long a container may wait in
	// CreateContainerConfigError or CreateContainerError (the kubelet
	// retries those: a Secret or ConfigMap created seconds after the pod,
	// by External Secrets or a CSI driver, is found at the next try)
	// before the attempt fails with ConfigError and the kubelet's message.
	// It is counted from the pod's start on its node (with [Observations]:
	// from when the caller first saw the pod on a node). A negative value
	// fails at once. Default: 2m.
	ConfigErrorGrace time.Duration
	// ImagePullGrace is how long a container may wait in ErrImagePull,
	// ImagePullBackOff or RegistryUnavailable (the kubelet retries those)
	// before the attempt fails with ImagePullError. It is counted from the
	// pod's start on its node (with [Observations]: from when the caller
	// first saw the pod on a node). A negative value fails at once.
	// Default: 3m.
	ImagePullGrace time.Duration
	// PendingTimeout is how long a pod may wait for a node before the
	// attempt fails with Unschedulable, as Airflow's
	// worker_pods_pending_timeout: while the scheduler marks it
	// unschedulable (PodScheduled False, reason Unschedulable) or keeps
	// failing on it (PodScheduled False with another reason), counted from
	// the condition's last transition; and while no scheduler acts on it at
	// all (no PodScheduled condition: a schedulerName that no scheduler
	// answers to, kube-scheduler down) or the node its nodeName names does
	// not take it, counted from the pod's creation. A pod held by
	// scheduling gates waits for them without a limit. With
	// [Observations], every wait is counted from when the caller first saw
	// the pod waiting for a node instead. A negative value fails at once.
	// Default: 5m.
	PendingTimeout time.Duration
	// StartTimeout is how long a scheduled pod may stay Pending without any
	// container starting, while nothing else classifies it (containers
	// waiting in ContainerCreating or PodInitializing: a volume that
	// cannot be mounted, a missing ConfigMap or claim), before the attempt
	// fails with ConfigError instead of staying pending forever. It is
	// counted from the PodScheduled condition's last transition, else the
	// pod's start on its node (with [Observations]: from when the caller
	// first saw the pod on its node). A negative value fails at once.
	// Default: 10m.
	StartTimeout time.Duration
}

// Defaults of ClassifyOptions.
const (
	DefaultImagePullGrace   = 3 * time.Minute
	DefaultConfigErrorGrace = 2 * time.Minute
	DefaultPendingTimeout   = 5 * time.Minute
	DefaultStartTimeout     = 10 * time.Minute
)

func (o ClassifyOptions) withDefaults() ClassifyOptions {
	if o.ImagePullGrace == 0 {
		o.ImagePullGrace = DefaultImagePullGrace
	}
	if o.ConfigErrorGrace == 0 {
		o.ConfigErrorGrace = DefaultConfigErrorGrace
	}
	if o.PendingTimeout == 0 {
		o.PendingTimeout = DefaultPendingTimeout
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	return o
}

// Phase is where a pod is in its life, as far as the attempt is concerned.
// The zero Phase is not valid.
type Phase int

// The phases of a classified pod.
const (
	// PhasePending: no container of the pod has started yet (scheduling,
	// image pulls, volume mounts), and nothing has failed for good.
	PhasePending Phase = iota + 1
	// PhaseRunning: a container has started and the pod has not ended.
	PhaseRunning
	// PhaseTerminal: the attempt is over; [Classification.Reason] says why.
	PhaseTerminal
)

// String returns the phase's name, e.g. "running".
func (p Phase) String() string {
	switch p {
	case PhasePending:
		return "pending"
	case PhaseRunning:
		return "running"
	case PhaseTerminal:
		return "terminal"
	}
	return fmt.Sprintf("Phase(%d)", int(p))
}

// Classification is what a pod says about its attempt: see [Classify].
type Classification struct {
	// Phase is pending, running or terminal.
	Phase Phase
	// Reason says why the attempt ended; set only when Phase is
	// PhaseTerminal.
	Reason kubexec.Reason
	// Retryable is Reason.Retryable(): whether another attempt is likely
	// to help. Always false before the attempt ends.
	Retryable bool
	// Container names the container that decided the outcome (the one that
	// failed, was OOM killed, or could not pull its image; the main
	// container on success). Empty when no container was involved.
	Container string
	// ExitCode is Container's exit code; meaningful only when
	// ContainerExited.
	ExitCode int32
	// ContainerExited: Container terminated (it exited, was killed by a
	// signal, or its process could not start, as StartError with code
	// 128), and ExitCode is the code the kubelet reported. False when no
	// container terminated, when Container waits (it never ran), and when
	// its node lost it (ContainerStatusUnknown: the code is the kubelet's
	// guess). The executor copies it to kubexec.Result.ContainerExited.
	ContainerExited bool
	// Message says, for a person, what happened to this pod and what to do
	// about it, with the details Kubernetes gave (the termination message,
	// the scheduler's or kubelet's message). For a pod that is still
	// pending or running it says what the pod is waiting for, if anything.
	// [kubexec.Reason.Hint] adds the general advice for the reason.
	Message string
	// StartedAt is when the main container (kubexec.MainContainer: the
	// one kubectl's default-container annotation names, else the first)
	// started; zero if it never did.
	StartedAt time.Time
	// FinishedAt is when the attempt ended: Container's finish time, else
	// the latest finish time of the containers if they all terminated, else
	// now. Set only when Phase is PhaseTerminal; never before StartedAt.
	FinishedAt time.Time
	// RecheckAt, for an attempt that is not over, is when a grace period
	// or timeout of opts runs out, after which Classify may end the attempt
	// with nothing about the pod changed (an image still not pulled, a pod
	// still unschedulable). Zero when only a change of the pod can change
	// the classification: a caller that classifies its pods again as time
	// passes needs to look only at those with RecheckAt set, once it has
	// passed.
	RecheckAt time.Time
}

// Terminal reports whether the attempt is over.
func (c Classification) Terminal() bool { return c.Phase == PhaseTerminal }

// Pod status reasons and waiting reasons that classification reads. The
// kubelet's and controllers' values; not all have constants in k8s.io/api.
const (
	podReasonDeadlineExceeded      = "DeadlineExceeded"
	podReasonEvicted               = "Evicted"
	podReasonNodeLost              = "NodeLost"
	podReasonNodeShutdown          = "Terminated"
	podReasonNodeShutdownRefused   = "NodeShutdown"
	podReasonNodeShutdownLegacy    = "Shutdown"
	podReasonProviderFailed        = "ProviderFailed"
	podReasonPreempting            = "Preempting"
	podReasonUnexpectedAdmission   = "UnexpectedAdmissionError"
	podReasonNodeAffinity          = "NodeAffinity"
	podReasonOutOfPrefix           = "OutOf"
	podReasonDeletionByTaintMgr    = "DeletionByTaintManager"
	podReasonDeletionByPodGC       = "DeletionByPodGC"
	containerReasonOOMKilled       = "OOMKilled"
	containerReasonStatusUnknown   = "ContainerStatusUnknown"
	waitingErrImagePull            = "ErrImagePull"
	waitingImagePullBackOff        = "ImagePullBackOff"
	waitingRegistryUnavailable     = "RegistryUnavailable"
	waitingInvalidImageName        = "InvalidImageName"
	waitingErrImageNeverPull       = "ErrImageNeverPull"
	waitingImageInspectError       = "ImageInspectError"
	waitingSignatureValidation     = "SignatureValidationFailed"
	waitingCreateContainerConfig   = "CreateContainerConfigError"
	waitingCreateContainerError    = "CreateContainerError"
	maxTerminationMessageInMessage = 1024
)

// waitingRule says how a container waiting reason is classified.
type waitingRule struct {
	reason kubexec.Reason
	// graced: the kubelet retries, so the attempt fails only after a
	// grace period (ClassifyOptions.ImagePullGrace for image pulls,
	// ConfigErrorGrace for the rest).
	graced bool
	// advice is appended to the message.
	advice string
}

var waitingRules = map[string]waitingRule{
	waitingErrImagePull:        {reason: kubexec.ReasonImagePullError, graced: true, advice: "check the image name and tag, that the image exists, and the pod's imagePullSecrets"},
	waitingImagePullBackOff:    {reason: kubexec.ReasonImagePullError, graced: true, advice: "check the image name and tag, that the image exists, and the pod's imagePullSecrets"},
	waitingRegistryUnavailable: {reason: kubexec.ReasonImagePullError, graced: true, advice: "check that the registry is reachable from the nodes"},
	waitingInvalidImageName:    {reason: kubexec.ReasonImagePullError, advice: "fix the image reference"},
	waitingErrImageNeverPull:   {reason: kubexec.ReasonImagePullError, advice: "the image is not on the node and imagePullPolicy is Never: preload it or change the policy"},
	waitingImageInspectError:   {reason: kubexec.ReasonImagePullError, advice: "the image on the node cannot be read: check the image and the node's container runtime"},
	waitingSignatureValidation: {reason: kubexec.ReasonImagePullError, advice: "the image's signature was refused: use a signed image"},
	waitingCreateContainerConfig: {reason: kubexec.ReasonConfigError, graced: true, advice: "check that the Secrets and ConfigMaps the container references exist and hold the keys it uses; " +
		"if the image would run as root under runAsNonRoot (podtemplate's default template requires a non-root user), " +
		"set spec.securityContext.runAsUser to a non-zero uid in the pod template or the task's override"},
	waitingCreateContainerError: {reason: kubexec.ReasonConfigError, graced: true, advice: "check the container's command, volumes and security context"},
}

// Classify says where pod's attempt is: pending, running, or terminal with
// a [kubexec.Reason]. It is a pure function of the pod, now and opts; it
// reads only what [Trim] keeps. The table in the package documentation
// lists every rule. A nil pod is classified as by [ClassifyDeleted].
//
// Its timeouts compare now with timestamps that other machines wrote (see
// [Observations]); a caller that classifies a pod repeatedly over its life
// should use [ClassifyObserved].
func Classify(pod *corev1.Pod, now time.Time, opts ClassifyOptions) Classification {
	return classify(pod, now, opts, nil)
}

// classify is Classify, with the timeouts counted from obs when it is not
// nil.
func classify(pod *corev1.Pod, now time.Time, opts ClassifyOptions, obs *Observations) Classification {
	if pod == nil {
		return ClassifyDeleted(nil, now)
	}
	opts = opts.withDefaults()
	switch pod.Status.Phase {
	case corev1.PodSucceeded:
		return classifySucceeded(pod, now)
	case corev1.PodFailed:
		return classifyFailed(pod, now)
	}
	if pod.DeletionTimestamp != nil {
		return ClassifyDeleted(pod, now)
	}
	if pod.Status.Reason == podReasonProviderFailed {
		// A virtual kubelet's provider could not create (or update) the
		// pod; with restartPolicy Never the pod is Failed, else it stays
		// Pending with nothing that ends it.
		c, _ := classifyDisruption(pod, now)
		return c
	}
	if c, ok := classifyWaiting(pod, now, opts, obs); ok {
		return c
	}
	if pod.Status.Phase == corev1.PodRunning {
		return Classification{Phase: PhaseRunning, StartedAt: mainStartedAt(pod)}
	}
	if pod.Status.Phase == corev1.PodUnknown {
		return Classification{Phase: PhaseRunning, StartedAt: mainStartedAt(pod),
			Message: "the pod's state is unknown: its node has stopped reporting; " + reasonAndMessage(pod.Status.Reason, pod.Status.Message)}
	}
	return classifyPending(pod, now, opts, obs)
}

// ClassifyDeleted classifies the attempt of a pod that is being deleted
// (it has a deletionTimestamp) or has vanished; pod is its last known state,
// or nil when even that is unknown. A pod that had already succeeded keeps
// that outcome, and so does one that failed by itself: a container failed
// before the deletion was requested. A pod that failed only because the
// deletion stopped its containers (the node marks it Failed once they are
// killed, which an executor that was not running, or a watch that relisted,
// sees before it sees the deletion) is classified by cause. Otherwise the attempt failed with
// ReasonDisrupted when the pod carries the DisruptionTarget condition or
// its node was lost (eviction, preemption, taint manager, pod garbage
// collector), and with ReasonDeletedExternally in every other case. Both
// are retryable.
func ClassifyDeleted(pod *corev1.Pod, now time.Time) Classification {
	if pod == nil {
		return terminal(kubexec.ReasonDeletedExternally, now, Classification{
			Message: "the pod vanished and its last state is unknown; find out what deletes pods in its namespace",
		})
	}
	switch {
	case pod.Status.Phase == corev1.PodSucceeded:
		return classifySucceeded(pod, now)
	case pod.Status.Phase == corev1.PodFailed && !killedByDeletion(pod):
		return classifyFailed(pod, now)
	}
	if c, ok := classifyDisruption(pod, now); ok {
		return c
	}
	state := "before it started"
	if !mainStartedAt(pod).IsZero() {
		state = "while it was running"
	}
	how := "was deleted"
	if pod.DeletionTimestamp == nil {
		how = "vanished (deleted while the watch was down)"
	}
	c := Classification{
		StartedAt: mainStartedAt(pod),
		Message: fmt.Sprintf("the pod %s %s, by someone other than kubexec; "+
			"find out what deletes pods in namespace %q (a person, a controller, the namespace's deletion)", how, state, pod.Namespace),
	}
	c.FinishedAt = endedAt(pod)
	return terminal(kubexec.ReasonDeletedExternally, now, c)
}

// killedByDeletion reports whether a failed pod failed because it was
// deleted rather than by itself: no container (sidecars aside: the kubelet
// stops them last, so their exits are a consequence) failed before the
// deletion was requested. The request time is the deletionTimestamp minus
// deletionGracePeriodSeconds (a shorter grace given later moves both by the
// same amount, so their difference stays the time of the first request).
// Timestamps have a resolution of one second, so a container that failed
// by itself in the same second as the request counts as killed by it. A
// terminated container with no finish time failed by itself unless its
// exit code is that of SIGTERM or SIGKILL.
func killedByDeletion(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp == nil {
		return false
	}
	requested := pod.DeletionTimestamp.Time
	if g := pod.DeletionGracePeriodSeconds; g != nil {
		requested = requested.Add(-time.Duration(*g) * time.Second)
	}
	requested = requested.Truncate(time.Second)
	for _, ref := range orderedStatuses(pod) {
		t := ref.status.State.Terminated
		if ref.kind == "sidecar container" || t == nil || t.ExitCode == 0 {
			continue
		}
		switch {
		case t.FinishedAt.IsZero():
			if t.ExitCode != exitSIGTERM && t.ExitCode != exitSIGKILL {
				return false
			}
		case t.FinishedAt.Time.Truncate(time.Second).Before(requested):
			return false
		}
	}
	return true
}

// Exit codes of a container stopped by a signal (128 + the signal).
const (
	exitSIGTERM = 143
	exitSIGKILL = 137
	// signalKILL is SIGKILL's number, in a terminated state's Signal.
	signalKILL = 9
)

// classifySucceeded: every container exited 0. The main container decides.
func classifySucceeded(pod *corev1.Pod, now time.Time) Classification {
	c := Classification{StartedAt: mainStartedAt(pod), Message: "the pod succeeded"}
	if main := mainContainer(pod); main != nil {
		c.Container = main.Name
		if t := terminatedOf(main); t != nil {
			c.ExitCode, c.ContainerExited = t.ExitCode, true
			c.FinishedAt = t.FinishedAt.Time
		}
	}
	if c.FinishedAt.IsZero() {
		c.FinishedAt = endedAt(pod)
	}
	return terminal(kubexec.ReasonSucceeded, now, c)
}

// classifyFailed: the pod reached phase Failed. Deadline and disruption are
// decided by the pod's own status (they kill the containers, whose exit
// codes then say nothing about the task); then the containers are read.
func classifyFailed(pod *corev1.Pod, now time.Time) Classification {
	base := Classification{StartedAt: mainStartedAt(pod), FinishedAt: endedAt(pod)}
	if pod.Status.Reason == podReasonDeadlineExceeded {
		base.Message = "the pod ran longer than its activeDeadlineSeconds and was stopped: " +
			reasonAndMessage(pod.Status.Reason, pod.Status.Message) + "; raise the deadline or make the task faster"
		return terminal(kubexec.ReasonDeadlineExceeded, now, withMainExit(pod, base))
	}
	if c, ok := classifyDisruption(pod, now); ok {
		return c
	}
	if ref := failedContainer(pod); ref != nil {
		t := ref.state
		c := base
		if t.Reason == containerReasonStatusUnknown {
			// The kubelet lost the container: its node died or restarted
			// under it. What the task did is unknown.
			c.Container, c.ExitCode = ref.name, t.ExitCode
			c.Message = fmt.Sprintf("%s %q was lost with its node (%s); a retry will likely succeed",
				ref.kind, ref.name, reasonAndMessage(t.Reason, t.Message))
			return terminal(kubexec.ReasonDisrupted, now, c)
		}
		c.Container = ref.name
		c.ExitCode, c.ContainerExited = t.ExitCode, true
		c.FinishedAt = t.FinishedAt.Time
		if t.Reason == containerReasonOOMKilled {
			c.Message = fmt.Sprintf("%s %q was killed for exceeding its memory limit (OOMKilled, exit code %d); "+
				"raise its resources.limits.memory or reduce its memory use", ref.kind, ref.name, t.ExitCode)
			return terminal(kubexec.ReasonOOMKilled, now, c)
		}
		c.Message = fmt.Sprintf("%s %q exited with code %d", ref.kind, ref.name, t.ExitCode)
		if t.Signal != 0 {
			c.Message += fmt.Sprintf(" (signal %d)", t.Signal)
		}
		if t.Reason != "" && t.Reason != corev1.PodReasonError {
			c.Message += " (" + t.Reason + ")"
		}
		if msg := strings.TrimSpace(t.Message); msg != "" {
			c.Message += ": " + truncate(msg, maxTerminationMessageInMessage)
		}
		if t.ExitCode == exitSIGKILL || t.Signal == signalKILL {
			// Most often the kernel's OOM killer in the container's
			// cgroup, which the kubelet does not always see: it then
			// reports reason Error with exit code 137, and only the
			// SIGKILL is known.
			c.Message += "; it was killed with SIGKILL, most often by the kernel's OOM killer for exceeding its memory limit " +
				"although Kubernetes did not report OOMKilled: check the container's memory use against its " +
				"resources.limits.memory and raise the limit or reduce its memory use (a container without a memory " +
				"limit is killed when its node runs out of memory); read the task's log for another cause"
			return terminal(kubexec.ReasonFailed, now, c)
		}
		c.Message += "; read the task's log for the error"
		return terminal(kubexec.ReasonFailed, now, c)
	}
	// Failed without a failed container: the kubelet gave up on the pod
	// for a reason of its own. Say what it said.
	base.Message = "the pod failed before any container exited with an error: " +
		reasonAndMessage(pod.Status.Reason, pod.Status.Message) + "; see the pod's events (kubectl describe pod) for details"
	if pod.Status.Reason == "" && pod.Status.Message == "" {
		base.Message = "the pod failed and Kubernetes recorded neither a container exit code nor a reason; " +
			"see the pod's events (kubectl describe pod) and the node's kubelet log"
	}
	return terminal(kubexec.ReasonFailed, now, base)
}

// classifyDisruption recognises a pod stopped by the platform: the
// DisruptionTarget condition (preemption, eviction API, taint manager, pod
// GC, kubelet node-pressure eviction or shutdown), or a status reason of a
// kubelet eviction, node shutdown, lost node or node admission refusal.
func classifyDisruption(pod *corev1.Pod, now time.Time) (Classification, bool) {
	base := Classification{StartedAt: mainStartedAt(pod), FinishedAt: endedAt(pod)}
	for _, cond := range pod.Status.Conditions {
		if cond.Type != corev1.DisruptionTarget || cond.Status != corev1.ConditionTrue {
			continue
		}
		what := "was disrupted"
		switch cond.Reason {
		case corev1.PodReasonPreemptionByScheduler:
			what = "was preempted by the scheduler to make room for a higher-priority pod"
		case "EvictionByEvictionAPI":
			what = "was evicted through the Eviction API (for example a node drain)"
		case podReasonDeletionByTaintMgr:
			what = "was deleted by the taint manager: its node became unreachable or was tainted NoExecute"
		case podReasonDeletionByPodGC:
			what = "was deleted by the pod garbage collector: its node is gone"
		case corev1.PodReasonTerminationByKubelet:
			what = "was stopped by the kubelet (node-pressure eviction or node shutdown)"
		}
		base.Message = "the pod " + what + ": " + reasonAndMessage(cond.Reason, cond.Message) +
			"; a retry will likely succeed"
		return terminal(kubexec.ReasonDisrupted, now, base), true
	}
	what, advice := "", "a retry will likely succeed"
	switch r := pod.Status.Reason; {
	case r == podReasonEvicted:
		what = "was evicted by the kubelet (node pressure)"
	case r == podReasonPreempting:
		what = "was preempted by the kubelet for a critical pod"
	case r == podReasonNodeLost:
		what = "was lost with its node"
	case r == podReasonNodeShutdown, r == podReasonNodeShutdownLegacy:
		what = "was stopped because its node shut down"
	case r == podReasonNodeShutdownRefused:
		what = "was refused by the node it was scheduled to, which is shutting down"
	case r == podReasonProviderFailed:
		what = fmt.Sprintf("could not be run by the provider of its virtual node %q (a virtual kubelet)", pod.Spec.NodeName)
		advice = "check the virtual kubelet's log and the backend it runs pods on (its capacity, quotas, credentials " +
			"and whether it supports the pod's spec); a retry will likely succeed once the provider works"
	case r == podReasonUnexpectedAdmission, r == podReasonNodeAffinity, strings.HasPrefix(r, podReasonOutOfPrefix):
		what = "was refused by the node it was scheduled to"
	default:
		return Classification{}, false
	}
	base.Message = "the pod " + what + ": " + reasonAndMessage(pod.Status.Reason, pod.Status.Message) + "; " + advice
	return terminal(kubexec.ReasonDisrupted, now, base), true
}

// classifyWaiting finds the first container (init containers first) that
// waits for a reason that will not resolve by itself.
func classifyWaiting(pod *corev1.Pod, now time.Time, opts ClassifyOptions, obs *Observations) (Classification, bool) {
	for _, ref := range orderedStatuses(pod) {
		w := ref.status.State.Waiting
		if w == nil {
			continue
		}
		rule, ok := waitingRules[w.Reason]
		if !ok {
			continue
		}
		what := fmt.Sprintf("%s %q is waiting: %s", ref.kind, ref.name, reasonAndMessage(w.Reason, w.Message))
		if img := ref.status.Image; img != "" && rule.reason == kubexec.ReasonImagePullError {
			what = fmt.Sprintf("%s %q cannot get its image %q: %s", ref.kind, ref.name, img, reasonAndMessage(w.Reason, w.Message))
		}
		if rule.graced {
			grace := opts.ImagePullGrace
			if rule.reason == kubexec.ReasonConfigError {
				grace = opts.ConfigErrorGrace
			}
			since := pullSince(pod, obs)
			if waited := now.Sub(since); since.IsZero() || waited < grace {
				phase := PhasePending
				if pod.Status.Phase == corev1.PodRunning {
					phase = PhaseRunning
				}
				c := Classification{Phase: phase, Container: ref.name, StartedAt: mainStartedAt(pod),
					Message: fmt.Sprintf("%s; the attempt fails if this lasts %s", what, grace)}
				if !since.IsZero() {
					c.RecheckAt = since.Add(grace)
				}
				return c, true
			}
			what += fmt.Sprintf(" (for more than %s)", grace)
		}
		return terminal(rule.reason, now, Classification{
			Container: ref.name,
			StartedAt: mainStartedAt(pod),
			Message:   what + "; " + rule.advice,
		}), true
	}
	return Classification{}, false
}

// classifyNotStarted classifies a pod on its node that nothing else
// classified: it fails once it has waited StartTimeout with no container
// ever started.
func classifyNotStarted(pod *corev1.Pod, now time.Time, opts ClassifyOptions, obs *Observations) Classification {
	c := Classification{Phase: PhasePending}
	waiting := ""
	for _, ref := range orderedStatuses(pod) {
		st := ref.status
		if st.State.Running != nil || st.State.Terminated != nil || st.LastTerminationState.Terminated != nil {
			return c // something started: not stuck before its start
		}
		if w := st.State.Waiting; w != nil && waiting == "" {
			waiting = fmt.Sprintf("%s %q is waiting: %s", ref.kind, ref.name, reasonAndMessage(w.Reason, w.Message))
		}
	}
	if waiting == "" {
		waiting = "no container has started"
	}
	since := scheduledSince(pod, obs)
	if since.IsZero() || now.Sub(since) < opts.StartTimeout {
		c.Message = fmt.Sprintf("the pod is on node %s; %s; the attempt fails if no container starts within %s",
			pod.Spec.NodeName, waiting, opts.StartTimeout)
		if !since.IsZero() {
			c.RecheckAt = since.Add(opts.StartTimeout)
		}
		return c
	}
	return terminal(kubexec.ReasonConfigError, now, Classification{
		Message: fmt.Sprintf("no container of the pod started within %s of it being scheduled on node %s: %s; "+
			"check the pod's volumes (ConfigMaps, Secrets, claims) and the node's Events for the pod", opts.StartTimeout, pod.Spec.NodeName, waiting),
	})
}

// classifyPending: the pod has not started. A pod on its node is left to
// classifyNotStarted. A pod that waits for a node fails once it has waited
// PendingTimeout: marked unschedulable, refused by the scheduler for
// another reason, never looked at by any scheduler, or named a node that
// never took it. A scheduling gate is deliberate and never times out.
func classifyPending(pod *corev1.Pod, now time.Time, opts ClassifyOptions, obs *Observations) Classification {
	if onNode(pod) {
		return classifyNotStarted(pod, now, opts, obs)
	}
	c := Classification{Phase: PhasePending}
	cond := podCondition(pod, corev1.PodScheduled)
	if schedulingGated(pod) {
		c.Message = "the pod waits for its scheduling gates to be removed: " + reasonAndMessage(cond.Reason, cond.Message)
		return c
	}
	var waiting, advice string
	switch {
	case cond != nil && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable:
		waiting = "no node can run the pod: " + reasonAndMessage(cond.Reason, cond.Message)
		advice = "compare the pod's resource requests with node capacity and check its node selector, affinity and tolerations"
	case cond != nil && cond.Status == corev1.ConditionFalse:
		waiting = fmt.Sprintf("the scheduler %q has not placed the pod: %s", schedulerName(pod), reasonAndMessage(cond.Reason, cond.Message))
		advice = "check the scheduler's log and the pod's events (kubectl describe pod)"
	case pod.Spec.NodeName != "":
		// Created with a nodeName: no scheduler is involved; the node has
		// not reported the pod.
		waiting = fmt.Sprintf("the pod names node %q in its nodeName and waits for that node to take it", pod.Spec.NodeName)
		advice = fmt.Sprintf("check that node %q exists and is Ready (kubectl describe node %s), and the pod's events (kubectl describe pod)",
			pod.Spec.NodeName, pod.Spec.NodeName)
	default:
		// No PodScheduled condition: no scheduler has looked at the pod
		// yet, which lasts a moment unless none ever will.
		waiting = fmt.Sprintf("the pod waits for scheduler %q to place it", schedulerName(pod))
	}
	since := pendingSince(pod, cond, obs)
	if since.IsZero() || now.Sub(since) < opts.PendingTimeout {
		c.Message = fmt.Sprintf("%s; the attempt fails if this lasts %s", waiting, opts.PendingTimeout)
		if !since.IsZero() {
			c.RecheckAt = since.Add(opts.PendingTimeout)
		}
		return c
	}
	msg := fmt.Sprintf("%s (for more than %s); %s", waiting, opts.PendingTimeout, advice)
	if cond == nil && pod.Spec.NodeName == "" {
		msg = fmt.Sprintf("no scheduler acted on the pod for more than %s (it has no PodScheduled condition; its schedulerName is %q); "+
			"check that a scheduler of that name runs in the cluster (a wrong schedulerName in the pod template or the task's "+
			"override is the usual cause), that kube-scheduler is running and healthy, and the pod's events (kubectl describe pod)",
			opts.PendingTimeout, schedulerName(pod))
	}
	return terminal(kubexec.ReasonUnschedulable, now, Classification{Message: msg})
}

// schedulerName is the pod's scheduler: its schedulerName, or the default
// scheduler's name when it has none.
func schedulerName(pod *corev1.Pod) string {
	if pod.Spec.SchedulerName == "" {
		return corev1.DefaultSchedulerName
	}
	return pod.Spec.SchedulerName
}

// terminal completes c as a terminal classification for reason.
func terminal(reason kubexec.Reason, now time.Time, c Classification) Classification {
	c.Phase = PhaseTerminal
	c.Reason = reason
	c.Retryable = reason.Retryable()
	if c.FinishedAt.IsZero() {
		c.FinishedAt = now
	}
	if !c.StartedAt.IsZero() && c.FinishedAt.Before(c.StartedAt) {
		c.FinishedAt = c.StartedAt
	}
	return c
}

// withMainExit adds the main container's exit, if it terminated.
func withMainExit(pod *corev1.Pod, c Classification) Classification {
	if main := mainContainer(pod); main != nil {
		if t := terminatedOf(main); t != nil {
			c.Container = main.Name
			c.ExitCode, c.ContainerExited = t.ExitCode, true
			c.FinishedAt = t.FinishedAt.Time
		}
	}
	return c
}

// statusRef is one container status with its kind, in a defined order.
type statusRef struct {
	kind   string // "init container", "container" or "sidecar container"
	name   string
	status *corev1.ContainerStatus
}

// terminatedRef is one terminated state of a container.
type terminatedRef struct {
	kind  string
	name  string
	state *corev1.ContainerStateTerminated
}

// orderedStatuses returns the container statuses in the order that decides
// blame: regular init containers, then the pod's containers, then sidecars
// (restartable init containers, which the kubelet stops last and whose exit
// codes are a consequence rather than a cause). Within each group statuses
// follow the spec's order when the spec names the containers.
func orderedStatuses(pod *corev1.Pod) []statusRef {
	sidecars := map[string]bool{}
	initOrder := map[string]int{}
	for i, c := range pod.Spec.InitContainers {
		initOrder[c.Name] = i
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars[c.Name] = true
		}
	}
	order := map[string]int{}
	for i, c := range pod.Spec.Containers {
		order[c.Name] = i
	}
	var inits, mains, sides []statusRef
	for i := range pod.Status.InitContainerStatuses {
		s := &pod.Status.InitContainerStatuses[i]
		if sidecars[s.Name] {
			sides = append(sides, statusRef{"sidecar container", s.Name, s})
		} else {
			inits = append(inits, statusRef{"init container", s.Name, s})
		}
	}
	for i := range pod.Status.ContainerStatuses {
		s := &pod.Status.ContainerStatuses[i]
		mains = append(mains, statusRef{"container", s.Name, s})
	}
	sortByOrder(inits, initOrder)
	sortByOrder(sides, initOrder)
	sortByOrder(mains, order)
	return append(append(inits, mains...), sides...)
}

// sortByOrder sorts refs stably by their index in order; names not in
// order keep their place after the known ones.
func sortByOrder(refs []statusRef, order map[string]int) {
	rank := func(r statusRef) int {
		if i, ok := order[r.name]; ok {
			return i
		}
		return len(order)
	}
	// Insertion sort: a pod has a handful of containers.
	for i := 1; i < len(refs); i++ {
		for j := i; j > 0 && rank(refs[j]) < rank(refs[j-1]); j-- {
			refs[j], refs[j-1] = refs[j-1], refs[j]
		}
	}
}

// terminatedOf returns the container's current terminated state, or the
// last one if it has restarted since.
func terminatedOf(s *corev1.ContainerStatus) *corev1.ContainerStateTerminated {
	if s.State.Terminated != nil {
		return s.State.Terminated
	}
	return s.LastTerminationState.Terminated
}

// failedContainer picks the container to blame for a failed pod: the first
// one (in orderedStatuses order) killed for memory, else the first one that
// exited with a non-zero code.
func failedContainer(pod *corev1.Pod) *terminatedRef {
	var first *terminatedRef
	for _, ref := range orderedStatuses(pod) {
		t := terminatedOf(ref.status)
		if t == nil {
			continue
		}
		if t.Reason == containerReasonOOMKilled {
			return &terminatedRef{ref.kind, ref.name, t}
		}
		if t.ExitCode != 0 && first == nil {
			first = &terminatedRef{ref.kind, ref.name, t}
		}
	}
	return first
}

// endedAt is when the pod's containers ended: the latest finish time of
// any container, provided every container of the spec has terminated (and
// none is running again); zero otherwise.
func endedAt(pod *corev1.Pod) time.Time {
	var latest time.Time
	for _, s := range pod.Status.ContainerStatuses {
		if s.State.Terminated == nil {
			return time.Time{}
		}
	}
	if len(pod.Status.ContainerStatuses) < len(pod.Spec.Containers) {
		return time.Time{}
	}
	for _, ref := range orderedStatuses(pod) {
		if t := terminatedOf(ref.status); t != nil && t.FinishedAt.After(latest) {
			latest = t.FinishedAt.Time
		}
	}
	return latest
}

// mainContainer returns the status of the main container
// (kubexec.MainContainer), or the first status when the spec is empty.
func mainContainer(pod *corev1.Pod) *corev1.ContainerStatus {
	statuses := pod.Status.ContainerStatuses
	if i := kubexec.MainContainer(pod); i >= 0 {
		for j := range statuses {
			if statuses[j].Name == pod.Spec.Containers[i].Name {
				return &statuses[j]
			}
		}
		return nil
	}
	if len(statuses) > 0 {
		return &statuses[0]
	}
	return nil
}

// mainStartedAt is when the main container started, or zero.
func mainStartedAt(pod *corev1.Pod) time.Time {
	main := mainContainer(pod)
	if main == nil {
		return time.Time{}
	}
	switch {
	case main.State.Running != nil:
		// After a restart, the first start is in the last termination.
		if t := startedAt(main.LastTerminationState.Terminated); !t.IsZero() {
			return t
		}
		return main.State.Running.StartedAt.Time
	case main.State.Terminated != nil:
		if t := startedAt(main.LastTerminationState.Terminated); !t.IsZero() {
			return t
		}
		return startedAt(main.State.Terminated)
	}
	return startedAt(main.LastTerminationState.Terminated)
}

// startedAt is when a terminated container started, or zero if it never
// did: the kubelet reports a container whose process could not start
// (StartError) with startedAt 1970-01-01T00:00:00Z, the CRI's zero time.
func startedAt(t *corev1.ContainerStateTerminated) time.Time {
	if t == nil || t.StartedAt.Unix() <= 0 {
		return time.Time{}
	}
	return t.StartedAt.Time
}

func podCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// reasonAndMessage formats a Kubernetes reason and message for a person,
// never as "None" or an empty string.
func reasonAndMessage(reason, message string) string {
	message = strings.TrimSpace(message)
	switch {
	case reason != "" && message != "":
		return reason + ": " + message
	case reason != "":
		return reason
	case message != "":
		return message
	}
	return "no reason given"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
