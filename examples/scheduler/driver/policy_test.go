package driver_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/examples/scheduler/driver"
	"github.com/kubexec/kubexec/examples/scheduler/sqlitestore"
	"github.com/kubexec/kubexec/examples/scheduler/workflow"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	spec := &workflow.Task{ID: "t", Retries: 2, RetryDelay: time.Second, MaxSystemRetries: 3}
	cases := []struct {
		name          string
		reason        kubexec.Reason
		retriesUsed   int
		systemRetries int
		wantState     sqlitestore.TaskState
		wantSystem    bool
		wantDelay     time.Duration
	}{
		{"success", kubexec.ReasonSucceeded, 0, 0, sqlitestore.TaskSucceeded, false, 0},
		{"exit code consumes a retry", kubexec.ReasonFailed, 0, 0, sqlitestore.TaskRetryWait, false, time.Second},
		{"retry delay doubles", kubexec.ReasonFailed, 1, 0, sqlitestore.TaskRetryWait, false, 2 * time.Second},
		{"no retries left", kubexec.ReasonFailed, 2, 0, sqlitestore.TaskFailed, false, 0},
		{"disruption retries without using a task retry", kubexec.ReasonDisrupted, 2, 0, sqlitestore.TaskRetryWait, true, 2 * time.Second},
		{"deleted externally", kubexec.ReasonDeletedExternally, 0, 1, sqlitestore.TaskRetryWait, true, 4 * time.Second},
		{"unschedulable", kubexec.ReasonUnschedulable, 0, 2, sqlitestore.TaskRetryWait, true, 8 * time.Second},
		{"queued timeout", kubexec.ReasonQueuedTimeout, 0, 0, sqlitestore.TaskRetryWait, true, 2 * time.Second},
		{"platform retries exhausted", kubexec.ReasonDisrupted, 0, 3, sqlitestore.TaskFailed, false, 0},
		{"launch rejected is not retried", kubexec.ReasonLaunchRejected, 0, 0, sqlitestore.TaskFailed, false, 0},
		{"OOMKilled is not retried", kubexec.ReasonOOMKilled, 0, 0, sqlitestore.TaskFailed, false, 0},
		{"image pull error is not retried", kubexec.ReasonImagePullError, 0, 0, sqlitestore.TaskFailed, false, 0},
		{"config error is not retried", kubexec.ReasonConfigError, 0, 0, sqlitestore.TaskFailed, false, 0},
		{"deadline is not retried", kubexec.ReasonDeadlineExceeded, 0, 0, sqlitestore.TaskFailed, false, 0},
		{"an unusable XCom value is not retried", kubexec.ReasonXComFailed, 0, 0, sqlitestore.TaskFailed, false, 0},
		{"revoked is cancelled", kubexec.ReasonRevoked, 0, 0, sqlitestore.TaskCancelled, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := kubexec.Result{Key: kubexec.TaskKey{WorkflowID: "w", TaskID: "t", RunID: "w-1", MapIndex: -1, Attempt: 1},
				State: tc.reason.State(), Reason: tc.reason, ExitCode: 3, ContainerExited: true, Container: "base"}
			d := driver.Decide(spec, sqlitestore.Task{RetriesUsed: tc.retriesUsed, SystemRetries: tc.systemRetries}, r)
			require.Equal(t, tc.wantState, d.State, d.Why)
			require.Equal(t, tc.wantSystem, d.System, d.Why)
			require.Equal(t, tc.wantDelay, d.Delay, d.Why)
			require.NotEmpty(t, d.Why)
		})
	}
}

// Every Reason kubexec defines is retried as Reason.Retryable says, and
// counted against the platform's retries as Reason.SystemFailure says: a
// Reason kubexec adds needs no change here.
func TestDecideFollowsReasons(t *testing.T) {
	t.Parallel()
	spec := &workflow.Task{ID: "t", Retries: 2, RetryDelay: time.Second, MaxSystemRetries: 3}
	for _, reason := range kubexec.Reasons() {
		r := kubexec.Result{Key: kubexec.TaskKey{WorkflowID: "w", TaskID: "t", RunID: "w-1", MapIndex: -1, Attempt: 1},
			State: reason.State(), Reason: reason}
		d := driver.Decide(spec, sqlitestore.Task{}, r)
		switch {
		case reason == kubexec.ReasonSucceeded:
			require.Equal(t, sqlitestore.TaskSucceeded, d.State, reason)
		case reason == kubexec.ReasonRevoked:
			require.Equal(t, sqlitestore.TaskCancelled, d.State, reason)
		case reason.Retryable():
			require.Equal(t, sqlitestore.TaskRetryWait, d.State, reason)
			require.Equal(t, reason.SystemFailure(), d.System, reason)
		default:
			require.Equal(t, sqlitestore.TaskFailed, d.State, reason)
			require.Contains(t, d.Why, "not retried: "+reason.Hint(), reason)
		}
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	r := kubexec.Result{Key: kubexec.TaskKey{Attempt: 2}, Reason: kubexec.ReasonFailed, ExitCode: 3, ContainerExited: true, Container: "base", Message: "line one\nline two"}
	require.Equal(t, "attempt 2 failed: exit code 3 in container base (line one line two)", driver.Describe(r))
}

// A pod that failed before any container exited has no exit code
// (ContainerExited false): the message says why, not an exit code of 0.
func TestDescribeFailedWithoutExitCode(t *testing.T) {
	t.Parallel()
	r := kubexec.Result{Key: kubexec.TaskKey{Attempt: 1}, Reason: kubexec.ReasonFailed, Message: "the pod failed before any container exited with an error"}
	require.Equal(t, "attempt 1 failed (the pod failed before any container exited with an error)", driver.Describe(r))
}

// A task whose code succeeded but whose XCom value is unusable ends
// XComFailed, with its container's exit code 0: the reason and the
// message say what happened.
func TestDescribeXComFailed(t *testing.T) {
	t.Parallel()
	r := kubexec.Result{Key: kubexec.TaskKey{Attempt: 1}, State: kubexec.StateFailed, Reason: kubexec.ReasonXComFailed,
		ContainerExited: true, Container: "base", Message: "the XCom value is not JSON"}
	require.Equal(t, "attempt 1 ended XComFailed (the XCom value is not JSON)", driver.Describe(r))
}

// An exit code of 0 is shown when the container exited with it.
func TestDescribeFailedWithExitCode0(t *testing.T) {
	t.Parallel()
	r := kubexec.Result{Key: kubexec.TaskKey{Attempt: 1}, Reason: kubexec.ReasonFailed, ContainerExited: true, Container: "sidecar"}
	require.Equal(t, "attempt 1 failed: exit code 0 in container sidecar", driver.Describe(r))
}
