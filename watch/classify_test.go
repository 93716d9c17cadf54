package watch

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/podtest"
)

// t0 is when the test pods were created; now is when they are classified.
var (
	t0  = podtest.T0
	now = t0.Add(10 * time.Minute)
)

var (
	at      = podtest.At
	testPod = podtest.TestPod
	ranOK   = podtest.RanOK
)

func phase(ph corev1.PodPhase) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Status.Phase = ph }
}

// withScheduler sets the pod's schedulerName.
func withScheduler(name string) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.SchedulerName = name }
}

// boundTo sets the pod's nodeName.
func boundTo(node string) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.NodeName = node }
}

func started(d time.Duration) func(*corev1.Pod) {
	return func(p *corev1.Pod) { t := at(d); p.Status.StartTime = &t }
}

func podReason(reason, message string) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Status.Reason, p.Status.Message = reason, message }
}

func condition(t corev1.PodConditionType, s corev1.ConditionStatus, reason, message string, since time.Duration) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{
			Type: t, Status: s, Reason: reason, Message: message, LastTransitionTime: at(since),
		})
	}
}

func deleting(d time.Duration) func(*corev1.Pod) {
	return func(p *corev1.Pod) { t := at(d); p.DeletionTimestamp = &t }
}

// deletedWithGrace is a deletion requested at d with a grace period: the
// deletionTimestamp is d plus the grace.
func deletedWithGrace(d time.Duration, grace int64) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		t := at(d + time.Duration(grace)*time.Second)
		p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &t, &grace
	}
}

// status appends a container status; init selects the init statuses.
func status(init bool, s corev1.ContainerStatus) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if init {
			p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses, s)
		} else {
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, s)
		}
	}
}

func exited(name string, code int32, reason string, from, to time.Duration) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: code, Reason: reason, StartedAt: at(from), FinishedAt: at(to),
	}}}
}

func running(name string, from time.Duration) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, Started: new(true), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at(from)}}}
}

func waiting(name, image, reason, message string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, Image: image, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}}
}

type classifyCase struct {
	name string
	pod  *corev1.Pod
	opts ClassifyOptions
	now  time.Time // default: now

	phase     Phase
	reason    kubexec.Reason
	container string
	exitCode  int32
	// exited is ContainerExited: container terminated, with exitCode.
	exited bool
	// message holds substrings the message must contain.
	message    []string
	startedAt  time.Time
	finishedAt time.Time
}

func classifyCases() []classifyCase {
	minute := time.Minute
	return []classifyCase{
		{
			name:    "created, no status yet",
			pod:     testPod(),
			now:     t0.Add(time.Second),
			phase:   PhasePending,
			message: []string{`waits for scheduler "default-scheduler"`},
		},
		{
			name:      "running",
			pod:       testPod(phase(corev1.PodRunning), started(20*time.Second), ranOK),
			phase:     PhaseRunning,
			startedAt: t0.Add(minute),
		},
		{
			name: "succeeded: the main container decides",
			pod: testPod(phase(corev1.PodSucceeded), started(20*time.Second),
				status(true, exited("setup", 0, "Completed", 30*time.Second, 50*time.Second)),
				status(true, exited("proxy", 0, "Completed", 55*time.Second, 4*minute)),
				status(false, exited("base", 0, "Completed", minute, 3*minute)),
				status(false, exited("helper", 0, "Completed", minute, 2*minute))),
			phase: PhaseTerminal, reason: kubexec.ReasonSucceeded, container: "base", exited: true,
			startedAt: t0.Add(minute), finishedAt: t0.Add(3 * minute),
		},
		{
			name: "failed: the first non-zero container in spec order, not in status order",
			pod: testPod(phase(corev1.PodFailed),
				status(true, exited("setup", 0, "Completed", 0, 10*time.Second)),
				status(false, exited("helper", 3, "Error", minute, 2*minute)),
				status(false, exited("base", 1, "Error", minute, 3*minute))),
			phase: PhaseTerminal, reason: kubexec.ReasonFailed, container: "base", exitCode: 1, exited: true,
			message:   []string{`container "base" exited with code 1`, "read the task's log"},
			startedAt: t0.Add(minute), finishedAt: t0.Add(3 * minute),
		},
		{
			name: "failed: an init container is blamed before the containers",
			pod: testPod(phase(corev1.PodFailed),
				status(true, exited("setup", 2, "Error", 0, 10*time.Second)),
				status(false, waiting("base", "python:3.12", "PodInitializing", ""))),
			phase: PhaseTerminal, reason: kubexec.ReasonFailed, container: "setup", exitCode: 2, exited: true,
			message:    []string{`init container "setup" exited with code 2`},
			finishedAt: t0.Add(10 * time.Second),
		},
		{
			name: "failed: a sidecar stopped with the pod is blamed last",
			pod: testPod(phase(corev1.PodFailed),
				status(true, exited("setup", 0, "Completed", 0, 10*time.Second)),
				status(true, exited("proxy", 143, "Error", 20*time.Second, 3*minute)),
				status(false, exited("base", 1, "Error", minute, 2*minute))),
			phase: PhaseTerminal, reason: kubexec.ReasonFailed, container: "base", exitCode: 1, exited: true,
			startedAt: t0.Add(minute), finishedAt: t0.Add(2 * minute),
		},
		{
			name: "failed: the termination message is in the message, the signal too",
			pod: testPod(phase(corev1.PodFailed), status(false, corev1.ContainerStatus{Name: "base", State: corev1.ContainerState{
				Terminated: &corev1.ContainerStateTerminated{ExitCode: 134, Signal: 6, Reason: "Error", Message: "Traceback: KeyError 'x'\n",
					StartedAt: at(minute), FinishedAt: at(2 * minute)}}})),
			phase: PhaseTerminal, reason: kubexec.ReasonFailed, container: "base", exitCode: 134, exited: true,
			message:   []string{"exited with code 134 (signal 6): Traceback: KeyError 'x'"},
			startedAt: t0.Add(minute), finishedAt: t0.Add(2 * minute),
		},
		{
			name: "failed to start: the kubelet's startedAt of 1970 is no start",
			pod: testPod(phase(corev1.PodFailed), status(false, corev1.ContainerStatus{Name: "base", State: corev1.ContainerState{
				Terminated: &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError",
					Message:   `failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: "/no/such/binary": stat /no/such/binary: no such file or directory: unknown`,
					StartedAt: metav1.Unix(0, 0), FinishedAt: at(2 * minute)}}})),
			phase: PhaseTerminal, reason: kubexec.ReasonFailed, container: "base", exitCode: 128, exited: true,
			message:    []string{"exited with code 128", "/no/such/binary"},
			finishedAt: t0.Add(2 * minute),
		},
		{
			name: "failed: a restarted container is judged by its last termination",
			pod: testPod(phase(corev1.PodFailed), status(false, corev1.ContainerStatus{Name: "base", RestartCount: 1,
				State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 7, Reason: "Error", StartedAt: at(2 * minute), FinishedAt: at(3 * minute)}}})),
			phase: PhaseTerminal, reason: kubexec.ReasonFailed, container: "base", exitCode: 7, exited: true,
			startedAt: t0.Add(2 * minute), finishedAt: t0.Add(3 * minute),
		},
		{
			name: "OOMKilled is named as such, exit code 137",
			pod: testPod(phase(corev1.PodFailed),
				status(false, exited("base", 137, "OOMKilled", minute, 2*minute)),
				status(false, exited("helper", 0, "Completed", minute, 2*minute))),
			phase: PhaseTerminal, reason: kubexec.ReasonOOMKilled, container: "base", exitCode: 137, exited: true,
			message:   []string{`container "base" was killed for exceeding its memory limit (OOMKilled, exit code 137)`, "resources.limits.memory"},
			startedAt: t0.Add(minute), finishedAt: t0.Add(2 * minute),
		},
		{
			name: "OOMKilled wins over an earlier container's non-zero exit it caused",
			pod: testPod(phase(corev1.PodFailed),
				status(false, exited("base", 1, "Error", minute, 2*minute)),
				status(false, exited("helper", 137, "OOMKilled", minute, 2*minute))),
			phase: PhaseTerminal, reason: kubexec.ReasonOOMKilled, container: "helper", exitCode: 137, exited: true,
			startedAt: t0.Add(minute), finishedAt: t0.Add(2 * minute),
		},
		{
			name: "failed because its node lost the container (ContainerStatusUnknown)",
			pod: testPod(phase(corev1.PodFailed), status(false, corev1.ContainerStatus{Name: "base", State: corev1.ContainerState{
				Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "ContainerStatusUnknown",
					Message: "The container could not be located when the pod was terminated", StartedAt: at(minute), FinishedAt: at(2 * minute)}}})),
			phase: PhaseTerminal, reason: kubexec.ReasonDisrupted, container: "base", exitCode: 137,
			message:   []string{"lost with its node", "could not be located"},
			startedAt: t0.Add(minute),
		},
		{
			name:  "failed without any container exit: the kubelet's reason, never None",
			pod:   testPod(phase(corev1.PodFailed), podReason("UnexpectedError", "something odd")),
			phase: PhaseTerminal, reason: kubexec.ReasonFailed,
			message: []string{"UnexpectedError: something odd", "kubectl describe pod"},
		},
		{
			name:  "failed with nothing at all recorded",
			pod:   testPod(phase(corev1.PodFailed)),
			phase: PhaseTerminal, reason: kubexec.ReasonFailed,
			message: []string{"neither a container exit code nor a reason"},
		},
		{
			name: "DeadlineExceeded, even though the kill made the container exit non-zero",
			pod: testPod(phase(corev1.PodFailed), podReason("DeadlineExceeded", "Pod was active on the node longer than the specified deadline"),
				status(false, exited("base", 137, "Error", minute, 5*minute))),
			phase: PhaseTerminal, reason: kubexec.ReasonDeadlineExceeded, container: "base", exitCode: 137, exited: true,
			message:   []string{"activeDeadlineSeconds", "longer than the specified deadline"},
			startedAt: t0.Add(minute), finishedAt: t0.Add(5 * minute),
		},
		{
			name: "preempted (DisruptionTarget), even though the container exited non-zero",
			pod: testPod(phase(corev1.PodFailed),
				condition(corev1.DisruptionTarget, corev1.ConditionTrue, "PreemptionByScheduler", "Preempted in order to admit critical pod", 4*minute),
				status(false, exited("base", 143, "Error", minute, 4*minute)),
				status(false, exited("helper", 143, "Error", minute, 3*minute))),
			phase: PhaseTerminal, reason: kubexec.ReasonDisrupted,
			message:   []string{"preempted", "PreemptionByScheduler: Preempted in order to admit critical pod"},
			startedAt: t0.Add(minute), finishedAt: t0.Add(4 * minute),
		},
		{
			name: "evicted through the Eviction API",
			pod: testPod(phase(corev1.PodFailed),
				condition(corev1.DisruptionTarget, corev1.ConditionTrue, "EvictionByEvictionAPI", "Eviction API: evicting", 4*minute)),
			phase: PhaseTerminal, reason: kubexec.ReasonDisrupted, message: []string{"Eviction API"},
		},
		{
			name: "deleted by the taint manager (node unreachable), still terminating",
			pod: testPod(phase(corev1.PodRunning), ranOK, deleting(6*minute),
				condition(corev1.DisruptionTarget, corev1.ConditionTrue, "DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint", 5*minute)),
			phase: PhaseTerminal, reason: kubexec.ReasonDisrupted, message: []string{"taint manager"},
			startedAt: t0.Add(minute),
		},
		{
			name:  "a DisruptionTarget condition that is False does not count",
			pod:   testPod(phase(corev1.PodRunning), ranOK, condition(corev1.DisruptionTarget, corev1.ConditionFalse, "PreemptionByScheduler", "", 4*minute)),
			phase: PhaseRunning, startedAt: t0.Add(minute),
		},
		{
			name:  "evicted by the kubelet for node pressure (reason Evicted)",
			pod:   testPod(phase(corev1.PodFailed), podReason("Evicted", "The node was low on resource: memory.")),
			phase: PhaseTerminal, reason: kubexec.ReasonDisrupted, message: []string{"evicted by the kubelet", "low on resource: memory"},
		},
		{
			name:  "refused by its node at admission (OutOfcpu)",
			pod:   testPod(phase(corev1.PodFailed), podReason("OutOfcpu", "Node didn't have enough resource: cpu")),
			phase: PhaseTerminal, reason: kubexec.ReasonDisrupted, message: []string{"refused by the node"},
		},
		{
			name:  "ErrImagePull within the grace period: still pending",
			pod:   testPod(started(8*time.Minute), status(false, waiting("base", "pyhton:3.12", "ErrImagePull", "pull access denied"))),
			phase: PhasePending, container: "base",
			message: []string{`container "base" cannot get its image "pyhton:3.12": ErrImagePull: pull access denied`,
				"fails if this lasts 3m0s"},
		},
		{
			name:  "ErrImagePull past the grace period",
			pod:   testPod(started(6*time.Minute), status(false, waiting("base", "pyhton:3.12", "ErrImagePull", "pull access denied"))),
			phase: PhaseTerminal, reason: kubexec.ReasonImagePullError, container: "base",
			message: []string{"pull access denied", "for more than 3m0s", "imagePullSecrets"},
		},
		{
			name:  "ImagePullBackOff past the grace period, in an init container",
			pod:   testPod(started(time.Minute), status(true, waiting("setup", "busybox:nope", "ImagePullBackOff", "Back-off pulling image"))),
			phase: PhaseTerminal, reason: kubexec.ReasonImagePullError, container: "setup",
			message: []string{`init container "setup" cannot get its image "busybox:nope"`},
		},
		{
			name:  "ImagePullBackOff with a longer grace period configured",
			pod:   testPod(started(time.Minute), status(false, waiting("base", "python:3.12", "ImagePullBackOff", ""))),
			opts:  ClassifyOptions{ImagePullGrace: 15 * time.Minute},
			phase: PhasePending, container: "base", message: []string{"fails if this lasts 15m0s"},
		},
		{
			name:  "ImagePullBackOff with a negative grace period fails at once",
			pod:   testPod(started(9*time.Minute+59*time.Second), status(false, waiting("base", "python:3.12", "ImagePullBackOff", ""))),
			opts:  ClassifyOptions{ImagePullGrace: -1},
			phase: PhaseTerminal, reason: kubexec.ReasonImagePullError, container: "base",
		},
		{
			name:  "the grace period counts from creation when the pod has no start time",
			pod:   testPod(status(false, waiting("base", "python:3.12", "ErrImagePull", ""))),
			phase: PhaseTerminal, reason: kubexec.ReasonImagePullError, container: "base",
		},
		{
			name:  "InvalidImageName fails at once",
			pod:   testPod(started(9*time.Minute+59*time.Second), status(false, waiting("base", "Python:3.12", "InvalidImageName", `couldn't parse image name "Python:3.12"`))),
			phase: PhaseTerminal, reason: kubexec.ReasonImagePullError, container: "base", message: []string{"couldn't parse image name", "fix the image reference"},
		},
		{
			name:  "ImageInspectError fails at once",
			pod:   testPod(started(9*time.Minute+59*time.Second), status(false, waiting("base", "python:3.12", "ImageInspectError", "failed to inspect"))),
			phase: PhaseTerminal, reason: kubexec.ReasonImagePullError, container: "base",
		},
		{
			name:  "CreateContainerConfigError (missing Secret) within its grace period waits",
			pod:   testPod(started(9*time.Minute), status(false, waiting("base", "python:3.12", "CreateContainerConfigError", `secret "db" not found`))),
			phase: PhasePending, container: "base", message: []string{`secret "db" not found`, "the attempt fails if this lasts 2m0s"},
		},
		{
			name:  "CreateContainerConfigError (missing Secret) fails after its grace period",
			pod:   testPod(started(7*time.Minute), status(false, waiting("base", "python:3.12", "CreateContainerConfigError", `secret "db" not found`))),
			phase: PhaseTerminal, reason: kubexec.ReasonConfigError, container: "base", message: []string{`secret "db" not found`, "for more than 2m0s", "Secrets and ConfigMaps"},
		},
		{
			name:  "CreateContainerError fails after its grace period",
			pod:   testPod(started(7*time.Minute), status(false, waiting("base", "python:3.12", "CreateContainerError", "exec format error"))),
			phase: PhaseTerminal, reason: kubexec.ReasonConfigError, container: "base",
		},
		{
			name:  "CreateContainerError with a negative grace fails at once",
			pod:   testPod(started(9*time.Minute+59*time.Second), status(false, waiting("base", "python:3.12", "CreateContainerError", "exec format error"))),
			opts:  ClassifyOptions{ConfigErrorGrace: -1},
			phase: PhaseTerminal, reason: kubexec.ReasonConfigError, container: "base",
		},
		{
			name: "a lasting config error in a running pod's second container",
			pod: testPod(phase(corev1.PodRunning), started(20*time.Second),
				status(false, running("base", time.Minute)), status(false, waiting("helper", "busybox", "CreateContainerConfigError", `configmap "c" not found`))),
			phase: PhaseTerminal, reason: kubexec.ReasonConfigError, container: "helper", startedAt: t0.Add(time.Minute),
		},
		{
			name:  "ContainerCreating is not a failure",
			pod:   testPod(started(20*time.Second), status(false, waiting("base", "python:3.12", "ContainerCreating", ""))),
			phase: PhasePending,
		},
		{
			name: "scheduled, containers being created within the start timeout",
			pod: testPod(started(5*time.Minute), condition(corev1.PodScheduled, corev1.ConditionTrue, "", "", 5*time.Minute),
				status(false, waiting("base", "python:3.12", "ContainerCreating", ""))),
			phase:   PhasePending,
			message: []string{"ContainerCreating", "fails if no container starts within 10m0s"},
		},
		{
			name: "scheduled, no container started past the start timeout (a volume that never mounts)",
			pod: testPod(started(2*time.Minute), condition(corev1.PodScheduled, corev1.ConditionTrue, "", "", 2*time.Minute),
				status(true, waiting("setup", "busybox", "PodInitializing", "")),
				status(false, waiting("base", "python:3.12", "ContainerCreating", ""))),
			opts:  ClassifyOptions{StartTimeout: 5 * time.Minute},
			phase: PhaseTerminal, reason: kubexec.ReasonConfigError,
			message: []string{"no container of the pod started within 5m0s", "PodInitializing", "check the pod's volumes"},
		},
		{
			name: "scheduled long ago, but an init container ran: not a start timeout",
			pod: testPod(started(time.Minute), condition(corev1.PodScheduled, corev1.ConditionTrue, "", "", 0),
				status(true, running("setup", time.Minute))),
			opts:  ClassifyOptions{StartTimeout: time.Minute},
			phase: PhasePending,
		},
		{
			name: "unschedulable within the pending timeout",
			pod: testPod(condition(corev1.PodScheduled, corev1.ConditionFalse, "Unschedulable",
				"0/3 nodes are available: 3 Insufficient memory.", 6*time.Minute)),
			phase:   PhasePending,
			message: []string{"3 Insufficient memory", "fails if this lasts 5m0s"},
		},
		{
			name: "unschedulable past the pending timeout, with the scheduler's message",
			pod: testPod(condition(corev1.PodScheduled, corev1.ConditionFalse, "Unschedulable",
				"0/3 nodes are available: 3 Insufficient memory.", 4*time.Minute)),
			phase: PhaseTerminal, reason: kubexec.ReasonUnschedulable,
			message: []string{"0/3 nodes are available: 3 Insufficient memory.", "for more than 5m0s", "resource requests"},
		},
		{
			name: "unschedulable with a longer pending timeout configured",
			pod:  testPod(condition(corev1.PodScheduled, corev1.ConditionFalse, "Unschedulable", "no nodes", 0)),
			opts: ClassifyOptions{PendingTimeout: time.Hour}, phase: PhasePending,
		},
		{
			name:    "scheduling gates are deliberate and never time out",
			pod:     testPod(condition(corev1.PodScheduled, corev1.ConditionFalse, "SchedulingGated", "Scheduling is blocked due to non-empty scheduling gates", 0)),
			now:     t0.Add(48 * time.Hour),
			phase:   PhasePending,
			message: []string{"scheduling gates"},
		},
		{
			name:  "deleted while running: DeletedExternally, retryable",
			pod:   testPod(phase(corev1.PodRunning), ranOK, deleting(5*time.Minute)),
			phase: PhaseTerminal, reason: kubexec.ReasonDeletedExternally,
			message: []string{"was deleted while it was running", `namespace "ns"`}, startedAt: t0.Add(minute),
		},
		{
			name:  "deleted while pending",
			pod:   testPod(deleting(time.Minute)),
			phase: PhaseTerminal, reason: kubexec.ReasonDeletedExternally,
			message: []string{"was deleted before it started"},
		},
		{
			name: "deleted after it succeeded: still Succeeded",
			pod: testPod(phase(corev1.PodSucceeded), deleting(5*time.Minute),
				status(false, exited("base", 0, "Completed", minute, 2*minute))),
			phase: PhaseTerminal, reason: kubexec.ReasonSucceeded, container: "base", exited: true,
			startedAt: t0.Add(minute), finishedAt: t0.Add(2 * minute),
		},
		{
			name: "deleted after it was OOM killed: still OOMKilled",
			pod: testPod(phase(corev1.PodFailed), deleting(5*time.Minute),
				status(false, exited("base", 137, "OOMKilled", minute, 2*minute))),
			phase: PhaseTerminal, reason: kubexec.ReasonOOMKilled, container: "base", exitCode: 137, exited: true,
			startedAt: t0.Add(minute), finishedAt: t0.Add(2 * minute),
		},
		// Issue 26, item 14: classification cases from Airflow's tests and
		// the real kubelet.
		{
			name: "refused at admission by a node that is shutting down (NodeShutdown): Disrupted, not Failed",
			pod: testPod(phase(corev1.PodFailed), boundTo("n1"),
				podReason("NodeShutdown", "Pod was rejected: Pod was rejected as the node is shutting down.")),
			phase: PhaseTerminal, reason: kubexec.ReasonDisrupted,
			message: []string{"shutting down", "NodeShutdown: Pod was rejected", "a retry will likely succeed"},
		},
		{
			name: "stopped by its node's shutdown (Terminated) with the kubelet's condition, its container killed",
			pod: testPod(phase(corev1.PodFailed), boundTo("n1"),
				podReason("Terminated", "Pod was terminated in response to imminent node shutdown."),
				condition(corev1.DisruptionTarget, corev1.ConditionTrue, "TerminationByKubelet", "Pod was terminated in response to imminent node shutdown.", 4*minute),
				status(false, exited("base", 137, "Error", minute, 4*minute))),
			phase: PhaseTerminal, reason: kubexec.ReasonDisrupted,
			message:   []string{"stopped by the kubelet", "imminent node shutdown"},
			startedAt: t0.Add(minute),
		},
		{
			name: "stopped by its node's shutdown (Terminated), no condition",
			pod: testPod(phase(corev1.PodFailed), boundTo("n1"),
				podReason("Terminated", "Pod was terminated in response to imminent node shutdown.")),
			phase: PhaseTerminal, reason: kubexec.ReasonDisrupted,
			message: []string{"its node shut down", "imminent node shutdown"},
		},
		{
			name: "a virtual kubelet's provider failed to create the pod (Pending, ProviderFailed): Disrupted at once",
			pod: testPod(boundTo("virtual-aci"), condition(corev1.PodScheduled, corev1.ConditionTrue, "", "", 9*minute),
				podReason("ProviderFailed", "creating container group: quota exceeded for cores in region westeurope")),
			now:   t0.Add(9*minute + time.Second),
			phase: PhaseTerminal, reason: kubexec.ReasonDisrupted,
			message: []string{`virtual node "virtual-aci"`, "ProviderFailed: creating container group: quota exceeded",
				"virtual kubelet's log", "capacity, quotas, credentials"},
		},
		{
			name: "a virtual kubelet's provider failed to create the pod (restartPolicy Never: Failed, ProviderFailed)",
			pod: testPod(phase(corev1.PodFailed), boundTo("virtual-aci"),
				podReason("ProviderFailed", "creating container group: quota exceeded")),
			phase: PhaseTerminal, reason: kubexec.ReasonDisrupted,
			message: []string{"virtual kubelet", "quota exceeded"},
		},
		{
			name: "exit code 137 reported as Error (an OOM kill the kubelet missed): Failed, the message says SIGKILL and memory limit",
			pod: testPod(phase(corev1.PodFailed),
				status(false, exited("base", 137, "Error", minute, 2*minute)),
				status(false, exited("helper", 0, "Completed", minute, 2*minute))),
			phase: PhaseTerminal, reason: kubexec.ReasonFailed, container: "base", exitCode: 137, exited: true,
			message: []string{`container "base" exited with code 137`, "killed with SIGKILL", "OOM killer",
				"memory limit", "resources.limits.memory"},
			startedAt: t0.Add(minute), finishedAt: t0.Add(2 * minute),
		},
		{
			name: "killed by signal 9 with no reason: the same advice",
			pod: testPod(phase(corev1.PodFailed), status(false, corev1.ContainerStatus{Name: "base", State: corev1.ContainerState{
				Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Signal: 9, StartedAt: at(minute), FinishedAt: at(2 * minute)}}})),
			phase: PhaseTerminal, reason: kubexec.ReasonFailed, container: "base", exitCode: 137, exited: true,
			message:   []string{"(signal 9)", "killed with SIGKILL", "resources.limits.memory"},
			startedAt: t0.Add(minute), finishedAt: t0.Add(2 * minute),
		},
		// Issue 26, item 15: a pending pod that nothing acts on ends after
		// the pending timeout.
		{
			name:  "no scheduler acts on the pod (no PodScheduled condition), within the pending timeout",
			pod:   testPod(withScheduler("no-such-scheduler")),
			now:   t0.Add(4 * minute),
			phase: PhasePending,
			message: []string{`the pod waits for scheduler "no-such-scheduler" to place it`,
				"the attempt fails if this lasts 5m0s"},
		},
		{
			name:  "no scheduler acts on the pod (no PodScheduled condition), past the pending timeout",
			pod:   testPod(withScheduler("no-such-scheduler")),
			phase: PhaseTerminal, reason: kubexec.ReasonUnschedulable,
			message: []string{"no scheduler acted on the pod for more than 5m0s", "no PodScheduled condition",
				`schedulerName is "no-such-scheduler"`, "kube-scheduler is running", "kubectl describe pod"},
		},
		{
			name:  "no scheduler acts on the pod, with a shorter pending timeout",
			pod:   testPod(),
			now:   t0.Add(30 * time.Second),
			opts:  ClassifyOptions{PendingTimeout: 20 * time.Second},
			phase: PhaseTerminal, reason: kubexec.ReasonUnschedulable,
			message: []string{"for more than 20s", `"default-scheduler"`},
		},
		{
			name: "the scheduler keeps failing on the pod (SchedulerError), within the pending timeout",
			pod: testPod(condition(corev1.PodScheduled, corev1.ConditionFalse, "SchedulerError",
				"running PreBind plugin \"VolumeBinding\": binding volumes: timed out", 6*minute)),
			phase: PhasePending,
			message: []string{`the scheduler "default-scheduler" has not placed the pod: SchedulerError`,
				"fails if this lasts 5m0s"},
		},
		{
			name: "the scheduler keeps failing on the pod (SchedulerError), past the pending timeout",
			pod: testPod(condition(corev1.PodScheduled, corev1.ConditionFalse, "SchedulerError",
				"running PreBind plugin \"VolumeBinding\": binding volumes: timed out", 4*minute)),
			phase: PhaseTerminal, reason: kubexec.ReasonUnschedulable,
			message: []string{"SchedulerError", "for more than 5m0s", "scheduler's log"},
		},
		{
			name:    "created with a nodeName its node never takes up, within the pending timeout",
			pod:     testPod(boundTo("n1")),
			now:     t0.Add(minute),
			phase:   PhasePending,
			message: []string{`names node "n1"`, "fails if this lasts 5m0s"},
		},
		{
			name:  "created with a nodeName its node never takes up, past the pending timeout",
			pod:   testPod(boundTo("n1")),
			phase: PhaseTerminal, reason: kubexec.ReasonUnschedulable,
			message: []string{`names node "n1"`, "for more than 5m0s", `check that node "n1" exists and is Ready`},
		},
		{
			name:  "reported by its node without a PodScheduled condition: the start timeout, from its start",
			pod:   testPod(boundTo("n1"), started(time.Minute), status(false, waiting("base", "python:3.12", "ContainerCreating", ""))),
			opts:  ClassifyOptions{StartTimeout: 8 * time.Minute},
			phase: PhaseTerminal, reason: kubexec.ReasonConfigError,
			message: []string{"no container of the pod started within 8m0s", "node n1"},
		},
		{
			name:    "scheduling gates never time out, whatever the scheduler",
			pod:     testPod(withScheduler("no-such-scheduler"), condition(corev1.PodScheduled, corev1.ConditionFalse, "SchedulingGated", "Scheduling is blocked due to non-empty scheduling gates", 0)),
			now:     t0.Add(48 * time.Hour),
			phase:   PhasePending,
			message: []string{"scheduling gates"},
		},
		{
			name:      "node not reporting (phase Unknown): still running",
			pod:       testPod(phase(corev1.PodUnknown), ranOK, podReason("NodeLost", "Node is not responding")),
			phase:     PhaseRunning,
			message:   []string{"stopped reporting", "Node is not responding"},
			startedAt: t0.Add(minute),
		},
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	// The cases include each timeout, which sets RecheckAt: the image pull
	// and configuration error grace periods, the start timeout, and the
	// pending timeout of an unschedulable pod, of one no scheduler acts
	// on, of one the scheduler fails on and of one its node never takes.
	var timed []string
	for _, tc := range classifyCases() {
		when := now
		if !tc.now.IsZero() {
			when = tc.now
		}
		if c := Classify(tc.pod, when, tc.opts); !c.RecheckAt.IsZero() {
			timed = append(timed, c.Message)
		}
	}
	for _, want := range []string{"cannot get its image", "is waiting: CreateContainerConfigError", "fails if no container starts",
		"no node can run the pod", "waits for scheduler", "has not placed the pod", "waits for that node"} {
		require.True(t, slices.ContainsFunc(timed, func(m string) bool { return strings.Contains(m, want) }),
			"no case with RecheckAt says %q; those that have one say:\n%s", want, strings.Join(timed, "\n"))
	}
	for _, tc := range classifyCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			when := now
			if !tc.now.IsZero() {
				when = tc.now
			}
			got := Classify(tc.pod, when, tc.opts)
			checkClassification(t, tc, got, when)
			// Classification reads only what Trim keeps.
			require.Equal(t, got, Classify(Trim(tc.pod), when, tc.opts), "classification of the trimmed pod")
			checkRecheckAt(t, tc, got, when)
		})
	}
}

// checkRecheckAt: a classification without RecheckAt is the same at any
// later time; one with RecheckAt is the same until just before it, and the
// attempt is over at it.
func checkRecheckAt(t *testing.T, tc classifyCase, got Classification, when time.Time) {
	t.Helper()
	if got.Terminal() {
		require.Zero(t, got.RecheckAt, "RecheckAt of a terminal classification")
		return
	}
	same := func(at time.Time) {
		later := Classify(tc.pod, at, tc.opts)
		require.Equal(t, got.Phase, later.Phase, "phase at %s; message: %s", at, later.Message)
		require.Equal(t, got.RecheckAt, later.RecheckAt, "RecheckAt at %s", at)
	}
	if got.RecheckAt.IsZero() {
		for _, d := range []time.Duration{time.Second, time.Hour, 1000 * time.Hour} {
			same(when.Add(d))
		}
		return
	}
	require.True(t, got.RecheckAt.After(when), "RecheckAt %s is after the classification at %s", got.RecheckAt, when)
	same(got.RecheckAt.Add(-time.Nanosecond))
	require.True(t, Classify(tc.pod, got.RecheckAt, tc.opts).Terminal(), "the attempt is over at RecheckAt")
}

func checkClassification(t *testing.T, tc classifyCase, got Classification, when time.Time) {
	t.Helper()
	require.Equal(t, tc.phase, got.Phase, "phase; message: %s", got.Message)
	require.Equal(t, tc.reason, got.Reason, "reason; message: %s", got.Message)
	require.Equal(t, tc.container, got.Container, "container")
	require.Equal(t, tc.exitCode, got.ExitCode, "exit code")
	require.Equal(t, tc.exited, got.ContainerExited, "container exited")
	if got.ContainerExited {
		require.NotEmpty(t, got.Container, "an exited container is named")
	}
	require.Equal(t, tc.startedAt, got.StartedAt, "startedAt")
	for _, want := range tc.message {
		require.Contains(t, got.Message, want)
	}
	require.NotContains(t, strings.ToLower(got.Message), "none")
	if got.Phase != PhaseTerminal {
		require.False(t, got.Retryable)
		require.True(t, got.FinishedAt.IsZero(), "finishedAt before the end")
		return
	}
	require.True(t, got.Terminal())
	require.True(t, got.Reason.Known())
	require.Equal(t, got.Reason.Retryable(), got.Retryable)
	require.NotEmpty(t, got.Message)
	wantFinished := tc.finishedAt
	if wantFinished.IsZero() {
		wantFinished = when
	}
	require.Equal(t, wantFinished, got.FinishedAt, "finishedAt")
	// It makes a valid Result.
	res := kubexec.Result{
		Key:   kubexec.TaskKey{WorkflowID: "wf", TaskID: "t", MapIndex: kubexec.NotMapped, Attempt: 1},
		State: got.Reason.State(), Reason: got.Reason, ExitCode: got.ExitCode, ContainerExited: got.ContainerExited,
		Container: got.Container, Message: got.Message, StartedAt: got.StartedAt, FinishedAt: got.FinishedAt,
	}
	require.NoError(t, res.Validate())
}

func TestClassifyRetryable(t *testing.T) {
	t.Parallel()
	// The list: what a retry is likely to fix.
	cases := map[string]struct {
		pod       *corev1.Pod
		retryable bool
	}{
		"disrupted": {testPod(phase(corev1.PodFailed), podReason("Evicted", "")), true},
		"deleted":   {testPod(deleting(0)), true},
		"failed":    {testPod(phase(corev1.PodFailed), status(false, exited("base", 1, "Error", 0, time.Minute))), true},
		"oom":       {testPod(phase(corev1.PodFailed), status(false, exited("base", 137, "OOMKilled", 0, time.Minute))), false},
		"deadline":  {testPod(phase(corev1.PodFailed), podReason("DeadlineExceeded", "")), false},
		"image":     {testPod(status(false, waiting("base", "x", "InvalidImageName", ""))), false},
		"config":    {testPod(status(false, waiting("base", "x", "CreateContainerConfigError", ""))), false},
		"unschedulable": {testPod(condition(corev1.PodScheduled, corev1.ConditionFalse, "Unschedulable", "", 0)),
			true},
	}
	for name, tc := range cases {
		got := Classify(tc.pod, now, ClassifyOptions{})
		require.True(t, got.Terminal(), name)
		require.Equal(t, tc.retryable, got.Retryable, name)
	}
}

func TestClassifyDeleted(t *testing.T) {
	t.Parallel()
	cases := []classifyCase{
		{
			name:  "nothing known",
			pod:   nil,
			phase: PhaseTerminal, reason: kubexec.ReasonDeletedExternally,
			message: []string{"vanished"},
		},
		{
			name:  "vanished while running (no deletionTimestamp seen)",
			pod:   testPod(phase(corev1.PodRunning), ranOK),
			phase: PhaseTerminal, reason: kubexec.ReasonDeletedExternally,
			message: []string{"vanished (deleted while the watch was down) while it was running"}, startedAt: t0.Add(time.Minute),
		},
		{
			name:  "vanished while pending",
			pod:   testPod(),
			phase: PhaseTerminal, reason: kubexec.ReasonDeletedExternally,
			message: []string{"before it started"},
		},
		{
			name: "its node is gone (pod GC)",
			pod: testPod(phase(corev1.PodRunning), ranOK, deleting(time.Minute),
				condition(corev1.DisruptionTarget, corev1.ConditionTrue, "DeletionByPodGC", "PodGC: node no longer exists", 2*time.Minute)),
			phase: PhaseTerminal, reason: kubexec.ReasonDisrupted, message: []string{"pod garbage collector", "node no longer exists"},
			startedAt: t0.Add(time.Minute),
		},
		{
			name:  "its node was lost (reason NodeLost)",
			pod:   testPod(phase(corev1.PodRunning), ranOK, podReason("NodeLost", "node n1 which was running pod p is unresponsive")),
			phase: PhaseTerminal, reason: kubexec.ReasonDisrupted, message: []string{"lost with its node"},
			startedAt: t0.Add(time.Minute),
		},
		{
			name:  "it had succeeded",
			pod:   testPod(phase(corev1.PodSucceeded), status(false, exited("base", 0, "Completed", time.Minute, 2*time.Minute))),
			phase: PhaseTerminal, reason: kubexec.ReasonSucceeded, container: "base", exited: true,
			startedAt: t0.Add(time.Minute), finishedAt: t0.Add(2 * time.Minute),
		},
		{
			name: "killed by a deletion with a grace period, seen after the node marked it failed",
			pod: testPod(phase(corev1.PodFailed), deletedWithGrace(3*time.Minute, 30),
				status(false, exited("base", 137, "Error", time.Minute, 3*time.Minute+20*time.Second))),
			phase: PhaseTerminal, reason: kubexec.ReasonDeletedExternally, message: []string{"was deleted while it was running"},
			startedAt: t0.Add(time.Minute),
		},
		{
			name: "force-deleted, the containers killed in the same second",
			pod: testPod(phase(corev1.PodFailed), deletedWithGrace(3*time.Minute+400*time.Millisecond, 0),
				status(false, exited("base", 143, "Error", time.Minute, 3*time.Minute))),
			phase: PhaseTerminal, reason: kubexec.ReasonDeletedExternally,
			startedAt: t0.Add(time.Minute),
		},
		{
			name: "a grace period shortened later keeps the first request time",
			pod: testPod(phase(corev1.PodFailed), deletedWithGrace(3*time.Minute, 5),
				status(false, exited("base", 137, "Error", time.Minute, 3*time.Minute+2*time.Second))),
			phase: PhaseTerminal, reason: kubexec.ReasonDeletedExternally,
			startedAt: t0.Add(time.Minute),
		},
		{
			name: "killed by the deletion, with no finish time and the kill's exit code",
			pod: testPod(phase(corev1.PodFailed), deletedWithGrace(3*time.Minute, 0),
				status(false, corev1.ContainerStatus{Name: "base", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "ContainerStatusUnknown"}}})),
			phase: PhaseTerminal, reason: kubexec.ReasonDeletedExternally,
		},
		{
			name: "failed by itself before the deletion, its sidecar stopped by it",
			pod: testPod(phase(corev1.PodFailed), deletedWithGrace(3*time.Minute, 30),
				status(false, exited("base", 3, "Error", time.Minute, 2*time.Minute)),
				status(true, exited("proxy", 137, "Error", 0, 3*time.Minute+time.Second))),
			phase: PhaseTerminal, reason: kubexec.ReasonFailed, container: "base", exitCode: 3, exited: true,
			startedAt: t0.Add(time.Minute), finishedAt: t0.Add(2 * time.Minute),
		},
		{
			name: "OOM killed before the deletion",
			pod: testPod(phase(corev1.PodFailed), deletedWithGrace(3*time.Minute, 30),
				status(false, exited("base", 137, "OOMKilled", time.Minute, 2*time.Minute))),
			phase: PhaseTerminal, reason: kubexec.ReasonOOMKilled, container: "base", exitCode: 137, exited: true,
			startedAt: t0.Add(time.Minute), finishedAt: t0.Add(2 * time.Minute),
		},
		{
			name: "evicted: the deletion carries the disruption condition",
			pod: testPod(phase(corev1.PodFailed), deletedWithGrace(3*time.Minute, 30),
				status(false, exited("base", 137, "Error", time.Minute, 3*time.Minute+5*time.Second)),
				condition(corev1.DisruptionTarget, corev1.ConditionTrue, "EvictionByEvictionAPI", "Eviction API: evicting", 3*time.Minute)),
			phase: PhaseTerminal, reason: kubexec.ReasonDisrupted,
			startedAt: t0.Add(time.Minute),
		},
		{
			name:  "it had failed",
			pod:   testPod(phase(corev1.PodFailed), status(false, exited("base", 2, "Error", time.Minute, 2*time.Minute))),
			phase: PhaseTerminal, reason: kubexec.ReasonFailed, container: "base", exitCode: 2, exited: true,
			startedAt: t0.Add(time.Minute), finishedAt: t0.Add(2 * time.Minute),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ClassifyDeleted(tc.pod, now)
			checkClassification(t, tc, got, now)
		})
	}
	require.Equal(t, ClassifyDeleted(nil, now), Classify(nil, now, ClassifyOptions{}))
}

func TestPhaseString(t *testing.T) {
	t.Parallel()
	require.Equal(t, "pending", PhasePending.String())
	require.Equal(t, "running", PhaseRunning.String())
	require.Equal(t, "terminal", PhaseTerminal.String())
	require.Equal(t, "Phase(0)", Phase(0).String())
}

func TestTruncateKeepsRunes(t *testing.T) {
	t.Parallel()
	s := strings.Repeat("é", 600) // 1200 bytes
	got := truncate(s, 1001)
	require.True(t, strings.HasSuffix(got, "…"))
	require.Equal(t, strings.Repeat("é", 500)+"…", got)
	require.Equal(t, "short", truncate("short", 10))
}
