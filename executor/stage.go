package executor

import (
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/podtemplate"
	"github.com/kubexec/kubexec/watch"
)

// stage is where an attempt is in its life. An attempt moves only along the
// edges of transitions (attempt.moveTo refuses any other move):
//
//	queued ─▶ launching ─▶ launched ─▶ [stopping ─▶] finishing ─▶ releasing ─▶ done
//
// plus the edges of a create that did not happen (launching back to
// queued), of an outcome known before a pod was made (revoked, timed out or
// rejected while queued or launching; revoked during a create: cancelling),
// and of a pod that left the watch before its outcome was known
// (verifying).
//
// Each stage has one step, run by the goroutine that owns it:
//
//	queued      launchReady (Heartbeat) hands it to a launch worker
//	launching   launch (a launch worker) builds and creates the pod
//	cancelling  none: the create in flight returns, then it moves on
//	launched    the watch classifies the pod; resultStep collects an XCom
//	            value early when a sidecar waits for it
//	verifying   verifyStep finds out whether the pod vanished or was adopted
//	stopping    stopStep deletes the pod and waits for it to stop
//	finishing   saveStep collects XCom and saves the result
//	releasing   releaseStep archives logs and releases the pod
type stage uint8

const (
	// stageQueued: waiting for a slot, or for a create retry.
	stageQueued stage = iota
	// stageLaunching: handed to a launch worker; its create is about to
	// be sent or in flight.
	stageLaunching
	// stageCancelling: the outcome is known (revoked) while a create is in
	// flight; it finishes, with or without the pod that create made, once
	// the create returns.
	stageCancelling
	// stageLaunched: the pod exists and is watched; no outcome yet.
	stageLaunched
	// stageVerifying: the pod left the watch before an outcome was known:
	// it vanished, was adopted by another executor, or was labelled done.
	stageVerifying
	// stageStopping: the outcome is known but the pod may still run: it is
	// deleted, and the result waits for it to stop (Config.PodStopWait).
	stageStopping
	// stageFinishing: the outcome is known; the result is being saved.
	stageFinishing
	// stageReleasing: the result is saved; the logs are archived and the
	// pod is released (finalizer removed, deleted or labelled done).
	stageReleasing
	// stageDone: forgotten by the executor.
	stageDone
)

var stageNames = [...]string{
	stageQueued:     "queued",
	stageLaunching:  "launching",
	stageCancelling: "cancelling",
	stageLaunched:   "launched",
	stageVerifying:  "verifying",
	stageStopping:   "stopping",
	stageFinishing:  "finishing",
	stageReleasing:  "releasing",
	stageDone:       "done",
}

func (s stage) String() string {
	if int(s) < len(stageNames) {
		return stageNames[s]
	}
	return fmt.Sprintf("stage(%d)", s)
}

// transitions lists, for each stage, the stages an attempt may move to.
var transitions = [...][]stage{
	stageQueued: {
		stageLaunching, // a slot is open
		stageLaunched,  // the pod of an earlier create whose outcome was unknown appeared
		stageStopping,  // revoked or timed out; that earlier create's pod may run
		stageFinishing, // revoked or timed out
	},
	stageLaunching: {
		stageQueued,     // the create was refused, failed, or not sent (Stop, Lease lost)
		stageLaunched,   // created, or found already there
		stageCancelling, // revoked during the create
		stageStopping,   // rejected; an earlier create's pod may run
		stageFinishing,  // rejected
	},
	stageCancelling: {
		stageStopping,  // the create made a pod, or may have
		stageFinishing, // the create made none
	},
	stageLaunched: {
		stageVerifying, // the pod left the watch
		stageStopping,  // ended while it could still run, or revoked
		stageFinishing, // ended
	},
	stageVerifying: {
		stageLaunched,  // the watch sees the pod again
		stageStopping,  // revoked, or ended while it could still run
		stageFinishing, // vanished, or ended
		stageDone,      // adopted by another executor, or left unfinished
	},
	stageStopping:  {stageFinishing},
	stageFinishing: {stageReleasing},
	stageReleasing: {stageDone},
	stageDone:      nil,
}

// errIllegalTransition is wrapped by attempt.moveTo's error for a move the
// transitions table does not allow.
var errIllegalTransition = errors.New("executor: illegal attempt transition")

// canMove reports whether transitions allows from -> to.
func canMove(from, to stage) bool {
	return int(from) < len(transitions) && slices.Contains(transitions[from], to)
}

// hasResult reports whether the attempt's outcome is known in stage s.
func (s stage) hasResult() bool {
	switch s {
	case stageCancelling, stageStopping, stageFinishing, stageReleasing:
		return true
	}
	return false
}

// running reports whether an attempt in stage s holds one of the
// Parallelism slots.
func (s stage) running() bool {
	return s == stageLaunching || s == stageLaunched || s == stageVerifying
}

// podPresence is what the executor knows of an attempt's pod.
type podPresence uint8

const (
	podNone   podPresence = iota // no create succeeded (or none was sent)
	podMaybe                     // a create failed after it was sent: the pod may exist
	podExists                    // created, or seen by the watch
	podGone                      // it vanished without the finalizer holding it
)

// attempt is the executor's record of one attempt. Its fields are guarded
// by Executor.mu; stage changes only through moveTo.
type attempt struct {
	key      kubexec.TaskKey
	stage    stage
	queuedAt time.Time
	// launch is what the attempt needs until its pod exists (queued,
	// launching, cancelling), nil after and for an attempt found by the
	// watch or adopted: most attempts are running ones, and they do not
	// carry it.
	launch *launchState

	pod       podPresence
	namespace string
	podName   string // set once a create was sent that may have made the pod
	podUID    types.UID
	lastPod   *corev1.Pod

	// result is set once the outcome is known (stage.hasResult).
	result   *kubexec.Result
	resultAt time.Time
	// podMayRun: the pod may still run when the outcome is known, so it is
	// deleted whatever the GC policy (with grace), and the result waits in
	// stageStopping for it to stop.
	podMayRun bool
	// obs records when this executor first saw the pod waiting for a node
	// and on its node: the classification's timeouts count from those
	// sightings, on this executor's clock.
	obs watch.Observations
	// timed: the pod's last classification can change with time alone
	// (watch.Classification.RecheckAt), so resync classifies it again.
	timed bool
	grace *int64
	// stop, release and xcom record the progress of the steps of
	// stageStopping, stageReleasing and the XCom collection; moveTo checks
	// that each is fresh when its stage begins.
	stop    stopProgress
	release releaseProgress
	xcom    xcomProgress
}

// stopProgress is the progress of stageStopping: sent, the outcome was
// recorded on the pod and the pod deleted; gone, the pod was found gone.
// It stays set after the stage: the release reads sent (the pod is
// deleted already).
type stopProgress struct {
	sent, gone bool
}

// releaseProgress is the progress of stageReleasing: archived, the logs
// are in the LogArchiver; released, the finalizer is removed (and the done
// label set); deleteAt, when a delayed GC deletion is due.
type releaseProgress struct {
	archived, released bool
	deleteAt           time.Time
}

// xcomProgress is the collection of the attempt's XCom value: waiting asks
// the result worker to collect it while the sidecar keeps the pod running
// (stageLaunched); done says it was collected, with ref or err (which
// matches kubexec.ErrXComValue).
type xcomProgress struct {
	waiting, done bool
	ref           string
	err           error
}

// launchState is what an attempt needs until its pod exists.
type launchState struct {
	// spec is what Queue was given.
	spec podtemplate.TaskSpec
	// firstTry is when the attempt was first handed to a launch worker (it
	// had a slot); QueuedTimeout counts from it. lastRefusal says why the
	// latest create did not happen.
	firstTry    time.Time
	lastRefusal string
	// notBefore delays the next create after a transient failure.
	notBefore time.Time
	failures  int
	// heldBy names the executor instance whose live pod of this attempt a
	// create found: the attempt waits for it, and QueuedTimeout does not
	// end it while it does.
	heldBy string
}

// refusal is why a's latest create did not happen, if it is known.
func (a *attempt) refusal() string {
	if a.launch == nil {
		return ""
	}
	return a.launch.lastRefusal
}

// refused records why a create of a did not happen.
func (a *attempt) refused(why string) {
	if a.launch != nil {
		a.launch.lastRefusal = why
	}
}

// failed records a create of a that failed, and returns how many have
// (counting this one).
func (a *attempt) failed(why string) int {
	if a.launch == nil {
		return 1
	}
	a.launch.lastRefusal = why
	a.launch.failures++
	return a.launch.failures
}

// moveTo moves a to stage to, or returns an error wrapping
// errIllegalTransition (and leaves a as it was) when transitions does not
// allow the move or a's records break the rules of the stage it enters:
// an outcome known from stageCancelling on, and the progress of a stage's
// step fresh when it begins.
func (a *attempt) moveTo(to stage) error {
	if !canMove(a.stage, to) {
		return fmt.Errorf("%w: %s from %s to %s", errIllegalTransition, a.key, a.stage, to)
	}
	var broken string
	switch {
	case to == stageStopping && a.stop != (stopProgress{}):
		broken = "its stop was already under way"
	case to == stageReleasing && a.release != (releaseProgress{}):
		broken = "its release was already under way"
	case to < stageReleasing && a.release != (releaseProgress{}):
		broken = "it was released"
	}
	if broken != "" {
		return fmt.Errorf("%w: %s from %s to %s: %s", errIllegalTransition, a.key, a.stage, to, broken)
	}
	a.stage = to
	return nil
}

// hasPod reports whether a has a pod to wait for, read, or release: one
// that exists, or may exist after a create whose outcome is unknown.
func (a *attempt) hasPod() bool {
	return (a.pod == podExists || a.pod == podMaybe) && a.podName != ""
}

// setPod records that pod is a's pod.
func (a *attempt) setPod(pod *corev1.Pod) {
	a.pod = podExists
	a.namespace, a.podName, a.podUID = pod.Namespace, pod.Name, pod.UID
}

// creating reports whether a create of a's pod is handed out or in flight.
func (a *attempt) creating() bool {
	return a.stage == stageLaunching || a.stage == stageCancelling
}

// settledStage is the stage an attempt whose outcome is known moves to
// once no create is in flight: stopping while its pod may still run, else
// finishing.
func (a *attempt) settledStage() stage {
	if a.podMayRun && a.hasPod() {
		return stageStopping
	}
	return stageFinishing
}

// unsaved reports whether a's result is known but not yet saved, or saved
// while its pod still holds the tracking finalizer: Stop waits for these.
func (a *attempt) unsaved() bool {
	switch a.stage {
	case stageCancelling, stageStopping, stageFinishing:
		return true
	case stageReleasing:
		return !a.release.released && a.hasPod()
	}
	return false
}
