package xcom_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/podtemplate"
	"github.com/kubexec/kubexec/xcom"
)

// The trust boundary between a task's pod and the Collector: what a task's
// template or override sets on its pod, and what its container does with
// the value's file, must not decide another value than the one the task
// wrote, make the Collector read anything but that file, or hold it.

// TestForgedResultIgnored: a result annotation that was on the pod from
// its create (as a template or override could set it) names no UID, or
// another pod's: Collect ignores it and reads the value the task wrote,
// so that the downstream task does not get a value the pod chose.
func TestForgedResultIgnored(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	e := setup(t, xcom.Config{})
	// A value in the Backend that the forger wants downstream tasks to read.
	other := testKey(t)
	other.TaskID += "-other"
	forged, err := e.backend.Put(t.Context(), other, json.RawMessage(`{"forged": true}`))
	require.NoError(t, err)
	for i, record := range []map[string]any{
		{"ref": forged},
		{"pod": "0b6d1c58-3f5e-4a57-9d4f-0d2f3c6b7a11", "ref": forged},
		{"error": map[string]any{"kind": "missing", "source": "file " + xcom.DefaultPath, "size": -1, "limit": 1, "message": xcom.ErrMissing.Error()}},
	} {
		key := testKey(t)
		key.Attempt = i + 1
		doc, err := json.Marshal(record)
		require.NoError(t, err)
		pod := e.runWith(t, key, `printf '{"real": true}' > "$KUBEXEC_XCOM_PATH"`,
			map[string]string{xcom.AnnotationChannel: "sidecar"}, func(p *corev1.Pod) { p.Annotations[xcom.AnnotationResult] = string(doc) })
		require.Equal(t, string(doc), pod.Annotations[xcom.AnnotationResult], "the pod was created with the forged record")
		pod, ref, err := e.collect(t, pod, key)
		require.NoError(t, err, "record %s", doc)
		require.NotEqual(t, forged, ref, "record %s decided the value", doc)
		require.JSONEq(t, `{"real": true}`, e.value(t, ref))
		require.Equal(t, corev1.PodSucceeded, pod.Status.Phase)
		require.Contains(t, pod.Annotations[xcom.AnnotationResult], string(pod.UID), "the record names the pod's UID")
	}
}

// TestMaxBytesAnnotationOnlyLowers: a pod's max-bytes annotation cannot
// raise the host's Config.MaxBytes; a value over the host's limit is too
// large, and the error says why the pod's larger number did not count.
func TestMaxBytesAnnotationOnlyLowers(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	e := setup(t, xcom.Config{MaxBytes: 1000})
	key := testKey(t)
	pod := e.run(t, key, `{ printf '"'; head -c 1998 /dev/zero | tr '\0' x; printf '"'; } > "$KUBEXEC_XCOM_PATH"`,
		map[string]string{xcom.AnnotationChannel: "sidecar", xcom.AnnotationMaxBytes: "400000000"})
	pod, ref, err := e.collect(t, pod, key)
	require.Empty(t, ref)
	var verr *xcom.ValueError
	require.ErrorAs(t, err, &verr)
	require.ErrorIs(t, err, xcom.ErrTooLarge)
	require.Equal(t, int64(2000), verr.Size)
	require.Equal(t, int64(1000), verr.Limit)
	require.ErrorContains(t, err, "asks for 400000000, but it can only lower xcom.Config.MaxBytes")
	require.Equal(t, corev1.PodSucceeded, pod.Status.Phase)

	// Lower than the host's: the pod's limit.
	key.Attempt = 2
	pod = e.run(t, key, `printf '"%s"' 0123456789 > "$KUBEXEC_XCOM_PATH"`,
		map[string]string{xcom.AnnotationChannel: "sidecar", xcom.AnnotationMaxBytes: "8"})
	_, _, err = e.collect(t, pod, key)
	require.ErrorAs(t, err, &verr)
	require.Equal(t, int64(8), verr.Limit)
}

// TestValueFileNotRegular: a task whose value's "file" is a FIFO (which
// blocks every reader until a writer comes), a symbolic link (which could
// lead out of the value's folder) or a folder gets a final ErrUnreadable
// that says so, and its pod ends; nothing hangs.
func TestValueFileNotRegular(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	e := setup(t, xcom.Config{})
	for i, tc := range []struct {
		name, script, want string
	}{
		{"fifo", `mkfifo "$KUBEXEC_XCOM_PATH"`, "not a regular file"},
		{"symbolic link", `ln -s /etc/hostname "$KUBEXEC_XCOM_PATH"`, "symbolic link"},
		{"folder", `mkdir "$KUBEXEC_XCOM_PATH"`, "not a regular file"},
	} {
		key := testKey(t)
		key.Attempt = i + 1
		pod := e.run(t, key, tc.script, map[string]string{xcom.AnnotationChannel: "sidecar"})
		pod, ref, err := e.collect(t, pod, key)
		require.Empty(t, ref, tc.name)
		var verr *xcom.ValueError
		require.ErrorAs(t, err, &verr, tc.name)
		require.ErrorIs(t, err, xcom.ErrUnreadable, tc.name)
		require.ErrorContains(t, err, tc.want, tc.name)
		require.Equal(t, corev1.PodSucceeded, pod.Status.Phase, "%s: the sidecar was stopped", tc.name)
	}
}

// TestReadsOnlyItsSidecar: when a pod was not prepared by Middleware (its
// override set the main container's KUBEXEC_XCOM_PATH, so the executor's
// MutatePod leaves it be) its annotations and containers could point the
// Collector at any file of any container, such as a secret another
// container holds. Collect execs only in the sidecar Middleware adds, for
// the file in its own folder: anything else is a final ErrUnreadable
// that says why, and no value is stored.
func TestReadsOnlyItsSidecar(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	// holder keeps a secret, as JSON, in a volume of its own.
	holder := func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "secret", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{
			Name: "holder", Image: "debian:bookworm",
			Command:      []string{"sh", "-c", `printf '{"token": "s3cr3t"}' > /secret/token.json; exec sleep 3600`},
			VolumeMounts: []corev1.VolumeMount{{Name: "secret", MountPath: "/secret"}},
		})
	}
	prepared := func(p *corev1.Pod) {
		for i := range p.Spec.Containers {
			if p.Spec.Containers[i].Name == xcom.SidecarName {
				return
			}
		}
		panic("the pod has no sidecar")
	}
	for i, tc := range []struct {
		name        string
		annotations map[string]string
		middleware  bool
		mutate      func(*corev1.Pod)
		running     string // the container that must run when Collect is called
		want        string
	}{
		{
			name:        "another container named as the sidecar",
			annotations: map[string]string{xcom.AnnotationChannel: "sidecar", xcom.AnnotationSidecar: "holder", xcom.AnnotationPath: "/secret/token.json"},
			mutate:      holder, running: "holder", want: `names container "holder"`,
		},
		{
			name:        "a container that takes the sidecar's name",
			annotations: map[string]string{xcom.AnnotationChannel: "sidecar", xcom.AnnotationPath: "/secret/token.json"},
			mutate: func(p *corev1.Pod) {
				holder(p)
				p.Spec.Containers[len(p.Spec.Containers)-1].Name = xcom.SidecarName
			},
			running: xcom.SidecarName, want: "is not the sidecar kubexec adds",
		},
		{
			name:        "kubexec's sidecar, asked for a file outside its folder",
			annotations: map[string]string{xcom.AnnotationChannel: "sidecar"},
			middleware:  true,
			mutate: func(p *corev1.Pod) {
				prepared(p)
				p.Annotations[xcom.AnnotationPath] = "/etc/hostname"
			},
			running: xcom.SidecarName, want: "its command is not the one",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, xcom.Config{})
			key := testKey(t)
			key.Attempt = i + 1
			build := e.template
			if !tc.middleware {
				var err error
				build, err = podtemplate.New(e.templateBase(), podtemplate.Config{ExecutorID: "xcom-test", Namespace: e.ns})
				require.NoError(t, err)
			}
			pod := e.runOn(t, build, key, `true`, tc.annotations, tc.mutate)
			pod = waitMainEnded(t, pod, tc.running)
			ref, err := e.collector.Collect(t.Context(), pod, key)
			entries, rerr := os.ReadDir(e.backendDir)
			require.NoError(t, rerr)
			require.Empty(t, entries, "a value was stored (Collect returned %q, %v)", ref, err)
			require.Empty(t, ref)
			var verr *xcom.ValueError
			require.ErrorAs(t, err, &verr)
			require.ErrorIs(t, err, xcom.ErrUnreadable)
			require.ErrorIs(t, err, kubexec.ErrXComValue, "final")
			require.ErrorContains(t, err, tc.want)
			require.ErrorContains(t, err, "a template or override must not set")
			// Again, the same answer.
			_, again := e.collector.Collect(t.Context(), pod, key)
			require.EqualError(t, again, err.Error())
		})
	}
}

// waitMainEnded waits until pod's main container has ended while its
// container running runs, and returns the pod as then.
func waitMainEnded(t *testing.T, pod *corev1.Pod, running string) *corev1.Pod {
	t.Helper()
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := cluster.Client().CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		if ended(p) {
			return false, errors.New("the pod ended")
		}
		var main, other bool
		for _, st := range p.Status.ContainerStatuses {
			switch {
			case st.Name == "base":
				main = st.State.Terminated != nil
			case st.Name == running:
				other = st.State.Running != nil
			}
		}
		return main && other, nil
	})
	require.NoError(t, err, "the main container did not end while %s runs; last seen: %+v", running, last)
	return last
}
