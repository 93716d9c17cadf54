package xcom

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/podtemplate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
)

// ErrInvalidConfig is wrapped by the errors returned for an invalid
// configuration; the error names the field and what to use instead.
var ErrInvalidConfig = errors.New("xcom: invalid config")

// Config configures a Collector. The zero Config is valid.
type Config struct {
	// DefaultChannel is the channel of pods whose AnnotationChannel is not
	// set. Default ChannelTerminationMessage.
	DefaultChannel Channel
	// MaxBytes is the largest value accepted from the sidecar channel, in
	// bytes, for pods without AnnotationMaxBytes. (The termination message
	// channel is also capped at 4096 bytes by the kubelet.) Default 4 MiB.
	MaxBytes int64
	// Logger receives what the Collector retries. Default: discarded.
	Logger *slog.Logger
	// Pod prepares each pod for its channel when the Collector is used as
	// the executor's Config.XCom (it is then also the pods' middleware;
	// see MutatePod): the same settings as Middleware's.
	Pod PodConfig
	// GiveUpAfter is how long the sidecar of a pod may leave exec
	// unanswered (its node is gone or its kubelet is down, or exec is
	// refused) before Collect stops returning an error to retry. A value
	// not read by then is lost: Collect returns a final *ValueError
	// (ErrUnreadable) that says so, so that a dead node does not hold the
	// attempt's result, and its pod, forever; a value read before is
	// returned, and the sidecar is left to its node. It is measured with
	// the Collector's own clock (never the node's) from the first exec in
	// the pod that failed with none answered since; a new Collector (after
	// a restart) starts again. An exec that hangs is cut off when the bound
	// passes (but is given at least 30s), so it cannot hold Collect longer.
	// Default 10m, as logs.Config.GiveUpAfter.
	GiveUpAfter time.Duration
}

const (
	defaultMaxBytes    = 4 << 20
	defaultGiveUpAfter = 10 * time.Minute
	// minExecTimeout is the least time an exec is given, even when the
	// sidecar's silence has passed GiveUpAfter: a node that came back
	// answers.
	minExecTimeout = 30 * time.Second
	// readAttempts is how many execs one read of the value tries.
	readAttempts = 4
	// readRetryDelay is the pause before the second read; it grows by as
	// much before each further one.
	readRetryDelay = 200 * time.Millisecond
)

// Collector reads the value of an attempt whose main container has ended,
// validates it, stores it in a Backend and returns its reference. It is
// safe for concurrent use, but calls for the same attempt must not overlap.
type Collector struct {
	client     kubernetes.Interface
	config     *rest.Config
	backend    Backend
	cfg        Config
	middleware podtemplate.Middleware

	// Seams for the unit tests: the clock, exec, and the shortest exec
	// (minExecTimeout) and retry pause (readRetryDelay).
	now            func() time.Time
	execFn         func(ctx context.Context, pod *corev1.Pod, container string, cmd []string, stdout, stderr io.Writer) (int, error)
	minExecTimeout time.Duration
	retryDelay     time.Duration

	mu     sync.Mutex
	silent map[string]silence // by podID
}

// MutatePod prepares pod for its XCom channel, as Middleware(cfg.Pod)
// does: an executor whose Config.XCom is the Collector applies it to every
// pod it builds, so that one value enables XCom. A pod that a Builder
// already prepared with Middleware (its main container has EnvPath) is
// left as it is.
func (c *Collector) MutatePod(ctx context.Context, pod *corev1.Pod) error {
	if main := mainContainer(pod); main != nil {
		for _, e := range main.Env {
			if e.Name == EnvPath {
				return nil
			}
		}
	}
	return c.middleware(ctx, pod)
}

// Waiting reports whether pod's main container has ended while the XCom
// sidecar keeps the pod running, so that the value should be collected
// now (see the package function Waiting).
func (c *Collector) Waiting(pod *corev1.Pod) bool { return Waiting(pod) }

// NewCollector returns a Collector that reads pods with client, execs in
// them with config (the REST configuration client was made from; exec
// needs it to open streams), and stores values in backend.
func NewCollector(client kubernetes.Interface, config *rest.Config, backend Backend, cfg Config) (*Collector, error) {
	switch {
	case client == nil:
		return nil, errors.New("xcom: NewCollector: client is nil: pass a kubernetes.Interface, e.g. kubernetes.NewForConfig(restConfig)")
	case config == nil:
		return nil, errors.New("xcom: NewCollector: config is nil: pass the *rest.Config the client was made from")
	case backend == nil:
		return nil, errors.New("xcom: NewCollector: backend is nil: pass a Backend, e.g. xcom.NewFileBackend(dir)")
	}
	if cfg.DefaultChannel == "" {
		cfg.DefaultChannel = ChannelTerminationMessage
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = defaultMaxBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.GiveUpAfter == 0 {
		cfg.GiveUpAfter = defaultGiveUpAfter
	}
	switch {
	case cfg.DefaultChannel != ChannelTerminationMessage && cfg.DefaultChannel != ChannelSidecar && cfg.DefaultChannel != ChannelNone:
		return nil, fmt.Errorf("%w: Config.DefaultChannel is %q; use %q, %q or %q", ErrInvalidConfig, cfg.DefaultChannel, ChannelTerminationMessage, ChannelSidecar, ChannelNone)
	case cfg.MaxBytes < 0:
		return nil, fmt.Errorf("%w: Config.MaxBytes is %d; use a positive number of bytes (default 4 MiB)", ErrInvalidConfig, cfg.MaxBytes)
	case cfg.GiveUpAfter < 0:
		return nil, fmt.Errorf("%w: Config.GiveUpAfter is %s; use a positive duration (default %s)", ErrInvalidConfig, cfg.GiveUpAfter, defaultGiveUpAfter)
	}
	c := &Collector{client: client, config: config, backend: backend, cfg: cfg, middleware: Middleware(cfg.Pod),
		now: time.Now, minExecTimeout: minExecTimeout, retryDelay: readRetryDelay}
	c.execFn = c.exec
	return c, nil
}

// Collect returns the reference, in the Backend, to the value of key's
// attempt, whose pod is pod: "" when the attempt produced none (it has no
// channel, its main container did not succeed, or it wrote nothing and
// the value is not required). Call it when the attempt has ended, or
// earlier when Waiting(pod) says the pod waits for it; for sidecar pods
// it also stops the sidecar, so that the pod ends. Calling it again for
// the same attempt gives the same answer, also after a restart.
//
// A *ValueError (ErrTooLarge, ErrNotJSON, ErrMissing, ErrUnreadable) is
// final: record it in the attempt's Result. Any other error (the API
// server, exec, the Backend, ctx) is not: call Collect again later. Exec
// that the sidecar leaves unanswered is retried so for Config.GiveUpAfter
// at most; then the value is lost, and the error final (ErrUnreadable).
func (c *Collector) Collect(ctx context.Context, pod *corev1.Pod, key kubexec.TaskKey) (string, error) {
	if pod == nil {
		return "", nil
	}
	s, err := podSettings(pod, c.cfg.DefaultChannel, DefaultPath)
	if err != nil {
		return "", err
	}
	if s.maxBytes == 0 {
		s.maxBytes = c.cfg.MaxBytes
	}
	switch s.channel {
	case ChannelTerminationMessage:
		return c.fromTerminationMessage(ctx, pod, key, s)
	case ChannelSidecar:
		return c.fromSidecar(ctx, pod, key, s)
	}
	return "", nil
}

// succeeded returns the main container's status if it exited 0.
func succeeded(pod *corev1.Pod) (string, *corev1.ContainerStateTerminated) {
	name := mainContainerName(pod)
	st := containerStatus(pod, name)
	if st == nil || st.State.Terminated == nil || st.State.Terminated.ExitCode != 0 {
		return name, nil
	}
	return name, st.State.Terminated
}

func (c *Collector) fromTerminationMessage(ctx context.Context, pod *corev1.Pod, key kubexec.TaskKey, s settings) (string, error) {
	name, term := succeeded(pod)
	if term == nil {
		return "", nil
	}
	limit := min(s.maxBytes, terminationMessageLimit)
	verr := &ValueError{Key: key, Container: name, Source: "the termination message of container " + name, Size: int64(len(term.Message)), Limit: limit}
	value, err := ParseValue([]byte(term.Message), limit)
	if errors.Is(err, ErrNotJSON) && len(term.Message) >= terminationMessageLimit {
		// The kubelet cut a longer message at 4096 bytes.
		verr.Size = -1
		err = fmt.Errorf("%w: the kubelet cut it at %d bytes", ErrTooLarge, terminationMessageLimit)
	}
	switch {
	case errors.Is(err, ErrMissing) && !s.required:
		return "", nil
	case err != nil:
		verr.Err = err
		return "", verr
	}
	return c.put(ctx, key, value)
}

func (c *Collector) put(ctx context.Context, key kubexec.TaskKey, value json.RawMessage) (string, error) {
	ref, err := c.backend.Put(ctx, key, value)
	if err != nil {
		return "", fmt.Errorf("xcom: store the value of %s: %w", key, err)
	}
	return ref, nil
}

// recorded is what AnnotationResult holds.
type recorded struct {
	Ref   string         `json:"ref,omitempty"`
	Error *recordedError `json:"error,omitempty"`
}

type recordedError struct {
	Kind    string `json:"kind"`
	Source  string `json:"source"`
	Size    int64  `json:"size"`
	Limit   int64  `json:"limit"`
	Message string `json:"message"`
	// NoAnswer: the sidecar did not answer exec for Config.GiveUpAfter,
	// so the value was given up; the sidecar is not waited for again.
	NoAnswer bool `json:"noAnswer,omitempty"`
}

var errorKinds = map[string]error{
	"too-large": ErrTooLarge, "not-json": ErrNotJSON, "missing": ErrMissing, "unreadable": ErrUnreadable,
}

func record(ref string, verr *ValueError, noAnswer bool) (string, error) {
	r := recorded{Ref: ref}
	if verr != nil {
		r.Error = &recordedError{Source: verr.Source, Size: verr.Size, Limit: verr.Limit, Message: verr.Err.Error(), NoAnswer: noAnswer}
		for kind, sentinel := range errorKinds {
			if errors.Is(verr.Err, sentinel) {
				r.Error.Kind = kind
			}
		}
	}
	b, err := json.Marshal(r)
	return string(b), err
}

// recall decodes AnnotationResult; noAnswer says that the value was
// given up because the sidecar did not answer.
func recall(pod *corev1.Pod, key kubexec.TaskKey) (ref string, err error, noAnswer, ok bool) {
	v, found := pod.Annotations[AnnotationResult]
	if !found {
		return "", nil, false, false
	}
	var r recorded
	if jerr := json.Unmarshal([]byte(v), &r); jerr != nil {
		return "", nil, false, false // not ours to trust: read again
	}
	if r.Error == nil {
		return r.Ref, nil, false, true
	}
	sentinel, known := errorKinds[r.Error.Kind]
	if !known {
		return "", nil, false, false
	}
	detail, _ := strings.CutPrefix(r.Error.Message, sentinel.Error())
	detail = strings.TrimPrefix(detail, ": ")
	e := sentinel
	if detail != "" {
		e = fmt.Errorf("%w: %s", sentinel, detail)
	}
	return "", &ValueError{Key: key, Container: mainContainerName(pod), Source: r.Error.Source, Size: r.Error.Size, Limit: r.Error.Limit, Err: e}, r.Error.NoAnswer, true
}

func (c *Collector) fromSidecar(ctx context.Context, seen *corev1.Pod, key kubexec.TaskKey, s settings) (string, error) {
	pod, err := c.client.CoreV1().Pods(seen.Namespace).Get(ctx, seen.Name, metav1.GetOptions{})
	gone := apierrors.IsNotFound(err)
	if gone {
		// What the last view says is all there is.
		pod = seen
	} else if err != nil {
		return "", fmt.Errorf("xcom: get pod %s/%s: %w", seen.Namespace, seen.Name, err)
	}
	sidecar := pod.Annotations[AnnotationSidecar]
	if sidecar == "" {
		sidecar = SidecarName
	}
	if gone {
		c.forget(pod)
	}
	if ref, verr, noAnswer, ok := recall(pod, key); ok {
		if !gone {
			if err := c.stopSidecar(ctx, pod, sidecar, s.path, noAnswer); err != nil {
				return "", err
			}
		}
		return ref, verr
	}
	name, term := succeeded(pod)
	if term == nil {
		// No value to read; the sidecar must still go.
		if gone {
			return "", nil
		}
		return "", c.stopSidecar(ctx, pod, sidecar, s.path, false)
	}
	verr := &ValueError{Key: key, Container: name, Source: "file " + s.path, Size: -1, Limit: s.maxBytes}
	var value json.RawMessage
	if gone {
		verr.Err = fmt.Errorf("%w: the pod was deleted before kubexec read the value", ErrUnreadable)
		return "", verr
	}
	var noAnswer *unanswered
	if st := containerStatus(pod, sidecar); st == nil || st.State.Running == nil {
		verr.Err = fmt.Errorf("%w: the sidecar %s ended before kubexec read the value", ErrUnreadable, sidecar)
	} else {
		data, size, rerr := c.readFile(ctx, pod, sidecar, s.path, s.maxBytes)
		verr.Size = size
		switch {
		case errors.As(rerr, &noAnswer) && noAnswer.over():
			// Its node is gone (or exec refused) for longer than the
			// bound: the value is lost, and the attempt must not wait
			// for it forever.
			c.cfg.Logger.WarnContext(ctx, "giving up an xcom value: the sidecar does not answer exec", "pod", pod.Namespace+"/"+pod.Name,
				"node", pod.Spec.NodeName, "silent", noAnswer.silent, "err", noAnswer.err)
			verr.Err = fmt.Errorf("%w: %s", ErrUnreadable, noAnswer.lost())
		case errors.Is(rerr, ErrMissing):
			verr.Err = rerr
		case errors.Is(rerr, ErrUnreadable):
			verr.Err = rerr
		case rerr != nil:
			return "", rerr
		case size > s.maxBytes:
			verr.Err = fmt.Errorf("%w: %d bytes, at most %d allowed", ErrTooLarge, size, s.maxBytes)
		default:
			value, verr.Err = ParseValue(data, s.maxBytes)
		}
	}
	var ref string
	switch {
	case errors.Is(verr.Err, ErrMissing) && !s.required:
		verr = nil
	case verr.Err != nil:
	default:
		verr = nil
		if ref, err = c.put(ctx, key, value); err != nil {
			return "", err
		}
	}
	// Record the answer on the pod before the sidecar, and the file with
	// it, goes away.
	gaveUp := noAnswer != nil && noAnswer.over()
	rec, err := record(ref, verr, gaveUp)
	if err != nil {
		return "", err
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationResult: rec}}})
	if err != nil {
		return "", err
	}
	if _, err := c.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("xcom: record the value of %s on pod %s/%s: %w", key, pod.Namespace, pod.Name, err)
	}
	if !gaveUp {
		// (A sidecar that just did not answer for GiveUpAfter is left to
		// its node.)
		if err := c.stopSidecar(ctx, pod, sidecar, s.path, false); err != nil {
			return "", err
		}
	}
	if verr != nil {
		return "", verr
	}
	return ref, nil
}

// readScript prints the size of the file $1 on stderr and its first $2
// bytes on stdout; it exits 3 when the file does not exist.
const readScript = `[ -e "$1" ] || exit 3
wc -c < "$1" >&2 || exit 4
exec head -c "$2" "$1"`

// readFile reads up to limit+1 bytes of file in the sidecar, and the
// file's size. Errors wrap ErrMissing, ErrUnreadable, or are transient;
// a transient error may wrap an *unanswered, which says when to give up.
func (c *Collector) readFile(ctx context.Context, pod *corev1.Pod, sidecar, file string, limit int64) ([]byte, int64, error) {
	var lastErr error
	for attempt := range readAttempts {
		if attempt > 0 {
			c.cfg.Logger.DebugContext(ctx, "retrying an xcom read", "pod", pod.Namespace+"/"+pod.Name, "err", lastErr)
			select {
			case <-ctx.Done():
				return nil, -1, ctx.Err()
			case <-time.After(time.Duration(attempt) * c.retryDelay):
			}
		}
		var stdout, stderr bytes.Buffer
		code, err := c.execBounded(ctx, pod, sidecar, []string{"sh", "-c", readScript, SidecarName, file, strconv.FormatInt(limit+1, 10)}, &stdout, &stderr)
		if err != nil {
			lastErr = err
			if u := (*unanswered)(nil); ctx.Err() != nil || (errors.As(err, &u) && u.over()) {
				break
			}
			continue
		}
		switch code {
		case 0:
		case 3:
			return nil, -1, fmt.Errorf("%w: the file does not exist", ErrMissing)
		default:
			return nil, -1, fmt.Errorf("%w: reading it in the sidecar exited with code %d: %s", ErrUnreadable, code, strings.TrimSpace(stderr.String()))
		}
		size, perr := strconv.ParseInt(strings.TrimSpace(stderr.String()), 10, 64)
		if perr != nil {
			return nil, -1, fmt.Errorf("%w: unexpected output of wc in the sidecar: %q", ErrUnreadable, stderr.String())
		}
		if size == 0 {
			return nil, 0, fmt.Errorf("%w: the file is empty", ErrMissing)
		}
		if want := min(size, limit+1); int64(stdout.Len()) != want {
			lastErr = fmt.Errorf("xcom: read %d of the %d bytes of %s", stdout.Len(), want, file)
			continue
		}
		return stdout.Bytes(), size, nil
	}
	return nil, -1, fmt.Errorf("xcom: read %s in pod %s/%s: %w", file, pod.Namespace, pod.Name, lastErr)
}

// stopScript makes the sidecar whose folder is $1 exit.
const stopScript = `kill -TERM "$(cat "$1/` + pidFile + `")"`

// stopSidecar makes the sidecar exit, if it runs. A sidecar that has not
// answered exec for Config.GiveUpAfter is left to its node (so is one
// that fails to answer once more when gaveUp: the value was given up for
// that already); a warning says so.
func (c *Collector) stopSidecar(ctx context.Context, pod *corev1.Pod, sidecar, file string, gaveUp bool) error {
	if st := containerStatus(pod, sidecar); st == nil || st.State.Running == nil || pod.DeletionTimestamp != nil {
		return nil
	}
	var stderr bytes.Buffer
	code, err := c.execBounded(ctx, pod, sidecar, []string{"sh", "-c", stopScript, SidecarName, path.Dir(file)}, io.Discard, &stderr)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("xcom: stop the sidecar of pod %s/%s: %w", pod.Namespace, pod.Name, ctx.Err())
		}
		// It may have ended meanwhile; if not, the next call retries.
		fresh, gerr := c.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(gerr) {
			c.forget(pod)
			return nil
		}
		if gerr == nil {
			if st := containerStatus(fresh, sidecar); st == nil || st.State.Running == nil {
				return nil
			}
		}
		if u := (*unanswered)(nil); gaveUp || (errors.As(err, &u) && u.over()) {
			c.cfg.Logger.WarnContext(ctx, "leaving the xcom sidecar to its node: it does not answer exec", "pod", pod.Namespace+"/"+pod.Name,
				"node", pod.Spec.NodeName, "err", err)
			return nil
		}
		return fmt.Errorf("xcom: stop the sidecar of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if code != 0 {
		return fmt.Errorf("xcom: stop the sidecar of pod %s/%s: the stop command exited with code %d: %s", pod.Namespace, pod.Name, code, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// silence is how long a pod's sidecar has left exec unanswered: since
// the start of the first exec that failed with none answered since, until
// the last failure.
type silence struct{ since, last time.Time }

// podID identifies a pod in Collector.silent.
func podID(pod *corev1.Pod) string {
	if pod.UID != "" {
		return string(pod.UID)
	}
	return pod.Namespace + "/" + pod.Name
}

// execBounded runs execFn in pod's sidecar, cut off once the sidecar's
// silence would pass Config.GiveUpAfter (but given at least
// minExecTimeout), and keeps the silence: an exec that fails (unless ctx
// ended) extends it, and its error is an *unanswered; one that is
// answered, whatever its exit code, ends it.
func (c *Collector) execBounded(ctx context.Context, pod *corev1.Pod, container string, cmd []string, stdout, stderr io.Writer) (int, error) {
	id := podID(pod)
	start := c.now()
	c.mu.Lock()
	since := start
	if s, ok := c.silent[id]; ok {
		since = s.since
	}
	c.mu.Unlock()
	execCtx, cancel := context.WithTimeout(ctx, max(since.Add(c.cfg.GiveUpAfter).Sub(start), c.minExecTimeout))
	code, err := c.execFn(execCtx, pod, container, cmd, stdout, stderr)
	cancel()
	switch {
	case err == nil:
		c.forget(pod)
		return code, nil
	case ctx.Err() != nil:
		return 0, err
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.silent[id]
	if !ok {
		s.since = start
	}
	s.last = now
	if c.silent == nil {
		c.silent = map[string]silence{}
	}
	c.silent[id] = s
	// Forget the pods that nobody asks about any more.
	stale := max(2*c.cfg.GiveUpAfter, time.Hour)
	for other, o := range c.silent {
		if now.Sub(o.last) > stale {
			delete(c.silent, other)
		}
	}
	return 0, &unanswered{pod: pod.Namespace + "/" + pod.Name, node: pod.Spec.NodeName, container: container,
		silent: now.Sub(s.since), bound: c.cfg.GiveUpAfter, err: err}
}

// forget ends pod's silence.
func (c *Collector) forget(pod *corev1.Pod) {
	c.mu.Lock()
	delete(c.silent, podID(pod))
	c.mu.Unlock()
}

// unanswered is the error of an exec in a pod's sidecar that failed: its
// node did not answer, or the API server refused or could not reach it.
type unanswered struct {
	pod, node, container string
	// silent is how long the sidecar has left exec unanswered;
	// bound is Config.GiveUpAfter.
	silent, bound time.Duration
	err           error
}

// over reports whether the sidecar's silence has reached the bound.
func (e *unanswered) over() bool { return e.silent >= e.bound }

func (e *unanswered) Error() string {
	return fmt.Sprintf("the sidecar %s of pod %s has not answered exec for %s (kubexec gives up after %s, xcom.Config.GiveUpAfter): %v",
		e.container, e.pod, roundDuration(e.silent), e.bound, e.err)
}

func (e *unanswered) Unwrap() error { return e.err }

// lost says, for a person, that the value is lost and why.
func (e *unanswered) lost() string {
	node := "its node"
	if e.node != "" {
		node = "its node " + e.node
	}
	cause := strings.ToValidUTF8(e.err.Error(), "\uFFFD")
	if len(cause) > 400 {
		// The cause is usually at the end (a URL may fill the middle).
		cause = strings.ToValidUTF8(cause[:150], "") + " ... " + strings.ToValidUTF8(cause[len(cause)-240:], "")
	}
	return fmt.Sprintf("the sidecar %s did not answer exec for %s (xcom.Config.GiveUpAfter is %s), so the value is lost: "+
		"%s is probably gone or its kubelet is down. Check the node (kubectl describe node %s) and that kubexec may exec in pods "+
		"(create on pods/exec); run the task again to get its value (last exec error: %s)",
		e.container, roundDuration(e.silent), e.bound, node, cmp.Or(e.node, "<node>"), cause)
}

// roundDuration rounds d for a message: to the second from a second on.
func roundDuration(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// exec runs cmd in container and returns its exit code; err is about
// running it, not about its exit.
func (c *Collector) exec(ctx context.Context, pod *corev1.Pod, container string, cmd []string, stdout, stderr io.Writer) (int, error) {
	req := c.client.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: cmd, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(c.config, "GET", req.URL().String())
	if err != nil {
		return 0, err
	}
	spdy, err := remotecommand.NewSPDYExecutor(c.config, "POST", req.URL())
	if err != nil {
		return 0, err
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, httpstream.IsUpgradeFailure)
	if err != nil {
		return 0, err
	}
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: stdout, Stderr: stderr})
	var exit utilexec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitStatus(), nil
	}
	if err != nil {
		return 0, err
	}
	return 0, nil
}
