package driver_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kubexec/kubexec/examples/scheduler/driver"
	"github.com/kubexec/kubexec/examples/scheduler/sqlitestore"
	"github.com/kubexec/kubexec/examples/scheduler/workflow"
	"github.com/kubexec/kubexec/podtemplate"
)

// A task's timeout is its pod's deadline (TaskSpec.ActiveDeadline): it
// wins over the template's, its podOverride's wins over it, and a task
// without one keeps the template's.
func TestTimeoutIsThePodsDeadline(t *testing.T) {
	t.Parallel()
	wf, err := workflow.Parse("wf.yaml", []byte(`
workflow: w
defaults: {image: busybox:1.36}
tasks:
- id: timed
  timeout: 90s
- id: rounded
  timeout: 1500ms
- id: overridden
  timeout: 90s
  podOverride: {spec: {activeDeadlineSeconds: 30}}
- id: untimed
`))
	require.NoError(t, err)
	base := podtemplate.DefaultTemplate()
	base.Spec.ActiveDeadlineSeconds = new(int64(3600))
	b, err := podtemplate.New(base, podtemplate.Config{ExecutorID: "e"})
	require.NoError(t, err)
	run := sqlitestore.Run{ID: "w-1", Workflow: "w", Namespace: "default"}
	for id, want := range map[string]int64{"timed": 90, "rounded": 2, "overridden": 30, "untimed": 3600} {
		pod, err := b.Build(t.Context(), driver.Spec(run, wf.Task(id), 1))
		require.NoError(t, err, id)
		require.NotNil(t, pod.Spec.ActiveDeadlineSeconds, id)
		require.Equal(t, want, *pod.Spec.ActiveDeadlineSeconds, id)
	}
}
