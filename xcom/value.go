package xcom

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/kubexec/kubexec"
)

var (
	// ErrTooLarge: a value is larger than allowed.
	ErrTooLarge = errors.New("xcom: value too large")
	// ErrNotJSON: a value is not one valid JSON value in UTF-8.
	ErrNotJSON = errors.New("xcom: value is not JSON")
	// ErrMissing: a task that must produce a value produced none (the
	// termination message is empty, the file does not exist or is empty).
	ErrMissing = errors.New("xcom: required value missing")
	// ErrUnreadable: the value could not be read from the pod, for good
	// (the sidecar ended before it was read, or the file is unreadable).
	ErrUnreadable = errors.New("xcom: value unreadable")
	// ErrNotFound is returned (wrapped) by Backend.Get for a reference it
	// does not hold.
	ErrNotFound = errors.New("xcom: no value for the reference")
)

// ValueError reports an attempt whose value is wrong: too large, not JSON,
// missing when required, or unreadable. It is final: reading again gives
// the same error, so the executor records it in the attempt's Result
// rather than retrying. It wraps one of ErrTooLarge, ErrNotJSON,
// ErrMissing and ErrUnreadable.
type ValueError struct {
	// Key is the attempt.
	Key kubexec.TaskKey
	// Container is the main container, which produced (or should have
	// produced) the value.
	Container string
	// Source says where the value was read, e.g. "the termination message
	// of container base" or "file /airflow/xcom/return.json".
	Source string
	// Size is the value's size in bytes, or -1 when unknown.
	Size int64
	// Limit is the largest size allowed, in bytes.
	Limit int64
	// Err is ErrTooLarge, ErrNotJSON, ErrMissing or ErrUnreadable, maybe
	// wrapped with details.
	Err error
}

// Error implements error. The message says what to do.
func (e *ValueError) Error() string {
	msg := fmt.Sprintf("xcom: attempt %s: %s: %v", e.Key, e.Source, e.Err)
	switch {
	case errors.Is(e.Err, ErrTooLarge) && e.Limit == terminationMessageLimit:
		return msg + "; the kubelet keeps at most 4096 bytes of a termination message: write larger values through the sidecar channel (" + AnnotationChannel + ": sidecar)"
	case errors.Is(e.Err, ErrTooLarge):
		return msg + "; write a smaller value (or a reference to where it is), or raise the host's limit, xcom.Config.MaxBytes (the " + AnnotationMaxBytes + " annotation can only lower it)"
	case errors.Is(e.Err, ErrNotJSON):
		return msg + "; the task must write exactly one JSON value, in UTF-8"
	case errors.Is(e.Err, ErrMissing):
		return msg + "; the task succeeded without writing its value, which its pod requires (" + AnnotationRequired + ")"
	}
	return msg
}

// Unwrap returns Err.
func (e *ValueError) Unwrap() error { return e.Err }

// Is matches kubexec.ErrXComValue: a ValueError is final, and fails the
// attempt.
func (e *ValueError) Is(target error) bool { return target == kubexec.ErrXComValue }

// ParseValue checks that data holds one JSON value in UTF-8, of at most
// limit bytes, and returns it without surrounding whitespace. Errors wrap
// ErrMissing (data is empty or only whitespace), ErrTooLarge or
// ErrNotJSON.
func ParseValue(data []byte, limit int64) (json.RawMessage, error) {
	if int64(len(data)) > limit {
		// Whitespace around a value that fits is forgiven.
		trimmed := bytes.TrimSpace(data)
		if int64(len(trimmed)) > limit {
			return nil, fmt.Errorf("%w: %d bytes, at most %d allowed", ErrTooLarge, len(trimmed), limit)
		}
		data = trimmed
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, ErrMissing
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: it is not valid UTF-8", ErrNotJSON)
	}
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v)
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return nil, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	return json.RawMessage(bytes.Clone(data)), nil
}

// terminationMessageLimit is what the kubelet keeps of a container's
// termination message.
const terminationMessageLimit = 4096
