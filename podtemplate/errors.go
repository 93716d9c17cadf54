package podtemplate

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/kubexec/kubexec"
)

var (
	// ErrInvalidTemplate is wrapped by every error about a base template:
	// it cannot be decoded, has the wrong kind, more than one document,
	// no containers, or no main container.
	ErrInvalidTemplate = errors.New("podtemplate: invalid template")
	// ErrInvalidOverride is wrapped by every error about a per-task
	// override: it cannot be decoded, names unknown fields, or cannot be
	// merged.
	ErrInvalidOverride = errors.New("podtemplate: invalid override")
	// ErrInvalidPod is wrapped by *[ValidationError]: the pod built from the
	// template, task spec, override and middleware would be rejected by the
	// API server.
	ErrInvalidPod = errors.New("podtemplate: invalid pod")
	// ErrMiddleware is wrapped by *[MiddlewareError]: a middleware failed.
	ErrMiddleware = errors.New("podtemplate: middleware failed")
)

// DecodeError reports a template or an override that cannot be used. It
// wraps [ErrInvalidTemplate] or [ErrInvalidOverride], and Err.
type DecodeError struct {
	// Source names the input, usually its file name.
	Source string
	// Field is the path of the offending field (e.g. "spec.containers"),
	// or "" when the problem is not one field's, such as a YAML syntax
	// error (whose message carries the line) or an unknown field (whose
	// message carries the path).
	Field string
	// Err says what is wrong and, where it can, how to fix it.
	Err error

	kind error // ErrInvalidTemplate or ErrInvalidOverride
}

// Error implements error.
func (e *DecodeError) Error() string {
	var b strings.Builder
	b.WriteString(e.kind.Error())
	if e.Source != "" {
		b.WriteString(" " + e.Source)
	}
	if e.Field != "" {
		b.WriteString(": " + e.Field)
	}
	b.WriteString(": " + e.Err.Error())
	return b.String()
}

// Unwrap returns [ErrInvalidTemplate] or [ErrInvalidOverride], and Err.
func (e *DecodeError) Unwrap() []error { return []error{e.kind, e.Err} }

// ValidationError reports every problem found in a built pod, or in the task
// spec it was built from, before any API call. It wraps [ErrInvalidPod].
type ValidationError struct {
	// Pod is the pod's namespace/name ("" parts when unknown).
	Pod string
	// Key is the attempt the pod was built for.
	Key kubexec.TaskKey
	// Errs lists the problems, each with the path of its field and a detail
	// that says what to fix. Paths of task spec fields start with
	// "TaskSpec.".
	Errs field.ErrorList
}

// Error implements error.
func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, fe := range e.Errs {
		msgs[i] = fe.Error()
	}
	pod := ""
	if e.Pod != "" {
		pod = " " + e.Pod
	}
	return fmt.Sprintf("%v%s for task %v: %s", ErrInvalidPod, pod, e.Key, strings.Join(msgs, "; "))
}

// Unwrap returns [ErrInvalidPod].
func (e *ValidationError) Unwrap() error { return ErrInvalidPod }

// MiddlewareError reports the failure of one middleware; the build stops
// there. It wraps [ErrMiddleware] and Err.
type MiddlewareError struct {
	// Index is the position of the middleware in Config.Middleware.
	Index int
	// Err is the middleware's error, unchanged.
	Err error
}

// Error implements error.
func (e *MiddlewareError) Error() string {
	return fmt.Sprintf("podtemplate: middleware %d: %v", e.Index, e.Err)
}

// Unwrap returns [ErrMiddleware] and the middleware's error.
func (e *MiddlewareError) Unwrap() []error { return []error{ErrMiddleware, e.Err} }
