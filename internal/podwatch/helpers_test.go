package podwatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/devcluster"
	"github.com/kubexec/kubexec/internal/podtest"
)

// cluster is the package's dev cluster, with the watch cache on as in
// production. The watch's tests run no pods: no node is needed.
var cluster *devcluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(devcluster.Main(m, devcluster.Options{}, &cluster))
}

// podsOfNewExecutor makes a namespace on c, whose name starts with prefix,
// and n pods p00, p01, ... in it of a new executor id. It returns c's
// client, the namespace and the executor id.
func podsOfNewExecutor(t testing.TB, c *devcluster.Cluster, prefix string, n int) (client kubernetes.Interface, ns, id string) {
	t.Helper()
	client = c.Client()
	ns = c.NewNamespace(t, prefix, nil)
	id = podtest.ExecutorID(t)
	createPods(t, client, ns, id, 0, n)
	return client, ns, id
}

func podName(i int) string { return fmt.Sprintf("p%02d", i) }

func createPods(t testing.TB, client kubernetes.Interface, ns, executorID string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		_, err := client.CoreV1().Pods(ns).Create(context.Background(), podtest.NewPod(t, executorID, podName(i)), metav1.CreateOptions{})
		require.NoError(t, err)
	}
}

// label sets a label on pods from..to-1 with a merge patch.
func label(t testing.TB, client kubernetes.Interface, ns, key, value string, from, to int) {
	t.Helper()
	patch := fmt.Appendf(nil, `{"metadata":{"labels":{%q:%q}}}`, key, value)
	for i := from; i < to; i++ {
		_, err := client.CoreV1().Pods(ns).Patch(context.Background(), podName(i), types.MergePatchType, patch, metav1.PatchOptions{})
		require.NoError(t, err)
	}
}

func deletePods(t testing.TB, client kubernetes.Interface, ns string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		require.NoError(t, client.CoreV1().Pods(ns).Delete(context.Background(), podName(i), metav1.DeleteOptions{}))
	}
}

// recEvent is one Handler call as a recorder saw it.
type recEvent struct {
	kind  string // "add", "update" or "delete"
	key   string // namespace/name
	uid   types.UID
	rv    string
	oldRV string // update: the old pod's resourceVersion
	gone  bool
	pod   *corev1.Pod
}

// recorder is a Handler that records every call and checks the delivery
// guarantees as the calls arrive: no overlapping calls, adds only for
// unknown pods, updates and deletes only for known ones, an update's old
// pod is the last one delivered, resourceVersions only grow, and no
// (uid, resourceVersion) is delivered twice.
type recorder struct {
	mu       sync.Mutex
	events   []recEvent
	known    map[string]*corev1.Pod
	seen     map[string]bool
	problems []string
	changed  chan struct{}
	inFlight atomic.Int32
}

func newRecorder() *recorder {
	return &recorder{known: map[string]*corev1.Pod{}, seen: map[string]bool{}, changed: make(chan struct{})}
}

func keyOf(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

func rvNumber(rv string) uint64 {
	n, _ := strconv.ParseUint(rv, 10, 64)
	return n
}

func (r *recorder) record(ev recEvent) {
	if r.inFlight.Add(1) != 1 {
		r.problem("handler calls overlap")
	}
	defer r.inFlight.Add(-1)
	r.mu.Lock()
	defer r.mu.Unlock()
	prev, known := r.known[ev.key]
	switch ev.kind {
	case "add":
		if known {
			r.problemLocked("add of known pod %s", ev.key)
		}
		r.known[ev.key] = ev.pod
	case "update":
		switch {
		case !known:
			r.problemLocked("update of unknown pod %s", ev.key)
		case prev.ResourceVersion != ev.oldRV:
			r.problemLocked("update of %s: old version %s, last delivered %s", ev.key, ev.oldRV, prev.ResourceVersion)
		case rvNumber(ev.rv) <= rvNumber(prev.ResourceVersion):
			r.problemLocked("update of %s does not move forward: %s after %s", ev.key, ev.rv, prev.ResourceVersion)
		}
		r.known[ev.key] = ev.pod
	case "delete":
		if !known {
			r.problemLocked("delete of unknown pod %s", ev.key)
		}
		delete(r.known, ev.key)
	}
	if ev.kind != "delete" || !ev.gone {
		id := string(ev.uid) + "@" + ev.rv
		if r.seen[id] {
			r.problemLocked("%s of %s delivered version %s twice", ev.kind, ev.key, ev.rv)
		}
		r.seen[id] = true
	}
	r.events = append(r.events, ev)
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *recorder) problem(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problemLocked(format, args...)
}

func (r *recorder) problemLocked(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

func (r *recorder) OnAdd(p *corev1.Pod) {
	r.record(recEvent{kind: "add", key: keyOf(p), uid: p.UID, rv: p.ResourceVersion, pod: p})
}

func (r *recorder) OnUpdate(old, p *corev1.Pod) {
	r.record(recEvent{kind: "update", key: keyOf(p), uid: p.UID, rv: p.ResourceVersion, oldRV: old.ResourceVersion, pod: p})
}

func (r *recorder) OnDelete(p *corev1.Pod, gone bool) {
	r.record(recEvent{kind: "delete", key: keyOf(p), uid: p.UID, rv: p.ResourceVersion, gone: gone, pod: p})
}

// mark returns the number of events so far, to read the later ones with
// since.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func (r *recorder) since(mark int) []recEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events[mark:])
}

// get returns the last pod delivered for namespace/name.
func (r *recorder) get(key string) (*corev1.Pod, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.known[key]
	return p, ok
}

// state returns namespace/name -> resourceVersion of the known pods.
func (r *recorder) state() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]string{}
	for k, p := range r.known {
		out[k] = p.ResourceVersion
	}
	return out
}

func (r *recorder) requireNoProblems(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Empty(t, r.problems, "delivery guarantees broken")
}

// waitFor waits until cond holds, re-checking after every event and every
// 50 ms, for at most podtest.WaitTimeout.
func (r *recorder) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(podtest.WaitTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond):
		case <-deadline.C:
			t.Fatalf("waited %s for %s; events so far: %s", podtest.WaitTimeout, what, r.describe(0))
		case <-t.Context().Done():
			t.Fatalf("test ended while waiting for %s", what)
		}
	}
}

// waitForServerState waits until the recorder knows exactly the pods the
// API server has for the selector in namespaces, at the same versions. It
// re-lists after every event, and at least every second in case the last
// event came before the list.
func (r *recorder) waitForServerState(t testing.TB, client kubernetes.Interface, executorID string, namespaces ...string) {
	t.Helper()
	sel, err := kubexec.ActiveSelector(executorID)
	require.NoError(t, err)
	deadline := time.Now().Add(podtest.WaitTimeout)
	var want map[string]string
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		want = map[string]string{}
		for _, ns := range namespaces {
			list, err := client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: sel.String()})
			require.NoError(t, err)
			for _, p := range list.Items {
				want[keyOf(&p)] = p.ResourceVersion
			}
		}
		got := r.state()
		if equalMaps(want, got) {
			return
		}
		if time.Now().After(deadline) {
			require.Equal(t, want, got, "the watcher's pods never matched the API server's; events: %s", r.describe(0))
		}
		select {
		case <-ch:
		case <-time.After(time.Second):
		case <-t.Context().Done():
			t.Fatal("test ended while waiting for the server state")
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func (r *recorder) describe(from int) string {
	var b strings.Builder
	for _, ev := range r.since(from) {
		fmt.Fprintf(&b, "\n  %s %s v%s", ev.kind, ev.key, ev.rv)
		if ev.gone {
			b.WriteString(" gone")
		}
	}
	return b.String()
}

// byPod groups events by pod name and turns each into a short word:
// "add", "update", "delete" or "gone".
func byPod(events []recEvent) map[string][]string {
	return group(events, func(key string) string { return key[strings.Index(key, "/")+1:] })
}

// byKey is byPod for pods of several namespaces: it groups by
// namespace/name.
func byKey(events []recEvent) map[string][]string {
	return group(events, func(key string) string { return key })
}

func group(events []recEvent, by func(key string) string) map[string][]string {
	out := map[string][]string{}
	for _, ev := range events {
		word := ev.kind
		if ev.gone {
			word = "gone"
		}
		out[by(ev.key)] = append(out[by(ev.key)], word)
	}
	return out
}

// tap is an http.RoundTripper between a watcher and the API server: it
// counts the pod list and watch requests, and can cut the watcher off the
// network (streams break, connections are refused) or let its open streams
// go silent as on a connection that died without closing.
type tap struct {
	base http.RoundTripper

	mu       sync.Mutex
	requests []podRequest
	down     bool
	open     map[*tapBody]struct{}
	// abandoned counts the silent streams whose request the client gave
	// up on at its deadline.
	abandoned int
}

// podRequest is one pod list or watch request that went through a tap.
type podRequest struct {
	kind   string // "list", "watch", or "stream" (a watch with sendInitialEvents: a streaming list)
	rv     string // its resourceVersion parameter
	status int    // the HTTP status of the response; 0 if none came
}

// relist reports whether the request fetched the whole state: a list or a
// streaming list that the API server answered (one that was refused, with
// 429 say, and retried fetched nothing).
func (r podRequest) relist() bool { return r.kind != "watch" && r.status == http.StatusOK }

// newTapClient returns a client of the cluster whose requests go through a
// new tap, with QPS and Burst raised well above the tests' needs.
func newTapClient(t testing.TB, c *devcluster.Cluster) (kubernetes.Interface, *tap) {
	t.Helper()
	tp := &tap{open: map[*tapBody]struct{}{}}
	cfg := c.RESTConfig()
	cfg.QPS, cfg.Burst = 1000, 2000
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		tp.base = rt
		return tp
	})
	client, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	return client, tp
}

// mark returns the number of requests so far, to read the later ones with
// since.
func (tp *tap) mark() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(tp.requests)
}

func (tp *tap) since(mark int) []podRequest {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return slices.Clone(tp.requests[mark:])
}

// count counts the requests since mark that satisfy match.
func (tp *tap) count(mark int, match func(podRequest) bool) int {
	n := 0
	for _, r := range tp.since(mark) {
		if match(r) {
			n++
		}
	}
	return n
}

func isRelist(r podRequest) bool { return r.relist() }
func isWatch(r podRequest) bool  { return r.kind == "watch" }

var errRefused = &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}

func (tp *tap) RoundTrip(req *http.Request) (*http.Response, error) {
	q := req.URL.Query()
	isWatch := q.Get("watch") == "true" || q.Get("watch") == "1"
	index := -1
	tp.mu.Lock()
	if tp.down {
		tp.mu.Unlock()
		return nil, errRefused
	}
	if req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/pods") {
		r := podRequest{kind: "list", rv: q.Get("resourceVersion")}
		switch {
		case isWatch && q.Get("sendInitialEvents") == "true":
			r.kind = "stream"
		case isWatch:
			r.kind = "watch"
		}
		tp.requests = append(tp.requests, r)
		index = len(tp.requests) - 1
	}
	tp.mu.Unlock()
	resp, err := tp.base.RoundTrip(req)
	if index >= 0 && err == nil {
		tp.mu.Lock()
		tp.requests[index].status = resp.StatusCode
		tp.mu.Unlock()
	}
	if err != nil || !isWatch {
		return resp, err
	}
	body := &tapBody{rc: resp.Body, tap: tp, ctx: req.Context()}
	tp.mu.Lock()
	tp.open[body] = struct{}{}
	tp.mu.Unlock()
	resp.Body = body
	return resp, nil
}

// cut breaks every open watch stream and refuses new requests until heal.
func (tp *tap) cut() {
	tp.mu.Lock()
	tp.down = true
	bodies := make([]*tapBody, 0, len(tp.open))
	for b := range tp.open {
		bodies = append(bodies, b)
	}
	tp.mu.Unlock()
	for _, b := range bodies {
		b.setState(bodyBroken)
		b.rc.Close()
	}
}

func (tp *tap) heal() {
	tp.mu.Lock()
	tp.down = false
	tp.mu.Unlock()
}

// silence makes every open watch stream that has not ended deliver
// nothing more, without closing, until its request is cancelled; new
// requests are served. It returns how many streams it silenced: none when
// no watch request is open at that moment (between two requests), so
// callers retry until it silences one.
func (tp *tap) silence() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	n := 0
	for b := range tp.open {
		if b.silence() {
			n++
		}
	}
	return n
}

// abandonedStreams returns how many silent streams the client has
// abandoned at its request's deadline so far.
func (tp *tap) abandonedStreams() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.abandoned
}

type bodyState int

const (
	bodyOK bodyState = iota
	bodyBroken
	bodySilent
)

var errReset = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}

type tapBody struct {
	rc    io.ReadCloser
	tap   *tap
	ctx   context.Context
	mu    sync.Mutex
	state bodyState
	// ended is set once the stream has returned an error (EOF included)
	// to its reader, which then reads no more: silencing it would test
	// nothing.
	ended bool
}

// silence makes the stream silent unless it has ended or broken, and
// reports whether it did.
func (b *tapBody) silence() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended || b.state != bodyOK {
		return false
	}
	b.state = bodySilent
	return true
}

func (b *tapBody) setState(s bodyState) {
	b.mu.Lock()
	b.state = s
	b.mu.Unlock()
}

func (b *tapBody) getState() bodyState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

func (b *tapBody) Read(p []byte) (int, error) {
	if b.getState() == bodyOK {
		n, err := b.rc.Read(p)
		b.mu.Lock()
		ok := b.state == bodyOK
		if ok && err != nil {
			b.ended = true
		}
		b.mu.Unlock()
		if ok {
			return n, err
		}
	}
	// Whatever arrived after the stream broke or went silent is lost.
	if b.getState() == bodySilent {
		<-b.ctx.Done()
		if errors.Is(b.ctx.Err(), context.DeadlineExceeded) {
			b.tap.mu.Lock()
			b.tap.abandoned++
			b.tap.mu.Unlock()
		}
		return 0, b.ctx.Err()
	}
	return 0, errReset
}

func (b *tapBody) Close() error {
	b.tap.mu.Lock()
	delete(b.tap.open, b)
	b.tap.mu.Unlock()
	return b.rc.Close()
}

// newWatcher makes a Watcher for cfg over client that records into a new
// recorder, runs it and waits until it synced.
func newWatcher(t testing.TB, client kubernetes.Interface, cfg Config) (*Watcher, *recorder) {
	t.Helper()
	rec := newRecorder()
	if cfg.Logger == nil && testing.Verbose() {
		cfg.Logger = testLogger(t)
	}
	w, err := New(client, cfg, rec)
	require.NoError(t, err)
	podtest.Run(t, w)
	ctx, cancel := context.WithTimeout(t.Context(), podtest.WaitTimeout)
	defer cancel()
	require.NoError(t, w.WaitForSync(ctx))
	require.True(t, w.HasSynced())
	return w, rec
}

// testLogger logs to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
