// Package prommetrics adapts kubexec's executor.Metrics to Prometheus
// (github.com/prometheus/client_golang). It lives in the example's module
// so that the kubexec library itself has no metrics dependency.
package prommetrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/executor"
)

// Metrics implements executor.Metrics with Prometheus collectors:
//
//	kubexec_executor_slots{kind="open|queued|running"}            gauge
//	kubexec_executor_launches_total{outcome}                      counter
//	kubexec_executor_launch_wait_seconds{outcome}                 histogram (queue to create outcome)
//	kubexec_executor_results_total{reason}                        counter
//	kubexec_executor_result_save_seconds{reason}                  histogram (pod end observed to saved)
//	kubexec_executor_save_errors_total{reason}                    counter (failed SaveResult calls, retried)
//	kubexec_executor_saves_backlogged                             gauge (1: launches paused for unsaved results)
//	kubexec_executor_watch_restarts_total{namespace,kind}         counter (kind: resume or relist)
//	kubexec_executor_lease_renewals_total{result}                 counter (result: ok or error)
//	kubexec_executor_lease_lost                                   gauge (1: launches paused, Lease not renewed)
//	kubexec_executor_sweeps_total{result}                         counter (result: ok or error)
//	kubexec_executor_sweep_adopted_pods_total                     counter
//	kubexec_executor_foreign_pods_total{reason}                   counter (pods with kubexec's labels it did not make)
type Metrics struct {
	slots      *prometheus.GaugeVec
	launches   *prometheus.CounterVec
	launchWait *prometheus.HistogramVec
	results    *prometheus.CounterVec
	saveTime   *prometheus.HistogramVec
	saveErrors *prometheus.CounterVec
	backlogged prometheus.Gauge
	restarts   *prometheus.CounterVec
	renewals   *prometheus.CounterVec
	leaseLost  prometheus.Gauge
	sweeps     *prometheus.CounterVec
	adopted    prometheus.Counter
	foreign    *prometheus.CounterVec
}

var _ executor.Metrics = (*Metrics)(nil)

// New returns Metrics registered with reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		slots: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "kubexec", Subsystem: "executor", Name: "slots",
			Help: "Executor slots: open (parallelism minus running), queued and running attempts.",
		}, []string{"kind"}),
		launches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kubexec", Subsystem: "executor", Name: "launches_total",
			Help: "Pod create requests by outcome.",
		}, []string{"outcome"}),
		launchWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "kubexec", Subsystem: "executor", Name: "launch_wait_seconds",
			Help:    "Time from Queue to the outcome of the attempt's create request.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"outcome"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kubexec", Subsystem: "executor", Name: "results_total",
			Help: "Saved attempt results by reason.",
		}, []string{"reason"}),
		saveTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "kubexec", Subsystem: "executor", Name: "result_save_seconds",
			Help:    "Time from observing an attempt's end to StateStore.SaveResult returning.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"reason"}),
		saveErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kubexec", Subsystem: "executor", Name: "save_errors_total",
			Help: "Failed StateStore.SaveResult calls by the result's reason (each is retried with backoff).",
		}, []string{"reason"}),
		backlogged: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "kubexec", Subsystem: "executor", Name: "saves_backlogged",
			Help: "1 while launches are paused because MaxUnsavedResults results wait to be saved.",
		}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kubexec", Subsystem: "executor", Name: "watch_restarts_total",
			Help: "Restarts of the pod watch: resume (from the last resourceVersion) or relist.",
		}, []string{"namespace", "kind"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kubexec", Subsystem: "executor", Name: "lease_renewals_total",
			Help: "Renewals of the executor's Lease by result (ok or error).",
		}, []string{"result"}),
		leaseLost: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "kubexec", Subsystem: "executor", Name: "lease_lost",
			Help: "1 while the executor's Lease is not renewed within RenewDeadline (launches paused).",
		}),
		sweeps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kubexec", Subsystem: "executor", Name: "sweeps_total",
			Help: "Adoption sweeps by result (ok or error).",
		}, []string{"result"}),
		adopted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kubexec", Subsystem: "executor", Name: "sweep_adopted_pods_total",
			Help: "Pods of dead executor instances taken over by adoption sweeps.",
		}),
		foreign: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kubexec", Subsystem: "executor", Name: "foreign_pods_total",
			Help: "Pods with an attempt's labels that the executor cannot tell its deployment made, by reason.",
		}, []string{"reason"}),
	}
	for _, c := range []prometheus.Collector{m.slots, m.launches, m.launchWait, m.results, m.saveTime,
		m.saveErrors, m.backlogged, m.restarts, m.renewals, m.leaseLost, m.sweeps, m.adopted, m.foreign} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// SetSlots implements executor.Metrics.
func (m *Metrics) SetSlots(open, queued, running int) {
	m.slots.WithLabelValues("open").Set(float64(open))
	m.slots.WithLabelValues("queued").Set(float64(queued))
	m.slots.WithLabelValues("running").Set(float64(running))
}

// ObserveLaunch implements executor.Metrics.
func (m *Metrics) ObserveLaunch(outcome executor.LaunchOutcome, sinceQueued time.Duration) {
	m.launches.WithLabelValues(string(outcome)).Inc()
	m.launchWait.WithLabelValues(string(outcome)).Observe(sinceQueued.Seconds())
}

// ObserveResult implements executor.Metrics.
func (m *Metrics) ObserveResult(reason kubexec.Reason, saveLatency time.Duration) {
	m.results.WithLabelValues(string(reason)).Inc()
	m.saveTime.WithLabelValues(string(reason)).Observe(saveLatency.Seconds())
}

// ObserveSaveError implements executor.Metrics.
func (m *Metrics) ObserveSaveError(reason kubexec.Reason) {
	m.saveErrors.WithLabelValues(string(reason)).Inc()
}

// SetSavesBacklogged implements executor.Metrics.
func (m *Metrics) SetSavesBacklogged(backlogged bool) { m.backlogged.Set(flag(backlogged)) }

// ObserveWatchRestart implements executor.Metrics.
func (m *Metrics) ObserveWatchRestart(namespace string, relist bool) {
	kind := "resume"
	if relist {
		kind = "relist"
	}
	m.restarts.WithLabelValues(namespace, kind).Inc()
}

// ObserveLeaseRenewal implements executor.Metrics.
func (m *Metrics) ObserveLeaseRenewal(err error) { m.renewals.WithLabelValues(result(err)).Inc() }

// SetLeaseLost implements executor.Metrics.
func (m *Metrics) SetLeaseLost(lost bool) { m.leaseLost.Set(flag(lost)) }

// ObserveSweep implements executor.Metrics.
func (m *Metrics) ObserveSweep(adopted int, err error) {
	m.sweeps.WithLabelValues(result(err)).Inc()
	m.adopted.Add(float64(adopted))
}

// ObserveForeignPod implements executor.Metrics.
func (m *Metrics) ObserveForeignPod(reason string) { m.foreign.WithLabelValues(reason).Inc() }

func flag(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}
