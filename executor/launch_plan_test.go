package executor

import (
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/podtemplate"
)

// TestLaunchReadyDecides checks the launcher's decisions at a given time,
// with no cluster: oldest first up to the open slots, attempts waiting for
// a create retry and namespaces backing off from a quota skipped (and the
// earliest of their times returned), nothing while creates pause for a
// 429 or the Lease is lost.
func TestLaunchReadyDecides(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	type queued struct {
		ns        string
		notBefore time.Duration // after t0; 0: none
	}
	tests := []struct {
		name      string
		queue     []queued
		open      int
		nsBackoff map[string]time.Duration
		pause     time.Duration
		leaseLost bool
		wantReady []int
		wantNext  time.Duration // after t0; -1: zero
	}{
		{"oldest first, up to the open slots", []queued{{"a", 0}, {"a", 0}, {"a", 0}}, 2, nil, 0, false, []int{0, 1}, -1},
		{"no open slot: nothing, and no time to wake at", []queued{{"a", 0}}, 0, nil, 0, false, nil, -1},
		{"a retry not yet due is skipped", []queued{{"a", time.Minute}, {"a", 0}}, 5, nil, 0, false, []int{1}, time.Minute},
		{"the earliest retry is returned", []queued{{"a", time.Minute}, {"a", 30 * time.Second}}, 5, nil, 0, false, nil, 30 * time.Second},
		{"a namespace backing off is skipped, others go", []queued{{"quota", 0}, {"b", 0}}, 5, map[string]time.Duration{"quota": 8 * time.Second}, 0, false, []int{1}, 8 * time.Second},
		{"a 429 pauses every create", []queued{{"a", 0}}, 5, nil, 3 * time.Second, false, nil, 3 * time.Second},
		{"a lost Lease launches nothing", []queued{{"a", 0}}, 5, nil, 0, true, nil, -1},
		{"a due retry goes", []queued{{"a", -time.Second}}, 5, nil, 0, false, []int{0}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &Executor{attempts: map[kubexec.TaskKey]*attempt{}, nsBackoff: map[string]backoffState{}, log: slog.New(slog.DiscardHandler)}
			e.readyCond = sync.NewCond(&e.mu)
			keys := make([]kubexec.TaskKey, len(tt.queue))
			for i, q := range tt.queue {
				keys[i] = kubexec.TaskKey{WorkflowID: "w", TaskID: "t" + strconv.Itoa(i), RunID: "r", Attempt: 1}
				ls := &launchState{spec: podtemplate.TaskSpec{Key: keys[i]}}
				if q.notBefore != 0 {
					ls.notBefore = t0.Add(q.notBefore)
				}
				e.trackLocked(&attempt{key: keys[i], stage: stageQueued, namespace: q.ns, launch: ls})
				e.queue = append(e.queue, keys[i])
			}
			for ns, d := range tt.nsBackoff {
				e.nsBackoff[ns] = backoffState{until: t0.Add(d)}
			}
			if tt.pause != 0 {
				e.pauseUntil = t0.Add(tt.pause)
			}
			e.leaseLost = tt.leaseLost

			next := e.launchReadyLocked(tt.open, t0)

			var ready []int
			for _, k := range e.ready {
				for i := range keys {
					if keys[i] == k {
						ready = append(ready, i)
					}
				}
			}
			require.Equal(t, tt.wantReady, ready)
			if tt.wantNext < 0 {
				require.True(t, next.IsZero(), "next %s", next)
			} else {
				require.Equal(t, t0.Add(tt.wantNext), next)
			}
			for i, k := range keys {
				a := e.attempts[k]
				if slices.Contains(ready, i) {
					require.Equal(t, stageLaunching, a.stage)
					require.Equal(t, t0, a.launch.firstTry, "QueuedTimeout counts from the first slot")
					require.NotContains(t, e.queue, k)
				} else {
					require.Equal(t, stageQueued, a.stage)
					require.Contains(t, e.queue, k, "still queued, in order")
				}
			}
		})
	}
}
