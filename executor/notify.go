package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/kubexec/kubexec"
)

// This file holds what the executor tells the world outside its lock: the
// host's Metrics and Logger, the subscribers of attempts, and the launcher
// that Queue and every freed slot wake.

// unlock releases e.mu, then makes the host calls recorded while it was
// held (Metrics, Logger), in the order they were recorded. Every unlock of
// e.mu goes through it (readyCond's too), so that no host code runs under
// the lock: a Metrics or a slog.Handler may call back into the executor
// (Stats, Attempt) without deadlocking it.
func (e *Executor) unlock() {
	e.notifyLocked()
	after := e.after
	e.after = nil
	e.mu.Unlock()
	for _, f := range after {
		f()
	}
}

// lockerFunc adapts e.mu and unlock to a sync.Locker, for readyCond.
type lockerFunc struct{ e *Executor }

func (l lockerFunc) Lock()   { l.e.mu.Lock() }
func (l lockerFunc) Unlock() { l.e.unlock() }

// later records a host call to make once e.mu is released. Callers hold
// e.mu.
func (e *Executor) later(f func()) { e.after = append(e.after, f) }

// logLocked logs once e.mu is released. Callers hold e.mu.
func (e *Executor) logLocked(level slog.Level, msg string, args ...any) {
	e.later(func() { e.log.Log(context.Background(), level, msg, args...) })
}

// reportSlotsLocked reports the slots to Metrics once e.mu is released,
// and wakes the launcher: a slot may have opened. Reports made by
// different goroutines reach Metrics in the order of their counts (an
// older count never overwrites a newer one).
func (e *Executor) reportSlotsLocked() {
	e.wakeLauncher()
	s := e.statsLocked()
	e.slotSeq++
	seq := e.slotSeq
	e.later(func() {
		e.reportMu.Lock()
		defer e.reportMu.Unlock()
		if seq <= e.slotReported {
			return
		}
		e.slotReported = seq
		e.cfg.Metrics.SetSlots(s.OpenSlots, s.Queued, s.Running)
	})
}

// wakeLauncher asks the launcher to look at the queue: an attempt was
// queued, a slot opened, a pause ended. Wakes coalesce.
func (e *Executor) wakeLauncher() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// launcher moves queued attempts to the launch workers as soon as they
// can go: when woken (Queue, a freed slot, a Lease regained, saves caught
// up) and when the earliest create retry or namespace backoff is due. It
// is what lets a host that never calls Heartbeat run its attempts.
func (e *Executor) launcher() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-e.ctx.Done():
			timer.Stop()
			return
		case <-e.wake:
		case <-timer.C:
		}
		if next := e.launchReady(); !next.IsZero() {
			timer.Reset(max(time.Until(next), time.Millisecond))
		}
	}
}

// subscriber receives one attempt's status changes; see Subscribe.
type subscriber struct {
	ch   chan AttemptStatus
	last AttemptStatus
	sent bool
}

// changedLocked marks a's status as changed for its subscribers, who are
// told when e.mu is released (the status is read then, complete).
func (e *Executor) changedLocked(a *attempt) {
	if len(e.subs[a.key]) > 0 {
		e.changed = append(e.changed, a)
	}
}

// notifyLocked sends the changed attempts' statuses to their subscribers,
// and closes their channels once the result is saved or the attempt is no
// longer tracked. A subscriber's channel holds the latest status only: a
// slow reader misses intermediate ones, never the last.
func (e *Executor) notifyLocked() {
	if len(e.changed) == 0 {
		return
	}
	for _, a := range e.changed {
		subs := e.subs[a.key]
		if len(subs) == 0 {
			continue
		}
		st, tracked := e.statusLocked(a)
		final := !tracked || st.Saved
		for _, s := range subs {
			if !s.sent || !sameStatus(s.last, st) {
				offer(s.ch, st)
				s.last, s.sent = st, true
			}
			if final {
				close(s.ch)
			}
		}
		if final {
			delete(e.subs, a.key)
		}
	}
	clear(e.changed)
	e.changed = e.changed[:0]
}

// offer puts st in ch, replacing the status still unread there. ch has
// room for one; its senders hold e.mu.
func offer(ch chan AttemptStatus, st AttemptStatus) {
	select {
	case ch <- st:
		return
	default:
	}
	select {
	case <-ch:
	default:
	}
	ch <- st
}

// sameStatus reports whether a subscriber that saw a learns nothing from b.
func sameStatus(a, b AttemptStatus) bool {
	return a.State == b.State && a.Saved == b.Saved && a.PodName == b.PodName &&
		a.Node == b.Node && a.Message == b.Message && (a.Result == nil) == (b.Result == nil)
}

// Subscribe returns a channel that receives key's status each time it
// changes (queued, launching, pending, running on its node, ended with its
// Result, saved), starting with the current one, and a function that ends
// the subscription. The channel holds the latest status only, so a slow
// reader misses intermediate ones but never the last: it is closed after
// the status whose Saved is true (the result is in the StateStore), or
// when the attempt is no longer tracked (adopted by another instance) or
// the executor stops. Subscribe returns ErrUnknownAttempt for a key the
// executor does not track (never queued here, or done: read its result from
// the StateStore).
func (e *Executor) Subscribe(key kubexec.TaskKey) (<-chan AttemptStatus, func(), error) {
	e.mu.Lock()
	defer e.unlock()
	if e.stopped {
		return nil, nil, ErrStopped
	}
	a, ok := e.attempts[key]
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s", ErrUnknownAttempt, key)
	}
	s := &subscriber{ch: make(chan AttemptStatus, 1)}
	if e.subs == nil {
		e.subs = map[kubexec.TaskKey][]*subscriber{}
	}
	e.subs[key] = append(e.subs[key], s)
	e.changed = append(e.changed, a)
	cancel := func() {
		e.mu.Lock()
		defer e.unlock()
		subs := e.subs[key]
		for i, x := range subs {
			if x == s {
				close(s.ch)
				e.subs[key] = append(subs[:i:i], subs[i+1:]...)
				if len(e.subs[key]) == 0 {
					delete(e.subs, key)
				}
				return
			}
		}
	}
	return s.ch, cancel, nil
}

// Wait blocks until key's result is saved in the StateStore and returns
// it, or until ctx ends. It returns ErrUnknownAttempt for a key the
// executor does not track (never queued here, or already done: read its
// result from the StateStore), an error wrapping ErrUnknownAttempt when
// the attempt leaves this executor unsaved (its pod was adopted by
// another instance, which saves it), and ErrStopped when the executor
// stops first (a restart with the same ExecutorID saves the result).
func (e *Executor) Wait(ctx context.Context, key kubexec.TaskKey) (kubexec.Result, error) {
	ch, cancel, err := e.Subscribe(key)
	if err != nil {
		return kubexec.Result{}, err
	}
	defer cancel()
	var last AttemptStatus
	for {
		select {
		case <-ctx.Done():
			return kubexec.Result{}, ctx.Err()
		case st, ok := <-ch:
			if ok {
				last = st
				continue
			}
			switch {
			case last.Saved && last.Result != nil:
				return *last.Result, nil
			case e.isStopped():
				return kubexec.Result{}, ErrStopped
			}
			return kubexec.Result{}, fmt.Errorf("%w: %s left this executor before its result was saved here (another instance took its pod over)", ErrUnknownAttempt, key)
		}
	}
}

// closeSubscribersLocked ends every subscription (Stop).
func (e *Executor) closeSubscribersLocked() {
	for key, subs := range e.subs {
		for _, s := range subs {
			close(s.ch)
		}
		delete(e.subs, key)
	}
	e.changed = e.changed[:0]
}

func (e *Executor) isStopped() bool {
	e.mu.Lock()
	defer e.unlock()
	return e.stopped
}

// Healthy returns nil while the executor does its work: it is started and
// not stopped, its pod watch is live in every namespace, and its Lease is
// held (renewed within RenewDeadline). Otherwise its error says what is
// wrong; a host's readiness probe returns it. Healthy makes no API
// request: it reports what the executor's own requests found, and ctx's
// error if ctx has ended.
func (e *Executor) Healthy(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	stopped, started, lost, w := e.stopped, e.started, e.leaseLost, e.watcher
	e.unlock()
	switch {
	case stopped:
		return ErrStopped
	case !started || w == nil:
		return ErrNotStarted
	}
	var errs []error
	if lost {
		errs = append(errs, fmt.Errorf("executor: its Lease in namespace %s was not renewed within RenewDeadline (%s): launches are paused", e.cfg.LeaseNamespace, e.cfg.RenewDeadline))
	}
	if err := w.Healthy(); err != nil {
		errs = append(errs, fmt.Errorf("executor: %w", err))
	}
	return errors.Join(errs...)
}

// Client returns the Kubernetes client the executor uses (New built it
// from its rest.Config; NewForClient was given it), so that the host's
// XCom collector, log service and status pages need no second one.
func (e *Executor) Client() kubernetes.Interface { return e.client }
