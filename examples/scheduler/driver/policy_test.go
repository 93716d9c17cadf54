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
		{"revoked is cancelled", kubexec.ReasonRevoked, 0, 0, sqlitestore.TaskCancelled, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := kubexec.Result{Key: kubexec.TaskKey{WorkflowID: "w", TaskID: "t", RunID: "w-1", MapIndex: -1, Attempt: 1},
				State: tc.reason.State(), Reason: tc.reason, ExitCode: 3, Container: "base"}
			d := driver.Decide(spec, sqlitestore.Task{RetriesUsed: tc.retriesUsed, SystemRetries: tc.systemRetries}, r)
			require.Equal(t, tc.wantState, d.State, d.Why)
			require.Equal(t, tc.wantSystem, d.System, d.Why)
			require.Equal(t, tc.wantDelay, d.Delay, d.Why)
			require.NotEmpty(t, d.Why)
		})
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	r := kubexec.Result{Key: kubexec.TaskKey{Attempt: 2}, Reason: kubexec.ReasonFailed, ExitCode: 3, Container: "base", Message: "line one\nline two"}
	require.Equal(t, "attempt 2 failed: exit code 3 in container base (line one line two)", driver.Describe(r))
}

// A task whose code succeeded but whose XCom value is unusable fails with
// exit code 0: the message says why, not the exit code.
func TestDescribeFailedWithoutExitCode(t *testing.T) {
	t.Parallel()
	r := kubexec.Result{Key: kubexec.TaskKey{Attempt: 1}, Reason: kubexec.ReasonFailed, Container: "base", Message: "the task succeeded but its XCom value is unusable"}
	require.Equal(t, "attempt 1 failed (the task succeeded but its XCom value is unusable)", driver.Describe(r))
}
