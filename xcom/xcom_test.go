package xcom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/podtemplate"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var unitKey = kubexec.TaskKey{WorkflowID: "etl", TaskID: "extract", RunID: "r1", MapIndex: kubexec.NotMapped, Attempt: 1}

func TestParseValue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in    string
		limit int64
		want  string
		err   error
	}{
		{`{"a": 1}`, 100, `{"a": 1}`, nil},
		{"  [1,2]\n", 100, `[1,2]`, nil},
		{`"text"`, 100, `"text"`, nil},
		{`42`, 2, `42`, nil},
		{"  42 \n\n", 2, `42`, nil}, // whitespace does not count
		{`null`, 100, `null`, nil},
		{``, 100, ``, ErrMissing},
		{" \n\t", 100, ``, ErrMissing},
		{`{"a": 1}`, 7, ``, ErrTooLarge},
		{`{"a": }`, 100, ``, ErrNotJSON},
		{`1 2`, 100, ``, ErrNotJSON},
		{`hello`, 100, ``, ErrNotJSON},
		{"\"\xff\"", 100, ``, ErrNotJSON},
	} {
		got, err := ParseValue([]byte(tc.in), tc.limit)
		if tc.err != nil {
			require.ErrorIs(t, err, tc.err, "%q", tc.in)
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		require.Equal(t, tc.want, string(got))
	}
}

func TestBackends(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fb, err := NewFileBackend(t.TempDir())
	require.NoError(t, err)
	for name, b := range map[string]Backend{"memory": &MemoryBackend{}, "file": fb} {
		t.Run(name, func(t *testing.T) {
			ref, err := b.Put(ctx, unitKey, json.RawMessage(`{"v":1}`))
			require.NoError(t, err)
			got, err := b.Get(ctx, ref)
			require.NoError(t, err)
			require.JSONEq(t, `{"v":1}`, string(got))

			// Storing again replaces, under a reference that works.
			ref2, err := b.Put(ctx, unitKey, json.RawMessage(`[2]`))
			require.NoError(t, err)
			got, err = b.Get(ctx, ref2)
			require.NoError(t, err)
			require.Equal(t, `[2]`, string(got))

			other := unitKey
			other.Attempt = 2
			ref3, err := b.Put(ctx, other, json.RawMessage(`3`))
			require.NoError(t, err)
			require.NotEqual(t, ref2, ref3)

			for _, bad := range []string{"", "nope", "memory:nope", "file:nope.json", "file:../x.json", "file:/etc/passwd"} {
				_, err := b.Get(ctx, bad)
				require.ErrorIs(t, err, ErrNotFound, bad)
			}
		})
	}
}

func newPod(annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "base", Image: "python:3.13"}}},
	}
}

func TestMiddlewareSidecar(t *testing.T) {
	t.Parallel()
	pod := newPod(map[string]string{AnnotationChannel: "sidecar", AnnotationPath: AirflowPath})
	require.NoError(t, Middleware(PodConfig{})(context.Background(), pod))
	require.Len(t, pod.Spec.Containers, 2)
	main, side := pod.Spec.Containers[0], pod.Spec.Containers[1]
	require.Equal(t, SidecarName, side.Name)
	require.Equal(t, DefaultSidecarImage, side.Image)
	require.Equal(t, []corev1.VolumeMount{{Name: volumeName, MountPath: "/airflow/xcom"}}, main.VolumeMounts)
	require.Equal(t, main.VolumeMounts, side.VolumeMounts)
	require.Contains(t, main.Env, corev1.EnvVar{Name: EnvPath, Value: AirflowPath})
	require.Equal(t, int64(65534), *side.SecurityContext.RunAsUser)
	require.False(t, *side.SecurityContext.AllowPrivilegeEscalation)
	require.NotNil(t, pod.Spec.Volumes[0].EmptyDir)
	require.Equal(t, SidecarName, pod.Annotations[AnnotationSidecar])

	// A second run fails rather than adding a second sidecar.
	require.Error(t, Middleware(PodConfig{})(context.Background(), pod))

	// The sidecar runs as the main container's user.
	uid := int64(1000)
	pod = newPod(nil)
	pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: &uid}
	require.NoError(t, Middleware(PodConfig{Channel: ChannelSidecar})(context.Background(), pod))
	require.Equal(t, uid, *pod.Spec.Containers[1].SecurityContext.RunAsUser)
	require.Equal(t, DefaultPath, pod.Annotations[AnnotationPath])
}

func TestMiddlewareTerminationMessage(t *testing.T) {
	t.Parallel()
	pod := newPod(map[string]string{AnnotationChannel: "termination-message"})
	require.NoError(t, Middleware(PodConfig{Channel: ChannelSidecar})(context.Background(), pod))
	require.Len(t, pod.Spec.Containers, 1)
	require.Contains(t, pod.Spec.Containers[0].Env, corev1.EnvVar{Name: EnvPath, Value: "/dev/termination-log"})

	pod = newPod(nil)
	require.NoError(t, Middleware(PodConfig{})(context.Background(), pod))
	require.Equal(t, newPod(map[string]string{}), pod, "no channel: unchanged")
}

func TestMiddlewareRejectsBadAnnotations(t *testing.T) {
	t.Parallel()
	for _, a := range []map[string]string{
		{AnnotationChannel: "carrier-pigeon"},
		{AnnotationChannel: "sidecar", AnnotationPath: "relative/x.json"},
		{AnnotationChannel: "sidecar", AnnotationPath: "/x.json"},
		{AnnotationChannel: "sidecar", AnnotationPath: "/a/../b/x.json"},
		{AnnotationRequired: "yes please"},
		{AnnotationMaxBytes: "-1"},
	} {
		require.Error(t, Middleware(PodConfig{})(context.Background(), newPod(a)), "%v", a)
	}
}

func TestRecordRecall(t *testing.T) {
	t.Parallel()
	pod := newPod(map[string]string{})
	for i, verr := range []*ValueError{
		nil,
		{Key: unitKey, Container: "base", Source: "file /x/y", Size: 10, Limit: 5, Err: ErrTooLarge},
		{Key: unitKey, Container: "base", Source: "file /x/y", Size: -1, Limit: 5, Err: ParseErr(`{`)},
		{Key: unitKey, Container: "base", Source: "file /x/y", Size: -1, Limit: 5, Err: fmt.Errorf("%w: the sidecar did not answer exec", ErrUnreadable)},
	} {
		gaveUp := i == 3
		rec, err := record("file:r.json", verr, gaveUp)
		require.NoError(t, err)
		pod.Annotations[AnnotationResult] = rec
		ref, err, noAnswer, ok := recall(pod, unitKey)
		require.True(t, ok)
		require.Equal(t, gaveUp, noAnswer)
		if verr == nil {
			require.NoError(t, err)
			require.Equal(t, "file:r.json", ref)
			continue
		}
		require.Equal(t, verr.Error(), err.Error())
		got := err.(*ValueError)
		require.Equal(t, verr.Size, got.Size)
		for _, s := range []error{ErrTooLarge, ErrNotJSON, ErrUnreadable} {
			require.Equal(t, errors.Is(verr, s), errors.Is(got, s))
		}
	}
	pod.Annotations[AnnotationResult] = "garbage"
	_, _, _, ok := recall(pod, unitKey)
	require.False(t, ok)
}

// ParseErr returns the error ParseValue gives for s.
func ParseErr(s string) error {
	_, err := ParseValue([]byte(s), 100)
	return err
}

func TestWaiting(t *testing.T) {
	t.Parallel()
	pod := newPod(map[string]string{AnnotationChannel: "sidecar"})
	require.NoError(t, Middleware(PodConfig{})(context.Background(), pod))
	require.False(t, Waiting(pod))
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	done := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "base", State: running}, {Name: SidecarName, State: running}}
	require.False(t, Waiting(pod))
	pod.Status.ContainerStatuses[0].State = done
	require.True(t, Waiting(pod))
	pod.Status.ContainerStatuses[1].State = done
	require.False(t, Waiting(pod))
	require.False(t, Waiting(newPod(nil)))
	require.False(t, Waiting(nil))
}

func TestPass(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := &MemoryBackend{}
	ref1, err := b.Put(ctx, unitKey, json.RawMessage(`{"rows":3}`))
	require.NoError(t, err)
	other := unitKey
	other.TaskID = "other"
	ref2, err := b.Put(ctx, other, json.RawMessage(`[1,2]`))
	require.NoError(t, err)

	spec := podtemplate.TaskSpec{Key: unitKey, Args: []string{"run"}, Env: []corev1.EnvVar{{Name: "UPSTREAM", Value: "old"}}}
	require.NoError(t, Pass(ctx, b, &spec, Input{Ref: ref1, Env: "UPSTREAM"}, Input{Ref: ref2}))
	require.Equal(t, []corev1.EnvVar{{Name: "UPSTREAM", Value: `{"rows":3}`}}, spec.Env)
	require.Equal(t, []string{"run", `[1,2]`}, spec.Args)

	big := `"` + strings.Repeat("x", MaxPassBytes) + `"`
	ref3, err := b.Put(ctx, kubexec.TaskKey{WorkflowID: "w", TaskID: "big", MapIndex: -1}, json.RawMessage(big))
	require.NoError(t, err)
	before := spec
	require.ErrorIs(t, Pass(ctx, b, &spec, Input{Ref: ref1, Env: "A"}, Input{Ref: ref3}), ErrTooLarge)
	require.Equal(t, before, spec, "unchanged on error")
	require.ErrorIs(t, Pass(ctx, b, &spec, Input{Ref: "memory:nope"}), ErrNotFound)
	require.Error(t, Pass(ctx, b, &spec, Input{Ref: ref1, Env: "1BAD"}))
	require.Error(t, Pass(ctx, b, &spec, Input{}))
}
