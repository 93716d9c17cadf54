package logs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"sync"
	"time"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/apierr"
	"github.com/kubexec/kubexec/watch"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Archiver archives the logs of an attempt whose pod has ended. The
// executor calls Archive once the attempt's result is known and before the
// pod may be deleted or released. Calls for different attempts overlap;
// Archive must be idempotent: archiving the same attempt again replaces or
// completes the earlier archive and never duplicates lines.
type Archiver interface {
	Archive(ctx context.Context, pod *corev1.Pod, key kubexec.TaskKey) error
}

// ArchiverFunc adapts a function to the Archiver interface.
type ArchiverFunc func(ctx context.Context, pod *corev1.Pod, key kubexec.TaskKey) error

// Archive calls f(ctx, pod, key).
func (f ArchiverFunc) Archive(ctx context.Context, pod *corev1.Pod, key kubexec.TaskKey) error {
	return f(ctx, pod, key)
}

var (
	_ Archiver = ArchiverFunc(nil)
	_ Archiver = (*Service)(nil)
)

// Service reads attempts' logs, from their pods while they exist and from
// their archives afterwards, and archives them to a LogSink. It is safe for
// concurrent use.
type Service struct {
	client kubernetes.Interface
	sink   LogSink
	cfg    Config
}

// New returns a Service that reads pods and their logs with client and
// keeps archives in sink (a FileSink, or the host's own LogSink).
func New(client kubernetes.Interface, sink LogSink, cfg Config) (*Service, error) {
	if client == nil {
		return nil, errors.New("logs: New: client is nil: pass a kubernetes.Interface, e.g. kubernetes.NewForConfig(restConfig)")
	}
	if sink == nil {
		return nil, errors.New("logs: New: sink is nil: pass a LogSink, e.g. logs.NewFileSink(dir)")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Service{client: client, sink: sink, cfg: cfg}, nil
}

// Lines returns the lines of key's logs that opts selects: from the pod
// while it exists, from the archive once it is gone (also when it goes
// away while being followed). A dropped connection is resumed without
// losing or repeating lines. An error ends the sequence; stopping the
// iteration early stops reading.
//
// Errors wrap ErrNotFound (no pod and no archive), ErrNotStarted,
// ErrUnknownContainer, ErrInvalidOptions or ErrCorruptArchive, or are the
// API server's error or the context's.
func (s *Service) Lines(ctx context.Context, key kubexec.TaskKey, opts Options) iter.Seq2[Line, error] {
	return func(yield func(Line, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		lines := make(chan Line, 64)
		done := make(chan error, 1)
		go func() {
			defer close(lines)
			done <- s.stream(ctx, key, opts, func(l Line) error {
				select {
				case lines <- l:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
		}()
		for l := range lines {
			if !yield(l, nil) {
				cancel()
				for range lines {
				}
				<-done
				return
			}
		}
		if err := <-done; err != nil {
			yield(Line{}, err)
		}
	}
}

// Copy writes key's logs that opts selects to w, a line at a time, as
// kubectl logs does: each line is preceded by its time when
// opts.Timestamps is set, and by "[container] " when opts.AllContainers
// is. Errors are those of Lines, or w's.
func (s *Service) Copy(ctx context.Context, w io.Writer, key kubexec.TaskKey, opts Options) error {
	midLine := map[string]bool{}
	var buf []byte
	return s.stream(ctx, key, opts, func(l Line) error {
		buf = buf[:0]
		if !midLine[l.Container] {
			if opts.AllContainers {
				buf = append(buf, '[')
				buf = append(buf, l.Container...)
				buf = append(buf, "] "...)
			}
			if opts.Timestamps {
				buf = l.Time.UTC().AppendFormat(buf, time.RFC3339Nano)
				buf = append(buf, ' ')
			}
		}
		buf = append(buf, l.Text...)
		if !l.Partial {
			buf = append(buf, '\n')
		}
		midLine[l.Container] = l.Partial
		_, err := w.Write(buf)
		return err
	})
}

// stream delivers the lines opts selects to emit, which is never called
// concurrently.
func (s *Service) stream(ctx context.Context, key kubexec.TaskKey, opts Options, emit func(Line) error) error {
	if err := opts.validate(); err != nil {
		return err
	}
	name, err := kubexec.PodName(key)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	serial := func(l Line) error {
		mu.Lock()
		defer mu.Unlock()
		return emit(l)
	}
	t := target{ns: opts.Namespace, name: name, key: key, archiveOK: true}
	if t.ns == "" {
		t.ns = s.cfg.Namespace
	}
	pod, err := s.getPod(ctx, t)
	if errors.Is(err, errGone) {
		return s.fromArchive(ctx, key, opts, nil, serial)
	}
	if err != nil {
		return err
	}
	containers, err := pickContainers(pod, opts)
	if err != nil {
		return err
	}
	if !opts.Follow || len(containers) == 1 {
		for _, c := range containers {
			if opts.AllContainers && !opts.Follow && !started(containerStatus(pod, c), opts.Previous) {
				continue
			}
			if err := s.readContainer(ctx, t, pod, c, opts, newCursor(c, opts.Since, serial)); err != nil {
				return err
			}
		}
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(containers))
	var wg sync.WaitGroup
	for i, c := range containers {
		wg.Go(func() {
			errs[i] = s.readContainer(ctx, t, pod, c, opts, newCursor(c, opts.Since, serial))
			if errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return errors.Join(errs...)
}

// target is an attempt's pod.
type target struct {
	ns, name string
	key      kubexec.TaskKey
	// archiveOK lets a read fall back to the archive when the pod is gone;
	// Archive itself reads without it.
	archiveOK bool
}

func (t target) String() string { return t.ns + "/" + t.name }

// errGone says an attempt's pod no longer exists (or a pod of that name
// runs another attempt).
var errGone = errors.New("logs: the pod is gone")

// getPod returns the attempt's pod, or errGone.
func (s *Service) getPod(ctx context.Context, t target) (*corev1.Pod, error) {
	pod, err := s.client.CoreV1().Pods(t.ns).Get(ctx, t.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w: pod %s not found", errGone, t)
	}
	if err != nil {
		return nil, fmt.Errorf("logs: get pod %s: %w", t, err)
	}
	if k, kerr := kubexec.KeyFromObject(pod); kerr != nil || k != t.key {
		return nil, fmt.Errorf("%w: pod %s does not run attempt %s", errGone, t, t.key)
	}
	return pod, nil
}

// readContainer reads one container's log from the live pod into cur,
// reconnecting after errors and dropped streams, until the log ends (with
// opts.Follow: until the container ends). When the pod goes away it
// continues from the archive if t.archiveOK, and returns an error wrapping
// errGone otherwise.
func (s *Service) readContainer(ctx context.Context, t target, pod *corev1.Pod, container string, opts Options, cur *cursor) error {
	follow := opts.Follow
	retry := newRetry(s.cfg.RetryTimeout)
	for {
		if !started(containerStatus(pod, container), opts.Previous) {
			if !opts.Follow {
				return fmt.Errorf("%w: container %s of pod %s", ErrNotStarted, container, t)
			}
			var err error
			if pod, err = s.waitStarted(ctx, t, container, opts.Previous); err != nil {
				return s.orArchive(ctx, t, container, opts, cur, err)
			}
		}
		podOpts := &corev1.PodLogOptions{
			Container:  container,
			Follow:     follow,
			Previous:   opts.Previous,
			Timestamps: true,
		}
		since, tail := opts.Since, opts.TailLines
		if cur.pos.started {
			since, tail = cur.pos.resumeSince(), 0
		}
		if !since.IsZero() {
			podOpts.SinceTime = &metav1.Time{Time: since}
		}
		if tail > 0 {
			tail64 := int64(tail)
			podOpts.TailLines = &tail64
		}
		body, err := s.client.CoreV1().Pods(t.ns).GetLogs(t.name, podOpts).Stream(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if apierrors.IsNotFound(err) {
				return s.orArchive(ctx, t, container, opts, cur, fmt.Errorf("%w: %w", errGone, err))
			}
			if !apierr.Transient(err) {
				return fmt.Errorf("logs: read container %s of pod %s: %w", container, t, err)
			}
			if err := retry.wait(ctx, err); err != nil {
				return fmt.Errorf("logs: read container %s of pod %s: %w", container, t, err)
			}
			s.cfg.Logger.DebugContext(ctx, "retrying a log request", "pod", t.String(), "container", container, "err", err)
			continue
		}
		cur.begin()
		progress, err := pump(body, cur, s.cfg.MaxLineBytes)
		_ = body.Close()
		if progress {
			retry.progress()
		}
		if ee := (*emitError)(nil); errors.As(err, &ee) {
			return ee.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			if err := cur.end(true); err != nil {
				return err
			}
			if !follow {
				return nil
			}
			// A followed stream ended: the container ended, or something
			// between here and the node closed the stream. Look.
			if !progress {
				if err := retry.wait(ctx, errors.New("the log stream keeps ending at once")); err != nil {
					return fmt.Errorf("logs: read container %s of pod %s: %w", container, t, err)
				}
			}
		} else {
			_ = cur.end(false)
			s.cfg.Logger.DebugContext(ctx, "log stream cut; resuming", "pod", t.String(), "container", container, "err", err)
			if err := retry.wait(ctx, err); err != nil {
				return fmt.Errorf("logs: read container %s of pod %s: %w", container, t, err)
			}
		}
		fresh, err := s.getPod(ctx, t)
		switch {
		case errors.Is(err, errGone):
			return s.orArchive(ctx, t, container, opts, cur, err)
		case err != nil:
			if err := retry.wait(ctx, err); err != nil {
				return err
			}
		default:
			pod = fresh
			if st := containerStatus(pod, container); st == nil || st.State.Running == nil || opts.Previous {
				// The container ended: one more read, without follow,
				// catches anything the cut stream missed.
				follow = false
			}
		}
	}
}

// orArchive continues cur from the archive when the pod is gone and t
// allows it; otherwise it returns err.
func (s *Service) orArchive(ctx context.Context, t target, container string, opts Options, cur *cursor, err error) error {
	if !errors.Is(err, errGone) || !t.archiveOK {
		return err
	}
	opts.Container, opts.AllContainers = container, false
	return s.fromArchive(ctx, t.key, opts, cur, cur.emit)
}

// waitStarted polls the pod until container has started.
func (s *Service) waitStarted(ctx context.Context, t target, container string, previous bool) (*corev1.Pod, error) {
	retry := newRetry(s.cfg.RetryTimeout)
	timer := time.NewTimer(s.cfg.PollInterval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
		}
		pod, err := s.getPod(ctx, t)
		switch {
		case errors.Is(err, errGone):
			return nil, err
		case err != nil:
			if err := retry.wait(ctx, err); err != nil {
				return nil, err
			}
		case started(containerStatus(pod, container), previous):
			return pod, nil
		case watch.Ended(pod):
			return nil, fmt.Errorf("%w: container %s of pod %s, which has ended", ErrNotStarted, container, t)
		default:
			retry.progress()
		}
		timer.Reset(s.cfg.PollInterval)
	}
}

// pickContainers returns the containers opts selects in pod.
func pickContainers(pod *corev1.Pod, opts Options) ([]string, error) {
	var all []string
	for _, c := range pod.Spec.InitContainers {
		all = append(all, c.Name)
	}
	for _, c := range pod.Spec.Containers {
		all = append(all, c.Name)
	}
	switch {
	case opts.AllContainers:
		return all, nil
	case opts.Container != "":
		for _, c := range all {
			if c == opts.Container {
				return []string{c}, nil
			}
		}
		for _, c := range pod.Spec.EphemeralContainers {
			if c.Name == opts.Container {
				return []string{c.Name}, nil
			}
		}
		return nil, fmt.Errorf("%w: pod %s/%s has no container %q; it has %q", ErrUnknownContainer, pod.Namespace, pod.Name, opts.Container, all)
	}
	return []string{defaultContainer(pod)}, nil
}

// defaultContainer is the container read when none is named: the main
// container.
func defaultContainer(pod *corev1.Pod) string {
	if i := kubexec.MainContainer(pod); i >= 0 {
		return pod.Spec.Containers[i].Name
	}
	return ""
}

func containerStatus(pod *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// started reports whether the container (or, for previous, its previous
// run) has a log to read.
func started(st *corev1.ContainerStatus, previous bool) bool {
	switch {
	case st == nil:
		return false
	case previous:
		return st.LastTerminationState.Terminated != nil
	}
	return st.State.Running != nil || st.State.Terminated != nil
}

// retry paces reconnects: exponential backoff from 100 ms to 5 s, and an
// error once nothing has arrived for the timeout.
type retry struct {
	timeout  time.Duration
	last     time.Time
	interval time.Duration
}

const (
	minRetryInterval = 100 * time.Millisecond
	maxRetryInterval = 5 * time.Second
)

func newRetry(timeout time.Duration) *retry {
	return &retry{timeout: timeout, last: time.Now(), interval: minRetryInterval}
}

// progress says something arrived: the timeout and the backoff restart.
func (r *retry) progress() {
	r.last = time.Now()
	r.interval = minRetryInterval
}

// wait sleeps before the next try after err, or returns err when there is
// no time left.
func (r *retry) wait(ctx context.Context, err error) error {
	if time.Since(r.last) > r.timeout {
		return fmt.Errorf("gave up after %s without progress: %w", r.timeout, err)
	}
	t := time.NewTimer(r.interval)
	defer t.Stop()
	r.interval = min(2*r.interval, maxRetryInterval)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
