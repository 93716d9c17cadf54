// Package watch tells an executor what happens to its pods: a [Watcher]
// lists and watches the pods of one executor instance and delivers each
// change once to a [Handler], and [Classify] turns a pod into the state of
// its attempt, with a [kubexec.Reason] when the attempt is over.
//
// # Lifecycle
//
// [New] builds a Watcher from a client, a [Config] and a Handler. [Watcher.Run]
// lists and watches until its context ends, calling the Handler from its own
// goroutine, and returns nil once every goroutine it started has stopped.
// [Watcher.WaitForSync] waits for the first list of every namespace to be
// delivered. [Watcher.Get] and [Watcher.List] read the last known state of
// the pods at any time; [Watcher.LastResourceVersion] says how far each
// namespace's watch has come.
//
// The Watcher selects the executor's pods that are not marked done
// ([kubexec.ActiveSelector]) in the namespaces of Config.Namespaces, one
// watch each, or in all namespaces with one watch. It is built on
// client-go's informer (a Reflector feeding a FIFO), whose relist diff it
// relies on, with two additions: watch requests that resume by themselves,
// and a transform that trims each pod to what kubexec reads ([Trim]) and
// keeps it in a compact form with shared strings (about a seventh of the
// memory of a plain informer: BenchmarkWatch10k).
//
// # Delivery guarantees
//
//   - First list: the Handler receives OnAdd for every pod; HasSynced turns
//     true after it has received all of them, in every namespace. A new
//     Watcher (after a process restart, say) has nothing to compare with, so
//     its first list is delivered whole; results are saved idempotently for
//     that reason.
//   - Then each change once: OnAdd for a pod that appears, OnUpdate for one
//     that changed (old is the state delivered before), OnDelete for one
//     that is gone. For each pod, calls come in the order of the changes and
//     every call carries a newer resourceVersion than the one before. A pod
//     that did not change is never delivered again.
//   - One goroutine: all calls come from the goroutine running Run, one at
//     a time, across all namespaces. The pods are shared and trimmed: never
//     modify them.
//   - Resume, not relist: a watch request that ends — the server's timeout
//     (Config.WatchTimeout, jittered), a dropped connection, an API server
//     restart, a 429 or 5xx, a stream that breaks mid-event — is reopened
//     from the last resourceVersion received (events and bookmarks), with
//     jittered exponential backoff from 0.5 s to 30 s on errors. Nothing is
//     listed again and nothing is delivered twice. (A restarted API server
//     with its watch cache on cannot serve resourceVersions from before its
//     start and answers 410: see below.)
//   - Dead connections: a watch request that the server has not ended
//     Config.ClientTimeout after its own timeout is abandoned and reopened,
//     so a connection that died without a word costs at most
//     WatchTimeout×1.25 + ClientTimeout, never a hang. Over HTTP/2,
//     client-go's connection health checks usually notice sooner.
//   - 410 Gone: when the resourceVersion is too old to resume from (etcd
//     compacted it, or a restarted API server's watch cache starts after
//     it), the Watcher relists — from its last resourceVersion, never from
//     scratch — and compares the list with what it knew: a pod that changed
//     in the gap gets one OnUpdate in its final state, a new pod OnAdd, a
//     pod that vanished OnDelete with gone=true and its last known state, a
//     pod deleted and created again under its name OnDelete(gone) then
//     OnAdd; pods that did not change get nothing. ResourceVersions are
//     compared for that, so the relist never floods the Handler. The
//     relist is a streaming list where the API server supports it, else a
//     paginated list.
//   - Leaving the selector (marked done, relabelled to another executor)
//     is an OnDelete with gone=false, like a deletion; see [Handler].
//   - Errors that reopening the watch cannot fix (401, 403) are logged and
//     retried with a relist and the Reflector's backoff; they never stop Run.
//
// # Classification
//
// [Classify] is a pure function of the pod, the time and [ClassifyOptions].
// It reads the pod's status in this order; the first rule that applies
// decides. "Retry" is [kubexec.Reason.Retryable].
//
//	pod state                                              result            retry
//	-----------------------------------------------------  ----------------  -----
//	phase Succeeded                                        Succeeded         -
//	phase Failed, status.reason DeadlineExceeded           DeadlineExceeded  no
//	phase Failed, condition DisruptionTarget=True          Disrupted         yes
//	  (PreemptionByScheduler, EvictionByEvictionAPI,
//	  DeletionByTaintManager, DeletionByPodGC,
//	  TerminationByKubelet)
//	phase Failed, status.reason Evicted, Preempting,       Disrupted         yes
//	  NodeLost, Terminated (node shutdown), or a node
//	  admission refusal (OutOf*, NodeAffinity,
//	  UnexpectedAdmissionError, NodeShutdown: the node
//	  is shutting down)
//	phase Failed, status.reason ProviderFailed (a virtual  Disrupted         yes
//	  kubelet's provider could not run the pod)
//	phase Failed, the container to blame (below) was lost  Disrupted         yes
//	  with its node (ContainerStatusUnknown)
//	phase Failed, a container terminated OOMKilled         OOMKilled         no
//	phase Failed, a container exited non-zero: the first   Failed            yes
//	  of init containers, then containers, then sidecars,
//	  in spec order, with its exit code and message (exit
//	  code 137 or signal 9 without OOMKilled: the message
//	  says it was SIGKILLed, most often for its memory
//	  limit, and what to do)
//	phase Failed, nothing else known                       Failed            yes
//	deletionTimestamp set (not Succeeded/Failed)           as ClassifyDeleted
//	status.reason ProviderFailed (phase Pending: the       Disrupted         yes
//	  virtual kubelet gave up creating the pod)
//	a container waiting InvalidImageName,                  ImagePullError    no
//	  ErrImageNeverPull, ImageInspectError,
//	  SignatureValidationFailed
//	a container waiting ErrImagePull, ImagePullBackOff,    ImagePullError    no
//	  RegistryUnavailable for longer than ImagePullGrace
//	  (default 3m, counted from the pod's start on its node)
//	a container waiting CreateContainerConfigError,        ConfigError       no
//	  CreateContainerError for longer than
//	  ConfigErrorGrace (default 2m, counted from the pod's
//	  start on its node: the kubelet retries, so a Secret
//	  or ConfigMap created late is still found)
//	phase Running (or Unknown: node not reporting)         running
//	on its node (PodScheduled=True, or reported by the     ConfigError       no
//	  node), phase Pending, no container ever started
//	  (ContainerCreating, PodInitializing: a volume that
//	  never mounts) for longer than StartTimeout
//	  (default 10m)
//	waiting for a node for longer than PendingTimeout      Unschedulable     yes
//	  (default 5m): PodScheduled=False, reason
//	  Unschedulable (with the scheduler's message) or
//	  another reason the scheduler gives; or no
//	  PodScheduled condition at all (no scheduler acts on
//	  the pod: a wrong schedulerName, kube-scheduler
//	  down; or the node its nodeName names never takes it)
//	anything else (scheduling gates included)              pending
//
// The timeouts count from the pod's own timestamps, written by other
// machines (the API server, the scheduler, the node), compared with now.
// A caller that classifies a pod over its life keeps an [Observations] for
// it and calls [ClassifyObserved], which records when the caller first saw
// the pod waiting for a node and on its node, on its own clock, and counts
// every timeout from those: clock skew between the machines then moves no
// timeout. Every pending or running Classification whose timeout can end
// the attempt with nothing about the pod changed has
// [Classification.RecheckAt] set.
//
// [ClassifyDeleted] classifies a pod that is being deleted or has vanished,
// from its last known state: Succeeded pods keep their outcome, and so do
// Failed pods in which a container (sidecars aside) failed before the
// deletion was requested (the deletionTimestamp minus the grace period);
// a pod that failed only because the deletion killed its containers is
// classified by that cause. Then a DisruptionTarget condition or a lost node (the
// Disrupted rows above) gives Disrupted; anything else DeletedExternally
// (retryable). A nil pod is DeletedExternally.
//
// Every Classification carries the container and exit code involved and a
// message that says what happened and what to do about it, with
// Kubernetes' own reason and message; never an empty or "None" reason.
package watch
