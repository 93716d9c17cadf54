package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
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
	"github.com/kubexec/kubexec/examples/scheduler/sqlitestore"
	"github.com/kubexec/kubexec/internal/devcluster"
	"github.com/kubexec/kubexec/logs"
)

// The tests run against one real dev cluster (control plane and a process
// node), started here; the scheduler talks to it through its kubeconfig,
// as it would to any cluster.
var (
	devCluster *devcluster.Cluster
	binary     string // the scheduler, built for the subprocess tests
)

func TestMain(m *testing.M) {
	flag.Parse()
	// A fuzzing worker runs only a fuzz target, and those need no
	// cluster: only the process that runs the tests starts one.
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "scheduler-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "scheduler")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the scheduler: %v\n%s", err, out)
		os.Exit(1)
	}
	code := devcluster.Main(m, devcluster.Options{Nodes: 1}, &devCluster)
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one test's cluster, namespace and database.
type env struct {
	t  *testing.T
	c  *devcluster.Cluster
	ns string
	db string
	// flags are added to every command line.
	flags []string
}

func newEnv(t *testing.T, prefix string) *env { return newEnvOn(t, devCluster, prefix) }

// newEnvOn is newEnv on another cluster than the package's.
func newEnvOn(t *testing.T, c *devcluster.Cluster, prefix string) *env {
	return &env{t: t, c: c, ns: c.NewNamespace(t, prefix, nil), db: filepath.Join(t.TempDir(), "scheduler.db")}
}

func (e *env) args(args ...string) []string {
	out := append([]string{"--kubeconfig", e.c.Kubeconfig(), "--namespace", e.ns, "--db", e.db}, e.flags...)
	return append(out, args...)
}

// main runs the scheduler's Main in this process.
func (e *env) main(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(ctx, e.args(args...), &out, &errb)
	e.t.Logf("scheduler %s: exit %d\n--- stdout\n%s--- stderr\n%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

func (e *env) store() *sqlitestore.Store {
	s, err := sqlitestore.Open(context.Background(), e.db)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { s.Close() })
	return s
}

func (e *env) writeWorkflow(text string) string {
	path := filepath.Join(e.t.TempDir(), "wf.yaml")
	require.NoError(e.t, os.WriteFile(path, []byte(text), 0o644))
	return path
}

func taskStates(t *testing.T, s *sqlitestore.Store, runID string) map[string]sqlitestore.Task {
	tasks, err := s.Tasks(context.Background(), runID)
	require.NoError(t, err)
	out := map[string]sqlitestore.Task{}
	for _, task := range tasks {
		out[task.TaskID] = task
	}
	return out
}

// recordPods keeps the last version of each pod seen in namespace ns from
// now on, so that a test can look at pods deleted since. The function it
// returns waits until the watch has delivered the pod (it may lag behind
// on a loaded machine), for up to 3 minutes, and returns nil if it never
// did.
func (e *env) recordPods() func(name string) *corev1.Pod {
	t, ns := e.t, e.ns
	w, err := e.c.Client().CoreV1().Pods(ns).Watch(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	var mu sync.Mutex
	seen := map[string]*corev1.Pod{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if pod, ok := ev.Object.(*corev1.Pod); ok {
				mu.Lock()
				seen[pod.Name] = pod
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		w.Stop()
		<-done
	})
	return func(name string) *corev1.Pod {
		var pod *corev1.Pod
		_ = wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 3*time.Minute, true, func(context.Context) (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			pod = seen[name]
			return pod != nil, nil
		})
		return pod
	}
}

// syncBuffer is a bytes.Buffer that a subprocess writes while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// podNames lists the pods in namespace ns.
func (e *env) podNames() []string {
	t, ns := e.t, e.ns
	pods, err := e.c.Client().CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	return names
}

// The sample workflow completes with the expected states and retries; its
// override reaches the pod; load's XCom value reaches report; succeeded
// pods are deleted and failed ones kept; status, logs (live, and archived
// once the pod is gone), explain and cleanup work on it.
// TestSampleWorkflow runs the sample workflow on the package's cluster
// (a process node) and on a cluster whose only node is the real kubelet,
// with the same checks.
func TestSampleWorkflow(t *testing.T) {
	t.Run("process node", func(t *testing.T) { testSampleWorkflow(t, newEnv(t, "sample"), "") })
	t.Run("kubelet node", func(t *testing.T) {
		c := devcluster.StartForTest(t, devcluster.Options{KubeletNodes: 1})
		testSampleWorkflow(t, newEnvOn(t, c, "sample"), c.KubeletNodeNames()[0])
	})
}

// testSampleWorkflow runs the sample in e; node, if not "", is the node
// every attempt must have run on.
func testSampleWorkflow(t *testing.T, e *env, node string) {
	ctx := t.Context()
	seenPod := e.recordPods()
	code, out, _ := e.main(ctx, "run", filepath.Join("workflows", "sample.yaml"))
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "Run sample-1 succeeded")
	require.Regexp(t, `transform-b\s+succeeded\s+2\s`, out, "the final table shows the retry")
	require.Contains(t, out, "transform-b: attempt 1 ended Failed (exit code 3 in container base)")

	s := e.store()
	run, err := s.GetRun(ctx, "sample-1")
	require.NoError(t, err)
	require.Equal(t, sqlitestore.RunSucceeded, run.State)
	states := taskStates(t, s, run.ID)
	require.Len(t, states, 6)
	for id, task := range states {
		require.Equal(t, sqlitestore.TaskSucceeded, task.State, id)
		want := 1
		if id == "transform-b" {
			want = 2
		}
		require.Equal(t, want, task.Attempt, id)
		require.Equal(t, want-1, task.RetriesUsed, id)
		attempts, err := s.Attempts(ctx, "sample", run.ID, id)
		require.NoError(t, err)
		require.Len(t, attempts, want, id)
		for _, a := range attempts {
			require.NotNil(t, a.Result, "%s attempt %d has a result", id, a.Attempt)
			if node != "" {
				require.Equal(t, node, a.Result.Node, "%s attempt %d ran on the kubelet node", id, a.Attempt)
			}
		}
		// The final table says where the logs are: every attempt's are
		// archived before its pod may go.
		require.Regexp(t, regexp.QuoteMeta(id)+`\s+succeeded\s+\d\s+\S+\s+Succeeded\s+`+regexp.QuoteMeta(logDir(e.db))+`/`+regexp.QuoteMeta(attempts[want-1].PodName)+`-[0-9a-f]+\.log\n`, out)
	}
	b, err := s.Attempts(ctx, "sample", run.ID, "transform-b")
	require.NoError(t, err)
	require.Equal(t, kubexec.ReasonFailed, b[0].Result.Reason)
	require.Equal(t, int32(3), b[0].Result.ExitCode)
	require.Equal(t, kubexec.ReasonSucceeded, b[1].Result.Reason)

	// XCom: load's value is in the database, its result refers to it, and
	// report received it (and checked it: it fails without a row count).
	l, err := s.Attempts(ctx, "sample", run.ID, "load")
	require.NoError(t, err)
	require.Regexp(t, `^sqlite:xcom/\d+$`, l[0].Result.XComRef)
	value, err := s.XCom().Get(ctx, l[0].Result.XComRef)
	require.NoError(t, err)
	require.Equal(t, `{"rows": 42, "partitions": 3}`, string(value))
	require.Empty(t, b[1].Result.XComRef, "a task that writes no value has none")
	r, err := s.Attempts(ctx, "sample", run.ID, "report")
	require.NoError(t, err)
	reportPod := seenPod(r[0].PodName)
	require.NotNil(t, reportPod)
	require.Contains(t, reportPod.Spec.Containers[0].Env, corev1.EnvVar{Name: "LOADED", Value: `{"rows": 42, "partitions": 3}`})
	require.Equal(t, "true", seenPod(l[0].PodName).Annotations["xcom.kubexec.io/required"], "report reads load's value: load must produce one")

	// Succeeded pods are deleted once their logs are archived; the failed
	// attempt's pod is kept, released.
	require.Eventually(t, func() bool {
		return slices.Equal(e.podNames(), []string{b[0].PodName})
	}, 3*time.Minute, 200*time.Millisecond, "pods left: %v", e.podNames())
	kept, err := e.c.Client().CoreV1().Pods(e.ns).Get(ctx, b[0].PodName, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, kubexec.DoneValue, kept.Labels[kubexec.LabelDone])
	require.NotContains(t, kept.Finalizers, kubexec.FinalizerResultTracking)

	// The override: resources and env from the Secret the workflow
	// declares, as the pod ran.
	secret, err := e.c.Client().CoreV1().Secrets(e.ns).Get(ctx, "sample-api", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "sample-token-not-secret", string(secret.Data["API_TOKEN"]))
	c, err := s.Attempts(ctx, "sample", run.ID, "transform-c")
	require.NoError(t, err)
	pod := seenPod(c[0].PodName)
	require.NotNil(t, pod)
	base := pod.Spec.Containers[0]
	require.Equal(t, "base", base.Name)
	require.True(t, base.Resources.Requests.Cpu().Equal(resource.MustParse("100m")))
	require.True(t, base.Resources.Limits.Memory().Equal(resource.MustParse("64Mi")))
	require.Equal(t, "sample-api", base.EnvFrom[0].SecretRef.Name)
	require.Equal(t, int64(120), *pod.Spec.ActiveDeadlineSeconds, "the task's timeout is the pod's deadline")

	// status, logs, explain.
	code, out, _ = e.main(ctx, "status")
	require.Equal(t, exitOK, code)
	require.Regexp(t, `sample-1\s+sample\s+succeeded`, out)
	code, out, _ = e.main(ctx, "status", "sample-1")
	require.Equal(t, exitOK, code)
	require.Regexp(t, `load\s+succeeded\s+1`, out)
	code, out, _ = e.main(ctx, "logs", "transform-c") // its pod is gone: from the archive
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "transforming partition c with a 23-character API token")
	code, out, _ = e.main(ctx, "logs", "report")
	require.Equal(t, exitOK, code)
	require.Contains(t, out, `load's XCom value: {"rows": 42, "partitions": 3}`)
	require.Contains(t, out, "report: the run loaded 42 rows")
	code, live, _ := e.main(ctx, "logs", "sample-1/transform-b", "--attempt", "1") // its pod is kept: live
	require.Equal(t, exitOK, code)
	require.Contains(t, live, "partition b: the upstream API timed out (attempt 1)")
	code, out, _ = e.main(ctx, "explain", "transform-b")
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "attempt 1: pod "+e.ns+"/"+b[0].PodName)
	require.Contains(t, out, "Logs of attempt 2: archived in "+logDir(e.db)+"/"+b[1].PodName)
	require.Contains(t, out, "It is gone: deleted after its result was saved (succeeded pods are deleted once their logs are archived, unless --keep-pods); its logs are archived (above).")
	require.Contains(t, out, "permissions: this identity may do all the executor needs")

	// cleanup deletes the kept pod; its logs then come from the archive,
	// the same as from the pod.
	code, out, _ = e.main(ctx, "cleanup", "--older-than", "0s", "--dry-run")
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "Would delete 1 kept pods")
	code, out, _ = e.main(ctx, "cleanup", "--older-than", "0s")
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "Deleted 1 kept pods")
	require.Eventually(t, func() bool { return len(e.podNames()) == 0 }, 3*time.Minute, 200*time.Millisecond)
	code, out, _ = e.main(ctx, "logs", "sample-1/transform-b", "--attempt", "1")
	require.Equal(t, exitOK, code)
	require.Equal(t, live, out)
}

// A task override that the API server rejects is reported before anything
// of the run exists: no run, no Secret, no pod.
func TestOverrideRejectedByAPIServer(t *testing.T) {
	devCluster.Need(t)
	e := newEnv(t, "rejected")
	ctx := t.Context()
	wf := e.writeWorkflow(`workflow: rejected
defaults: {image: busybox:1.36}
secrets:
- name: rejected-secret
  stringData: {K: v}
tasks:
- id: fine
  command: [sh, -c, "true"]
- id: bad
  dependsOn: [fine]
  command: [sh, -c, "true"]
  podOverride:
    spec:
      dnsPolicy: Sometimes
`)
	code, _, errOut := e.main(ctx, "run", wf)
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "nothing was started")
	require.Contains(t, errOut, wf+`:9: task "bad": podOverride: the API server rejected the task's pod (dry run): `)
	require.Contains(t, errOut, `spec.dnsPolicy: Unsupported value: "Sometimes"`)

	runs, err := e.store().ListRuns(ctx, 10, false)
	require.NoError(t, err)
	require.Empty(t, runs)
	pods, err := devCluster.Client().CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Empty(t, pods.Items)
	_, err = devCluster.Client().CoreV1().Secrets(e.ns).Get(ctx, "rejected-secret", metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err), "no Secret is created for a rejected workflow: %v", err)
}

// Invalid workflow files are refused before the database or the cluster is
// touched, with the file, line, task and field.
func TestInvalidWorkflowFiles(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, yaml, want string }{
		{"malformed YAML", "workflow: w\ntasks: [\n", "wf.yaml:2: YAML syntax error"},
		{"cycle", "workflow: w\ndefaults: {image: busybox}\ntasks:\n- {id: a, dependsOn: [b]}\n- {id: b, dependsOn: [a]}\n", `wf.yaml:4: task "a": dependsOn: dependency cycle: a -> b -> a`},
		{"unknown dependency", "workflow: w\ndefaults: {image: busybox}\ntasks:\n- {id: a, dependsOn: [z]}\n", `wf.yaml:4: task "a": dependsOn[0]: unknown task "z"`},
		{"invalid image", "workflow: w\ntasks:\n- {id: a, image: 'busybox::1'}\n", `wf.yaml:3: task "a": image: "busybox::1" is not a valid image reference`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			wf := filepath.Join(dir, "wf.yaml")
			require.NoError(t, os.WriteFile(wf, []byte(tc.yaml), 0o644))
			db := filepath.Join(dir, "db", "scheduler.db")
			var out, errb bytes.Buffer
			code := Main(t.Context(), []string{"--kubeconfig", "/nonexistent", "--db", db, "run", wf}, &out, &errb)
			require.Equal(t, exitUsage, code, errb.String())
			require.Contains(t, errb.String(), filepath.Join(dir, tc.want))
			_, err := os.Stat(db)
			require.ErrorIs(t, err, os.ErrNotExist, "nothing is created for an invalid workflow")
		})
	}
}

// A failing task fails the run, its downstream tasks are not run, and the
// final table says why. A task whose XCom value a downstream task reads
// ends XComFailed when it writes none, or, when its pod asks for JSON
// (xcom.kubexec.io/format: json), one that is not JSON; without that
// annotation, text is a value, passed on as a JSON string.
func TestFailureStopsDownstream(t *testing.T) {
	e := newEnv(t, "failing")
	ctx := t.Context()
	wf := e.writeWorkflow(`workflow: failing
defaults: {image: busybox:1.36, retries: 0}
tasks:
- id: broken
  command: [sh, -c, "echo cannot connect >&2; exit 7"]
- id: after
  dependsOn: [broken]
  command: [sh, -c, "true"]
- id: independent
  command: [sh, -c, "true"]
- id: silent
  command: [sh, -c, "echo no value written"]
- id: garbled
  command: [sh, -c, 'echo "rows: 42" > "$KUBEXEC_XCOM_PATH"']
  podOverride: {metadata: {annotations: {xcom.kubexec.io/format: json}}}
- id: reader
  dependsOn: [silent, garbled]
  xcomInputs: {A: silent, B: garbled}
  command: [sh, -c, "true"]
- id: text
  command: [sh, -c, 'echo "rows: 42" > "$KUBEXEC_XCOM_PATH"']
- id: text-reader
  dependsOn: [text]
  xcomInputs: {T: text}
  command: [sh, -c, 'test "$T" = "\"rows: 42\"" || { echo "got $T" >&2; exit 1; }']
`)
	code, out, _ := e.main(ctx, "--plain", "run", wf)
	require.Equal(t, exitFailed, code)
	require.Contains(t, out, "Run failing-1 failed")
	require.Regexp(t, `broken\s+failed\s+1\s+\S+\s+Failed`, out)
	require.Regexp(t, `after\s+upstream_failed\s+0`, out)
	require.Contains(t, out, "broken: attempt 1 failed: exit code 7 in container base")
	require.Contains(t, out, "after: not run: its dependency broken ended failed")
	states := taskStates(t, e.store(), "failing-1")
	require.Equal(t, sqlitestore.TaskSucceeded, states["independent"].State)
	require.Equal(t, sqlitestore.TaskUpstreamFailed, states["after"].State)

	require.Equal(t, sqlitestore.TaskFailed, states["silent"].State)
	require.Equal(t, kubexec.ReasonXComFailed, states["silent"].Reason)
	require.Contains(t, states["silent"].Message, "XCom value")
	require.Contains(t, states["silent"].Message, "required value missing")
	require.Contains(t, out, "silent: attempt 1 ended XComFailed (")
	require.Equal(t, sqlitestore.TaskFailed, states["garbled"].State)
	require.Equal(t, kubexec.ReasonXComFailed, states["garbled"].Reason)
	require.Contains(t, states["garbled"].Message, "XCom value")
	require.Contains(t, states["garbled"].Message, "not JSON")
	require.Contains(t, out, "garbled: attempt 1 ended XComFailed (")
	require.Equal(t, sqlitestore.TaskSucceeded, states["text"].State, states["text"].Message)
	require.Equal(t, sqlitestore.TaskSucceeded, states["text-reader"].State, states["text-reader"].Message)
	require.Equal(t, sqlitestore.TaskUpstreamFailed, states["reader"].State)
}

// cancel from another process ends a running run: its running attempt is
// revoked (its pod deleted) and the tasks not started are cancelled.
func TestCancelRun(t *testing.T) {
	devCluster.Need(t)
	e := newEnv(t, "cancel")
	ctx := t.Context()
	wf := e.writeWorkflow(`workflow: cancel
defaults: {image: busybox:1.36}
tasks:
- id: long
  command: [sh, -c, "sleep 300"]
- id: next
  dependsOn: [long]
  command: [sh, -c, "true"]
`)
	var wg sync.WaitGroup
	var code int
	var out string
	wg.Add(1)
	go func() {
		defer wg.Done()
		code, out, _ = e.main(ctx, "--plain", "run", wf)
	}()
	require.Eventually(t, func() bool {
		pods, err := devCluster.Client().CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(pods.Items) == 1 && pods.Items[0].Status.Phase == corev1.PodRunning
	}, 2*time.Minute, 200*time.Millisecond)
	ccode, cout, _ := e.main(ctx, "cancel", "cancel-1")
	require.Equal(t, exitOK, ccode)
	require.Contains(t, cout, "Run cancel-1: cancelled")
	wg.Wait()
	require.Equal(t, exitFailed, code)
	require.Contains(t, out, "Run cancel-1 cancelled")
	states := taskStates(t, e.store(), "cancel-1")
	require.Equal(t, sqlitestore.TaskCancelled, states["long"].State)
	require.Equal(t, kubexec.ReasonRevoked, states["long"].Reason)
	require.Equal(t, sqlitestore.TaskCancelled, states["next"].State)
}

// Kill the scheduler with SIGKILL while attempts run, start it again: the
// run completes, the running pods are tracked again rather than relaunched,
// an attempt that ended while no scheduler ran is saved, and no attempt
// runs twice.
func TestKillAndResume(t *testing.T) {
	devCluster.Need(t)
	e := newEnv(t, "kill")
	e.flags = []string{"--pod-policy", "privileged"} // the tasks share a host folder
	ctx := t.Context()
	shared := t.TempDir()
	require.NoError(t, os.Chmod(shared, 0o777)) // tasks run as uid 65534
	ranLog := filepath.Join(shared, "ran.log")
	task := func(id, deps, script string) string {
		return fmt.Sprintf(`- id: %s
  dependsOn: [%s]
  command: [sh, -c, 'echo "$KUBEXEC_TASK $KUBEXEC_ATTEMPT" >> /shared/ran.log; %s']
  podOverride:
    spec:
      volumes: [{name: shared, hostPath: {path: %s, type: Directory}}]
      containers: [{name: base, volumeMounts: [{name: shared, mountPath: /shared}]}]
`, id, deps, script, shared)
	}
	// The slow tasks, and flaky's retry, run until the test releases them
	// (with a file named after the task) rather than for a while: they
	// are running when the scheduler is killed and when the next one
	// starts, however slow the machine.
	const hold = `until [ -e "/shared/release.$KUBEXEC_TASK" ]; do sleep 0.1; done`
	release := func(ids ...string) {
		t.Helper()
		for _, id := range ids {
			require.NoError(t, os.WriteFile(filepath.Join(shared, "release."+id), nil, 0o644))
		}
	}
	wf := e.writeWorkflow("workflow: kill\ndefaults: {image: busybox:1.36, retries: 1, retryDelay: 1s}\ntasks:\n" +
		task("start", "", "sleep 1") +
		task("slow-1", "start", hold) +
		task("slow-2", "start", hold) +
		task("slow-3", "start", hold) +
		task("flaky", "start", `if [ "$KUBEXEC_ATTEMPT" -lt 2 ]; then exit 5; fi; `+hold) +
		task("end", "slow-1, slow-2, slow-3, flaky", "true"))

	// First scheduler: killed once the slow tasks run.
	var out1 bytes.Buffer
	first := exec.Command(binary, e.args("--plain", "run", wf)...)
	first.Stdout, first.Stderr = &out1, &out1
	require.NoError(t, first.Start())
	ran := func() []string {
		data, _ := os.ReadFile(ranLog)
		return strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(data)), " ", "#"))
	}
	require.Eventually(t, func() bool {
		r := ran()
		return slices.Contains(r, "slow-1#1") && slices.Contains(r, "slow-2#1") && slices.Contains(r, "slow-3#1") && slices.Contains(r, "flaky#2")
	}, 3*time.Minute, 100*time.Millisecond, "the slow tasks and flaky's retry never started; ran: %v", ran())
	require.NoError(t, first.Process.Kill())
	_ = first.Wait()
	t.Logf("first scheduler, killed:\n%s", out1.String())

	// They were all running, held, when the scheduler was killed.
	s := e.store()
	states := taskStates(t, s, "kill-1")
	for _, id := range []string{"slow-1", "slow-2", "slow-3", "flaky"} {
		require.Equal(t, sqlitestore.TaskLaunched, states[id].State, "%s: the kill must happen while attempts run: %+v", id, states)
	}
	require.Equal(t, sqlitestore.TaskWaiting, states["end"].State)

	// slow-1 ends while no scheduler runs; its pod stays, held by the
	// result-tracking finalizer, for the next scheduler.
	release("slow-1")
	slow1, err := kubexec.PodName(kubexec.TaskKey{WorkflowID: "kill", TaskID: "slow-1", RunID: "kill-1", MapIndex: kubexec.NotMapped, Attempt: 1})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		pod, err := devCluster.Client().CoreV1().Pods(e.ns).Get(ctx, slow1, metav1.GetOptions{})
		return err == nil && pod.Status.Phase == corev1.PodSucceeded
	}, 3*time.Minute, 100*time.Millisecond, "slow-1's pod did not end once released")

	// Second scheduler: resumes the run. It tracks the attempts still
	// running again; once it does, they are released and the run goes on.
	var out2 syncBuffer
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	second := exec.CommandContext(rctx, binary, e.args("--plain", "resume")...)
	second.Stdout, second.Stderr = &out2, &out2
	require.NoError(t, second.Start())
	waitSecond := sync.OnceValue(second.Wait)
	t.Cleanup(func() {
		cancel()
		_ = waitSecond()
		t.Logf("second scheduler:\n%s", out2.String())
	})
	tracked := []string{
		"slow-2: attempt 1: its pod was running before the restart; tracking it again",
		"slow-3: attempt 1: its pod was running before the restart; tracking it again",
		"flaky: attempt 2: its pod was running before the restart; tracking it again",
	}
	require.Eventually(t, func() bool {
		out := out2.String()
		for _, note := range tracked {
			if !strings.Contains(out, note) {
				return false
			}
		}
		return true
	}, 3*time.Minute, 100*time.Millisecond, "the second scheduler did not track the running attempts again (its output is logged below)")
	release("slow-2", "slow-3", "flaky")
	require.NoError(t, waitSecond())
	require.Contains(t, out2.String(), "Run kill-1 succeeded")

	// No attempt ran twice: each (task, attempt) appears once in the log of
	// executions, and each task ran the attempts the scheduler recorded.
	r := ran()
	counts := map[string]int{}
	for _, line := range r {
		counts[line]++
	}
	for line, n := range counts {
		require.Equal(t, 1, n, "attempt %s ran %d times; all: %v", line, n, r)
	}
	want := []string{"end#1", "flaky#1", "flaky#2", "slow-1#1", "slow-2#1", "slow-3#1", "start#1"}
	got := slices.Sorted(func(yield func(string) bool) {
		for k := range counts {
			if !yield(k) {
				return
			}
		}
	})
	require.Equal(t, want, got)

	states = taskStates(t, s, "kill-1")
	for id, task := range states {
		require.Equal(t, sqlitestore.TaskSucceeded, task.State, id)
		attempts, err := s.Attempts(ctx, "kill", "kill-1", id)
		require.NoError(t, err)
		require.Len(t, attempts, task.Attempt, id)
		n, err := s.CountResults(ctx, "kill", "kill-1", id)
		require.NoError(t, err)
		require.Equal(t, task.Attempt, n, "%s: one saved result per attempt", id)
	}
	// Every attempt's logs were archived, also of those that ended while
	// no scheduler ran; every pod was released: the succeeded ones are
	// deleted, the failed one kept without the tracking finalizer.
	sink, err := logs.NewFileSink(logDir(e.db))
	require.NoError(t, err)
	for _, line := range want {
		id, n, _ := strings.Cut(line, "#")
		attempt, err := strconv.Atoi(n)
		require.NoError(t, err)
		key := kubexec.TaskKey{WorkflowID: "kill", TaskID: id, RunID: "kill-1", MapIndex: kubexec.NotMapped, Attempt: attempt}
		require.NotEmpty(t, archivePath(sink, key), "the logs of %s are archived", line)
	}
	flaky, err := kubexec.PodName(kubexec.TaskKey{WorkflowID: "kill", TaskID: "flaky", RunID: "kill-1", MapIndex: kubexec.NotMapped, Attempt: 1})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return slices.Equal(e.podNames(), []string{flaky})
	}, 3*time.Minute, 200*time.Millisecond, "pods left: %v", e.podNames())
	pod, err := devCluster.Client().CoreV1().Pods(e.ns).Get(ctx, flaky, metav1.GetOptions{})
	require.NoError(t, err)
	require.NotContains(t, pod.Finalizers, kubexec.FinalizerResultTracking)
}

// logs follows a running task live, and keeps serving its logs from the
// archive once its pod was deleted: with the cluster, and without one.
func TestLogsLiveThenArchived(t *testing.T) {
	devCluster.Need(t)
	e := newEnv(t, "logs")
	e.flags = []string{"--pod-policy", "privileged"} // the task shares a host folder
	ctx := t.Context()
	// The task waits until the test has seen its pod running (a file in a
	// host folder it shares with the test), however slow the machine.
	shared := t.TempDir()
	require.NoError(t, os.Chmod(shared, 0o777)) // tasks run as uid 65534
	wf := e.writeWorkflow(fmt.Sprintf(`workflow: talk
defaults: {image: busybox:1.36}
tasks:
- id: talk
  command: [sh, -c, 'until [ -e /shared/go ]; do sleep 0.1; done; for i in 1 2 3 4 5 6; do echo "line $i"; sleep 0.5; done; echo done >&2']
  podOverride:
    spec:
      volumes: [{name: shared, hostPath: {path: %s, type: Directory}}]
      containers: [{name: base, volumeMounts: [{name: shared, mountPath: /shared}]}]
`, shared))
	var wg sync.WaitGroup
	var code int
	var out string
	wg.Add(1)
	go func() {
		defer wg.Done()
		code, out, _ = e.main(ctx, "--plain", "run", wf)
	}()
	name, err := kubexec.PodName(kubexec.TaskKey{WorkflowID: "talk", TaskID: "talk", RunID: "talk-1", MapIndex: kubexec.NotMapped, Attempt: 1})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		pod, err := devCluster.Client().CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && pod.Status.Phase == corev1.PodRunning
	}, 3*time.Minute, 100*time.Millisecond)
	require.NoError(t, os.WriteFile(filepath.Join(shared, "go"), nil, 0o644))

	// Live: --follow returns once the task has ended, with every line.
	fcode, followed, _ := e.main(ctx, "logs", "talk", "--follow")
	require.Equal(t, exitOK, fcode)
	want := "line 1\nline 2\nline 3\nline 4\nline 5\nline 6\ndone\n"
	require.Equal(t, want, followed)

	wg.Wait()
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "Run talk-1 succeeded")
	sink, err := logs.NewFileSink(logDir(e.db))
	require.NoError(t, err)
	archive := archivePath(sink, kubexec.TaskKey{WorkflowID: "talk", TaskID: "talk", RunID: "talk-1", MapIndex: kubexec.NotMapped, Attempt: 1})
	require.NotEmpty(t, archive)
	require.Regexp(t, `talk\s+succeeded\s+1\s+\S+\s+Succeeded\s+`+regexp.QuoteMeta(archive)+"\n", out, "the final table says where the logs are")

	// The succeeded pod is deleted; its logs are served from the archive.
	require.Eventually(t, func() bool {
		_, err := devCluster.Client().CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, 3*time.Minute, 200*time.Millisecond)
	lcode, archived, _ := e.main(ctx, "logs", "talk-1/talk")
	require.Equal(t, exitOK, lcode)
	require.Equal(t, want, archived)
	lcode, archived, _ = e.main(ctx, "logs", "talk", "--follow")
	require.Equal(t, exitOK, lcode)
	require.Equal(t, want, archived)

	// Without a cluster only the archive is read, and that is enough.
	var stdout, stderr bytes.Buffer
	lcode = Main(ctx, []string{"--db", e.db, "logs", "talk"}, &stdout, &stderr)
	require.Equal(t, exitOK, lcode, stderr.String())
	require.Equal(t, want, stdout.String())

	// A task whose logs were never archived says so.
	require.NoError(t, os.Remove(archive))
	lcode, _, errOut := e.main(ctx, "logs", "talk")
	require.Equal(t, exitFailed, lcode)
	require.Contains(t, errOut, "is gone (deleted after it ended")
	require.Contains(t, errOut, "its logs were not archived")
}
