package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kubexec/kubexec"
)

// podTimes is when a watch of the test saw each step of one pod's life.
type podTimes struct {
	created, scheduled, running, ended, deleting, deleted time.Time
}

// watchPodTimes records, from now on, when each pod of namespace ns was
// seen created, bound to a node, running, ended (Succeeded or Failed),
// being deleted (the executor deletes a succeeded pod once its result is
// saved and its logs archived; the tracking finalizer holds it) and gone
// (the finalizer removed), until the test ends. The function it returns
// returns a copy of what it saw so far.
func watchPodTimes(t *testing.T, ns string) func() map[string]podTimes {
	w, err := devCluster.Client().CoreV1().Pods(ns).Watch(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	var mu sync.Mutex
	seen := map[string]*podTimes{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			now := time.Now()
			mu.Lock()
			pt := seen[pod.Name]
			if pt == nil {
				pt = &podTimes{}
				seen[pod.Name] = pt
			}
			set := func(at *time.Time, cond bool) {
				if cond && at.IsZero() {
					*at = now
				}
			}
			set(&pt.created, true)
			set(&pt.scheduled, pod.Spec.NodeName != "")
			set(&pt.running, pod.Status.Phase == corev1.PodRunning)
			set(&pt.ended, pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed)
			set(&pt.deleting, pod.DeletionTimestamp != nil)
			set(&pt.deleted, ev.Type == watch.Deleted)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		w.Stop()
		<-done
	})
	return func() map[string]podTimes {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[string]podTimes, len(seen))
		for name, pt := range seen {
			out[name] = *pt
		}
		return out
	}
}

// The timings of an attempt's life on the dev cluster, for
// docs/lifecycle.md: ten tasks of one second at once, each step's median and
// slowest, as a watch of the test saw them.
func TestLifecycleTimings(t *testing.T) {
	devCluster.Need(t)
	e := newEnv(t, "timings")
	const n = 10
	var wf strings.Builder
	wf.WriteString("workflow: timings\ndefaults: {image: busybox:1.36}\ntasks:\n")
	for i := range n {
		fmt.Fprintf(&wf, "- id: t%d\n  command: [sh, -c, \"sleep 1\"]\n", i)
	}
	snapshot := watchPodTimes(t, e.ns)
	start := time.Now()
	code, _, _ := e.main(t.Context(), "--plain", "run", e.writeWorkflow(wf.String()))
	require.Equal(t, exitOK, code)
	runTime := time.Since(start)

	s := e.store()
	attempts := map[string]time.Time{} // pod name -> recorded before Queue
	for i := range n {
		as, err := s.Attempts(t.Context(), "timings", "timings-1", fmt.Sprintf("t%d", i))
		require.NoError(t, err)
		require.Len(t, as, 1)
		require.Equal(t, kubexec.ReasonSucceeded, as[0].Result.Reason)
		attempts[as[0].PodName] = as[0].LaunchedAt
	}
	// Succeeded pods are deleted after their release: wait for the watch
	// to see every deletion.
	var seen map[string]podTimes
	require.Eventually(t, func() bool {
		seen = snapshot()
		for name := range attempts {
			if seen[name].deleted.IsZero() {
				return false
			}
		}
		return true
	}, 3*time.Minute, 100*time.Millisecond, "the watch saw every pod deleted")

	steps := []struct {
		what     string
		from, to func(name string, pt podTimes) time.Time
	}{
		{"queued → pod created", func(name string, _ podTimes) time.Time { return attempts[name] }, func(_ string, pt podTimes) time.Time { return pt.created }},
		{"created → bound to a node", nil, func(_ string, pt podTimes) time.Time { return pt.scheduled }},
		{"bound → running", nil, func(_ string, pt podTimes) time.Time { return pt.running }},
		{"running → ended (the task: `sleep 1`)", nil, func(_ string, pt podTimes) time.Time { return pt.ended }},
		{"ended → result saved, logs archived, pod deleted (held by the finalizer)", nil, func(_ string, pt podTimes) time.Time { return pt.deleting }},
		{"deleted → finalizer removed, pod gone", nil, func(_ string, pt podTimes) time.Time { return pt.deleted }},
		{"queued → pod deleted (whole attempt)", func(name string, _ podTimes) time.Time { return attempts[name] }, func(_ string, pt podTimes) time.Time { return pt.deleted }},
	}
	var table strings.Builder
	table.WriteString("| step | median | slowest |\n|---|---:|---:|\n")
	for i, st := range steps {
		from := st.from
		if from == nil {
			from = steps[i-1].to
		}
		var ds []time.Duration
		for name := range attempts {
			pt := seen[name]
			a, b := from(name, pt), st.to(name, pt)
			require.False(t, a.IsZero() || b.IsZero(), "pod %s: step %q not seen: %+v", name, st.what, pt)
			// A watch may deliver two steps in one event: equal times.
			require.False(t, b.Before(a.Add(-time.Second)), "pod %s: step %q goes back in time", name, st.what)
			ds = append(ds, max(b.Sub(a), 0))
		}
		slices.Sort(ds)
		fmt.Fprintf(&table, "| %s | %s | %s |\n", st.what, seconds(ds[len(ds)/2]), seconds(ds[len(ds)-1]))
	}
	fmt.Fprintf(&table, "| `scheduler run` of the %d tasks, dev cluster already running | %s | |\n", n, seconds(runTime))
	t.Logf("timings:\n%s", table.String())
	docExample(t, "timings.md", table.String(), numberShape)
}

// seconds formats d as seconds with two decimals.
func seconds(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// The timings of a restart, for docs/lifecycle.md: a scheduler stopped
// while an attempt runs (its pod goes on), then `scheduler resume`, which
// starts an executor with the same ExecutorID: how long until it tracks
// the running attempt again, and until the run ends once the attempt is
// let go.
func TestRestartTimings(t *testing.T) {
	e := newEnv(t, "restart")
	e.flags = []string{"--pod-policy", "privileged"} // the task shares a host folder
	shared := t.TempDir()
	require.NoError(t, os.Chmod(shared, 0o777)) // tasks run as uid 65534
	wf := e.writeWorkflow(fmt.Sprintf(`workflow: restart
defaults: {image: busybox:1.36}
tasks:
- id: long
  command: [sh, -c, 'until [ -e /shared/release ]; do sleep 0.1; done']
  podOverride:
    spec:
      volumes: [{name: shared, hostPath: {path: %s, type: Directory}}]
      containers: [{name: base, volumeMounts: [{name: shared, mountPath: /shared}]}]
`, shared))
	ctx, stop := context.WithCancel(t.Context())
	first := make(chan int)
	go func() {
		code, _, _ := e.main(ctx, "--plain", "run", wf)
		first <- code
	}()
	e.waitPod(podName(t, "restart", "restart-1", "long", 1), "runs", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	stop()
	require.Equal(t, exitStopped, <-first)

	var out syncBuffer
	start := time.Now()
	second := make(chan int, 1)
	go func() { second <- Main(t.Context(), e.args("--plain", "resume"), &out, &out) }()
	require.Eventually(t, func() bool {
		return strings.Contains(out.String(), "long: attempt 1: its pod was running before the restart; tracking it again")
	}, 3*time.Minute, 10*time.Millisecond, "resume did not track the running attempt again:\n%s", out.String())
	tracked := time.Since(start)
	release := time.Now()
	require.NoError(t, os.WriteFile(filepath.Join(shared, "release"), nil, 0o644))
	var code int
	select {
	case code = <-second:
	case <-time.After(3 * time.Minute):
		t.Fatalf("the resumed run did not end:\n%s", out.String())
	}
	ended := time.Since(release)
	require.Equal(t, exitOK, code, out.String())
	require.Contains(t, out.String(), "Run restart-1 succeeded")

	table := "| step | time |\n|---|---:|\n" +
		fmt.Sprintf("| `scheduler resume` started → the running attempt tracked again (same ExecutorID: no adoption, no Lease wait) | %s |\n", seconds(tracked)) +
		fmt.Sprintf("| the task told to finish → it ends, its result is saved, its pod released, the run finished | %s |\n", seconds(ended))
	t.Logf("timings:\n%s", table)
	docExample(t, "timings-restart.md", table, numberShape)
}
