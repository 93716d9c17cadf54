package provenance_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/provenance"
)

func provenancePod(t testing.TB, ns string, key kubexec.TaskKey) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{}
	pod.Namespace = ns
	require.NoError(t, kubexec.ApplyMetadata(pod, "scheduler-0", key))
	return pod
}

func TestProvenance(t *testing.T) {
	key := kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "r1", MapIndex: kubexec.NotMapped, Attempt: 1}
	p, err := provenance.New([]byte(strings.Repeat("k", 32)))
	require.NoError(t, err)
	other, err := provenance.New([]byte(strings.Repeat("o", 32)))
	require.NoError(t, err)

	signed := provenancePod(t, "etl", key)
	require.NoError(t, p.Sign(signed))
	mark := signed.Annotations[kubexec.AnnotationProvenance]
	require.True(t, strings.HasPrefix(mark, "v1."), mark)
	require.NoError(t, p.Verify(signed))

	tests := []struct {
		name   string
		change func(pod *corev1.Pod)
		with   *provenance.Marker
		want   error
	}{
		{name: "no mark", change: func(pod *corev1.Pod) { delete(pod.Annotations, kubexec.AnnotationProvenance) }, want: provenance.ErrNoMark},
		{name: "another key", with: other, want: provenance.ErrBadMark},
		{name: "made up", change: func(pod *corev1.Pod) { pod.Annotations[kubexec.AnnotationProvenance] = "v1.forged" }, want: provenance.ErrBadMark},
		{name: "another namespace", change: func(pod *corev1.Pod) { pod.Namespace = "other" }, want: provenance.ErrBadMark},
		{name: "another name", change: func(pod *corev1.Pod) { pod.Name += "x" }, want: provenance.ErrBadMark},
		{name: "another attempt", change: func(pod *corev1.Pod) { pod.Annotations[kubexec.AnnotationAttempt] = "2" }, want: provenance.ErrBadMark},
		{name: "another task", change: func(pod *corev1.Pod) { pod.Annotations[kubexec.AnnotationTask] = "loaf" }, want: provenance.ErrBadMark},
		{name: "no key annotations", change: func(pod *corev1.Pod) {
			pod.Annotations = map[string]string{kubexec.AnnotationProvenance: mark}
		}, want: kubexec.ErrNotManaged},
		{name: "labels and owner may change", change: func(pod *corev1.Pod) {
			pod.Labels[kubexec.LabelExecutor] = "scheduler-1"
			pod.Labels[kubexec.LabelDone] = kubexec.DoneValue
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := signed.DeepCopy()
			if tt.change != nil {
				tt.change(pod)
			}
			with := p
			if tt.with != nil {
				with = tt.with
			}
			err := with.Verify(pod)
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.want)
		})
	}

	// Fields are length-prefixed: moving a character between two of them
	// changes the mark.
	a := provenancePod(t, "etl", kubexec.TaskKey{WorkflowID: "ab", TaskID: "c", RunID: "r", MapIndex: kubexec.NotMapped, Attempt: 1})
	b := provenancePod(t, "etl", kubexec.TaskKey{WorkflowID: "a", TaskID: "bc", RunID: "r", MapIndex: kubexec.NotMapped, Attempt: 1})
	b.Name = a.Name
	require.NoError(t, p.Sign(a))
	require.NoError(t, p.Sign(b))
	require.NotEqual(t, a.Annotations[kubexec.AnnotationProvenance], b.Annotations[kubexec.AnnotationProvenance])

	_, err = provenance.New(make([]byte, 31))
	require.ErrorContains(t, err, "at least 32 random bytes")
}

// BenchmarkProvenanceVerify measures the check the executor makes of a pod
// it did not create in this process (a restart, an adoption, a sweep).
func BenchmarkProvenanceVerify(b *testing.B) {
	p, err := provenance.New([]byte(strings.Repeat("k", 32)))
	require.NoError(b, err)
	pod := &corev1.Pod{}
	pod.Namespace = "etl"
	key := kubexec.TaskKey{WorkflowID: "nightly-etl", TaskID: "load_partition_00042", RunID: "scheduled__2026-03-01T00:00:00+00:00", MapIndex: kubexec.NotMapped, Attempt: 1}
	require.NoError(b, kubexec.ApplyMetadata(pod, "scheduler-0", key))
	require.NoError(b, p.Sign(pod))
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Verify(pod); err != nil {
			b.Fatal(err)
		}
	}
}
