package adoption

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubexec/kubexec"
)

// ErrInvalidConfig is wrapped by the errors returned for an invalid
// configuration; the error names the field and what to use instead.
var ErrInvalidConfig = errors.New("adoption: invalid config")

// LeaseConfig configures an executor instance's Lease. The timing fields
// follow client-go's leader election rules: LeaseDuration > RenewDeadline >
// 1.2 × RetryPeriod.
type LeaseConfig struct {
	// ExecutorID is the instance whose liveness the Lease proves. Required.
	ExecutorID string
	// Namespace holds the Leases of all instances that may adopt from each
	// other. Default "default".
	Namespace string
	// LeaseDuration is how long after its last renewal an instance counts
	// as alive. Default 15s.
	LeaseDuration time.Duration
	// RenewDeadline is how long renewals may fail before the holder
	// reports the Lease lost. Default 10s.
	RenewDeadline time.Duration
	// RetryPeriod is the time between renewals. Default 2s.
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

func (c LeaseConfig) withDefaults() LeaseConfig {
	if c.Namespace == "" {
		c.Namespace = "default"
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

// validate names the field in its error.
func (c LeaseConfig) validate() error {
	if err := kubexec.ValidateExecutorID(c.ExecutorID); err != nil {
		return fmt.Errorf("%w: LeaseConfig.ExecutorID: %w", ErrInvalidConfig, err)
	}
	if c.LeaseDuration <= c.RenewDeadline {
		return fmt.Errorf("%w: LeaseConfig.LeaseDuration (%s) must be greater than RenewDeadline (%s)", ErrInvalidConfig, c.LeaseDuration, c.RenewDeadline)
	}
	if float64(c.RenewDeadline) <= 1.2*float64(c.RetryPeriod) {
		return fmt.Errorf("%w: LeaseConfig.RenewDeadline (%s) must be greater than 1.2 × RetryPeriod (%s)", ErrInvalidConfig, c.RenewDeadline, c.RetryPeriod)
	}
	if c.RetryPeriod <= 0 {
		return fmt.Errorf("%w: LeaseConfig.RetryPeriod (%s) must be positive", ErrInvalidConfig, c.RetryPeriod)
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
type LeaseHolder struct {
	client kubernetes.Interface
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
	return &LeaseHolder{client: client, cfg: cfg, name: LeaseName(cfg.ExecutorID)}, nil
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
		rctx, cancel := context.WithTimeout(ctx, h.cfg.RetryPeriod)
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
	return h.client.CoordinationV1().Leases(h.cfg.Namespace).Delete(ctx, h.name, metav1.DeleteOptions{})
}

func (h *LeaseHolder) renew(ctx context.Context) error {
	leases := h.client.CoordinationV1().Leases(h.cfg.Namespace)
	now := metav1.NewMicroTime(time.Now())
	seconds := int32(h.cfg.LeaseDuration / time.Second)
	id := h.cfg.ExecutorID
	lease, err := leases.Get(ctx, h.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Name:   h.name,
				Labels: map[string]string{kubexec.LabelManagedBy: kubexec.ManagedByValue},
			},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       &id,
				LeaseDurationSeconds: &seconds,
				AcquireTime:          &now,
				RenewTime:            &now,
			},
		}, metav1.CreateOptions{})
	case err == nil:
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
// on their clocks: an instance is dead when its Lease is missing, or when
// this observer has seen its renewTime unchanged for longer than the
// Lease's duration (as client-go's leader election does). A Lease seen for
// the first time counts as alive until it has gone unrenewed for a full
// duration of this observer's time, unless its renewTime is more than two
// durations old by this observer's clock (a holder whose clock is behind by
// up to one duration is still judged correctly): then it is dead at once,
// so that an instance that crashed long ago is adopted without a wait.
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
	renewTime  time.Time // the Lease's renewTime as last read
	observedAt time.Time // when this observer first read that renewTime
}

// NewLeaseLiveness returns a Liveness that reads Leases in namespace.
func NewLeaseLiveness(client kubernetes.Interface, namespace string) *LeaseLiveness {
	if namespace == "" {
		namespace = "default"
	}
	return &LeaseLiveness{client: client, namespace: namespace, observed: map[string]observation{}, now: time.Now}
}

// Alive implements Liveness.
func (l *LeaseLiveness) Alive(ctx context.Context, id string) (bool, error) {
	lease, err := l.client.CoordinationV1().Leases(l.namespace).Get(ctx, LeaseName(id), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != id {
		return false, nil
	}
	var renew time.Time
	if lease.Spec.RenewTime != nil {
		renew = lease.Spec.RenewTime.Time
	}
	duration := 15 * time.Second
	if lease.Spec.LeaseDurationSeconds != nil {
		duration = time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second
	}
	now := l.now()
	if !renew.IsZero() && now.Sub(renew) > 2*duration {
		// Long expired even if the holder's clock were a whole duration
		// behind this one: dead without waiting to observe it.
		return false, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	obs, ok := l.observed[id]
	if !ok || !obs.renewTime.Equal(renew) {
		l.observed[id] = observation{renewTime: renew, observedAt: now}
		return true, nil
	}
	return now.Sub(obs.observedAt) <= duration, nil
}
