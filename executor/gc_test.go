package executor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/watch"
)

func TestPlanGC(t *testing.T) {
	t.Parallel()
	delay := GCPolicy{Delay: time.Hour}
	tests := []struct {
		name                      string
		policy                    GCPolicy
		succeeded, force, deleted bool
		want                      gcPlan
	}{
		{"succeeded, default: deleted", GCPolicy{}, true, false, false, gcPlan{deleteNow: true}},
		{"failed, default: kept", GCPolicy{}, false, false, false, gcPlan{}},
		{"succeeded, kept on success", GCPolicy{KeepOnSuccess: true}, true, false, false, gcPlan{}},
		{"failed, deleted on failure", GCPolicy{DeleteOnFailure: true}, false, false, false, gcPlan{deleteNow: true}},
		{"succeeded, delayed", delay, true, false, false, gcPlan{deleteAfter: time.Hour}},
		{"failed, delayed but kept", delay, false, false, false, gcPlan{}},
		{"may still run: deleted at once whatever the policy", GCPolicy{KeepOnSuccess: true, Delay: time.Hour}, false, true, false, gcPlan{deleteNow: true}},
		{"may still run, already deleted by the stop step", GCPolicy{}, false, true, true, gcPlan{}},
		{"succeeded, already deleted", GCPolicy{}, true, false, true, gcPlan{}},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, planGC(tt.policy, tt.succeeded, tt.force, tt.deleted), tt.name)
	}
}

// TestClassifiedResult: the one place that turns a terminal classification
// into a Result keeps what the classification found, and dates a pod whose
// containers say nothing of their end at the moment it was seen.
func TestClassifiedResult(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	key := kubexec.TaskKey{WorkflowID: "w", TaskID: "t", RunID: "r", Attempt: 1}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}, Spec: corev1.PodSpec{NodeName: "n1"}}
	exited := watch.Classification{Phase: watch.PhaseTerminal, Reason: kubexec.ReasonFailed, Container: "base", ExitCode: 3, ContainerExited: true,
		Message: "exit 3", StartedAt: now.Add(-time.Minute), FinishedAt: now.Add(-time.Second)}
	r := classifiedResult(key, exited, pod, now)
	require.NoError(t, r.Validate())
	require.Equal(t, kubexec.Result{Key: key, State: kubexec.StateFailed, Reason: kubexec.ReasonFailed, ExitCode: 3, ContainerExited: true,
		Container: "base", Message: "exit 3", PodName: "p", Namespace: "ns", Node: "n1",
		StartedAt: now.Add(-time.Minute), FinishedAt: now.Add(-time.Second)}, r)

	lost := watch.Classification{Phase: watch.PhaseTerminal, Reason: kubexec.ReasonDisrupted, Message: "node lost"}
	r = classifiedResult(key, lost, pod, now)
	require.NoError(t, r.Validate())
	require.Equal(t, now, r.FinishedAt, "no end time in the pod: when it was seen")
	require.False(t, r.ContainerExited)
}

// TestBackoff: the nth failure waits base·2^(n-1), capped, plus at most a
// fifth of jitter.
func TestBackoff(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		failures int
		want     time.Duration
	}{
		{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second},
		{6, 32 * time.Second}, {7, time.Minute}, {1000, time.Minute},
	} {
		for range 50 {
			got := backoff(time.Second, time.Minute, tt.failures)
			require.GreaterOrEqual(t, got, tt.want, "failure %d", tt.failures)
			require.LessOrEqual(t, got, tt.want+tt.want/5, "failure %d", tt.failures)
		}
	}
}
