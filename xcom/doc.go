// Package xcom carries a task attempt's small result (Apache Airflow's
// XCom) from its pod to the host: the task writes one value (JSON, or
// plain text) to the file named by the environment variable
// KUBEXEC_XCOM_PATH (EnvPath), kubexec reads and validates it when the
// attempt ends, stores it in a Backend as one JSON value, and the
// attempt's Result carries the Backend's reference (Result.XComRef). Pass
// hands such values to downstream tasks.
//
// The zero Config enables it all: a Collector made with NewCollector and
// set as the executor's Config.XCom prepares every pod (MutatePod) and
// collects its value; nothing else is needed.
//
// # Channels
//
// Each task chooses how its value leaves the pod, with pod annotations
// (AnnotationChannel and friends, usually in its per-task override), or
// takes the host's default, PodConfig.Channel (Config.Pod.Channel), which
// is DefaultChannel unless the host says otherwise. That one default
// decides both how a pod is prepared and what is read from it:
//
//   - ChannelTerminationMessage (DefaultChannel): the main container's
//     terminationMessagePath (/dev/termination-log unless the pod names
//     another) is the file the task writes. No sidecar, no exec. The
//     kubelet keeps only the file's last 4096 bytes (less in a pod of more
//     than three containers, which share 12 KiB): a message that fills
//     what it keeps may have been cut, and fails with ErrTooLarge, whose
//     message says to use the sidecar; values are at most 4095 bytes.
//   - ChannelSidecar, for larger values: Middleware adds an emptyDir and
//     a tiny sidecar container; the task writes its value to a file in
//     that folder (DefaultPath, or AirflowPath so that Airflow's
//     KubernetesPodOperator images work unchanged). Once the main
//     container has ended, the Collector reads the file by exec in the
//     sidecar and then stops the sidecar. Values up to Config.MaxBytes (4
//     MiB by default); a pod's AnnotationMaxBytes can lower that limit,
//     never raise it. The task's image needs nothing for it: the folder
//     exists and anyone may write in it, and the sidecar runs as the main
//     container's user, or the pod's (runAsUser), or else 65534. Only a
//     file private to a user the pod does not name (mode 0600 written by
//     the image's own user, as a temporary file renamed into place is) is
//     beyond the sidecar, which has no privileges: it fails with an
//     ErrUnreadable that says to make it readable or to set runAsUser.
//   - ChannelNone: no value.
//
// Either way the main container finds the file to write in the
// environment variable EnvPath, and the pod's AnnotationChannel records
// the channel it was prepared for, which is the one Collect reads.
//
// # Formats
//
// What the task wrote is read in its pod's format (AnnotationFormat),
// FormatAuto unless the pod says otherwise. Whitespace around the value
// is dropped, and the rest must be UTF-8 (a termination message reaches
// kubexec through the API server, which turns bytes that are not UTF-8
// into U+FFFD). Then:
//
//   - FormatAuto: a valid JSON value is stored as it is ({"rows": 3},
//     42, "x"); anything else is stored as a JSON string holding the text
//     (done becomes "done"). Broken JSON is stored as text too.
//   - FormatJSON: only one valid JSON value is accepted; anything else
//     fails with ErrNotJSON.
//   - FormatText: the value is always the text, as a JSON string (42
//     becomes "42").
//
// Config.MaxBytes and AnnotationMaxBytes count the bytes the task wrote;
// a text value is stored a little longer (quotes and escapes). ParseValue
// is the same reading, for hosts with collectors of their own.
//
// # Lifecycle
//
// Set the Collector as the executor's Config.XCom; or install Middleware
// in podtemplate.Config.Middleware and make one Collector with
// NewCollector, with the same PodConfig. For each attempt, the executor:
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
// A value that is too large, not UTF-8 or not the JSON its pod asks for,
// missing although the pod requires one (AnnotationRequired), or that can
// no longer be read is a *ValueError wrapping ErrTooLarge, ErrNotJSON,
// ErrMissing or ErrUnreadable: final, never dropped silently. It matches
// kubexec.ErrXComValue, and the executor ends the attempt with
// kubexec.ReasonXComFailed and the error as its message. Every other error of
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
