package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/kubernetes/third_party/forked/golang/expansion"
)

// Why a pod's containers are being stopped.
const (
	stopDeleted  = "Deleted"
	stopDeadline = "DeadlineExceeded"
	stopShutdown = "Shutdown"
)

const (
	maxTerminationMessage  = 4096
	fallbackLogLines       = 80
	fallbackLogBytes       = 2048
	imagePullAttemptLength = 2 * time.Second
	configRetryDelay       = 2 * time.Second
	invalidImageRetryDelay = 10 * time.Second
)

// podRuntime runs one pod: a worker goroutine sets up its folder and
// volumes, runs the init containers in order and then the containers
// together, restarting them as the restart policy says, and ends when no
// container will run again. Every change of state is sent to
// virtual-kubelet as a new pod status.
type podRuntime struct {
	p   *provider
	key string
	uid types.UID
	dir string
	log *slog.Logger

	mu           sync.Mutex
	pod          *corev1.Pod // metadata and spec, as last seen in the API
	startTime    metav1.Time
	sandboxReady bool
	initCs       []*ctr
	mainCs       []*ctr
	conds        map[corev1.PodConditionType]condState
	stopping     bool   // no container starts any more
	stopReason   string // stopDeleted, stopDeadline, stopShutdown
	killed       bool   // the grace period is over: SIGKILL
	finished     bool   // no process left, final status computed
	lost         bool   // the pod ran under an earlier agent; its processes are gone
	release      bool   // delete the pod from the API once its final status is there
	cleanup      bool   // the pod is gone from the API: remove its folder when done
	graceTimer   *time.Timer
	killAt       time.Time // when graceTimer fires
	deadline     *time.Timer
	lastVolMsg   string
	// Sidecars (init containers with restartPolicy Always) run until the
	// containers are done, then get SIGTERM, and SIGKILL after the grace
	// period.
	sidecarsDone   bool
	sidecarsKilled bool
	sidecarTimer   *time.Timer
	sidecarStop    chan struct{}

	stopCh      chan struct{} // closed when stopping starts
	done        chan struct{} // closed when the worker has returned
	kickCh      chan struct{} // a status change to send
	forgotten   chan struct{} // closed when the pod is dropped
	releaseOnce sync.Once
	cleanOnce   sync.Once
}

type condState struct {
	status corev1.ConditionStatus
	since  metav1.Time
}

// ctr is one container of a pod. Its fields are guarded by podRuntime.mu.
type ctr struct {
	spec    corev1.Container
	isInit  bool
	sidecar bool // an init container with restartPolicy Always
	dir     string

	state        corev1.ContainerState
	lastState    corev1.ContainerState
	restartCount int32
	runs         int // runs started
	crashes      int // runs that ended and were restarted
	pullFailures int
	id           string
	image        imageCheck
	proc         *process
	env          []string // of the current run, for exec
	uid, gid     *int64
	log          *logFile
	logPath      string // current (or last) run
	prevLogPath  string // the run before
	pulledEvent  bool
	lastWaitMsg  string
}

func newPodRuntime(p *provider, pod *corev1.Pod) *podRuntime {
	r := &podRuntime{
		p:           p,
		key:         podKey(pod.Namespace, pod.Name),
		uid:         pod.UID,
		dir:         p.podDir(string(pod.UID)),
		log:         p.log.With("pod", podKey(pod.Namespace, pod.Name)),
		pod:         pod.DeepCopy(),
		startTime:   metav1.Now(),
		conds:       map[corev1.PodConditionType]condState{},
		stopCh:      make(chan struct{}),
		sidecarStop: make(chan struct{}),
		done:        make(chan struct{}),
		kickCh:      make(chan struct{}, 1),
		forgotten:   make(chan struct{}),
	}
	if pod.Status.StartTime != nil {
		r.startTime = *pod.Status.StartTime
	}
	for _, c := range pod.Spec.InitContainers {
		r.initCs = append(r.initCs, r.newCtr(c, true, pod))
	}
	for _, c := range pod.Spec.Containers {
		r.mainCs = append(r.mainCs, r.newCtr(c, false, pod))
	}
	r.lost = ranBefore(pod)
	if r.lost {
		r.markLost(pod)
	}
	return r
}

func (r *podRuntime) newCtr(c corev1.Container, isInit bool, pod *corev1.Pod) *ctr {
	reason := "ContainerCreating"
	if isInit || len(pod.Spec.InitContainers) > 0 {
		reason = "PodInitializing"
	}
	return &ctr{
		spec:    c,
		isInit:  isInit,
		sidecar: isInit && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways,
		dir:     filepath.Join(r.dir, "containers", c.Name),
		state:   corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}},
		image:   imageCheck{ref: c.Image},
	}
}

// ranBefore reports whether the pod's status shows containers that ran: an
// earlier agent for this node ran it, and its processes died with it.
func ranBefore(pod *corev1.Pod) bool {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, cs := range list {
			if cs.State.Running != nil || cs.State.Terminated != nil || cs.LastTerminationState.Terminated != nil {
				return true
			}
		}
	}
	return false
}

// markLost takes the containers' last known states from the API and ends
// the ones that were running, as the kubelet does for containers it cannot
// find: ContainerStatusUnknown, exit code 137.
func (r *podRuntime) markLost(pod *corev1.Pod) {
	byName := map[string]corev1.ContainerStatus{}
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, cs := range list {
			byName[cs.Name] = cs
		}
	}
	for _, c := range append(append([]*ctr{}, r.initCs...), r.mainCs...) {
		cs, ok := byName[c.spec.Name]
		if !ok {
			continue
		}
		c.state = *cs.State.DeepCopy()
		c.lastState = *cs.LastTerminationState.DeepCopy()
		c.restartCount = cs.RestartCount
		c.id = cs.ContainerID
		c.image = imageCheck{ref: cs.Image, id: cs.ImageID}
		// The logs of its runs are still on disk.
		if runs := logRuns(c.dir); len(runs) > 0 {
			c.logPath = filepath.Join(c.dir, fmt.Sprintf("%d.log", runs[len(runs)-1]))
			if len(runs) > 1 {
				c.prevLogPath = filepath.Join(c.dir, fmt.Sprintf("%d.log", runs[len(runs)-2]))
			}
		}
		if c.state.Running != nil {
			c.state = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode:    137,
				Reason:      "ContainerStatusUnknown",
				Message:     "The container could not be located when the pod was terminated",
				StartedAt:   c.state.Running.StartedAt,
				FinishedAt:  metav1.Now(),
				ContainerID: cs.ContainerID,
			}}
		}
	}
}

// logRuns lists the runs that have a log file in container folder dir, in
// order.
func logRuns(dir string) []int {
	entries, _ := os.ReadDir(dir)
	var runs []int
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".log"); ok {
			if i, err := strconv.Atoi(n); err == nil {
				runs = append(runs, i)
			}
		}
	}
	slices.Sort(runs)
	return runs
}

func (r *podRuntime) start() {
	go r.notifier()
	go r.run()
}

// update takes new metadata and spec from the API.
func (r *podRuntime) update(pod *corev1.Pod) {
	r.mu.Lock()
	old := r.pod.Spec.ActiveDeadlineSeconds
	r.pod = pod.DeepCopy()
	changed := !equalInt64Ptr(old, pod.Spec.ActiveDeadlineSeconds)
	r.mu.Unlock()
	if changed {
		r.armDeadline()
	}
	r.kick()
}

func equalInt64Ptr(a, b *int64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func (r *podRuntime) podCopy() *corev1.Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pod.DeepCopy()
}

func (r *podRuntime) podWithStatus() *corev1.Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	pod := r.pod.DeepCopy()
	pod.Status = r.statusLocked()
	return pod
}

// kick asks the notifier to send the current status.
func (r *podRuntime) kick() {
	select {
	case r.kickCh <- struct{}{}:
	default:
	}
}

// notifier sends the pod's status to virtual-kubelet, one at a time and
// always the latest, so an older status never overtakes a newer one.
func (r *podRuntime) notifier() {
	for {
		select {
		case <-r.kickCh:
		case <-r.forgotten:
			return
		case <-r.p.ctx.Done():
			return
		}
		r.p.notifyPod(r.podWithStatus())
	}
}

func (r *podRuntime) event(eventType, reason, format string, args ...any) {
	r.p.recorder.Eventf(r.podCopy(), eventType, reason, format, args...)
}

func (r *podRuntime) isStopping() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopping
}

// sleep waits for d, or until the pod starts stopping (false).
func (r *podRuntime) sleep(d time.Duration) bool {
	if d <= 0 {
		return !r.isStopping()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return !r.isStopping()
	case <-r.stopCh:
		return false
	}
}

// ended reports whether c must not run again: the pod is stopping, or c is
// a sidecar and the containers are done.
func (r *podRuntime) ended(c *ctr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopping || (c.sidecar && r.sidecarsDone)
}

// sleepFor is sleep for container c: a sidecar also wakes when the
// containers are done.
func (r *podRuntime) sleepFor(c *ctr, d time.Duration) bool {
	if !c.sidecar {
		return r.sleep(d)
	}
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	select {
	case <-t.C:
		return !r.ended(c)
	case <-r.stopCh:
		return false
	case <-r.sidecarStop:
		return false
	}
}

func (r *podRuntime) run() {
	defer r.finish()
	if r.lost {
		r.log.Info("the pod ran under an earlier agent and its processes are gone: marking it failed")
		return
	}
	r.armDeadline()
	vols, ok := r.setupSandbox()
	if !ok {
		return
	}
	var sidecars sync.WaitGroup
	defer func() {
		r.stopSidecars()
		sidecars.Wait()
	}()
	for _, c := range r.initCs {
		if c.sidecar {
			sidecars.Go(func() { r.runContainer(c, vols) })
			if !r.waitStarted(c) {
				return
			}
			continue
		}
		if !r.runContainer(c, vols) {
			return
		}
	}
	var wg sync.WaitGroup
	for _, c := range r.mainCs {
		wg.Go(func() { r.runContainer(c, vols) })
	}
	wg.Wait()
}

// waitStarted waits until sidecar c runs (true) or the pod stops (false).
func (r *podRuntime) waitStarted(c *ctr) bool {
	for {
		r.mu.Lock()
		started, stopping := c.state.Running != nil, r.stopping
		r.mu.Unlock()
		switch {
		case started:
			return true
		case stopping:
			return false
		}
		if !r.sleep(50 * time.Millisecond) {
			return false
		}
	}
}

// stopSidecars ends the sidecars once the containers are done: SIGTERM,
// then SIGKILL after the pod's termination grace period.
func (r *podRuntime) stopSidecars() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sidecarsDone {
		return
	}
	r.sidecarsDone = true
	close(r.sidecarStop)
	signalled := false
	for _, c := range r.initCs {
		if c.sidecar && c.proc != nil {
			c.proc.signal(syscall.SIGTERM)
			signalled = true
		}
	}
	if !signalled {
		return
	}
	r.sidecarTimer = time.AfterFunc(gracePeriod(&corev1.Pod{Spec: r.pod.Spec}), func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.sidecarsKilled = true
		for _, c := range r.initCs {
			if c.sidecar && c.proc != nil {
				c.proc.signal(syscall.SIGKILL)
			}
		}
	})
}

// armDeadline (re)starts the activeDeadlineSeconds timer, counted from the
// pod's start time.
func (r *podRuntime) armDeadline() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.deadline != nil {
		r.deadline.Stop()
		r.deadline = nil
	}
	ads := r.pod.Spec.ActiveDeadlineSeconds
	if ads == nil || r.finished || r.stopping {
		return
	}
	left := time.Until(r.startTime.Add(time.Duration(*ads) * time.Second))
	r.deadline = time.AfterFunc(max(left, 0), func() {
		r.mu.Lock()
		done := r.finished || r.stopping
		grace := gracePeriod(&corev1.Pod{Spec: r.pod.Spec})
		r.mu.Unlock()
		if done {
			return
		}
		r.log.Info("active deadline exceeded: stopping the pod")
		r.event(corev1.EventTypeNormal, "DeadlineExceeded", "Pod was active on the node longer than the specified deadline")
		r.terminate(grace, stopDeadline, false, false)
	})
}

// setupSandbox makes the pod's folders and volumes, retrying while a volume
// cannot be set up yet.
func (r *podRuntime) setupSandbox() (map[string]volume, bool) {
	delay := 500 * time.Millisecond
	for {
		pod := r.podCopy()
		err := os.MkdirAll(filepath.Join(r.dir, "work"), 0o777)
		if err == nil {
			err = os.Chmod(filepath.Join(r.dir, "work"), 0o777)
		}
		var vols map[string]volume
		if err == nil {
			vols, err = r.setupVolumes(r.p.ctx, pod)
		}
		if err == nil {
			r.mu.Lock()
			r.sandboxReady = true
			r.mu.Unlock()
			r.kick()
			return vols, true
		}
		reason := "ContainerCreating"
		var ve *volumeError
		if errors.As(err, &ve) && ve.permanent {
			reason = "CreateContainerConfigError"
		}
		r.mu.Lock()
		for _, c := range append(append([]*ctr{}, r.initCs...), r.mainCs...) {
			c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: err.Error()}}
		}
		first := r.lastVolMsg != err.Error()
		r.lastVolMsg = err.Error()
		r.mu.Unlock()
		r.kick()
		if first {
			r.log.Info("pod volumes not ready", "reason", reason, "err", err)
			r.event(corev1.EventTypeWarning, "FailedMount", "%s", err.Error())
		}
		if !r.sleep(delay) {
			return nil, false
		}
		delay = min(delay*2, 30*time.Second)
	}
}

// setWaiting puts c in a waiting state; a terminated run becomes its last
// state.
func (r *podRuntime) setWaiting(c *ctr, reason, msg string) bool {
	r.mu.Lock()
	if c.state.Terminated != nil {
		c.lastState = c.state
	}
	c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
	changed := c.lastWaitMsg != reason+msg
	c.lastWaitMsg = reason + msg
	r.mu.Unlock()
	r.kick()
	return changed
}

// runContainer runs c until it is not restarted any more, and reports
// whether its last run exited with 0.
func (r *podRuntime) runContainer(c *ctr, vols map[string]volume) bool {
	configDelay := configRetryDelay
	for {
		if r.ended(c) {
			return false
		}
		pod := r.podCopy()
		name := c.spec.Name

		img := checkImage(c.spec.Image, r.p.cfg.imagePullFailure)
		if img.invalid != "" {
			if r.setWaiting(c, "InvalidImageName", img.invalid) {
				r.event(corev1.EventTypeWarning, "InspectFailed", "%s", img.invalid)
				r.event(corev1.EventTypeWarning, "Failed", "Error: InvalidImageName")
			}
			if !r.sleepFor(c, invalidImageRetryDelay) {
				return false
			}
			continue
		}
		if img.pullErr != "" {
			r.event(corev1.EventTypeNormal, "Pulling", "Pulling image %q", c.spec.Image)
			r.setWaiting(c, "ErrImagePull", img.pullErr)
			r.event(corev1.EventTypeWarning, "Failed", "%s", img.pullErr)
			r.event(corev1.EventTypeWarning, "Failed", "Error: ErrImagePull")
			if !r.sleepFor(c, imagePullAttemptLength) {
				return false
			}
			r.mu.Lock()
			c.pullFailures++
			delay := backoff(r.p.cfg.imagePullBackoff, r.p.cfg.maxBackoff, c.pullFailures-1)
			r.mu.Unlock()
			r.setWaiting(c, "ImagePullBackOff", fmt.Sprintf("Back-off pulling image %q: ErrImagePull: %s", c.spec.Image, img.pullErr))
			r.event(corev1.EventTypeNormal, "BackOff", "Back-off pulling image %q", c.spec.Image)
			r.event(corev1.EventTypeWarning, "Failed", "Error: ImagePullBackOff")
			if !r.sleepFor(c, delay) {
				return false
			}
			continue
		}
		r.mu.Lock()
		c.image = img
		c.pullFailures = 0
		first := !c.pulledEvent
		c.pulledEvent = true
		r.mu.Unlock()
		if first {
			r.event(corev1.EventTypeNormal, "Pulled", "Container image %q already present on machine", c.spec.Image)
		}

		env, mounts, argv, err := r.prepareRun(pod, c, vols)
		if err != nil {
			if r.setWaiting(c, "CreateContainerConfigError", err.Error()) {
				r.event(corev1.EventTypeWarning, "Failed", "Error: %s", err.Error())
			}
			if !r.sleepFor(c, configDelay) {
				return false
			}
			configDelay = min(configDelay*2, 30*time.Second)
			continue
		}
		configDelay = configRetryDelay

		code, started := r.startAndWait(pod, c, env, mounts, argv)
		if !started {
			return false
		}
		if r.ended(c) || !shouldRestart(pod, c, code) {
			return code == 0
		}
		r.mu.Lock()
		c.crashes++
		delay := time.Duration(0)
		if c.crashes > 1 {
			delay = backoff(r.p.cfg.crashLoopBackoff, r.p.cfg.maxBackoff, c.crashes-2)
		}
		r.mu.Unlock()
		if delay > 0 {
			r.setWaiting(c, "CrashLoopBackOff", fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", delay, name, pod.Name, pod.Namespace, pod.UID))
			r.event(corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s_%s(%s)", name, pod.Name, pod.Namespace, pod.UID)
			if !r.sleepFor(c, delay) {
				return false
			}
		}
	}
}

// backoff is first doubled n times, at most limit.
func backoff(first, limit time.Duration, n int) time.Duration {
	d := first
	for range n {
		d *= 2
		if d >= limit {
			return limit
		}
	}
	return min(d, limit)
}

// shouldRestart applies the restart policy to a run that exited with code.
func shouldRestart(pod *corev1.Pod, c *ctr, code int32) bool {
	policy := pod.Spec.RestartPolicy
	if c.spec.RestartPolicy != nil {
		policy = corev1.RestartPolicy(*c.spec.RestartPolicy)
	}
	if c.sidecar {
		return true
	}
	if c.isInit {
		return code != 0 && policy != corev1.RestartPolicyNever
	}
	switch policy {
	case corev1.RestartPolicyAlways:
		return true
	case corev1.RestartPolicyOnFailure:
		return code != 0
	}
	return false
}

// prepareRun resolves what a run of c needs: its environment, its mounts
// and its command line.
func (r *podRuntime) prepareRun(pod *corev1.Pod, c *ctr, vols map[string]volume) ([]string, []mountSpec, []string, error) {
	uid := runAsUser(pod, &c.spec)
	if runAsNonRoot(pod, &c.spec) && (uid == nil || *uid == 0) {
		// The kubelet's words, with its way of naming a pod: name_namespace(uid).
		return nil, nil, nil, configErrorf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", pod.Name+"_"+pod.Namespace+"("+string(pod.UID)+")", c.spec.Name)
	}
	env, err := r.containerEnv(r.p.ctx, pod, &c.spec)
	if err != nil {
		return nil, nil, nil, err
	}
	mounts, err := containerMounts(&c.spec, vols, env)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(c.spec.Command) == 0 && len(c.spec.Args) == 0 {
		return nil, nil, nil, configErrorf("container %s has neither command nor args: the kubexec process node runs the command on the host and has no image entrypoint to fall back on", c.spec.Name)
	}
	envMap := make(map[string]string, len(env))
	for _, kv := range env {
		for i := range len(kv) {
			if kv[i] == '=' {
				envMap[kv[:i]] = kv[i+1:]
				break
			}
		}
	}
	mapping := expansion.MappingFuncFor(envMap)
	var argv []string
	for _, a := range append(append([]string{}, c.spec.Command...), c.spec.Args...) {
		argv = append(argv, expansion.Expand(a, mapping))
	}
	return env, mounts, argv, nil
}

func newContainerID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startAndWait starts one run of c and waits for it to end. started is
// false when the pod began stopping before the run could start.
func (r *podRuntime) startAndWait(pod *corev1.Pod, c *ctr, env []string, mounts []mountSpec, argv []string) (code int32, started bool) {
	r.mu.Lock()
	if r.stopping || (c.sidecar && r.sidecarsDone) {
		r.mu.Unlock()
		return 0, false
	}
	run := c.runs
	if c.runs > 0 {
		c.restartCount++
		if c.state.Terminated != nil {
			c.lastState = c.state
		}
	}
	c.runs++
	c.id = "kubexec://" + newContainerID()
	id := c.id
	if c.logPath != "" {
		c.prevLogPath = c.logPath
	}
	c.logPath = filepath.Join(c.dir, fmt.Sprintf("%d.log", run))
	logPath := c.logPath
	r.mu.Unlock()

	startErr := func(err error) (int32, bool) {
		now := metav1.Now()
		msg := "failed to start container process: " + err.Error()
		r.mu.Lock()
		// The kubelet reports a container that never started with
		// startedAt 1970-01-01T00:00:00Z (the CRI's zero), not now.
		c.state = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 128, Reason: "StartError", Message: msg, StartedAt: metav1.Unix(0, 0), FinishedAt: now, ContainerID: id,
		}}
		r.mu.Unlock()
		r.kick()
		r.log.Info("container failed to start", "container", c.spec.Name, "err", err)
		r.event(corev1.EventTypeWarning, "Failed", "Error: %s", msg)
		return 128, true
	}

	root := filepath.Join(c.dir, "rootfs-"+strconv.Itoa(run))
	tmp := filepath.Join(c.dir, "tmp-"+strconv.Itoa(run))
	termPath := filepath.Join(c.dir, "termination-log-"+strconv.Itoa(run))
	for _, d := range []string{root, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return startErr(err)
		}
	}
	if err := os.Chmod(tmp, 0o1777); err != nil {
		return startErr(err)
	}
	if err := os.WriteFile(termPath, nil, 0o666); err != nil {
		return startErr(err)
	}
	_ = os.Chmod(termPath, 0o666)
	lf, err := newLogFile(logPath)
	if err != nil {
		return startErr(err)
	}

	work := filepath.Join(r.dir, "work")
	termTarget := c.spec.TerminationMessagePath
	if termTarget == "" {
		termTarget = corev1.TerminationMessagePathDefault
	}
	all := append([]mountSpec{{Source: work, Target: work}}, mounts...)
	all = append(all, mountSpec{Source: termPath, Target: termTarget, File: true})
	cwd := c.spec.WorkingDir
	if cwd == "" {
		cwd = work
	}
	uid, gid := runAsUser(pod, &c.spec), runAsGroup(pod, &c.spec)
	if uid != nil && gid == nil {
		zero := int64(0)
		gid = &zero
	}
	var groups []int64
	if pod.Spec.SecurityContext != nil {
		groups = append(groups, pod.Spec.SecurityContext.SupplementalGroups...)
		if pod.Spec.SecurityContext.FSGroup != nil {
			groups = append(groups, *pod.Spec.SecurityContext.FSGroup)
		}
	}
	var memLimit int64
	if q, ok := c.spec.Resources.Limits[corev1.ResourceMemory]; ok {
		memLimit = q.Value()
	}
	spec := procSpec{
		init: initConfig{
			Root: root, TmpDir: tmp, Mounts: all, Hostname: podHostname(pod), Cwd: cwd,
			Argv: argv, Env: env, UID: uid, GID: gid, Groups: groups,
		},
		logFile:  lf,
		memLimit: memLimit,
		cgroup:   filepath.Join(string(pod.UID), fmt.Sprintf("%s-%d", c.spec.Name, run)),
	}
	proc, err := startProcess(spec, r.p.mem)
	if err != nil {
		lf.finish()
		return startErr(err)
	}
	startedAt := metav1.Now()
	r.mu.Lock()
	c.proc = proc
	c.log = lf
	c.env = env
	c.uid, c.gid = uid, gid
	c.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt}}
	switch {
	case r.killed, c.sidecar && r.sidecarsKilled:
		proc.signal(syscall.SIGKILL)
	case r.stopping, c.sidecar && r.sidecarsDone:
		proc.signal(syscall.SIGTERM)
	}
	r.mu.Unlock()
	r.kick()
	r.log.Info("container started", "container", c.spec.Name, "pid", proc.pid, "run", run)
	r.event(corev1.EventTypeNormal, "Created", "Created container: %s", c.spec.Name)
	r.event(corev1.EventTypeNormal, "Started", "Started container %s", c.spec.Name)

	<-proc.done
	res := proc.result
	msg := readTerminationMessage(termPath)
	if msg == "" && res.exitCode != 0 && c.spec.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
		msg = logTail(logPath, fallbackLogLines, fallbackLogBytes)
	}
	reason := "Error"
	switch {
	case res.oomKilled:
		reason = "OOMKilled"
	case res.exitCode == 0:
		reason = "Completed"
	}
	r.mu.Lock()
	c.proc = nil
	c.state = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode:    res.exitCode,
		Reason:      reason,
		Message:     msg,
		StartedAt:   startedAt,
		FinishedAt:  metav1.NewTime(res.finishedAt),
		ContainerID: id,
	}}
	r.mu.Unlock()
	r.kick()
	_ = os.RemoveAll(root)
	r.log.Info("container exited", "container", c.spec.Name, "exitCode", res.exitCode, "reason", reason)
	return res.exitCode, true
}

func readTerminationMessage(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	buf := make([]byte, maxTerminationMessage)
	n, _ := io.ReadFull(f, buf)
	return string(buf[:n])
}

// terminate stops the pod: no container starts any more, running ones get
// SIGTERM now and SIGKILL when grace is over. release and cleanup say what
// to do once every process is gone (see DeletePod).
func (r *podRuntime) terminate(grace time.Duration, why string, release, cleanup bool) {
	r.mu.Lock()
	if cleanup {
		r.cleanup = true
	}
	if release {
		r.release = true
	}
	if r.finished {
		doCleanup, doRelease := r.cleanup, r.release
		r.mu.Unlock()
		switch {
		case doCleanup:
			r.doCleanup()
		case doRelease:
			go r.releaseFromAPI()
		}
		return
	}
	if !r.stopping {
		r.stopping = true
		r.stopReason = why
		close(r.stopCh)
		if r.deadline != nil {
			r.deadline.Stop()
		}
		var names []string
		for _, c := range append(append([]*ctr{}, r.initCs...), r.mainCs...) {
			if c.proc != nil {
				c.proc.signal(syscall.SIGTERM)
				names = append(names, c.spec.Name)
			}
		}
		r.killAt = time.Now().Add(grace)
		r.graceTimer = time.AfterFunc(grace, r.killAll)
		r.mu.Unlock()
		for _, n := range names {
			r.event(corev1.EventTypeNormal, "Killing", "Stopping container %s", n)
		}
		r.log.Info("stopping the pod", "why", why, "grace", grace)
		r.kick()
		return
	}
	// A shorter grace period (a second delete, a force delete) wins.
	if killAt := time.Now().Add(grace); !r.killed && killAt.Before(r.killAt) {
		r.killAt = killAt
		r.graceTimer.Reset(grace)
	}
	r.mu.Unlock()
}

// killAll sends SIGKILL to every running container of the pod.
func (r *podRuntime) killAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.killed = true
	for _, c := range append(append([]*ctr{}, r.initCs...), r.mainCs...) {
		if c.proc != nil {
			c.proc.signal(syscall.SIGKILL)
		}
	}
}

// finish runs when the worker is done: no process is left.
func (r *podRuntime) finish() {
	r.mu.Lock()
	r.finished = true
	if r.deadline != nil {
		r.deadline.Stop()
	}
	if r.graceTimer != nil {
		r.graceTimer.Stop()
	}
	if r.sidecarTimer != nil {
		r.sidecarTimer.Stop()
	}
	doCleanup, doRelease := r.cleanup, r.release
	r.mu.Unlock()
	r.kick()
	close(r.done)
	r.log.Info("pod finished", "phase", r.podWithStatus().Status.Phase)
	switch {
	case doCleanup:
		r.doCleanup()
	case doRelease:
		go r.releaseFromAPI()
	}
}

// releaseFromAPI deletes the pod from the API with no grace period once its
// final status is there, as the kubelet does after a graceful deletion.
// Finalizers of others still hold it.
func (r *podRuntime) releaseFromAPI() {
	r.releaseOnce.Do(func() {
		ctx := r.p.ctx
		pods := r.p.client.CoreV1().Pods(r.pod.Namespace)
		name := r.pod.Name
		zero := int64(0)
		opts := metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &r.uid}}
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			pod, err := pods.Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) || (err == nil && pod.UID != r.uid) {
				return
			}
			if err == nil && (pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed) {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
		err := pods.Delete(ctx, name, opts)
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			r.log.Warn("release the deleted pod", "err", err)
		}
	})
}

// doCleanup removes the pod's folder and forgets it: it is gone from the
// API and none of its processes is left.
func (r *podRuntime) doCleanup() {
	r.cleanOnce.Do(func() {
		r.p.forget(r)
		close(r.forgotten)
		if err := os.RemoveAll(r.dir); err != nil {
			r.log.Warn("remove the pod folder", "err", err)
		}
		r.log.Info("pod removed")
	})
}
