package podwatch

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/devcluster"
	"github.com/kubexec/kubexec/internal/podtest"
)

// TestWatchDeliversEachChangeOnce: the first list arrives as adds, then
// every create, change and delete arrives once, in order, with Get, List
// and LastResourceVersion agreeing with what was delivered.
func TestWatchDeliversEachChangeOnce(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	client, ns, id := podsOfNewExecutor(t, cluster, "watch-basic", 5)
	// A pod of another executor in the same namespace is not watched.
	_, err := client.CoreV1().Pods(ns).Create(t.Context(), podtest.NewPod(t, "someone-else", "other"), metav1.CreateOptions{})
	require.NoError(t, err)

	w, rec := newWatcher(t, client, Config{ExecutorID: id, Namespaces: []string{ns}})
	require.Equal(t, map[string][]string{"p00": {"add"}, "p01": {"add"}, "p02": {"add"}, "p03": {"add"}, "p04": {"add"}},
		byPod(rec.since(0)), "the first list, delivered before HasSynced")
	// The informer records the list's resourceVersion just after it has
	// handed the list over, so it may lag behind the sync for a moment.
	rec.waitFor(t, "the first list's resourceVersion", func() bool { return w.LastResourceVersion(ns) != "" })
	require.Empty(t, w.LastResourceVersion("elsewhere"))

	mark := rec.mark()
	createPods(t, client, ns, id, 5, 7)
	label(t, client, ns, "step", "1", 0, 3)
	label(t, client, ns, "step", "2", 0, 1)
	deletePods(t, client, ns, 3, 4)
	rec.waitForServerState(t, client, id, ns)
	require.Equal(t, map[string][]string{
		"p00": {"update", "update"}, "p01": {"update"}, "p02": {"update"}, "p03": {"update", "delete"},
		"p05": {"add"}, "p06": {"add"},
	}, byPod(rec.since(mark)))
	for _, ev := range rec.since(mark) {
		if ev.kind == "delete" {
			require.False(t, ev.gone, "a delete seen by the watch is not a tombstone")
			require.NotNil(t, ev.pod.DeletionTimestamp, "the deleted pod's final state")
		}
	}
	rec.requireNoProblems(t)

	// Get and List return the trimmed pods the handler saw last.
	p, ok := w.Get(ns, "p00")
	require.True(t, ok)
	require.Equal(t, "2", p.Labels["step"])
	require.Empty(t, p.ManagedFields, "pods are trimmed")
	require.Empty(t, p.Spec.Containers[0].Env, "pods are trimmed")
	require.Equal(t, rec.state()[ns+"/p00"], p.ResourceVersion)
	_, ok = w.Get(ns, "p03")
	require.False(t, ok)
	_, ok = w.Get(ns, "other")
	require.False(t, ok)
	require.Len(t, w.List(), 6)
	require.GreaterOrEqual(t, rvNumber(w.LastResourceVersion(ns)), rvNumber(p.ResourceVersion))
}

// TestPodMarkedDoneLeavesTheWatch: a pod labelled done (or relabelled to
// another executor) no longer matches the selector and is delivered as a
// delete, not gone, without a deletionTimestamp; the pod still exists.
func TestPodMarkedDoneLeavesTheWatch(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	client, ns, id := podsOfNewExecutor(t, cluster, "watch-done", 2)
	w, rec := newWatcher(t, client, Config{ExecutorID: id, Namespaces: []string{ns}})

	mark := rec.mark()
	label(t, client, ns, kubexec.LabelDone, kubexec.DoneValue, 0, 1)
	label(t, client, ns, kubexec.LabelExecutor, "another-executor", 1, 2)
	rec.waitForServerState(t, client, id, ns)
	require.Equal(t, map[string][]string{"p00": {"delete"}, "p01": {"delete"}}, byPod(rec.since(mark)))
	for _, ev := range rec.since(mark) {
		require.False(t, ev.gone)
		require.Nil(t, ev.pod.DeletionTimestamp, "it was not deleted")
		_, err := client.CoreV1().Pods(ns).Get(t.Context(), ev.pod.Name, metav1.GetOptions{})
		require.NoError(t, err, "it still exists")
	}
	require.Empty(t, w.List())
	rec.requireNoProblems(t)
}

// TestMultipleNamespaces: one watch per listed namespace, nothing from the
// others, all delivered from one goroutine without overlapping calls.
func TestMultipleNamespaces(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	client := cluster.Client()
	a := cluster.NewNamespace(t, "watch-a", nil)
	b := cluster.NewNamespace(t, "watch-b", nil)
	outside := cluster.NewNamespace(t, "watch-out", nil)
	id := podtest.ExecutorID(t)
	for _, ns := range []string{a, b, outside} {
		createPods(t, client, ns, id, 0, 3)
	}
	tapClient, tp := newTapClient(t, cluster)
	w, rec := newWatcher(t, tapClient, Config{ExecutorID: id, Namespaces: []string{b, a, a}})
	require.Len(t, rec.since(0), 6, "the first lists of both namespaces")

	mark := rec.mark()
	for _, ns := range []string{a, b, outside} {
		createPods(t, client, ns, id, 3, 13)
		label(t, client, ns, "step", "1", 0, 13)
		deletePods(t, client, ns, 0, 2)
	}
	rec.waitForServerState(t, client, id, a, b)
	got := map[string]int{}
	for _, ev := range rec.since(mark) {
		ns := ev.key[:strings.Index(ev.key, "/")]
		require.NotEqual(t, outside, ns, "an event from a namespace not watched")
		got[ns+" "+ev.kind]++
	}
	// A delete is two events: the deletionTimestamp, then the removal.
	require.Equal(t, map[string]int{a + " add": 10, a + " update": 15, a + " delete": 2, b + " add": 10, b + " update": 15, b + " delete": 2}, got)
	rec.requireNoProblems(t)
	require.Len(t, w.List(), 22)
	_, ok := w.Get(outside, "p05")
	require.False(t, ok)
	require.NotEmpty(t, w.LastResourceVersion(a))
	require.NotEmpty(t, w.LastResourceVersion(b))
	require.Empty(t, w.LastResourceVersion(outside))

	require.Equal(t, 2, tp.count(0, isRelist), "one list per namespace: %v", tp.since(0))
}

// TestAllNamespaces: with no namespaces configured, one watch sees the
// executor's pods everywhere.
func TestAllNamespaces(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	client := cluster.Client()
	a := cluster.NewNamespace(t, "watch-all-a", nil)
	b := cluster.NewNamespace(t, "watch-all-b", nil)
	id := podtest.ExecutorID(t)
	createPods(t, client, a, id, 0, 2)
	tapClient, tp := newTapClient(t, cluster)
	w, rec := newWatcher(t, tapClient, Config{ExecutorID: id})
	require.Len(t, rec.since(0), 2)

	createPods(t, client, b, id, 0, 2)
	label(t, client, a, "step", "1", 0, 2)
	_, err := client.CoreV1().Pods(b).Create(t.Context(), podtest.NewPod(t, "someone-else", "other"), metav1.CreateOptions{})
	require.NoError(t, err)
	rec.waitForServerState(t, client, id, a, b)
	require.Equal(t, map[string][]string{
		a + "/p00": {"add", "update"}, a + "/p01": {"add", "update"}, b + "/p00": {"add"}, b + "/p01": {"add"},
	}, byKey(rec.since(0)))
	rec.requireNoProblems(t)

	_, ok := w.Get(b, "p01")
	require.True(t, ok)
	require.Len(t, w.List(), 4)
	require.NotEmpty(t, w.LastResourceVersion(a))
	require.Equal(t, w.LastResourceVersion(a), w.LastResourceVersion(b), "one watch for all namespaces")
	require.Equal(t, 1, tp.count(0, isRelist), "one list: %v", tp.since(0))
}

// TestCustomSelector: Config.Selector replaces the executor's selector.
func TestCustomSelector(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	client, ns, id := podsOfNewExecutor(t, cluster, "watch-sel", 3)
	label(t, client, ns, "pick", "yes", 1, 2)
	_, rec := newWatcher(t, client, Config{ExecutorID: id, Namespaces: []string{ns},
		Selector: labels.SelectorFromSet(labels.Set{"pick": "yes"})})
	require.Equal(t, map[string][]string{"p01": {"add"}}, byPod(rec.since(0)))
}

// TestShortWatchesAndDeadConnections: watch requests that the server ends
// every second or so, and a connection that goes silent without closing,
// cost no relist and lose no event: the watch resumes from the last
// resourceVersion.
func TestShortWatchesAndDeadConnections(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	client, ns, id := podsOfNewExecutor(t, cluster, "watch-dead", 3)
	tapClient, tp := newTapClient(t, cluster)
	var resumes, relists atomic.Int64
	onRestart := func(namespace string, relist bool) {
		if namespace != ns {
			t.Errorf("OnRestart for namespace %q, want %q", namespace, ns)
		}
		if relist {
			relists.Add(1)
		} else {
			resumes.Add(1)
		}
	}
	_, rec := newWatcher(t, tapClient, Config{ExecutorID: id, Namespaces: []string{ns},
		WatchTimeout: time.Second, ClientTimeout: 2 * time.Second, OnRestart: onRestart})
	start := tp.mark()

	// The server ends each watch after a second or so; changes keep coming.
	for step := range 3 {
		mark := rec.mark()
		label(t, client, ns, "step", string(rune('a'+step)), 0, 3)
		rec.waitForServerState(t, client, id, ns)
		require.Len(t, rec.since(mark), 3)
	}
	rec.waitFor(t, "several watch requests", func() bool { return tp.count(start, isWatch) >= 3 })

	// The open stream goes silent as a dead connection would: the
	// client-side deadline abandons it and the changes made meanwhile
	// arrive on a new request. The server ends each request after a
	// second or so, so there may be no open stream at a given moment:
	// silence the next one that is.
	rec.waitFor(t, "an open watch stream to silence", func() bool { return tp.silence() > 0 })
	mark := rec.mark()
	label(t, client, ns, "step", "silent", 0, 3)
	deletePods(t, client, ns, 2, 3)
	rec.waitFor(t, "the client to abandon the silent stream at its deadline", func() bool { return tp.abandonedStreams() > 0 })
	rec.waitForServerState(t, client, id, ns)
	require.Equal(t, map[string][]string{"p00": {"update"}, "p01": {"update"}, "p02": {"update", "update", "delete"}}, byPod(rec.since(mark)))
	rec.requireNoProblems(t)
	require.Zero(t, tp.count(start, isRelist), "a relist: %v", tp.since(start))
	// The abandoned stream is a restart (a resume); the routine ends of
	// requests at their server-side timeout are not.
	require.Positive(t, resumes.Load(), "OnRestart was not told of the resume")
	require.Zero(t, relists.Load())
}

// TestAPIServerRestart: the API server restarts while the watcher runs,
// with the watch cache on as in production. The new API server's watch
// cache starts at the current revision and answers a watch from an older
// resourceVersion with 410 Gone, so the watcher relists once, from its last
// resourceVersion (never from scratch), and delivers only the changes:
// nothing for the pods that did not change, every change made around the
// restart once. (Without the watch cache the watch resumes with no relist
// at all: TestWithoutWatchCache.) It restarts the package's cluster, so it
// does not run in parallel.
func TestAPIServerRestart(t *testing.T) {
	cluster.Need(t)
	r := restartMidWatch(t, cluster)
	ns, rec, tp, mark, reqs := r.ns, r.rec, r.tp, r.mark, r.reqs

	got := byPod(rec.since(mark))
	for _, name := range []string{"p05", "p06"} {
		// Deleted before or after the relist, depending on timing.
		require.Contains(t, [][]string{{"update", "delete"}, {"gone"}, {"update", "gone"}}, got[name], name)
		delete(got, name)
	}
	require.Equal(t, map[string][]string{
		"p00": {"update"}, "p01": {"update"}, "p02": {"update"}, "p03": {"update"}, "p04": {"update"},
		"p10": {"add"}, "p11": {"add"}, "p12": {"add"},
	}, got, "nothing for p07-p09, which did not change")
	for _, ev := range rec.since(mark) {
		if ev.kind == "update" && ev.key != ns+"/p05" && ev.key != ns+"/p06" {
			require.Equal(t, "2", ev.pod.Labels["step"])
		}
	}
	rec.requireNoProblems(t)
	after := tp.since(reqs)
	require.LessOrEqual(t, tp.count(reqs, isRelist), 1, "more than one relist: %v", after)
	for _, r := range after {
		require.NotContains(t, []string{"", "0"}, r.rv, "a request from scratch: %v", after)
	}
	require.GreaterOrEqual(t, rvNumber(after[0].rv), rvNumber(r.lastRV), "the first request after the restart does not resume from the last resourceVersion: %v", after)
}

// restartRun is what restartMidWatch did.
type restartRun struct {
	ns     string
	rec    *recorder
	tp     *tap
	lastRV string // the watch's resourceVersion before the restart
	mark   int    // rec.mark() before the restart
	reqs   int    // tp.mark() before the restart
}

// restartMidWatch watches 10 pods and changes them all, restarts c's API
// server, and right after it changes p00-p04, deletes p05-p06 and creates
// p10-p12; it returns once the watcher knows the API server's state.
func restartMidWatch(t *testing.T, c *devcluster.Cluster) restartRun {
	client, ns, id := podsOfNewExecutor(t, c, "watch-restart", 10)
	tapClient, tp := newTapClient(t, c)
	w, rec := newWatcher(t, tapClient, Config{ExecutorID: id, Namespaces: []string{ns}})
	label(t, client, ns, "step", "1", 0, 10)
	rec.waitForServerState(t, client, id, ns)
	r := restartRun{ns: ns, rec: rec, tp: tp, lastRV: w.LastResourceVersion(ns), mark: rec.mark(), reqs: tp.mark()}

	require.NoError(t, c.RestartAPIServer(t.Context()))
	label(t, client, ns, "step", "2", 0, 5)
	deletePods(t, client, ns, 5, 7)
	createPods(t, client, ns, id, 10, 13)
	rec.waitForServerState(t, client, id, ns)
	return r
}

// TestWithoutWatchCache runs the fault tests that need watches served by
// etcd: on its own cluster with the watch cache off.
func TestWithoutWatchCache(t *testing.T) {
	c := devcluster.StartForTest(t, devcluster.Options{DisableWatchCache: true})
	t.Run("APIServerRestartResumesWithoutRelist", func(t *testing.T) { testRestartResumesWithoutRelist(t, c) })
	t.Run("RelistAfterCompactionDeliversOnlyChanges", func(t *testing.T) { testRelistAfterCompaction(t, c) })
}

// testRestartResumesWithoutRelist: the API server restarts while the
// watcher runs; the watch resumes from its last resourceVersion (no list,
// no streaming list) and every change made around the restart arrives
// once, deletes as real deletes rather than tombstones.
func testRestartResumesWithoutRelist(t *testing.T, c *devcluster.Cluster) {
	r := restartMidWatch(t, c)
	rec, tp, mark, reqs := r.rec, r.tp, r.mark, r.reqs

	require.Equal(t, map[string][]string{
		"p00": {"update"}, "p01": {"update"}, "p02": {"update"}, "p03": {"update"}, "p04": {"update"},
		"p05": {"update", "delete"}, "p06": {"update", "delete"}, "p10": {"add"}, "p11": {"add"}, "p12": {"add"},
	}, byPod(rec.since(mark)))
	for _, ev := range rec.since(mark) {
		require.False(t, ev.gone, "%s %s: a tombstone means the watcher relisted", ev.kind, ev.key)
	}
	rec.requireNoProblems(t)
	after := tp.since(reqs)
	require.Zero(t, tp.count(reqs, isRelist), "the watcher relisted after the restart: %v", after)
	require.NotEmpty(t, after, "the watch was not reopened")
	require.Equal(t, "watch", after[0].kind)
	// At or after the version of the last event (a bookmark may have come
	// since).
	require.GreaterOrEqual(t, rvNumber(after[0].rv), rvNumber(r.lastRV), "the watch did not resume from the last resourceVersion: %v", after)
}

// testRelistAfterCompaction: the watcher is cut off the network while pods
// change, are deleted, created, and one is deleted and created again under
// its name; etcd is compacted, so the watch cannot resume (410 Gone) and
// the watcher relists. It delivers exactly the changes: a changed pod once
// in its final state, a deleted one as a tombstone (gone), nothing for the
// pods that did not change.
func testRelistAfterCompaction(t *testing.T, c *devcluster.Cluster) {
	client, ns, id := podsOfNewExecutor(t, c, "watch-compact", 10)
	tapClient, tp := newTapClient(t, c)
	var logs logRecorder
	_, rec := newWatcher(t, tapClient, Config{ExecutorID: id, Namespaces: []string{ns}, Logger: slog.New(&logs)})
	createPods(t, client, ns, id, 10, 30)
	label(t, client, ns, "step", "1", 0, 10)
	rec.waitForServerState(t, client, id, ns)
	old25, ok := rec.get(ns + "/p25")
	require.True(t, ok)

	mark, reqs := rec.mark(), tp.mark()
	tp.cut()
	label(t, client, ns, "step", "2", 10, 20)
	label(t, client, ns, "step", "3", 10, 20)
	deletePods(t, client, ns, 20, 25)
	createPods(t, client, ns, id, 30, 35)
	deletePods(t, client, ns, 25, 26)
	createPods(t, client, ns, id, 25, 26)
	_, err := c.CompactEtcd(t.Context())
	require.NoError(t, err)
	tp.heal()
	rec.waitForServerState(t, client, id, ns)

	want := map[string][]string{"p25": {"gone", "add"}}
	for i := 10; i < 20; i++ {
		want[podName(i)] = []string{"update"}
	}
	for i := 20; i < 25; i++ {
		want[podName(i)] = []string{"gone"}
	}
	for i := 30; i < 35; i++ {
		want[podName(i)] = []string{"add"}
	}
	events := rec.since(mark)
	require.Equal(t, want, byPod(events), "events after the gap:%s", rec.describe(mark))
	for _, ev := range events {
		switch {
		case ev.kind == "update":
			require.Equal(t, "3", ev.pod.Labels["step"], "a pod changed twice in the gap arrives once in its final state")
		case ev.gone && ev.key == ns+"/p25":
			require.Equal(t, old25.UID, ev.uid, "the tombstone carries the old pod")
		case ev.gone:
			require.Empty(t, ev.pod.Labels["step"], "a tombstone carries the last known state")
		}
	}
	rec.requireNoProblems(t)
	require.Positive(t, tp.count(reqs, isRelist), "the watcher did not relist, so the gap was not a 410: %v", tp.since(reqs))
	require.True(t, logs.has("watch expired; relisting"), "no 410 was logged: %v", logs.messages())

	// The watch is live again.
	mark = rec.mark()
	label(t, client, ns, "step", "4", 0, 1)
	rec.waitForServerState(t, client, id, ns)
	require.Equal(t, map[string][]string{"p00": {"update"}}, byPod(rec.since(mark)))
	rec.requireNoProblems(t)
}

// TestRunLifecycle: Run runs once, returns nil when its context ends, and
// WaitForSync reports a watcher that stopped before it synced.
func TestRunLifecycle(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	tapClient, tp := newTapClient(t, cluster)
	tp.cut() // the API server is unreachable: the watcher never syncs
	w, err := New(tapClient, Config{ExecutorID: "lifecycle"}, HandlerFuncs{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	short, cancelShort := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancelShort()
	require.ErrorIs(t, w.WaitForSync(short), context.DeadlineExceeded)
	require.False(t, w.HasSynced())
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(podtest.WaitTimeout):
		t.Fatal("Run did not return after its context ended")
	}
	require.ErrorIs(t, w.WaitForSync(t.Context()), ErrStopped)
	require.ErrorIs(t, w.Run(t.Context()), ErrAlreadyStarted)
	require.Empty(t, w.List())
}

func TestNewRejectsBadConfig(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	client := cluster.Client()
	cases := map[string]struct {
		cfg  Config
		want string
	}{
		"no executor":       {Config{}, "Config.ExecutorID"},
		"bad executor":      {Config{ExecutorID: "a b"}, "Config.ExecutorID"},
		"empty namespace":   {Config{ExecutorID: "e", Namespaces: []string{"a", ""}}, "leave Namespaces nil"},
		"bad namespace":     {Config{ExecutorID: "e", Namespaces: []string{"A_B"}}, `"A_B" is not a namespace name`},
		"negative timeout":  {Config{ExecutorID: "e", ClientTimeout: -time.Second}, "Config.ClientTimeout"},
		"sub-second timout": {Config{ExecutorID: "e", WatchTimeout: time.Millisecond}, "Config.WatchTimeout"},
	}
	for name, tc := range cases {
		_, err := New(client, tc.cfg, HandlerFuncs{})
		require.ErrorIs(t, err, kubexec.ErrInvalidConfig, name)
		require.ErrorContains(t, err, tc.want, name)
	}
	_, err := New(nil, Config{ExecutorID: "e"}, HandlerFuncs{})
	require.ErrorContains(t, err, "needs a Kubernetes client")
	_, err = New(client, Config{ExecutorID: "e"}, nil)
	require.ErrorContains(t, err, "needs a Handler")
}

// logRecorder is a slog.Handler that keeps the messages.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}

func (l *logRecorder) has(msg string) bool {
	for _, m := range l.messages() {
		if m == msg {
			return true
		}
	}
	return false
}
