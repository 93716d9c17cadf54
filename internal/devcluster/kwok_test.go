package devcluster

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TestKwokNodes starts a cluster with two tainted kwok nodes and checks
// that they are Ready and that pods on them move as kwok-stages.yaml says:
// Succeeded with exit code 0 (after the default or the annotated run time),
// Failed with the exit code of KwokExitCodeAnnotation, and, when deleted,
// gone at once, or once their finalizer is removed. The cluster runs with
// DisableQPSLimits, as the kwok benchmarks do: the scheduler and the
// controller-manager report the client limits they were given.
func TestKwokNodes(t *testing.T) {
	t.Parallel()
	c := StartForTest(t, Options{KwokNodes: 2, KwokNodeTaint: true, DisableQPSLimits: true})
	ctx := t.Context()
	const wait3m = 3 * time.Minute

	for _, component := range []string{"kube-scheduler", "kube-controller-manager"} {
		log, err := os.ReadFile(filepath.Join(c.Dir(), component+".log"))
		require.NoError(t, err)
		require.Contains(t, string(log), `FLAG: --kube-api-qps="5000"`, component)
		require.Contains(t, string(log), `FLAG: --kube-api-burst="10000"`, component)
	}

	names := c.KwokNodeNames()
	require.Equal(t, []string{"kwok-0", "kwok-1"}, names)
	for _, name := range names {
		n, err := c.Client().CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err)
		require.True(t, nodeReady(n), "node %s is Ready", name)
		require.Equal(t, "true", n.Labels[KwokNodeLabel])
	}

	ns := c.NewNamespace(t, "kwok", nil)
	const finalizer = "kubexec.io/test-hold"
	kwokPod := func(name string, annotations map[string]string) *corev1.Pod {
		p := pausePod(name)
		p.Annotations = annotations
		p.Finalizers = []string{finalizer}
		p.Spec.NodeSelector = map[string]string{KwokNodeLabel: "true"}
		p.Spec.Tolerations = []corev1.Toleration{KwokToleration}
		return p
	}
	want := []struct {
		pod   *corev1.Pod
		phase corev1.PodPhase
		code  int32
	}{
		{kwokPod("ok", nil), corev1.PodSucceeded, 0},
		{kwokPod("ok-after-1s", map[string]string{KwokRunTimeAnnotation: "1s"}), corev1.PodSucceeded, 0},
		{kwokPod("fails", map[string]string{KwokExitCodeAnnotation: "3"}), corev1.PodFailed, 3},
	}
	for _, w := range want {
		createPod(t, c, ns, w.pod)
	}
	long := kwokPod("long", map[string]string{KwokRunTimeAnnotation: "1h"})
	long.Finalizers = nil
	createPod(t, c, ns, long)

	for _, w := range want {
		p := waitPod(t, c, ns, w.pod.Name, wait3m, "a terminal phase", terminal)
		require.Equal(t, w.phase, p.Status.Phase, podSummary(p))
		require.Contains(t, names, p.Spec.NodeName)
		require.NotEmpty(t, p.Status.PodIP, podSummary(p))
		cs := containerStatus(t, p, "main")
		require.NotNil(t, cs.State.Terminated, podSummary(p))
		require.Equal(t, w.code, cs.State.Terminated.ExitCode, podSummary(p))
	}
	p := waitPod(t, c, ns, "long", wait3m, "phase Running", running)
	require.NotNil(t, containerStatus(t, p, "main").State.Running, podSummary(p))

	pods := c.Client().CoreV1().Pods(ns)
	gone := func(name, what string) {
		t.Helper()
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, wait3m, true, func(ctx context.Context) (bool, error) {
			_, err := pods.Get(ctx, name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		require.NoError(t, err, what)
	}
	// A running pod is released at once, as a kubelet does when its
	// containers have stopped.
	require.NoError(t, pods.Delete(ctx, "long", metav1.DeleteOptions{}))
	gone("long", "the deleted running pod was not released")

	// A pod with a finalizer stays until it is removed.
	for _, w := range want {
		require.NoError(t, pods.Delete(ctx, w.pod.Name, metav1.DeleteOptions{}))
		p, err := pods.Get(ctx, w.pod.Name, metav1.GetOptions{})
		require.NoError(t, err, "a pod with a finalizer stays after delete")
		require.NotNil(t, p.DeletionTimestamp)
		_, err = pods.Patch(ctx, w.pod.Name, types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`), metav1.PatchOptions{})
		require.NoError(t, err)
		gone(w.pod.Name, "the pod stayed after its last finalizer was removed")
	}
}
