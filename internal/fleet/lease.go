package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/kubexec/kubexec"
)

// LeaseConfig configures an executor instance's Lease. The timing fields
// follow client-go's leader election rules: LeaseDuration > RenewDeadline >
// 1.2 × RetryPeriod.
type LeaseConfig struct {
	// ExecutorID is the instance whose liveness the Lease proves. Required.
	ExecutorID string
	// Namespace holds the Leases of all instances that may adopt from each
	// other. Default "default".
	Namespace string
	// Group is the instance's adoption group, carried on its Lease as
	// kubexec.LabelGroup so that sweeps of other deployments leave it
	// alone. Default: none.
	Group string
	// PodNamespaces are the namespaces the instance creates pods in ([""]:
	// all), carried on its Lease as kubexec.AnnotationNamespaces so that
	// the instances of its group know where to look for its pods.
	// Default: none.
	PodNamespaces []string
	// LeaseDuration is how long after its last renewal an instance counts
	// as alive. The Lease stores it in whole seconds
	// (spec.leaseDurationSeconds), so it must be a whole number of
	// seconds, between 1s and 1h: anything else is refused, not rounded.
	// Default 15s.
	LeaseDuration time.Duration
	// RenewDeadline is how long renewals may fail before the holder
	// reports the Lease lost; a renewal in flight may take until then.
	// Between 100ms and 1h, and below LeaseDuration. Default 10s.
	RenewDeadline time.Duration
	// RetryPeriod is the time between renewals. Between 100ms and 1h, and
	// RenewDeadline must be more than 1.2 × RetryPeriod. Default 2s.
	RetryPeriod time.Duration
	// OnLost is called (once per loss) when renewals failed for longer
	// than RenewDeadline: others may now consider this instance dead and
	// adopt its pods. Default: log only.
	OnLost func()
	// OnRegained is called when a renewal succeeds after OnLost was
	// called. Default: log only.
	OnRegained func()
	// OnRenew, when set, is called after each renewal by Run with its
	// error (nil when it succeeded). Default: none.
	OnRenew func(err error)
	// Logger receives the holder's logs. Default: discarded.
	Logger *slog.Logger
}

// Bounds of LeaseConfig's timings. The least RetryPeriod keeps a holder
// from flooding the API server (each renewal is a read and a write); the
// greatest values are far above any use, and keep LeaseDuration's seconds
// well inside the Lease's int32.
const (
	minLeaseDuration = time.Second
	maxLeaseTiming   = time.Hour // LeaseDuration, RenewDeadline, RetryPeriod
	minLeaseTiming   = 100 * time.Millisecond
)

func (c LeaseConfig) withDefaults() LeaseConfig {
	if c.Namespace == "" {
		c.Namespace = metav1.NamespaceDefault
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = 15 * time.Second
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = 10 * time.Second
	}
	if c.RetryPeriod == 0 {
		c.RetryPeriod = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

// validate names every field that is wrong, its value and what to use
// instead. It runs after withDefaults: a zero left means "use the
// default", so it never reaches here.
func (c LeaseConfig) validate() error {
	var errs []error
	if err := kubexec.ValidateExecutorID(c.ExecutorID); err != nil {
		errs = append(errs, fmt.Errorf("LeaseConfig.ExecutorID: %w", err))
	}
	if err := kubexec.ValidateGroup(c.Group); err != nil {
		errs = append(errs, fmt.Errorf("LeaseConfig.Group: %w", err))
	}
	inRange := true
	durations := func(name string, v, lo, hi time.Duration) {
		if v < lo || v > hi {
			inRange = false
			errs = append(errs, fmt.Errorf("LeaseConfig.%s is %s: it must be between %s and %s (0 for the default)", name, v, lo, hi))
		}
	}
	durations("LeaseDuration", c.LeaseDuration, minLeaseDuration, maxLeaseTiming)
	durations("RenewDeadline", c.RenewDeadline, minLeaseTiming, maxLeaseTiming)
	durations("RetryPeriod", c.RetryPeriod, minLeaseTiming, maxLeaseTiming)
	if inRange && c.LeaseDuration%time.Second != 0 {
		inRange = false
		errs = append(errs, fmt.Errorf("LeaseConfig.LeaseDuration is %s: it must be a whole number of seconds, as the Lease stores it (use %s or %s)",
			c.LeaseDuration, c.LeaseDuration.Truncate(time.Second), c.LeaseDuration.Truncate(time.Second)+time.Second))
	}
	// The relations only when every timing is in range: one wrong value
	// is then named once.
	if inRange {
		if c.LeaseDuration <= c.RenewDeadline {
			errs = append(errs, fmt.Errorf("LeaseConfig.LeaseDuration (%s) must be greater than RenewDeadline (%s)", c.LeaseDuration, c.RenewDeadline))
		}
		if float64(c.RenewDeadline) <= 1.2*float64(c.RetryPeriod) {
			errs = append(errs, fmt.Errorf("LeaseConfig.RenewDeadline (%s) must be greater than 1.2 × RetryPeriod (%s)", c.RenewDeadline, c.RetryPeriod))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", kubexec.ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}

// LeaseName returns the name of the Lease of executor id: "kubexec-" and a
// DNS-safe form of the id with a hash of the exact id, so that distinct ids
// never share a Lease.
func LeaseName(id string) string {
	slug := kubexec.Slug(id, 40)
	sum := sha256.Sum256([]byte(id))
	return "kubexec-" + slug + "-" + hex.EncodeToString(sum[:])[:10]
}

// LeaseHolder keeps an executor instance's Lease renewed: it is how other
// instances know it is alive. It is not leader election: every instance
// holds its own Lease.
//
// Its requests never wait behind the client's other traffic: when the
// client's CoordinationV1().RESTClient() is a *rest.RESTClient (a
// clientset made by kubernetes.NewForConfig or NewForConfigAndClient, the
// host's included) they go through that REST client with the holder's own
// rate limiter instead of the client's shared one, which a busy executor
// (or a host's client at client-go's default 5 requests/s) may keep
// saturated for longer than the Lease lasts. Other clients (fakes,
// wrappers) are used as they are.
type LeaseHolder struct {
	leases coordinationv1client.LeaseInterface
	cfg    LeaseConfig
	name   string

	mu        sync.Mutex
	lastRenew time.Time
}

// NewLeaseHolder returns a holder of cfg.ExecutorID's Lease.
func NewLeaseHolder(client kubernetes.Interface, cfg LeaseConfig) (*LeaseHolder, error) {
	if client == nil {
		return nil, errors.New("adoption: client is nil")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &LeaseHolder{
		leases: leaseClient(client, cfg.RetryPeriod).Leases(cfg.Namespace),
		cfg:    cfg,
		name:   LeaseName(cfg.ExecutorID),
	}, nil
}

// leaseClient returns client's coordination/v1 client with its requests
// throttled by a limiter of their own (see LeaseHolder), or the client's
// own when that cannot be done.
func leaseClient(client kubernetes.Interface, retryPeriod time.Duration) coordinationv1client.LeasesGetter {
	typed := client.CoordinationV1()
	rc, ok := typed.RESTClient().(*rest.RESTClient)
	if !ok || rc == nil {
		return typed
	}
	// A renewal is two requests (read, then update or create), one every
	// RetryPeriod; Acquire and Release add a few. The limiter allows twice
	// that, so it never delays a renewal of a holder that works as
	// documented, and still bounds one that does not.
	qps := float32(4 / retryPeriod.Seconds())
	return coordinationv1client.New(throttledClient{RESTClient: rc, limiter: flowcontrol.NewTokenBucketRateLimiter(qps, 6)})
}

// throttledClient is a REST client whose requests use limiter instead of
// the client's shared one (rest.Request.Throttle replaces it).
type throttledClient struct {
	*rest.RESTClient
	limiter flowcontrol.RateLimiter
}

var _ rest.Interface = throttledClient{}

func (c throttledClient) GetRateLimiter() flowcontrol.RateLimiter { return c.limiter }

func (c throttledClient) Verb(verb string) *rest.Request {
	return c.RESTClient.Verb(verb).Throttle(c.limiter)
}

func (c throttledClient) Post() *rest.Request   { return c.Verb("POST") }
func (c throttledClient) Put() *rest.Request    { return c.Verb("PUT") }
func (c throttledClient) Get() *rest.Request    { return c.Verb("GET") }
func (c throttledClient) Delete() *rest.Request { return c.Verb("DELETE") }

func (c throttledClient) Patch(pt types.PatchType) *rest.Request {
	return c.RESTClient.Patch(pt).Throttle(c.limiter)
}

// Duration is how long after its last renewal the holder counts as alive
// (LeaseConfig.LeaseDuration, after defaults).
func (h *LeaseHolder) Duration() time.Duration { return h.cfg.LeaseDuration }

// Acquire creates or renews the Lease once. An instance restarted with the
// same id takes its own Lease back at once.
func (h *LeaseHolder) Acquire(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.RenewDeadline)
	defer cancel()
	if err := h.renew(ctx); err != nil {
		return fmt.Errorf("adoption: acquire Lease %s/%s: %w", h.cfg.Namespace, h.name, err)
	}
	return nil
}

// Run renews the Lease every RetryPeriod until ctx ends. When renewals fail
// for longer than RenewDeadline it calls OnLost, and keeps trying.
func (h *LeaseHolder) Run(ctx context.Context) {
	t := time.NewTicker(h.cfg.RetryPeriod)
	defer t.Stop()
	lost := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A renewal may take until RenewDeadline has passed since the
		// last one (as client-go's leader election allows), at least
		// RetryPeriod: a slow answer is better than a cancelled request
		// and a new one behind it.
		h.mu.Lock()
		timeout := max(h.cfg.RetryPeriod, time.Until(h.lastRenew.Add(h.cfg.RenewDeadline)))
		h.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, timeout)
		err := h.renew(rctx)
		cancel()
		if h.cfg.OnRenew != nil && ctx.Err() == nil {
			h.cfg.OnRenew(err)
		}
		if err == nil {
			if lost {
				lost = false
				h.cfg.Logger.Info("lease renewed again", "lease", h.name)
				if h.cfg.OnRegained != nil {
					h.cfg.OnRegained()
				}
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		h.mu.Lock()
		since := time.Since(h.lastRenew)
		h.mu.Unlock()
		h.cfg.Logger.Warn("lease renewal failed", "lease", h.name, "err", err, "age", since)
		if since > h.cfg.RenewDeadline && !lost {
			lost = true
			h.cfg.Logger.Error("lease lost: other executors may adopt this executor's pods", "lease", h.name)
			if h.cfg.OnLost != nil {
				h.cfg.OnLost()
			}
		}
	}
}

// Release shortens the Lease so others see the instance gone at once (a
// clean shutdown that hands its pods over). Errors are returned, not fatal.
func (h *LeaseHolder) Release(ctx context.Context) error {
	return h.leases.Delete(ctx, h.name, metav1.DeleteOptions{})
}

func (h *LeaseHolder) renew(ctx context.Context) error {
	leases := h.leases
	now := metav1.NewMicroTime(time.Now())
	seconds := int32(h.cfg.LeaseDuration / time.Second) // whole seconds: validate
	id := h.cfg.ExecutorID
	lease, err := leases.Get(ctx, h.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Name:        h.name,
				Labels:      groupLabels(h.cfg.Group),
				Annotations: map[string]string{kubexec.AnnotationNamespaces: strings.Join(h.cfg.PodNamespaces, ",")},
			},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       &id,
				LeaseDurationSeconds: &seconds,
				AcquireTime:          &now,
				RenewTime:            &now,
			},
		}, metav1.CreateOptions{})
	case err == nil:
		lease.Labels = maps.Clone(lease.Labels)
		if lease.Labels == nil {
			lease.Labels = map[string]string{}
		}
		maps.Copy(lease.Labels, groupLabels(h.cfg.Group))
		if h.cfg.Group == "" {
			delete(lease.Labels, kubexec.LabelGroup)
		}
		if lease.Annotations == nil {
			lease.Annotations = map[string]string{}
		}
		lease.Annotations[kubexec.AnnotationNamespaces] = strings.Join(h.cfg.PodNamespaces, ",")
		lease.Spec.HolderIdentity = &id
		lease.Spec.LeaseDurationSeconds = &seconds
		lease.Spec.RenewTime = &now
		if lease.Spec.AcquireTime == nil {
			lease.Spec.AcquireTime = &now
		}
		_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	}
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.lastRenew = time.Now()
	h.mu.Unlock()
	return nil
}

// Liveness tells whether an executor instance is alive. Implementations
// must be safe for concurrent use.
type Liveness interface {
	// Alive reports whether the instance id is alive. An error means
	// "unknown": callers must not adopt on an error.
	Alive(ctx context.Context, id string) (bool, error)
}

// LivenessFunc adapts a function to Liveness.
type LivenessFunc func(ctx context.Context, id string) (bool, error)

// Alive calls f(ctx, id).
func (f LivenessFunc) Alive(ctx context.Context, id string) (bool, error) { return f(ctx, id) }

var (
	_ Liveness = LivenessFunc(nil)
	_ Liveness = (*LeaseLiveness)(nil)
)

// LeaseLiveness decides liveness from the instances' Leases without relying
// on their clocks, as client-go's leader election does: an instance is dead
// when its Lease is missing, is held by another id, or has not changed for
// longer than the Lease's duration by this observer's own clock. Every read
// that finds the Lease changed since this observer's previous read (a new
// resourceVersion or renewTime) counts as a renewal observed now; the
// renewTime's value is never compared with this observer's clock, so a
// holder whose clock is minutes off is judged like any other.
//
// A Lease seen for the first time counts as renewed at that moment: it is
// alive until this observer has seen it unchanged for one full duration.
// So an observer that starts (or first asks about an instance) after that
// instance died waits one Lease duration before it calls it dead, however
// old the Lease's renewTime. A Lease whose duration is missing or not
// positive (written by another tool, or by kubexec versions that truncated
// durations under a second to 0) counts as 15s.
//
// Every instance that may adopt from another must keep its Lease in the
// same namespace: a Lease that is not found counts as dead.
type LeaseLiveness struct {
	client    kubernetes.Interface
	namespace string

	mu       sync.Mutex
	observed map[string]observation
	now      func() time.Time
}

type observation struct {
	version    string    // the Lease's resourceVersion and renewTime as last read
	observedAt time.Time // when this observer first read that version
}

// NewLeaseLiveness returns a Liveness that reads Leases in namespace.
func NewLeaseLiveness(client kubernetes.Interface, namespace string) *LeaseLiveness {
	if namespace == "" {
		namespace = metav1.NamespaceDefault
	}
	return &LeaseLiveness{client: client, namespace: namespace, observed: map[string]observation{}, now: time.Now}
}

// defaultObservedDuration is the duration of a Lease that states none.
const defaultObservedDuration = 15 * time.Second

// Alive implements Liveness.
func (l *LeaseLiveness) Alive(ctx context.Context, id string) (bool, error) {
	lease, err := l.client.CoordinationV1().Leases(l.namespace).Get(ctx, LeaseName(id), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l.forget(id)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != id {
		l.forget(id)
		return false, nil
	}
	version := lease.ResourceVersion + "/"
	if lease.Spec.RenewTime != nil {
		version += lease.Spec.RenewTime.UTC().Format(time.RFC3339Nano)
	}
	duration := defaultObservedDuration
	if s := lease.Spec.LeaseDurationSeconds; s != nil && *s > 0 {
		duration = time.Duration(*s) * time.Second
	}
	return l.observe(id, version, duration), nil
}

// observe records that the Lease of id was read at version, and reports
// whether it is alive: changed since the previous read, or unchanged for at
// most duration since this observer first read that version.
func (l *LeaseLiveness) observe(id, version string, duration time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	obs, ok := l.observed[id]
	if !ok || obs.version != version {
		l.observed[id] = observation{version: version, observedAt: now}
		return true
	}
	return now.Sub(obs.observedAt) <= duration
}

// forget drops what this observer saw of id's Lease, which is gone: a new
// one is a first sighting.
func (l *LeaseLiveness) forget(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.observed, id)
}
