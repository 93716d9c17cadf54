package prommetrics_test

import (
	"errors"
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

// TestHealthMetrics: every measurement of executor.Metrics is exported,
// the health ones (save errors, backlog, watch restarts, Lease, sweeps,
// foreign pods) included.
func TestHealthMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	m, err := prommetrics.New(reg)
	require.NoError(t, err)
	m.ObserveSaveError(kubexec.ReasonFailed)
	m.SetSavesBacklogged(true)
	m.ObserveWatchRestart("etl", true)
	m.ObserveWatchRestart("etl", false)
	m.ObserveLeaseRenewal(nil)
	m.ObserveLeaseRenewal(errors.New("timeout"))
	m.SetLeaseLost(true)
	m.ObserveSweep(3, nil)
	m.ObserveForeignPod(executor.ForeignPodNoMark)

	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP kubexec_executor_save_errors_total Failed StateStore.SaveResult calls by the result's reason (each is retried with backoff).
# TYPE kubexec_executor_save_errors_total counter
kubexec_executor_save_errors_total{reason="Failed"} 1
# HELP kubexec_executor_saves_backlogged 1 while launches are paused because MaxUnsavedResults results wait to be saved.
# TYPE kubexec_executor_saves_backlogged gauge
kubexec_executor_saves_backlogged 1
# HELP kubexec_executor_watch_restarts_total Restarts of the pod watch: resume (from the last resourceVersion) or relist.
# TYPE kubexec_executor_watch_restarts_total counter
kubexec_executor_watch_restarts_total{kind="relist",namespace="etl"} 1
kubexec_executor_watch_restarts_total{kind="resume",namespace="etl"} 1
# HELP kubexec_executor_lease_renewals_total Renewals of the executor's Lease by result (ok or error).
# TYPE kubexec_executor_lease_renewals_total counter
kubexec_executor_lease_renewals_total{result="error"} 1
kubexec_executor_lease_renewals_total{result="ok"} 1
# HELP kubexec_executor_lease_lost 1 while the executor's Lease is not renewed within RenewDeadline (launches paused).
# TYPE kubexec_executor_lease_lost gauge
kubexec_executor_lease_lost 1
# HELP kubexec_executor_sweeps_total Adoption sweeps by result (ok or error).
# TYPE kubexec_executor_sweeps_total counter
kubexec_executor_sweeps_total{result="ok"} 1
# HELP kubexec_executor_sweep_adopted_pods_total Pods of dead executor instances taken over by adoption sweeps.
# TYPE kubexec_executor_sweep_adopted_pods_total counter
kubexec_executor_sweep_adopted_pods_total 3
# HELP kubexec_executor_foreign_pods_total Pods with an attempt's labels that the executor cannot tell its deployment made, by reason.
# TYPE kubexec_executor_foreign_pods_total counter
kubexec_executor_foreign_pods_total{reason="no-mark"} 1
`), "kubexec_executor_save_errors_total", "kubexec_executor_saves_backlogged", "kubexec_executor_watch_restarts_total",
		"kubexec_executor_lease_renewals_total", "kubexec_executor_lease_lost", "kubexec_executor_sweeps_total",
		"kubexec_executor_sweep_adopted_pods_total", "kubexec_executor_foreign_pods_total"))
}
