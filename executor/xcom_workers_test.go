package executor_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/xcom"
)

// TestXComFIFODoesNotHoldOtherResults: tasks whose value's file is a FIFO
// (which blocks every reader until a writer comes) outnumber the result
// workers; another task's result is still saved, and the FIFO tasks end
// with a final error that says what is wrong with their value, on both
// kinds of node (the process node runs the sidecar's commands with the
// host's tools, the kubelet node with busybox).
func TestXComFIFODoesNotHoldOtherResults(t *testing.T) {
	cluster.Need(t)
	t.Run("process node", func(t *testing.T) { testXComFIFO(t, onAnyNode) })
	t.Run("kubelet node", func(t *testing.T) { testXComFIFO(t, onKubelet) })
}

func testXComFIFO(t *testing.T, pin nodePin) {
	ns := cluster.NewNamespace(t, "xcom-fifo", nil)
	cfg := testConfig(ns)
	cfg.ResultWorkers = 2
	backend := &xcom.MemoryBackend{}
	collector, err := xcom.NewCollector(cluster.Client(), cluster.RESTConfig(), backend, xcom.Config{Pod: xcom.PodConfig{Channel: xcom.ChannelSidecar}})
	require.NoError(t, err)
	cfg.XCom = collector
	store := executor.NewMemoryStore()
	e := startExecutor(t, cluster.RESTConfig(), store, cfg)

	// More FIFO tasks than result workers; their main containers end, and
	// their sidecars wait for the values to be read.
	var fifos []kubexec.TaskKey
	for i := range cfg.ResultWorkers + 1 {
		k := key("xcom-fifo", i)
		fifos = append(fifos, k)
		require.NoError(t, e.Queue(pin.apply(t, shell(k, `mkfifo "$`+xcom.EnvPath+`"`), "")))
	}
	drive(t, e, 3*time.Minute, "the FIFO tasks' main containers end", func() bool {
		for _, k := range fifos {
			if _, saved := resultsByKey(store)[k]; saved {
				continue
			}
			if !mainEnded(t, ns, k) {
				return false
			}
		}
		return true
	})

	normal := key("xcom-fifo", 100)
	require.NoError(t, e.Queue(pin.apply(t, shell(normal, `echo '{"rows": 7}' > "$`+xcom.EnvPath+`"`), "")))
	drive(t, e, 3*time.Minute, "the normal task's result", func() bool {
		_, ok := resultsByKey(store)[normal]
		return ok
	})
	got := resultsByKey(store)[normal]
	require.Equal(t, kubexec.ReasonSucceeded, got.Reason, "%+v", got)
	pin.requireRanThere(t, got)
	value, err := backend.Get(t.Context(), got.XComRef)
	require.NoError(t, err)
	require.JSONEq(t, `{"rows": 7}`, string(value))

	drive(t, e, 3*time.Minute, "the FIFO tasks' results", func() bool { return len(store.Results()) == len(fifos)+1 })
	for _, k := range fifos {
		r := resultsByKey(store)[k]
		require.Equal(t, kubexec.ReasonXComFailed, r.Reason, "%+v", r)
		require.Contains(t, r.Message, "XCom value")
		require.Contains(t, r.Message, "not a regular file")
		require.Empty(t, r.XComRef)
	}
	requireNoTrackedPods(t, ns)
}

// mainEnded reports whether the main container of k's pod in ns has
// ended.
func mainEnded(t *testing.T, ns string, k kubexec.TaskKey) bool {
	name, err := kubexec.PodName(k)
	require.NoError(t, err)
	pod, err := cluster.Client().CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		return false
	}
	i := kubexec.MainContainer(pod)
	if i < 0 {
		return false
	}
	for _, st := range pod.Status.ContainerStatuses {
		if st.Name == pod.Spec.Containers[i].Name {
			return st.State.Terminated != nil
		}
	}
	return false
}

// hangingXCom is an XComCollector whose Collect, for the keys in hang,
// blocks until its context ends (or until release is closed); for the
// others it returns at once with no value.
type hangingXCom struct {
	hang    map[kubexec.TaskKey]bool
	release chan struct{}
	once    sync.Once
	calls   atomic.Int64 // of the hanging keys
	bounded atomic.Int64 // of those, calls whose context had a deadline
}

func (h *hangingXCom) MutatePod(context.Context, *corev1.Pod) error { return nil }
func (h *hangingXCom) Waiting(*corev1.Pod) bool                     { return false }

func (h *hangingXCom) Collect(ctx context.Context, _ *corev1.Pod, k kubexec.TaskKey) (string, error) {
	if !h.hang[k] {
		return "", nil
	}
	h.calls.Add(1)
	if _, ok := ctx.Deadline(); ok {
		h.bounded.Add(1)
	}
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case <-h.release:
		return "", nil
	}
}

func (h *hangingXCom) stopHanging() { h.once.Do(func() { close(h.release) }) }

// TestSlowXComCollectDoesNotHoldSaves: Collect calls that do not return
// (a host's XComCollector, a sidecar that never answers) outnumber the
// result workers; each is cut off after the executor's bound and tried
// again later, so that another attempt's result is saved meanwhile.
func TestSlowXComCollectDoesNotHoldSaves(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "xcom-slow", nil)
	cfg := testConfig(ns)
	cfg.XComTimeout = 300 * time.Millisecond
	cfg.ResultWorkers = 2
	slow := &hangingXCom{hang: map[kubexec.TaskKey]bool{}, release: make(chan struct{})}
	t.Cleanup(slow.stopHanging)
	cfg.XCom = slow
	store := executor.NewMemoryStore()
	e := startExecutor(t, cluster.RESTConfig(), store, cfg)

	var hanging []kubexec.TaskKey
	for i := range cfg.ResultWorkers + 1 {
		k := key("xcom-slow", i)
		slow.hang[k] = true
		hanging = append(hanging, k)
	}
	for _, k := range hanging {
		require.NoError(t, e.Queue(shell(k, "true")))
	}
	drive(t, e, 3*time.Minute, "hanging Collect calls on every result worker", func() bool {
		return slow.calls.Load() >= int64(cfg.ResultWorkers)
	})

	normal := key("xcom-slow", 100)
	require.NoError(t, e.Queue(shell(normal, "true")))
	drive(t, e, 3*time.Minute, "the normal attempt's result", func() bool {
		_, ok := resultsByKey(store)[normal]
		return ok
	})
	require.Equal(t, kubexec.ReasonSucceeded, resultsByKey(store)[normal].Reason)
	require.Equal(t, slow.calls.Load(), slow.bounded.Load(), "every Collect call has a deadline")

	// Once Collect returns, the others are saved too.
	slow.stopHanging()
	drive(t, e, 3*time.Minute, "all results", func() bool { return len(store.Results()) == len(hanging)+1 })
	for _, k := range hanging {
		require.Equal(t, kubexec.ReasonSucceeded, resultsByKey(store)[k].Reason)
	}
}
