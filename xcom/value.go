package xcom

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubexec/kubexec"
)

var (
	// ErrTooLarge: a value is larger than allowed.
	ErrTooLarge = errors.New("xcom: value too large")
	// ErrNotJSON: a value is not UTF-8 text, or (FormatJSON) not one
	// valid JSON value.
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

// ValueError reports an attempt whose value is wrong: too large, not UTF-8
// or not the JSON its pod asks for, missing when required, or unreadable.
// It is final: reading again gives the same error, so the executor records
// it in the attempt's Result (kubexec.ReasonXComFailed) rather than
// retrying. It wraps one of ErrTooLarge, ErrNotJSON, ErrMissing and
// ErrUnreadable.
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
	var cut *cutError
	switch {
	case errors.As(e.Err, &cut):
		return msg + "; write values of 4 KiB or more through the sidecar channel: set the pod annotation " + AnnotationChannel + ": sidecar " +
			"(for example in the task's override); the task still writes its value to the file $" + EnvPath + " names"
	case errors.Is(e.Err, ErrTooLarge):
		return msg + "; write a smaller value (or a reference to where it is), or raise the host's limit, xcom.Config.MaxBytes (the " + AnnotationMaxBytes + " annotation can only lower it)"
	case errors.Is(e.Err, ErrNotJSON):
		return msg + "; the task must write UTF-8 text, which must be one JSON value when its pod asks for JSON"
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

// ParseValue reads the value a task wrote, data, in format (FormatAuto
// when ""): without surrounding whitespace, at most limit bytes of UTF-8,
// and returns it as one JSON value: data itself when it is valid JSON
// (FormatAuto, FormatJSON), else a JSON string holding the text
// (FormatAuto, FormatText). Errors wrap ErrMissing (data is empty or only
// whitespace), ErrTooLarge or ErrNotJSON (not UTF-8, or FormatJSON and not
// one JSON value).
func ParseValue(data []byte, limit int64, format Format) (json.RawMessage, error) {
	if format == "" {
		format = FormatAuto
	}
	if !validFormat(format) {
		return nil, fmt.Errorf("xcom: ParseValue: format %q; use %q, %q or %q", format, FormatAuto, FormatJSON, FormatText)
	}
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
	if format != FormatText && json.Valid(data) {
		return json.RawMessage(bytes.Clone(data)), nil
	}
	if format == FormatJSON {
		var v any
		err := json.Unmarshal(data, &v)
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return nil, fmt.Errorf("%w: %v (the pod asks for JSON: %s is %q)", ErrNotJSON, err, AnnotationFormat, FormatJSON)
	}
	return textValue(data), nil
}

// textValue is the JSON string that holds text, which is valid UTF-8. It
// escapes only what JSON requires (quotes, backslashes, control
// characters) and U+2028 and U+2029, so that the stored value reads as the
// text did.
func textValue(text []byte) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(string(text)); err != nil {
		panic(err) // a string always encodes
	}
	return json.RawMessage(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

// terminationMessageLimit is what the kubelet keeps of a container's
// termination message: its file's last 4096 bytes.
const terminationMessageLimit = 4096

// podTerminationMessageLimit is what the kubelet keeps of the termination
// message of each container of pod: 4096 bytes, but the pod's containers
// share 12 KiB (each message is cut to an equal share).
func podTerminationMessageLimit(pod *corev1.Pod) int {
	n := len(pod.Spec.InitContainers) + len(pod.Spec.Containers) + len(pod.Spec.EphemeralContainers)
	if n == 0 {
		return terminationMessageLimit
	}
	return min(terminationMessageLimit, 3*terminationMessageLimit/n)
}

// cutError is wrapped, with ErrTooLarge, by the error of a termination
// message that fills what the kubelet keeps of it: it may have been cut.
type cutError struct {
	size int
}

func (e *cutError) Error() string {
	return fmt.Sprintf("the termination message has %d bytes, all that the kubelet keeps of one in this pod, so the task may have written more", e.size)
}
