package devcluster

import (
	"archive/tar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kubeletPod is a pod for the kubelet node: busybox's sh runs script.
func kubeletPod(name, script string) *corev1.Pod {
	p := shPod(name, script)
	p.Spec.Containers[0].Image = "busybox:1.36"
	p.Spec.NodeSelector = map[string]string{KubeletNodeLabel: "true"}
	return p
}

// TestKubeletNode starts a cluster with one real kubelet node and checks
// what `make cluster-up NODE_KIND=kubelet` promises: the node is Ready,
// logs and exec work through the API server, a memory limit is enforced by
// a kernel OOM kill, the host's sysctls are untouched, and Stop leaves no
// process, cgroup or mount behind.
func TestKubeletNode(t *testing.T) {
	sysctlsBefore := readSysctls(t)
	c := StartForTest(t, Options{KubeletNodes: 1})
	ctx := t.Context()
	names := c.KubeletNodeNames()
	require.Equal(t, []string{"127.0.0.2"}, names)
	ns := c.NewNamespace(t, "kubelet", nil)

	t.Run("Registered", func(t *testing.T) {
		n, err := c.Client().CoreV1().Nodes().Get(ctx, names[0], metav1.GetOptions{})
		require.NoError(t, err)
		require.True(t, nodeReady(n))
		require.Equal(t, "true", n.Labels[KubeletNodeLabel])
		require.Equal(t, "v1.37.2", n.Status.NodeInfo.KubeletVersion)
		require.True(t, strings.HasPrefix(n.Status.NodeInfo.ContainerRuntimeVersion, "containerd://"), n.Status.NodeInfo.ContainerRuntimeVersion)
		require.Contains(t, n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "127.0.0.2"})
	})
	// The group returns once its parallel subtests are done.
	t.Run("pods", func(t *testing.T) { testKubeletPods(t, c, ns) })

	require.Equal(t, sysctlsBefore, readSysctls(t), "the kubelet changed host sysctls")
	k := c.kubelets[0]
	pids := []int{k.holder.cmd.Process.Pid, k.containerd.cmd.Process.Pid, k.kubelet.cmd.Process.Pid}
	pids = append(pids, k.shimPids()...)
	require.NotEmpty(t, k.shimPids(), "no containerd shim found for the node's pods")
	hs, err := cgroupHierarchies()
	require.NoError(t, err)
	pids = append(pids, k.cgroupPids(hs)...)
	dir := k.dir
	require.NoError(t, c.Stop())
	requireAllExit(t, pids)
	for _, h := range hs {
		_, err := os.Stat(filepath.Join(h, k.cgroupRoot))
		require.True(t, os.IsNotExist(err), "cgroup %s left behind", filepath.Join(h, k.cgroupRoot))
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	require.NotContains(t, string(mounts), dir, "a mount of the node is left")
	require.Equal(t, sysctlsBefore, readSysctls(t))
}

// testKubeletPods runs pods on the kubelet node, in parallel.
func testKubeletPods(t *testing.T, c *Cluster, ns string) {
	t.Run("LogsAndExec", func(t *testing.T) {
		t.Parallel()
		createPod(t, c, ns, kubeletPod("logs", "echo started; echo to-stderr >&2; sleep 300"))
		p := waitPod(t, c, ns, "logs", 3*time.Minute, "running", running)
		require.NotEmpty(t, p.Status.PodIP)
		waitLogs(t, c, ns, "logs", "main", "started")
		out, _, code := c.Exec(t, ns, "logs", "main", "sh", "-c", "echo from-exec; exit 7")
		require.Equal(t, "from-exec\n", out)
		require.Equal(t, 7, code)
		out, _, code = c.Exec(t, ns, "logs", "main", "cat", "/proc/1/cmdline")
		require.Zero(t, code)
		require.Contains(t, out, "sleep")
	})
	t.Run("OwnImageImported", func(t *testing.T) {
		t.Parallel()
		// What the README tells a user: a docker-archive tarball, imported
		// with ctr into the node's containerd, runs with IfNotPresent.
		img, err := busyboxImage()
		require.NoError(t, err)
		img.tags = []string{"example.com/team/app:1"}
		img.files = append(img.files, imageFile{name: "app.txt", mode: 0o644, typ: tar.TypeReg, content: []byte("from the imported image\n")})
		archive := filepath.Join(t.TempDir(), "app.tar")
		require.NoError(t, writeDockerArchive(archive, img))
		sock, err := c.ContainerdSocket(c.KubeletNodeNames()[0])
		require.NoError(t, err)
		out, err := exec.Command("ctr", "--address", sock, "-n", "k8s.io", "images", "import", archive).CombinedOutput()
		require.NoError(t, err, "%s", out)
		p := kubeletPod("own-image", "cat /app.txt")
		p.Spec.Containers[0].Image = "example.com/team/app:1"
		p.Spec.Containers[0].ImagePullPolicy = corev1.PullIfNotPresent
		createPod(t, c, ns, p)
		p = waitPod(t, c, ns, "own-image", 3*time.Minute, "terminal", terminal)
		require.Equal(t, corev1.PodSucceeded, p.Status.Phase, podSummary(p))
		require.Equal(t, "from the imported image\n", podLogs(t, c, ns, "own-image", &corev1.PodLogOptions{}))
	})
	t.Run("MissingImageIsErrImagePull", func(t *testing.T) {
		t.Parallel()
		p := kubeletPod("missing-image", "true")
		p.Spec.Containers[0].Image = "registry.example.com/team/missing:1"
		createPod(t, c, ns, p)
		p = waitPod(t, c, ns, "missing-image", 3*time.Minute, "a pull error", func(p *corev1.Pod) bool {
			r := waitingReason(p, "main")
			return r == "ErrImagePull" || r == "ImagePullBackOff"
		})
		// containerd was sent to the loopback port, not to the registry.
		require.Contains(t, p.Status.ContainerStatuses[0].State.Waiting.Message, noRegistry)
	})
	t.Run("Succeeds", func(t *testing.T) {
		t.Parallel()
		createPod(t, c, ns, kubeletPod("succeeds", "echo done > /dev/termination-log"))
		p := waitPod(t, c, ns, "succeeds", 3*time.Minute, "terminal", terminal)
		require.Equal(t, corev1.PodSucceeded, p.Status.Phase, podSummary(p))
		term := containerStatus(t, p, "main").State.Terminated
		require.NotNil(t, term)
		require.Equal(t, "Completed", term.Reason)
		require.Equal(t, "done\n", term.Message)
		requireSandboxEnded(t, c, ns, "succeeds")
	})
	t.Run("OOMKilledByTheKernel", func(t *testing.T) {
		t.Parallel()
		p := kubeletPod("oom", "tail /dev/zero")
		p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}
		createPod(t, c, ns, p)
		p = waitPod(t, c, ns, "oom", 3*time.Minute, "terminal", terminal)
		require.Equal(t, corev1.PodFailed, p.Status.Phase, podSummary(p))
		term := containerStatus(t, p, "main").State.Terminated
		require.NotNil(t, term)
		require.Equal(t, "OOMKilled", term.Reason)
		require.EqualValues(t, 137, term.ExitCode)
	})

}

// requireSandboxEnded waits until an ended pod's sandbox is reported
// stopped, and checks the condition as the kubelet writes it, which the
// process node copies.
func requireSandboxEnded(t *testing.T, c *Cluster, ns, name string) {
	t.Helper()
	p := waitPod(t, c, ns, name, 3*time.Minute, "PodReadyToStartContainers False", func(p *corev1.Pod) bool {
		cond := condition(p, corev1.PodReadyToStartContainers)
		return cond != nil && cond.Status == corev1.ConditionFalse
	})
	require.Equal(t, "PodSandboxNotReady", condition(p, corev1.PodReadyToStartContainers).Reason)
}

func readSysctls(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	for s := range kubeletSysctls {
		v, err := os.ReadFile(filepath.Join("/proc/sys", s))
		require.NoError(t, err)
		m[s] = strings.TrimSpace(string(v))
	}
	return m
}
