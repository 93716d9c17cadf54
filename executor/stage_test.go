package executor

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/util/workqueue"

	"github.com/kubexec/kubexec"
)

// Every test of the package (the cluster tests included) fails on a stage
// move the transitions table refuses: in production it is only logged.
func init() {
	illegalTransition = func(err error) { panic(err) }
}

var allStages = []stage{
	stageQueued, stageLaunching, stageCancelling, stageLaunched, stageVerifying,
	stageStopping, stageFinishing, stageReleasing, stageDone,
}

func TestStageTransitions(t *testing.T) {
	t.Parallel()
	type edge struct{ from, to stage }
	legal := map[edge]bool{
		{stageQueued, stageLaunching}:     true,
		{stageQueued, stageLaunched}:      true,
		{stageQueued, stageStopping}:      true,
		{stageQueued, stageFinishing}:     true,
		{stageLaunching, stageQueued}:     true,
		{stageLaunching, stageLaunched}:   true,
		{stageLaunching, stageCancelling}: true,
		{stageLaunching, stageStopping}:   true,
		{stageLaunching, stageFinishing}:  true,
		{stageCancelling, stageStopping}:  true,
		{stageCancelling, stageFinishing}: true,
		{stageLaunched, stageVerifying}:   true,
		{stageLaunched, stageStopping}:    true,
		{stageLaunched, stageFinishing}:   true,
		{stageVerifying, stageLaunched}:   true,
		{stageVerifying, stageStopping}:   true,
		{stageVerifying, stageFinishing}:  true,
		{stageVerifying, stageDone}:       true,
		{stageStopping, stageFinishing}:   true,
		{stageFinishing, stageReleasing}:  true,
		{stageReleasing, stageDone}:       true,
	}
	// Every pair, so that an edge added to transitions without a line
	// here fails too.
	for _, from := range append(allStages, stage(200)) {
		for _, to := range append(allStages, stage(200)) {
			want := legal[edge{from, to}]
			t.Run(fmt.Sprintf("%s->%s", from, to), func(t *testing.T) {
				a := &attempt{stage: from}
				err := a.moveTo(to)
				if want {
					require.NoError(t, err)
					require.Equal(t, to, a.stage)
					return
				}
				require.ErrorIs(t, err, errIllegalTransition)
				require.Equal(t, from, a.stage, "a refused move leaves the stage as it was")
			})
		}
	}
}

// TestStageLife walks the paths an attempt takes, as the executor moves it.
func TestStageLife(t *testing.T) {
	t.Parallel()
	paths := map[string][]stage{
		"succeeds":                      {stageQueued, stageLaunching, stageLaunched, stageFinishing, stageReleasing, stageDone},
		"create refused then retried":   {stageQueued, stageLaunching, stageQueued, stageLaunching, stageLaunched, stageFinishing, stageReleasing, stageDone},
		"deleted by someone else":       {stageQueued, stageLaunching, stageLaunched, stageStopping, stageFinishing, stageReleasing, stageDone},
		"revoked while queued":          {stageQueued, stageFinishing, stageReleasing, stageDone},
		"revoked during its create":     {stageQueued, stageLaunching, stageCancelling, stageStopping, stageFinishing, stageReleasing, stageDone},
		"rejected":                      {stageQueued, stageLaunching, stageFinishing, stageReleasing, stageDone},
		"vanished":                      {stageQueued, stageLaunching, stageLaunched, stageVerifying, stageFinishing, stageReleasing, stageDone},
		"adopted by another executor":   {stageLaunched, stageVerifying, stageDone},
		"back in the watch":             {stageLaunched, stageVerifying, stageLaunched, stageFinishing},
		"timed out, earlier create ran": {stageQueued, stageLaunching, stageQueued, stageStopping, stageFinishing},
	}
	for name, path := range paths {
		t.Run(name, func(t *testing.T) {
			a := &attempt{stage: path[0]}
			for _, s := range path[1:] {
				require.NoError(t, a.moveTo(s))
			}
		})
	}
}

func TestStageQueries(t *testing.T) {
	t.Parallel()
	for _, s := range allStages {
		require.False(t, s.hasResult() && s.running(), "%s: an attempt with a result holds no slot", s)
	}
	require.True(t, stageCancelling.hasResult())
	require.True(t, stageLaunching.running())
	require.False(t, stageQueued.running())
	require.Equal(t, "stage(200)", stage(200).String())

	tests := []struct {
		name     string
		a        attempt
		hasPod   bool
		settled  stage
		creating bool
	}{
		{"never created", attempt{stage: stageQueued}, false, stageFinishing, false},
		{"create outcome unknown", attempt{stage: stageQueued, pod: podMaybe, podName: "p", podMayRun: true}, true, stageStopping, false},
		{"exists and may run", attempt{stage: stageLaunched, pod: podExists, podName: "p", podMayRun: true}, true, stageStopping, false},
		{"exists and ended", attempt{stage: stageLaunched, pod: podExists, podName: "p"}, true, stageFinishing, false},
		{"vanished", attempt{stage: stageVerifying, pod: podGone, podName: "p", podMayRun: true}, false, stageFinishing, false},
		{"create in flight", attempt{stage: stageLaunching}, false, stageFinishing, true},
		{"revoked during its create", attempt{stage: stageCancelling, podMayRun: true}, false, stageFinishing, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.hasPod, tt.a.hasPod())
			require.Equal(t, tt.settled, tt.a.settledStage())
			require.Equal(t, tt.creating, tt.a.creating())
		})
	}
}

// TestBrokenRecordEndsTheAttempt: a move that breaks an attempt's rules is
// refused, and the attempt ends with ReasonExecutorError instead of staying
// stranded in its slot; its pod, which may still run, is stopped first.
// (Not parallel: it turns off the panic of the package's tests.)
func TestBrokenRecordEndsTheAttempt(t *testing.T) {
	var refused []error
	saved := illegalTransition
	illegalTransition = func(err error) { refused = append(refused, err) }
	defer func() { illegalTransition = saved }()

	e := &Executor{
		attempts: map[kubexec.TaskKey]*attempt{},
		log:      slog.New(slog.DiscardHandler),
		cfg:      Config{Parallelism: 4},
		results:  workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[kubexec.TaskKey]()),
	}
	defer e.results.ShutDown()
	k := kubexec.TaskKey{WorkflowID: "w", TaskID: "t", RunID: "r", Attempt: 1}
	a := &attempt{key: k, stage: stageLaunched, namespace: "ns", podName: "p", pod: podExists}
	e.mu.Lock()
	e.trackLocked(a)
	require.Equal(t, 1, e.statsLocked().Running)
	a.release.released = true // a record that breaks the rules
	require.False(t, e.moveLocked(a, stageFinishing))
	st := e.statsLocked()
	e.mu.Unlock()

	require.Len(t, refused, 1)
	require.ErrorIs(t, refused[0], errIllegalTransition)
	require.ErrorContains(t, refused[0], "it was released")
	require.Equal(t, stageStopping, a.stage, "its pod may still run: stopped before the result is saved")
	require.True(t, a.podMayRun)
	require.NotNil(t, a.result)
	require.Equal(t, kubexec.ReasonExecutorError, a.result.Reason)
	require.True(t, a.result.Reason.SystemFailure())
	require.Contains(t, a.result.Message, "it was released")
	require.Zero(t, st.Running, "the slot is free")
	require.Equal(t, 1, st.Finishing)
	require.Equal(t, 1, e.results.Len(), "handed to the result workers")

	// An attempt whose outcome is known is left to its steps.
	b := &attempt{key: kubexec.TaskKey{WorkflowID: "w", TaskID: "u", RunID: "r", Attempt: 1}, stage: stageFinishing}
	r := kubexec.Result{Reason: kubexec.ReasonSucceeded}
	b.result = &r
	e.mu.Lock()
	e.trackLocked(b)
	require.False(t, e.moveLocked(b, stageLaunched))
	e.mu.Unlock()
	require.Equal(t, stageFinishing, b.stage)
	require.Equal(t, kubexec.ReasonSucceeded, b.result.Reason)
}
