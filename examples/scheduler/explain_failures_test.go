package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/logs"
)

// The classic failures of a task run as a pod, each made for real on the
// dev cluster, and what explain says about them: the cause and the fix.
// Each test's explain output is an example of the operator's guide
// (docs/troubleshooting.md).

// background runs `scheduler run wf` until the test ends, or until the
// function it returns is called, which waits for the run's end and
// returns its exit code and output.
func (e *env) background(wf string, flags ...string) func() (int, string) {
	ctx, cancel := context.WithCancel(e.t.Context())
	var wg sync.WaitGroup
	var code int
	var out string
	wg.Add(1)
	go func() {
		defer wg.Done()
		code, out, _ = e.main(ctx, append(flags, "run", wf)...)
	}()
	e.t.Cleanup(func() { cancel(); wg.Wait() })
	return func() (int, string) {
		wg.Wait()
		return code, out
	}
}

// explainUntil runs explain with args until its output contains want, for
// up to 3 minutes, and returns that output.
func (e *env) explainUntil(want string, args ...string) string {
	e.t.Helper()
	var out string
	err := wait.PollUntilContextTimeout(e.t.Context(), 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, out, _ = e.main(ctx, append([]string{"explain"}, args...)...)
		return strings.Contains(out, want), nil
	})
	require.NoError(e.t, err, "explain never said %q:\n%s", want, out)
	return out
}

// explain runs explain with args once; it must succeed.
func (e *env) explain(args ...string) string {
	e.t.Helper()
	code, out, errOut := e.main(e.t.Context(), append([]string{"explain"}, args...)...)
	require.Equal(e.t, exitOK, code, errOut)
	return out
}

// waitPod waits up to 3 minutes for the pod name in the test's namespace
// to satisfy cond.
func (e *env) waitPod(name, what string, cond func(*corev1.Pod) bool) {
	e.t.Helper()
	require.Eventually(e.t, func() bool {
		pod, err := devCluster.Client().CoreV1().Pods(e.ns).Get(e.t.Context(), name, metav1.GetOptions{})
		return err == nil && cond(pod)
	}, 3*time.Minute, 100*time.Millisecond, "pod %s: %s", name, what)
}

func podName(t *testing.T, workflow, run, task string, attempt int) string {
	name, err := kubexec.PodName(kubexec.TaskKey{WorkflowID: workflow, TaskID: task, RunID: run, MapIndex: kubexec.NotMapped, Attempt: attempt})
	require.NoError(t, err)
	return name
}

// runningFirstAttempt runs, in the background, a workflow "nightly" of
// one task whose first attempt runs until it is stopped and whose next
// attempts succeed at once, and waits until the first attempt's pod runs.
// It returns that pod's name and the function that waits for the run.
func (e *env) runningFirstAttempt(task string) (string, func() (int, string)) {
	e.t.Helper()
	wf := e.writeWorkflow(fmt.Sprintf(`workflow: nightly
defaults: {image: busybox:1.36, retries: 0}
tasks:
- id: %s
  command: [sh, -c, 'if [ "$KUBEXEC_ATTEMPT" = 1 ]; then sleep 600; fi; echo done']
`, task))
	done := e.background(wf, "--plain")
	name := podName(e.t, "nightly", "nightly-1", task, 1)
	e.waitPod(name, "runs", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	return name, done
}

// A ResourceQuota of zero pods: the attempt stays queued (the executor
// backs the namespace off and retries), and explain names the quota,
// what the pod needs, and the fix.
func TestExplainQuotaOfZero(t *testing.T) {
	devCluster.Need(t)
	e := newEnv(t, "team-quota")
	devCluster.NewQuota(t, e.ns, "no-pods", corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")})
	wf := e.writeWorkflow(`workflow: nightly
defaults: {image: busybox:1.36}
tasks:
- id: extract
  command: [sh, -c, "true"]
`)
	e.background(wf)
	// The quota is full from the start: wait until the run has queued
	// the attempt too.
	out := e.explainUntil("It does not exist: the executor has not created it yet.", "extract")
	require.Contains(t, out, "ResourceQuota no-pods has no room for the task's pod: pods is 0 of 0 and the pod needs 1")
	require.Contains(t, out, "raise the quota")
	require.Contains(t, out, "pod "+e.ns+"/"+podName(t, "nightly", "nightly-1", "extract", 1))
	require.Contains(t, out, "It does not exist: the executor has not created it yet.")
	docExample(t, "explain-quota.txt", e.normalize(out), explainShape)
}

// An image that does not exist: the pod waits in ErrImagePull or
// ImagePullBackOff, and explain names the image and what to check.
func TestExplainMissingImage(t *testing.T) {
	e := newEnv(t, "team-image")
	wf := e.writeWorkflow(`workflow: nightly
tasks:
- id: load
  image: registry.example.com/etl/does-not-exist:2.1
  command: [sh, -c, "true"]
`)
	e.background(wf)
	out := e.explainUntil("cannot be pulled", "load")
	require.Regexp(t, `container base: waiting, (ErrImagePull|ImagePullBackOff): `, out)
	require.Contains(t, out, `The image "registry.example.com/etl/does-not-exist:2.1" cannot be pulled: check its name and tag`)
	docExample(t, "explain-image.txt", e.normalize(out), explainShape)
}

// Pods that no node takes: a nodeSelector that no node matches, and a
// request larger than any node. explain says which, and what to change.
func TestExplainUnschedulable(t *testing.T) {
	e := newEnv(t, "team-pending")
	wf := e.writeWorkflow(`workflow: nightly
defaults: {image: busybox:1.36}
tasks:
- id: train
  command: [sh, -c, "true"]
  podOverride:
    spec:
      nodeSelector: {accelerator: nvidia-h100}
- id: aggregate
  command: [sh, -c, "true"]
  resources: {requests: {cpu: "64", memory: 1Gi}}
`)
	e.background(wf)
	out := e.explainUntil("No node can take the pod", "train")
	require.Contains(t, out, "condition PodScheduled=False Unschedulable: ")
	require.Contains(t, out, "no node has the labels of its nodeSelector (accelerator=nvidia-h100)")
	require.Contains(t, out, "kubectl get nodes --show-labels")
	docExample(t, "explain-nodeselector.txt", e.normalize(out), explainShape)

	out = e.explainUntil("No node can take the pod", "aggregate")
	require.Contains(t, out, "no node has enough free cpu for its requests")
	require.NotContains(t, out, "nodeSelector (")
	docExample(t, "explain-resources.txt", e.normalize(out), explainShape)
}

// A task that uses more memory than its limit is killed by the node (a
// real OOM kill): the attempt ends OOMKilled, is not retried, and explain
// names the container, its limit and the fix.
func TestExplainOOMKilled(t *testing.T) {
	e := newEnv(t, "team-oom")
	wf := e.writeWorkflow(`workflow: nightly
defaults: {image: busybox:1.36}
tasks:
- id: join
  command: [sh, -c, "echo joining; tail /dev/zero"]
  resources: {limits: {memory: 32Mi}}
`)
	code, out, _ := e.main(e.t.Context(), "--plain", "run", wf)
	require.Equal(t, exitFailed, code)
	require.Regexp(t, `join\s+failed\s+1\s+\S+\s+OOMKilled`, out)
	out = e.explain("join")
	require.Contains(t, out, "Task join of run nightly-1 (workflow nightly): failed")
	require.Contains(t, out, "Reason OOMKilled: retryable=false")
	require.Contains(t, out, "container base: terminated, OOMKilled, exit code 137")
	require.Contains(t, out, "Container base used more memory than its limit (32Mi): raise resources.limits.memory")
	require.NotContains(t, out, "The task's own code failed")
	docExample(t, "explain-oom.txt", e.normalize(out), explainShape)
}

// Logs after the pod is gone: a succeeded pod is deleted, its logs are
// served from the archive, and explain says where; an archive that was
// removed is reported as lost, with why and what to do.
func TestExplainLogsAfterPodGone(t *testing.T) {
	devCluster.Need(t)
	e := newEnv(t, "team-logs")
	wf := e.writeWorkflow(`workflow: nightly
defaults: {image: busybox:1.36}
tasks:
- id: report
  command: [sh, -c, "echo 42 rows loaded"]
`)
	code, _, _ := e.main(e.t.Context(), "--plain", "run", wf)
	require.Equal(t, exitOK, code)
	name := podName(t, "nightly", "nightly-1", "report", 1)
	require.Eventually(t, func() bool {
		_, err := devCluster.Client().CoreV1().Pods(e.ns).Get(e.t.Context(), name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, 3*time.Minute, 100*time.Millisecond, "the succeeded pod is deleted")

	out := e.explain("report")
	require.Contains(t, out, "It is gone: deleted after its result was saved")
	require.Contains(t, out, "its logs are archived (above)")
	require.Contains(t, out, "Logs of attempt 1: archived in "+logDir(e.db)+"/"+name)
	require.Contains(t, out, "(`scheduler logs nightly-1/report --attempt 1`)")
	docExample(t, "explain-archived.txt", e.normalize(out), explainShape)
	code, logsOut, _ := e.main(e.t.Context(), "logs", "nightly-1/report", "--attempt", "1")
	require.Equal(t, exitOK, code)
	require.Equal(t, "42 rows loaded\n", logsOut)

	sink, err := logs.NewFileSink(logDir(e.db))
	require.NoError(t, err)
	require.NoError(t, os.Remove(archivePath(sink, kubexec.TaskKey{WorkflowID: "nightly", TaskID: "report", RunID: "nightly-1", MapIndex: kubexec.NotMapped, Attempt: 1})))
	out = e.explain("report")
	require.Contains(t, out, "its logs were not archived, so they are lost")
	require.Contains(t, out, "The logs of attempt 1 went with its pod: there is no archive of them in "+logDir(e.db))
	docExample(t, "explain-logs-lost.txt", e.normalize(out), explainShape)
	code, _, errOut := e.main(e.t.Context(), "logs", "report")
	require.Equal(t, exitFailed, code)
	require.Contains(t, errOut, "its logs were not archived: there are none to show")
}

// A pod deleted by hand while it runs: its result is still saved
// (DeletedExternally, held by the tracking finalizer), the scheduler
// retries the task without using its retries, and explain of that attempt
// says who deleted it and what to look for.
func TestExplainPodDeletedByHand(t *testing.T) {
	devCluster.Need(t)
	e := newEnv(t, "team-deleted")
	name, done := e.runningFirstAttempt("publish")
	// What `kubectl delete pod` does.
	require.NoError(t, devCluster.Client().CoreV1().Pods(e.ns).Delete(e.t.Context(), name, metav1.DeleteOptions{}))
	code, out := done()
	require.Equal(t, exitOK, code, out)
	require.Contains(t, out, "publish: attempt 1 ended DeletedExternally")

	out = e.explain("publish")
	require.Contains(t, out, "attempt 1: pod "+e.ns+"/"+name)
	require.Contains(t, out, "attempt 1 ended DeletedExternally: the pod was deleted while it was running, by someone other than kubexec")
	out = e.explain("publish", "--attempt", "1")
	require.Contains(t, out, "Attempt 1: Reason DeletedExternally: retryable=true, platform failure=true.")
	require.Contains(t, out, "It is gone: deleted by someone other than the scheduler before it finished")
	require.Contains(t, out, "find out what deletes pods in this namespace")
	docExample(t, "explain-deleted.txt", e.normalize(out), explainShape)
}

// A node lost while a task runs on it: explain says the node is not ready
// and what happens next; once the node is back, its lost pod is reported
// failed, the attempt ends Disrupted, and the scheduler runs it again
// without using the task's retries.
func TestExplainLostNode(t *testing.T) {
	devCluster.Need(t)
	e := newEnv(t, "team-node")
	name, done := e.runningFirstAttempt("compact")
	pod, err := devCluster.Client().CoreV1().Pods(e.ns).Get(e.t.Context(), name, metav1.GetOptions{})
	require.NoError(t, err)
	node := pod.Spec.NodeName
	require.NoError(t, devCluster.KillNode(node))
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			require.NoError(t, devCluster.StartNode(context.Background(), node))
		}
	})

	out := e.explainUntil("node "+node+": Ready=Unknown", "compact")
	require.Contains(t, out, "The pod's node "+node+" is not ready")
	require.Contains(t, out, "the attempt ends Disrupted and the scheduler retries it")
	require.Contains(t, out, "kubectl describe node "+node)
	docExample(t, "explain-node-lost.txt", e.normalize(out), explainShape)

	require.NoError(t, devCluster.StartNode(e.t.Context(), node))
	restarted = true
	code, runOut := done()
	require.Equal(t, exitOK, code, runOut)
	require.Contains(t, runOut, "compact: attempt 1 ended Disrupted")
	out = e.explain("compact", "--attempt", "1")
	require.Contains(t, out, "Attempt 1: Reason Disrupted: retryable=true, platform failure=true.")
	require.NotContains(t, out, "The task's own code failed")
	docExample(t, "explain-node-back.txt", e.normalize(out), explainShape)
}
