package executor_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/internal/devcluster"
	"github.com/kubexec/kubexec/logs"
	"github.com/kubexec/kubexec/podtemplate"
	"github.com/kubexec/kubexec/xcom"
)

// nodePin pins a task's pod to one kind of node through the task's
// override: pod spec fields in YAML flow style, none for any node.
type nodePin struct {
	kubelet bool
	fields  []string
}

var (
	onAnyNode = nodePin{}
	onKubelet = nodePin{kubelet: true, fields: []string{
		fmt.Sprintf("nodeSelector: {%q: \"true\"}", devcluster.KubeletNodeLabel),
		fmt.Sprintf("tolerations: [{key: %q, operator: Equal, value: \"true\", effect: NoSchedule}]", devcluster.KubeletNodeLabel),
	}}
)

// requireRanThere checks that a result's pod ran on the pin's kind of node.
func (p nodePin) requireRanThere(t *testing.T, r kubexec.Result) {
	t.Helper()
	if p.kubelet {
		require.Equal(t, cluster.KubeletNodeNames()[0], r.Node, "%s did not run on the kubelet node", r.Key)
	} else {
		require.NotEmpty(t, r.Node, "%s: no node", r.Key)
	}
}

// apply sets spec's override to the pin's fields and extra (more pod spec
// fields in flow style, or "").
func (p nodePin) apply(t *testing.T, spec podtemplate.TaskSpec, extra string) podtemplate.TaskSpec {
	t.Helper()
	fields := append([]string(nil), p.fields...)
	if extra != "" {
		fields = append(fields, extra)
	}
	if len(fields) == 0 {
		return spec
	}
	o, err := podtemplate.ParseOverride("node pin", []byte("spec: {"+strings.Join(fields, ", ")+"}"))
	require.NoError(t, err)
	spec.Override = o
	return spec
}

// applyAnnotated is apply with the pod annotations of annotations (a YAML
// flow map) too.
func (p nodePin) applyAnnotated(t *testing.T, spec podtemplate.TaskSpec, annotations string) podtemplate.TaskSpec {
	t.Helper()
	o, err := podtemplate.ParseOverride("node pin", []byte("{metadata: {annotations: "+annotations+"}, spec: {"+strings.Join(p.fields, ", ")+"}}"))
	require.NoError(t, err)
	spec.Override = o
	return spec
}

// TestOnTheKubelet runs the executor's end-to-end cases on the real kubelet
// (with containerd and runc) that other tests run on kubexec-node: every
// kind of ending, XCom over both channels (the sidecar read by exec through
// the kubelet), and logs read live and from the archive after the pod is
// gone.
func TestOnTheKubelet(t *testing.T) {
	cluster.Need(t)
	t.Run("MixedOutcomes", func(t *testing.T) {
		testMixedOutcomes(t, 30, onKubelet)
	})
	t.Run("XComSidecarAndLogArchive", func(t *testing.T) {
		testXComAndLogArchive(t, false, xcom.ChannelSidecar, onKubelet)
	})
	t.Run("XComTerminationMessage", func(t *testing.T) {
		testXComAndLogArchive(t, true, xcom.ChannelTerminationMessage, onKubelet)
	})
	t.Run("LogsLive", func(t *testing.T) { testLogsLive(t, onKubelet) })
}

// TestLogsLive follows a running task's log on the process node; the same
// case runs on the kubelet in TestOnTheKubelet.
func TestLogsLive(t *testing.T) {
	cluster.Need(t)
	testLogsLive(t, onAnyNode)
}

// testLogsLive follows a running task's log through the logs Service, as
// `scheduler logs --follow` does: each line arrives while the pod runs,
// and the stream ends when the container does.
func testLogsLive(t *testing.T, pin nodePin) {
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "logs-live", nil)
	cfg := testConfig(ns)
	sink, err := logs.NewFileSink(t.TempDir())
	require.NoError(t, err)
	logService, err := logs.New(cluster.Client(), sink, logs.Config{Namespace: ns})
	require.NoError(t, err)
	cfg.LogArchiver = logService
	store := executor.NewMemoryStore()
	e := startExecutor(t, cluster.RESTConfig(), store, cfg)
	k := key("logs-live", 1)
	// The task waits for a file the test writes, so the first line is read
	// while the pod certainly runs.
	require.NoError(t, e.Queue(pin.apply(t, shell(k, "echo first; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo second"), "")))
	drive(t, e, 3*time.Minute, "running", func() bool {
		st, ok := e.Attempt(k)
		return ok && st.State == kubexec.StateRunning
	})
	name, err := kubexec.PodName(k)
	require.NoError(t, err)
	var lines []string
	for line, err := range logService.Lines(ctx, k, logs.Options{Namespace: ns, Follow: true}) {
		require.NoError(t, err)
		lines = append(lines, line.Text)
		if line.Text == "first" {
			_, _, code := cluster.Exec(t, ns, name, podtemplate.DefaultMainContainer, "touch", "/tmp/go")
			require.Zero(t, code)
		}
	}
	require.Equal(t, []string{"first", "second"}, lines)
	drive(t, e, 3*time.Minute, "result", func() bool { return len(store.Results()) == 1 })
	r := store.Results()[0]
	require.Equal(t, kubexec.ReasonSucceeded, r.Reason, "%+v", r)
	pin.requireRanThere(t, r)
}
