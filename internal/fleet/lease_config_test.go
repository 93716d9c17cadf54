package fleet

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubexec/kubexec"
)

// TestLeaseConfigBounds: the Lease timings are refused, naming the field,
// its value and the allowed range, when out of range or (LeaseDuration)
// not a whole number of seconds, which the Lease could not state; the
// extremes of the ranges are accepted.
func TestLeaseConfigBounds(t *testing.T) {
	t.Parallel()
	const ms = time.Millisecond
	tests := []struct {
		name    string
		cfg     LeaseConfig
		want    []string // substrings of the error; none: valid
		notWant []string
	}{
		{name: "defaults", cfg: LeaseConfig{}},
		{name: "least", cfg: LeaseConfig{LeaseDuration: time.Second, RenewDeadline: 500 * ms, RetryPeriod: 100 * ms}},
		{name: "greatest", cfg: LeaseConfig{LeaseDuration: time.Hour, RenewDeadline: 59 * time.Minute, RetryPeriod: 45 * time.Minute}},
		{
			name:    "duration under a second",
			cfg:     LeaseConfig{LeaseDuration: 500 * ms, RenewDeadline: 300 * ms, RetryPeriod: 100 * ms},
			want:    []string{"LeaseConfig.LeaseDuration is 500ms: it must be between 1s and 1h0m0s (0 for the default)"},
			notWant: []string{"whole number"},
		},
		{
			name:    "duration with a fraction",
			cfg:     LeaseConfig{LeaseDuration: 1500 * ms, RenewDeadline: time.Second, RetryPeriod: 500 * ms},
			want:    []string{"LeaseConfig.LeaseDuration is 1.5s: it must be a whole number of seconds", "use 1s or 2s"},
			notWant: []string{"between"},
		},
		{
			name: "duration with a fraction above the default deadline",
			cfg:  LeaseConfig{LeaseDuration: 15*time.Second + ms},
			want: []string{"LeaseConfig.LeaseDuration is 15.001s: it must be a whole number of seconds", "use 15s or 16s"},
		},
		{
			name: "duration too long",
			cfg:  LeaseConfig{LeaseDuration: 2 * time.Hour},
			want: []string{"LeaseConfig.LeaseDuration is 2h0m0s: it must be between 1s and 1h0m0s"},
		},
		{
			name:    "negative duration",
			cfg:     LeaseConfig{LeaseDuration: -15 * time.Second},
			want:    []string{"LeaseConfig.LeaseDuration is -15s: it must be between 1s and 1h0m0s"},
			notWant: []string{"greater than"},
		},
		{
			name: "retry period too short",
			cfg:  LeaseConfig{RetryPeriod: 50 * ms},
			want: []string{"LeaseConfig.RetryPeriod is 50ms: it must be between 100ms and 1h0m0s"},
		},
		{
			name: "retry period zero after defaults cannot happen, negative can",
			cfg:  LeaseConfig{RetryPeriod: -time.Second},
			want: []string{"LeaseConfig.RetryPeriod is -1s: it must be between 100ms and 1h0m0s"},
		},
		{
			name: "renew deadline too short",
			cfg:  LeaseConfig{RenewDeadline: 99 * ms, RetryPeriod: 100 * ms},
			want: []string{"LeaseConfig.RenewDeadline is 99ms: it must be between 100ms and 1h0m0s"},
		},
		{
			name: "renew deadline too long",
			cfg:  LeaseConfig{LeaseDuration: time.Hour, RenewDeadline: 61 * time.Minute},
			want: []string{"LeaseConfig.RenewDeadline is 1h1m0s: it must be between 100ms and 1h0m0s"},
		},
		{
			name:    "every timing wrong, each named",
			cfg:     LeaseConfig{LeaseDuration: 100 * ms, RenewDeadline: -1, RetryPeriod: 2 * time.Hour},
			want:    []string{"LeaseConfig.LeaseDuration is 100ms", "LeaseConfig.RenewDeadline is -1ns", "LeaseConfig.RetryPeriod is 2h0m0s"},
			notWant: []string{"whole number of seconds", "greater than"},
		},
		{
			name: "in range, relations broken",
			cfg:  LeaseConfig{LeaseDuration: 2 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 2 * time.Second},
			want: []string{"LeaseConfig.LeaseDuration (2s) must be greater than RenewDeadline (2s)", "LeaseConfig.RenewDeadline (2s) must be greater than 1.2 × RetryPeriod (2s)"},
		},
	}
	// NewLeaseHolder validates before it touches the client: this one
	// never connects.
	client, err := kubernetes.NewForConfig(&rest.Config{Host: "https://127.0.0.1:1"})
	require.NoError(t, err)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			cfg.ExecutorID = "a"
			h, err := NewLeaseHolder(client, cfg)
			if len(tt.want) == 0 {
				require.NoError(t, err)
				require.NotNil(t, h)
				return
			}
			require.ErrorIs(t, err, kubexec.ErrInvalidConfig)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
			for _, w := range tt.notWant {
				require.NotContains(t, err.Error(), w)
			}
		})
	}
}
