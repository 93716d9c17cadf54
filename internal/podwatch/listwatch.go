package podwatch

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// podListWatch lists and watches the selected pods of one namespace (or of
// all namespaces) for a client-go Reflector.
//
// Its watches resume by themselves: when a watch request ends (the
// server's timeout, a dropped or dead connection, a server restart, an
// error other than 410), it is reopened from the last resourceVersion seen,
// with jittered backoff on errors, and the Reflector sees one unbroken
// stream. Only what needs a relist reaches the Reflector as an error: 410
// Gone (resourceVersion expired) and errors that retrying will not fix
// (400, 401, 403, 404, 422). Left to itself, the Reflector would relist
// after most broken streams.
type podListWatch struct {
	client    kubernetes.Interface
	namespace string
	selector  string
	cfg       Config
	logger    *slog.Logger
	// failing is the namespace's latest list or watch failure, nil while
	// the last request succeeded (Watcher.Healthy).
	failing atomic.Pointer[failure]
}

// failure is a list or watch request that failed, and since when requests
// have been failing.
type failure struct {
	since time.Time
	err   error
}

// failed records a failed list or watch request.
func (lw *podListWatch) failed(err error) {
	since := time.Now()
	if f := lw.failing.Load(); f != nil {
		since = f.since
	}
	lw.failing.Store(&failure{since: since, err: err})
}

// succeeded records a list or watch request that succeeded.
func (lw *podListWatch) succeeded() { lw.failing.Store(nil) }

var (
	_ cache.ListerWatcher            = (*podListWatch)(nil)
	_ cache.ListerWatcherWithContext = (*podListWatch)(nil)
)

// List implements cache.Lister.
func (lw *podListWatch) List(opts metav1.ListOptions) (runtime.Object, error) {
	return lw.ListWithContext(context.Background(), opts)
}

// Watch implements cache.Watcher.
func (lw *podListWatch) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return lw.WatchWithContext(context.Background(), opts)
}

// ListWithContext lists the selected pods, bounded by Config.ListTimeout.
func (lw *podListWatch) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	ctx, cancel := context.WithTimeout(ctx, lw.cfg.ListTimeout)
	defer cancel()
	opts.LabelSelector = lw.selector
	list, err := lw.client.CoreV1().Pods(lw.namespace).List(ctx, opts)
	if err != nil {
		lw.logger.Warn("list pods failed", "namespace", lw.namespace, "err", err)
		lw.failed(err)
		return nil, err
	}
	lw.succeeded()
	lw.logger.Debug("listed pods", "namespace", lw.namespace, "version", list.ResourceVersion, "pods", len(list.Items))
	return list, nil
}

// WatchWithContext watches the selected pods from opts.ResourceVersion.
//
// A watch that starts from a known resourceVersion is resumable at once.
// A streaming list (opts.SendInitialEvents) becomes resumable only once
// the server has sent the bookmark that ends its initial events; before
// that, a broken stream is passed on to the Reflector, which restarts it.
func (lw *podListWatch) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.LabelSelector = lw.selector
	opts.AllowWatchBookmarks = true
	rw := &resumingWatch{
		lw:        lw,
		result:    make(chan watch.Event),
		done:      make(chan struct{}),
		version:   opts.ResourceVersion,
		resumable: opts.SendInitialEvents == nil && opts.ResourceVersion != "" && opts.ResourceVersion != "0",
		backoff:   defaultBackoff(),
	}
	ctx, rw.cancel = context.WithCancel(ctx)
	if !rw.resumable {
		// The first request of a stream that cannot resume reports its
		// error to the Reflector directly, which then decides (for a
		// streaming list: fall back to a plain list).
		req, err := rw.open(ctx, opts)
		if err != nil {
			rw.cancel()
			return nil, err
		}
		go rw.run(ctx, opts, req)
		return rw, nil
	}
	go rw.run(ctx, opts, nil)
	return rw, nil
}

// resumingWatch is one logical watch made of as many watch requests as it
// takes; see podListWatch.
type resumingWatch struct {
	lw        *podListWatch
	result    chan watch.Event
	done      chan struct{}
	cancel    context.CancelFunc
	stopOnce  sync.Once
	version   string // the last resourceVersion received
	resumable bool
	backoff   wait.Backoff
}

// ResultChan implements watch.Interface.
func (rw *resumingWatch) ResultChan() <-chan watch.Event { return rw.result }

// Stop implements watch.Interface: it ends the watch and waits until its
// goroutine has returned. It may be called more than once.
func (rw *resumingWatch) Stop() {
	rw.stopOnce.Do(rw.cancel)
	<-rw.done
}

// open starts one watch request. The request's context ends
// Config.ClientTimeout after the server-side timeout it asks for: a server
// that has not ended the watch by then is unreachable through a
// connection that died without a word, and the request is abandoned.
func (rw *resumingWatch) open(ctx context.Context, opts metav1.ListOptions) (*request, error) {
	cfg := rw.lw.cfg
	timeout := cfg.WatchTimeout + rand.N(cfg.WatchTimeout/4+1)
	seconds := max(int64(timeout/time.Second), 1)
	opts.TimeoutSeconds = &seconds
	reqCtx, cancel := context.WithTimeout(ctx, time.Duration(seconds)*time.Second+cfg.ClientTimeout)
	w, err := rw.lw.client.CoreV1().Pods(rw.lw.namespace).Watch(reqCtx, opts)
	if err != nil {
		cancel()
		if ctx.Err() == nil {
			rw.lw.failed(err)
		}
		return nil, err
	}
	rw.lw.succeeded()
	return &request{w: w, ctx: reqCtx, cancel: cancel, start: time.Now()}, nil
}

// request is one open watch request.
type request struct {
	w      watch.Interface
	ctx    context.Context
	cancel context.CancelFunc
	start  time.Time
}

// close stops the request and reports whether the client-side deadline
// had ended it.
func (r *request) close() (deadlineHit bool) {
	r.w.Stop()
	deadlineHit = errors.Is(r.ctx.Err(), context.DeadlineExceeded)
	r.cancel()
	return deadlineHit
}

// restarted reports a restart to Config.OnRestart.
func (rw *resumingWatch) restarted(relist bool) {
	if f := rw.lw.cfg.OnRestart; f != nil {
		f(rw.lw.namespace, relist)
	}
}

// run forwards events until the watch is stopped or ends for good. req,
// when not nil, is the already opened first request.
func (rw *resumingWatch) run(ctx context.Context, opts metav1.ListOptions, req *request) {
	defer close(rw.done)
	defer close(rw.result)
	logger := rw.lw.logger.With("namespace", rw.lw.namespace)
	for {
		if req == nil {
			if rw.resumable {
				opts.ResourceVersion = rw.version
				opts.SendInitialEvents = nil
				opts.ResourceVersionMatch = ""
			}
			var err error
			req, err = rw.open(ctx, opts)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if !rw.resumable || needsRelist(err) {
					logger.Info("watch refused; relisting", "version", rw.version, "err", err)
					rw.restarted(true)
					rw.sendError(ctx, err)
					return
				}
				delay := rw.backoff.Step()
				logger.Warn("watch failed; retrying", "version", rw.version, "delay", delay, "err", err)
				rw.restarted(false)
				if !sleep(ctx, delay) {
					return
				}
				continue
			}
		}
		outcome, err := rw.forward(ctx, req.w)
		deadlineHit := req.close()
		start := req.start
		req = nil
		switch outcome {
		case outcomeStopped:
			return
		case outcomeRelist:
			logger.Info("watch expired; relisting", "version", rw.version, "err", err)
			rw.restarted(true)
			return
		case outcomeError:
			if !rw.resumable {
				return
			}
			delay := rw.backoff.Step()
			logger.Warn("watch broke; resuming", "version", rw.version, "delay", delay, "err", err)
			rw.restarted(false)
			if !sleep(ctx, delay) {
				return
			}
		case outcomeClosed:
			if !rw.resumable {
				return
			}
			if deadlineHit {
				logger.Warn("watch connection silent past the server's timeout; reconnecting", "version", rw.version)
				rw.restarted(false)
			}
			if time.Since(start) < time.Second {
				// A stream that closes at once, again and again, must not
				// spin.
				if !sleep(ctx, rw.backoff.Step()) {
					return
				}
			}
		}
	}
}

type outcome int

const (
	outcomeStopped outcome = iota // the watch was stopped
	outcomeClosed                 // the stream ended without an error
	outcomeError                  // the stream sent an error worth resuming after
	outcomeRelist                 // the stream sent an error that needs a relist; it was passed on
)

// forward passes one request's events on until its stream ends.
func (rw *resumingWatch) forward(ctx context.Context, inner watch.Interface) (outcome, error) {
	for {
		var ev watch.Event
		var ok bool
		select {
		case <-ctx.Done():
			return outcomeStopped, nil
		case ev, ok = <-inner.ResultChan():
		}
		if !ok {
			return outcomeClosed, nil
		}
		if ev.Type == watch.Error {
			err := apierrors.FromObject(ev.Object)
			if !rw.resumable || needsRelist(err) {
				if !rw.send(ctx, ev) {
					return outcomeStopped, nil
				}
				return outcomeRelist, err
			}
			return outcomeError, err
		}
		if m, ok := ev.Object.(metav1.Object); ok {
			if v := m.GetResourceVersion(); v != "" {
				rw.version = v
			}
			if ev.Type == watch.Bookmark && m.GetAnnotations()[metav1.InitialEventsAnnotationKey] == "true" {
				rw.resumable = true
			}
		}
		rw.backoff = defaultBackoff()
		if !rw.send(ctx, ev) {
			return outcomeStopped, nil
		}
	}
}

func (rw *resumingWatch) send(ctx context.Context, ev watch.Event) bool {
	select {
	case rw.result <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// sendError passes err to the Reflector as an error event.
func (rw *resumingWatch) sendError(ctx context.Context, err error) {
	var status metav1.Status
	var apiStatus apierrors.APIStatus
	if errors.As(err, &apiStatus) {
		status = apiStatus.Status()
	} else {
		status = apierrors.NewInternalError(err).ErrStatus
	}
	rw.send(ctx, watch.Event{Type: watch.Error, Object: &status})
}

// needsRelist reports whether a watch error is one that reopening the
// watch from the same resourceVersion cannot fix.
func needsRelist(err error) bool {
	var apiStatus apierrors.APIStatus
	if !errors.As(err, &apiStatus) {
		return false // a connection error: resume
	}
	code := apiStatus.Status().Code
	switch {
	case apierrors.IsResourceExpired(err), apierrors.IsGone(err):
		return true
	case apierrors.HasStatusCause(err, metav1.CauseTypeResourceVersionTooLarge):
		return true
	case code == http.StatusTooManyRequests || code >= 500 || code == 0:
		return false
	}
	return code >= 400
}

// defaultBackoff is the jittered exponential backoff between failed watch
// requests: 0.5 s doubling to 30 s, each delay up to 50% longer at random.
func defaultBackoff() wait.Backoff {
	return wait.Backoff{Duration: retryMin, Factor: 2, Jitter: 0.5, Steps: 1 << 30, Cap: retryMax}
}

const (
	retryMin = 500 * time.Millisecond
	retryMax = 30 * time.Second
)

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// podTransform is the informer's transform: it trims pods (see Trim) as
// they come from the decoder, reusing their memory, and keeps them in
// their stored form (storedPod). A stored pod passes unchanged, which
// matters: a streaming list transforms each pod twice.
func podTransform(obj any) (any, error) {
	if pod, ok := obj.(*corev1.Pod); ok {
		return pack(pod), nil
	}
	return obj, nil
}
