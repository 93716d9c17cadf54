// Package apierr holds kubexec's one rule for which failed API requests are
// worth repeating.
package apierr

import (
	"context"
	"errors"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Transient reports whether a request that failed with err may succeed if
// sent again later: errors below HTTP (connection refused or reset, a
// dropped stream), 429 Too Many Requests, 5xx and server timeouts, 401
// (credentials being rotated) and 409 conflicts other than AlreadyExists.
// Anything else the server refused (400, 403, 404, 422, AlreadyExists) is
// final. An error of the caller's own context (Canceled, DeadlineExceeded)
// is not transient: the caller stopped asking; see [ContextEnded].
func Transient(err error) bool {
	if err == nil || ContextEnded(err) {
		return false
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return true // no HTTP answer: connection-level
	}
	code := status.Status().Code
	switch {
	case code == 0, code == http.StatusTooManyRequests, code >= 500:
		return true
	case apierrors.IsServerTimeout(err), apierrors.IsTimeout(err), apierrors.IsUnauthorized(err):
		return true
	case apierrors.IsConflict(err):
		return !apierrors.IsAlreadyExists(err)
	}
	return false
}

// ContextEnded reports whether err comes from a context that was cancelled
// or ran out of time.
func ContextEnded(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
