package watch

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/devcluster"
	"github.com/kubexec/kubexec/internal/podtest"
	"github.com/kubexec/kubexec/internal/podwatch"
)

// nodePod is a pod for a process node (its containers run the host's
// programs, whatever the image says) unless a mutation pins it elsewhere
// (onKind).
func nodePod(t testing.TB, executorID, name string, command string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	t.Helper()
	p := podtest.NewPod(t, executorID, name)
	p.Spec.SchedulerName = ""
	p.Spec.NodeSelector = map[string]string{devcluster.ProcessNodeLabel: "true"}
	p.Spec.TerminationGracePeriodSeconds = new(int64(5))
	p.Spec.Containers[0].Command = []string{"sh", "-c", command}
	for _, m := range mutate {
		m(p)
	}
	return p
}

// history is a Handler that keeps every state delivered for each pod,
// with the time it arrived, and whether the pod is gone.
type history struct {
	mu     sync.Mutex
	states map[string][]seenState
}

type seenState struct {
	pod     *corev1.Pod
	at      time.Time
	deleted bool
}

func newHistory() *history { return &history{states: map[string][]seenState{}} }

func (h *history) add(p *corev1.Pod, deleted bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.states[p.Name] = append(h.states[p.Name], seenState{pod: p, at: time.Now(), deleted: deleted})
}

func (h *history) OnAdd(p *corev1.Pod)               { h.add(p, false) }
func (h *history) OnUpdate(_, p *corev1.Pod)         { h.add(p, false) }
func (h *history) OnDelete(p *corev1.Pod, gone bool) { h.add(p, true) }

// watchHistory runs a Watcher of ns that records into a new history.
func watchHistory(t *testing.T, client kubernetes.Interface, id, ns string) *history {
	t.Helper()
	h := newHistory()
	w, err := podwatch.New(client, podwatch.Config{ExecutorID: id, Namespaces: []string{ns}}, h)
	require.NoError(t, err)
	podtest.Run(t, w)
	ctx, cancel := context.WithTimeout(t.Context(), podtest.WaitTimeout)
	defer cancel()
	require.NoError(t, w.WaitForSync(ctx))
	return h
}

// classifyWatched waits until a state the Watcher delivered for the pod
// classifies as done says, and returns that classification and state.
// Each state is classified as of when it arrived (a deletion with
// ClassifyDeleted), and the latest one again as of now, every 100 ms, for
// the rules that depend on time.
func classifyWatched(t *testing.T, h *history, name string, opts ClassifyOptions, done func(Classification) bool) (Classification, *corev1.Pod) {
	t.Helper()
	deadline := time.Now().Add(podtest.WaitTimeout)
	for {
		h.mu.Lock()
		states := slices.Clone(h.states[name])
		h.mu.Unlock()
		var c Classification
		for _, s := range states {
			if s.deleted {
				c = ClassifyDeleted(s.pod, s.at)
			} else {
				c = Classify(s.pod, s.at, opts)
			}
			if done(c) {
				return c, s.pod
			}
		}
		if n := len(states); n > 0 && !states[n-1].deleted {
			if c = Classify(states[n-1].pod, time.Now(), opts); done(c) {
				return c, states[n-1].pod
			}
		}
		if time.Now().After(deadline) {
			var last any = "none"
			if len(states) > 0 {
				last = states[len(states)-1].pod.Status
			}
			t.Fatalf("pod %s: after %s, classified %s %s: %s\nlast status: %+v", name, podtest.WaitTimeout, c.Phase, c.Reason, c.Message, last)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-t.Context().Done():
			t.Fatal("test ended")
		}
	}
}

func terminalClass(c Classification) bool { return c.Terminal() }
func runningClass(c Classification) bool  { return c.Phase == PhaseRunning }

// nodeKinds are the kinds of node the cross-node cases run on, each with
// the label that pins a pod to it: kubexec-node, and the real kubelet with
// containerd and runc.
var nodeKinds = []struct{ name, label string }{
	{"process", devcluster.ProcessNodeLabel},
	{"kubelet", devcluster.KubeletNodeLabel},
}

// TestClassifyRealPods runs pods on each kind of node into each outcome the
// node can produce and checks how Classify reads what the Watcher
// delivered (trimmed pods): success, exit codes, init containers, OOM
// kills, deadlines, image and configuration errors, unschedulable pods,
// eviction and deletion. The same cases, with the same expectations, run
// on the process node and on the real kubelet.
func TestClassifyRealPods(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	for _, kind := range nodeKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			testClassifyRealPods(t, kind.label)
		})
	}
}

func testClassifyRealPods(t *testing.T, nodeLabel string) {
	client := cluster.Client()
	ns := cluster.NewNamespace(t, "watch-classify", nil)
	id := podtest.ExecutorID(t)
	h := watchHistory(t, client, id, ns)
	create := func(p *corev1.Pod) {
		t.Helper()
		p.Spec.NodeSelector = map[string]string{nodeLabel: "true"}
		p.Spec.Tolerations = append(p.Spec.Tolerations, devcluster.KubeletToleration)
		_, err := client.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	memoryLimit := func(q string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(q)}
		}
	}
	image := func(ref string) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.Spec.Containers[0].Image = ref }
	}
	requestCPU := func(q string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(q)}
		}
	}

	create(nodePod(t, id, "succeeds", "echo done"))
	create(nodePod(t, id, "exits-3", "echo 'cannot connect to the database' > /dev/termination-log; exit 3"))
	create(nodePod(t, id, "init-fails", "echo main", func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "busybox:1.36", Command: []string{"sh", "-c", "exit 2"}}}
	}))
	create(nodePod(t, id, "oom", "tail /dev/zero", memoryLimit("32Mi")))
	create(nodePod(t, id, "deadline", "sleep 300", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = new(int64(3)) }))
	create(nodePod(t, id, "invalid-image", "echo never", image("Busybox:Latest!")))
	create(nodePod(t, id, "pull-fails", "echo never", image("registry.example.com/team/does-not-exist:1.0")))
	create(nodePod(t, id, "missing-secret", "echo never", func(p *corev1.Pod) {
		p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "no-such-secret"}, Key: "password"},
		}})
	}))
	create(nodePod(t, id, "too-big", "echo never", requestCPU("1000")))
	create(nodePod(t, id, "evicted", "sleep 300"))
	create(nodePod(t, id, "deleted", "sleep 300"))

	t.Run("Succeeded", func(t *testing.T) {
		c, _ := classifyWatched(t, h, "succeeds", ClassifyOptions{}, terminalClass)
		require.Equal(t, kubexec.ReasonSucceeded, c.Reason)
		require.Equal(t, "base", c.Container)
		require.Zero(t, c.ExitCode)
		require.False(t, c.StartedAt.IsZero())
		require.False(t, c.FinishedAt.Before(c.StartedAt))
	})
	t.Run("Failed with its exit code and termination message", func(t *testing.T) {
		c, _ := classifyWatched(t, h, "exits-3", ClassifyOptions{}, terminalClass)
		require.Equal(t, kubexec.ReasonFailed, c.Reason)
		require.True(t, c.Retryable)
		require.Equal(t, "base", c.Container)
		require.EqualValues(t, 3, c.ExitCode)
		require.Contains(t, c.Message, `container "base" exited with code 3`)
		require.Contains(t, c.Message, "cannot connect to the database")
	})
	t.Run("Failed in an init container", func(t *testing.T) {
		c, _ := classifyWatched(t, h, "init-fails", ClassifyOptions{}, terminalClass)
		require.Equal(t, kubexec.ReasonFailed, c.Reason)
		require.Equal(t, "setup", c.Container)
		require.EqualValues(t, 2, c.ExitCode)
		require.Contains(t, c.Message, `init container "setup"`)
	})
	t.Run("OOMKilled", func(t *testing.T) {
		c, _ := classifyWatched(t, h, "oom", ClassifyOptions{}, terminalClass)
		require.Equal(t, kubexec.ReasonOOMKilled, c.Reason, c.Message)
		require.False(t, c.Retryable)
		require.Equal(t, "base", c.Container)
		require.EqualValues(t, 137, c.ExitCode)
		require.Contains(t, c.Message, "OOMKilled")
	})
	t.Run("DeadlineExceeded", func(t *testing.T) {
		c, _ := classifyWatched(t, h, "deadline", ClassifyOptions{}, terminalClass)
		require.Equal(t, kubexec.ReasonDeadlineExceeded, c.Reason, c.Message)
		require.False(t, c.Retryable)
	})
	t.Run("InvalidImageName", func(t *testing.T) {
		c, _ := classifyWatched(t, h, "invalid-image", ClassifyOptions{}, terminalClass)
		require.Equal(t, kubexec.ReasonImagePullError, c.Reason, c.Message)
		require.Contains(t, c.Message, "InvalidImageName")
	})
	t.Run("image pull error after the grace period", func(t *testing.T) {
		grace := ClassifyOptions{ImagePullGrace: 3 * time.Second}
		c, _ := classifyWatched(t, h, "pull-fails", grace, func(c Classification) bool { return c.Container != "" })
		if !c.Terminal() {
			require.Equal(t, PhasePending, c.Phase)
			require.Contains(t, c.Message, "the attempt fails if this lasts 3s")
		}
		c, pod := classifyWatched(t, h, "pull-fails", grace, terminalClass)
		require.Equal(t, kubexec.ReasonImagePullError, c.Reason, c.Message)
		require.Equal(t, "base", c.Container)
		require.Contains(t, c.Message, "does-not-exist")
		require.GreaterOrEqual(t, c.FinishedAt.Sub(pullSince(pod, nil)), 3*time.Second, "failed before the grace period")
	})
	t.Run("CreateContainerConfigError after its grace period", func(t *testing.T) {
		grace := ClassifyOptions{ConfigErrorGrace: 2 * time.Second}
		c, _ := classifyWatched(t, h, "missing-secret", grace, terminalClass)
		require.Equal(t, kubexec.ReasonConfigError, c.Reason, c.Message)
		require.Contains(t, c.Message, "no-such-secret")
		require.Contains(t, c.Message, "for more than 2s")
	})
	t.Run("Unschedulable after the pending timeout", func(t *testing.T) {
		c, _ := classifyWatched(t, h, "too-big", ClassifyOptions{PendingTimeout: 2 * time.Second}, terminalClass)
		require.Equal(t, kubexec.ReasonUnschedulable, c.Reason, c.Message)
		require.True(t, c.Retryable)
		require.Contains(t, c.Message, "Insufficient cpu", "the scheduler's message")
	})
	t.Run("evicted: Disrupted", func(t *testing.T) {
		classifyWatched(t, h, "evicted", ClassifyOptions{}, runningClass)
		require.NoError(t, client.CoreV1().Pods(ns).EvictV1(t.Context(), &policyv1.Eviction{
			ObjectMeta: metav1.ObjectMeta{Name: "evicted", Namespace: ns},
		}))
		c, _ := classifyWatched(t, h, "evicted", ClassifyOptions{}, terminalClass)
		require.Equal(t, kubexec.ReasonDisrupted, c.Reason, c.Message)
		require.True(t, c.Retryable)
		require.Contains(t, c.Message, "EvictionByEvictionAPI")
	})
	t.Run("deleted while running: DeletedExternally", func(t *testing.T) {
		running, _ := classifyWatched(t, h, "deleted", ClassifyOptions{}, runningClass)
		require.False(t, running.StartedAt.IsZero())
		require.NoError(t, client.CoreV1().Pods(ns).Delete(t.Context(), "deleted", metav1.DeleteOptions{}))
		c, _ := classifyWatched(t, h, "deleted", ClassifyOptions{}, terminalClass)
		require.Equal(t, kubexec.ReasonDeletedExternally, c.Reason, c.Message)
		require.True(t, c.Retryable)
		require.Contains(t, c.Message, "while it was running")
	})
}

// TestClassifyPreemption: a pod preempted by a higher-priority pod that
// needs its node's CPU is Disrupted. It fills a node's CPU, so it does not
// run in parallel with the other tests that run pods.
func TestClassifyPreemption(t *testing.T) {
	cluster.Need(t)
	client := cluster.Client()
	ns := cluster.NewNamespace(t, "watch-preempt", nil)
	id := podtest.ExecutorID(t)
	h := watchHistory(t, client, id, ns)
	pc, err := client.SchedulingV1().PriorityClasses().Create(t.Context(), &schedulingv1.PriorityClass{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "kubexec-test-high-"}, Value: 1_000_000,
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = client.SchedulingV1().PriorityClasses().Delete(t.Context(), pc.Name, metav1.DeleteOptions{})
	})

	node, err := client.CoreV1().Nodes().Get(t.Context(), cluster.NodeNames()[0], metav1.GetOptions{})
	require.NoError(t, err)
	// Both pods want the same node and more than half its CPU: they cannot
	// both run.
	half := node.Status.Allocatable.Cpu().MilliValue()/2 + 100
	cpu := func(p *corev1.Pod) {
		p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: *resource.NewMilliQuantity(half, resource.DecimalSI)}
		p.Spec.NodeSelector = map[string]string{corev1.LabelHostname: node.Name}
	}
	_, err = client.CoreV1().Pods(ns).Create(t.Context(), nodePod(t, id, "low", "sleep 300", cpu), metav1.CreateOptions{})
	require.NoError(t, err)
	classifyWatched(t, h, "low", ClassifyOptions{}, runningClass)
	_, err = client.CoreV1().Pods(ns).Create(t.Context(), nodePod(t, id, "high", "sleep 300", cpu, func(p *corev1.Pod) {
		p.Spec.PriorityClassName = pc.Name
	}), metav1.CreateOptions{})
	require.NoError(t, err)

	c, _ := classifyWatched(t, h, "low", ClassifyOptions{}, terminalClass)
	require.Equal(t, kubexec.ReasonDisrupted, c.Reason, c.Message)
	require.True(t, c.Retryable)
	require.True(t, strings.Contains(c.Message, "preempted"), c.Message)
	classifyWatched(t, h, "high", ClassifyOptions{}, runningClass)
	require.NoError(t, client.CoreV1().Pods(ns).Delete(t.Context(), "high", metav1.DeleteOptions{}))
}

// TestClassifyNodeLost: pods whose node dies are Disrupted, not
// DeletedExternally nor Failed. A node that restarts under its pod reports
// the container lost (ContainerStatusUnknown); a node that stays dead is
// marked unreachable and the taint manager deletes its pod, which stays
// Terminating on the dead node. It kills one of the package's nodes (and
// starts it again), so it does not run in parallel.
func TestClassifyNodeLost(t *testing.T) {
	cluster.Need(t)
	client := cluster.Client()
	ns := cluster.NewNamespace(t, "watch-nodelost", nil)
	id := podtest.ExecutorID(t)
	h := watchHistory(t, client, id, ns)
	node := cluster.NodeNames()[1]
	onNode := func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{corev1.LabelHostname: node} }
	restart := func() {
		ctx, cancel := context.WithTimeout(context.Background(), podtest.WaitTimeout)
		defer cancel()
		require.NoError(t, cluster.StartNode(ctx, node))
	}

	t.Run("node restarted under the pod", func(t *testing.T) {
		// The pod tolerates its node's being not ready or unreachable, so
		// that a restart slower than the node monitor grace period (on a
		// loaded machine) does not get it evicted by the taint manager
		// first: what is under test is what the restarted node reports.
		tolerate := func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{
				{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
				{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
			}
		}
		_, err := client.CoreV1().Pods(ns).Create(t.Context(), nodePod(t, id, "restarted", "sleep 300", onNode, tolerate), metav1.CreateOptions{})
		require.NoError(t, err)
		classifyWatched(t, h, "restarted", ClassifyOptions{}, runningClass)
		require.NoError(t, cluster.KillNode(node))
		restart()
		c, _ := classifyWatched(t, h, "restarted", ClassifyOptions{}, terminalClass)
		require.Equal(t, kubexec.ReasonDisrupted, c.Reason, c.Message)
		require.Contains(t, c.Message, "lost with its node")
	})
	t.Run("node gone: evicted by the taint manager", func(t *testing.T) {
		_, err := client.CoreV1().Pods(ns).Create(t.Context(), nodePod(t, id, "on-lost-node", "sleep 300", onNode), metav1.CreateOptions{})
		require.NoError(t, err)
		classifyWatched(t, h, "on-lost-node", ClassifyOptions{}, runningClass)
		require.NoError(t, cluster.KillNode(node))
		defer restart()
		c, pod := classifyWatched(t, h, "on-lost-node", ClassifyOptions{}, terminalClass)
		require.Equal(t, kubexec.ReasonDisrupted, c.Reason, c.Message)
		require.True(t, c.Retryable)
		require.NotNil(t, pod.DeletionTimestamp)
		require.Contains(t, c.Message, "DeletionByTaintManager")
	})
}

// TestClassifyNoScheduler: a pod that no scheduler acts on (its
// schedulerName names none) gets no PodScheduled condition at all and ends
// Unschedulable once it has waited PendingTimeout, with a message that
// names its schedulerName and what to check; until then it is pending with
// RecheckAt set to the timeout, so a caller that reclassifies at RecheckAt
// (as the executor's resync does) ends it with no further pod event. Both
// with the pod's creation time (Classify) and with the caller's own first
// sighting (ClassifyObserved).
func TestClassifyNoScheduler(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	client := cluster.Client()
	ns := cluster.NewNamespace(t, "watch-noscheduler", nil)
	id := podtest.ExecutorID(t)
	h := watchHistory(t, client, id, ns)
	const scheduler = "no-such-scheduler"
	opts := ClassifyOptions{PendingTimeout: 3 * time.Second}
	cases := []struct {
		name, pod string
		observed  bool
	}{
		{name: "from the pod's creation", pod: "unscheduled"},
		{name: "from the first sighting", pod: "unscheduled-observed", observed: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			podName, observed := tc.pod, tc.observed
			pod := podtest.NewPod(t, id, podName)
			pod.Spec.SchedulerName = scheduler
			_, err := client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
			require.NoError(t, err)

			var obs *Observations
			if observed {
				obs = &Observations{}
			}
			// Classify the latest state the Watcher delivered, now and
			// again at each RecheckAt, until the attempt ends.
			deadline := time.Now().Add(podtest.WaitTimeout)
			var c Classification
			var last *corev1.Pod
			var recheckAt time.Time
			for {
				h.mu.Lock()
				states := h.states[podName]
				h.mu.Unlock()
				if n := len(states); n > 0 {
					last = states[n-1].pod
					require.False(t, states[n-1].deleted, "the pod was deleted")
					c = ClassifyObserved(last, time.Now(), opts, obs)
					if c.Terminal() {
						break
					}
					require.Equal(t, PhasePending, c.Phase, c.Message)
					require.False(t, c.RecheckAt.IsZero(), "a pending pod that no scheduler acts on has RecheckAt: %s", c.Message)
					require.Contains(t, c.Message, `waits for scheduler "`+scheduler+`"`)
					recheckAt = c.RecheckAt
				}
				if time.Now().After(deadline) {
					t.Fatalf("after %s: %s %s: %s", podtest.WaitTimeout, c.Phase, c.Reason, c.Message)
				}
				wait := 100 * time.Millisecond // for the first state
				if !recheckAt.IsZero() {
					wait = time.Until(recheckAt)
				}
				select {
				case <-time.After(wait):
				case <-t.Context().Done():
					t.Fatal("test ended")
				}
			}
			require.Equal(t, kubexec.ReasonUnschedulable, c.Reason, c.Message)
			require.True(t, c.Retryable)
			for _, want := range []string{"no scheduler acted on the pod for more than 3s", "no PodScheduled condition",
				`schedulerName is "` + scheduler + `"`, "kube-scheduler", "kubectl describe pod"} {
				require.Contains(t, c.Message, want)
			}
			require.Nil(t, podCondition(last, corev1.PodScheduled), "the pod has no PodScheduled condition")
			require.Empty(t, last.Spec.NodeName)
			// Not before the timeout: counted from the pod's creation, or
			// from the first sighting.
			start := last.CreationTimestamp.Time
			if observed {
				start = obs.Unscheduled
				require.False(t, start.IsZero(), "first sighting recorded")
				require.Equal(t, start.Add(opts.PendingTimeout), recheckAt, "RecheckAt is the first sighting plus the timeout")
			}
			require.GreaterOrEqual(t, c.FinishedAt.Sub(start), opts.PendingTimeout, "ended before the pending timeout")
		})
	}
}
