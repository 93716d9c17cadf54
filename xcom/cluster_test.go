package xcom_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/devcluster"
	"github.com/kubexec/kubexec/podtemplate"
	"github.com/kubexec/kubexec/xcom"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// The tests build pods with podtemplate and xcom.Middleware, run them on
// the dev cluster's process node (containers are local processes; exec and
// termination messages work as with a kubelet), and collect their values
// as the executor would. The pods run on the first node; the second is
// TestSidecarNodeGone's, which kills it.

var cluster *devcluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(devcluster.Main(m, devcluster.Options{Nodes: 2}, &cluster))
}

type env struct {
	ns         string
	backend    *xcom.FileBackend
	backendDir string
	collector  *xcom.Collector
	template   *podtemplate.Template
	base       *corev1.Pod
}

func setup(t *testing.T, cfg xcom.Config) *env {
	t.Helper()
	return setupOn(t, cfg, cluster.NodeNames()[0])
}

// setupOn is setup for pods that run on node.
func setupOn(t *testing.T, cfg xcom.Config, node string) *env {
	t.Helper()
	e := &env{ns: cluster.NewNamespace(t, "xcom", nil), backendDir: t.TempDir()}
	var err error
	e.backend, err = xcom.NewFileBackend(e.backendDir)
	require.NoError(t, err)
	e.collector, err = xcom.NewCollector(cluster.Client(), cluster.RESTConfig(), e.backend, cfg)
	require.NoError(t, err)
	grace := int64(1)
	base := &corev1.Pod{Spec: corev1.PodSpec{
		TerminationGracePeriodSeconds: &grace,
		NodeSelector:                  map[string]string{corev1.LabelHostname: node},
		Containers:                    []corev1.Container{{Name: "base", Image: "debian:bookworm"}},
	}}
	e.base = base.DeepCopy()
	e.template, err = podtemplate.New(base, podtemplate.Config{
		ExecutorID: "xcom-test",
		Namespace:  e.ns,
		Middleware: []podtemplate.Middleware{xcom.Middleware(xcom.PodConfig{})},
	})
	require.NoError(t, err)
	return e
}

func testKey(t *testing.T) kubexec.TaskKey {
	return kubexec.TaskKey{WorkflowID: "xcom", TaskID: t.Name(), MapIndex: kubexec.NotMapped, Attempt: 1}
}

// run builds and creates the pod of key that runs script in its main
// container, with the given annotations (as a task's override would set
// them), and returns it.
func (e *env) run(t *testing.T, key kubexec.TaskKey, script string, annotations map[string]string, mutate ...func(*podtemplate.TaskSpec)) *corev1.Pod {
	t.Helper()
	return e.runOn(t, e.template, key, script, annotations, nil, mutate...)
}

// runWith is run, with edit applied to the pod between its build and its
// create (as a template could have set it).
func (e *env) runWith(t *testing.T, key kubexec.TaskKey, script string, annotations map[string]string, edit func(*corev1.Pod)) *corev1.Pod {
	t.Helper()
	return e.runOn(t, e.template, key, script, annotations, edit)
}

// templateBase is a copy of the base pod of e.template.
func (e *env) templateBase() *corev1.Pod { return e.base.DeepCopy() }

// runOn is run with template, and edit (when not nil) applied to the pod
// between its build and its create.
func (e *env) runOn(t *testing.T, template *podtemplate.Template, key kubexec.TaskKey, script string, annotations map[string]string,
	edit func(*corev1.Pod), mutate ...func(*podtemplate.TaskSpec)) *corev1.Pod {
	t.Helper()
	var override podtemplate.Override
	if len(annotations) > 0 {
		doc, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
		require.NoError(t, err)
		override, err = podtemplate.ParseOverride(t.Name(), doc)
		require.NoError(t, err)
	}
	spec := podtemplate.TaskSpec{Key: key, Command: []string{"sh", "-c", script}, Override: override}
	for _, m := range mutate {
		m(&spec)
	}
	pod, err := template.Build(t.Context(), spec)
	require.NoError(t, err)
	if edit != nil {
		edit(pod)
	}
	pod.Finalizers = nil // the test deletes nothing, but the namespace must go
	created, err := cluster.Client().CoreV1().Pods(e.ns).Create(t.Context(), pod, metav1.CreateOptions{})
	require.NoError(t, err)
	return created
}

func ended(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// collect does what the executor does: on each look at the running pod,
// Collect if it waits for it; once the pod has ended, Collect again and
// return that, after checking that both calls agree.
func (e *env) collect(t *testing.T, pod *corev1.Pod, key kubexec.TaskKey) (*corev1.Pod, string, error) {
	t.Helper()
	var early *struct {
		ref string
		err error
	}
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := cluster.Client().CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		if ended(p) {
			return true, nil
		}
		if xcom.Waiting(p) && early == nil {
			ref, err := e.collector.Collect(ctx, p, key)
			var verr *xcom.ValueError
			if err != nil && !errors.As(err, &verr) {
				t.Logf("collect while waiting, to be retried: %v", err)
				return false, nil
			}
			early = &struct {
				ref string
				err error
			}{ref, err}
		}
		return false, nil
	})
	require.NoError(t, err, "the pod did not end; last seen: %+v", last)
	ref, err := e.collector.Collect(t.Context(), last, key)
	if early != nil {
		require.Equal(t, early.ref, ref, "collecting again gives the same reference")
		require.Equal(t, errString(early.err), errString(err), "collecting again gives the same error")
	}
	return last, ref, err
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (e *env) value(t *testing.T, ref string) string {
	t.Helper()
	require.NotEmpty(t, ref)
	v, err := e.backend.Get(t.Context(), ref)
	require.NoError(t, err)
	return string(v)
}

func TestTerminationMessageValue(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	e := setup(t, xcom.Config{})
	// The default channel: no annotation, no sidecar.
	key := testKey(t)
	pod := e.run(t, key, `printf ' {"rows": 3, "ok": true}\n' > /dev/termination-log`, nil)
	require.Len(t, pod.Spec.Containers, 1)
	pod, ref, err := e.collect(t, pod, key)
	require.NoError(t, err)
	require.Equal(t, corev1.PodSucceeded, pod.Status.Phase)
	require.Equal(t, `{"rows": 3, "ok": true}`, e.value(t, ref))

	// Chosen explicitly, the task finds the path in its environment.
	key2 := key
	key2.Attempt = 2
	pod = e.run(t, key2, `printf '[1, 2]' > "$KUBEXEC_XCOM_PATH"`, map[string]string{xcom.AnnotationChannel: "termination-message"})
	_, ref, err = e.collect(t, pod, key2)
	require.NoError(t, err)
	require.Equal(t, `[1, 2]`, e.value(t, ref))

	// No value written, none required: no reference, no error.
	key3 := key
	key3.Attempt = 3
	pod = e.run(t, key3, `true`, nil)
	_, ref, err = e.collect(t, pod, key3)
	require.NoError(t, err)
	require.Empty(t, ref)

	// By default too, the task finds the path in its environment.
	key4 := key
	key4.Attempt = 4
	pod = e.run(t, key4, `printf '{"rows": 4}' > "$KUBEXEC_XCOM_PATH"`, nil)
	_, ref, err = e.collect(t, pod, key4)
	require.NoError(t, err)
	require.Equal(t, `{"rows": 4}`, e.value(t, ref))
}

// TestZeroConfigAlone: the zero Config, used as the executor uses its
// Config.XCom alone (no Middleware in the Builder; the Collector's
// MutatePod prepares each pod), collects the value a task writes to
// $KUBEXEC_XCOM_PATH, JSON or text, and a task that asks for the sidecar
// gets one.
func TestZeroConfigAlone(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	e := setup(t, xcom.Config{})
	bare, err := podtemplate.New(e.templateBase(), podtemplate.Config{ExecutorID: "xcom-test", Namespace: e.ns})
	require.NoError(t, err)
	mutate := func(p *corev1.Pod) { require.NoError(t, e.collector.MutatePod(t.Context(), p)) }
	for i, tc := range []struct {
		script      string
		annotations map[string]string
		containers  int
		want        string
	}{
		{`printf '{"rows": 3}\n' > "$KUBEXEC_XCOM_PATH"`, nil, 1, `{"rows": 3}`},
		{`echo done > "$KUBEXEC_XCOM_PATH"`, nil, 1, `"done"`},
		{`printf '[1, 2]' > "$KUBEXEC_XCOM_PATH"`, map[string]string{xcom.AnnotationChannel: "sidecar"}, 2, `[1, 2]`},
	} {
		key := testKey(t)
		key.Attempt = i + 1
		pod := e.runOn(t, bare, key, tc.script, tc.annotations, mutate)
		require.Len(t, pod.Spec.Containers, tc.containers)
		pod, ref, err := e.collect(t, pod, key)
		require.NoError(t, err, tc.script)
		require.Equal(t, corev1.PodSucceeded, pod.Status.Phase, "the task found the file to write: %s", tc.script)
		require.NotEmpty(t, ref, "the value of %s was lost", tc.script)
		require.Equal(t, tc.want, e.value(t, ref))
	}
}

func TestSidecarValueOfOneMiB(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	e := setup(t, xcom.Config{})
	key := testKey(t)
	const size = 1 << 20
	pod := e.run(t, key, `{ printf '{"data":"'; head -c 1048565 /dev/zero | tr '\0' a; printf '"}'; } > "$KUBEXEC_XCOM_PATH"`,
		map[string]string{xcom.AnnotationChannel: "sidecar", xcom.AnnotationRequired: "true"})
	require.Len(t, pod.Spec.Containers, 2)
	pod, ref, err := e.collect(t, pod, key)
	require.NoError(t, err)
	require.Equal(t, corev1.PodSucceeded, pod.Status.Phase, "the sidecar was stopped and exited 0")
	v := e.value(t, ref)
	require.Len(t, v, size)
	require.Equal(t, `{"data":"`+strings.Repeat("a", size-11)+`"}`, v)
	require.Contains(t, pod.Annotations[xcom.AnnotationResult], ref)
}

// TestSidecarNeedsNothingOfTheImage: for a value larger than a
// termination message, a task asks for the sidecar (its override's
// annotation) and writes the file $KUBEXEC_XCOM_PATH names, as it would
// for any channel: nothing else of its image or its code. The folder is
// there and writable whatever the task's user; the sidecar runs as the
// task's user when the pod names it, so even a file private to that user
// (mode 0600, as a temporary file renamed into place is) is read. Only a
// private file of a user the pod does not name is beyond the sidecar,
// which runs without privileges: the error says so and what to do.
func TestSidecarNeedsNothingOfTheImage(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	e := setup(t, xcom.Config{})
	uid, yes := int64(1000), true
	withUser := func(containerLevel bool) *podtemplate.Template {
		base := e.templateBase()
		if containerLevel {
			base.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: &uid}
		} else {
			base.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &uid, RunAsNonRoot: &yes}
		}
		tmpl, err := podtemplate.New(base, podtemplate.Config{ExecutorID: "xcom-test", Namespace: e.ns,
			Middleware: []podtemplate.Middleware{xcom.Middleware(xcom.PodConfig{})}})
		require.NoError(t, err)
		return tmpl
	}
	// 100 KiB of text, written to a private temporary file in the folder
	// and renamed into place.
	const private = `umask 077; t=$(mktemp "$(dirname "$KUBEXEC_XCOM_PATH")/tmp.XXXXXX"); ` +
		`head -c 102400 /dev/zero | tr '\0' a > "$t"; mv "$t" "$KUBEXEC_XCOM_PATH"`
	sidecar := map[string]string{xcom.AnnotationChannel: "sidecar"}
	for i, tc := range []struct {
		name     string
		template *podtemplate.Template
		script   string
		want     string // the value, or the error
	}{
		{"the container's user, a private file", withUser(true), private, `"` + strings.Repeat("a", 102400) + `"`},
		{"the pod's user, a private file", withUser(false), private, `"` + strings.Repeat("a", 102400) + `"`},
		{"the image's user, a plain write", e.template,
			`{ printf '{"data":"'; head -c 102400 /dev/zero | tr '\0' b; printf '"}'; } > "$KUBEXEC_XCOM_PATH"`,
			`{"data":"` + strings.Repeat("b", 102400) + `"}`},
		{"the image's user, a private file", e.template, private, "may not read the file"},
	} {
		key := testKey(t)
		key.Attempt = i + 1
		pod := e.runOn(t, tc.template, key, tc.script, sidecar, nil)
		pod, ref, err := e.collect(t, pod, key)
		require.Equal(t, corev1.PodSucceeded, pod.Status.Phase, "%s: the task ran, and the sidecar was stopped", tc.name)
		if !strings.HasPrefix(tc.want, `"`) && !strings.HasPrefix(tc.want, `{`) {
			require.ErrorIs(t, err, xcom.ErrUnreadable, tc.name)
			require.ErrorContains(t, err, tc.want, tc.name)
			require.ErrorContains(t, err, "runAsUser", tc.name)
			continue
		}
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.want, e.value(t, ref), tc.name)
	}
}

func TestAirflowPath(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	e := setup(t, xcom.Config{})
	key := testKey(t)
	// An Airflow KubernetesPodOperator image writes here, unaware of kubexec.
	pod := e.run(t, key, `echo '{"airflow": "compatible"}' > /airflow/xcom/return.json`,
		map[string]string{xcom.AnnotationChannel: "sidecar", xcom.AnnotationPath: xcom.AirflowPath})
	_, ref, err := e.collect(t, pod, key)
	require.NoError(t, err)
	require.Equal(t, `{"airflow": "compatible"}`, e.value(t, ref))
}

// TestTextValue: by default a task may write plain text as well as JSON,
// on either channel; the text is stored as a JSON string.
func TestTextValue(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	e := setup(t, xcom.Config{})
	for i, tc := range []struct {
		channel, format, script, want string
	}{
		{"sidecar", "", `echo 'rows: 3' > "$KUBEXEC_XCOM_PATH"`, `"rows: 3"`},
		{"termination-message", "", `echo 's3://bucket/part-1' > "$KUBEXEC_XCOM_PATH"`, `"s3://bucket/part-1"`},
		{"termination-message", "auto", `echo '{"rows": 3}' > "$KUBEXEC_XCOM_PATH"`, `{"rows": 3}`},
		{"sidecar", "text", `echo '{"rows": 3}' > "$KUBEXEC_XCOM_PATH"`, `"{\"rows\": 3}"`},
		{"termination-message", "text", `echo 42 > "$KUBEXEC_XCOM_PATH"`, `"42"`},
	} {
		key := testKey(t)
		key.Attempt = i + 1
		annotations := map[string]string{xcom.AnnotationChannel: tc.channel}
		if tc.format != "" {
			annotations[xcom.AnnotationFormat] = tc.format
		}
		pod := e.run(t, key, tc.script, annotations)
		_, ref, err := e.collect(t, pod, key)
		require.NoError(t, err, "%+v", tc)
		require.Equal(t, tc.want, e.value(t, ref), "%+v", tc)
	}
}

// TestInvalidJSON: a pod that asks for JSON (format json) fails on
// anything else; so does a file that is not UTF-8, whatever the format.
func TestInvalidJSON(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	e := setup(t, xcom.Config{})
	for i, tc := range []struct {
		channel, format, script string
	}{
		{"sidecar", "json", `echo 'rows: 3' > "$KUBEXEC_XCOM_PATH"`},
		{"termination-message", "json", `echo '{"rows": ' > "$KUBEXEC_XCOM_PATH"`},
		{"sidecar", "", `printf 'caf\351' > "$KUBEXEC_XCOM_PATH"`},
		{"sidecar", "text", `printf 'caf\351' > "$KUBEXEC_XCOM_PATH"`},
		// (A termination message reaches kubexec through the API server,
		// which makes it UTF-8: a byte that is not becomes U+FFFD.)
	} {
		key := testKey(t)
		key.Attempt = i + 1
		annotations := map[string]string{xcom.AnnotationChannel: tc.channel}
		if tc.format != "" {
			annotations[xcom.AnnotationFormat] = tc.format
		}
		pod := e.run(t, key, tc.script, annotations)
		pod, ref, err := e.collect(t, pod, key)
		require.ErrorIs(t, err, xcom.ErrNotJSON, "%+v", tc)
		require.ErrorIs(t, err, kubexec.ErrXComValue, "final")
		var verr *xcom.ValueError
		require.ErrorAs(t, err, &verr)
		require.Equal(t, key, verr.Key)
		require.Equal(t, "base", verr.Container)
		require.Empty(t, ref)
		require.Equal(t, corev1.PodSucceeded, pod.Status.Phase, "the pod still ends")
	}
}

func TestTooLarge(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	e := setup(t, xcom.Config{})
	key := testKey(t)
	// 5000 bytes: more than a termination message holds.
	pod := e.run(t, key, `{ printf '"'; head -c 5000 /dev/zero | tr '\0' x; printf '"'; } > "$KUBEXEC_XCOM_PATH"`, nil)
	_, _, err := e.collect(t, pod, key)
	require.ErrorIs(t, err, xcom.ErrTooLarge)
	require.ErrorContains(t, err, "sidecar channel: set the pod annotation "+xcom.AnnotationChannel+": sidecar")
	// As text, too: the message the kubelet kept is not the value.
	key.Attempt = 3
	pod = e.run(t, key, `head -c 5000 /dev/zero | tr '\0' x > "$KUBEXEC_XCOM_PATH"`, nil)
	_, ref, err := e.collect(t, pod, key)
	require.Empty(t, ref)
	require.ErrorIs(t, err, xcom.ErrTooLarge)
	require.ErrorContains(t, err, "sidecar channel: set the pod annotation "+xcom.AnnotationChannel+": sidecar")
	// 4095 bytes fit.
	key.Attempt = 4
	pod = e.run(t, key, `head -c 4095 /dev/zero | tr '\0' x > "$KUBEXEC_XCOM_PATH"`, nil)
	_, ref, err = e.collect(t, pod, key)
	require.NoError(t, err)
	require.Len(t, e.value(t, ref), 4095+2)

	// A sidecar value over the pod's own limit.
	key.Attempt = 2
	pod = e.run(t, key, `{ printf '"'; head -c 1998 /dev/zero | tr '\0' x; printf '"'; } > "$KUBEXEC_XCOM_PATH"`,
		map[string]string{xcom.AnnotationChannel: "sidecar", xcom.AnnotationMaxBytes: "1000"})
	pod, _, err = e.collect(t, pod, key)
	var verr *xcom.ValueError
	require.ErrorAs(t, err, &verr)
	require.ErrorIs(t, err, xcom.ErrTooLarge)
	require.Equal(t, int64(2000), verr.Size)
	require.Equal(t, int64(1000), verr.Limit)
	require.Equal(t, corev1.PodSucceeded, pod.Status.Phase)
}

func TestMissingWhenRequired(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	e := setup(t, xcom.Config{})
	key := testKey(t)
	pod := e.run(t, key, `true`, map[string]string{xcom.AnnotationChannel: "sidecar", xcom.AnnotationRequired: "true"})
	_, _, err := e.collect(t, pod, key)
	require.ErrorIs(t, err, xcom.ErrMissing)

	key.Attempt = 2
	pod = e.run(t, key, `: > /dev/termination-log`, map[string]string{xcom.AnnotationRequired: "true"})
	_, _, err = e.collect(t, pod, key)
	require.ErrorIs(t, err, xcom.ErrMissing)

	// Not required: no value is fine.
	key.Attempt = 3
	pod = e.run(t, key, `true`, map[string]string{xcom.AnnotationChannel: "sidecar"})
	_, ref, err := e.collect(t, pod, key)
	require.NoError(t, err)
	require.Empty(t, ref)
}

// A failed main container produces no value, and its sidecar is stopped
// so that the pod ends.
func TestFailedTaskStopsSidecar(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	e := setup(t, xcom.Config{})
	key := testKey(t)
	pod := e.run(t, key, `echo '{"partial": true}' > "$KUBEXEC_XCOM_PATH"; exit 3`,
		map[string]string{xcom.AnnotationChannel: "sidecar", xcom.AnnotationRequired: "true"})
	pod, ref, err := e.collect(t, pod, key)
	require.NoError(t, err)
	require.Empty(t, ref)
	require.Equal(t, corev1.PodFailed, pod.Status.Phase)
}

// An upstream value reaches a downstream task through its environment.
func TestPassToDownstream(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	e := setup(t, xcom.Config{})
	up := testKey(t)
	up.TaskID += "-up"
	pod := e.run(t, up, `printf '{"path": "s3://bucket/part-1"}' > "$KUBEXEC_XCOM_PATH"`, map[string]string{xcom.AnnotationChannel: "sidecar"})
	_, ref, err := e.collect(t, pod, up)
	require.NoError(t, err)

	down := testKey(t)
	down.TaskID += "-down"
	pod = e.run(t, down, `printf '{"got": %s}' "$UPSTREAM" > /dev/termination-log`, nil, func(spec *podtemplate.TaskSpec) {
		require.NoError(t, xcom.Pass(t.Context(), e.backend, spec, xcom.Input{Ref: ref, Env: "UPSTREAM"}))
	})
	_, ref, err = e.collect(t, pod, down)
	require.NoError(t, err)
	var got struct {
		Got struct{ Path string } `json:"got"`
	}
	require.NoError(t, json.Unmarshal([]byte(e.value(t, ref)), &got))
	require.Equal(t, "s3://bucket/part-1", got.Got.Path)
}

// TestNewCollectorRejectsBadConfig: a bad Config is refused with an error
// that wraps ErrInvalidConfig and names the field.
func TestNewCollectorRejectsBadConfig(t *testing.T) {
	cluster.Need(t)
	_, err := xcom.NewCollector(cluster.Client(), cluster.RESTConfig(), &xcom.MemoryBackend{}, xcom.Config{Pod: xcom.PodConfig{Channel: "carrier-pigeon"}})
	require.ErrorIs(t, err, kubexec.ErrInvalidConfig)
	require.ErrorContains(t, err, "Config.Pod.Channel")
}

// TestSidecarNodeGone: the node of a sidecar pod dies after the task wrote
// its value, so exec in the sidecar never answers again. Collect keeps
// returning errors to retry (not ErrXComValue) until the sidecar has been
// silent for Config.GiveUpAfter, then a final error that matches
// kubexec.ErrXComValue (so that the executor saves the result instead of
// retrying forever while the pod blocks its namespace) and says that the
// value is lost and why. The answer is recorded on the pod, and collecting
// again gives it again. It kills the package's second node, which no other
// test uses.
func TestSidecarNodeGone(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	const bound = 15 * time.Second
	node := cluster.NodeNames()[1]
	e := setupOn(t, xcom.Config{GiveUpAfter: bound}, node)
	key := testKey(t)
	pods := cluster.Client().CoreV1().Pods(e.ns)
	pod := e.run(t, key, `printf '{"lost": true}' > "$KUBEXEC_XCOM_PATH"`,
		map[string]string{xcom.AnnotationChannel: "sidecar", xcom.AnnotationRequired: "true"})

	// The main container ended and the sidecar waits to be read.
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		if ended(p) {
			return false, errors.New("the pod ended while its sidecar should wait")
		}
		return xcom.Waiting(p), nil
	})
	require.NoError(t, err, "the sidecar did not wait for its value; last seen: %+v", last)
	require.Equal(t, node, last.Spec.NodeName)
	require.NoError(t, cluster.KillNode(node))

	// Collect as the executor does, until its answer is final.
	start := time.Now()
	var retried []error
	var final error
	err = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, bound+3*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		ref, err := e.collector.Collect(ctx, p, key)
		switch {
		case errors.Is(err, kubexec.ErrXComValue):
			final = err
			return true, nil
		case err != nil:
			retried = append(retried, err)
			return false, nil
		}
		return false, fmt.Errorf("collect gave reference %q with the node gone", ref)
	})
	if len(retried) > 3 {
		retried = retried[len(retried)-3:]
	}
	require.NoError(t, err, "Collect gave no final error within %s of a bound of %s; its last errors: %v", time.Since(start).Round(time.Second), bound, retried)
	elapsed := time.Since(start)
	t.Logf("final after %s: %v", elapsed.Round(time.Millisecond), final)
	require.NotEmpty(t, retried, "a node that does not answer is retried before the value is given up")
	for _, err := range retried {
		require.ErrorContains(t, err, "has not answered exec")
	}
	require.GreaterOrEqual(t, elapsed, bound, "the value was given up before the bound")

	var verr *xcom.ValueError
	require.ErrorAs(t, final, &verr)
	require.ErrorIs(t, final, xcom.ErrUnreadable)
	require.Equal(t, key, verr.Key)
	for _, want := range []string{"did not answer exec", "the value is lost", "node " + node, "kubelet", "GiveUpAfter"} {
		require.ErrorContains(t, final, want)
	}

	// The answer is on the pod, and collecting again gives it again at
	// once (the sidecar is not waited for again).
	p, err := pods.Get(t.Context(), pod.Name, metav1.GetOptions{})
	require.NoError(t, err)
	require.Contains(t, p.Annotations[xcom.AnnotationResult], `"unreadable"`)
	again := time.Now()
	_, err = e.collector.Collect(t.Context(), p, key)
	require.ErrorIs(t, err, kubexec.ErrXComValue)
	require.Equal(t, final.Error(), err.Error())
	require.Less(t, time.Since(again), bound, "collecting again waited for the sidecar again")
}
