package executor

import (
	"log/slog"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kubexec/kubexec"
)

// TestSlotTallyFollowsAttempts walks attempts through random legal stage
// moves, with removals and replacements, and checks after each step that
// the tally Stats reads equals a count over the tracked attempts.
func TestSlotTallyFollowsAttempts(t *testing.T) {
	e := &Executor{attempts: map[kubexec.TaskKey]*attempt{}, log: slog.New(slog.DiscardHandler)}
	rng := rand.New(rand.NewPCG(1, 2))
	key := func(i int) kubexec.TaskKey {
		return kubexec.TaskKey{WorkflowID: "w", TaskID: "t" + strconv.Itoa(i), RunID: "r", Attempt: 1}
	}
	recount := func() slotTally {
		var want slotTally
		for _, a := range e.attempts {
			want.add(a.stage, 1)
		}
		return want
	}
	for step := range 5000 {
		k := key(rng.IntN(20))
		a, ok := e.attempts[k]
		switch {
		case !ok:
			e.trackLocked(&attempt{key: k, stage: []stage{stageQueued, stageLaunched}[rng.IntN(2)]})
		case rng.IntN(50) == 0:
			// Replaced by another attempt of the key; the old one still
			// moves, and must not count.
			e.trackLocked(&attempt{key: k, stage: stageQueued})
			if next := transitions[a.stage]; len(next) > 0 {
				e.moveLocked(a, next[rng.IntN(len(next))])
			}
		case len(transitions[a.stage]) == 0:
			e.untrackLocked(a)
		default:
			next := transitions[a.stage]
			e.moveLocked(a, next[rng.IntN(len(next))])
		}
		require.Equal(t, recount(), e.tally, "step %d", step)
	}
}
