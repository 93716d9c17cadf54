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
//     sidecar. Values up to Config.MaxBytes (4 MiB by default); a pod's
//     AnnotationMaxBytes can lower that limit, never raise it.
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
// answer in the pod's AnnotationResult, with the pod's UID, before the
// sidecar (and the file) goes away. Collectors start no goroutines.
//
// # What a pod can and cannot decide
//
// A task's template and per-task override shape its pod, so the Collector
// takes from the pod nothing but the value its task wrote:
//
//   - it trusts a recorded AnnotationResult only if it names the pod's
//     own UID, which the API server gives when the pod is created: a
//     record set in a template or override is ignored, with a warning in
//     Config.Logger, and the value is read from the sidecar instead;
//   - AnnotationMaxBytes can only lower Config.MaxBytes; a larger number
//     is capped, and a value over the cap fails with an ErrTooLarge that
//     says so;
//   - it execs only in the sidecar Middleware adds (SidecarName, with
//     Config.Pod.SidecarImage, Middleware's command, the emptyDir mounted
//     at the folder of AnnotationPath and nothing over it, no privileges),
//     and reads only that file. A pod that names another container in
//     AnnotationSidecar, brings its own container of that name, or points
//     AnnotationPath outside the sidecar's folder gets a final
//     ErrUnreadable, and nothing is run in it;
//   - the file must be a regular file: a symbolic link, FIFO, device or
//     folder is a final ErrUnreadable;
//   - each exec is bounded by Config.ReadTimeout (1m by default), and a
//     read takes at most Config.MaxBytes+1 bytes, in the sidecar and in
//     the Collector's memory. A read the sidecar began to answer but did
//     not finish in time is a final ErrUnreadable.
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
// not hold the attempt's result and its pod forever. One call of Collect
// runs at most five execs (four reads and a stop), each bounded by
// Config.ReadTimeout; an exec that ctx's deadline cuts off counts as
// unanswered, so a caller that bounds each call (as the executor does)
// still reaches GiveUpAfter.
//
// # Backends
//
// Backend is the host's storage: Put a value for an attempt and get a
// reference, Get a value by reference. MemoryBackend and FileBackend ship
// for tests and examples.
package xcom
