package executor_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/devcluster"
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

// TestOnTheKubelet runs the executor's end-to-end cases on the real kubelet
// (with containerd and runc) that the process node's tests run on
// kubexec-node: every kind of ending, XCom over both channels (the sidecar
// read by exec through the kubelet), and logs read live and from the
// archive after the pod is gone.
func TestOnTheKubelet(t *testing.T) {
	t.Run("MixedOutcomes", func(t *testing.T) {
		testMixedOutcomes(t, 30, onKubelet)
	})
	t.Run("XComSidecarAndLogArchive", func(t *testing.T) {
		testXComAndLogArchive(t, false, xcom.ChannelSidecar, onKubelet)
	})
	t.Run("XComTerminationMessage", func(t *testing.T) {
		testXComAndLogArchive(t, true, xcom.ChannelTerminationMessage, onKubelet)
	})
}
