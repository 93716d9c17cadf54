package executor

import (
	"time"

	"github.com/kubexec/kubexec"
)

// Metrics receives the executor's measurements. Implementations must be safe
// for concurrent use and must not block; the executor calls them from all
// of its goroutines. The default, NopMetrics, records nothing; a Prometheus
// adapter lives outside the core module (examples/).
type Metrics interface {
	// SetSlots reports the open slots, queued attempts and running
	// (launched, not yet finished) attempts after each change.
	SetSlots(open, queued, running int)
	// ObserveLaunch reports one create request's outcome and how long the
	// attempt waited from Queue to that outcome.
	ObserveLaunch(outcome LaunchOutcome, sinceQueued time.Duration)
	// ObserveResult reports a saved result, and how long it took from the
	// moment its pod's end was observed to SaveResult returning.
	ObserveResult(reason kubexec.Reason, saveLatency time.Duration)
}

// Optional capabilities of a Metrics, detected by type assertion. A Metrics
// that does not implement one does not receive its measurements; each is
// also logged.
type (
	// SaveErrorMetrics counts failed StateStore.SaveResult calls (each is
	// retried with backoff, and the pod keeps its tracking finalizer
	// meanwhile): a count that keeps growing means results wait.
	SaveErrorMetrics interface {
		ObserveSaveError(reason kubexec.Reason)
	}
	// WatchMetrics counts the pod watch's restarts: relist is true for a
	// new list (410 Gone, a refused watch), false for a resume from the
	// last resourceVersion.
	WatchMetrics interface {
		ObserveWatchRestart(namespace string, relist bool)
	}
	// LeaseMetrics reports each renewal of the executor's Lease (err nil
	// on success) and whether the Lease is lost (launching paused).
	LeaseMetrics interface {
		ObserveLeaseRenewal(err error)
		SetLeaseLost(lost bool)
	}
	// SweepMetrics reports each adoption sweep: the pods of dead instances
	// it adopted, and its error.
	SweepMetrics interface {
		ObserveSweep(adopted int, err error)
	}
	// BacklogMetrics reports whether launching is paused because
	// Config.MaxUnsavedResults results wait to be saved.
	BacklogMetrics interface {
		SetSavesBacklogged(backlogged bool)
	}
)

// LaunchOutcome classifies one create request.
type LaunchOutcome string

// Launch outcomes.
const (
	LaunchCreated       LaunchOutcome = "created"        // the pod was created
	LaunchAdopted       LaunchOutcome = "already_exists" // the attempt's pod existed already and is tracked
	LaunchQuotaExceeded LaunchOutcome = "quota_exceeded" // 403 exceeded quota: stays queued, namespace backs off
	LaunchThrottled     LaunchOutcome = "throttled"      // 429: stays queued, all creates pause for Retry-After
	LaunchServerError   LaunchOutcome = "server_error"   // 5xx, timeout, connection error: stays queued, retried with backoff
	LaunchRejected      LaunchOutcome = "rejected"       // 400/422/403/404 or a build error: result LaunchRejected
)

// NopMetrics records nothing.
type NopMetrics struct{}

var _ Metrics = NopMetrics{}

// SetSlots does nothing.
func (NopMetrics) SetSlots(open, queued, running int) {}

// ObserveLaunch does nothing.
func (NopMetrics) ObserveLaunch(LaunchOutcome, time.Duration) {}

// ObserveResult does nothing.
func (NopMetrics) ObserveResult(kubexec.Reason, time.Duration) {}
