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
	"sync/atomic"
	"time"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/podtemplate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	//lint:ignore SA1019 client-go's remotecommand.NewFallbackExecutor takes this package's IsUpgradeFailure; k8s.io/streaming is not a dependency of the module
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
)

// Config configures a Collector. The zero Config is valid: used as the
// executor's Config.XCom, it prepares each pod for the termination
// message channel (DefaultChannel) and reads the value from there, and a
// pod that asks for the sidecar (AnnotationChannel) gets one.
type Config struct {
	// MaxBytes is the largest value accepted from the sidecar channel, in
	// bytes. A pod's AnnotationMaxBytes can lower it for that pod, never
	// raise it. It also bounds what one read buffers: a read takes at most
	// MaxBytes+1 bytes of the file. It counts the bytes the task wrote
	// (a text value is stored as a JSON string, a little longer). (The
	// termination message channel also takes at most 4095 bytes: the
	// kubelet keeps 4096.) Default 4 MiB.
	MaxBytes int64
	// Logger receives what the Collector retries. Default: discarded.
	Logger *slog.Logger
	// Pod prepares each pod for its channel when the Collector is used as
	// the executor's Config.XCom (it is then also the pods' middleware;
	// see MutatePod): the same settings as Middleware's. Pod.Channel (by
	// default DefaultChannel) is the one channel default: the channel the
	// pods are prepared for, and the one Collect reads from a pod that
	// records none (that neither Middleware nor MutatePod prepared).
	// Collect reads values only from a sidecar with Pod.SidecarImage: a
	// Builder's Middleware must use the same image.
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
	// passes (but is given at least 30s, or ReadTimeout if less), so it
	// cannot hold Collect longer. Default 10m, as logs.Config.GiveUpAfter.
	GiveUpAfter time.Duration
	// ReadTimeout bounds each exec in a pod's sidecar: each read of the
	// value, and the command that stops the sidecar. A read that the
	// sidecar began to answer but did not finish in time (the value's
	// file is swapped for a FIFO while it is read, or is on a file system
	// that hangs) is final: the value is unreadable (ErrUnreadable). An
	// exec that the sidecar left unanswered counts towards GiveUpAfter
	// and is tried again. Default 1m.
	ReadTimeout time.Duration
}

const (
	defaultMaxBytes    = 4 << 20
	defaultGiveUpAfter = 10 * time.Minute
	defaultReadTimeout = time.Minute
	// maxStderr bounds what one exec's stderr buffers: the read's size
	// and a line of error.
	maxStderr = 4096
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
// left as it is; Collect then checks that its sidecar is Middleware's, so
// a pod that only looks prepared gets a final ErrUnreadable.
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
	if cfg.Pod.Channel == "" {
		cfg.Pod.Channel = DefaultChannel
	}
	if cfg.Pod.Path == "" {
		cfg.Pod.Path = DefaultPath
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
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = defaultReadTimeout
	}
	if cfg.Pod.SidecarImage == "" {
		cfg.Pod.SidecarImage = DefaultSidecarImage
	}
	switch {
	case !validChannel(cfg.Pod.Channel):
		return nil, fmt.Errorf("%w: Config.Pod.Channel is %q; use %q, %q or %q (default %q)", kubexec.ErrInvalidConfig, cfg.Pod.Channel, ChannelTerminationMessage, ChannelSidecar, ChannelNone, DefaultChannel)
	case cfg.MaxBytes < 0:
		return nil, fmt.Errorf("%w: Config.MaxBytes is %d; use a positive number of bytes (default 4 MiB)", kubexec.ErrInvalidConfig, cfg.MaxBytes)
	case cfg.GiveUpAfter < 0:
		return nil, fmt.Errorf("%w: Config.GiveUpAfter is %s; use a positive duration (default %s)", kubexec.ErrInvalidConfig, cfg.GiveUpAfter, defaultGiveUpAfter)
	case cfg.ReadTimeout < 0:
		return nil, fmt.Errorf("%w: Config.ReadTimeout is %s; use a positive duration (default %s)", kubexec.ErrInvalidConfig, cfg.ReadTimeout, defaultReadTimeout)
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
// Each exec is bounded by Config.ReadTimeout; one cut off by ctx's
// deadline counts as left unanswered, one cut off by ctx's cancellation
// does not.
//
// Collect execs only in the sidecar that Middleware adds (checkSidecar)
// and reads only a regular file in its value folder; a pod whose
// annotations or containers say otherwise (as a template or override
// could) gets a final ErrUnreadable, and nothing is run in it.
func (c *Collector) Collect(ctx context.Context, pod *corev1.Pod, key kubexec.TaskKey) (string, error) {
	if pod == nil {
		return "", nil
	}
	s, err := podSettings(pod, c.cfg.Pod.Channel, c.cfg.Pod.Path)
	if err != nil {
		return "", err
	}
	s.maxBytes, s.askedMaxBytes = limitFor(s.maxBytes, c.cfg.MaxBytes)
	switch s.channel {
	case ChannelTerminationMessage:
		return c.fromTerminationMessage(ctx, pod, key, s)
	case ChannelSidecar:
		return c.fromSidecar(ctx, pod, key, s)
	}
	return "", nil
}

// limitFor is the largest value accepted from a pod whose
// AnnotationMaxBytes is asked (0 when not set) under the host's limit
// host (Config.MaxBytes): the annotation can only lower it. capped is
// asked when it was cut to host, else 0.
func limitFor(asked, host int64) (limit, capped int64) {
	switch {
	case asked == 0:
		return host, 0
	case asked > host:
		return host, asked
	}
	return asked, 0
}

// tooLarge is the ErrTooLarge of a value of size bytes from a pod with
// settings s.
func tooLarge(size int64, s settings) error {
	err := fmt.Errorf("%w: %d bytes, at most %d allowed", ErrTooLarge, size, s.maxBytes)
	if s.askedMaxBytes > 0 {
		err = fmt.Errorf("%w (the pod's %s asks for %d, but it can only lower xcom.Config.MaxBytes)", err, AnnotationMaxBytes, s.askedMaxBytes)
	}
	return err
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
	// The kubelet keeps the file's last bytes (up to kept): a message
	// that fills them may be the end of a longer value, which must not
	// pass for the value (as text, or as JSON that a cut made valid).
	kept := podTerminationMessageLimit(pod)
	limit := min(s.maxBytes, int64(kept-1))
	verr := &ValueError{Key: key, Container: name, Source: "the termination message of container " + name, Size: int64(len(term.Message)), Limit: limit}
	var value json.RawMessage
	var err error
	if len(term.Message) >= kept {
		verr.Size = -1
		err = fmt.Errorf("%w: %w", ErrTooLarge, &cutError{size: len(term.Message)})
	} else {
		value, err = ParseValue([]byte(term.Message), limit, s.format)
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
	// Pod is the UID of the pod it was recorded on: a record that names
	// another (or none) was not written by Collect for this pod.
	Pod   types.UID      `json:"pod"`
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

// record encodes the answer for AnnotationResult on the pod with UID pod.
func record(pod types.UID, ref string, verr *ValueError, noAnswer bool) (string, error) {
	r := recorded{Pod: pod, Ref: ref}
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

// recalled is an answer that Collect recorded on a pod.
type recalled struct {
	ref string
	err error
	// noAnswer: the value was given up because the sidecar did not
	// answer.
	noAnswer bool
}

// recall decodes AnnotationResult if Collect recorded it for this pod:
// ok reports an answer to trust. A record that is there but is not one
// (it does not name the pod's UID, or does not decode) is ignored: why
// says so, for a warning.
func recall(pod *corev1.Pod, key kubexec.TaskKey) (a recalled, ok bool, why string) {
	v, found := pod.Annotations[AnnotationResult]
	if !found {
		return recalled{}, false, ""
	}
	var r recorded
	if jerr := json.Unmarshal([]byte(v), &r); jerr != nil {
		return recalled{}, false, "it is not the JSON kubexec records"
	}
	if pod.UID == "" || r.Pod != pod.UID {
		// A template or override can set the annotation at create time,
		// but cannot know the UID the API server gives the pod.
		return recalled{}, false, fmt.Sprintf("it was recorded for pod UID %q, not this pod's %q", r.Pod, pod.UID)
	}
	if r.Error == nil {
		return recalled{ref: r.Ref}, true, ""
	}
	sentinel, known := errorKinds[r.Error.Kind]
	if !known {
		return recalled{}, false, fmt.Sprintf("its error kind %q is unknown", r.Error.Kind)
	}
	detail, _ := strings.CutPrefix(r.Error.Message, sentinel.Error())
	detail = strings.TrimPrefix(detail, ": ")
	e := sentinel
	if detail != "" {
		e = fmt.Errorf("%w: %s", sentinel, detail)
	}
	return recalled{err: &ValueError{Key: key, Container: mainContainerName(pod), Source: r.Error.Source, Size: r.Error.Size, Limit: r.Error.Limit, Err: e},
		noAnswer: r.Error.NoAnswer}, true, ""
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
	const sidecar = SidecarName
	if gone {
		c.forget(pod)
	} else if why := checkSidecar(pod, s.path, c.cfg.Pod.SidecarImage); why != "" {
		// Exec only in kubexec's own sidecar, and read only its folder:
		// nothing else of the pod is the value, whatever its annotations
		// say. Nothing is run in the pod, nor recorded on it.
		return "", &ValueError{Key: key, Container: mainContainerName(pod), Source: "file " + s.path, Size: -1, Limit: s.maxBytes,
			Err: fmt.Errorf("%w: %s; kubexec reads a value only from the sidecar that xcom.Middleware (or the executor's Config.XCom) adds, "+
				"and only the file in that sidecar's folder: a template or override must not set %s, add a container named %s, or set %s in the main container",
				ErrUnreadable, why, AnnotationSidecar, SidecarName, EnvPath)}
	}
	answer, ok, why := recall(pod, key)
	if ok {
		if !gone {
			if err := c.stopSidecar(ctx, pod, sidecar, s.path, answer.noAnswer); err != nil {
				return "", err
			}
		}
		return answer.ref, answer.err
	}
	if why != "" {
		c.cfg.Logger.WarnContext(ctx, "ignoring an xcom result annotation that kubexec did not record for this pod; reading the value itself",
			"pod", pod.Namespace+"/"+pod.Name, "annotation", AnnotationResult, "reason", why)
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
			verr.Err = tooLarge(size, s)
		default:
			value, verr.Err = ParseValue(data, s.maxBytes, s.format)
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
	rec, err := record(pod.UID, ref, verr, gaveUp)
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

// answerMark is the first line readScript writes on stderr: the sidecar
// has answered, so a read that then hangs is the file's doing, not the
// node's.
const answerMark = "kubexec-xcom"

// readScript prints answerMark and the size of the file $1 on stderr and
// the file's first $2 bytes on stdout. It reads only a regular file, never
// through a symbolic link (which could lead out of the value's folder) and
// never a FIFO or device (which could block or never end): it exits 3 when
// the file does not exist, 5 for a symbolic link, 6 for anything but a
// regular file, 7 for a file the sidecar's user may not read.
const readScript = `echo ` + answerMark + ` >&2
if [ -L "$1" ]; then exit 5; fi
[ -e "$1" ] || exit 3
[ -f "$1" ] || exit 6
[ -r "$1" ] || exit 7
wc -c < "$1" >&2 || exit 4
exec head -c "$2" "$1"`

// readFile reads up to limit+1 bytes of file in the sidecar, and the
// file's size; it buffers no more than that. Errors wrap ErrMissing,
// ErrUnreadable, or are transient; a transient error may wrap an
// *unanswered, which says when to give up.
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
		stdout, stderr := &cappedBuffer{max: limit + 1}, &cappedBuffer{max: maxStderr}
		code, err := c.execBounded(ctx, pod, sidecar, []string{"sh", "-c", readScript, SidecarName, file, strconv.FormatInt(limit+1, 10)}, stdout, stderr)
		if uf := (*unfinished)(nil); errors.As(err, &uf) {
			return nil, -1, fmt.Errorf("%w: reading it in the sidecar did not finish within %s (xcom.Config.ReadTimeout): "+
				"it may have become a FIFO or device while it was read, or be on a file system that does not answer; the task must write a regular file", ErrUnreadable, uf.timeout)
		}
		if err != nil {
			lastErr = err
			if u := (*unanswered)(nil); ctx.Err() != nil || (errors.As(err, &u) && u.over()) {
				break
			}
			continue
		}
		out, marked := strings.CutPrefix(stderr.String(), answerMark+"\n")
		switch {
		case !marked:
			return nil, -1, fmt.Errorf("%w: unexpected output of the read in the sidecar (exit code %d): %q", ErrUnreadable, code, stderr.String())
		case code == 0:
		case code == 3:
			return nil, -1, fmt.Errorf("%w: the file does not exist", ErrMissing)
		case code == 5:
			return nil, -1, fmt.Errorf("%w: the file is a symbolic link; the task must write a regular file", ErrUnreadable)
		case code == 6:
			return nil, -1, fmt.Errorf("%w: the file is not a regular file (a FIFO, device, socket or folder); the task must write a regular file", ErrUnreadable)
		case code == 7:
			return nil, -1, fmt.Errorf("%w: the sidecar, which runs as %s, may not read the file: the task wrote it private to its own user "+
				"(for example mode 0600, as a temporary file renamed into place is). The task must leave it readable by others (mode 0644, "+
				"what a plain write gives), or the pod must name the task's user (securityContext.runAsUser), which the sidecar then runs as",
				ErrUnreadable, sidecarUser(pod))
		default:
			return nil, -1, fmt.Errorf("%w: reading it in the sidecar exited with code %d: %s", ErrUnreadable, code, strings.TrimSpace(out))
		}
		size, perr := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		if perr != nil {
			return nil, -1, fmt.Errorf("%w: unexpected output of wc in the sidecar: %q", ErrUnreadable, out)
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

// sidecarUser says, for a person, which user pod's sidecar runs as.
func sidecarUser(pod *corev1.Pod) string {
	for _, c := range pod.Spec.Containers {
		if c.Name == SidecarName && c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
			return "user " + strconv.FormatInt(*c.SecurityContext.RunAsUser, 10)
		}
	}
	if sc := pod.Spec.SecurityContext; sc != nil && sc.RunAsUser != nil {
		return "user " + strconv.FormatInt(*sc.RunAsUser, 10) + " (the pod's runAsUser)"
	}
	return "its image's user"
}

// stopScript makes the sidecar whose folder is $1 exit. The task shares
// the folder: the process id is read only from a regular file, and only
// its first bytes.
const stopScript = `f="$1/` + pidFile + `"
if [ -L "$f" ] || [ ! -f "$f" ]; then echo "$f is not a regular file" >&2; exit 5; fi
kill -TERM "$(head -c 32 "$f")"`

// stopSidecar makes the sidecar exit, if it runs. A sidecar that has not
// answered exec for Config.GiveUpAfter is left to its node (so is one
// that fails to answer once more when gaveUp: the value was given up for
// that already); a warning says so.
func (c *Collector) stopSidecar(ctx context.Context, pod *corev1.Pod, sidecar, file string, gaveUp bool) error {
	if st := containerStatus(pod, sidecar); st == nil || st.State.Running == nil || pod.DeletionTimestamp != nil {
		return nil
	}
	stderr := &cappedBuffer{max: maxStderr}
	code, err := c.execBounded(ctx, pod, sidecar, []string{"sh", "-c", stopScript, SidecarName, path.Dir(file)}, io.Discard, stderr)
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

// execBounded runs execFn in pod's sidecar, cut off after
// Config.ReadTimeout or once the sidecar's silence would pass
// Config.GiveUpAfter (but given at least minExecTimeout), whichever comes
// first, and keeps the silence: an exec that fails without a byte of
// answer (unless ctx was cancelled) extends it, and its error is an
// *unanswered; one that is answered, whatever its exit code, ends it. An
// exec that was answered but cut off by its own deadline fails with an
// *unfinished.
func (c *Collector) execBounded(ctx context.Context, pod *corev1.Pod, container string, cmd []string, stdout, stderr io.Writer) (int, error) {
	id := podID(pod)
	start := c.now()
	c.mu.Lock()
	since := start
	if s, ok := c.silent[id]; ok {
		since = s.since
	}
	c.mu.Unlock()
	timeout := min(c.cfg.ReadTimeout, max(since.Add(c.cfg.GiveUpAfter).Sub(start), c.minExecTimeout))
	execCtx, cancel := context.WithTimeout(ctx, timeout)
	var answered atomic.Bool
	code, err := c.execFn(execCtx, pod, container, cmd, &noticeWriter{w: stdout, seen: &answered}, &noticeWriter{w: stderr, seen: &answered})
	ownDeadline := errors.Is(execCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
	cancel()
	switch {
	case err == nil:
		c.forget(pod)
		return code, nil
	case errors.Is(ctx.Err(), context.Canceled):
		return 0, err
	case answered.Load():
		// The sidecar answered: its node is there.
		c.forget(pod)
		if ownDeadline {
			return 0, &unfinished{timeout: timeout, err: err}
		}
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

// unfinished is the error of an exec that the sidecar answered but that
// did not end within its deadline.
type unfinished struct {
	timeout time.Duration
	err     error
}

func (e *unfinished) Error() string {
	return fmt.Sprintf("the command in the sidecar did not finish within %s: %v", e.timeout, e.err)
}

func (e *unfinished) Unwrap() error { return e.err }

// noticeWriter passes writes to w and records that one came.
type noticeWriter struct {
	w    io.Writer
	seen *atomic.Bool
}

func (n *noticeWriter) Write(p []byte) (int, error) {
	if len(p) > 0 {
		n.seen.Store(true)
	}
	return n.w.Write(p)
}

// cappedBuffer keeps the first max bytes written to it and drops the
// rest, so that a sidecar that sends more than it was asked for cannot
// make the Collector buffer it; dropping (rather than failing the write)
// lets the exec's stream end normally.
type cappedBuffer struct {
	buf bytes.Buffer
	max int64
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - int64(b.buf.Len()); room > 0 {
		b.buf.Write(p[:min(int64(len(p)), room)])
	}
	return len(p), nil
}

func (b *cappedBuffer) Len() int       { return b.buf.Len() }
func (b *cappedBuffer) Bytes() []byte  { return b.buf.Bytes() }
func (b *cappedBuffer) String() string { return b.buf.String() }

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
