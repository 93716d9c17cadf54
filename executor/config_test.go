package executor

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/apierr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c := Config{}.withDefaults()
	require.NoError(t, c.validate())
	require.NotEmpty(t, c.ExecutorID)
	require.Equal(t, "default", c.Namespace)
	require.Equal(t, []string{"default"}, c.Namespaces)
	require.Equal(t, 32, c.Parallelism)
	require.Equal(t, float64(20), c.CreateQPS)
	require.Equal(t, 30, c.CreateBurst)
	require.Equal(t, float32(50), c.ClientQPS)
	require.Equal(t, 10*time.Minute, c.QueuedTimeout)
	require.Same(t, slog.Default(), c.Logger, "the default logger is slog's default: never silent")
	require.NotEqual(t, Config{}.withDefaults().ExecutorID, c.ExecutorID, "generated ids differ")
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		cfg    Config
		errHas []string
	}{
		{"bad executor id", Config{ExecutorID: "has space"}, []string{"Config.ExecutorID"}},
		{"bad namespace", Config{Namespace: "Not_A_Namespace"}, []string{"Config.Namespace"}},
		{"namespace not watched", Config{Namespace: "a", Namespaces: []string{"b"}}, []string{`Config.Namespace "a" is not in Config.Namespaces`}},
		{"empty namespaces", Config{Namespaces: []string{}}, []string{"Config.Namespaces is empty"}},
		{"negative parallelism", Config{Parallelism: -1}, []string{"Config.Parallelism is -1: it must be between 1 and 1000000"}},
		{"parallelism too large", Config{Parallelism: math.MaxInt}, []string{"Config.Parallelism is 9223372036854775807: it must be between 1 and 1000000"}},
		{"negative qps and delay", Config{CreateQPS: -2, GC: GCPolicy{Delay: -time.Second}}, []string{"Config.CreateQPS is -2", "Config.GC.Delay is -1s: it must be between 0s and 720h0m0s"}},
		{"qps not a number", Config{CreateQPS: math.NaN()}, []string{"Config.CreateQPS is NaN: it must be between 0.001 and 100000"}},
		{"infinite client qps", Config{ClientQPS: float32(math.Inf(1))}, []string{"Config.ClientQPS is +Inf"}},
		{"too many workers", Config{CreateConcurrency: 1 << 20, ResultWorkers: 1 << 20}, []string{"Config.CreateConcurrency is 1048576: it must be between 1 and 1000", "Config.ResultWorkers is 1048576"}},
		{"burst too large", Config{CreateBurst: math.MaxInt, ClientBurst: -3}, []string{"Config.CreateBurst", "Config.ClientBurst is -3"}},
		{"intervals out of range", Config{ResyncInterval: time.Nanosecond, SweepInterval: -time.Second, QueuedTimeout: 1000 * time.Hour, RevokeGracePeriod: time.Millisecond},
			[]string{"Config.ResyncInterval is 1ns: it must be between 10ms and 1h0m0s", "Config.SweepInterval is -1s", "Config.QueuedTimeout is 1000h0m0s", "Config.RevokeGracePeriod is 1ms"}},
		{"lease timing out of range", Config{LeaseDuration: 500 * time.Millisecond, RenewDeadline: 2 * time.Hour, RetryPeriod: time.Nanosecond},
			[]string{"Config.LeaseDuration is 500ms: it must be between 1s and 1h0m0s", "Config.RenewDeadline is 2h0m0s", "Config.RetryPeriod is 1ns: it must be between 100ms and 1h0m0s"}},
		{"lease duration not whole seconds", Config{LeaseDuration: 1500 * time.Millisecond}, []string{"Config.LeaseDuration is 1.5s: it must be a whole number of seconds"}},
		{"bad adoption group", Config{AdoptionGroup: "two words"}, []string{"Config.AdoptionGroup", "invalid adoption group"}},
		{"bad lease namespace", Config{LeaseNamespace: "Not_A_Namespace"}, []string{"Config.LeaseNamespace"}},
		{"backlog and stop bounds", Config{MaxUnsavedResults: -1, StopTimeout: 2 * time.Hour}, []string{"Config.MaxUnsavedResults is -1", "Config.StopTimeout is 2h0m0s"}},
		{"largest values allowed", Config{Parallelism: 1_000_000, CreateConcurrency: 1000, ResultWorkers: 1000, CreateQPS: 100_000, CreateBurst: 100_000}, nil},
		{"all namespaces", Config{Namespaces: []string{""}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.withDefaults().validate()
			if tt.errHas == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, kubexec.ErrInvalidConfig)
			for _, s := range tt.errHas {
				require.Contains(t, err.Error(), s)
			}
		})
	}
}

func TestNewWrapsErrInvalidConfig(t *testing.T) {
	t.Parallel()
	// The Lease timing is checked by package adoption; the error matches
	// both packages' sentinels.
	_, err := New(&rest.Config{Host: "https://127.0.0.1:1"}, NewMemoryStore(), Config{LeaseDuration: time.Second, RenewDeadline: 5 * time.Second})
	require.ErrorIs(t, err, kubexec.ErrInvalidConfig)
	require.ErrorIs(t, err, kubexec.ErrInvalidConfig)
	require.ErrorContains(t, err, "LeaseDuration")
}

// TestNewNamesTheConfigField: a value client-go would refuse is reported
// by New as the Config field it came from, with its range.
func TestNewNamesTheConfigField(t *testing.T) {
	t.Parallel()
	_, err := New(&rest.Config{Host: "https://127.0.0.1:1"}, NewMemoryStore(), Config{ClientBurst: -1})
	require.ErrorIs(t, err, kubexec.ErrInvalidConfig)
	require.ErrorContains(t, err, "Config.ClientBurst is -1: it must be between 1 and 100000")
	_, err = New(&rest.Config{Host: "https://127.0.0.1:1"}, NewMemoryStore(), Config{ClientQPS: -1})
	require.ErrorContains(t, err, "Config.ClientQPS is -1")
}

func TestNewRejectsNilDependencies(t *testing.T) {
	t.Parallel()
	_, err := New(nil, NewMemoryStore(), Config{})
	require.ErrorContains(t, err, "restConfig is nil")
	_, err = New(&rest.Config{Host: "https://127.0.0.1:1"}, nil, Config{})
	require.ErrorContains(t, err, "store is nil")
	_, err = NewForClient(nil, NewMemoryStore(), Config{})
	require.ErrorContains(t, err, "client is nil")
}

func TestCreateErrorClassification(t *testing.T) {
	t.Parallel()
	pods := schema.GroupResource{Resource: "pods"}
	quota := apierrors.NewForbidden(pods, "p", errors.New(`exceeded quota: pods, requested: pods=1, used: pods=3, limited: pods=3`))
	rbac := apierrors.NewForbidden(pods, "p", errors.New(`User "x" cannot create resource "pods"`))
	tests := []struct {
		name             string
		err              error
		quota, transient bool
	}{
		{"quota", quota, true, false},
		{"rbac", rbac, false, false},
		{"invalid", apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, "p", nil), false, false},
		{"bad request", apierrors.NewBadRequest("no"), false, false},
		{"internal", apierrors.NewInternalError(errors.New("etcd")), false, true},
		{"unavailable", apierrors.NewServiceUnavailable("later"), false, true},
		{"server timeout", apierrors.NewServerTimeout(pods, "create", 1), false, true},
		{"conflict", apierrors.NewConflict(pods, "p", errors.New("changed")), false, true},
		{"already exists", apierrors.NewAlreadyExists(pods, "p"), false, false},
		{"connection", fmt.Errorf("dial tcp 127.0.0.1:1: connect: connection refused"), false, true},
		{"generic 503", &apierrors.StatusError{ErrStatus: metav1.Status{Code: http.StatusBadGateway}}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.quota, IsQuotaExceeded(tt.err))
			require.Equal(t, tt.transient, apierr.Transient(tt.err))
		})
	}
}
