package executor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/client-go/util/workqueue"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/adoption"
	"github.com/kubexec/kubexec/internal/fleet"
	"github.com/kubexec/kubexec/internal/podwatch"
	"github.com/kubexec/kubexec/internal/provenance"
	"github.com/kubexec/kubexec/podtemplate"
	"github.com/kubexec/kubexec/watch"
)

// Errors callers branch on, with errors.Is.
var (
	// ErrDuplicate: Queue was given a key that is already queued, running
	// or finishing in this executor.
	ErrDuplicate = errors.New("executor: attempt already queued or running")
	// ErrNotStarted: the call needs Start first.
	ErrNotStarted = errors.New("executor: not started: call Start first")
	// ErrStopped: the executor was stopped.
	ErrStopped = errors.New("executor: stopped")
	// ErrUnknownAttempt: Revoke was given a key this executor does not track.
	ErrUnknownAttempt = errors.New("executor: unknown attempt")
)

// AttemptStatus is what an executor knows of one attempt at one moment.
type AttemptStatus struct {
	Key kubexec.TaskKey
	// State is StateQueued (waiting for a slot or for a create retry),
	// StateLaunching (its create is in flight), StatePending (its pod
	// exists, no container has started), StateRunning, or, once the
	// outcome is known and while the result is saved and the pod released,
	// the Result's State.
	State kubexec.State
	// Namespace and PodName name the attempt's pod (PodName is empty
	// before a create was sent); Node is where it was scheduled.
	Namespace, PodName, Node string
	// Message says what the attempt waits for (a pending pod's reason, the
	// last refused create), or, once it ended, the Result's message.
	Message string
	// Result is the outcome once known, else nil.
	Result *kubexec.Result
	// Saved: Result is in the StateStore (StateStore.SaveResult returned
	// nil); what is left is the release of the pod.
	Saved bool
	// QueuedAt is when Queue accepted the attempt (when the executor
	// first saw its pod, for pods picked up from an earlier run).
	QueuedAt time.Time
}

// Stats are an executor's counts at one moment.
type Stats struct {
	// OpenSlots is Parallelism minus Running.
	OpenSlots int
	// Queued attempts wait for a slot or for a create retry.
	Queued int
	// Running attempts are launching or launched and have no result yet.
	Running int
	// Finishing attempts have a result that is being saved or whose pod is
	// being released.
	Finishing int
	// LeaseLost: the executor's Lease could not be renewed within
	// Config.RenewDeadline, so other instances may take this one for dead;
	// no pod is created until a renewal succeeds.
	LeaseLost bool
	// Unsaved counts the results waiting for StateStore.SaveResult (part
	// of Finishing).
	Unsaved int
	// SavesBacklogged: Unsaved reached Config.MaxUnsavedResults, so no
	// new attempt is launched until saves catch up (backpressure).
	SavesBacklogged bool
}

// Executor runs task attempts as pods. A scheduler drives it: Queue what
// should run (it launches at once while a slot is open), and read results
// from its StateStore, or wait for them with Wait and Subscribe. Results
// are saved by the executor's own goroutines as pod events arrive, so their
// latency does not depend on any tick of the host's. Hosts declare the
// interface of the methods they use.
//
// All methods are safe for concurrent use.
type Executor struct {
	cfg     Config
	client  kubernetes.Interface
	store   StateStore
	builder podtemplate.Builder
	log     *slog.Logger

	lease    *fleet.LeaseHolder
	liveness adoption.Liveness
	sweeper  *fleet.Sweeper

	createLimiter flowcontrol.RateLimiter
	results       workqueue.TypedRateLimitingInterface[kubexec.TaskKey] // attempts to save
	releases      workqueue.TypedRateLimitingInterface[kubexec.TaskKey] // saved attempts whose pods to release
	watcher       *podwatch.Watcher
	// provenance marks the pods the executor creates and verifies the
	// pods it did not create in this process (nil: Config.DisableProvenance);
	// policy is Config.Policy with the executor's own ServiceAccount. Both
	// are set by Start before any pod is built or observed.
	provenance *provenance.Marker
	policy     podtemplate.Policy
	// foreign remembers the foreign pods reported (by UID and reason),
	// under foreignMu, so that each is logged once.
	foreignMu sync.Mutex
	foreign   map[string]bool

	// Lock order: reportMu, then mu, then the watch's store (podLocked
	// reads it under mu; the watch never calls the executor with its
	// store locked). No host code runs under mu: Metrics and Logger calls
	// made while it is held are recorded (later) and made by unlock, which
	// every unlock of mu goes through; StateStore, XCom and LogArchiver
	// calls are made by the workers with mu released.
	//
	// Each attempt has one owner at a time: the goroutine of its stage's
	// step (see stage). Other goroutines (the watch, Revoke, resync) only
	// record what they learnt under mu and hand the attempt to its owner.

	// mu guards every field below it.
	mu       sync.Mutex
	attempts map[kubexec.TaskKey]*attempt
	// tally counts the attempts in e.attempts by what Stats reports of
	// them, kept as they are added, moved and removed, so that Stats costs
	// the same with 10 attempts tracked as with 100,000.
	tally slotTally
	// released holds the pods released after their results were saved,
	// until the watch reports them gone, so that an event from before the
	// release, delivered after it, does not make the pod look new.
	released   map[types.UID]time.Time
	queue      []kubexec.TaskKey // FIFO of queued attempts (may hold stale keys)
	nsBackoff  map[string]backoffState
	pauseUntil time.Time // 429: no create before this
	starting   bool      // a Start is in progress
	started    bool
	stopped    bool
	// leaseLost: the Lease could not be renewed for RenewDeadline; no
	// create is sent until a renewal succeeds.
	leaseLost bool
	// backlogged: launching is paused because Config.MaxUnsavedResults
	// results wait to be saved (as last reported).
	backlogged bool
	// ready is the FIFO of attempts handed to the launch workers (stage
	// launching, create not yet sent); readyCond wakes the workers.
	ready     []kubexec.TaskKey
	readyCond *sync.Cond
	// after holds the host calls to make once mu is released (unlock).
	after []func()
	// subs are the subscribers of attempts (Subscribe); changed, the
	// attempts whose subscribers are told when mu is released.
	subs    map[kubexec.TaskKey][]*subscriber
	changed []*attempt
	// progress, when Stop waits for results, is signalled each time an
	// attempt's result is saved or its pod released.
	progress chan struct{}
	// slotSeq numbers the slot counts reported to Metrics.
	slotSeq uint64

	// reportMu orders the slot reports: slotReported is the newest
	// reported.
	reportMu     sync.Mutex
	slotReported uint64

	// wake wakes the launcher (capacity 1: wakes coalesce).
	wake chan struct{}

	ctx      context.Context // the executor's lifetime
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	launchWG sync.WaitGroup
}

// New returns an executor that talks to the cluster of restConfig and saves
// results to store. restConfig's QPS and Burst are set from
// Config.ClientQPS/ClientBurst when zero (never left to client-go's silent
// default). Unless restConfig sets ContentType or AcceptContentTypes, the
// executor's requests and watches use protobuf, as the Kubernetes
// components do: the API server encodes each pod once for all of them, and
// decoding costs the executor less than JSON. A host that already has a clientset uses NewForClient.
func New(restConfig *rest.Config, store StateStore, cfg Config) (*Executor, error) {
	if restConfig == nil {
		return nil, errors.New("executor: restConfig is nil: pass the *rest.Config of the cluster (clientcmd.BuildConfigFromFlags or rest.InClusterConfig)")
	}
	// The Config is checked before client-go sees it, so that its errors
	// name the Config field (client-go's own name rest.Config's).
	if err := cfg.withDefaults().validate(); err != nil {
		return nil, err
	}
	rc := rest.CopyConfig(restConfig)
	if rc.QPS == 0 {
		rc.QPS = cmp.Or(cfg.ClientQPS, defaultClientQPS)
	}
	if rc.Burst == 0 {
		rc.Burst = cmp.Or(cfg.ClientBurst, defaultClientBurst)
	}
	if rc.ContentType == "" && rc.AcceptContentTypes == "" {
		rc.ContentType = runtime.ContentTypeProtobuf
		rc.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("executor: client: %w", err)
	}
	return NewForClient(client, store, cfg)
}

// NewForClient returns an executor that uses the host's client, with its
// own rate limiter (Config.ClientQPS and ClientBurst do not apply to it;
// pod creates are still paced by Config.CreateQPS and CreateBurst, which
// kubexec owns). The client must talk to a real API server: the executor
// relies on resourceVersions, finalizers and field selectors.
func NewForClient(client kubernetes.Interface, store StateStore, cfg Config) (*Executor, error) {
	if client == nil {
		return nil, errors.New("executor: client is nil: pass a kubernetes.Interface (kubernetes.NewForConfig), or use New with a *rest.Config")
	}
	if store == nil {
		return nil, errors.New("executor: store is nil: pass a StateStore (executor.NewMemoryStore() for tests)")
	}
	if cfg.ExecutorID == "" {
		cfg.DeleteLeaseOnStop = true // a random id: nothing can resume it
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var err error
	builder := cfg.Builder
	if builder == nil {
		builder, err = podtemplate.New(podtemplate.DefaultTemplate(), podtemplate.Config{Namespace: cfg.Namespace})
		if err != nil {
			return nil, err
		}
	}
	e := &Executor{}
	lease, err := fleet.NewLeaseHolder(client, fleet.LeaseConfig{
		ExecutorID:    cfg.ExecutorID,
		Namespace:     cfg.LeaseNamespace,
		Group:         cfg.AdoptionGroup,
		PodNamespaces: cfg.Namespaces,
		LeaseDuration: cfg.LeaseDuration,
		RenewDeadline: cfg.RenewDeadline,
		RetryPeriod:   cfg.RetryPeriod,
		OnLost:        func() { e.setLeaseLost(true) },
		OnRegained:    func() { e.setLeaseLost(false) },
		OnRenew:       func(err error) { cfg.Metrics.ObserveLeaseRenewal(err) },
		Logger:        cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: Config lease timing: %s", kubexec.ErrInvalidConfig, innerConfigError(err))
	}
	liveness := cfg.Liveness
	if liveness == nil {
		liveness = adoption.NewLeaseLiveness(client, cfg.LeaseNamespace)
	}
	sweeper, err := fleet.NewSweeper(client, liveness, fleet.SweepConfig{
		ExecutorID:      cfg.ExecutorID,
		Group:           cfg.AdoptionGroup,
		Namespaces:      cfg.Namespaces,
		LeaseNamespace:  cfg.LeaseNamespace,
		ExpiredLeaseAge: expiredLeaseDurations * lease.Duration(),
		Settle:          func(pod *corev1.Pod) (bool, error) { return e.settleAdopted(pod) },
		Verify: func(pod *corev1.Pod) error {
			key, err := kubexec.KeyFromObject(pod)
			if err != nil {
				return err
			}
			reason, err := e.genuine(pod, key, "")
			if err != nil {
				e.reportForeign(pod, reason, err)
			}
			return err
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %s", kubexec.ErrInvalidConfig, innerConfigError(err))
	}
	*e = Executor{
		lease:         lease,
		liveness:      liveness,
		sweeper:       sweeper,
		cfg:           cfg,
		client:        client,
		store:         store,
		builder:       builder,
		log:           cfg.Logger.With("executor", cfg.ExecutorID),
		createLimiter: flowcontrol.NewTokenBucketRateLimiter(float32(cfg.CreateQPS), cfg.CreateBurst),
		results: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[kubexec.TaskKey](100*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[kubexec.TaskKey]{Name: "kubexec-results"}),
		releases: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[kubexec.TaskKey](100*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[kubexec.TaskKey]{Name: "kubexec-releases"}),
		attempts:  map[kubexec.TaskKey]*attempt{},
		released:  map[types.UID]time.Time{},
		nsBackoff: map[string]backoffState{},
		foreign:   map[string]bool{},
	}
	e.readyCond = sync.NewCond(lockerFunc{e})
	e.wake = make(chan struct{}, 1)
	e.ctx, e.cancel = context.WithCancel(context.Background())
	return e, nil
}

// innerConfigError is the message of err, an invalid config error of one
// of the executor's parts, without the ErrInvalidConfig prefix the
// executor's own error gives.
func innerConfigError(err error) string {
	return strings.TrimPrefix(err.Error(), kubexec.ErrInvalidConfig.Error()+": ")
}

// ID returns the executor's id.
func (e *Executor) ID() string { return e.cfg.ExecutorID }

// Start checks the executor's permissions, starts watching its pods and
// picks up the pods it owns from an earlier run with the same
// ExecutorID. It returns once the watch has synced.
//
// A Start that fails leaves nothing behind: no
// goroutine, no watch, and no Lease (it is deleted again if Start took
// it); Start may then be called again.
func (e *Executor) Start(ctx context.Context) error {
	e.mu.Lock()
	switch {
	case e.stopped:
		e.unlock()
		return ErrStopped
	case e.started:
		e.unlock()
		return errors.New("executor: already started")
	case e.starting:
		e.unlock()
		return errors.New("executor: Start is already running in another goroutine")
	}
	e.starting = true
	e.unlock()
	err := e.start(ctx)
	e.mu.Lock()
	e.starting = false
	e.started = err == nil
	e.unlock()
	return err
}

// start does Start's work and undoes it if it fails.
func (e *Executor) start(ctx context.Context) error {
	if err := e.checkPermissions(ctx); err != nil {
		return err
	}
	if err := e.setupTrust(ctx); err != nil {
		return err
	}
	if err := e.lease.Acquire(ctx); err != nil {
		return fmt.Errorf("executor: %w", err)
	}
	// Events of the watch's first list are held back until it has synced,
	// so that a Start that fails half-way has changed nothing.
	gate := &eventGate{}
	w, err := e.newWatcher(gate)
	if err != nil {
		e.releaseLease()
		return fmt.Errorf("executor: %w", err)
	}
	wctx, wcancel := context.WithCancel(e.ctx)
	watchDone := make(chan struct{})
	e.goRun(func() {
		defer close(watchDone)
		if err := w.Run(wctx); err != nil && wctx.Err() == nil {
			e.log.Error("pod watch ended", "err", err)
		}
	})
	rollback := func() {
		wcancel()
		<-watchDone
		e.releaseLease()
	}
	if err := w.WaitForSync(ctx); err != nil {
		rollback()
		return fmt.Errorf("executor: waiting for the pod watch to sync: %w", err)
	}
	e.mu.Lock()
	if e.stopped {
		e.unlock()
		rollback()
		return ErrStopped
	}
	e.watcher = w
	e.unlock()
	gate.open()

	// Workers start under the lock, so that a Stop that ran meanwhile is
	// seen and a Stop that comes later waits for them.
	e.mu.Lock()
	defer e.unlock()
	if e.stopped {
		return ErrStopped
	}
	for range e.cfg.ResultWorkers {
		e.goRun(func() { e.worker(e.results, "saving a result", e.resultStep) })
		e.goRun(func() { e.worker(e.releases, "releasing a pod", e.releaseStep) })
	}
	for range e.cfg.CreateConcurrency {
		e.launchWG.Add(1)
		go func() {
			defer e.launchWG.Done()
			e.launchWorker()
		}()
	}
	e.goRun(e.resyncLoop)
	e.goRun(e.launcher)
	e.goRun(func() { e.lease.Run(e.ctx) })
	e.goRun(func() {
		e.sweeper.Run(e.ctx, e.cfg.SweepInterval, e.sweptReport)
	})
	e.logLocked(slog.LevelInfo, "executor started", "namespaces", e.cfg.Namespaces)
	return nil
}

// newWatcher returns the watch of the executor's pods, delivering through
// gate.
func (e *Executor) newWatcher(gate *eventGate) (*podwatch.Watcher, error) {
	namespaces := e.cfg.Namespaces
	if e.cfg.allNamespaces() {
		namespaces = nil
	}
	return podwatch.New(e.client, podwatch.Config{
		ExecutorID: e.cfg.ExecutorID,
		Namespaces: namespaces,
		Logger:     e.cfg.Logger,
		OnRestart:  e.cfg.Metrics.ObserveWatchRestart,
	}, podwatch.HandlerFuncs{
		AddFunc:    func(pod *corev1.Pod) { gate.do(func() { e.observe(pod) }) },
		UpdateFunc: func(_, pod *corev1.Pod) { gate.do(func() { e.observe(pod) }) },
		DeleteFunc: func(pod *corev1.Pod, gone bool) { gate.do(func() { e.observeDeleted(pod, gone) }) },
	})
}

// releaseLease deletes the instance's Lease (after a failed Start, or at a
// Stop with Config.DeleteLeaseOnStop), so that the instance does not look
// alive while nothing runs. An error only delays that until the Lease
// expires.
func (e *Executor) releaseLease() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.lease.Release(ctx); err != nil && !apierrors.IsNotFound(err) {
		e.log.Warn("could not delete the executor's Lease; it expires by itself", "err", err)
	}
}

// eventGate holds back the watch's events until open is called, then
// delivers them in order, and every later one at once. The watch delivers
// events from one goroutine at a time.
type eventGate struct {
	mu      sync.Mutex
	isOpen  bool
	pending []func()
}

func (g *eventGate) do(f func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.isOpen {
		g.pending = append(g.pending, f)
		return
	}
	f()
}

func (g *eventGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, f := range g.pending {
		f()
	}
	g.pending, g.isOpen = nil, true
}

// sweptReport logs and measures one adoption sweep.
func (e *Executor) sweptReport(st fleet.SweepStats, err error) {
	if err != nil {
		e.log.Warn("adoption sweep", "err", err)
	}
	if st.Adopted > 0 {
		e.log.Info("adoption sweep took over pods of dead instances", "pods", st.Adopted, "settled", st.Settled, "owners", st.DeadOwners)
	}
	e.cfg.Metrics.ObserveSweep(st.Adopted, err)
}

// setLeaseLost pauses launching while the Lease cannot be renewed (other
// instances may take this one for dead and adopt its pods), and resumes it
// once a renewal succeeds.
func (e *Executor) setLeaseLost(lost bool) {
	e.mu.Lock()
	changed := e.leaseLost != lost
	e.leaseLost = lost
	e.unlock()
	if changed {
		e.cfg.Metrics.SetLeaseLost(lost)
		if !lost {
			e.wakeLauncher()
		}
	}
	switch {
	case changed && lost:
		e.log.Warn("the executor's Lease could not be renewed: launches are paused until a renewal succeeds (other instances may adopt this one's pods meanwhile)")
	case changed:
		e.log.Info("the executor's Lease was renewed again: launches resume")
	}
}

func (e *Executor) goRun(f func()) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
}

// Stop stops launching, finishes in-flight creates, saves the results
// it can until ctx ends (at most Config.StopTimeout when ctx has no
// earlier deadline), and stops every goroutine. Its error says what it
// left: results not saved, goroutines blocked in a host call that
// ignores its context. Pods keep running; a restart with the same id
// or another instance's Adopt takes them over. Stop is idempotent and
// may be called before Start.
func (e *Executor) Stop(ctx context.Context) error {
	e.mu.Lock()
	if e.stopped {
		e.unlock()
		return nil
	}
	e.stopped = true
	started := e.started
	// Attempts handed to the launch workers whose create was not sent yet
	// stay queued (those revoked meanwhile finish); the workers finish the
	// creates in flight and exit.
	for _, key := range e.ready {
		a, ok := e.attempts[key]
		switch {
		case !ok:
		case a.stage == stageLaunching:
			e.moveLocked(a, stageQueued)
		case a.stage == stageCancelling:
			e.createEndedLocked(a) // its create is never sent
		}
	}
	e.ready = nil
	e.readyCond.Broadcast()
	e.progress = make(chan struct{}, 1)
	e.closeSubscribersLocked()
	e.unlock()
	if !started {
		e.cancel()
		e.results.ShutDown()
		e.releases.ShutDown()
		return nil
	}
	// Stop is bounded by ctx and, when ctx has no earlier deadline, by
	// Config.StopTimeout: a host's deferred Stop(context.Background())
	// never hangs on a pod that does not stop or a store that fails.
	bound, cancelBound := context.WithTimeout(ctx, e.cfg.StopTimeout)
	defer cancelBound()
	// In-flight creates finish (what they created is tracked), unless the
	// bound ends first: then they are cancelled.
	launched := make(chan struct{})
	go func() { e.launchWG.Wait(); close(launched) }()
	select {
	case <-launched:
	case <-bound.Done():
		e.cancel()
		<-launched
	}
	// Save what can be saved while the bound allows.
	var errs []error
	for e.pendingResults() > 0 && bound.Err() == nil {
		select {
		case <-bound.Done():
		case <-e.progress:
		}
	}
	if n := e.pendingResults(); n > 0 {
		errs = append(errs, fmt.Errorf("%d results not yet saved (their pods keep the tracking finalizer; a restart with the same ExecutorID saves them)", n))
	}
	e.cancel()
	e.results.ShutDown()
	e.releases.ShutDown()
	// The goroutines end once their current call returns; a host call that
	// ignores its context (SaveResult, a LogArchiver, an XCom collector)
	// may not, and is left behind rather than waited for.
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-bound.Done():
		select {
		case <-done:
		case <-time.After(time.Second): // the cancelled goroutines' last calls
			errs = append(errs, errors.New("goroutines still running: a StateStore, LogArchiver or XCom call did not return after its context ended"))
		}
	}
	if e.cfg.DeleteLeaseOnStop {
		e.releaseLease()
	}
	lease := "kept"
	if e.cfg.DeleteLeaseOnStop {
		lease = "deleted"
	}
	if len(errs) > 0 {
		e.log.Warn("executor stopped before it finished", "lease", lease, "left", errors.Join(errs...))
		err := fmt.Errorf("executor: stopped, leaving: %w", errors.Join(errs...))
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		} else if bound.Err() != nil {
			err = fmt.Errorf("%w (Config.StopTimeout %s passed)", err, e.cfg.StopTimeout)
		}
		return err
	}
	e.log.Info("executor stopped", "lease", lease)
	return nil
}

// expiredLeaseDurations is how many Lease durations a Lease must have gone
// unrenewed before the sweeps delete it.
const expiredLeaseDurations = 10

// pendingResults counts attempts whose result is known but not yet saved
// and released.
func (e *Executor) pendingResults() int {
	e.mu.Lock()
	defer e.unlock()
	n := 0
	for _, a := range e.attempts {
		if a.unsaved() {
			n++
		}
	}
	return n
}

// Queue accepts an attempt. It never blocks on the API server. It
// returns ErrDuplicate for a key already queued or running, and the
// key's validation error for an invalid key.
func (e *Executor) Queue(spec podtemplate.TaskSpec) error {
	if err := spec.Key.Validate(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.unlock()
	if e.stopped {
		return ErrStopped
	}
	if _, ok := e.attempts[spec.Key]; ok {
		return fmt.Errorf("%w: %s", ErrDuplicate, spec.Key)
	}
	ns := spec.Namespace
	if ns == "" {
		ns = e.cfg.Namespace
	}
	e.trackLocked(&attempt{key: spec.Key, launch: &launchState{spec: spec}, stage: stageQueued, queuedAt: time.Now(), namespace: ns})
	e.queue = append(e.queue, spec.Key)
	e.reportSlotsLocked()
	return nil
}

// Heartbeat is one scheduler tick, for hosts that tick: it starts
// launching queued attempts up to the open slots (the creates run in the
// background, paced by the create rate limit), then calls Sync. A host
// need not call it: Queue and every freed slot start launches too.
func (e *Executor) Heartbeat() error {
	if err := e.checkRunning(); err != nil {
		return err
	}
	e.launchReady()
	return e.Sync()
}

// Sync applies time-based outcomes now (queued and pending timeouts)
// and hands known results to the result workers now; a save that
// failed still waits for its backoff.
func (e *Executor) Sync() error {
	if err := e.checkRunning(); err != nil {
		return err
	}
	e.resync(true)
	return nil
}

func (e *Executor) checkRunning() error {
	e.mu.Lock()
	defer e.unlock()
	switch {
	case e.stopped:
		return ErrStopped
	case !e.started:
		return ErrNotStarted
	}
	return nil
}

// Attempt returns what the executor knows of key's attempt, and false
// when it does not track it (never queued here, or done: its result
// saved and its pod released).
func (e *Executor) Attempt(key kubexec.TaskKey) (AttemptStatus, bool) {
	e.mu.Lock()
	defer e.unlock()
	a, ok := e.attempts[key]
	if !ok {
		return AttemptStatus{}, false
	}
	return e.statusLocked(a)
}

// statusLocked returns what is known of a, and false once a is no longer
// tracked.
func (e *Executor) statusLocked(a *attempt) (AttemptStatus, bool) {
	st := AttemptStatus{Key: a.key, Namespace: a.namespace, PodName: a.podName, QueuedAt: a.queuedAt}
	pod := e.podLocked(a)
	if pod != nil {
		st.Node = pod.Spec.NodeName
	}
	switch {
	case a.result != nil && (a.stage.hasResult() || a.stage == stageDone):
		r := *a.result
		st.State, st.Message, st.Result = r.State, r.Message, &r
		st.Saved = a.stage >= stageReleasing
	case a.stage == stageQueued:
		st.State, st.Message = kubexec.StateQueued, a.refusal()
	case a.stage == stageLaunching || pod == nil:
		st.State = kubexec.StateLaunching
	default:
		obs := a.obs // read only: a copy
		c := watch.ClassifyObserved(pod, time.Now(), e.cfg.Classify, &obs)
		st.State, st.Message = kubexec.StateRunning, c.Message
		if c.Phase == watch.PhasePending {
			st.State = kubexec.StatePending
		}
	}
	return st, e.attempts[a.key] == a && a.stage != stageDone
}

// Stats returns the current counts.
func (e *Executor) Stats() Stats {
	e.mu.Lock()
	defer e.unlock()
	return e.statsLocked()
}

func (e *Executor) statsLocked() Stats {
	s := Stats{Finishing: e.tally.finishing, Running: e.tally.running, Queued: e.tally.queued}
	s.OpenSlots = max(0, e.cfg.Parallelism-s.Running)
	s.LeaseLost = e.leaseLost
	s.Unsaved = e.tally.unsaved
	s.SavesBacklogged = e.tally.unsaved >= e.cfg.MaxUnsavedResults
	return s
}

// Revoke cancels an attempt: a queued one is dropped, a launched one's
// pod is deleted with Config.RevokeGracePeriod. Either way its result
// is Revoked. It returns ErrUnknownAttempt for a key not tracked.
func (e *Executor) Revoke(key kubexec.TaskKey) error {
	e.mu.Lock()
	defer e.unlock()
	if e.stopped {
		return ErrStopped
	}
	a, ok := e.attempts[key]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownAttempt, key)
	}
	if a.stage.hasResult() {
		return nil // already ending
	}
	grace := int64(e.cfg.RevokeGracePeriod / time.Second)
	a.grace = &grace
	r := e.newResultLocked(a, kubexec.ReasonRevoked, "the host revoked the attempt")
	switch a.stage {
	case stageQueued:
		e.unlaunchedLocked(a)
		e.endLocked(a, r, a.settledStage())
	case stageLaunching:
		// The create in flight may make a pod: it is released once the
		// create returns.
		a.podMayRun = true
		e.endLocked(a, r, stageCancelling)
	default:
		// The result waits for the pod to stop: keep the state it is
		// known in (the watch's), which the next events replace.
		a.lastPod = e.podLocked(a)
		a.podMayRun = true
		e.endLocked(a, r, a.settledStage())
	}
	return nil
}

// newResultLocked returns a result for a with what is known of its pod.
func (e *Executor) newResultLocked(a *attempt, reason kubexec.Reason, msg string) kubexec.Result {
	r := kubexec.Result{
		Key:        a.key,
		State:      reason.State(),
		Reason:     reason,
		Message:    msg,
		PodName:    a.podName,
		Namespace:  a.namespace,
		FinishedAt: time.Now(),
	}
	if pod := e.podLocked(a); pod != nil {
		r.Node = pod.Spec.NodeName
	}
	return r
}

// podLocked returns the last known state of a's pod, or nil if none is
// known. An attempt keeps its own copy (lastPod) only where its stage reads
// one: once its outcome is known, while it is verified, while an XCom
// value is collected, or before the watch has seen a pod just created.
// While the pod runs, the watch's state is the one: the watch holds each
// pod once, compactly, and a second copy per attempt would double the
// memory of every running attempt.
func (e *Executor) podLocked(a *attempt) *corev1.Pod {
	if a.lastPod != nil {
		return a.lastPod
	}
	if e.watcher == nil || !a.hasPod() {
		return nil
	}
	if pod, ok := e.watcher.Get(a.namespace, a.podName); ok && (a.podUID == "" || pod.UID == a.podUID) {
		return pod
	}
	return nil
}

// endLocked records the outcome of a and moves it to stage to (see
// attempt.settledStage): stopping or finishing hand it to the result
// workers; cancelling waits for its create to return.
func (e *Executor) endLocked(a *attempt, r kubexec.Result, to stage) {
	if !e.moveLocked(a, to) {
		return
	}
	a.result = &r
	a.resultAt = time.Now()
	if to != stageCancelling {
		e.results.Add(a.key)
	}
	e.reportSlotsLocked()
}

// createEndedLocked hands on an attempt that was revoked during its create,
// once that create has returned without a pod or will never be sent.
func (e *Executor) createEndedLocked(a *attempt) {
	e.unlaunchedLocked(a)
	if e.moveLocked(a, a.settledStage()) {
		e.results.Add(a.key)
	}
	e.reportSlotsLocked()
}

// illegalTransition receives the error of each refused stage move; the
// package's tests make it panic.
var illegalTransition = func(error) {}

// moveLocked moves a to stage to and reports whether it did. A move that
// breaks the attempt's rules (attempt.moveTo) is refused and logged, and
// the attempt, unless its outcome is known already, ends with
// ReasonExecutorError (its pod deleted first if it may still run), so that
// it frees its slot instead of staying stranded.
func (e *Executor) moveLocked(a *attempt, to stage) bool {
	from := a.stage
	if err := a.moveTo(to); err != nil {
		e.logLocked(slog.LevelError, "refused an attempt's stage change", "task", a.key, "err", err)
		illegalTransition(err)
		e.failBrokenLocked(a, err)
		return false
	}
	e.movedLocked(a, from, to)
	return true
}

// failBrokenLocked ends a, whose record broke its rules, with
// ReasonExecutorError, when its outcome is not known yet and no create is
// in flight (that one ends it once the create returns).
func (e *Executor) failBrokenLocked(a *attempt, why error) {
	if a.stage.hasResult() || a.stage == stageDone || a.creating() {
		return
	}
	a.podMayRun = a.hasPod()
	a.stop = stopProgress{}
	r := e.newResultLocked(a, kubexec.ReasonExecutorError, "kubexec ended the attempt: "+why.Error())
	to := a.settledStage()
	from := a.stage
	a.stage = to // the move that the broken record makes unsafe to check
	e.movedLocked(a, from, to)
	a.result = &r
	a.resultAt = time.Now()
	e.results.Add(a.key)
	e.reportSlotsLocked()
}

// movedLocked accounts for a's move from one stage to another.
func (e *Executor) movedLocked(a *attempt, from, to stage) {
	if e.attempts[a.key] == a {
		e.tally.add(from, -1)
		e.tally.add(to, 1)
	}
	e.changedLocked(a)
	if from.running() || from == stageFinishing {
		e.wakeLauncher() // a slot opened, or a save made room
	}
	if to == stageReleasing || to == stageDone {
		e.progressLocked()
	}
}

// progressLocked tells a Stop that waits for results that one was saved or
// released.
func (e *Executor) progressLocked() {
	if e.progress != nil {
		select {
		case e.progress <- struct{}{}:
		default:
		}
	}
}

// trackLocked adds a to the tracked attempts, in place of any other
// attempt of its key.
func (e *Executor) trackLocked(a *attempt) {
	if old, ok := e.attempts[a.key]; ok {
		e.tally.add(old.stage, -1)
	}
	e.attempts[a.key] = a
	e.tally.add(a.stage, 1)
}

// untrackLocked removes a from the tracked attempts, if it is the one
// tracked for its key.
func (e *Executor) untrackLocked(a *attempt) {
	if e.attempts[a.key] == a {
		delete(e.attempts, a.key)
		e.tally.add(a.stage, -1)
	}
}

// slotTally counts attempts by what Stats reports of them.
type slotTally struct {
	finishing, running, queued int
	unsaved                    int // in stageFinishing: waiting for SaveResult
}

// add counts n more (or, negative, fewer) attempts in stage s.
func (t *slotTally) add(s stage, n int) {
	if s == stageFinishing {
		t.unsaved += n
	}
	switch {
	case s.hasResult():
		t.finishing += n
	case s.running():
		t.running += n
	case s == stageQueued:
		t.queued += n
	}
}
