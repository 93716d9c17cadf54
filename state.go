package kubexec

// State is where an attempt is in its life. The zero State is not valid.
//
// An attempt moves forward only: queued -> launching -> pending -> running ->
// succeeded or failed. It may end (fail) from any non-terminal state, for
// example when it is revoked while queued.
type State string

// The states of an attempt.
const (
	// StateQueued: the host queued the attempt; no pod has been requested.
	StateQueued State = "queued"
	// StateLaunching: the pod create request is in flight or being retried
	// (rate limit, quota, API server errors).
	StateLaunching State = "launching"
	// StatePending: the pod exists but no container of it has started
	// (scheduling, image pulls, volume mounts).
	StatePending State = "pending"
	// StateRunning: the main container has started.
	StateRunning State = "running"
	// StateSucceeded: the attempt finished successfully. Terminal.
	StateSucceeded State = "succeeded"
	// StateFailed: the attempt ended without success; its [Reason] says why.
	// Terminal.
	StateFailed State = "failed"
)

// Terminal reports whether s is a final state (succeeded or failed).
func (s State) Terminal() bool {
	return s == StateSucceeded || s == StateFailed
}

// Known reports whether s is one of the states defined by this package.
func (s State) Known() bool {
	switch s {
	case StateQueued, StateLaunching, StatePending, StateRunning, StateSucceeded, StateFailed:
		return true
	}
	return false
}

// String returns the state's name, e.g. "running".
func (s State) String() string { return string(s) }

// Reason says why a terminal attempt ended. Every terminal [Result] has one.
// The zero Reason is not valid.
//
// Two questions decide what a host does with a failed attempt, and each
// Reason answers both:
//
//   - [Reason.Retryable]: is another attempt likely to help?
//   - [Reason.SystemFailure]: did the attempt fail for a reason outside the
//     task's own code (it never started, or the platform stopped it)? Such a
//     failure should not consume the task's own retries; a host that retries
//     it keeps a separate budget for system failures so that a permanent
//     platform problem does not retry forever.
//
// [Reason.Hint] says what a person should do.
type Reason string

// The reasons an attempt ends.
const (
	// ReasonSucceeded: the main container exited with code 0.
	ReasonSucceeded Reason = "Succeeded"
	// ReasonFailed: the main container exited with a non-zero code; the
	// Result carries the code and the container.
	ReasonFailed Reason = "Failed"
	// ReasonOOMKilled: a container was killed for exceeding its memory limit.
	ReasonOOMKilled Reason = "OOMKilled"
	// ReasonImagePullError: an image could not be pulled or its name is
	// invalid (ErrImagePull, ImagePullBackOff past its grace period,
	// InvalidImageName).
	ReasonImagePullError Reason = "ImagePullError"
	// ReasonConfigError: a container could not be created from its
	// configuration (CreateContainerConfigError, CreateContainerError), for
	// example a missing Secret or ConfigMap.
	ReasonConfigError Reason = "ConfigError"
	// ReasonUnschedulable: the pod stayed unscheduled past the pending
	// timeout.
	ReasonUnschedulable Reason = "Unschedulable"
	// ReasonDeadlineExceeded: the pod ran past its activeDeadlineSeconds.
	ReasonDeadlineExceeded Reason = "DeadlineExceeded"
	// ReasonDisrupted: the pod was evicted, preempted or lost with its node
	// (the DisruptionTarget condition) before it finished.
	ReasonDisrupted Reason = "Disrupted"
	// ReasonDeletedExternally: the pod was deleted by someone other than
	// kubexec before it finished.
	ReasonDeletedExternally Reason = "DeletedExternally"
	// ReasonLaunchRejected: the API server refused to create the pod as
	// invalid or forbidden (400, 422, admission), or kubexec could not build
	// a valid pod from the template, override and task spec.
	ReasonLaunchRejected Reason = "LaunchRejected"
	// ReasonRevoked: the attempt was cancelled on request.
	ReasonRevoked Reason = "Revoked"
	// ReasonQueuedTimeout: no pod was created for the attempt before its
	// queued timeout.
	ReasonQueuedTimeout Reason = "QueuedTimeout"
	// ReasonXComFailed: the main container exited with code 0, but the
	// attempt's XCom value is unusable (an error matching [ErrXComValue]:
	// too large, not UTF-8, not JSON although the pod asks for JSON,
	// missing although required, or unreadable). The Result's Message
	// carries the value's error; its ExitCode is 0, with ContainerExited
	// set.
	ReasonXComFailed Reason = "XComFailed"
	// ReasonExecutorError: the executor found its own record of the
	// attempt in a state its rules do not allow (a bug in kubexec, never
	// the task's fault) and ended the attempt rather than leave it
	// stranded, holding its slot. Its pod, if it may still run, is
	// deleted first, as for any other ending.
	ReasonExecutorError Reason = "ExecutorError"
)

type reasonInfo struct {
	retryable bool
	system    bool
	hint      string
}

var reasons = map[Reason]reasonInfo{
	ReasonSucceeded: {
		hint: "The task finished with exit code 0; nothing to do.",
	},
	ReasonFailed: {
		retryable: true,
		hint: "The task's container exited with a non-zero code: read the task's log for the error. " +
			"A retry helps only if the failure was transient.",
	},
	ReasonOOMKilled: {
		hint: "The container used more memory than its limit and was killed: raise resources.limits.memory " +
			"for the task or reduce its memory use. A retry with the same limit will likely be killed again.",
	},
	ReasonImagePullError: {
		hint: "The image could not be pulled: check the image name and tag, that it exists in the registry, " +
			"and the pod's imagePullSecrets. A retry with the same image will fail again.",
	},
	ReasonConfigError: {
		hint: "The container could not be created from its configuration: check that the Secrets, ConfigMaps " +
			"and volumes it references exist, and that an image running as root is not combined with " +
			"runAsNonRoot (set runAsUser). A retry fails again until the configuration is fixed.",
	},
	ReasonUnschedulable: {
		retryable: true,
		system:    true,
		hint: "No node could run the pod before the pending timeout: compare its resource requests with node " +
			"capacity and check node selectors, affinity, tolerations and quotas. A retry may succeed once " +
			"capacity frees up.",
	},
	ReasonDeadlineExceeded: {
		hint: "The task ran longer than its deadline (activeDeadlineSeconds) and was stopped: raise the " +
			"deadline or make the task faster.",
	},
	ReasonDisrupted: {
		retryable: true,
		system:    true,
		hint: "The pod was evicted, preempted or lost with its node before it finished; this is not the " +
			"task's fault and a retry will likely succeed. Frequent disruptions point at node pressure or " +
			"preemption by higher-priority pods.",
	},
	ReasonDeletedExternally: {
		retryable: true,
		system:    true,
		hint: "The pod was deleted by someone other than kubexec before it finished: find out what deletes " +
			"pods in this namespace (a person, a controller, namespace deletion). A retry will likely succeed.",
	},
	ReasonLaunchRejected: {
		system: true,
		hint: "The pod was rejected before it ran (invalid spec, or forbidden by admission such as Pod " +
			"Security): the message has the exact reason. Fix the template, override or task spec; a retry " +
			"with the same spec is rejected again.",
	},
	ReasonRevoked: {
		hint: "The attempt was cancelled on request; nothing to fix.",
	},
	ReasonQueuedTimeout: {
		retryable: true,
		system:    true,
		hint: "No pod was created for the attempt before its queued timeout: check the executor's log for " +
			"API errors, its parallelism and creation rate, and the namespace's resource quota.",
	},
	ReasonXComFailed: {
		hint: "The task's code succeeded (exit code 0) but its XCom value is unusable, as the message says: too " +
			"large for its channel, not UTF-8 text, not JSON although its pod asks for JSON, missing although " +
			"required, or unreadable. Fix what the task writes or its pod's xcom annotations; a retry writes " +
			"the same value, unless the message says the value was lost with its node.",
	},
	ReasonExecutorError: {
		retryable: true,
		system:    true,
		hint: "kubexec ended the attempt because its own record of it broke its rules; the task is not at " +
			"fault and a retry will likely succeed. Please report it with the executor's log line " +
			"\"illegal attempt transition\".",
	},
}

// Reasons returns every Reason defined by this package, in declaration order.
func Reasons() []Reason {
	return []Reason{
		ReasonSucceeded, ReasonFailed, ReasonOOMKilled, ReasonImagePullError, ReasonConfigError,
		ReasonUnschedulable, ReasonDeadlineExceeded, ReasonDisrupted, ReasonDeletedExternally,
		ReasonLaunchRejected, ReasonRevoked, ReasonQueuedTimeout, ReasonXComFailed, ReasonExecutorError,
	}
}

// Known reports whether r is one of the reasons defined by this package.
func (r Reason) Known() bool {
	_, ok := reasons[r]
	return ok
}

// Retryable reports whether another attempt is likely to help. It is false
// for success, for failures that repeat with the same spec (OOMKilled,
// ImagePullError, ConfigError, DeadlineExceeded, LaunchRejected,
// XComFailed), for Revoked (the host asked for it) and for unknown reasons.
func (r Reason) Retryable() bool { return reasons[r].retryable }

// SystemFailure reports whether the attempt failed for a reason outside the
// task's own code: the pod was never launched or never scheduled, or the
// platform stopped it (Unschedulable, Disrupted, DeletedExternally,
// LaunchRejected, QueuedTimeout). Such a failure should not consume the
// task's own retries.
func (r Reason) SystemFailure() bool { return reasons[r].system }

// State returns the terminal state that goes with r: [StateSucceeded] for
// [ReasonSucceeded] and [StateFailed] for every other reason.
func (r Reason) State() State {
	if r == ReasonSucceeded {
		return StateSucceeded
	}
	return StateFailed
}

// Hint says, for a person, what the reason means and what to do about it.
// It is empty for unknown reasons.
func (r Reason) Hint() string { return reasons[r].hint }

// String returns the reason's name, e.g. "OOMKilled".
func (r Reason) String() string { return string(r) }
