package apierr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestTransient(t *testing.T) {
	t.Parallel()
	pods := schema.GroupResource{Resource: "pods"}
	tests := []struct {
		name      string
		err       error
		transient bool
	}{
		{"nil", nil, false},
		{"quota", apierrors.NewForbidden(pods, "p", errors.New("exceeded quota: pods")), false},
		{"invalid", apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, "p", nil), false},
		{"bad request", apierrors.NewBadRequest("no"), false},
		{"not found", apierrors.NewNotFound(pods, "p"), false},
		{"already exists", apierrors.NewAlreadyExists(pods, "p"), false},
		{"conflict", apierrors.NewConflict(pods, "p", errors.New("changed")), true},
		{"too many requests", apierrors.NewTooManyRequests("slow down", 2), true},
		{"internal", apierrors.NewInternalError(errors.New("etcd")), true},
		{"unavailable", apierrors.NewServiceUnavailable("later"), true},
		{"server timeout", apierrors.NewServerTimeout(pods, "create", 1), true},
		{"unauthorized", apierrors.NewUnauthorized("expired"), true},
		{"bad gateway", &apierrors.StatusError{ErrStatus: metav1.Status{Code: http.StatusBadGateway}}, true},
		{"connection", fmt.Errorf("dial tcp 127.0.0.1:1: connect: connection refused"), true},
		{"canceled", fmt.Errorf("post: %w", context.Canceled), false},
		{"deadline", context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.transient, Transient(tt.err), tt.name)
	}
	require.True(t, ContextEnded(fmt.Errorf("x: %w", context.Canceled)))
	require.False(t, ContextEnded(errors.New("x")))
}
