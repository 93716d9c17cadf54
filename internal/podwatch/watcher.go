package podwatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

var (
	// ErrAlreadyStarted is returned by Run when the Watcher has run
	// before: a Watcher runs once.
	ErrAlreadyStarted = errors.New("watch: Run called more than once")
	// ErrStopped is returned by WaitForSync when Run returned before the
	// Watcher synced.
	ErrStopped = errors.New("watch: the watcher stopped before it synced")
)

// Watcher watches the pods of one executor instance and delivers their
// changes to a Handler; see the package documentation.
type Watcher struct {
	cfg     Config
	handler Handler
	logger  logr.Logger

	informers   []*informer // sorted by namespace
	byNamespace map[string]*informer

	events   chan event
	quit     chan struct{} // closed when Run's context ends
	started  atomic.Bool
	synced   atomic.Bool
	syncedCh chan struct{}
	stopped  chan struct{}
}

// informer is the client-go informer of one namespace ("" for all).
type informer struct {
	namespace  string
	store      cache.Store
	controller cache.Controller
	lw         *podListWatch
}

type eventKind int

const (
	eventAdd eventKind = iota
	eventUpdate
	eventDelete
	eventSynced // all informers have delivered their first list
)

type event struct {
	kind eventKind
	old  *corev1.Pod
	pod  *corev1.Pod
	gone bool
}

// New returns a Watcher of the pods selected by cfg that delivers their
// events to h once Run is called.
func New(client kubernetes.Interface, cfg Config, h Handler) (*Watcher, error) {
	if client == nil {
		return nil, errors.New("watch: New needs a Kubernetes client: pass kubernetes.NewForConfig(restConfig)")
	}
	if h == nil {
		return nil, errors.New("watch: New needs a Handler: pass one, or HandlerFuncs{} to ignore events")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	w := &Watcher{
		cfg:         cfg,
		handler:     h,
		logger:      logr.FromSlogHandler(cfg.Logger.Handler()),
		byNamespace: map[string]*informer{},
		events:      make(chan event, 256),
		quit:        make(chan struct{}),
		syncedCh:    make(chan struct{}),
		stopped:     make(chan struct{}),
	}
	namespaces := cfg.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	selector := cfg.Selector.String()
	for _, ns := range namespaces {
		lw := &podListWatch{client: client, namespace: ns, selector: selector, cfg: cfg, logger: cfg.Logger}
		store, controller := cache.NewInformerWithOptions(cache.InformerOptions{
			Logger:        &w.logger,
			ListerWatcher: lw,
			ObjectType:    &corev1.Pod{},
			Handler:       relay{w: w},
			Transform:     podTransform,
		})
		inf := &informer{namespace: ns, store: store, controller: controller, lw: lw}
		w.informers = append(w.informers, inf)
		w.byNamespace[ns] = inf
	}
	return w, nil
}

// Run lists and watches the pods and calls the Handler, from the calling
// goroutine, until ctx ends; then it stops every goroutine it started and
// returns nil. No Handler call happens after Run returns. A Watcher runs
// once: a second call returns ErrAlreadyStarted.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return ErrAlreadyStarted
	}
	defer close(w.stopped)
	ctx = logr.NewContext(ctx, w.logger)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, inf := range w.informers {
		wg.Go(func() { inf.controller.RunWithContext(ctx) })
	}
	wg.Go(func() { w.announceSync(ctx) })
	for {
		select {
		case <-ctx.Done():
			close(w.quit)
			return nil
		case ev := <-w.events:
			w.dispatch(ev)
		}
	}
}

// announceSync sends eventSynced once every informer has processed its
// first list. The informers have by then queued every event of their
// first lists, so the Handler has seen them all when Run handles it.
func (w *Watcher) announceSync(ctx context.Context) {
	for _, inf := range w.informers {
		select {
		case <-inf.controller.HasSyncedChecker().Done():
		case <-ctx.Done():
			return
		}
	}
	select {
	case w.events <- event{kind: eventSynced}:
	case <-ctx.Done():
	}
}

func (w *Watcher) dispatch(ev event) {
	switch ev.kind {
	case eventAdd:
		w.handler.OnAdd(ev.pod)
	case eventUpdate:
		w.handler.OnUpdate(ev.old, ev.pod)
	case eventDelete:
		w.handler.OnDelete(ev.pod, ev.gone)
	case eventSynced:
		w.synced.Store(true)
		close(w.syncedCh)
		w.cfg.Logger.Info("watch synced", "namespaces", len(w.informers))
	}
}

// HasSynced reports whether every watched namespace has been listed once
// and the Handler has received every pod of those first lists.
func (w *Watcher) HasSynced() bool { return w.synced.Load() }

// Healthy returns nil while the watch is live: every namespace has been
// listed once and its latest list or watch request succeeded. Otherwise
// its error says what is wrong: not synced yet, stopped, or the namespaces
// whose requests fail, since when and with what error (the watch keeps
// retrying them).
func (w *Watcher) Healthy() error {
	select {
	case <-w.stopped:
		return errors.New("watch: stopped")
	default:
	}
	var errs []error
	for _, inf := range w.informers {
		if f := inf.lw.failing.Load(); f != nil {
			ns := inf.namespace
			if ns == metav1.NamespaceAll {
				ns = "(all namespaces)"
			}
			errs = append(errs, fmt.Errorf("the watch of namespace %s has failed since %s: %w", ns, f.since.UTC().Format(time.RFC3339), f.err))
		}
	}
	if !w.synced.Load() {
		errs = append(errs, errors.New("watch: not synced yet"))
	}
	return errors.Join(errs...)
}

// WaitForSync waits until HasSynced is true. It returns ctx's error if ctx
// ends first, and ErrStopped if Run returns first.
func (w *Watcher) WaitForSync(ctx context.Context) error {
	select {
	case <-w.syncedCh:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-w.stopped:
		if w.synced.Load() {
			return nil
		}
		return ErrStopped
	}
}

// LastResourceVersion returns the resourceVersion the watch of namespace
// has reached: that of the newest list, event or bookmark it has received
// (events up to it may still be on their way to the Handler). Right after
// the first sync it may still be "" for a moment: client-go records the
// list's version just after handing the list over. A watch
// that resumes after a disconnect starts from it. When all namespaces are
// watched, every namespace shares one watch and one resourceVersion. It
// is "" for a namespace that is not watched or before the first list.
func (w *Watcher) LastResourceVersion(namespace string) string {
	inf := w.informerFor(namespace)
	if inf == nil {
		return ""
	}
	return inf.controller.LastSyncResourceVersion()
}

// Get returns the last known state of the pod namespace/name, trimmed (see
// Trim), and whether the Watcher knows it. The pod is shared: do not
// modify it. During a Handler call it is at least as new as the event's.
func (w *Watcher) Get(namespace, name string) (*corev1.Pod, bool) {
	inf := w.informerFor(namespace)
	if inf == nil {
		return nil, false
	}
	obj, ok, err := inf.store.GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil, false
	}
	return podOf(obj)
}

// List returns the last known state of every pod the Watcher knows, in no
// particular order. The pods are shared: do not modify them.
func (w *Watcher) List() []*corev1.Pod {
	var out []*corev1.Pod
	for _, inf := range w.informers {
		for _, obj := range inf.store.List() {
			if pod, ok := podOf(obj); ok {
				out = append(out, pod)
			}
		}
	}
	return out
}

func (w *Watcher) informerFor(namespace string) *informer {
	if inf, ok := w.byNamespace[metav1.NamespaceAll]; ok {
		return inf
	}
	return w.byNamespace[namespace]
}

// relay receives an informer's notifications on the informer's goroutine,
// drops those that carry no change, and queues the rest for Run.
type relay struct{ w *Watcher }

var _ cache.ResourceEventHandler = relay{}

func (r relay) send(ev event) {
	select {
	case r.w.events <- ev:
	case <-r.w.quit:
	}
}

// OnAdd implements cache.ResourceEventHandler.
func (r relay) OnAdd(obj any, _ bool) {
	if pod, ok := podOf(obj); ok {
		r.send(event{kind: eventAdd, pod: pod})
	}
}

// OnUpdate implements cache.ResourceEventHandler. A relist reports every
// listed pod as updated; one whose resourceVersion did not change did not
// change, and is dropped. A pod deleted and created again under the same
// name during a gap is reported as a deletion and an addition.
func (r relay) OnUpdate(oldObj, newObj any) {
	sameUID, sameRV := sameVersion(oldObj, newObj)
	if sameUID && sameRV {
		return
	}
	old, ok1 := podOf(oldObj)
	pod, ok2 := podOf(newObj)
	if !ok1 || !ok2 {
		return
	}
	if !sameUID {
		r.send(event{kind: eventDelete, pod: old, gone: true})
		r.send(event{kind: eventAdd, pod: pod})
		return
	}
	r.send(event{kind: eventUpdate, old: old, pod: pod})
}

// OnDelete implements cache.ResourceEventHandler. A DeletedFinalStateUnknown
// comes from a relist that no longer found the pod.
func (r relay) OnDelete(obj any) {
	if pod, ok := podOf(obj); ok {
		r.send(event{kind: eventDelete, pod: pod})
		return
	}
	if o, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		pod, ok := podOf(o.Obj)
		if !ok || pod == nil {
			// The informer lost the last state too; keep the identity.
			ns, name, err := cache.SplitMetaNamespaceKey(o.Key)
			if err != nil {
				return
			}
			pod = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		}
		r.send(event{kind: eventDelete, pod: pod, gone: true})
	}
}
