package watch

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubexec/kubexec"
)

// skewed moves pod's timestamps (creation, start, conditions) by skew, as
// if the machines that wrote them had clocks skew ahead of the caller's.
// Container state times are left alone: no timeout reads them.
func skewed(skew time.Duration, pod *corev1.Pod) *corev1.Pod {
	shift := func(t *metav1.Time) {
		if t != nil && !t.IsZero() {
			t.Time = t.Add(skew)
		}
	}
	shift(&pod.CreationTimestamp)
	shift(pod.Status.StartTime)
	for i := range pod.Status.Conditions {
		shift(&pod.Status.Conditions[i].LastTransitionTime)
	}
	return pod
}

// TestClassifyObservedClockSkew: with Observations, each timeout ends the
// attempt exactly its duration after the caller first saw the pod in the
// state it counts from, on the caller's clock, whether the pod's
// timestamps (written by the API server, the scheduler, the node) are ten
// minutes ahead of that clock, behind it, or right; RecheckAt says when.
// Without Observations the same pods time out at once or ten minutes late.
func TestClassifyObservedClockSkew(t *testing.T) {
	t.Parallel()
	opts := ClassifyOptions{}.withDefaults()
	kinds := []struct {
		name    string
		pod     func() *corev1.Pod // as the caller first sees it, at t0 on the pod's clock
		timeout time.Duration
		reason  kubexec.Reason
	}{
		{
			name: "unschedulable",
			pod: func() *corev1.Pod {
				return testPod(condition(corev1.PodScheduled, corev1.ConditionFalse, "Unschedulable", "0/3 nodes are available", 0))
			},
			timeout: opts.PendingTimeout, reason: kubexec.ReasonUnschedulable,
		},
		{
			name:    "no scheduler acts on it",
			pod:     func() *corev1.Pod { return testPod(withScheduler("no-such-scheduler")) },
			timeout: opts.PendingTimeout, reason: kubexec.ReasonUnschedulable,
		},
		{
			name: "image pull",
			pod: func() *corev1.Pod {
				return testPod(condition(corev1.PodScheduled, corev1.ConditionTrue, "", "", 0), boundTo("n1"), started(0),
					status(false, waiting("base", "pyhton:3.12", "ErrImagePull", "pull access denied")))
			},
			timeout: opts.ImagePullGrace, reason: kubexec.ReasonImagePullError,
		},
		{
			name: "missing Secret",
			pod: func() *corev1.Pod {
				return testPod(condition(corev1.PodScheduled, corev1.ConditionTrue, "", "", 0), boundTo("n1"), started(0),
					status(false, waiting("base", "python:3.12", "CreateContainerConfigError", `secret "db" not found`)))
			},
			timeout: opts.ConfigErrorGrace, reason: kubexec.ReasonConfigError,
		},
		{
			name: "no container starts",
			pod: func() *corev1.Pod {
				return testPod(condition(corev1.PodScheduled, corev1.ConditionTrue, "", "", 0), boundTo("n1"), started(0),
					status(false, waiting("base", "python:3.12", "ContainerCreating", "")))
			},
			timeout: opts.StartTimeout, reason: kubexec.ReasonConfigError,
		},
	}
	skews := []struct {
		name string
		skew time.Duration
	}{
		{"pod's clocks 10m ahead", 10 * time.Minute},
		{"pod's clocks 10m behind", -10 * time.Minute},
		{"clocks agree", 0},
	}
	for _, kind := range kinds {
		for _, sk := range skews {
			t.Run(kind.name+", "+sk.name, func(t *testing.T) {
				t.Parallel()
				pod := skewed(sk.skew, kind.pod())
				seen := t0 // the caller's clock when it first sees the pod
				var obs Observations
				c := ClassifyObserved(pod, seen, opts, &obs)
				require.False(t, c.Terminal(), "%s %s at first sight: %s", c.Phase, c.Reason, c.Message)
				require.Equal(t, seen.Add(kind.timeout), c.RecheckAt, "RecheckAt: the timeout after first seen")
				// Seen again and again until just before the timeout: the
				// first sighting stays the start.
				for _, d := range []time.Duration{time.Second, kind.timeout / 2, kind.timeout - time.Nanosecond} {
					c = ClassifyObserved(pod, seen.Add(d), opts, &obs)
					require.False(t, c.Terminal(), "after %s: %s %s: %s", d, c.Phase, c.Reason, c.Message)
					require.Equal(t, seen.Add(kind.timeout), c.RecheckAt, "RecheckAt after %s", d)
				}
				c = ClassifyObserved(pod, seen.Add(kind.timeout), opts, &obs)
				require.True(t, c.Terminal(), "at the timeout: %s: %s", c.Phase, c.Message)
				require.Equal(t, kind.reason, c.Reason, c.Message)
				require.Equal(t, seen.Add(kind.timeout), c.FinishedAt)
				require.Zero(t, c.RecheckAt)
				// A trimmed pod is classified the same.
				trimmedObs := Observations{}
				ClassifyObserved(Trim(pod), seen, opts, &trimmedObs)
				require.Equal(t, obs, trimmedObs, "observations of the trimmed pod")
				require.Equal(t, c, ClassifyObserved(Trim(pod), seen.Add(kind.timeout), opts, &trimmedObs))

				// What Observations fix: the pod's own timestamps, compared
				// with the caller's clock, end the attempt at first sight
				// when they are behind, and only ten minutes late when
				// they are ahead.
				pure := Classify(pod, seen, opts)
				switch {
				case sk.skew < 0:
					require.True(t, pure.Terminal(), "without Observations, the timeout of a pod whose clocks are behind fires at once")
				case sk.skew > 0:
					require.Equal(t, seen.Add(sk.skew+kind.timeout), pure.RecheckAt, "without Observations, the timeout fires late")
				default:
					require.Equal(t, seen.Add(kind.timeout), pure.RecheckAt, "with clocks that agree, both count alike")
				}
			})
		}
	}
}

// TestClassifyObservedSequence follows one pod through the states that
// timeouts count from, with its timestamps an hour off the caller's clock:
// each timeout counts from when the caller first saw its state, a
// scheduling gate stops the wait for a node, and a pod that reaches its
// node starts the start timeout afresh.
func TestClassifyObservedSequence(t *testing.T) {
	t.Parallel()
	opts := ClassifyOptions{PendingTimeout: 5 * time.Minute, StartTimeout: 10 * time.Minute, ImagePullGrace: 3 * time.Minute}
	const skew = -time.Hour // the pod's clocks are an hour behind
	minute := time.Minute
	gated := func() *corev1.Pod {
		return skewed(skew, testPod(condition(corev1.PodScheduled, corev1.ConditionFalse, "SchedulingGated", "Scheduling is blocked due to non-empty scheduling gates", 0)))
	}
	unscheduled := func() *corev1.Pod { return skewed(skew, testPod()) }
	unschedulable := func() *corev1.Pod {
		return skewed(skew, testPod(condition(corev1.PodScheduled, corev1.ConditionFalse, "Unschedulable", "0/3 nodes are available", 0)))
	}
	creating := func() *corev1.Pod {
		return skewed(skew, testPod(condition(corev1.PodScheduled, corev1.ConditionTrue, "", "", 0), boundTo("n1"), started(0),
			status(false, waiting("base", "python:3.12", "ContainerCreating", ""))))
	}
	pulling := func() *corev1.Pod {
		return skewed(skew, testPod(condition(corev1.PodScheduled, corev1.ConditionTrue, "", "", 0), boundTo("n1"), started(0),
			status(false, waiting("base", "python:3.12", "ImagePullBackOff", "Back-off pulling image"))))
	}
	type step struct {
		at        time.Duration // after t0 on the caller's clock
		pod       *corev1.Pod
		terminal  kubexec.Reason // "" when the attempt goes on
		recheckAt time.Duration  // after t0; -1 for none
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{
			name: "waiting for a scheduler, then unschedulable: one wait for a node, from the first sighting",
			steps: []step{
				{at: 0, pod: unscheduled(), recheckAt: 5 * minute},
				{at: 3 * minute, pod: unschedulable(), recheckAt: 5 * minute},
				{at: 5 * minute, pod: unschedulable(), terminal: kubexec.ReasonUnschedulable},
			},
		},
		{
			name: "gated for an hour, then waiting: the wait starts when the gates are gone",
			steps: []step{
				{at: 0, pod: gated(), recheckAt: -1},
				{at: 2 * minute, pod: unscheduled(), recheckAt: 7 * minute},
				{at: 4 * minute, pod: gated(), recheckAt: -1},
				{at: 60 * minute, pod: unschedulable(), recheckAt: 65 * minute},
				{at: 65*minute - time.Nanosecond, pod: unschedulable(), recheckAt: 65 * minute},
				{at: 65 * minute, pod: unschedulable(), terminal: kubexec.ReasonUnschedulable},
			},
		},
		{
			name: "scheduled after waiting: the start timeout counts from the first sighting on the node",
			steps: []step{
				{at: 0, pod: unschedulable(), recheckAt: 5 * minute},
				{at: 4 * minute, pod: creating(), recheckAt: 14 * minute},
				{at: 6 * minute, pod: pulling(), recheckAt: 7 * minute},
				{at: 7 * minute, pod: pulling(), terminal: kubexec.ReasonImagePullError},
			},
		},
		{
			name: "first seen on its node (after a restart): nothing counts from before",
			steps: []step{
				{at: 0, pod: creating(), recheckAt: 10 * minute},
				{at: 10*minute - time.Nanosecond, pod: creating(), recheckAt: 10 * minute},
				{at: 10 * minute, pod: creating(), terminal: kubexec.ReasonConfigError},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var obs Observations
			for i, s := range tc.steps {
				c := ClassifyObserved(s.pod, t0.Add(s.at), opts, &obs)
				if s.terminal != "" {
					require.True(t, c.Terminal(), "step %d: %s: %s", i, c.Phase, c.Message)
					require.Equal(t, s.terminal, c.Reason, "step %d: %s", i, c.Message)
					continue
				}
				require.False(t, c.Terminal(), "step %d: %s: %s", i, c.Reason, c.Message)
				if s.recheckAt < 0 {
					require.Zero(t, c.RecheckAt, "step %d", i)
				} else {
					require.Equal(t, t0.Add(s.recheckAt), c.RecheckAt, "step %d", i)
				}
			}
		})
	}
}

// TestClassifyObservedMatchesClassify: the classification rules are the
// same with and without Observations (only where timeouts count from
// differs), and a nil Observations is Classify: every case of the
// Classify table, classified with Observations first made at the pod's
// own times, gives the same result.
func TestClassifyObservedMatchesClassify(t *testing.T) {
	t.Parallel()
	for _, tc := range classifyCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			when := now
			if !tc.now.IsZero() {
				when = tc.now
			}
			want := Classify(tc.pod, when, tc.opts)
			require.Equal(t, want, ClassifyObserved(tc.pod, when, tc.opts, nil), "nil Observations")
			if tc.pod == nil {
				return
			}
			// Observations first made when the pod's timestamps say the
			// states began: the timeouts end where Classify's do.
			obs := Observations{Unscheduled: pendingSince(tc.pod, podCondition(tc.pod, corev1.PodScheduled), nil)}
			if onNode(tc.pod) {
				// Classify counts a container's wait (image pull, config
				// error) from the pod's start, the start timeout from its
				// scheduling: Observations have one time for both.
				obs.Scheduled = scheduledSince(tc.pod, nil)
				if want.Container != "" {
					obs.Scheduled = pullSince(tc.pod, nil)
				}
			}
			got := ClassifyObserved(tc.pod, when, tc.opts, &obs)
			require.Equal(t, want.Phase, got.Phase, "phase; message: %s", got.Message)
			require.Equal(t, want.Reason, got.Reason, "reason; message: %s", got.Message)
			require.Equal(t, want.Message, got.Message)
			require.Equal(t, want.RecheckAt, got.RecheckAt)
		})
	}
}
