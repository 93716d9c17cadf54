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
	"k8s.io/apimachinery/pkg/types"
)

var unitKey = kubexec.TaskKey{WorkflowID: "etl", TaskID: "extract", RunID: "r1", MapIndex: kubexec.NotMapped, Attempt: 1}

// TestParseValue: JSON is read as JSON, other text (FormatAuto) as a JSON
// string, unless the pod asks for JSON only (FormatJSON) or for text
// (FormatText); the format changes neither the limit nor what is missing.
func TestParseValue(t *testing.T) {
	t.Parallel()
	type want struct {
		value string
		err   error
	}
	for _, tc := range []struct {
		in               string
		limit            int64
		auto, json, text want
	}{
		{`{"a": 1}`, 100, want{`{"a": 1}`, nil}, want{`{"a": 1}`, nil}, want{`"{\"a\": 1}"`, nil}},
		{"  [1,2]\n", 100, want{`[1,2]`, nil}, want{`[1,2]`, nil}, want{`"[1,2]"`, nil}},
		{`"text"`, 100, want{`"text"`, nil}, want{`"text"`, nil}, want{`"\"text\""`, nil}},
		{`42`, 2, want{`42`, nil}, want{`42`, nil}, want{`"42"`, nil}},
		{"  42 \n\n", 2, want{`42`, nil}, want{`42`, nil}, want{`"42"`, nil}}, // whitespace does not count
		{`null`, 100, want{`null`, nil}, want{`null`, nil}, want{`"null"`, nil}},
		{``, 100, want{err: ErrMissing}, want{err: ErrMissing}, want{err: ErrMissing}},
		{" \n\t", 100, want{err: ErrMissing}, want{err: ErrMissing}, want{err: ErrMissing}},
		{`{"a": 1}`, 7, want{err: ErrTooLarge}, want{err: ErrTooLarge}, want{err: ErrTooLarge}},
		{`hello world`, 5, want{err: ErrTooLarge}, want{err: ErrTooLarge}, want{err: ErrTooLarge}},
		{`{"a": }`, 100, want{`"{\"a\": }"`, nil}, want{err: ErrNotJSON}, want{`"{\"a\": }"`, nil}},
		{`1 2`, 100, want{`"1 2"`, nil}, want{err: ErrNotJSON}, want{`"1 2"`, nil}},
		{"hello\n", 100, want{`"hello"`, nil}, want{err: ErrNotJSON}, want{`"hello"`, nil}},
		{"s3://bucket/a b.csv", 100, want{`"s3://bucket/a b.csv"`, nil}, want{err: ErrNotJSON}, want{`"s3://bucket/a b.csv"`, nil}},
		{"rows: 3\nok: <yes> & \"no\"\t\\", 100, want{`"rows: 3\nok: <yes> & \"no\"\t\\"`, nil}, want{err: ErrNotJSON},
			want{`"rows: 3\nok: <yes> & \"no\"\t\\"`, nil}},
		{"caf\u00e9\u2028ok", 100, want{`"café\u2028ok"`, nil}, want{err: ErrNotJSON}, want{`"café\u2028ok"`, nil}},
		{"\"\xff\"", 100, want{err: ErrNotJSON}, want{err: ErrNotJSON}, want{err: ErrNotJSON}},
		{"\xff", 100, want{err: ErrNotJSON}, want{err: ErrNotJSON}, want{err: ErrNotJSON}},
	} {
		for format, w := range map[Format]want{"": tc.auto, FormatAuto: tc.auto, FormatJSON: tc.json, FormatText: tc.text} {
			got, err := ParseValue([]byte(tc.in), tc.limit, format)
			if w.err != nil {
				require.ErrorIs(t, err, w.err, "%q as %q", tc.in, format)
				require.Nil(t, got)
				continue
			}
			require.NoError(t, err, "%q as %q", tc.in, format)
			require.Equal(t, w.value, string(got), "%q as %q", tc.in, format)
			require.True(t, json.Valid(got))
		}
	}
	_, err := ParseValue([]byte(`1`), 100, "yaml")
	require.ErrorContains(t, err, `format "yaml"`)
	_, err = ParseValue([]byte(`{`), 100, FormatJSON)
	require.ErrorContains(t, err, AnnotationFormat+` is "json"`, "the error says why the text is not taken as text")
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
	require.Equal(t, "/dev/termination-log", pod.Spec.Containers[0].TerminationMessagePath)

	// The default channel.
	pod = newPod(nil)
	require.NoError(t, Middleware(PodConfig{})(context.Background(), pod))
	require.Equal(t, map[string]string{AnnotationChannel: "termination-message"}, pod.Annotations)
	require.Equal(t, []corev1.EnvVar{{Name: EnvPath, Value: "/dev/termination-log"}}, pod.Spec.Containers[0].Env)

	// A pod's own terminationMessagePath is the file to write.
	pod = newPod(nil)
	pod.Spec.Containers[0].TerminationMessagePath = "/tmp/result.json"
	require.NoError(t, Middleware(PodConfig{})(context.Background(), pod))
	require.Equal(t, []corev1.EnvVar{{Name: EnvPath, Value: "/tmp/result.json"}}, pod.Spec.Containers[0].Env)
	require.Equal(t, "/tmp/result.json", pod.Spec.Containers[0].TerminationMessagePath)

	// No channel: nothing but the record of it.
	pod = newPod(nil)
	require.NoError(t, Middleware(PodConfig{Channel: ChannelNone})(context.Background(), pod))
	want := newPod(map[string]string{AnnotationChannel: "none"})
	require.Equal(t, want, pod)
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
		{AnnotationFormat: "yaml"},
	} {
		require.Error(t, Middleware(PodConfig{})(context.Background(), newPod(a)), "%v", a)
	}
}

func TestRecordRecall(t *testing.T) {
	t.Parallel()
	pod := newPod(map[string]string{})
	pod.UID = "uid-1"
	for i, verr := range []*ValueError{
		nil,
		{Key: unitKey, Container: "base", Source: "file /x/y", Size: 10, Limit: 5, Err: ErrTooLarge},
		{Key: unitKey, Container: "base", Source: "file /x/y", Size: -1, Limit: 5, Err: ParseErr(`{`)},
		{Key: unitKey, Container: "base", Source: "file /x/y", Size: -1, Limit: 5, Err: fmt.Errorf("%w: the sidecar did not answer exec", ErrUnreadable)},
	} {
		gaveUp := i == 3
		rec, err := record(pod.UID, "file:r.json", verr, gaveUp)
		require.NoError(t, err)
		pod.Annotations[AnnotationResult] = rec
		a, ok, why := recall(pod, unitKey)
		require.True(t, ok)
		require.Empty(t, why)
		require.Equal(t, gaveUp, a.noAnswer)
		if verr == nil {
			require.NoError(t, a.err)
			require.Equal(t, "file:r.json", a.ref)
			continue
		}
		require.Equal(t, verr.Error(), a.err.Error())
		got := a.err.(*ValueError)
		require.Equal(t, verr.Size, got.Size)
		for _, s := range []error{ErrTooLarge, ErrNotJSON, ErrUnreadable} {
			require.Equal(t, errors.Is(verr, s), errors.Is(got, s))
		}
	}
}

// TestRecallTrustsOnlyItsPod: a record is an answer only on the pod whose
// UID it names, so that a template or override, which sets annotations
// before the pod has a UID, cannot decide the value a downstream task
// reads.
func TestRecallTrustsOnlyItsPod(t *testing.T) {
	t.Parallel()
	own, err := record("uid-1", "memory:real", nil, false)
	require.NoError(t, err)
	for _, tc := range []struct {
		name, uid, value string
		ok               bool
		why              string
	}{
		{"its own", "uid-1", own, true, ""},
		{"no UID (as a template or override sets it)", "uid-1", `{"ref":"memory:forged"}`, false, `pod UID ""`},
		{"another pod's", "uid-1", `{"pod":"uid-2","ref":"memory:forged"}`, false, `pod UID "uid-2"`},
		{"an error without UID", "uid-1", `{"error":{"kind":"missing","message":"x"}}`, false, `pod UID ""`},
		{"a pod without UID", "", `{"pod":"","ref":"memory:forged"}`, false, `pod UID ""`},
		{"not JSON", "uid-1", "garbage", false, "not the JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := newPod(map[string]string{AnnotationResult: tc.value})
			pod.UID = types.UID(tc.uid)
			a, ok, why := recall(pod, unitKey)
			require.Equal(t, tc.ok, ok)
			if !tc.ok {
				require.Contains(t, why, tc.why)
				require.Empty(t, a.ref)
				require.NoError(t, a.err)
				return
			}
			require.Equal(t, "memory:real", a.ref)
		})
	}
	_, ok, why := recall(newPod(nil), unitKey)
	require.False(t, ok)
	require.Empty(t, why, "no record is nothing to warn about")
}

// ParseErr returns the error ParseValue gives for s as JSON.
func ParseErr(s string) error {
	_, err := ParseValue([]byte(s), 100, FormatJSON)
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

// TestLimitFor: AnnotationMaxBytes can lower the host's Config.MaxBytes,
// never raise it.
func TestLimitFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		asked, host, limit, capped int64
	}{
		{0, 4 << 20, 4 << 20, 0},
		{1000, 4 << 20, 1000, 0},
		{4 << 20, 4 << 20, 4 << 20, 0},
		{400 << 20, 4 << 20, 4 << 20, 400 << 20},
		{1<<63 - 1, 100, 100, 1<<63 - 1},
	} {
		limit, capped := limitFor(tc.asked, tc.host)
		require.Equal(t, tc.limit, limit, "%+v", tc)
		require.Equal(t, tc.capped, capped, "%+v", tc)
	}
	err := tooLarge(5000, settings{maxBytes: 100, askedMaxBytes: 1 << 30})
	require.ErrorIs(t, err, ErrTooLarge)
	require.ErrorContains(t, err, "at most 100 allowed (the pod's "+AnnotationMaxBytes+" asks for 1073741824, but it can only lower xcom.Config.MaxBytes)")
}

// TestCheckSidecar: Collect execs only in the sidecar Middleware adds, for
// the file in its own folder; whatever else a template or override makes
// of the pod is refused, with a reason.
func TestCheckSidecar(t *testing.T) {
	t.Parallel()
	build := func() *corev1.Pod {
		pod := newPod(map[string]string{AnnotationChannel: "sidecar"})
		require.NoError(t, Middleware(PodConfig{})(context.Background(), pod))
		return pod
	}
	side := func(pod *corev1.Pod) *corev1.Container { return &pod.Spec.Containers[1] }
	yes := true
	for _, tc := range []struct {
		name   string
		file   string
		mutate func(*corev1.Pod)
		why    string // "" for kubexec's sidecar
	}{
		{name: "as Middleware adds it"},
		{name: "with the ServiceAccount token the admission adds", mutate: func(p *corev1.Pod) {
			side(p).VolumeMounts = append(side(p).VolumeMounts, corev1.VolumeMount{Name: "kube-api-access-x", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"})
		}},
		{name: "annotation names another container", mutate: func(p *corev1.Pod) { p.Annotations[AnnotationSidecar] = "base" }, why: `names container "base"`},
		{name: "no sidecar", mutate: func(p *corev1.Pod) { p.Spec.Containers = p.Spec.Containers[:1] }, why: "has no sidecar container"},
		{name: "another image", mutate: func(p *corev1.Pod) { side(p).Image = "attacker/tool:1" }, why: `its image is "attacker/tool:1"`},
		{name: "another command", mutate: func(p *corev1.Pod) { side(p).Command = []string{"sh", "-c", "sleep 3600"} }, why: "its command"},
		{name: "args", mutate: func(p *corev1.Pod) { side(p).Args = []string{"x"} }, why: "its command"},
		{name: "a file outside its folder", file: "/var/run/secrets/kubernetes.io/serviceaccount/token", why: "its command"},
		{name: "a secret mounted on the file", mutate: func(p *corev1.Pod) {
			side(p).VolumeMounts = append(side(p).VolumeMounts, corev1.VolumeMount{Name: "secret", MountPath: DefaultPath, SubPath: "token"})
		}, why: `mounts volume "secret" at ` + DefaultPath},
		{name: "a mount over the folder's parent", mutate: func(p *corev1.Pod) {
			side(p).VolumeMounts = append(side(p).VolumeMounts, corev1.VolumeMount{Name: "secret", MountPath: "/kubexec"})
		}, why: `mounts volume "secret" at /kubexec`},
		{name: "a sub-path of the value volume", mutate: func(p *corev1.Pod) { side(p).VolumeMounts[0].SubPath = "x" }, why: `mounts volume "kubexec-xcom"`},
		{name: "the value volume elsewhere", mutate: func(p *corev1.Pod) { side(p).VolumeMounts[0].MountPath = "/elsewhere" }, why: "does not mount volume"},
		{name: "not an emptyDir", mutate: func(p *corev1.Pod) {
			p.Spec.Volumes[0].VolumeSource = corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}
		}, why: "not an emptyDir"},
		{name: "privileged", mutate: func(p *corev1.Pod) { side(p).SecurityContext.Privileged = &yes }, why: "privileged"},
		{name: "may gain privileges", mutate: func(p *corev1.Pod) { side(p).SecurityContext.AllowPrivilegeEscalation = nil }, why: "privileged"},
		{name: "adds capabilities", mutate: func(p *corev1.Pod) {
			side(p).SecurityContext.Capabilities.Add = []corev1.Capability{"SYS_PTRACE"}
		}, why: "capabilities"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := build()
			if tc.mutate != nil {
				tc.mutate(pod)
			}
			file := DefaultPath
			if tc.file != "" {
				file = tc.file
			}
			why := checkSidecar(pod, file, DefaultSidecarImage)
			if tc.why == "" {
				require.Empty(t, why)
				return
			}
			require.Contains(t, why, tc.why)
		})
	}
}
