// Package kubexec is the shared vocabulary of the kubexec SDK, which runs each
// attempt of a scheduler's task as one Kubernetes pod.
//
// This package holds only types and pure functions that every other kubexec
// package agrees on; it performs no I/O and imports no other kubexec package.
//
//   - [TaskKey] identifies one attempt of one task in any scheduler: workflow
//     (DAG) id, task id, run id, map index and attempt number.
//   - [State] is where an attempt is in its life (queued, launching, pending,
//     running, succeeded, failed).
//   - [Reason] says why a terminal attempt ended, whether a retry is likely to
//     help ([Reason.Retryable]), whether the failure belongs to the platform
//     rather than the task's code ([Reason.SystemFailure]), and what a person
//     should do about it ([Reason.Hint]).
//   - [Result] is the record of one finished attempt that the host stores.
//
// # Pod metadata
//
// Every pod that kubexec creates carries its identity in its metadata, and
// every kubexec package reads it back with the functions here, never by hand:
//
//   - Its name, [PodName], is derived from the key alone: the same attempt
//     always gets the same name, so a repeated create collides with
//     AlreadyExists on purpose, and two different attempts get different
//     names. Names are valid DNS-1123 labels of at most 63 characters.
//   - Its labels, [Labels], carry the executor id and the key's fields in a
//     form that is safe for selection. String fields pass through
//     [SafeLabelValue], Apache Airflow's make_safe_label_value rule: a value
//     that had to change, or is longer than 63 characters, keeps 53
//     characters plus "-" and a hash of the original, so distinct inputs do
//     not collapse to one label by accident.
//   - Its annotations, [Annotations], carry the key's exact values, of any
//     length. The key is always decoded from annotations ([KeyFromObject]),
//     never from labels.
//   - It carries the [FinalizerResultTracking] finalizer from creation until
//     its result has been saved.
//
// Label selectors are built only with [ManagedSelector], [ExecutorSelector]
// and [ActiveSelector], from validated requirements, so no user-supplied
// string can change a selector's meaning.
package kubexec
