package devcluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
)

// The node tests run pods on process nodes of a real dev cluster and look
// at them through the Kubernetes API only. TestNode shares one cluster of
// two nodes between its subtests, one per behaviour; TestNodeAgentKilled
// has a cluster of its own, with a short node monitor grace period.

// shPod is a pod whose one container runs script with Debian's /bin/sh.
func shPod(name, script string) *corev1.Pod {
	grace := int64(2)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name:    "main",
				Image:   "debian:bookworm",
				Command: []string{"sh", "-c", script},
			}},
		},
	}
}

func createPod(t *testing.T, c *Cluster, ns string, pod *corev1.Pod) {
	t.Helper()
	_, err := c.Client().CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
	require.NoError(t, err)
}

// waitPod polls the pod until cond holds, and fails the test after timeout.
func waitPod(t *testing.T, c *Cluster, ns, name string, timeout time.Duration, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := c.Client().CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		return cond(p), nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s: %s not seen within %s: %v\nlast seen: %s", ns, name, what, timeout, err, podSummary(last))
	}
	return last
}

func podSummary(p *corev1.Pod) string {
	if p == nil {
		return "(never)"
	}
	s := fmt.Sprintf("phase=%s reason=%q message=%q node=%q deleting=%v", p.Status.Phase, p.Status.Reason, p.Status.Message, p.Spec.NodeName, p.DeletionTimestamp != nil)
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		s += fmt.Sprintf("\n  container %s: restarts=%d state=%+v last=%+v", cs.Name, cs.RestartCount, cs.State, cs.LastTerminationState)
	}
	for _, c := range p.Status.Conditions {
		s += fmt.Sprintf("\n  condition %s=%s reason=%q message=%q", c.Type, c.Status, c.Reason, c.Message)
	}
	return s
}

func terminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

func running(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning }

func containerStatus(t *testing.T, p *corev1.Pod, name string) corev1.ContainerStatus {
	t.Helper()
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if cs.Name == name {
			return cs
		}
	}
	t.Fatalf("pod %s has no status for container %s\n%s", p.Name, name, podSummary(p))
	return corev1.ContainerStatus{}
}

func condition(p *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func waitingReason(p *corev1.Pod, container string) string {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == container && cs.State.Waiting != nil {
			return cs.State.Waiting.Reason
		}
	}
	return ""
}

func podLogs(t *testing.T, c *Cluster, ns, pod string, opts *corev1.PodLogOptions) string {
	t.Helper()
	stream, err := c.Client().CoreV1().Pods(ns).GetLogs(pod, opts).Stream(t.Context())
	require.NoError(t, err)
	defer stream.Close()
	data, err := io.ReadAll(stream)
	require.NoError(t, err)
	return string(data)
}

// waitLogs polls the container's log until it contains want.
func waitLogs(t *testing.T, c *Cluster, ns, pod, container, want string) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		data, err := c.Client().CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
		if err != nil {
			return false, nil
		}
		last = string(data)
		return strings.Contains(last, want), nil
	})
	require.NoError(t, err, "the log of %s/%s never contained %q; last read:\n%s", pod, container, want, last)
}

func TestNode(t *testing.T) {
	c := StartForTest(t, Options{
		Nodes:                  2,
		NodeCPU:                "4",
		NodeMemory:             "8Gi",
		NodePods:               50,
		NodeMonitorGracePeriod: 20 * time.Second,
	})

	t.Run("Registered", func(t *testing.T) {
		t.Parallel()
		testNodeRegistered(t, c)
	})
	t.Run("Succeeds", func(t *testing.T) {
		t.Parallel()
		testPodSucceeds(t, c)
	})
	t.Run("ExitCode", func(t *testing.T) {
		t.Parallel()
		testPodExitCode(t, c)
	})
	t.Run("RestartOnFailure", func(t *testing.T) {
		t.Parallel()
		testPodRestartOnFailure(t, c)
	})
	t.Run("OOMKilled", func(t *testing.T) {
		t.Parallel()
		testPodOOMKilled(t, c)
	})
	t.Run("TerminationMessage", func(t *testing.T) {
		t.Parallel()
		testPodTerminationMessage(t, c)
	})
	t.Run("LogsFollowAndTail", func(t *testing.T) {
		t.Parallel()
		testPodLogs(t, c)
	})
	t.Run("Exec", func(t *testing.T) {
		t.Parallel()
		testPodExec(t, c)
	})
	t.Run("EmptyDirSharedAfterInitContainers", func(t *testing.T) {
		t.Parallel()
		testPodEmptyDir(t, c)
	})
	t.Run("SidecarStoppedAfterContainers", func(t *testing.T) {
		t.Parallel()
		testPodSidecar(t, c)
	})
	t.Run("EnvFromSecret", func(t *testing.T) {
		t.Parallel()
		testPodEnv(t, c)
	})
	t.Run("ConfigMapAndSecretVolumes", func(t *testing.T) {
		t.Parallel()
		testPodConfigVolumes(t, c)
	})
	t.Run("UnsupportedVolume", func(t *testing.T) {
		t.Parallel()
		testPodUnsupportedVolume(t, c)
	})
	t.Run("ImagePullBackOff", func(t *testing.T) {
		t.Parallel()
		testPodImagePullBackOff(t, c)
	})
	t.Run("InvalidImageName", func(t *testing.T) {
		t.Parallel()
		testPodInvalidImageName(t, c)
	})
	t.Run("DeadlineExceeded", func(t *testing.T) {
		t.Parallel()
		testPodDeadlineExceeded(t, c)
	})
	t.Run("GracefulDeletion", func(t *testing.T) {
		t.Parallel()
		testPodGracefulDeletion(t, c)
	})
	t.Run("TooBigIsUnschedulable", func(t *testing.T) {
		t.Parallel()
		testPodUnschedulable(t, c)
	})
}

func testNodeRegistered(t *testing.T, c *Cluster) {
	ctx := t.Context()
	require.Equal(t, []string{"node-0", "node-1"}, c.NodeNames())
	for _, name := range c.NodeNames() {
		n, err := c.Client().CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err)
		require.True(t, nodeReady(n), "node %s is not Ready: %+v", name, n.Status.Conditions)
		for res, want := range map[corev1.ResourceName]string{corev1.ResourceCPU: "4", corev1.ResourceMemory: "8Gi", corev1.ResourcePods: "50"} {
			want := resource.MustParse(want)
			require.Zero(t, want.Cmp(n.Status.Capacity[res]), "capacity %s: %v", res, n.Status.Capacity)
			require.Zero(t, want.Cmp(n.Status.Allocatable[res]), "allocatable %s: %v", res, n.Status.Allocatable)
		}
		require.Contains(t, n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "127.0.0.1"})
		require.Positive(t, n.Status.DaemonEndpoints.KubeletEndpoint.Port)
		require.Empty(t, n.Spec.Taints)

		// The Lease in kube-node-lease is renewed.
		leases := c.Client().CoordinationV1().Leases(corev1.NamespaceNodeLease)
		first, err := leases.Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err)
		require.NotNil(t, first.Spec.RenewTime)
		require.Equal(t, name, *first.Spec.HolderIdentity)
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			l, err := leases.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			return l.Spec.RenewTime.After(first.Spec.RenewTime.Time), nil
		})
		require.NoError(t, err, "the Lease of node %s was not renewed", name)
	}
}

func testPodSucceeds(t *testing.T, c *Cluster) {
	ns := c.NewNamespace(t, "succeeds", nil)
	createPod(t, c, ns, shPod("ok", "echo hello; exit 0"))
	p := waitPod(t, c, ns, "ok", 2*time.Minute, "a terminal phase", terminal)
	require.Equal(t, corev1.PodSucceeded, p.Status.Phase, podSummary(p))
	require.Contains(t, c.NodeNames(), p.Spec.NodeName)
	require.Equal(t, "127.0.0.1", p.Status.PodIP)
	require.NotNil(t, p.Status.StartTime)
	cs := containerStatus(t, p, "main")
	require.NotNil(t, cs.State.Terminated, podSummary(p))
	require.Equal(t, int32(0), cs.State.Terminated.ExitCode)
	require.Equal(t, "Completed", cs.State.Terminated.Reason)
	require.False(t, cs.State.Terminated.StartedAt.IsZero())
	require.False(t, cs.State.Terminated.FinishedAt.Before(&cs.State.Terminated.StartedAt))
	require.NotEmpty(t, cs.ContainerID)
	require.Equal(t, "docker.io/library/debian:bookworm", cs.Image)
	for typ, want := range map[corev1.PodConditionType]corev1.ConditionStatus{
		corev1.PodScheduled:    corev1.ConditionTrue,
		corev1.PodInitialized:  corev1.ConditionTrue,
		corev1.ContainersReady: corev1.ConditionFalse,
		corev1.PodReady:        corev1.ConditionFalse,
	} {
		cond := condition(p, typ)
		require.NotNil(t, cond, "condition %s missing\n%s", typ, podSummary(p))
		require.Equal(t, want, cond.Status, "condition %s\n%s", typ, podSummary(p))
	}
	require.Equal(t, "PodCompleted", condition(p, corev1.PodReady).Reason)
	requireSandboxEnded(t, c, ns, "ok")
	require.Equal(t, "hello\n", podLogs(t, c, ns, "ok", &corev1.PodLogOptions{}))
}

func testPodExitCode(t *testing.T, c *Cluster) {
	ns := c.NewNamespace(t, "exitcode", nil)
	createPod(t, c, ns, shPod("three", "echo failing >&2; exit 3"))
	p := waitPod(t, c, ns, "three", 2*time.Minute, "a terminal phase", terminal)
	require.Equal(t, corev1.PodFailed, p.Status.Phase, podSummary(p))
	cs := containerStatus(t, p, "main")
	require.NotNil(t, cs.State.Terminated, podSummary(p))
	require.Equal(t, int32(3), cs.State.Terminated.ExitCode)
	require.Equal(t, "Error", cs.State.Terminated.Reason)
	require.Equal(t, "PodFailed", condition(p, corev1.PodReady).Reason)
	require.Equal(t, "failing\n", podLogs(t, c, ns, "three", &corev1.PodLogOptions{}))
}

func testPodRestartOnFailure(t *testing.T, c *Cluster) {
	ns := c.NewNamespace(t, "restart", nil)
	// The working folder is the pod's: the marker outlives the first run.
	pod := shPod("again", `if [ -e marker ]; then echo second run; exit 0; fi; touch marker; echo first run; exit 1`)
	pod.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	createPod(t, c, ns, pod)
	p := waitPod(t, c, ns, "again", 2*time.Minute, "a terminal phase", terminal)
	require.Equal(t, corev1.PodSucceeded, p.Status.Phase, podSummary(p))
	cs := containerStatus(t, p, "main")
	require.Equal(t, int32(1), cs.RestartCount, podSummary(p))
	require.NotNil(t, cs.LastTerminationState.Terminated, podSummary(p))
	require.Equal(t, int32(1), cs.LastTerminationState.Terminated.ExitCode)
	require.Equal(t, "second run\n", podLogs(t, c, ns, "again", &corev1.PodLogOptions{}))
	require.Equal(t, "first run\n", podLogs(t, c, ns, "again", &corev1.PodLogOptions{Previous: true}))
}

func testPodOOMKilled(t *testing.T, c *Cluster) {
	ns := c.NewNamespace(t, "oom", nil)
	// The shell doubles a string until it is over its 64 MiB limit.
	pod := shPod("hog", `x=0123456789abcdef; while true; do x="$x$x"; done`)
	pod.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}
	createPod(t, c, ns, pod)
	p := waitPod(t, c, ns, "hog", 2*time.Minute, "a terminal phase", terminal)
	require.Equal(t, corev1.PodFailed, p.Status.Phase, podSummary(p))
	cs := containerStatus(t, p, "main")
	require.NotNil(t, cs.State.Terminated, podSummary(p))
	require.Equal(t, "OOMKilled", cs.State.Terminated.Reason, podSummary(p))
	require.Equal(t, int32(137), cs.State.Terminated.ExitCode)
}

func testPodTerminationMessage(t *testing.T, c *Cluster) {
	ns := c.NewNamespace(t, "termmsg", nil)
	pod := shPod("msg", `printf 'result-42' > /dev/termination-log`)
	pod.Spec.Containers = append(pod.Spec.Containers,
		corev1.Container{
			// A path under a host folder (/var/run is /run here): the
			// file is made in the container, not on the host.
			Name: "custom", Image: "debian:bookworm", TerminationMessagePath: "/var/run/kubexec-test/message",
			Command: []string{"sh", "-c", `head -c 5000 /dev/zero | tr '\0' x > /var/run/kubexec-test/message`},
		},
		corev1.Container{
			Name: "fallback", Image: "debian:bookworm", TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			Command: []string{"sh", "-c", `echo starting; echo last words; exit 1`},
		},
	)
	createPod(t, c, ns, pod)
	p := waitPod(t, c, ns, "msg", 2*time.Minute, "a terminal phase", terminal)
	require.Equal(t, corev1.PodFailed, p.Status.Phase, podSummary(p))
	require.Equal(t, "result-42", containerStatus(t, p, "main").State.Terminated.Message, podSummary(p))
	custom := containerStatus(t, p, "custom").State.Terminated
	require.Equal(t, int32(0), custom.ExitCode, podSummary(p))
	require.Equal(t, strings.Repeat("x", 4096), custom.Message, "the message is cut at 4096 bytes")
	fallback := containerStatus(t, p, "fallback").State.Terminated
	require.Equal(t, "starting\nlast words\n", fallback.Message, podSummary(p))
	_, err := os.Stat("/var/run/kubexec-test")
	require.True(t, os.IsNotExist(err), "the container's mount point leaked to the host")
}

func testPodLogs(t *testing.T, c *Cluster) {
	ns := c.NewNamespace(t, "logs", nil)
	createPod(t, c, ns, shPod("chatty", `for i in 1 2 3 4 5; do echo line-$i; done; echo to-stderr >&2; sleep 2; echo after-sleep; sleep 1; echo done`))
	waitPod(t, c, ns, "chatty", 2*time.Minute, "phase Running", func(p *corev1.Pod) bool { return running(p) || terminal(p) })

	// Follow: the stream ends when the container does, with every line.
	followed := podLogs(t, c, ns, "chatty", &corev1.PodLogOptions{Follow: true})
	require.Equal(t, "line-1\nline-2\nline-3\nline-4\nline-5\nto-stderr\nafter-sleep\ndone\n", followed)
	p := waitPod(t, c, ns, "chatty", 2*time.Minute, "a terminal phase", terminal)
	require.Equal(t, corev1.PodSucceeded, p.Status.Phase, podSummary(p))

	require.Equal(t, "after-sleep\ndone\n", podLogs(t, c, ns, "chatty", &corev1.PodLogOptions{TailLines: new(int64(2))}))
	require.Equal(t, "line-", podLogs(t, c, ns, "chatty", &corev1.PodLogOptions{LimitBytes: new(int64(5))}))
	stamped := podLogs(t, c, ns, "chatty", &corev1.PodLogOptions{Timestamps: true, TailLines: new(int64(1))})
	require.Regexp(t, regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z done\n$`), stamped)
	require.Equal(t, "", podLogs(t, c, ns, "chatty", &corev1.PodLogOptions{TailLines: new(int64(0))}))
	require.Equal(t, followed, podLogs(t, c, ns, "chatty", &corev1.PodLogOptions{SinceSeconds: new(int64(3600))}))

	// sinceSeconds while a pod writes: an old line is left out, the ticks
	// of the last seconds are in. The old line is at least 10 s older than
	// any tick, so no read of the last 5 s has it; a read may come when no
	// tick was written in the last 5 s (a loaded machine can hold the
	// ticker back), so read until one has a tick.
	createPod(t, c, ns, shPod("ticker", `echo old; sleep 10; while true; do echo tick; sleep 0.2; done`))
	waitLogs(t, c, ns, "ticker", "main", "tick")
	var recent string
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		recent = podLogs(t, c, ns, "ticker", &corev1.PodLogOptions{SinceSeconds: new(int64(5))})
		require.NotContains(t, recent, "old")
		return strings.Contains(recent, "tick"), nil
	})
	require.NoError(t, err, "no read of the last 5 s had a tick; last read:\n%s", recent)
}

func testPodExec(t *testing.T, c *Cluster) {
	ns := c.NewNamespace(t, "exec", nil)
	pod := shPod("target", `echo inside > /tmp/private; echo ready; exec sleep 3600`)
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "GREETING", Value: "hi"}}
	createPod(t, c, ns, pod)
	waitPod(t, c, ns, "target", 2*time.Minute, "phase Running", running)
	waitLogs(t, c, ns, "target", "main", "ready")

	stdout, stderr, code := c.Exec(t, ns, "target", "main", "sh", "-c", `echo out $GREETING; echo err >&2; exit 7`)
	require.Equal(t, "out hi\n", stdout)
	require.Equal(t, "err\n", stderr)
	require.Equal(t, 7, code)

	// The command runs in the container's mount and UTS namespaces: its
	// private /tmp and its hostname.
	stdout, _, code = c.Exec(t, ns, "target", "main", "cat", "/tmp/private")
	require.Equal(t, 0, code)
	require.Equal(t, "inside\n", stdout)
	stdout, _, _ = c.Exec(t, ns, "target", "main", "hostname")
	require.Equal(t, "target\n", stdout)
	_, err := os.Stat("/tmp/private")
	require.True(t, os.IsNotExist(err), "the container's /tmp is the host's")
}

func testPodEmptyDir(t *testing.T, c *Cluster) {
	ns := c.NewNamespace(t, "emptydir", nil)
	pod := shPod("share", `while [ ! -e /shared/data ]; do sleep 0.1; done; cat /shared/init; cat /shared/data`)
	pod.Spec.Volumes = []corev1.Volume{{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	mount := []corev1.VolumeMount{{Name: "shared", MountPath: "/shared"}}
	pod.Spec.Containers[0].Name = "reader"
	pod.Spec.Containers[0].VolumeMounts = mount
	pod.Spec.InitContainers = []corev1.Container{
		{Name: "first", Image: "debian:bookworm", VolumeMounts: mount, Command: []string{"sh", "-c", "echo first > /shared/init"}},
		{Name: "second", Image: "debian:bookworm", VolumeMounts: mount, Command: []string{"sh", "-c", "echo second >> /shared/init"}},
	}
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{
		Name: "writer", Image: "debian:bookworm", VolumeMounts: mount,
		Command: []string{"sh", "-c", "echo from-writer > /shared/tmp && mv /shared/tmp /shared/data"},
	})
	createPod(t, c, ns, pod)
	p := waitPod(t, c, ns, "share", 2*time.Minute, "a terminal phase", terminal)
	require.Equal(t, corev1.PodSucceeded, p.Status.Phase, podSummary(p))
	first, second := containerStatus(t, p, "first").State.Terminated, containerStatus(t, p, "second").State.Terminated
	require.False(t, second.StartedAt.Before(&first.FinishedAt), "init containers ran at once")
	require.Equal(t, "first\nsecond\nfrom-writer\n", podLogs(t, c, ns, "share", &corev1.PodLogOptions{Container: "reader"}))
}

func testPodSidecar(t *testing.T, c *Cluster) {
	ns := c.NewNamespace(t, "sidecar", nil)
	always := corev1.ContainerRestartPolicyAlways
	mount := []corev1.VolumeMount{{Name: "shared", MountPath: "/shared"}}
	pod := shPod("with-sidecar", `cat /shared/sidecar`)
	pod.Spec.Volumes = []corev1.Volume{{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	pod.Spec.Containers[0].VolumeMounts = mount
	pod.Spec.InitContainers = []corev1.Container{{
		Name: "helper", Image: "debian:bookworm", RestartPolicy: &always, VolumeMounts: mount,
		Command: []string{"sh", "-c", `trap 'echo stopping; exit 0' TERM; echo up > /shared/sidecar; while true; do sleep 0.2; done`},
	}}
	createPod(t, c, ns, pod)
	// The sidecar started before the container and, unlike a plain init
	// container, kept running: the container read what it wrote. Once the
	// container is done, the sidecar is stopped and the pod completes.
	p := waitPod(t, c, ns, "with-sidecar", 2*time.Minute, "a terminal phase", terminal)
	require.Equal(t, corev1.PodSucceeded, p.Status.Phase, podSummary(p))
	main, helper := containerStatus(t, p, "main").State.Terminated, containerStatus(t, p, "helper").State.Terminated
	require.NotNil(t, main, podSummary(p))
	require.NotNil(t, helper, podSummary(p))
	require.Equal(t, int32(0), main.ExitCode)
	require.False(t, helper.FinishedAt.Before(&main.FinishedAt), "the sidecar stopped before the container")
	require.Equal(t, "up\n", podLogs(t, c, ns, "with-sidecar", &corev1.PodLogOptions{Container: "main"}))
	require.Equal(t, "stopping\n", podLogs(t, c, ns, "with-sidecar", &corev1.PodLogOptions{Container: "helper"}))
}

func testPodEnv(t *testing.T, c *Cluster) {
	ctx := t.Context()
	ns := c.NewNamespace(t, "env", nil)
	_, err := c.Client().CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds"},
		Data:       map[string][]byte{"password": []byte("s3cret"), "USER_FROM_SECRET": []byte("alice")},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.Client().CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings"},
		Data:       map[string]string{"mode": "fast"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	pod := shPod("printer", `echo "password=$PASSWORD user=$CFG_USER_FROM_SECRET mode=$MODE name=$POD_NAME ns=$POD_NS team=$TEAM ip=$POD_IP combined=$COMBINED"`)
	pod.Labels = map[string]string{"team": "blue"}
	fieldRef := func(path string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
	}
	pod.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{Prefix: "CFG_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}}}
	pod.Spec.Containers[0].Env = []corev1.EnvVar{
		{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "password"}}},
		{Name: "MODE", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}, Key: "mode"}}},
		{Name: "POD_NAME", ValueFrom: fieldRef("metadata.name")},
		{Name: "POD_NS", ValueFrom: fieldRef("metadata.namespace")},
		{Name: "TEAM", ValueFrom: fieldRef("metadata.labels['team']")},
		{Name: "POD_IP", ValueFrom: fieldRef("status.podIP")},
		{Name: "COMBINED", Value: "$(POD_NAME)-$(MODE)"},
	}
	createPod(t, c, ns, pod)
	p := waitPod(t, c, ns, "printer", 2*time.Minute, "a terminal phase", terminal)
	require.Equal(t, corev1.PodSucceeded, p.Status.Phase, podSummary(p))
	require.Equal(t, "password=s3cret user=alice mode=fast name=printer ns="+ns+" team=blue ip=127.0.0.1 combined=printer-fast\n",
		podLogs(t, c, ns, "printer", &corev1.PodLogOptions{}))

	// A Secret that does not exist: the container waits, the kubelet's way.
	missing := shPod("missing", "echo never")
	missing.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k"}}}}
	createPod(t, c, ns, missing)
	p = waitPod(t, c, ns, "missing", 2*time.Minute, "waiting reason CreateContainerConfigError", func(p *corev1.Pod) bool {
		return waitingReason(p, "main") == "CreateContainerConfigError"
	})
	require.Equal(t, corev1.PodPending, p.Status.Phase)
	require.Contains(t, containerStatus(t, p, "main").State.Waiting.Message, `secret "nope" not found`)
}

func testPodConfigVolumes(t *testing.T, c *Cluster) {
	ctx := t.Context()
	ns := c.NewNamespace(t, "volumes", nil)
	_, err := c.Client().CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "tls"}, Data: map[string][]byte{"key.pem": []byte("KEY")},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.Client().CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "app"}, Data: map[string]string{"app.conf": "threads=4", "other": "x"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	pod := shPod("reader", `cat /etc/app/config/app.conf; echo; cat /secrets/key.pem; echo; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo has-token; echo x > /etc/app/config/new || echo read-only`)
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "app"}, Items: []corev1.KeyToPath{{Key: "app.conf", Path: "app.conf"}}}}},
		{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "tls"}}},
	}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{
		{Name: "config", MountPath: "/etc/app/config"},
		{Name: "tls", MountPath: "/secrets"},
	}
	createPod(t, c, ns, pod)
	p := waitPod(t, c, ns, "reader", 2*time.Minute, "a terminal phase", terminal)
	require.Equal(t, corev1.PodSucceeded, p.Status.Phase, podSummary(p))
	out := podLogs(t, c, ns, "reader", &corev1.PodLogOptions{})
	require.True(t, strings.HasPrefix(out, "threads=4\nKEY\n"+ns+"\nhas-token\n"), out)
	require.Contains(t, out, "read-only")
	_, err = os.Stat("/etc/app")
	require.True(t, os.IsNotExist(err), "the container's mount point leaked to the host")
}

func testPodUnsupportedVolume(t *testing.T, c *Cluster) {
	ns := c.NewNamespace(t, "unsupported", nil)
	pod := shPod("nfs", "echo never")
	pod.Spec.Volumes = []corev1.Volume{{Name: "remote", VolumeSource: corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "nfs.example", Path: "/export"}}}}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "remote", MountPath: "/data"}}
	createPod(t, c, ns, pod)
	p := waitPod(t, c, ns, "nfs", 2*time.Minute, "waiting reason CreateContainerConfigError", func(p *corev1.Pod) bool {
		return waitingReason(p, "main") == "CreateContainerConfigError"
	})
	require.Equal(t, corev1.PodPending, p.Status.Phase)
	msg := containerStatus(t, p, "main").State.Waiting.Message
	require.Contains(t, msg, `volume "remote"`)
	require.Contains(t, msg, "nfs")
}

// watchWaitingReasons watches the pod from resourceVersion rv and returns
// the waiting reasons of container main in the order they were seen, once
// want have all been seen in that order. With rv read before the pod was
// created, every state the pod was written with is seen, however late the
// watch starts.
func watchWaitingReasons(t *testing.T, c *Cluster, ns, name, rv string, want ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var seen []string
	for ctx.Err() == nil {
		w, err := c.Client().CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", name).String(),
			ResourceVersion: rv,
		})
		if ctx.Err() != nil {
			break
		}
		require.NoError(t, err)
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				t.Fatalf("watch of pod %s from version %s: %v", name, rv, apierrors.FromObject(ev.Object))
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			// A new watch, after this one ends, resumes here.
			rv = p.ResourceVersion
			if r := waitingReason(p, "main"); r != "" && (len(seen) == 0 || seen[len(seen)-1] != r) {
				seen = append(seen, r)
			}
			if isSubsequence(want, seen) {
				w.Stop()
				return seen
			}
		}
	}
	t.Fatalf("waiting reasons %v not seen in order within 3m; seen %v", want, seen)
	return nil
}

func isSubsequence(want, seen []string) bool {
	i := 0
	for _, s := range seen {
		if i < len(want) && s == want[i] {
			i++
		}
	}
	return i == len(want)
}

func testPodImagePullBackOff(t *testing.T, c *Cluster) {
	ns := c.NewNamespace(t, "pull", nil)
	pod := shPod("missing-image", "echo never")
	pod.Spec.Containers[0].Image = "registry.example.com/team/does-not-exist:1.0"
	before, err := c.Client().CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	createPod(t, c, ns, pod)
	seen := watchWaitingReasons(t, c, ns, "missing-image", before.ResourceVersion, "ErrImagePull", "ImagePullBackOff")
	first := slices.IndexFunc(seen, func(r string) bool { return r != "ContainerCreating" })
	require.Equal(t, "ErrImagePull", seen[first], "the first waiting reason after ContainerCreating: %v", seen)
	p, err := c.Client().CoreV1().Pods(ns).Get(t.Context(), "missing-image", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, corev1.PodPending, p.Status.Phase)
	if w := containerStatus(t, p, "main").State.Waiting; w != nil {
		require.Contains(t, w.Message, "registry.example.com/team/does-not-exist:1.0")
	}
	_, err = c.Client().CoreV1().Pods(ns).GetLogs("missing-image", &corev1.PodLogOptions{}).Stream(t.Context())
	require.True(t, apierrors.IsBadRequest(err), "%v", err)
	require.Regexp(t, `^container "main" in pod "missing-image" is waiting to start: (image can't be pulled|trying and failing to pull image)$`, err.Error())
}

func testPodInvalidImageName(t *testing.T, c *Cluster) {
	ns := c.NewNamespace(t, "invalid", nil)
	pod := shPod("bad-image", "echo never")
	pod.Spec.Containers[0].Image = "Team/UPPERCASE:tag"
	createPod(t, c, ns, pod)
	p := waitPod(t, c, ns, "bad-image", 2*time.Minute, "waiting reason InvalidImageName", func(p *corev1.Pod) bool {
		return waitingReason(p, "main") == "InvalidImageName"
	})
	require.Equal(t, corev1.PodPending, p.Status.Phase)
	require.Contains(t, containerStatus(t, p, "main").State.Waiting.Message, "Team/UPPERCASE:tag")
}

func testPodDeadlineExceeded(t *testing.T, c *Cluster) {
	ns := c.NewNamespace(t, "deadline", nil)
	pod := shPod("slow", "sleep 3600")
	pod.Spec.ActiveDeadlineSeconds = new(int64(3))
	createPod(t, c, ns, pod)
	p := waitPod(t, c, ns, "slow", 2*time.Minute, "a terminal phase", terminal)
	require.Equal(t, corev1.PodFailed, p.Status.Phase, podSummary(p))
	require.Equal(t, "DeadlineExceeded", p.Status.Reason)
	cs := containerStatus(t, p, "main")
	require.NotNil(t, cs.State.Terminated, podSummary(p))
	require.NotEqual(t, int32(0), cs.State.Terminated.ExitCode)
	require.GreaterOrEqual(t, p.Status.ContainerStatuses[0].State.Terminated.FinishedAt.Sub(p.Status.StartTime.Time), 3*time.Second)
}

func testPodGracefulDeletion(t *testing.T, c *Cluster) {
	ctx := t.Context()
	ns := c.NewNamespace(t, "delete", nil)
	pods := c.Client().CoreV1().Pods(ns)
	script := `trap 'echo got SIGTERM; exit 0' TERM; echo ready; while true; do sleep 0.2; done`
	const finalizer = "kubexec.io/test-hold"

	// The grace period is far longer than any wait below: a container
	// signalled only when it ends (or killed then, exit 137), or a pod
	// released only then, fails the waits rather than being slow.
	const grace = int64(3600)

	// With a finalizer of someone else's, the pod stays after the node
	// releases it, so its final status and log can be read.
	held := shPod("held", script)
	held.Finalizers = []string{finalizer}
	held.Spec.TerminationGracePeriodSeconds = new(grace)
	createPod(t, c, ns, held)
	free := shPod("free", script)
	free.Spec.TerminationGracePeriodSeconds = new(grace)
	createPod(t, c, ns, free)
	for _, name := range []string{"held", "free"} {
		waitPod(t, c, ns, name, 2*time.Minute, "phase Running", running)
		waitLogs(t, c, ns, name, "main", "ready")
	}
	require.NoError(t, pods.Delete(ctx, "held", metav1.DeleteOptions{}))
	require.NoError(t, pods.Delete(ctx, "free", metav1.DeleteOptions{}))

	p := waitPod(t, c, ns, "held", 3*time.Minute, "a terminal phase", terminal)
	require.NotNil(t, p.DeletionTimestamp)
	require.Equal(t, corev1.PodSucceeded, p.Status.Phase, podSummary(p))
	cs := containerStatus(t, p, "main")
	require.NotNil(t, cs.State.Terminated, podSummary(p))
	require.Equal(t, int32(0), cs.State.Terminated.ExitCode, "the trap exits 0")
	require.Equal(t, "ready\ngot SIGTERM\n", podLogs(t, c, ns, "held", &corev1.PodLogOptions{}), "the container stopped on SIGTERM")
	require.Equal(t, []string{finalizer}, p.Finalizers, "the node must not touch other finalizers")

	// Without one, the node releases it as soon as its containers are gone,
	// well before the grace period ends.
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := pods.Get(ctx, "free", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	require.NoError(t, err, "the pod without finalizers was not released before its grace period ended")

	_, err = pods.Patch(ctx, "held", types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`), metav1.PatchOptions{})
	require.NoError(t, err)
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := pods.Get(ctx, "held", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	require.NoError(t, err, "the pod stayed after its last finalizer was removed")
}

func testPodUnschedulable(t *testing.T, c *Cluster) {
	ns := c.NewNamespace(t, "toobig", nil)
	pod := shPod("huge", "echo never")
	pod.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100")}
	createPod(t, c, ns, pod)
	p := waitPod(t, c, ns, "huge", 2*time.Minute, "PodScheduled=False", func(p *corev1.Pod) bool {
		cond := condition(p, corev1.PodScheduled)
		return cond != nil && cond.Status == corev1.ConditionFalse
	})
	require.Equal(t, corev1.PodPending, p.Status.Phase)
	require.Empty(t, p.Spec.NodeName)
	require.Equal(t, corev1.PodReasonUnschedulable, condition(p, corev1.PodScheduled).Reason)
	require.Contains(t, condition(p, corev1.PodScheduled).Message, "Insufficient cpu")
}

// TestNodeAgentKilled kills a node agent: its containers die with it, the
// controller-manager marks the node NotReady and evicts its pod. Started
// again, the agent reports the pod's container lost (ContainerStatusUnknown,
// 137), still serves its log, and releases the pod.
func TestNodeAgentKilled(t *testing.T) {
	ctx := t.Context()
	// Two nodes: with every node of a zone down, the controller-manager
	// assumes it is the one cut off and evicts nothing.
	c := StartForTest(t, Options{
		Nodes: 2,
		// Long enough that the node that stays up is never taken for a
		// lost one on a loaded machine: with every node down, nothing is
		// evicted.
		NodeMonitorGracePeriod:       16 * time.Second,
		NotReadyTolerationSeconds:    2,
		UnreachableTolerationSeconds: 2,
	})
	ns := c.NewNamespace(t, "killed", nil)
	pods := c.Client().CoreV1().Pods(ns)
	beat := filepath.Join(t.TempDir(), "beat")
	// The shell's stderr goes nowhere once it has started: when the agent
	// dies, the order in which its processes are killed decides whether the
	// shell lives to report a killed sleep ("Terminated"), and the log is
	// checked below to hold exactly what the container wrote before.
	pod := shPod("victim", `echo alive; exec 2>/dev/null; while true; do date +%s%N > /beat/now; sleep 0.1; done`)
	// A finalizer keeps the evicted pod, to see what the agent reports.
	const finalizer = "kubexec.io/test-hold"
	pod.Finalizers = []string{finalizer}
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	pod.Spec.Volumes = []corev1.Volume{{Name: "beat", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: beat, Type: &dirOrCreate}}}}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "beat", MountPath: "/beat"}}
	pod.Spec.NodeSelector = map[string]string{corev1.LabelHostname: "node-0"}
	createPod(t, c, ns, pod)
	// A pod that ended before the agent died: its log outlives the agent.
	ended := shPod("ended", "echo finished before")
	ended.Spec.NodeSelector = pod.Spec.NodeSelector
	ended.Finalizers = []string{finalizer}
	createPod(t, c, ns, ended)
	waitPod(t, c, ns, "ended", 2*time.Minute, "a terminal phase", terminal)
	t.Cleanup(func() {
		for _, name := range []string{"victim", "ended"} {
			_, _ = pods.Patch(context.Background(), name, types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`), metav1.PatchOptions{})
		}
	})
	waitPod(t, c, ns, "victim", 2*time.Minute, "phase Running", running)
	heartbeat := func() string {
		data, _ := os.ReadFile(filepath.Join(beat, "now"))
		return string(data)
	}
	require.Eventually(t, func() bool { return heartbeat() != "" }, 3*time.Minute, 100*time.Millisecond, "the container never wrote its heartbeat")

	require.NoError(t, c.KillNode("node-0"))

	// The container died with its agent: its heartbeat stops.
	var stale string
	err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(context.Context) (bool, error) {
		now := heartbeat()
		done := now == stale
		stale = now
		return done, nil
	})
	require.NoError(t, err, "the container kept running after its node agent was killed")

	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		n, err := c.Client().CoreV1().Nodes().Get(ctx, "node-0", metav1.GetOptions{})
		return err == nil && !nodeReady(n), nil
	})
	require.NoError(t, err, "the node stayed Ready after its agent was killed")

	p := waitPod(t, c, ns, "victim", 2*time.Minute, "eviction", func(p *corev1.Pod) bool { return p.DeletionTimestamp != nil })
	cond := condition(p, corev1.DisruptionTarget)
	require.NotNil(t, cond, podSummary(p))
	require.Equal(t, corev1.ConditionTrue, cond.Status)

	// Back again, the agent finds the container gone.
	require.NoError(t, c.StartNode(ctx, "node-0"))
	p = waitPod(t, c, ns, "victim", 2*time.Minute, "a terminal phase", terminal)
	require.Equal(t, corev1.PodFailed, p.Status.Phase, podSummary(p))
	cs := containerStatus(t, p, "main")
	require.NotNil(t, cs.State.Terminated, podSummary(p))
	require.Equal(t, "ContainerStatusUnknown", cs.State.Terminated.Reason)
	require.Equal(t, int32(137), cs.State.Terminated.ExitCode)
	require.NotNil(t, condition(p, corev1.DisruptionTarget), "the agent dropped the eviction's condition\n%s", podSummary(p))
	require.Equal(t, "alive\n", podLogs(t, c, ns, "victim", &corev1.PodLogOptions{}))
	require.Equal(t, "finished before\n", podLogs(t, c, ns, "ended", &corev1.PodLogOptions{}))

	_, err = pods.Patch(ctx, "victim", types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`), metav1.PatchOptions{})
	require.NoError(t, err)
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := pods.Get(ctx, "victim", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	require.NoError(t, err, "the evicted pod was not released")
}

// TestNodeOOMKilledByRSSWatch runs the memory hog on a node that enforces
// memory limits by watching RSS, as on machines where the cgroup memory
// controller is not writable.
func TestNodeOOMKilledByRSSWatch(t *testing.T) {
	c := StartForTest(t, Options{Nodes: 1, NodeMemoryEnforcement: "rss"})
	testPodOOMKilled(t, c)
}
