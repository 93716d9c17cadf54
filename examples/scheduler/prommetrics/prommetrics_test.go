package prommetrics_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/examples/scheduler/prommetrics"
	"github.com/kubexec/kubexec/executor"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	m, err := prommetrics.New(reg)
	require.NoError(t, err)
	m.SetSlots(30, 1, 2)
	m.ObserveLaunch(executor.LaunchCreated, 20*time.Millisecond)
	m.ObserveLaunch(executor.LaunchThrottled, time.Second)
	m.ObserveResult(kubexec.ReasonSucceeded, 3*time.Millisecond)

	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP kubexec_executor_slots Executor slots: open (parallelism minus running), queued and running attempts.
# TYPE kubexec_executor_slots gauge
kubexec_executor_slots{kind="open"} 30
kubexec_executor_slots{kind="queued"} 1
kubexec_executor_slots{kind="running"} 2
# HELP kubexec_executor_launches_total Pod create requests by outcome.
# TYPE kubexec_executor_launches_total counter
kubexec_executor_launches_total{outcome="created"} 1
kubexec_executor_launches_total{outcome="throttled"} 1
# HELP kubexec_executor_results_total Saved attempt results by reason.
# TYPE kubexec_executor_results_total counter
kubexec_executor_results_total{reason="Succeeded"} 1
`), "kubexec_executor_slots", "kubexec_executor_launches_total", "kubexec_executor_results_total"))
	n, err := testutil.GatherAndCount(reg, "kubexec_executor_launch_wait_seconds", "kubexec_executor_result_save_seconds")
	require.NoError(t, err)
	require.Equal(t, 3, n)
}
