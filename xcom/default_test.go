package xcom

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubexec/kubexec"
)

// offlineCollector is a Collector with cfg whose API server is away: the
// termination message channel needs none.
func offlineCollector(t *testing.T, cfg Config) (*Collector, *MemoryBackend) {
	t.Helper()
	away := &rest.Config{Host: "http://127.0.0.1:1"}
	client, err := kubernetes.NewForConfig(away)
	require.NoError(t, err)
	backend := &MemoryBackend{}
	c, err := NewCollector(client, away, backend, cfg)
	require.NoError(t, err)
	return c, backend
}

// ended sets pod's status as the kubelet does once its main container
// exited with code, its termination message message.
func ended(pod *corev1.Pod, code int32, message string) {
	pod.UID = "uid-1"
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: pod.Spec.Containers[0].Name,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Message: message}}}}
}

func envOf(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// TestOneChannelDefault: whatever prepares a pod (the Collector as the
// executor's Config.XCom, through MutatePod, after a Builder's
// Middleware or not), the channel it prepares the pod for is the one
// Collect reads: a task that writes its value to $KUBEXEC_XCOM_PATH has
// it collected. With the zero Config, that is the termination message:
// the main container's terminationMessagePath, which the kubelet reads
// into the status Collect reads, is the file EnvPath names.
func TestOneChannelDefault(t *testing.T) {
	t.Parallel()
	tm, side, none := ChannelTerminationMessage, ChannelSidecar, ChannelNone
	for _, tc := range []struct {
		name        string
		cfg         Config
		builder     *PodConfig // the Builder's Middleware, if any
		annotations map[string]string
		want        Channel
	}{
		{name: "the zero Config", want: tm},
		{name: "the zero Config, the task asks for the sidecar", annotations: map[string]string{AnnotationChannel: "sidecar"}, want: side},
		{name: "the zero Config, the task asks for none", annotations: map[string]string{AnnotationChannel: "none"}, want: none},
		{name: "the zero Config, an empty annotation", annotations: map[string]string{AnnotationChannel: ""}, want: tm},
		{name: "the termination message by default", cfg: Config{Pod: PodConfig{Channel: tm}}, want: tm},
		{name: "the sidecar by default", cfg: Config{Pod: PodConfig{Channel: side}}, want: side},
		{name: "the sidecar by default, the task asks for the termination message", cfg: Config{Pod: PodConfig{Channel: side}},
			annotations: map[string]string{AnnotationChannel: "termination-message"}, want: tm},
		{name: "none by default", cfg: Config{Pod: PodConfig{Channel: none}}, want: none},
		{name: "the Builder's zero Middleware", builder: &PodConfig{}, want: tm},
		{name: "the Builder's Middleware for none", builder: &PodConfig{Channel: none}, want: none},
		{name: "the Builder's Middleware for the sidecar", builder: &PodConfig{Channel: side}, want: side},
		{name: "the Builder's Middleware for the sidecar, a Collector for none", cfg: Config{Pod: PodConfig{Channel: none}},
			builder: &PodConfig{Channel: side}, want: side},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c, backend := offlineCollector(t, tc.cfg)
			pod := newPod(tc.annotations)
			if tc.builder != nil {
				require.NoError(t, Middleware(*tc.builder)(ctx, pod))
			}
			require.NoError(t, c.MutatePod(ctx, pod))
			main := pod.Spec.Containers[0]
			path, hasPath := envOf(main, EnvPath)

			switch tc.want {
			case ChannelTerminationMessage:
				require.Len(t, pod.Spec.Containers, 1, "no sidecar")
				require.True(t, hasPath, "the main container is told where to write its value (%s)", EnvPath)
				kubelet := main.TerminationMessagePath
				if kubelet == "" {
					kubelet = corev1.TerminationMessagePathDefault // the API server's default
				}
				require.Equal(t, kubelet, path, "%s names the file the kubelet reads", EnvPath)
				// The task wrote its value there; the kubelet put it in
				// the status.
				ended(pod, 0, `{"rows": 3}`+"\n")
				ref, err := c.Collect(ctx, pod, unitKey)
				require.NoError(t, err)
				require.NotEmpty(t, ref, "the value is collected")
				v, err := backend.Get(ctx, ref)
				require.NoError(t, err)
				require.Equal(t, `{"rows": 3}`, string(v))
			case ChannelSidecar:
				require.True(t, hasPath)
				require.Equal(t, pod.Annotations[AnnotationPath], path, "%s names the file Collect reads", EnvPath)
				require.Empty(t, checkSidecar(pod, path, DefaultSidecarImage), "Collect reads from the sidecar")
			case ChannelNone:
				require.False(t, hasPath, "no file to write")
				require.Len(t, pod.Spec.Containers, 1)
				ended(pod, 0, `{"rows": 3}`)
				ref, err := c.Collect(ctx, pod, unitKey)
				require.NoError(t, err)
				require.Empty(t, ref, "no channel, no value")
			}
			require.Equal(t, string(tc.want), pod.Annotations[AnnotationChannel], "the pod records its channel")
		})
	}
}

// TestTerminationMessageLimit: the kubelet keeps the last 4096 bytes of a
// termination message, or an equal share of 12 KiB in a pod of more than
// three containers. A message that fills that may be the end of a longer
// value, which must not be taken for the value (as text, or as JSON that
// the cut made valid): it fails with ErrTooLarge, and the error says to
// use the sidecar channel, by its annotation and value.
func TestTerminationMessageLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	str := func(n int) string { return `"` + strings.Repeat("x", n-2) + `"` } // a JSON string of n bytes
	withContainers := func(n int) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			for i := 1; i < n; i++ {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("helper-%d", i)})
			}
		}
	}
	for _, tc := range []struct {
		name        string
		message     string
		annotations map[string]string
		cfg         Config
		pod         func(*corev1.Pod)
		cut         bool  // ErrTooLarge: use the sidecar
		tooLarge    int64 // ErrTooLarge over this limit (not cut)
		want        string
	}{
		{name: "4095 bytes of JSON", message: str(4095), want: str(4095)},
		{name: "4096 bytes of JSON: maybe the end of more", message: str(4096), cut: true},
		{name: "4096 bytes of text", message: strings.Repeat("y", 4096), cut: true},
		{name: "the last 4096 bytes of a longer number", message: strings.Repeat("7", 4096), cut: true},
		{name: "4096 bytes, strict JSON", message: str(4096), annotations: map[string]string{AnnotationFormat: "json"}, cut: true},
		{name: "4096 bytes, text", message: str(4096), annotations: map[string]string{AnnotationFormat: "text"}, cut: true},
		{name: "4095 bytes with whitespace", message: " " + str(4093) + "\n", want: str(4093)},
		{name: "text", message: "done\n", want: `"done"`},
		{name: "three containers: 4096 bytes each", message: str(4095), pod: withContainers(3), want: str(4095)},
		{name: "four containers: 3072 bytes each", message: str(3072), pod: withContainers(4), cut: true},
		{name: "four containers, less than 3072 bytes", message: str(3071), pod: withContainers(4), want: str(3071)},
		{name: "the pod's own lower limit", message: str(2000), annotations: map[string]string{AnnotationMaxBytes: "1000"}, tooLarge: 1000},
		{name: "the host's lower limit", message: str(2000), cfg: Config{MaxBytes: 1000}, tooLarge: 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, backend := offlineCollector(t, tc.cfg)
			pod := newPod(tc.annotations)
			if tc.pod != nil {
				tc.pod(pod)
			}
			require.NoError(t, c.MutatePod(ctx, pod))
			ended(pod, 0, tc.message)
			ref, err := c.Collect(ctx, pod, unitKey)
			switch {
			case tc.cut:
				require.Empty(t, ref)
				var verr *ValueError
				require.ErrorAs(t, err, &verr)
				require.ErrorIs(t, err, ErrTooLarge)
				require.Equal(t, int64(-1), verr.Size, "its size is unknown")
				require.ErrorContains(t, err, "through the sidecar channel: set the pod annotation xcom.kubexec.io/channel: sidecar")
				require.ErrorContains(t, err, fmt.Sprintf("has %d bytes", len(tc.message)))
			case tc.tooLarge > 0:
				require.ErrorIs(t, err, ErrTooLarge)
				var verr *ValueError
				require.ErrorAs(t, err, &verr)
				require.Equal(t, tc.tooLarge, verr.Limit)
				require.NotContains(t, err.Error(), "sidecar", "the pod's own limit, not the kubelet's")
			default:
				require.NoError(t, err)
				v, err := backend.Get(ctx, ref)
				require.NoError(t, err)
				require.Equal(t, tc.want, string(v))
			}
		})
	}
}

func TestPodTerminationMessageLimit(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]int{0: 4096, 1: 4096, 2: 4096, 3: 4096, 4: 3072, 5: 2457, 12: 1024} {
		pod := &corev1.Pod{}
		for i := range n {
			name := fmt.Sprint(i)
			switch i % 3 {
			case 0:
				pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: name})
			case 1:
				pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: name})
			default:
				pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers, corev1.EphemeralContainer{})
			}
		}
		require.Equal(t, want, podTerminationMessageLimit(pod), "%d containers", n)
	}
}

// TestChannelConfig: Config.Pod.Channel is checked by NewCollector, and
// defaults to DefaultChannel.
func TestChannelConfig(t *testing.T) {
	t.Parallel()
	c, _ := offlineCollector(t, Config{})
	require.Equal(t, DefaultChannel, c.cfg.Pod.Channel)
	require.Equal(t, ChannelTerminationMessage, DefaultChannel)
	_, err := NewCollector(c.client, c.config, &MemoryBackend{}, Config{Pod: PodConfig{Channel: "carrier-pigeon"}})
	require.ErrorIs(t, err, kubexec.ErrInvalidConfig)
	require.ErrorContains(t, err, "Config.Pod.Channel")
}
