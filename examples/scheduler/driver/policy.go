package driver

import (
	"fmt"
	"time"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/examples/scheduler/sqlitestore"
	"github.com/kubexec/kubexec/examples/scheduler/workflow"
)

// Backoff of retries after platform failures (Reason.SystemFailure).
const (
	SystemRetryDelay    = 2 * time.Second
	MaxSystemRetryDelay = time.Minute
)

// Decision is what the scheduler does with a task after one of its
// attempts ended.
type Decision struct {
	// State is the task's next state: TaskSucceeded, TaskRetryWait,
	// TaskFailed or TaskCancelled.
	State sqlitestore.TaskState
	// System: the retry is counted against the task's system retries,
	// not its own.
	System bool
	// Delay before the retry.
	Delay time.Duration
	// Why explains the decision to a person.
	Why string
}

// Decide applies the retry policy to the result r of task t's latest
// attempt, where spec is the task's definition:
//
//   - Succeeded: done.
//   - Revoked: cancelled on request; never retried.
//   - A platform failure that a retry may fix (Unschedulable, Disrupted,
//     DeletedExternally, QueuedTimeout) is retried without consuming the
//     task's retries, up to maxSystemRetries, 2s doubling to 1m apart.
//   - A failure of the task's own code (Failed: a non-zero exit) consumes
//     one of its retries, retryDelay doubling each time.
//   - A failure that repeats with the same spec (LaunchRejected,
//     OOMKilled, ImagePullError, ConfigError, DeadlineExceeded) is not
//     retried: the Reason's hint says what to change.
//   - XComFailed (the task's code succeeded, but its XCom value is
//     unusable: too large, not the JSON its pod asks for, missing although
//     a downstream task reads it) is not retried either: the task's output
//     is wrong, and another attempt writes the same. The result's message
//     says what is wrong with the value, the hint what to fix.
//
// Whether a failure is retried at all is Reason.Retryable (and whether
// it counts as the platform's, Reason.SystemFailure), so a Reason that
// kubexec adds is handled as kubexec classifies it.
func Decide(spec *workflow.Task, t sqlitestore.Task, r kubexec.Result) Decision {
	what := Describe(r)
	switch {
	case r.Reason == kubexec.ReasonSucceeded:
		return Decision{State: sqlitestore.TaskSucceeded, Why: what}
	case r.Reason == kubexec.ReasonRevoked:
		return Decision{State: sqlitestore.TaskCancelled, Why: "cancelled on request"}
	case !r.Reason.Retryable():
		return Decision{State: sqlitestore.TaskFailed, Why: fmt.Sprintf("%s; not retried: %s", what, r.Reason.Hint())}
	case r.Reason.SystemFailure():
		if t.SystemRetries >= spec.MaxSystemRetries {
			return Decision{State: sqlitestore.TaskFailed, Why: fmt.Sprintf("%s; gave up after %d platform retries (maxSystemRetries)", what, t.SystemRetries)}
		}
		d := backoff(SystemRetryDelay, t.SystemRetries, MaxSystemRetryDelay)
		return Decision{State: sqlitestore.TaskRetryWait, System: true, Delay: d,
			Why: fmt.Sprintf("%s; platform failure, retrying in %s without using a task retry (%d of %d)", what, d, t.SystemRetries+1, spec.MaxSystemRetries)}
	default:
		if t.RetriesUsed >= spec.Retries {
			if spec.Retries == 0 {
				return Decision{State: sqlitestore.TaskFailed, Why: fmt.Sprintf("%s; the task has no retries", what)}
			}
			return Decision{State: sqlitestore.TaskFailed, Why: fmt.Sprintf("%s; no retries left (%d used)", what, t.RetriesUsed)}
		}
		d := backoff(spec.RetryDelay, t.RetriesUsed, workflow.MaxRetryDelay)
		return Decision{State: sqlitestore.TaskRetryWait, Delay: d,
			Why: fmt.Sprintf("%s; retrying in %s (retry %d of %d)", what, d, t.RetriesUsed+1, spec.Retries)}
	}
}

func backoff(base time.Duration, n int, limit time.Duration) time.Duration {
	d := base
	for range n {
		d *= 2
		if d >= limit {
			return limit
		}
	}
	return min(d, limit)
}

// Describe says in a few words how an attempt ended, e.g. "attempt 1
// failed: exit code 3 in container base". A failure shows its exit code
// only when its container exited (Result.ContainerExited): a pod can fail
// before any container exits, and then the message says why.
func Describe(r kubexec.Result) string {
	s := fmt.Sprintf("attempt %d ", r.Key.Attempt)
	switch r.Reason {
	case kubexec.ReasonSucceeded:
		return s + "succeeded"
	case kubexec.ReasonFailed:
		s += "failed"
		if r.ContainerExited {
			s += fmt.Sprintf(": exit code %d", r.ExitCode)
			if r.Container != "" {
				s += " in container " + r.Container
			}
		}
	default:
		s += "ended " + string(r.Reason)
	}
	if r.Message != "" {
		s += " (" + OneLine(r.Message, 400) + ")"
	}
	return s
}

// OneLine returns s on one line (line breaks and tabs become spaces), cut
// to n runes with an ellipsis.
func OneLine(s string, n int) string {
	out := make([]rune, 0, len(s))
	for _, c := range s {
		if c == '\n' || c == '\r' || c == '\t' {
			c = ' '
		}
		out = append(out, c)
	}
	if len(out) > n {
		return string(out[:n-1]) + "…"
	}
	return string(out)
}
