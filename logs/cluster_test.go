package logs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/devcluster"
	"github.com/kubexec/kubexec/logs"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// The tests run pods on the dev cluster's process node, whose containers
// run their commands as local processes and serve pods/log through the
// API server, as a kubelet does.

var cluster *devcluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(devcluster.Main(m, devcluster.Options{Nodes: 1}, &cluster))
}

const executorID = "logs-test"

// testKey is a key of its own for each test.
func testKey(t *testing.T) kubexec.TaskKey {
	return kubexec.TaskKey{WorkflowID: "logs", TaskID: t.Name(), RunID: "run 1", MapIndex: kubexec.NotMapped, Attempt: 1}
}

// startPod creates the pod of key whose containers run the given sh
// scripts (the first is the main container, "base"), without kubexec's
// finalizer so that the test can delete it.
func startPod(t *testing.T, ns string, key kubexec.TaskKey, scripts ...string) *corev1.Pod {
	t.Helper()
	return startPodWith(t, ns, key, nil, scripts...)
}

// startPodWith is startPod with mutate, when not nil, applied to the pod
// before it is created.
func startPodWith(t *testing.T, ns string, key kubexec.TaskKey, mutate func(*corev1.Pod), scripts ...string) *corev1.Pod {
	t.Helper()
	grace := int64(1)
	pod := &corev1.Pod{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, TerminationGracePeriodSeconds: &grace}}
	for i, s := range scripts {
		name := "base"
		if i > 0 {
			name = fmt.Sprintf("side%d", i)
		}
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: name, Image: "debian:bookworm", Command: []string{"sh", "-c", s}})
	}
	if mutate != nil {
		mutate(pod)
	}
	require.NoError(t, kubexec.ApplyMetadata(pod, executorID, key))
	pod.Finalizers = nil
	pod.Namespace = ns
	created, err := cluster.Client().CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
	require.NoError(t, err)
	return created
}

// waitPod polls the pod until cond holds.
func waitPod(t *testing.T, ns, name string, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := cluster.Client().CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		return cond(p), nil
	})
	require.NoError(t, err, "pod %s/%s: %s; last seen: %+v", ns, name, what, last)
	return last
}

func ended(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

func deletePod(t *testing.T, ns, name string) {
	t.Helper()
	zero := int64(0)
	err := cluster.Client().CoreV1().Pods(ns).Delete(t.Context(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if !apierrors.IsNotFound(err) {
		require.NoError(t, err)
	}
	err = wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := cluster.Client().CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	require.NoError(t, err, "pod %s/%s still exists", ns, name)
}

func newService(t *testing.T, client kubernetes.Interface, cfg logs.Config) (*logs.Service, *logs.FileSink) {
	t.Helper()
	sink, err := logs.NewFileSink(t.TempDir())
	require.NoError(t, err)
	svc, err := logs.New(client, sink, cfg)
	require.NoError(t, err)
	return svc, sink
}

// collect reads every line opts selects.
func collect(t *testing.T, svc *logs.Service, key kubexec.TaskKey, opts logs.Options) []logs.Line {
	t.Helper()
	var out []logs.Line
	for l, err := range svc.Lines(t.Context(), key, opts) {
		require.NoError(t, err)
		out = append(out, l)
	}
	return out
}

func texts(lines []logs.Line) []string {
	var out []string
	for _, l := range lines {
		if !l.Note {
			out = append(out, l.Text)
		}
	}
	return out
}

// numbered is what `seq`-style scripts print: prefix 0 .. prefix n-1.
func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

func TestFollowRunningPod(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	ns := cluster.NewNamespace(t, "logs-follow", nil)
	key := testKey(t)
	svc, _ := newService(t, cluster.Client(), logs.Config{Namespace: ns, PollInterval: 100 * time.Millisecond})
	// Followed from before the container starts. The container prints
	// its lines, then runs until the reader has had the first one (it
	// waits for a file in a host folder it shares with the test), so that
	// it still runs then however slow the machine: a reader that only
	// read once the container ended would never get there.
	release := t.TempDir()
	require.NoError(t, os.Chmod(release, 0o755))
	pod := startPodWith(t, ns, key, func(p *corev1.Pod) {
		dir := corev1.HostPathDirectory
		p.Spec.Volumes = []corev1.Volume{{Name: "release", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: release, Type: &dir}}}}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "release", MountPath: "/release"}}
	}, `i=0; while [ $i -lt 40 ]; do echo "line $i"; i=$((i+1)); sleep 0.05; done; until [ -e /release/go ]; do sleep 0.05; done`)

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var got []string
	var runningAtFirst bool
	for l, err := range svc.Lines(ctx, key, logs.Options{Follow: true}) {
		require.NoError(t, err)
		if len(got) == 0 {
			p, err := cluster.Client().CoreV1().Pods(ns).Get(t.Context(), pod.Name, metav1.GetOptions{})
			require.NoError(t, err)
			runningAtFirst = p.Status.ContainerStatuses[0].State.Running != nil
			require.NoError(t, os.WriteFile(filepath.Join(release, "go"), nil, 0o644))
		}
		require.Equal(t, "base", l.Container)
		require.False(t, l.Time.IsZero())
		got = append(got, l.Text)
	}
	require.True(t, runningAtFirst, "the first line arrived while the container ran")
	require.Equal(t, numbered("line ", 40), got)

	// Tail and since on the ended pod.
	lines := collect(t, svc, key, logs.Options{TailLines: 5})
	require.Equal(t, numbered("line ", 40)[35:], texts(lines))
	all := collect(t, svc, key, logs.Options{})
	since := collect(t, svc, key, logs.Options{Since: all[30].Time})
	require.Equal(t, numbered("line ", 40)[30:], texts(since))
}

func TestFollowAllContainers(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	ns := cluster.NewNamespace(t, "logs-all", nil)
	key := testKey(t)
	svc, _ := newService(t, cluster.Client(), logs.Config{Namespace: ns, PollInterval: 100 * time.Millisecond})
	startPod(t, ns, key,
		`for i in $(seq 0 29); do echo "a$i"; sleep 0.02; done`,
		`for i in $(seq 0 19); do echo "b$i"; sleep 0.03; done`)
	byContainer := map[string][]string{}
	for l, err := range svc.Lines(t.Context(), key, logs.Options{Follow: true, AllContainers: true}) {
		require.NoError(t, err)
		byContainer[l.Container] = append(byContainer[l.Container], l.Text)
	}
	require.Equal(t, numbered("a", 30), byContainer["base"])
	require.Equal(t, numbered("b", 20), byContainer["side1"])

	var b bytes.Buffer
	require.NoError(t, svc.Copy(t.Context(), &b, key, logs.Options{AllContainers: true}))
	require.Contains(t, b.String(), "[base] a0\n")
	require.Contains(t, b.String(), "[side1] b19\n")

	_, err := first(svc.Lines(t.Context(), key, logs.Options{Container: "nope"}))
	require.ErrorIs(t, err, logs.ErrUnknownContainer)
}

// first returns the first error of a sequence of lines.
func first(seq func(func(logs.Line, error) bool)) ([]logs.Line, error) {
	var out []logs.Line
	for l, err := range seq {
		if err != nil {
			return out, err
		}
		out = append(out, l)
	}
	return out, nil
}

// cutTransport cuts the bodies of pods/log responses after a few hundred
// bytes, as a dropped connection would, until cuts runs out.
type cutTransport struct {
	rt    http.RoundTripper
	cuts  atomic.Int32
	after []int
	done  atomic.Int32
}

var errCut = errors.New("test: connection cut")

func (c *cutTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(req)
	if err != nil || !strings.HasSuffix(req.URL.Path, "/log") || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	if n := c.cuts.Add(-1); n >= 0 {
		resp.Body = &cutBody{rc: resp.Body, n: c.after[int(n)%len(c.after)], done: &c.done}
	}
	return resp, nil
}

type cutBody struct {
	rc   io.ReadCloser
	n    int
	done *atomic.Int32
	once sync.Once
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		b.once.Do(func() { b.done.Add(1) })
		return 0, errCut
	}
	if len(p) > b.n {
		p = p[:b.n]
	}
	n, err := b.rc.Read(p)
	b.n -= n
	return n, err
}

func (b *cutBody) Close() error { return b.rc.Close() }

func cuttingClient(t *testing.T, cuts int, after ...int) (kubernetes.Interface, *cutTransport) {
	t.Helper()
	cfg := cluster.RESTConfig()
	ct := &cutTransport{after: after}
	ct.cuts.Store(int32(cuts))
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { ct.rt = rt; return ct })
	client, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	return client, ct
}

func TestResumeAfterDroppedStream(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	ns := cluster.NewNamespace(t, "logs-cut", nil)
	key := testKey(t)
	// Many lines in the same second (sinceTime has whole seconds), a
	// burst, then a slower stream that is followed while it runs.
	pod := startPod(t, ns, key, `seq -f "fast %g" 0 499; for i in $(seq 0 59); do echo "slow $i"; sleep 0.03; done`)
	want := append(numbered("fast ", 500), numbered("slow ", 60)...)

	client, ct := cuttingClient(t, 12, 700, 3000, 150, 5000, 1200, 90)
	svc, _ := newService(t, client, logs.Config{Namespace: ns, PollInterval: 100 * time.Millisecond})
	lines := collect(t, svc, key, logs.Options{Follow: true})
	require.Equal(t, want, texts(lines), "followed through cut streams")
	require.GreaterOrEqual(t, ct.done.Load(), int32(3), "streams were cut")
	for _, l := range lines {
		require.False(t, l.Note, "no line was lost: %s", l.Text)
	}

	waitPod(t, ns, pod.Name, "ended", ended)
	ct.cuts.Store(12)
	before := ct.done.Load()
	require.Equal(t, want, texts(collect(t, svc, key, logs.Options{})), "read once through cut streams")
	require.Greater(t, ct.done.Load(), before)
}

func TestReadAfterPodDeleted(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	ns := cluster.NewNamespace(t, "logs-archive", nil)
	key := testKey(t)
	svc, sink := newService(t, cluster.Client(), logs.Config{Namespace: ns})
	pod := startPod(t, ns, key, `for i in $(seq 0 99); do echo "out $i"; echo "err $i" >&2; done; printf "no newline"`, `echo side`)
	pod = waitPod(t, ns, pod.Name, "ended", ended)
	live := collect(t, svc, key, logs.Options{AllContainers: true})
	var liveCopy bytes.Buffer
	require.NoError(t, svc.Copy(t.Context(), &liveCopy, key, logs.Options{Timestamps: true}))

	require.NoError(t, svc.Archive(t.Context(), pod, key))
	archive := readFile(t, sink, key)
	// Archiving again replaces the archive: no line twice.
	require.NoError(t, svc.Archive(t.Context(), pod, key))
	require.Equal(t, strings.Count(archive, "\n"), strings.Count(readFile(t, sink, key), "\n"))

	deletePod(t, ns, pod.Name)
	fromArchive := collect(t, svc, key, logs.Options{AllContainers: true})
	require.Equal(t, len(live), len(fromArchive))
	for i := range live {
		require.True(t, live[i].Time.Equal(fromArchive[i].Time))
		live[i].Time = fromArchive[i].Time
	}
	require.Equal(t, live, fromArchive)
	require.Equal(t, "no newline", live[len(live)-2].Text)
	require.True(t, live[len(live)-2].Partial)

	var archivedCopy bytes.Buffer
	require.NoError(t, svc.Copy(t.Context(), &archivedCopy, key, logs.Options{Timestamps: true}))
	require.Equal(t, liveCopy.String(), archivedCopy.String())

	require.Equal(t, []string{"out 99", "err 99", "no newline"}, texts(collect(t, svc, key, logs.Options{TailLines: 3})))
	require.Equal(t, []string{"side"}, texts(collect(t, svc, key, logs.Options{Container: "side1"})))
	_, err := first(svc.Lines(t.Context(), key, logs.Options{Previous: true}))
	require.ErrorIs(t, err, logs.ErrNotFound)

	other := key
	other.Attempt = 9
	_, err = first(svc.Lines(t.Context(), other, logs.Options{}))
	require.ErrorIs(t, err, logs.ErrNotFound)
}

func readFile(t *testing.T, sink *logs.FileSink, key kubexec.TaskKey) string {
	t.Helper()
	path, err := sink.Path(key)
	require.NoError(t, err)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// A pod deleted while it is followed: the reader continues from the
// archive, where the live stream stopped.
func TestFollowContinuesFromArchive(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	ns := cluster.NewNamespace(t, "logs-switch", nil)
	key := testKey(t)
	svc, _ := newService(t, cluster.Client(), logs.Config{Namespace: ns, PollInterval: 100 * time.Millisecond})
	pod := startPod(t, ns, key, `seq -f "line %g" 0 19; sleep 300`)

	var got []string
	for l, err := range svc.Lines(t.Context(), key, logs.Options{Follow: true}) {
		require.NoError(t, err)
		got = append(got, l.Text)
		if len(got) == 20 {
			require.NoError(t, svc.Archive(t.Context(), pod, key))
			go func() {
				zero := int64(0)
				_ = cluster.Client().CoreV1().Pods(ns).Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
			}()
		}
	}
	require.Equal(t, numbered("line ", 20), got)
}

func TestArchiveSizeCap(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	ns := cluster.NewNamespace(t, "logs-cap", nil)
	key := testKey(t)
	svc, sink := newService(t, cluster.Client(), logs.Config{Namespace: ns, MaxArchiveBytes: 64 << 10, ArchiveTailBytes: 16 << 10})
	// 3000 lines of 100 bytes with their newline: about 300 KB.
	pod := startPod(t, ns, key, `seq -f "line %05g ........................................................................................" 0 2999`)
	pod = waitPod(t, ns, pod.Name, "ended", ended)
	require.NoError(t, svc.Archive(t.Context(), pod, key))
	deletePod(t, ns, pod.Name)

	lines := collect(t, svc, key, logs.Options{})
	var notes []logs.Line
	for _, l := range lines {
		if l.Note {
			notes = append(notes, l)
			continue
		}
		require.Len(t, l.Text, 99)
	}
	require.Len(t, notes, 1)
	require.Contains(t, notes[0].Text, "were left out here")
	require.True(t, strings.HasPrefix(lines[0].Text, "line 00000 "))
	require.True(t, strings.HasPrefix(lines[len(lines)-1].Text, "line 02999 "), "the end of the log is kept")
	archive := readFile(t, sink, key)
	require.LessOrEqual(t, len(archive), 64<<10, "the archive, header and records whole")
	require.Greater(t, len(archive), 60<<10, "the cap is used")
}

// The cap counts what is stored, not one byte per line: a log of many
// short lines, each stored with its time and container, stays within it.
func TestArchiveCapCountsShortLines(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	ns := cluster.NewNamespace(t, "logs-cap-short", nil)
	key := testKey(t)
	const capBytes = 1 << 20
	svc, sink := newService(t, cluster.Client(), logs.Config{Namespace: ns, MaxArchiveBytes: capBytes})
	// 200,001 lines, 400 KB of log: about 8 MB of records.
	pod := startPod(t, ns, key, `yes x | head -n 200000; echo end`)
	pod = waitPod(t, ns, pod.Name, "ended", ended)
	require.NoError(t, svc.Archive(t.Context(), pod, key))
	archive := readFile(t, sink, key)
	require.LessOrEqual(t, len(archive), capBytes, "the archive, header and records whole, is within the cap")
	require.Greater(t, len(archive), capBytes-4096, "the cap is used")

	deletePod(t, ns, pod.Name)
	lines := collect(t, svc, key, logs.Options{})
	var notes []logs.Line
	kept := 0
	for _, l := range lines {
		if l.Note {
			notes = append(notes, l)
			continue
		}
		kept++
	}
	require.Len(t, notes, 1)
	var leftBytes, leftLines int
	_, err := fmt.Sscanf(notes[0].Text, "[kubexec] %d bytes in %d lines were left out here", &leftBytes, &leftLines)
	require.NoError(t, err, notes[0].Text)
	require.Equal(t, 200001, kept+leftLines, "every line is kept or counted in the note")
	require.Equal(t, 2*leftLines, leftBytes)
	require.Equal(t, "x", lines[0].Text)
	require.Equal(t, "end", lines[len(lines)-1].Text, "the end of the log is kept")
}

// failingSink fails the first archive part-way, as a crash would.
type failingSink struct {
	logs.LogSink
	fail atomic.Bool
}

func (s *failingSink) Create(ctx context.Context, key kubexec.TaskKey) (logs.SinkWriter, error) {
	w, err := s.LogSink.Create(ctx, key)
	if err != nil || !s.fail.Load() {
		return w, err
	}
	return &failingWriter{SinkWriter: w, left: 2000}, nil
}

type failingWriter struct {
	logs.SinkWriter
	left int
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.left -= len(p); w.left < 0 {
		return 0, errors.New("test: the process died")
	}
	return w.SinkWriter.Write(p)
}

// An archive interrupted between the pod's end and its commit leaves
// nothing half-written; archiving again after a restart is complete.
func TestArchiveAfterCrash(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	ns := cluster.NewNamespace(t, "logs-crash", nil)
	key := testKey(t)
	dir := t.TempDir()
	fileSink, err := logs.NewFileSink(dir)
	require.NoError(t, err)
	sink := &failingSink{LogSink: fileSink}
	sink.fail.Store(true)
	svc, err := logs.New(cluster.Client(), sink, logs.Config{Namespace: ns})
	require.NoError(t, err)
	pod := startPod(t, ns, key, `seq -f "line %g" 0 999`)
	pod = waitPod(t, ns, pod.Name, "ended", ended)
	require.Error(t, svc.Archive(t.Context(), pod, key))
	_, err = fileSink.Open(t.Context(), key)
	require.ErrorIs(t, err, logs.ErrNotArchived)

	// "Restart": a new Service over the same folder.
	restarted, err := logs.New(cluster.Client(), fileSink, logs.Config{Namespace: ns})
	require.NoError(t, err)
	require.NoError(t, restarted.Archive(t.Context(), pod, key))
	deletePod(t, ns, pod.Name)
	require.Equal(t, numbered("line ", 1000), texts(collect(t, restarted, key, logs.Options{})))

	// Archiving a pod that is gone keeps the archive there is.
	require.NoError(t, restarted.Archive(t.Context(), pod, key))
	require.Equal(t, numbered("line ", 1000), texts(collect(t, restarted, key, logs.Options{})))
}

func TestNotStarted(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	ns := cluster.NewNamespace(t, "logs-pending", nil)
	key := testKey(t)
	svc, _ := newService(t, cluster.Client(), logs.Config{Namespace: ns})
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever,
		// No node matches: the pod stays pending.
		NodeSelector: map[string]string{"kubexec.io/no-such-node": "true"},
		Containers:   []corev1.Container{{Name: "base", Image: "debian:bookworm", Command: []string{"true"}}},
	}}
	require.NoError(t, kubexec.ApplyMetadata(pod, executorID, key))
	pod.Finalizers = nil
	_, err := cluster.Client().CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = first(svc.Lines(t.Context(), key, logs.Options{}))
	require.ErrorIs(t, err, logs.ErrNotStarted)

	// Archiving a pod whose containers never started archives no lines.
	require.NoError(t, svc.Archive(t.Context(), pod, key))
	deletePod(t, ns, pod.Name)
	require.Empty(t, collect(t, svc, key, logs.Options{}))
}

// Lines longer than MaxLineBytes come in pieces, also across cut streams.
// (Lines stay under 16 KiB, where runtimes split them into records of
// their own.)
func TestLongLinesInPieces(t *testing.T) {
	cluster.Need(t)
	t.Parallel()
	ns := cluster.NewNamespace(t, "logs-long", nil)
	key := testKey(t)
	client, ct := cuttingClient(t, 6, 2500, 700, 4000)
	svc, _ := newService(t, client, logs.Config{Namespace: ns, MaxLineBytes: 1024, PollInterval: 100 * time.Millisecond})
	startPod(t, ns, key, `head -c 10000 /dev/zero | tr '\0' x; echo; echo after; head -c 3000 /dev/zero | tr '\0' y`)
	var whole []string
	mid := false
	for l, err := range svc.Lines(t.Context(), key, logs.Options{Follow: true}) {
		require.NoError(t, err)
		require.LessOrEqual(t, len(l.Text), 1024)
		if mid {
			whole[len(whole)-1] += l.Text
		} else {
			whole = append(whole, l.Text)
		}
		mid = l.Partial
	}
	require.Equal(t, []string{strings.Repeat("x", 10000), "after", strings.Repeat("y", 3000)}, whole)
	require.True(t, mid, "the log ends without a newline")
	require.Positive(t, ct.done.Load())
}
