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

func TestInvalidJSON(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	e := setup(t, xcom.Config{})
	for i, tc := range []struct {
		channel, script string
	}{
		{"sidecar", `echo 'rows: 3' > "$KUBEXEC_XCOM_PATH"`},
		{"termination-message", `echo '{"rows": ' > "$KUBEXEC_XCOM_PATH"`},
	} {
		key := testKey(t)
		key.Attempt = i
		pod := e.run(t, key, tc.script, map[string]string{xcom.AnnotationChannel: tc.channel})
		pod, ref, err := e.collect(t, pod, key)
		require.ErrorIs(t, err, xcom.ErrNotJSON, tc.channel)
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
	pod := e.run(t, key, `{ printf '"'; head -c 5000 /dev/zero | tr '\0' x; printf '"'; } > /dev/termination-log`, nil)
	_, _, err := e.collect(t, pod, key)
	require.ErrorIs(t, err, xcom.ErrTooLarge)
	require.ErrorContains(t, err, "sidecar channel")

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
	_, err := xcom.NewCollector(cluster.Client(), cluster.RESTConfig(), &xcom.MemoryBackend{}, xcom.Config{DefaultChannel: "carrier-pigeon"})
	require.ErrorIs(t, err, xcom.ErrInvalidConfig)
	require.ErrorContains(t, err, "Config.DefaultChannel")
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
