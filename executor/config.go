package executor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/adoption"
	"github.com/kubexec/kubexec/internal/provenance"
	"github.com/kubexec/kubexec/logs"
	"github.com/kubexec/kubexec/podtemplate"
	"github.com/kubexec/kubexec/watch"
)

// Config configures an executor. The zero value is valid: every field has a
// default, given at the end of its comment.
type Config struct {
	// ExecutorID identifies this executor instance: its pods carry it in a
	// label, its Lease is named after it, and an instance restarted with
	// the same id picks its pods up again at once, with no adoption. Give
	// each instance an id that survives its restarts: in Kubernetes, run
	// the scheduler as a StatefulSet and use its pod's name (metadata.name
	// through the downward API). With a new id on each start, the pods a
	// crashed predecessor left running wait until the host calls Adopt (or
	// end, and are swept after its Lease expires), and each start makes a
	// new Lease (removed by Stop, or by other instances' sweeps once
	// expired for ten Lease durations). Default: the host name and a
	// random suffix, new on each start.
	ExecutorID string

	// Namespace is where pods go when neither the task spec nor the
	// template names a namespace. Default "default".
	Namespace string
	// Namespaces are the namespaces the executor watches and may create
	// pods in. Default: [Namespace]. A single "" watches all namespaces.
	Namespaces []string

	// Parallelism is the most attempts launched and not yet finished at
	// once (Airflow's parallelism), 1 to 1,000,000. Nothing is sized by it
	// up front. Default 32.
	Parallelism int

	// CreateConcurrency is the most pod create requests in flight at once,
	// 1 to 1,000 (one goroutine each). Default 10.
	CreateConcurrency int
	// CreateQPS and CreateBurst configure the client-side token bucket that
	// paces pod creates: QPS 0.001 to 100,000, burst 1 to 100,000.
	// Defaults 20 and 30 (the Job controller's client).
	CreateQPS   float64
	CreateBurst int
	// ClientQPS and ClientBurst are set on the REST client used for all
	// other requests, explicitly: client-go's silent default (QPS 5,
	// burst 10) caps throughput. Same ranges as CreateQPS and CreateBurst.
	// Defaults 50 and 100. A rest.Config passed to New with its own
	// non-zero QPS keeps it.
	ClientQPS   float32
	ClientBurst int

	// Builder builds each attempt's pod. The executor hands it its
	// identity in TaskSpec.ExecutorID (a Builder needs no ExecutorID of its
	// own) and applies kubexec's metadata again after Build, so that a
	// Builder of the host's own cannot mislabel pods. Default:
	// podtemplate.New with podtemplate.DefaultTemplate() and Namespace.
	Builder podtemplate.Builder

	// Policy is what every pod must respect, checked last on the pod as it
	// will be created (after the template, task spec, override,
	// middleware and Config.XCom's changes), whoever wrote the part that
	// breaks it: by default the restricted Pod Security Standard, the
	// namespace's "default" ServiceAccount only (never the executor's own:
	// Start learns it from a SelfSubjectReview), the task's namespace, no
	// internal kubexec annotations, no finalizers but kubexec's, no
	// ownerReferences and no spec.nodeName. A pod that breaks it is never
	// created: its attempt ends with LaunchRejected, whose message names
	// each field and rule (podtemplate.PolicyError). Widen it field by
	// field (see podtemplate.Policy); turn it off with
	// Policy: podtemplate.Policy{Disabled: true}. Default: the zero
	// podtemplate.Policy.
	Policy podtemplate.Policy

	// ProvenanceKey keys the provenance mark the executor writes on every
	// pod it creates (kubexec.AnnotationProvenance, an HMAC over the pod's
	// namespace, name and task key). The executor takes a pod with an
	// attempt's labels for the attempt's only when it is the pod it
	// created in this process (same UID) or carries a mark that verifies
	// with this key: anyone else's pod, with whatever labels, is reported
	// (log, Metrics.ObserveForeignPod) and never tracked, adopted, settled or
	// given a result. All instances of one AdoptionGroup need the same
	// key. At least 32 random bytes. Default: read from the Secret
	// ProvenanceSecret in LeaseNamespace, which the first instance
	// creates with a random key (this needs get and create on Secrets in
	// LeaseNamespace: executor/rbac-lease.yaml).
	ProvenanceKey []byte
	// ProvenanceSecret names the Secret in LeaseNamespace that holds the
	// provenance key when ProvenanceKey is nil. Default
	// DefaultProvenanceSecret, followed by "-" and the AdoptionGroup when
	// there is one.
	ProvenanceSecret string
	// DisableProvenance turns the provenance mark off: pods are then told
	// apart by their name and, for pods created in this process, their
	// UID only, and pods left by an earlier run or another instance are
	// taken on their labels. Default false.
	DisableProvenance bool

	// LogArchiver archives an attempt's logs after its result is saved and
	// before its pod is released or deleted (logs.Service implements it);
	// the tracking finalizer keeps the pod until the archive is complete.
	// Default: none (logs go with the pod).
	LogArchiver logs.Archiver
	// XCom reads an attempt's small result value before its result is
	// saved, and puts the value's reference in Result.XComRef
	// (*xcom.Collector implements it, and prepares the pods too).
	// A value that is too large, not JSON or missing when required fails
	// the attempt with the value's error as its message. Default: none.
	XCom XComCollector
	// XComTimeout bounds each call of XCom.Collect, so that a value that
	// is slow to read (a sidecar that does not answer, a value file that
	// blocks its reader) holds a result worker for that long at most: the
	// call fails, the attempt is tried again after the result queue's
	// per-attempt backoff, and the results of other attempts are saved
	// meanwhile. Keep it above what the collector needs for a value it can
	// read (xcom.Collector bounds each exec by its Config.ReadTimeout, 1m
	// by default; an exec cut off counts towards its GiveUpAfter, so a
	// value that cannot be read is still given up in the end). 10ms to
	// 1h. Default 2m.
	XComTimeout time.Duration

	// PodStopWait bounds how long the result of an attempt whose pod may
	// still run when its outcome is known (deleted by someone else,
	// disrupted, revoked, or failed while pending and deleted) waits for
	// that pod to stop: the executor deletes the pod first and saves the
	// result once the pod reached phase Succeeded or Failed, was never
	// scheduled, or is gone, as the Job controller's podReplacementPolicy
	// Failed does, so that the host's retry never runs beside the old pod.
	// After PodStopWait the result is saved anyway with
	// Result.PodMayStillRun set (a node that is gone never confirms). A
	// negative value saves at once (podReplacementPolicy
	// TerminatingOrFailed), with PodMayStillRun set when the pod had not
	// stopped. Up to 24h. Default 10m.
	PodStopWait time.Duration

	// GC is what happens to a pod after its result is saved.
	// Default: delete on success, keep on failure, no delay.
	GC GCPolicy

	// RevokeGracePeriod is the grace period of the delete that Revoke
	// sends, 1s to 24h. Default 30s.
	RevokeGracePeriod time.Duration
	// QueuedTimeout fails an attempt with QueuedTimeout when it could not
	// be launched within this time after it first got a slot: its creates
	// kept being refused or failing (quota, throttling, 5xx, connection
	// errors) or could not be sent (Lease lost). Time spent waiting for a
	// free slot does not count, so a host may queue more attempts than
	// Parallelism and each waits its turn (Airflow's task_queued_timeout
	// counts that wait too, because Airflow never sends more than the open
	// slots). 1ms to 720h. Default 10m.
	QueuedTimeout time.Duration
	// Classify holds the grace periods of the failure classification
	// (image pull grace, pending timeout). Default: watch's defaults.
	Classify watch.ClassifyOptions

	// AdoptionGroup names the deployment this instance belongs to: the
	// instances that share one StateStore (one database) and may adopt
	// each other's pods, as the replicas of one scheduler do. Its pods
	// carry it (kubexec.LabelGroup), with the LeaseNamespace
	// (kubexec.AnnotationLeaseNamespace). Adoption, by Adopt and by the
	// sweeps, takes only pods of the same group whose Lease lives in the
	// same LeaseNamespace: two deployments sharing a namespace (dev and
	// staging, two teams) never save, relabel, release or delete each
	// other's pods, whatever their Leases say. A valid label value.
	// Default: none; an instance with no group adopts only what carries
	// its own ExecutorID (its pods from an earlier run with the same id),
	// and its sweeps take nothing over.
	AdoptionGroup string

	// LeaseNamespace holds the Leases by which executor instances show
	// they are alive (see package adoption). Every instance of one
	// AdoptionGroup must use the same LeaseNamespace: pods whose Lease
	// lives elsewhere are never adopted. Default: Namespace.
	LeaseNamespace string
	// LeaseDuration, RenewDeadline and RetryPeriod time this instance's
	// Lease, with client-go's rules (LeaseDuration > RenewDeadline > 1.2 ×
	// RetryPeriod): LeaseDuration in whole seconds from 1s to 1h,
	// RenewDeadline up to 1h, RetryPeriod from 100ms. Defaults 15s, 10s,
	// 2s (the Lease defaults).
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// Liveness decides whether another executor instance is alive, for
	// Adopt and the adoption sweeps: a host with its own record of its
	// instances (a database heartbeat table) passes it. Default: the
	// instances' Leases (adoption.LeaseLiveness in LeaseNamespace), or the
	// StateStore when it implements adoption.Liveness.
	Liveness adoption.Liveness

	// DeleteLeaseOnStop says whether Stop deletes this
	// instance's Lease. Deleting it tells other instances at once that
	// this one is gone (their sweeps then take over its ended pods; a
	// host's Adopt there takes its running ones), which is right for an
	// instance that will not come back and wrong for one about to restart
	// with the same id. Default: deleted when ExecutorID was left to its
	// random default (nothing can resume it), kept (to expire) when the
	// host gave the id; DeleteLeaseOnStop forces the deletion for a given
	// id.
	DeleteLeaseOnStop bool

	// SweepInterval is how often the pods of dead instances that ended or
	// are being deleted are adopted, so their results are saved, 10ms to
	// 720h. Default 30s.
	SweepInterval time.Duration

	// MaxUnsavedResults bounds the results waiting to be saved (a slow or
	// failing StateStore): while more wait, no new attempt is launched
	// (backpressure: Stats.SavesBacklogged, BacklogMetrics and a log line
	// at each change say so), so that results do not pile up in memory
	// behind a store that cannot take them. 1 to 1,000,000. Default:
	// Parallelism.
	MaxUnsavedResults int

	// StopTimeout bounds Stop when its context has no earlier deadline:
	// the results that can be saved are saved for at most this long, then
	// Stop returns and says what it left. 1s to 1h. Default 30s.
	StopTimeout time.Duration

	// ResultWorkers is the number of goroutines that save results, and
	// also the number that release pods once their results are saved,
	// 1 to 1,000. Default 8.
	ResultWorkers int
	// ResyncInterval is how often pending attempts are classified again
	// for time-based outcomes (pending and queued timeouts) without a pod
	// event, 10ms to 1h. Default 5s. Only the attempts a timeout can end
	// (watch.Classification.RecheckAt) are looked at: a running pod costs
	// the resync nothing.
	ResyncInterval time.Duration

	// Logger receives the executor's logs: warnings for retried saves,
	// failed creates, lease renewals and sweeps, info for starts, stops
	// and adoptions. Pass slog.New(slog.DiscardHandler) to silence it.
	// Default: slog.Default().
	Logger *slog.Logger
	// Metrics receives the executor's measurements. Default NopMetrics.
	Metrics Metrics
}

// XComCollector reads the XCom value of an ended attempt and prepares the
// pods that return one; *xcom.Collector implements it.
//
//   - MutatePod is applied to every pod the executor builds (after the
//     Builder, before the policy step and kubexec's metadata), so that
//     setting Config.XCom alone prepares the pods.
//   - Waiting says whether a pod's main container has ended while a sidecar
//     keeps the pod running, so that the value is collected then (which
//     lets the pod end). It is called on each pod event, and must be quick.
//   - Collect returns the value's reference, "" for none, an error
//     matching kubexec.ErrXComValue for a value that is unusable (final:
//     the attempt ends with kubexec.ReasonXComFailed and the value's error
//     as its message), or another error (retried). It is called from the
//     result workers, never twice at once for the same attempt.
type XComCollector interface {
	MutatePod(ctx context.Context, pod *corev1.Pod) error
	Waiting(pod *corev1.Pod) bool
	Collect(ctx context.Context, pod *corev1.Pod, key kubexec.TaskKey) (string, error)
}

// GCPolicy says what happens to a pod once its result is saved. Kept pods
// get the done label (kubexec.LabelDone) so watches and lists skip them.
type GCPolicy struct {
	// KeepOnSuccess keeps pods that succeeded. Default false (deleted).
	KeepOnSuccess bool
	// DeleteOnFailure deletes pods that failed. Default false (kept for
	// inspection, as Airflow's delete_worker_pods_on_failure).
	DeleteOnFailure bool
	// Delay postpones a deletion, 0 to 720h. The pod carries the done
	// label meanwhile; a restart forgets the pending deletion. Default 0.
	Delay time.Duration
}

// Defaults of Config.ClientQPS and ClientBurst.
const (
	defaultClientQPS   = 50
	defaultClientBurst = 100
)

func (c Config) withDefaults() Config {
	if c.ExecutorID == "" {
		c.ExecutorID = generateID()
	}
	if c.Namespace == "" {
		c.Namespace = podtemplate.DefaultNamespace
	}
	if c.Namespaces == nil {
		c.Namespaces = []string{c.Namespace}
	} else {
		c.Namespaces = slices.Clone(c.Namespaces)
	}
	if c.Parallelism == 0 {
		c.Parallelism = 32
	}
	if c.CreateConcurrency == 0 {
		c.CreateConcurrency = 10
	}
	if c.CreateQPS == 0 {
		c.CreateQPS = 20
	}
	if c.CreateBurst == 0 {
		c.CreateBurst = 30
	}
	if c.ClientQPS == 0 {
		c.ClientQPS = defaultClientQPS
	}
	if c.ClientBurst == 0 {
		c.ClientBurst = defaultClientBurst
	}
	if c.RevokeGracePeriod == 0 {
		c.RevokeGracePeriod = 30 * time.Second
	}
	if c.QueuedTimeout == 0 {
		c.QueuedTimeout = 10 * time.Minute
	}
	if c.PodStopWait == 0 {
		c.PodStopWait = 10 * time.Minute
	}
	if c.LeaseNamespace == "" {
		c.LeaseNamespace = c.Namespace
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = 30 * time.Second
	}
	if c.ResultWorkers == 0 {
		c.ResultWorkers = 8
	}
	if c.XComTimeout == 0 {
		c.XComTimeout = 2 * time.Minute
	}
	if c.MaxUnsavedResults == 0 {
		c.MaxUnsavedResults = c.Parallelism
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = 30 * time.Second
	}
	if c.ResyncInterval == 0 {
		c.ResyncInterval = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = NopMetrics{}
	}
	return c
}

// validate names the field in its error.
func (c Config) validate() error {
	var errs []error
	if err := kubexec.ValidateExecutorID(c.ExecutorID); err != nil {
		errs = append(errs, fmt.Errorf("Config.ExecutorID: %w", err))
	}
	for _, msg := range validation.IsDNS1123Label(c.Namespace) {
		errs = append(errs, fmt.Errorf("Config.Namespace %q: %s", c.Namespace, msg))
	}
	allNamespaces := len(c.Namespaces) == 1 && c.Namespaces[0] == ""
	if len(c.Namespaces) == 0 {
		errs = append(errs, errors.New(`Config.Namespaces is empty: leave it nil for [Namespace], or use [""] for all namespaces`))
	}
	if !allNamespaces {
		for i, ns := range c.Namespaces {
			for _, msg := range validation.IsDNS1123Label(ns) {
				errs = append(errs, fmt.Errorf("Config.Namespaces[%d] %q: %s", i, ns, msg))
			}
		}
		if !slices.Contains(c.Namespaces, c.Namespace) {
			errs = append(errs, fmt.Errorf("Config.Namespace %q is not in Config.Namespaces %v: pods there would never be watched", c.Namespace, c.Namespaces))
		}
	}
	if err := c.Policy.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("Config.Policy: %w", err))
	}
	if c.ProvenanceKey != nil && len(c.ProvenanceKey) < provenance.MinKeyBytes {
		errs = append(errs, fmt.Errorf("Config.ProvenanceKey holds %d bytes: give it at least %d random bytes, or leave it nil to keep the key in a Secret", len(c.ProvenanceKey), provenance.MinKeyBytes))
	}
	if c.ProvenanceSecret != "" {
		for _, msg := range validation.IsDNS1123Subdomain(c.ProvenanceSecret) {
			errs = append(errs, fmt.Errorf("Config.ProvenanceSecret %q: %s", c.ProvenanceSecret, msg))
		}
	}
	if err := kubexec.ValidateGroup(c.AdoptionGroup); err != nil {
		errs = append(errs, fmt.Errorf("Config.AdoptionGroup: %w", err))
	}
	for _, msg := range validation.IsDNS1123Label(c.LeaseNamespace) {
		errs = append(errs, fmt.Errorf("Config.LeaseNamespace %q: %s", c.LeaseNamespace, msg))
	}
	errs = append(errs, c.boundErrors()...)
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", kubexec.ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}

// Upper bounds of Config's numeric fields: far above what one executor
// instance can use, low enough that no value allocates, starts goroutines
// or overflows a conversion it should not.
const (
	maxParallelism       = 1_000_000
	maxWorkers           = 1_000 // CreateConcurrency, ResultWorkers
	maxQPS               = 100_000
	maxBurst             = 100_000
	maxTimeout           = 30 * 24 * time.Hour // QueuedTimeout, GC.Delay, intervals
	maxRevokeGracePeriod = 24 * time.Hour
	minInterval          = 10 * time.Millisecond // ResyncInterval, SweepInterval
	minRetryPeriod       = 100 * time.Millisecond
)

// boundErrors checks the numeric fields' ranges, after defaults were
// filled in (a zero left means "use the default", so it never reaches
// here).
func (c Config) boundErrors() []error {
	var errs []error
	outside := func(name, v, lo, hi string) {
		//lint:ignore ST1005 the message starts with the Config field it names
		errs = append(errs, fmt.Errorf("Config.%s is %s: it must be between %s and %s (0 for the default)", name, v, lo, hi))
	}
	ints := func(name string, v, lo, hi int) {
		if v < lo || v > hi {
			outside(name, strconv.Itoa(v), strconv.Itoa(lo), strconv.Itoa(hi))
		}
	}
	floats := func(name string, v, lo, hi float64) {
		if math.IsNaN(v) || v < lo || v > hi {
			f := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
			outside(name, f(v), f(lo), f(hi))
		}
	}
	durations := func(name string, v, lo, hi time.Duration) {
		if v < lo || v > hi {
			outside(name, v.String(), lo.String(), hi.String())
		}
	}
	ints("Parallelism", c.Parallelism, 1, maxParallelism)
	ints("CreateConcurrency", c.CreateConcurrency, 1, maxWorkers)
	floats("CreateQPS", c.CreateQPS, 0.001, maxQPS)
	ints("CreateBurst", c.CreateBurst, 1, maxBurst)
	floats("ClientQPS", float64(c.ClientQPS), 0.001, maxQPS)
	ints("ClientBurst", c.ClientBurst, 1, maxBurst)
	ints("ResultWorkers", c.ResultWorkers, 1, maxWorkers)
	durations("RevokeGracePeriod", c.RevokeGracePeriod, time.Second, maxRevokeGracePeriod)
	durations("QueuedTimeout", c.QueuedTimeout, time.Millisecond, maxTimeout)
	durations("ResyncInterval", c.ResyncInterval, minInterval, time.Hour)
	durations("XComTimeout", c.XComTimeout, minInterval, time.Hour)
	durations("SweepInterval", c.SweepInterval, minInterval, maxTimeout)
	durations("GC.Delay", c.GC.Delay, 0, maxTimeout)
	if c.PodStopWait > 0 {
		durations("PodStopWait", c.PodStopWait, 0, maxRevokeGracePeriod)
	}
	ints("MaxUnsavedResults", c.MaxUnsavedResults, 1, maxParallelism)
	durations("StopTimeout", c.StopTimeout, time.Second, time.Hour)
	// Lease timings: zero means fleet.LeaseConfig's default.
	if c.LeaseDuration != 0 {
		durations("LeaseDuration", c.LeaseDuration, time.Second, time.Hour)
		if c.LeaseDuration%time.Second != 0 {
			errs = append(errs, fmt.Errorf("Config.LeaseDuration is %s: it must be a whole number of seconds (a Lease records whole seconds)", c.LeaseDuration))
		}
	}
	if c.RenewDeadline != 0 {
		durations("RenewDeadline", c.RenewDeadline, minRetryPeriod, time.Hour)
	}
	if c.RetryPeriod != 0 {
		durations("RetryPeriod", c.RetryPeriod, minRetryPeriod, time.Hour)
	}
	return errs
}

// allNamespaces reports whether the executor watches every namespace.
func (c Config) allNamespaces() bool { return len(c.Namespaces) == 1 && c.Namespaces[0] == "" }

func generateID() string {
	host, _ := os.Hostname()
	host = kubexec.Slug(host, 40)
	if host == "" {
		host = "kubexec"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}
