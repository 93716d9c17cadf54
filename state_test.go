package kubexec_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kubexec/kubexec"
)

func TestReasonTaxonomy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		reason    kubexec.Reason
		retryable bool
		system    bool
		state     kubexec.State
	}{
		{kubexec.ReasonSucceeded, false, false, kubexec.StateSucceeded},
		{kubexec.ReasonFailed, true, false, kubexec.StateFailed},
		{kubexec.ReasonOOMKilled, false, false, kubexec.StateFailed},
		{kubexec.ReasonImagePullError, false, false, kubexec.StateFailed},
		{kubexec.ReasonConfigError, false, false, kubexec.StateFailed},
		{kubexec.ReasonUnschedulable, true, true, kubexec.StateFailed},
		{kubexec.ReasonDeadlineExceeded, false, false, kubexec.StateFailed},
		{kubexec.ReasonDisrupted, true, true, kubexec.StateFailed},
		{kubexec.ReasonDeletedExternally, true, true, kubexec.StateFailed},
		{kubexec.ReasonLaunchRejected, false, true, kubexec.StateFailed},
		{kubexec.ReasonRevoked, false, false, kubexec.StateFailed},
		{kubexec.ReasonQueuedTimeout, true, true, kubexec.StateFailed},
		{kubexec.ReasonXComFailed, false, false, kubexec.StateFailed},
		{kubexec.ReasonExecutorError, true, true, kubexec.StateFailed},
	}
	require.Len(t, kubexec.Reasons(), len(tests), "every reason is in this table")
	for i, tt := range tests {
		t.Run(tt.reason.String(), func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.reason, kubexec.Reasons()[i])
			require.True(t, tt.reason.Known())
			require.Equal(t, tt.retryable, tt.reason.Retryable(), "Retryable")
			require.Equal(t, tt.system, tt.reason.SystemFailure(), "SystemFailure")
			require.Equal(t, tt.state, tt.reason.State())
			require.NotEmpty(t, tt.reason.Hint())
		})
	}
}

func TestReasonUnknown(t *testing.T) {
	t.Parallel()
	for _, r := range []kubexec.Reason{"", "succeeded", "Evicted"} {
		require.False(t, r.Known(), r)
		require.False(t, r.Retryable(), r)
		require.False(t, r.SystemFailure(), r)
		require.Empty(t, r.Hint(), r)
		require.Equal(t, kubexec.StateFailed, r.State(), r)
	}
}

func TestState(t *testing.T) {
	t.Parallel()
	tests := []struct {
		state    kubexec.State
		known    bool
		terminal bool
	}{
		{kubexec.StateQueued, true, false},
		{kubexec.StateLaunching, true, false},
		{kubexec.StatePending, true, false},
		{kubexec.StateRunning, true, false},
		{kubexec.StateSucceeded, true, true},
		{kubexec.StateFailed, true, true},
		{"", false, false},
		{"Running", false, false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.known, tt.state.Known(), tt.state)
		require.Equal(t, tt.terminal, tt.state.Terminal(), tt.state)
	}
}
