package xcom

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kubexec/kubexec"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// The unit tests of Config.GiveUpAfter: a Collector whose exec is a fake
// (the seam execFn) and whose clock is the test's. Its API client points
// at a closed port, so the one API call on these paths (stopSidecar's
// look at a pod whose stop failed) fails as with an API server that is
// away.

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeExec answers like the sidecar (the value {"v":1}) when answer is
// set, and otherwise fails as exec on a pod whose node is gone does.
type fakeExec struct {
	mu       sync.Mutex
	answer   bool
	hang     bool // wait until the exec's context ends
	calls    int
	deadline time.Duration // left on the last exec's context, in real time
	// stuck: the sidecar answers, then its read blocks (a FIFO) until
	// the exec's context ends.
	stuck bool
	// flood: the sidecar answers with a size of flood bytes and sends
	// them all, whatever it was asked for.
	flood int
}

var errNodeGone = errors.New(`error dialing backend: dial tcp 127.0.0.1:10250: connect: connection refused`)

func (f *fakeExec) exec(ctx context.Context, _ *corev1.Pod, _ string, _ []string, stdout, stderr io.Writer) (int, error) {
	f.mu.Lock()
	f.calls++
	answer, hang, stuck, flood := f.answer, f.hang, f.stuck, f.flood
	if d, ok := ctx.Deadline(); ok {
		f.deadline = time.Until(d)
	} else {
		f.deadline = -1
	}
	f.mu.Unlock()
	switch {
	case hang:
		<-ctx.Done()
		return 0, ctx.Err()
	case stuck:
		_, _ = io.WriteString(stderr, answerMark+"\n")
		<-ctx.Done()
		return 0, ctx.Err()
	case flood > 0:
		_, _ = fmt.Fprintf(stderr, "%s\n%d\n", answerMark, flood)
		chunk := []byte(strings.Repeat("x", 64<<10))
		for n := 0; n < flood; n += len(chunk) {
			_, _ = stdout.Write(chunk[:min(len(chunk), flood-n)])
		}
		return 0, nil
	case answer:
		_, _ = io.WriteString(stderr, answerMark+"\n7\n")
		_, _ = io.WriteString(stdout, `{"v":1}`)
		return 0, nil
	}
	return 0, errNodeGone
}

func (f *fakeExec) set(answer, hang bool) {
	f.mu.Lock()
	f.answer, f.hang = answer, hang
	f.mu.Unlock()
}

func (f *fakeExec) stats() (calls int, deadline time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, f.deadline
}

func unitCollector(t *testing.T, bound time.Duration) (*Collector, *fakeClock, *fakeExec) {
	t.Helper()
	away := &rest.Config{Host: "http://127.0.0.1:1"}
	client, err := kubernetes.NewForConfig(away)
	require.NoError(t, err)
	c, err := NewCollector(client, away, &MemoryBackend{}, Config{GiveUpAfter: bound})
	require.NoError(t, err)
	clock := &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	f := &fakeExec{}
	c.now, c.execFn, c.retryDelay = clock.now, f.exec, time.Millisecond
	return c, clock, f
}

// sidecarPod is a pod whose main container succeeded while its sidecar
// runs, on node node-9.
func sidecarPod(uid string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "pod-" + uid, UID: types.UID("uid-" + uid)},
		Spec: corev1.PodSpec{NodeName: "node-9", Containers: []corev1.Container{
			{Name: "base"}, {Name: SidecarName},
		}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
			{Name: "base", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}},
			{Name: SidecarName, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
		}},
	}
}

// read reads the value of pod as fromSidecar does, and returns the error's
// *unanswered, if any.
func read(t *testing.T, c *Collector, pod *corev1.Pod) (*unanswered, error) {
	t.Helper()
	_, _, err := c.readFile(context.Background(), pod, SidecarName, DefaultPath, 100)
	var u *unanswered
	errors.As(err, &u)
	return u, err
}

// TestReadGivesUpAfterBound: exec that fails every time (the node is
// gone) is an error to retry, saying for how long, until it has failed
// for GiveUpAfter by the Collector's clock; then it is over, which
// fromSidecar turns into a final ErrUnreadable whose message says why.
func TestReadGivesUpAfterBound(t *testing.T) {
	t.Parallel()
	const bound = 5 * time.Minute
	c, clock, f := unitCollector(t, bound)
	pod := sidecarPod("a")

	u, err := read(t, c, pod)
	require.Error(t, err)
	require.NotNil(t, u, "%v", err)
	require.False(t, u.over(), "one failed read does not lose the value")
	require.NotErrorIs(t, err, kubexec.ErrXComValue)
	require.NotErrorIs(t, err, ErrUnreadable)
	require.ErrorIs(t, err, errNodeGone)
	require.ErrorContains(t, err, "has not answered exec")
	calls, _ := f.stats()
	require.Equal(t, readAttempts, calls, "one read tries readAttempts times")

	clock.add(bound - time.Second)
	u, _ = read(t, c, pod)
	require.NotNil(t, u)
	require.False(t, u.over(), "silent for %s of %s", u.silent, bound)
	require.Equal(t, bound-time.Second, u.silent)

	clock.add(time.Second)
	u, err = read(t, c, pod)
	require.NotNil(t, u)
	require.True(t, u.over(), "silent for %s of %s", u.silent, bound)
	require.ErrorIs(t, err, errNodeGone)
	calls2, _ := f.stats()
	require.Equal(t, 2*readAttempts+1, calls2, "once over the bound, a read stops at its first failure")

	// What the attempt's Result then says.
	verr := &ValueError{Key: unitKey, Container: "base", Source: "file " + DefaultPath, Size: -1, Limit: 100,
		Err: fmt.Errorf("%w: %s", ErrUnreadable, u.lost())}
	require.ErrorIs(t, verr, kubexec.ErrXComValue)
	msg := verr.Error()
	for _, want := range []string{"did not answer exec for 5m0s", "the value is lost", "node-9", "kubelet", "pods/exec", "GiveUpAfter", errNodeGone.Error()} {
		require.Contains(t, msg, want)
	}
}

// TestAnswerEndsSilence: an exec that is answered ends the silence, so
// failures before it do not count towards the bound; and a pod's silence
// is its own.
func TestAnswerEndsSilence(t *testing.T) {
	t.Parallel()
	const bound = time.Minute
	c, clock, f := unitCollector(t, bound)
	pod, other := sidecarPod("a"), sidecarPod("b")

	_, err := read(t, c, pod)
	require.Error(t, err)
	_, err = read(t, c, other)
	require.Error(t, err)
	clock.add(bound - time.Second)
	f.set(true, false)
	u, err := read(t, c, pod)
	require.NoError(t, err)
	require.Nil(t, u)

	f.set(false, false)
	clock.add(2 * time.Second)
	u, _ = read(t, c, pod)
	require.NotNil(t, u)
	require.False(t, u.over())
	require.Equal(t, time.Duration(0), u.silent, "the silence starts again at the first failure after the answer")

	u, _ = read(t, c, other)
	require.NotNil(t, u)
	require.True(t, u.over(), "the other pod has been silent for %s", u.silent)
}

// TestExecDeadline: each exec is cut off when the bound passes, but is
// given at least minExecTimeout; an exec that hangs then ends as a failure
// that is over the bound.
func TestExecDeadline(t *testing.T) {
	t.Parallel()
	const bound = time.Hour
	c, clock, f := unitCollector(t, bound)
	c.minExecTimeout = 50 * time.Millisecond
	c.cfg.ReadTimeout = 2 * bound // here the bound is the shorter
	pod := sidecarPod("a")

	_, _ = read(t, c, pod)
	_, left := f.stats()
	require.InDelta(t, float64(bound), float64(left), float64(time.Minute), "the first exec may take the whole bound; left %s", left)

	clock.add(50 * time.Minute)
	_, _ = read(t, c, pod)
	_, left = f.stats()
	require.InDelta(t, float64(10*time.Minute), float64(left), float64(time.Minute), "then what remains of it; left %s", left)

	clock.add(20 * time.Minute)
	f.set(false, true)
	done := make(chan error, 1)
	go func() {
		_, err := read(t, c, pod)
		done <- err
	}()
	select {
	case err := <-done:
		var u *unanswered
		require.ErrorAs(t, err, &u)
		require.True(t, u.over())
		require.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(2 * time.Minute):
		t.Fatal("an exec that hangs past the bound was not cut off")
	}
}

// TestStopGivesUp: a sidecar that cannot be stopped is an error to retry
// until it has been silent for the bound, then it is left to its node; and
// at once when the value was given up for its silence already.
func TestStopGivesUp(t *testing.T) {
	t.Parallel()
	const bound = time.Minute
	c, clock, _ := unitCollector(t, bound)
	ctx := context.Background()
	pod := sidecarPod("a")

	err := c.stopSidecar(ctx, pod, SidecarName, DefaultPath, false)
	require.ErrorIs(t, err, errNodeGone)
	clock.add(bound / 2)
	require.Error(t, c.stopSidecar(ctx, pod, SidecarName, DefaultPath, false))
	clock.add(bound / 2)
	require.NoError(t, c.stopSidecar(ctx, pod, SidecarName, DefaultPath, false))

	fresh := sidecarPod("b")
	require.NoError(t, c.stopSidecar(ctx, fresh, SidecarName, DefaultPath, true))
}

// TestCanceledExecIsNotSilence: an exec that ends because the caller's
// context did is not held against the node.
func TestCanceledExecIsNotSilence(t *testing.T) {
	t.Parallel()
	c, _, f := unitCollector(t, time.Minute)
	f.set(false, true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := c.readFile(ctx, sidecarPod("a"), SidecarName, DefaultPath, 100)
	require.ErrorIs(t, err, context.Canceled)
	var u *unanswered
	require.False(t, errors.As(err, &u))
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Empty(t, c.silent)
}

// TestSilenceForgotten: the silence of a pod nobody asks about any more is
// dropped, so that the Collector's memory stays bounded.
func TestSilenceForgotten(t *testing.T) {
	t.Parallel()
	c, clock, _ := unitCollector(t, time.Minute)
	for i := range 3 {
		_, _ = read(t, c, sidecarPod(fmt.Sprint(i)))
	}
	clock.add(time.Hour + time.Second)
	_, _ = read(t, c, sidecarPod("new"))
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Len(t, c.silent, 1)
}

// TestGiveUpAfterConfig: the default, and a negative value refused with an
// error that names the field.
func TestGiveUpAfterConfig(t *testing.T) {
	t.Parallel()
	c, _, _ := unitCollector(t, 0)
	require.Equal(t, 10*time.Minute, c.cfg.GiveUpAfter)
	_, err := NewCollector(c.client, c.config, &MemoryBackend{}, Config{GiveUpAfter: -time.Second})
	require.ErrorIs(t, err, kubexec.ErrInvalidConfig)
	require.ErrorContains(t, err, "Config.GiveUpAfter")
}

// TestLostMessageBounded: the last exec error in the message is cut to a
// few hundred bytes, keeping its end (where the cause is), and made valid
// UTF-8 (a strict store refuses anything else).
func TestLostMessageBounded(t *testing.T) {
	t.Parallel()
	long := "Internal error occurred: error sending request: Post \"https://10.0.0.1:10250/exec/" + strings.Repeat("x", 1000) + "\xff\": dial tcp: connect: connection refused"
	msg := (&unanswered{container: SidecarName, node: "node-9", silent: time.Minute, bound: time.Minute, err: errors.New(long)}).lost()
	require.Less(t, len(msg), 1000)
	require.True(t, utf8.ValidString(msg))
	require.Contains(t, msg, "Internal error occurred")
	require.Contains(t, msg, "connect: connection refused)")
}

// TestReadTimeoutBoundsEachExec: each exec is cut off after
// Config.ReadTimeout when that comes before GiveUpAfter's bound (the
// default is 1m); one the sidecar left unanswered still counts towards
// GiveUpAfter, to be retried.
func TestReadTimeoutBoundsEachExec(t *testing.T) {
	t.Parallel()
	c, _, f := unitCollector(t, time.Hour)
	require.Equal(t, time.Minute, c.cfg.ReadTimeout, "the default")
	_, _ = read(t, c, sidecarPod("a"))
	_, left := f.stats()
	require.InDelta(t, float64(time.Minute), float64(left), float64(30*time.Second), "left %s", left)

	c.cfg.ReadTimeout = 20 * time.Millisecond
	f.set(false, true)
	u, err := read(t, c, sidecarPod("b"))
	require.NotNil(t, u, "%v", err)
	require.False(t, u.over())
	require.NotErrorIs(t, err, ErrUnreadable, "no answer at all is the node's, retried until GiveUpAfter")
}

// TestReadThatHangsAfterAnswerIsFinal: a sidecar that answered but whose
// read does not finish within ReadTimeout (the value's file turned into a
// FIFO while it was read) gives a final ErrUnreadable that says so, at
// the first such read, and is not held against its node.
func TestReadThatHangsAfterAnswerIsFinal(t *testing.T) {
	t.Parallel()
	c, _, f := unitCollector(t, time.Hour)
	c.cfg.ReadTimeout = 20 * time.Millisecond
	f.mu.Lock()
	f.stuck = true
	f.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := read(t, c, sidecarPod("a"))
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrUnreadable)
		require.ErrorContains(t, err, "did not finish within 20ms (xcom.Config.ReadTimeout)")
		var u *unanswered
		require.False(t, errors.As(err, &u))
	case <-time.After(2 * time.Minute):
		t.Fatal("a read that hangs after the sidecar answered was not cut off")
	}
	calls, _ := f.stats()
	require.Equal(t, 1, calls, "final at the first read")
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Empty(t, c.silent)
}

// TestReadBuffersAtMostLimit: a sidecar that sends more than the limit+1
// bytes it was asked for (it ignores head -c) does not make the Collector
// buffer them: the read keeps limit+1 bytes, enough to see the value is
// too large.
func TestReadBuffersAtMostLimit(t *testing.T) {
	t.Parallel()
	c, _, f := unitCollector(t, time.Hour)
	f.mu.Lock()
	f.flood = 8 << 20
	f.mu.Unlock()
	const limit = 100
	data, size, err := c.readFile(context.Background(), sidecarPod("a"), SidecarName, DefaultPath, limit)
	require.NoError(t, err)
	require.Len(t, data, limit+1)
	require.Equal(t, int64(8<<20), size)
}

// TestCappedBuffer: the first max bytes are kept, the rest dropped without
// failing the write (which would break the exec's stream).
func TestCappedBuffer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		max    int64
		writes []string
		want   string
	}{
		{5, []string{"ab", "cd", "efg"}, "abcde"},
		{5, []string{"abcdefgh", "ij"}, "abcde"},
		{0, []string{"x"}, ""},
		{10, []string{"abc"}, "abc"},
	} {
		b := &cappedBuffer{max: tc.max}
		for _, w := range tc.writes {
			n, err := b.Write([]byte(w))
			require.NoError(t, err)
			require.Equal(t, len(w), n)
		}
		require.Equal(t, tc.want, b.String())
	}
}

// TestReadTimeoutConfig: a negative ReadTimeout is refused with an error
// that names the field.
func TestReadTimeoutConfig(t *testing.T) {
	t.Parallel()
	c, _, _ := unitCollector(t, 0)
	_, err := NewCollector(c.client, c.config, &MemoryBackend{}, Config{ReadTimeout: -time.Second})
	require.ErrorIs(t, err, kubexec.ErrInvalidConfig)
	require.ErrorContains(t, err, "Config.ReadTimeout")
}
