package kubexec_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kubexec/kubexec"
)

// The expected values come from Airflow's make_safe_label_value
// (cncf.kubernetes provider), run on the same inputs.
func TestSafeLabelValueAirflowParity(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"my_dag", "my_dag"},
		{"my dag", "mydag-40365f84e"},
		{"-lead", "lead-7f113dd80"},
		{"trail_", "trail-0fc596528"},
		{strings.Repeat("a", 63), strings.Repeat("a", 63)},
		{strings.Repeat("a", 64), strings.Repeat("a", 53) + "-014842d48"},
		{"manual__2024-01-01T00:00:00+00:00", "manual__2024-01-01T0000000000-701821d7a"},
		{"scheduled__2024-01-01T00:00:00.123456+00:00", "scheduled__2024-01-01T000000.1234560000-110677869"},
		{"dag.with.dots", "dag.with.dots"},
		{"ünïcode", "ncode-cd1850cd2"},
		{strings.Repeat("x", 53) + "!", strings.Repeat("x", 53) + "-c2372f2d0"},
		{"a-b", "a-b"},
		{"a!b", "ab-da9a1e3d7"},
		{"a_!", "a-a42f2e3ef"},
		{"", ""},
		// Airflow returns "-891b8af76" here, which is not a valid label
		// value; kubexec drops the leading "-".
		{"_.-", "891b8af76"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got := kubexec.SafeLabelValue(tt.in)
			require.Equal(t, tt.want, got)
			require.Empty(t, content.IsLabelValue(got))
		})
	}
}

func TestValidateExecutorID(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"scheduler-1", "a", "A.b_c-9", strings.Repeat("x", 63)} {
		require.NoError(t, kubexec.ValidateExecutorID(id), id)
	}
	for _, id := range []string{"", "-x", "x-", "a b", "a,b", "a=b", "x)", strings.Repeat("x", 64), "日本"} {
		err := kubexec.ValidateExecutorID(id)
		require.ErrorIs(t, err, kubexec.ErrInvalidExecutorID, id)
	}
}

func TestLabelsAndAnnotations(t *testing.T) {
	t.Parallel()
	key := kubexec.TaskKey{WorkflowID: "my dag", TaskID: "load", RunID: "manual__2024-01-01T00:00:00+00:00", MapIndex: 7, Attempt: 3}
	l, err := kubexec.Labels("sched-1", key)
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"kubexec.io/managed-by": "kubexec",
		"kubexec.io/executor":   "sched-1",
		"kubexec.io/workflow":   "mydag-40365f84e",
		"kubexec.io/task":       "load",
		"kubexec.io/run":        "manual__2024-01-01T0000000000-701821d7a",
		"kubexec.io/map-index":  "7",
		"kubexec.io/attempt":    "3",
	}, l)
	a, err := kubexec.Annotations(key)
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"kubexec.io/workflow":  "my dag",
		"kubexec.io/task":      "load",
		"kubexec.io/run":       "manual__2024-01-01T00:00:00+00:00",
		"kubexec.io/map-index": "7",
		"kubexec.io/attempt":   "3",
	}, a)

	key.MapIndex = kubexec.NotMapped
	l, err = kubexec.Labels("sched-1", key)
	require.NoError(t, err)
	require.NotContains(t, l, kubexec.LabelMapIndex, "no map-index label for unmapped tasks")

	_, err = kubexec.Labels("bad id", key)
	require.ErrorIs(t, err, kubexec.ErrInvalidExecutorID)
	_, err = kubexec.Labels("ok", kubexec.TaskKey{})
	require.ErrorIs(t, err, kubexec.ErrInvalidKey)
	_, err = kubexec.Annotations(kubexec.TaskKey{})
	require.ErrorIs(t, err, kubexec.ErrInvalidKey)
}

func TestApplyMetadata(t *testing.T) {
	t.Parallel()
	key := kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "r1", MapIndex: kubexec.NotMapped, Attempt: 1}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name:         "from-template",
		GenerateName: "gen-",
		Labels: map[string]string{
			"team":                 "data",
			kubexec.LabelExecutor:  "someone-else",
			kubexec.LabelDone:      "true",
			kubexec.LabelMapIndex:  "5",
			kubexec.LabelManagedBy: "me",
		},
		Annotations: map[string]string{"note": "kept", kubexec.AnnotationTask: "forged"},
		Finalizers:  []string{"example.com/other"},
	}}
	require.NoError(t, kubexec.ApplyMetadata(pod, "sched-1", key))

	name, err := kubexec.PodName(key)
	require.NoError(t, err)
	require.Equal(t, name, pod.Name)
	require.Empty(t, pod.GenerateName)
	want, err := kubexec.Labels("sched-1", key)
	require.NoError(t, err)
	want["team"] = "data"
	require.Equal(t, want, pod.Labels)
	require.Equal(t, "kept", pod.Annotations["note"])
	got, err := kubexec.KeyFromObject(pod)
	require.NoError(t, err)
	require.Equal(t, key, got)
	require.Equal(t, []string{"example.com/other", kubexec.FinalizerResultTracking}, pod.Finalizers)

	require.NoError(t, kubexec.ApplyMetadata(pod, "sched-1", key))
	require.Equal(t, []string{"example.com/other", kubexec.FinalizerResultTracking}, pod.Finalizers, "applying twice adds the finalizer once")

	before := pod.DeepCopy()
	require.ErrorIs(t, kubexec.ApplyMetadata(pod, "", key), kubexec.ErrInvalidExecutorID)
	require.ErrorIs(t, kubexec.ApplyMetadata(pod, "sched-1", kubexec.TaskKey{}), kubexec.ErrInvalidKey)
	require.Equal(t, before, pod, "unchanged on error")
}

func TestKeyFromAnnotationsErrors(t *testing.T) {
	t.Parallel()
	valid := map[string]string{
		kubexec.AnnotationWorkflow: "etl", kubexec.AnnotationTask: "load", kubexec.AnnotationRun: "r1",
		kubexec.AnnotationMapIndex: "-1", kubexec.AnnotationAttempt: "2",
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for kk, vv := range valid {
			m[kk] = vv
		}
		if v == "<delete>" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name       string
		ann        map[string]string
		annotation string // the annotation named by the *MetadataError
	}{
		{"missing attempt", with(kubexec.AnnotationAttempt, "<delete>"), kubexec.AnnotationAttempt},
		{"missing run", with(kubexec.AnnotationRun, "<delete>"), kubexec.AnnotationRun},
		{"attempt not a number", with(kubexec.AnnotationAttempt, "two"), kubexec.AnnotationAttempt},
		{"attempt not canonical", with(kubexec.AnnotationAttempt, "+2"), kubexec.AnnotationAttempt},
		{"attempt with leading zero", with(kubexec.AnnotationAttempt, "02"), kubexec.AnnotationAttempt},
		{"negative attempt", with(kubexec.AnnotationAttempt, "-3"), kubexec.AnnotationAttempt},
		{"map index too small", with(kubexec.AnnotationMapIndex, "-2"), kubexec.AnnotationMapIndex},
		{"map index overflow", with(kubexec.AnnotationMapIndex, "99999999999999999999"), kubexec.AnnotationMapIndex},
		{"empty task", with(kubexec.AnnotationTask, ""), kubexec.AnnotationTask},
		{"invalid utf-8", with(kubexec.AnnotationWorkflow, "\xff"), kubexec.AnnotationWorkflow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := kubexec.KeyFromAnnotations(tt.ann)
			require.ErrorIs(t, err, kubexec.ErrMalformedMetadata)
			var me *kubexec.MetadataError
			require.ErrorAs(t, err, &me)
			require.Equal(t, tt.annotation, me.Annotation)
			require.Contains(t, err.Error(), tt.annotation)
		})
	}

	_, err := kubexec.KeyFromAnnotations(map[string]string{"other": "x"})
	require.ErrorIs(t, err, kubexec.ErrNotManaged)
	_, err = kubexec.KeyFromAnnotations(nil)
	require.ErrorIs(t, err, kubexec.ErrNotManaged)

	key, err := kubexec.KeyFromAnnotations(valid)
	require.NoError(t, err)
	require.Equal(t, kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "r1", MapIndex: -1, Attempt: 2}, key)
}

func TestSelectors(t *testing.T) {
	t.Parallel()
	require.Equal(t, "kubexec.io/managed-by=kubexec", kubexec.ManagedSelector().String())

	sel, err := kubexec.ExecutorSelector("sched-1")
	require.NoError(t, err)
	require.Equal(t, "kubexec.io/executor=sched-1,kubexec.io/managed-by=kubexec", sel.String())

	active, err := kubexec.ActiveSelector("sched-1")
	require.NoError(t, err)
	require.Equal(t, "kubexec.io/done!=true,kubexec.io/executor=sched-1,kubexec.io/managed-by=kubexec", active.String())

	key := kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", MapIndex: -1, Attempt: 1}
	mine, err := kubexec.Labels("sched-1", key)
	require.NoError(t, err)
	theirs, err := kubexec.Labels("sched-2", key)
	require.NoError(t, err)
	done := labels.Merge(mine, labels.Set{kubexec.LabelDone: kubexec.DoneValue})

	require.True(t, active.Matches(labels.Set(mine)))
	require.False(t, active.Matches(labels.Set(theirs)))
	require.False(t, active.Matches(done))
	require.True(t, sel.Matches(done))
	require.True(t, kubexec.ManagedSelector().Matches(labels.Set(theirs)))
	require.False(t, kubexec.ManagedSelector().Matches(labels.Set{"app": "x"}))

	// Executor ids that would change a selector's meaning are rejected.
	for _, id := range []string{"", "a,kubexec.io/done=true", "a!=b", "x in (a,b)", "a b", "a=b"} {
		_, err := kubexec.ActiveSelector(id)
		require.ErrorIs(t, err, kubexec.ErrInvalidExecutorID, id)
		_, err = kubexec.ExecutorSelector(id)
		require.ErrorIs(t, err, kubexec.ErrInvalidExecutorID, id)
	}

	// A selector round-trips through its string form, as sent to the API server.
	parsed, err := labels.Parse(active.String())
	require.NoError(t, err)
	require.Equal(t, active.String(), parsed.String())
}

func TestDoneAndLeaseSelectors(t *testing.T) {
	t.Parallel()
	done, err := kubexec.DoneSelector("me")
	require.NoError(t, err)
	require.True(t, done.Matches(labels.Set{kubexec.LabelManagedBy: kubexec.ManagedByValue, kubexec.LabelExecutor: "me", kubexec.LabelDone: kubexec.DoneValue}))
	require.False(t, done.Matches(labels.Set{kubexec.LabelManagedBy: kubexec.ManagedByValue, kubexec.LabelExecutor: "me"}), "not done")
	require.False(t, done.Matches(labels.Set{kubexec.LabelManagedBy: kubexec.ManagedByValue, kubexec.LabelExecutor: "other", kubexec.LabelDone: kubexec.DoneValue}), "another executor's")
	_, err = kubexec.DoneSelector("")
	require.Error(t, err)

	managed := labels.Set{kubexec.LabelManagedBy: kubexec.ManagedByValue}
	grouped := labels.Set{kubexec.LabelManagedBy: kubexec.ManagedByValue, kubexec.LabelGroup: "etl"}
	ofGroup, err := kubexec.LeaseSelector("etl")
	require.NoError(t, err)
	require.True(t, ofGroup.Matches(grouped))
	require.False(t, ofGroup.Matches(managed), "no group")
	noGroup, err := kubexec.LeaseSelector("")
	require.NoError(t, err)
	require.True(t, noGroup.Matches(managed))
	require.False(t, noGroup.Matches(grouped), "another deployment's")
	require.False(t, noGroup.Matches(labels.Set{}), "not kubexec's")
	_, err = kubexec.LeaseSelector("Not A Label!")
	require.ErrorIs(t, err, kubexec.ErrInvalidGroup)
}
