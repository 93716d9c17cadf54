// Package xcom carries a task attempt's small result (Apache Airflow's
// XCom) from its pod to the host: the task writes one JSON value, kubexec
// reads and validates it when the attempt ends, stores it in a Backend,
// and the attempt's Result carries the Backend's reference
// (Result.XComRef). Pass hands such values to downstream tasks.
//
// # Channels
//
// Each task chooses how its value leaves the pod, with pod annotations
// (AnnotationChannel and friends, usually in its per-task override), or
// takes the host's default:
//
//   - ChannelTerminationMessage (the default): the task writes its value
//     to its main container's terminationMessagePath. No sidecar, no
//     exec; the kubelet keeps at most 4096 bytes.
//   - ChannelSidecar: Middleware adds an emptyDir and a tiny sidecar
//     container; the task writes its value to a file in that folder
//     (DefaultPath, or AirflowPath so that Airflow's KubernetesPodOperator
//     images work unchanged). Once the main container has ended, the
//     Collector reads the file by exec in the sidecar and then stops the
//     sidecar. Values up to Config.MaxBytes (4 MiB by default).
//   - ChannelNone: no value.
//
// Either way the main container finds the file to write in the
// environment variable EnvPath.
//
// # Lifecycle
//
// Install Middleware in podtemplate.Config.Middleware. Make one Collector
// with NewCollector. For each attempt, the executor:
//
//  1. while the pod runs, on each event: if Waiting(pod) (the main
//     container ended, the sidecar keeps the pod running), calls
//     Collector.Collect, which reads and stores the value, records the
//     answer on the pod and stops the sidecar, so that the pod ends;
//  2. when the attempt has ended, calls Collector.Collect (again): its
//     reference goes in Result.XComRef, or its *ValueError in the Result
//     as a failure, before the Result is saved.
//
// Collect is idempotent and safe to repeat after a crash: termination
// messages stay in the pod's status, and the sidecar channel records its
// answer in the pod's AnnotationResult before the sidecar (and the file)
// goes away. Collectors start no goroutines.
//
// # Errors
//
// A value that is too large, not JSON, missing although the pod requires
// one (AnnotationRequired), or that can no longer be read is a
// *ValueError wrapping ErrTooLarge, ErrNotJSON, ErrMissing or
// ErrUnreadable: final, never dropped silently. Every other error of
// Collect is worth a retry, with one bound: a sidecar whose exec goes
// unanswered (its node is gone, its kubelet down) is retried for
// Config.GiveUpAfter (10m by default), after which its value is given up
// as lost, with an ErrUnreadable that says why, so that a dead node does
// not hold the attempt's result and its pod forever.
//
// # Backends
//
// Backend is the host's storage: Put a value for an attempt and get a
// reference, Get a value by reference. MemoryBackend and FileBackend ship
// for tests and examples.
package xcom
