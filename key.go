package kubexec

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrInvalidKey is wrapped by every error that reports an invalid [TaskKey].
var ErrInvalidKey = errors.New("kubexec: invalid task key")

// ErrInvalidConfig is wrapped by the error of every constructor of
// kubexec's packages given an invalid Config (executor.New,
// podtemplate.New, xcom.NewCollector, logs.New, and those of the executor's
// internal parts); the error names each field that is wrong and what to
// use instead.
var ErrInvalidConfig = errors.New("kubexec: invalid config")

// TaskKey identifies one attempt of one task in any scheduler.
//
// The string fields may hold any valid UTF-8 text of any length; kubexec
// sanitises them where Kubernetes needs it (names, labels) and keeps the
// exact values in annotations. TaskKey is comparable and can be used as a
// map key.
type TaskKey struct {
	// WorkflowID is the id of the workflow (Airflow's dag_id). Required.
	WorkflowID string `json:"workflowID"`
	// TaskID is the id of the task within the workflow. Required.
	TaskID string `json:"taskID"`
	// RunID is the id of the workflow run. It may be empty for schedulers
	// that have no notion of runs.
	RunID string `json:"runID"`
	// MapIndex is the index of a mapped task instance, or -1 (NotMapped)
	// when the task is not mapped.
	MapIndex int `json:"mapIndex"`
	// Attempt is the attempt (try) number, zero or more. Each attempt runs
	// as its own pod.
	Attempt int `json:"attempt"`
}

// NotMapped is the [TaskKey.MapIndex] of a task that is not mapped.
const NotMapped = -1

// KeyError reports which field of a [TaskKey] is invalid and why. It wraps
// [ErrInvalidKey].
type KeyError struct {
	// Field is the name of the offending TaskKey field, e.g. "TaskID".
	Field string
	// Problem says what is wrong and how to fix it.
	Problem string
}

// Error implements error.
func (e *KeyError) Error() string {
	return fmt.Sprintf("%v: %s %s", ErrInvalidKey, e.Field, e.Problem)
}

// Unwrap returns [ErrInvalidKey].
func (e *KeyError) Unwrap() error { return ErrInvalidKey }

// Validate reports the first problem with k as a *[KeyError], or nil when k
// can identify a pod.
func (k TaskKey) Validate() error {
	for _, f := range []struct{ name, value string }{
		{"WorkflowID", k.WorkflowID},
		{"TaskID", k.TaskID},
		{"RunID", k.RunID},
	} {
		if f.value == "" && f.name != "RunID" {
			return &KeyError{Field: f.name, Problem: "must not be empty"}
		}
		if !utf8.ValidString(f.value) {
			return &KeyError{Field: f.name, Problem: "must be valid UTF-8"}
		}
	}
	if k.MapIndex < NotMapped {
		return &KeyError{Field: "MapIndex", Problem: fmt.Sprintf("is %d: use -1 (NotMapped) or an index of 0 or more", k.MapIndex)}
	}
	if k.Attempt < 0 {
		return &KeyError{Field: "Attempt", Problem: fmt.Sprintf("is %d: attempts are numbered from 0 or 1 upwards", k.Attempt)}
	}
	return nil
}

// String formats k for people and logs, e.g.
// "workflow=etl task=load run=r1 map=3 attempt=2". Values that contain
// spaces, quotes, "=" or unprintable characters are quoted. The map index is
// omitted for tasks that are not mapped.
func (k TaskKey) String() string {
	var b strings.Builder
	b.WriteString("workflow=")
	b.WriteString(quoteIfNeeded(k.WorkflowID))
	b.WriteString(" task=")
	b.WriteString(quoteIfNeeded(k.TaskID))
	b.WriteString(" run=")
	b.WriteString(quoteIfNeeded(k.RunID))
	if k.MapIndex != NotMapped {
		b.WriteString(" map=")
		b.WriteString(strconv.Itoa(k.MapIndex))
	}
	b.WriteString(" attempt=")
	b.WriteString(strconv.Itoa(k.Attempt))
	return b.String()
}

// LogValue implements [slog.LogValuer]: a key logs as a group with the
// attributes workflow, task, run, map (when mapped) and attempt.
func (k TaskKey) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("workflow", k.WorkflowID),
		slog.String("task", k.TaskID),
		slog.String("run", k.RunID),
	}
	if k.MapIndex != NotMapped {
		attrs = append(attrs, slog.Int("map", k.MapIndex))
	}
	attrs = append(attrs, slog.Int("attempt", k.Attempt))
	return slog.GroupValue(attrs...)
}

func quoteIfNeeded(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if r == ' ' || r == '"' || r == '=' || !strconv.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
