package executor

import (
	"time"

	"github.com/kubexec/kubexec"
)

// Metrics receives the executor's measurements. Implementations must be safe
// for concurrent use and must not block; the executor calls them from all
// of its goroutines, never while it holds its own lock, so a method may
// call back into the executor (Stats, Attempt). Embed NopMetrics in an
// implementation so that methods added in later versions are no-ops for
// it. A Prometheus adapter lives outside the core module (examples/).
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
	// ObserveSaveError counts a failed StateStore.SaveResult call (each is
	// retried with backoff, and the pod keeps its tracking finalizer
	// meanwhile): a count that keeps growing means results wait.
	ObserveSaveError(reason kubexec.Reason)
	// SetSavesBacklogged reports whether launching is paused because
	// Config.MaxUnsavedResults results wait to be saved.
	SetSavesBacklogged(backlogged bool)
	// ObserveWatchRestart counts the pod watch's restarts: relist is true
	// for a new list (410 Gone, a refused watch), false for a resume from
	// the last resourceVersion.
	ObserveWatchRestart(namespace string, relist bool)
	// ObserveLeaseRenewal reports each renewal of the executor's Lease
	// (err nil on success); SetLeaseLost, whether the Lease is lost
	// (launching paused).
	ObserveLeaseRenewal(err error)
	SetLeaseLost(lost bool)
	// ObserveSweep reports each adoption sweep: the pods of dead instances
	// it adopted, and its error.
	ObserveSweep(adopted int, err error)
	// ObserveForeignPod counts a pod that carries an attempt's labels but
	// that the executor cannot tell it made (reason is one of the
	// ForeignPod constants): such a pod never decides a result.
	ObserveForeignPod(reason string)
}

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

// NopMetrics records nothing. Embed it in a Metrics of your own to
// implement only the methods you need.
type NopMetrics struct{}

var _ Metrics = NopMetrics{}

// ObserveSaveError does nothing.
func (NopMetrics) ObserveSaveError(kubexec.Reason) {}

// SetSavesBacklogged does nothing.
func (NopMetrics) SetSavesBacklogged(bool) {}

// ObserveWatchRestart does nothing.
func (NopMetrics) ObserveWatchRestart(string, bool) {}

// ObserveLeaseRenewal does nothing.
func (NopMetrics) ObserveLeaseRenewal(error) {}

// SetLeaseLost does nothing.
func (NopMetrics) SetLeaseLost(bool) {}

// ObserveSweep does nothing.
func (NopMetrics) ObserveSweep(int, error) {}

// ObserveForeignPod does nothing.
func (NopMetrics) ObserveForeignPod(string) {}

// SetSlots does nothing.
func (NopMetrics) SetSlots(open, queued, running int) {}

// ObserveLaunch does nothing.
func (NopMetrics) ObserveLaunch(LaunchOutcome, time.Duration) {}

// ObserveResult does nothing.
func (NopMetrics) ObserveResult(kubexec.Reason, time.Duration) {}
