package devcluster

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
)

var cluster *Cluster

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(m.Run())
	}
	os.Exit(Main(m, Options{}, &cluster))
}

func pausePod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name:    "main",
				Image:   "busybox:1.36",
				Command: []string{"sleep", "3600"},
			}},
		},
	}
}

func TestClusterIsReady(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	httpClient, err := rest.HTTPClientFor(cluster.RESTConfig())
	require.NoError(t, err)
	resp, err := httpClient.Get(cluster.Host() + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	version, err := cluster.Client().Discovery().ServerVersion()
	require.NoError(t, err)
	require.Equal(t, "1", version.Major)
	require.Equal(t, "37", version.Minor)

	_, err = cluster.Client().CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
	require.NoError(t, err)
	_, err = cluster.Client().CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
	require.NoError(t, err)

	kubeconfig, err := os.ReadFile(cluster.Kubeconfig())
	require.NoError(t, err)
	require.Contains(t, string(kubeconfig), cluster.Host())
}

func TestQuotaExceededIsRefused(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "quota", nil)
	pods := cluster.Client().CoreV1().Pods(ns)
	cluster.NewQuota(t, ns, "pods", corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1")})

	_, err := pods.Create(ctx, pausePod("first"), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = pods.Create(ctx, pausePod("second"), metav1.CreateOptions{})
	require.Error(t, err)
	require.True(t, apierrors.IsForbidden(err), "want 403, got %v", err)
	require.Contains(t, err.Error(), "exceeded quota")
}

func TestWatchFromCompactedResourceVersionIsGone(t *testing.T) {
	cluster.Need(t)
	// A second cluster, running beside the shared one, with watches served
	// by etcd so that a compaction takes effect at once.
	c := StartForTest(t, Options{DisableWatchCache: true})
	ctx := t.Context()
	cms := c.Client().CoreV1().ConfigMaps("default")
	first, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	for i := range 5 {
		_, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("after-%d", i)}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}

	// Before the compaction the old resourceVersion is still served.
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion})
	require.NoError(t, err)
	ev := <-w.ResultChan()
	w.Stop()
	require.NotEqual(t, "ERROR", string(ev.Type), "watch before compaction: %v", ev.Object)

	rev, err := c.CompactEtcd(ctx)
	require.NoError(t, err)
	firstRV, err := strconv.ParseInt(first.ResourceVersion, 10, 64)
	require.NoError(t, err)
	require.Greater(t, rev, firstRV)

	w, err = cms.Watch(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion})
	if err != nil {
		require.True(t, apierrors.IsGone(err) || apierrors.IsResourceExpired(err), "want 410 Gone, got %v", err)
		return
	}
	defer w.Stop()
	select {
	case ev := <-w.ResultChan():
		require.Equal(t, "ERROR", string(ev.Type))
		status, ok := ev.Object.(*metav1.Status)
		require.True(t, ok, "error event carries %T", ev.Object)
		require.Equal(t, int32(http.StatusGone), status.Code, "status: %+v", status)
	case <-time.After(3 * time.Minute):
		t.Fatal("the watch from a compacted resourceVersion delivered nothing")
	}
}

func TestSchedulerBindsPodToNode(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	nodes := cluster.Client().CoreV1().Nodes()
	node, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{GenerateName: "static-node-"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = nodes.Delete(context.Background(), node.Name, metav1.DeleteOptions{}) })
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("10"),
	}
	// The node lifecycle controller may change the new node meanwhile:
	// read it again on a conflict.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		current, err := nodes.Get(ctx, node.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		current.Status.Capacity = capacity
		current.Status.Allocatable = capacity
		current.Status.Conditions = []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(),
		}}
		_, err = nodes.UpdateStatus(ctx, current, metav1.UpdateOptions{})
		return err
	})
	require.NoError(t, err)

	ns := cluster.NewNamespace(t, "schedule", nil)
	pod := pausePod("bound")
	pod.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": node.Name}
	// The node has no agent behind it, so the node lifecycle controller
	// taints it not-ready/unreachable after its grace period; the pod
	// tolerates that, so only the scheduler's binding is under test.
	pod.Spec.Tolerations = []corev1.Toleration{
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists},
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists},
	}
	// kubernetes.io/hostname is set by the kubelet; set it here.
	_, err = nodes.Patch(ctx, node.Name, "application/merge-patch+json",
		[]byte(`{"metadata":{"labels":{"kubernetes.io/hostname":"`+node.Name+`"}}}`), metav1.PatchOptions{})
	require.NoError(t, err)
	_, err = cluster.Client().CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	require.NoError(t, err)

	var nodeName string
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := cluster.Client().CoreV1().Pods(ns).Get(ctx, "bound", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		nodeName = p.Spec.NodeName
		return nodeName != "", nil
	})
	require.NoError(t, err, "the scheduler did not bind the pod")
	require.Equal(t, node.Name, nodeName)
}

func TestAPIServerRestartKeepsObjects(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "restart", nil)
	cms := cluster.Client().CoreV1().ConfigMaps(ns)
	created, err := cms.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "survivor"},
		Data:       map[string]string{"key": "value"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	require.NoError(t, cluster.StopAPIServer())
	_, err = cms.Get(ctx, "survivor", metav1.GetOptions{})
	require.Error(t, err, "the API server still answers after StopAPIServer")
	require.NoError(t, cluster.StartAPIServer(ctx))

	got, err := cms.Get(ctx, "survivor", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, created.UID, got.UID)
	require.Equal(t, "value", got.Data["key"])
}

// helperEnv makes the test binary, started again by
// TestKilledTestBinaryLeavesNoProcess, run a cluster and print its pids.
const helperEnv = "KUBEXEC_DEVCLUSTER_HELPER"

func TestHelperClusterProcess(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		return // only a step of TestKilledTestBinaryLeavesNoProcess
	}
	c, err := Start(context.Background(), Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("pids", strings.Trim(fmt.Sprint(c.pids()), "[]"))
	time.Sleep(10 * time.Minute)
}

func (c *Cluster) pids() []int {
	var pids []int
	for _, p := range []*process{c.etcd, c.apiserver, c.controller, c.scheduler} {
		pids = append(pids, p.cmd.Process.Pid)
	}
	return pids
}

func alive(pid int) bool {
	// Signal 0 checks existence; a zombie still exists until reaped, so
	// look at its state too.
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat))
	return len(fields) > 2 && fields[2] != "Z"
}

func requireAllExit(t *testing.T, pids []int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 3*time.Minute, true, func(context.Context) (bool, error) {
		for _, pid := range pids {
			if alive(pid) {
				return false, nil
			}
		}
		return true, nil
	})
	require.NoError(t, err, "some of %v are still running", pids)
}

func TestStopLeavesNoProcess(t *testing.T) {
	skipShort(t)
	c, err := Start(t.Context(), Options{})
	require.NoError(t, err)
	pids := c.pids()
	for _, pid := range pids {
		require.True(t, alive(pid))
	}
	dir := c.Dir()
	require.NoError(t, c.Stop())
	require.NoError(t, c.Stop(), "a second Stop")
	requireAllExit(t, pids)
	_, err = os.Stat(dir)
	require.True(t, os.IsNotExist(err), "the temporary folder %s is left", dir)
}

func TestKilledTestBinaryLeavesNoProcess(t *testing.T) {
	skipShort(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperClusterProcess$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	var pids []int
	scanner := bufio.NewScanner(out)
	for scanner.Scan() {
		line := scanner.Text()
		if rest, ok := strings.CutPrefix(line, "pids "); ok {
			for _, f := range strings.Fields(rest) {
				pid, err := strconv.Atoi(f)
				require.NoError(t, err)
				pids = append(pids, pid)
			}
			break
		}
		require.False(t, strings.HasPrefix(line, "error"), line)
	}
	require.Len(t, pids, 4, "the helper printed no pids")

	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	requireAllExit(t, pids)
}
