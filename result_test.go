package kubexec_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kubexec/kubexec"
)

func TestResultValidate(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ok := kubexec.Result{
		Key:             kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "r1", MapIndex: -1, Attempt: 1},
		State:           kubexec.StateFailed,
		Reason:          kubexec.ReasonOOMKilled,
		ExitCode:        137,
		ContainerExited: true,
		Container:       "base",
		StartedAt:       start,
		FinishedAt:      start.Add(time.Minute),
	}
	tests := []struct {
		name    string
		edit    func(*kubexec.Result)
		wantErr string
	}{
		{name: "valid", edit: func(*kubexec.Result) {}},
		{name: "success", edit: func(r *kubexec.Result) {
			r.State, r.Reason, r.ExitCode = kubexec.StateSucceeded, kubexec.ReasonSucceeded, 0
		}},
		{name: "xcom failed", edit: func(r *kubexec.Result) {
			r.Reason, r.ExitCode, r.Message = kubexec.ReasonXComFailed, 0, "the value is not JSON"
		}},
		{name: "no container exited", edit: func(r *kubexec.Result) {
			r.Reason, r.ExitCode, r.ContainerExited, r.Container = kubexec.ReasonUnschedulable, 0, false, ""
		}},
		{name: "no times", edit: func(r *kubexec.Result) { r.StartedAt, r.FinishedAt = time.Time{}, time.Time{} }},
		{name: "invalid key", edit: func(r *kubexec.Result) { r.Key.TaskID = "" }, wantErr: "TaskID"},
		{name: "running", edit: func(r *kubexec.Result) { r.State = kubexec.StateRunning }, wantErr: "not terminal"},
		{name: "unknown reason", edit: func(r *kubexec.Result) { r.Reason = "Oops" }, wantErr: "unknown reason"},
		{name: "succeeded with failure reason", edit: func(r *kubexec.Result) { r.State = kubexec.StateSucceeded }, wantErr: "goes with state"},
		{name: "failed with success reason", edit: func(r *kubexec.Result) { r.Reason = kubexec.ReasonSucceeded }, wantErr: "goes with state"},
		{name: "exited without a container", edit: func(r *kubexec.Result) { r.Container = "" }, wantErr: "containerExited is set but container is empty"},
		{name: "xcom failed but succeeded", edit: func(r *kubexec.Result) { r.Reason = kubexec.ReasonXComFailed; r.State = kubexec.StateSucceeded }, wantErr: "goes with state"},
		{name: "finished before start", edit: func(r *kubexec.Result) { r.FinishedAt = start.Add(-time.Second) }, wantErr: "before startedAt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := ok
			tt.edit(&r)
			err := r.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, kubexec.ErrInvalidResult)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestResultJSON(t *testing.T) {
	t.Parallel()
	r := kubexec.Result{
		Key:    kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "r1", MapIndex: -1, Attempt: 1},
		State:  kubexec.StateFailed,
		Reason: kubexec.ReasonLaunchRejected,
	}
	b, err := json.Marshal(r)
	require.NoError(t, err)
	require.JSONEq(t, `{"key":{"workflowID":"etl","taskID":"load","runID":"r1","mapIndex":-1,"attempt":1},
		"state":"failed","reason":"LaunchRejected","exitCode":0}`, string(b))
	var back kubexec.Result
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, r, back)

	// A container that exited says so; its exit code 0 is then a code.
	r.Reason, r.Container, r.ContainerExited, r.Message = kubexec.ReasonXComFailed, "base", true, "the value is not JSON"
	b, err = json.Marshal(r)
	require.NoError(t, err)
	require.JSONEq(t, `{"key":{"workflowID":"etl","taskID":"load","runID":"r1","mapIndex":-1,"attempt":1},
		"state":"failed","reason":"XComFailed","exitCode":0,"containerExited":true,"container":"base",
		"message":"the value is not JSON"}`, string(b))
	back = kubexec.Result{}
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, r, back)
}
