package kubexec

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidResult is wrapped by the errors of [Result.Validate].
var ErrInvalidResult = errors.New("kubexec: invalid result")

// Result is the record of one finished attempt: what the executor hands to
// the host's store, exactly once per attempt.
type Result struct {
	// Key identifies the attempt.
	Key TaskKey `json:"key"`
	// State is StateSucceeded or StateFailed.
	State State `json:"state"`
	// Reason says why the attempt ended; Reason.State() equals State.
	Reason Reason `json:"reason"`
	// ExitCode is the exit code of Container. It is meaningful only when
	// ContainerExited is true: 0 then means that the container's code
	// succeeded (as with ReasonXComFailed), where 0 with ContainerExited
	// false means no exit code is known.
	ExitCode int32 `json:"exitCode"`
	// ContainerExited reports whether Container actually terminated (it
	// exited, was killed by a signal, or its process could not start), so
	// that ExitCode is the code Kubernetes reported for it. It is false
	// when no container terminated (LaunchRejected, Unschedulable, a pod
	// deleted while it ran), when Container never ran (ImagePullError,
	// ConfigError), and when its node lost it (the exit code is then the
	// kubelet's guess).
	ContainerExited bool `json:"containerExited,omitempty"`
	// Container names the container that decided the result (usually the
	// main container: the one that exited, was killed for memory, or could
	// not start); empty when no container was involved, e.g. for
	// LaunchRejected or Unschedulable.
	Container string `json:"container,omitempty"`
	// Message is the detail for a person: the container's termination
	// message or reason, the API server's error, the eviction message.
	// Reason.Hint() says what to do about it.
	Message string `json:"message,omitempty"`
	// PodName is the name of the attempt's pod.
	PodName string `json:"podName,omitempty"`
	// Namespace is the namespace of the attempt's pod.
	Namespace string `json:"namespace,omitempty"`
	// Node is the node the pod ran on; empty if it was never scheduled.
	Node string `json:"node,omitempty"`
	// StartedAt is when the main container started; zero if it never did.
	StartedAt time.Time `json:"startedAt,omitzero"`
	// FinishedAt is when the attempt ended (the container's finish time, or
	// when kubexec observed the end).
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// XComRef refers to the attempt's small result value (XCom) as stored by
	// the xcom backend that read it; empty when the attempt produced none.
	// Its form is defined by that backend.
	XComRef string `json:"xcomRef,omitempty"`
	// PodMayStillRun: the attempt's pod had not stopped when the result was
	// saved (it was being deleted, on a node that did not confirm the stop
	// in time), so a new attempt may run beside it for a while. kubexec
	// waits for the pod to stop before saving such results, up to a bound
	// (the executor's Config.PodStopWait); this is set only when that
	// bound passed or the host chose not to wait.
	PodMayStillRun bool `json:"podMayStillRun,omitempty"`
}

// ErrXComValue is matched (errors.Is) by the error of an attempt's XCom
// value that is unusable — too large, not UTF-8, not JSON where JSON is
// required, missing when required, unreadable — which fails the attempt
// with [ReasonXComFailed] instead of being retried. Package xcom's
// ValueError matches it; a host's own collector returns an error that
// wraps it.
var ErrXComValue = errors.New("kubexec: the attempt's XCom value is unusable")

// Validate reports whether r is a consistent terminal result: a valid key, a
// terminal state, a known reason that matches the state, a ContainerExited
// that names its Container, and times in order. Errors wrap
// [ErrInvalidResult].
func (r Result) Validate() error {
	if err := r.Key.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidResult, err)
	}
	if !r.State.Terminal() {
		return fmt.Errorf("%w: state %q is not terminal: use %q or %q", ErrInvalidResult, r.State, StateSucceeded, StateFailed)
	}
	if !r.Reason.Known() {
		return fmt.Errorf("%w: unknown reason %q", ErrInvalidResult, r.Reason)
	}
	if r.Reason.State() != r.State {
		return fmt.Errorf("%w: reason %s goes with state %q, not %q", ErrInvalidResult, r.Reason, r.Reason.State(), r.State)
	}
	if r.ContainerExited && r.Container == "" {
		return fmt.Errorf("%w: containerExited is set but container is empty: name the container that exited", ErrInvalidResult)
	}
	if !r.StartedAt.IsZero() && !r.FinishedAt.IsZero() && r.FinishedAt.Before(r.StartedAt) {
		return fmt.Errorf("%w: finishedAt %s is before startedAt %s", ErrInvalidResult,
			r.FinishedAt.Format(time.RFC3339Nano), r.StartedAt.Format(time.RFC3339Nano))
	}
	return nil
}
