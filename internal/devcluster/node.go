package devcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// nodeBinary is the node agent, built from internal/devcluster/bin/kubexec-node.
const nodeBinary = "kubexec-node"

// nodeAgent is one process node: a kubexec-node process that registers the
// node and runs its pods' containers as local processes.
type nodeAgent struct {
	name string
	port int
	proc *process
}

// startNodes starts Options.Nodes process nodes, named node-0, node-1, ...,
// one agent process each, and waits until they are Ready.
func (c *Cluster) startNodes(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(c.opts.BinDir, nodeBinary)); err != nil {
		return fmt.Errorf("devcluster: binary %s not found in %s: run `make devcluster` in the project root to build it (or set KUBEXEC_DEVCLUSTER_BIN)", nodeBinary, c.opts.BinDir)
	}
	ports, err := freePorts(c.opts.Nodes)
	if err != nil {
		return err
	}
	c.mu.Lock()
	for i := range c.opts.Nodes {
		a := &nodeAgent{name: "node-" + strconv.Itoa(i), port: ports[i]}
		if a.proc, err = c.startProcess(a.name, nodeBinary, c.nodeArgs(a)...); err != nil {
			c.mu.Unlock()
			return err
		}
		c.nodes = append(c.nodes, a)
	}
	agents := append([]*nodeAgent(nil), c.nodes...)
	c.mu.Unlock()
	for _, a := range agents {
		if err := c.waitNodeReady(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

// nodeArgs are the agent's flags. Its Lease is renewed five times per
// NodeMonitorGracePeriod, so a live node is never taken for a dead one.
func (c *Cluster) nodeArgs(a *nodeAgent) []string {
	grace := c.opts.NodeMonitorGracePeriod
	renew := min(max(grace/5, time.Second), 10*time.Second)
	lease := max(int(grace/time.Second), 1)
	memory := c.opts.NodeMemoryEnforcement
	if memory == "" {
		memory = "auto"
	}
	return []string{
		"--kubeconfig=" + c.kubeconfig,
		"--node-name=" + a.name,
		"--address=127.0.0.1",
		"--port=" + strconv.Itoa(a.port),
		"--root-dir=" + filepath.Join(c.dir, "nodes"),
		"--client-ca-file=" + c.pki.caCertFile,
		"--cpu=" + c.opts.NodeCPU,
		"--memory=" + c.opts.NodeMemory,
		"--pods=" + strconv.Itoa(c.opts.NodePods),
		"--lease-duration=" + strconv.Itoa(lease),
		"--lease-renew-interval=" + renew.String(),
		"--status-update-interval=" + min(time.Minute, grace).String(),
		"--memory-enforcement=" + memory,
	}
}

// waitNodeReady waits until the node's Ready condition is True and the
// controller-manager has lifted the not-ready taint every new node starts
// with, so that pods can be scheduled on it.
func (c *Cluster) waitNodeReady(ctx context.Context, a *nodeAgent) error {
	return c.waitReady(ctx, a.name, a.proc)
}

// waitReady waits until node name is Ready and schedulable, failing early
// if one of procs (the node's own) or the API server exits.
func (c *Cluster) waitReady(ctx context.Context, name string, procs ...*process) error {
	return c.poll(ctx, "node "+name+" Ready", append(procs, c.apiserver), func(ctx context.Context) (bool, error) {
		n, err := c.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, nil
		}
		return nodeReady(n) && !nodeTaintedNotReady(n), nil
	})
}

func nodeTaintedNotReady(n *corev1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable {
			return true
		}
	}
	return false
}

func nodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// NodeNames returns the names of the cluster's process nodes.
func (c *Cluster) NodeNames() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.nodes))
	for _, a := range c.nodes {
		names = append(names, a.name)
	}
	return names
}

func (c *Cluster) agent(name string) (*nodeAgent, error) {
	for _, a := range c.nodes {
		if a.name == name {
			return a, nil
		}
	}
	return nil, fmt.Errorf("devcluster: no process node named %q", name)
}

// KillNode kills node name's agent with SIGKILL, as a machine that loses
// power: its containers die with it, its Lease stops being renewed, and the
// controller-manager marks the node NotReady after NodeMonitorGracePeriod;
// its pods stay bound to it until they are evicted.
func (c *Cluster) KillNode(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, err := c.agent(name)
	if err != nil {
		return err
	}
	return a.proc.kill()
}

// StartNode starts node name's agent again after KillNode, with the same
// name and port, and waits until the node is Ready. Pods that were running
// on it when it died are reported failed (ContainerStatusUnknown).
func (c *Cluster) StartNode(ctx context.Context, name string) error {
	c.mu.Lock()
	a, err := c.agent(name)
	if err == nil && a.proc.running() {
		err = fmt.Errorf("devcluster: node %s is running; call KillNode first", name)
	}
	if err == nil {
		a.proc, err = c.startProcess(a.name, nodeBinary, c.nodeArgs(a)...)
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.waitNodeReady(ctx, a)
}
