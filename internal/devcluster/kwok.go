package devcluster

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A kwok node is a Node object that no kubelet stands behind: one kwok
// process (sigs.k8s.io/kwok, built by `make devcluster`) manages every kwok
// node of the cluster and writes the node and pod statuses a kubelet would,
// as the Stage resources in kwok-stages.yaml say, without running anything.
// Pods on a kwok node cost the machine no process, no log and no exec: what
// a benchmark on them measures is the API server, the scheduler and the
// client, not the node.
//
// What a pod on a kwok node does (kwok-stages.yaml):
//   - bound -> Running and Ready at once;
//   - after its run time (annotation KwokRunTimeAnnotation, a Go duration;
//     100ms without it) -> Succeeded, every container terminated with exit
//     code 0; or, when the pod has the annotation KwokExitCodeAnnotation,
//     -> Failed, every container terminated with that exit code (reason
//     Error);
//   - deleted -> gone at once, once its finalizers are removed.
//
// There are no container logs and no exec: the API server's pods/log of a
// kwok pod fails.

const (
	kwokBinary = "kwok"
	// KwokNodeLabel is set to "true" on kwok nodes. It is also the key of
	// the taint of Options.KwokNodeTaint.
	KwokNodeLabel = "kubexec.io/kwok-node"
	// KwokRunTimeAnnotation on a pod sets how long it runs on a kwok node
	// before it ends, as a Go duration ("250ms", "2s"). Default: 100ms.
	KwokRunTimeAnnotation = "kubexec.io/kwok-run-time"
	// KwokExitCodeAnnotation on a pod makes it fail on a kwok node: its
	// containers end with this exit code (a decimal number, not 0).
	KwokExitCodeAnnotation = "kubexec.io/kwok-exit-code"

	// kwokManagedAnnotation marks the nodes the cluster's kwok process
	// manages (--manage-nodes-with-annotation-selector).
	kwokManagedAnnotation = "kwok.x-k8s.io/node"
	// kwokPodCIDR is where kwok takes pod IPs from: large enough for every
	// pod of a 10,000-task benchmark at once, and apart from the service
	// range (10.0.0.0/24).
	kwokPodCIDR = "10.128.0.0/12"
)

//go:embed kwok-stages.yaml
var kwokStages []byte

// KwokToleration tolerates the taint of Options.KwokNodeTaint.
var KwokToleration = corev1.Toleration{Key: KwokNodeLabel, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}

// kwokNodeName is the name of kwok node i.
func kwokNodeName(i int) string { return "kwok-" + strconv.Itoa(i) }

// startKwok creates Options.KwokNodes Node objects named kwok-0, kwok-1,
// ..., starts one kwok process that manages them, and waits until they are
// Ready.
func (c *Cluster) startKwok(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(c.opts.BinDir, kwokBinary)); err != nil {
		return fmt.Errorf("devcluster: binary %s not found in %s: run `make devcluster` in the project root to build it (or set KUBEXEC_DEVCLUSTER_BIN)", kwokBinary, c.opts.BinDir)
	}
	stages := filepath.Join(c.dir, "kwok-stages.yaml")
	if err := os.WriteFile(stages, kwokStages, 0o644); err != nil {
		return err
	}
	for i := range c.opts.KwokNodes {
		if err := c.createKwokNode(ctx, kwokNodeName(i)); err != nil {
			return err
		}
	}
	lease := max(int(c.opts.NodeMonitorGracePeriod.Seconds()), 1)
	proc, err := c.startProcess("kwok", kwokBinary,
		"--kubeconfig="+c.kubeconfig,
		"--config="+stages,
		"--manage-nodes-with-annotation-selector="+kwokManagedAnnotation+"=fake",
		"--node-lease-duration-seconds="+strconv.Itoa(lease),
		"--node-ip=127.0.0.1",
		"--cidr="+kwokPodCIDR,
	)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.kwok = proc
	c.mu.Unlock()
	for i := range c.opts.KwokNodes {
		if err := c.waitReady(ctx, kwokNodeName(i), proc); err != nil {
			return err
		}
	}
	return nil
}

// createKwokNode registers a kwok node. Its status is left to kwok (Ready,
// capacity 1k cpu, 1Ti memory, 1M pods: a kwok node never limits how many
// pods run).
func (c *Cluster) createKwokNode(ctx context.Context, name string) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{kwokManagedAnnotation: "fake"},
			Labels: map[string]string{
				KwokNodeLabel:                   "true",
				"type":                          "kwok",
				corev1.LabelHostname:            name,
				corev1.LabelOSStable:            "linux",
				corev1.LabelArchStable:          "amd64",
				"node-role.kubernetes.io/agent": "",
			},
		},
	}
	if c.opts.KwokNodeTaint {
		node.Spec.Taints = []corev1.Taint{{Key: KwokNodeLabel, Value: "true", Effect: corev1.TaintEffectNoSchedule}}
	}
	_, err := c.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("devcluster: create kwok node %s: %w", name, err)
	}
	return nil
}

// KwokNodeNames returns the names of the cluster's kwok nodes.
func (c *Cluster) KwokNodeNames() []string {
	names := make([]string, 0, c.opts.KwokNodes)
	for i := range c.opts.KwokNodes {
		names = append(names, kwokNodeName(i))
	}
	return names
}
