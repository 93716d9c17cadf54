package fleet

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestLeaseLivenessObservedClock: with an injected clock, an observer
// judges a Lease only by when it saw it change: a first sighting is alive,
// an unchanged Lease is alive for exactly one duration of the observer's
// time and dead after it, any change (whatever renewTime it carries) is a
// renewal observed now, and a Lease that went away is a first sighting
// again when it comes back.
func TestLeaseLivenessObservedClock(t *testing.T) {
	t.Parallel()
	const d = 10 * time.Second
	type step struct {
		advance time.Duration // the observer's clock moves on by this first
		version string        // what the observer reads ("" : the Lease is gone)
		want    bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"first sighting is alive", []step{{0, "1", true}}},
		{"unchanged for exactly a duration: alive", []step{{0, "1", true}, {d / 2, "1", true}, {d / 2, "1", true}}},
		{"unchanged for longer than a duration: dead", []step{{0, "1", true}, {d + time.Nanosecond, "1", false}}},
		{"stays dead while unchanged", []step{{0, "1", true}, {d + 1, "1", false}, {time.Hour, "1", false}}},
		{"each change is a renewal seen now", []step{{0, "1", true}, {d - 1, "2", true}, {d - 1, "3", true}, {d - 1, "4", true}, {d, "4", true}, {1, "4", false}}},
		{"a change brings a dead one back", []step{{0, "1", true}, {2 * d, "1", false}, {time.Hour, "2", true}}},
		{"a version seen before but not last is a change", []step{{0, "1", true}, {time.Second, "2", true}, {d, "1", true}, {d + 1, "1", false}}},
		{"gone and back: first sighting", []step{{0, "1", true}, {2 * d, "", false}, {time.Hour, "1", true}, {d, "1", true}, {1, "1", false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			l := NewLeaseLiveness(nil, "")
			l.now = func() time.Time { return clock }
			for i, s := range tt.steps {
				clock = clock.Add(s.advance)
				var got bool
				if s.version == "" {
					l.forget("a")
				} else {
					got = l.observe("a", s.version, d)
				}
				require.Equal(t, s.want, got, "step %d (%+v)", i, s)
			}
		})
	}
}

// TestLeaseLivenessClockSkew: a holder whose clock is five minutes behind,
// or ahead of, the observer's writes Lease renewals carrying its own
// renewTime. While it renews, the observer (reading the real dev cluster,
// with its real clock) finds it alive at every read, however old or new
// the renewTime looks; once it stops, the observer finds it dead, never
// before one Lease duration has passed since the last renewal was written,
// and then within a generous deadline.
func TestLeaseLivenessClockSkew(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "lease-skew", nil)
	client := cluster.Client()
	const (
		seconds  = 4
		duration = seconds * time.Second
	)
	for _, tc := range []struct {
		id   string
		skew time.Duration
	}{
		{"behind-5m", -5 * time.Minute},
		{"ahead-5m", 5 * time.Minute},
	} {
		t.Run(tc.id, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			leases := client.CoordinationV1().Leases(ns)
			name := LeaseName(tc.id)
			// renew writes a renewal as the skewed holder would, and
			// returns when the write began.
			renew := func() time.Time {
				t.Helper()
				began := time.Now()
				renewTime := metav1.NewMicroTime(time.Now().Add(tc.skew))
				lease, err := leases.Get(ctx, name, metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					id, secs := tc.id, int32(seconds)
					_, err = leases.Create(ctx, &coordinationv1.Lease{
						ObjectMeta: metav1.ObjectMeta{Name: name},
						Spec: coordinationv1.LeaseSpec{
							HolderIdentity: &id, LeaseDurationSeconds: &secs,
							AcquireTime: &renewTime, RenewTime: &renewTime,
						},
					}, metav1.CreateOptions{})
					require.NoError(t, err)
					return began
				}
				require.NoError(t, err)
				lease.Spec.RenewTime = &renewTime
				_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
				require.NoError(t, err)
				return began
			}
			observer := NewLeaseLiveness(client, ns) // the real clock
			alive := func() (bool, time.Time, time.Time) {
				t.Helper()
				before := time.Now()
				ok, err := observer.Alive(ctx, tc.id)
				require.NoError(t, err)
				return ok, before, time.Now()
			}

			// Still renewing, for three durations of the observer's time
			// (a comparison of renewTime with the observer's clock would
			// call the holder behind dead at once). A read right after a
			// renewal must find it alive; a read just before the next
			// one must too, unless the machine was so slow that more
			// than a duration passed between the two reads.
			tick := time.NewTicker(duration / 4)
			defer tick.Stop()
			start := time.Now()
			reads := 0
			for time.Since(start) < 3*duration {
				renew()
				ok, firstBefore, _ := alive()
				require.True(t, ok, "read right after a renewal, %s into the test", time.Since(start))
				select {
				case <-tick.C:
				case <-ctx.Done():
					t.Fatal(ctx.Err())
				}
				ok, _, after := alive()
				if after.Sub(firstBefore) <= duration {
					require.True(t, ok, "read %s after the renewal was first seen", after.Sub(firstBefore))
				} else {
					t.Logf("reads %s apart: more than a duration, not checked", after.Sub(firstBefore))
				}
				reads += 2
			}

			// It stops renewing: dead only after a full duration of the
			// observer's time since the last renewal.
			last := renew()
			ok, _, _ := alive()
			require.True(t, ok, "the last renewal")
			deadline := time.Now().Add(3 * time.Minute)
			poll := time.NewTicker(100 * time.Millisecond)
			defer poll.Stop()
			for {
				ok, _, after := alive()
				if !ok {
					require.GreaterOrEqual(t, after.Sub(last), duration, "dead before one duration since the last renewal")
					t.Logf("skew %s: alive over %d reads while renewing; dead %s after the last renewal (duration %s)", tc.skew, reads+2, after.Sub(last).Round(time.Millisecond), duration)
					return
				}
				require.True(t, time.Now().Before(deadline), "still alive %s after the last renewal", time.Since(last))
				select {
				case <-poll.C:
				case <-ctx.Done():
					t.Fatal(ctx.Err())
				}
			}
		})
	}
}
