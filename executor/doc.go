// Package executor runs task attempts as Kubernetes pods for a scheduler
// that embeds it: Apache Airflow's KubernetesExecutor as a library, with its
// known faults designed out.
//
// # The host's side
//
// The host implements [StateStore] (SaveResult, idempotent per attempt, and
// LoadResult) and drives an [Executor]:
//
//	store := mydb.ResultStore()                 // implements executor.StateStore
//	exec, err := executor.New(restConfig, store, executor.Config{ExecutorID: "scheduler-0"})
//	if err != nil { ... }
//	if err := exec.Start(ctx); err != nil { ... } // checks permissions, syncs the pod watch
//	defer exec.Stop(context.Background())
//
//	// python:3.13 runs as root; the default template requires a non-root user.
//	exec.Queue(podtemplate.TaskSpec{Key: key, Image: "python:3.13", Command: []string{"python", "-m", "etl.load"}, RunAsUser: new(int64(1000))})
//	result, err := exec.Wait(ctx, key)        // or Subscribe(key) for each change
//	// every result is also in store.SaveResult, saved as its pod ends
//
// No ticker is needed: Queue launches at once while a slot is open, and each
// freed slot launches the next queued attempt. A host that ticks may call
// Heartbeat on each tick (it launches and applies timeouts at once).
//
// # An attempt's life
//
//	Queue ─▶ queued ─▶ launching ─▶ pending ─▶ running ─▶ result known ─▶ saved ─▶ released
//	            ▲          │
//	            └──────────┘  quota (403), throttled (429), 5xx, connection errors
//
// Step by step:
//
//   - Queue never calls the API server. The launcher goroutine (woken by
//     Queue, each freed slot, a retry falling due, and Heartbeat) moves
//     queued attempts to launching, oldest first, up to Parallelism minus
//     running; creates run on
//     CreateConcurrency goroutines, paced by a token bucket (CreateQPS,
//     CreateBurst), with client-go's own retries off so that the executor's
//     flow control decides: a 429 pauses every create for its Retry-After; a
//     quota refusal keeps the attempt queued and backs its namespace off
//     (1 s doubling to 1 min); 5xx and connection errors retry the attempt
//     with backoff; 400, 422, 404, other 403s and build errors end it as
//     LaunchRejected, a system failure that must not consume the task's
//     retries. A create that finds the attempt's pod already there (the pod
//     name is derived from the key) tracks that pod.
//   - Every pod carries the tracking finalizer kubexec.FinalizerResultTracking
//     from creation. The watch (package watch) reports pod changes; package
//     watch's Classify decides when an attempt has ended and why. A pod
//     deleted by someone else, evicted or on a lost node is held by the
//     finalizer and ends as DeletedExternally or Disrupted.
//   - An attempt whose pod may still run when its outcome is known (deleted
//     by someone else, disrupted, revoked, timed out while pending) has its
//     outcome written on the pod (kubexec.AnnotationEnded, so that a
//     restart or an adoption meanwhile saves that outcome), then its pod
//     deleted, guarded by its UID, and its result saved only once the pod
//     is gone, has ended, or is being deleted without a node (the API
//     server refuses to bind a pod being deleted; a pod with no node that
//     is not being deleted may be bound any moment). Config.PodStopWait
//     bounds the wait, then Result.PodMayStillRun says so: a retry the host
//     starts on that result never runs beside the old pod, as with the Job
//     controller's podReplacementPolicy Failed.
//   - A create that finds the attempt's pod made by another instance waits
//     while that pod lives (no result is saved for the attempt, whatever
//     QueuedTimeout says), then ends with the result that instance saved
//     (StateStore.LoadResult).
//   - The result workers (ResultWorkers goroutines) call SaveResult, retrying
//     with backoff on error (Heartbeat does not cut it short); while
//     Config.MaxUnsavedResults results wait, nothing new is launched
//     (Stats.SavesBacklogged). Every string of a Result is valid UTF-8. Only after it returns nil do the release workers
//     (as many again, so that saving never waits behind API calls) archive
//     the logs, remove the finalizer and, per GCPolicy, delete the pod or
//     label it done. A crash at any point leaves the finalizer in place: the
//     next Start with the same ExecutorID finds the pod, saves its result
//     again (idempotently) and releases it.
//   - Attempts that got a slot but could not be launched for QueuedTimeout
//     (refused or failing creates) end as QueuedTimeout; waiting for a slot
//     never times out, so Queue may be given more than Parallelism; pods
//     pending past the classification's timeouts end with their Reason and
//     are deleted.
//
// # Adoption stays inside one deployment
//
// A deployment is the set of instances that share one StateStore and say
// so with the same Config.AdoptionGroup and Config.LeaseNamespace: the
// replicas of one scheduler. An instance saves, relabels, releases or
// deletes another instance's pod only when the pod carries its own group
// and Lease namespace and its owner is dead; an instance with no group
// (the default) adopts only pods that carry its own ExecutorID. Two
// schedulers sharing a namespace never touch each other's pods, whatever
// their Leases say; Adopt reports such pods with ErrOtherDeployment.
//
// # Start, Stop and the Lease
//
// Start checks permissions, takes the instance's Lease, syncs the pod watch
// and only then starts the workers. A Start that fails undoes all of it
// (the Lease it took is deleted) and may be called again; attempts queued
// meanwhile wait for it.
//
// The Lease is how other instances know this one is alive. When renewals
// fail for longer than RenewDeadline, others may soon take this instance
// for dead and adopt its pods, so no create is sent until a renewal
// succeeds again: launching pauses (Stats.LeaseLost, and a log line at
// each change), while the attempts already running are still tracked and
// their results saved.
//
// Stop is bounded by its context, and by Config.StopTimeout when the
// context has no earlier deadline; its error says what it left.
//
// Stop keeps the Lease of an instance whose ExecutorID the host gave: it
// expires after LeaseDuration, and an instance restarted with the same id
// (the usual case: a StatefulSet's pod restarted with the same name) takes
// it back at once and resumes its pods with no adoption; a deleted Lease
// would tell every other instance at once that this one is gone, and the
// host's Adopt there would take over pods about to be resumed. An instance
// with the random default id can never be resumed, so its Stop deletes the
// Lease (Config.DeleteLeaseOnStop forces that for a given id). Each sweep
// also deletes the kubexec Leases that nobody renewed for ten Lease
// durations, so ids that never come back leave nothing behind.
//
// # Words
//
// Each of these words means one thing in this package, its docs and its
// code:
//
//   - queued: accepted by Queue, waiting for a slot or a create retry.
//   - launched: its create was sent and its pod exists (or may: a create
//     whose reply was lost).
//   - ended: the pod's phase is Succeeded or Failed (watch.Ended); an
//     attempt has ended once its outcome is known, whether or not its pod
//     has.
//   - stopped: the pod runs no container and can start none
//     (watch.Stopped): it ended, or it is being deleted and was never bound
//     or runs nothing. A retry never runs beside a pod that has not
//     stopped, unless Result.PodMayStillRun says so.
//   - settled: of a dead instance's pod, ended or being deleted: the
//     adoption sweeps take over settled pods only.
//   - saved: StateStore.SaveResult returned nil for the attempt's Result
//     (AttemptStatus.Saved); the result is durable.
//   - released: after it was saved, the pod's tracking finalizer is removed
//     and the pod deleted or labelled done, as the GC policy says.
//   - done: the label (kubexec.LabelDone) of a released pod that is kept;
//     an attempt is done, and forgotten by the executor, once released.
//   - foreign: a pod with an attempt's labels that the executor cannot tell
//     its deployment made; it decides nothing.
//
// # Goroutines
//
// SaveResult is called from the result workers, concurrently for different
// attempts and never concurrently for the same one; Config.XCom and
// Config.LogArchiver follow the same rule. Each attempt has one owner at a
// time, the goroutine of its stage's step; others only record what they
// learnt and hand the attempt to it. Metrics and Logger are called from
// every goroutine, never while the executor holds its lock, so they may
// call back into it. All Executor methods are safe for concurrent use.
//
// # Permissions
//
// Start checks with SelfSubjectAccessReviews that the executor may create,
// get, list, watch, patch and delete pods in every configured namespace,
// and get, create, update, list and delete Leases in LeaseNamespace (and
// get and create Secrets there, for the provenance key); with a
// LogArchiver also get pods/log, and with XCom also create pods/exec. It
// returns one *PermissionError that lists whatever is missing. rbac.yaml
// in this folder (also [RoleYAML]) is the Role for the task namespaces,
// with each rule's feature named (the optional rules may be left out when
// their feature is not configured); rbac-lease.yaml ([LeaseRoleYAML]) is
// the Role for the Lease namespace.
package executor

import _ "embed"

// RoleYAML is the minimal Role an executor needs in each namespace it runs
// pods in (rbac.yaml in this package's folder).
//
//go:embed rbac.yaml
var RoleYAML []byte

// LeaseRoleYAML is the Role an executor needs in its Lease namespace
// (rbac-lease.yaml in this package's folder).
//
//go:embed rbac-lease.yaml
var LeaseRoleYAML []byte

// AdmissionPolicyYAML is the ValidatingAdmissionPolicy and its binding
// that let only an identity allowed "manage" on pods.kubexec.io (the
// executor: RoleYAML grants it) create pods with kubexec's labels and
// annotations or change those (admission-policy.yaml in this package's
// folder): the cluster's half of the provenance check.
//
//go:embed admission-policy.yaml
var AdmissionPolicyYAML []byte
