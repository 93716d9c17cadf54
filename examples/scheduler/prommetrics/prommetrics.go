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
type Metrics struct {
	slots      *prometheus.GaugeVec
	launches   *prometheus.CounterVec
	launchWait *prometheus.HistogramVec
	results    *prometheus.CounterVec
	saveTime   *prometheus.HistogramVec
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
	}
	for _, c := range []prometheus.Collector{m.slots, m.launches, m.launchWait, m.results, m.saveTime} {
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
