package driver_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/examples/scheduler/driver"
	"github.com/kubexec/kubexec/examples/scheduler/sqlitestore"
	"github.com/kubexec/kubexec/examples/scheduler/workflow"
	"github.com/kubexec/kubexec/podtemplate"
	"github.com/kubexec/kubexec/xcom"
)

// fakeExecutor ends every queued attempt at once with success, as the
// executor would: the value the task writes (values, by task id; none
// when absent) goes to the backend first, its reference into the result.
type fakeExecutor struct {
	t       *testing.T
	store   *sqlitestore.Store
	values  map[string]string
	mu      sync.Mutex
	queued  map[string]podtemplate.TaskSpec // by task id
	ordered []string
}

func (f *fakeExecutor) Queue(spec podtemplate.TaskSpec) error {
	f.mu.Lock()
	f.queued[spec.Key.TaskID] = spec
	f.ordered = append(f.ordered, spec.Key.TaskID)
	f.mu.Unlock()
	ctx := context.Background()
	r := kubexec.Result{Key: spec.Key, State: kubexec.StateSucceeded, Reason: kubexec.ReasonSucceeded, FinishedAt: time.Now()}
	if v, ok := f.values[spec.Key.TaskID]; ok {
		ref, err := f.store.XCom().Put(ctx, spec.Key, json.RawMessage(v))
		require.NoError(f.t, err)
		r.XComRef = ref
	}
	return f.store.SaveResult(ctx, r)
}

func (f *fakeExecutor) Heartbeat() error             { return nil }
func (f *fakeExecutor) Revoke(kubexec.TaskKey) error { return nil }

func env(spec podtemplate.TaskSpec, name string) (string, bool) {
	for _, e := range spec.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func runWorkflow(t *testing.T, text string, values map[string]string) (*fakeExecutor, *sqlitestore.Store, sqlitestore.Run) {
	t.Helper()
	ctx := t.Context()
	wf, err := workflow.Parse("wf.yaml", []byte(text))
	require.NoError(t, err)
	store, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "db"))
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	var ids []string
	for _, task := range wf.Tasks {
		ids = append(ids, task.ID)
	}
	run, err := store.CreateRun(ctx, sqlitestore.Run{Workflow: wf.ID, Source: "wf.yaml", Definition: []byte(text), Namespace: "default", Cluster: "c"}, ids)
	require.NoError(t, err)
	ex := &fakeExecutor{t: t, store: store, values: values, queued: map[string]podtemplate.TaskSpec{}}
	d, err := driver.New(driver.Config{Store: store, Executor: ex, Workflow: wf, RunID: run.ID, Tick: 10 * time.Millisecond})
	require.NoError(t, err)
	rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	final, err := d.Run(rctx)
	require.NoError(t, err)
	return ex, store, final
}

// An upstream task's XCom value reaches the downstream task's environment
// as JSON text.
func TestXComInputsArePassed(t *testing.T) {
	t.Parallel()
	ex, _, run := runWorkflow(t, `
workflow: w
defaults: {image: busybox:1.36}
tasks:
- id: count
- id: name
- id: report
  dependsOn: [count, name]
  env: {OTHER: x}
  xcomInputs: {ROWS: count, NAME: name}
`, map[string]string{"count": `{"rows": 42}`, "name": `"sales"`})
	require.Equal(t, sqlitestore.RunSucceeded, run.State, run.Message)
	report := ex.queued["report"]
	rows, ok := env(report, "ROWS")
	require.True(t, ok)
	require.JSONEq(t, `{"rows": 42}`, rows)
	name, _ := env(report, "NAME")
	require.Equal(t, `"sales"`, name)
	other, _ := env(report, "OTHER")
	require.Equal(t, "x", other)
	_, ok = env(ex.queued["count"], "ROWS")
	require.False(t, ok)
}

// An upstream task that succeeded without a value fails its reader
// without running it, and the run fails.
func TestXComInputMissing(t *testing.T) {
	t.Parallel()
	ex, store, run := runWorkflow(t, `
workflow: w
defaults: {image: busybox:1.36}
tasks:
- id: count
- id: report
  dependsOn: [count]
  xcomInputs: {ROWS: count}
`, nil)
	require.Equal(t, sqlitestore.RunFailed, run.State)
	require.Equal(t, []string{"count"}, ex.ordered, "report never ran")
	task, err := store.GetTask(t.Context(), run.ID, "report")
	require.NoError(t, err)
	require.Equal(t, sqlitestore.TaskFailed, task.State)
	require.Equal(t, "not run: its input ROWS is the XCom value of count (attempt 1): it produced none: the task must write its value, JSON or text, to the file named by $KUBEXEC_XCOM_PATH", task.Message)
	require.Equal(t, 0, task.Attempt)
}

// Tasks whose value is read downstream must produce one.
func TestRequireXComMiddleware(t *testing.T) {
	t.Parallel()
	wf, err := workflow.Parse("wf.yaml", []byte(`
workflow: w
defaults: {image: busybox:1.36}
tasks:
- id: count
- id: kept
  podOverride: {metadata: {annotations: {xcom.kubexec.io/required: "false"}}}
- id: report
  dependsOn: [count, kept]
  xcomInputs: {ROWS: count, K: kept}
`))
	require.NoError(t, err)
	b, err := podtemplate.New(podtemplate.DefaultTemplate(), podtemplate.Config{
		ExecutorID: "e",
		Middleware: []podtemplate.Middleware{driver.RequireXComMiddleware(wf), xcom.Middleware(xcom.PodConfig{Channel: xcom.ChannelTerminationMessage})},
	})
	require.NoError(t, err)
	run := sqlitestore.Run{ID: "w-1", Workflow: "w", Namespace: "default"}
	build := func(id string) *corev1.Pod {
		pod, err := b.Build(t.Context(), driver.Spec(run, wf.Task(id), 1))
		require.NoError(t, err)
		return pod
	}
	require.Equal(t, "true", build("count").Annotations[xcom.AnnotationRequired])
	require.Equal(t, "false", build("kept").Annotations[xcom.AnnotationRequired], "the override wins")
	_, ok := build("report").Annotations[xcom.AnnotationRequired]
	require.False(t, ok, "nobody reads report's value")
}
