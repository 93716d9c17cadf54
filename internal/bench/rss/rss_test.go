// Package rss_test measures the resident memory of an idle executor that
// tracks many running pods. It has only a benchmark: without -test.bench it
// starts no cluster.
package rss_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/internal/devcluster"
	"github.com/kubexec/kubexec/internal/parallel"
	"github.com/kubexec/kubexec/internal/provenance"
	"github.com/kubexec/kubexec/podtemplate"
)

// childEnv makes the test binary the executor process of the benchmark.
const childEnv = "KUBEXEC_RSS_CHILD"

var cluster *devcluster.Cluster

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv(childEnv) != "" || flag.Lookup("test.bench").Value.String() == "" {
		os.Exit(m.Run()) // the child process, or no benchmark asked for: no cluster
	}
	os.Exit(devcluster.Main(m, devcluster.Options{}, &cluster))
}

// rssPods is the number of pods the measured executor tracks.
const rssPods = 10_000

// noScheduler is a scheduler name no scheduler answers to: the pods stay
// unbound, so no node runs them and only the benchmark changes them.
const noScheduler = "kubexec-bench-no-scheduler"

// idle is how long the executor runs synced and idle (Heartbeat once per
// second, as a host's loop) before its memory is read.
const idle = 15 * time.Second

// BenchmarkIdleRSS10k measures the resident memory (VmRSS) of an executor
// process that tracks 10,000 running pods and has nothing else to do.
//
// The pods are what the executor itself would create for 10,000 attempts
// (its builder, its labels, annotations and tracking finalizer, a
// command and a few environment variables), created by the benchmark with
// the executor's id. No node runs them: their scheduler name matches no
// scheduler, and their status is set through the pods/status subresource
// to what a kubelet reports for a running pod (phase Running, a running
// container with ids, conditions, IPs). To the executor they are running
// pods; there are no processes.
//
// The executor runs in a child process (this test binary, re-executed):
// it starts, syncs its watch, adopts the pods as its own from an earlier
// run, then idles; the parent reads VmRSS from /proc/PID/status 15 s after
// the sync (the garbage of the first list is still there: an idle process
// allocates too little to collect it), 150 s after it, and again, with
// VmHWM, once the runtime has run two collections since the sync (the
// periodic one comes every two minutes) and the scavenger has had a minute
// to return what the last one freed: the memory the executor keeps while
// it idles. A single collection late in the 150 s leaves the scavenger no
// time: that reading is reported too, but the target is for the steady one. A
// second child, identical but in an empty namespace and run at the same
// time, is the baseline: the difference divided by 10,000 is the memory
// per tracked pod.
func BenchmarkIdleRSS10k(b *testing.B) {
	cluster.Need(b)
	n := rssPods
	if v, err := strconv.Atoi(os.Getenv("KUBEXEC_BENCH_RSS_PODS")); err == nil && v > 0 {
		n = v
	}
	rc := cluster.RESTConfig()
	rc.QPS, rc.Burst = 2000, 4000
	client, err := kubernetes.NewForConfig(rc)
	require.NoError(b, err)

	for b.Loop() {
		b.StopTimer()
		ns := cluster.NewNamespace(b, "rss", nil)
		id := fmt.Sprintf("rss-%d", os.Getpid())
		start := time.Now()
		createRunningPods(b, client, ns, id, n)
		b.Logf("created %d pods and set them Running in %s", n, time.Since(start).Round(time.Millisecond))

		// The baseline child and the measured one run at the same time:
		// each idles until its steady reading.
		emptyNS := cluster.NewNamespace(b, "rss-empty", nil)
		var base, full childMemory
		var baseErr, fullErr error
		var wg sync.WaitGroup
		wg.Go(func() { base, baseErr = runChild(emptyNS, id+"-empty", 0) })
		wg.Go(func() { full, fullErr = runChild(ns, id, n) })
		wg.Wait()
		require.NoError(b, baseErr, "the executor with 0 pods")
		require.NoError(b, fullErr, "the executor with %d pods", n)
		require.GreaterOrEqual(b, full.gcs, int64(steadyGCs), "the runtime collected %d times after the sync: the steady figures include those collections", steadyGCs)
		require.GreaterOrEqual(b, base.gcs, int64(steadyGCs), "the baseline's runtime collected %d times after the sync", steadyGCs)
		b.StartTimer()

		b.ReportMetric(float64(full.rss)/1024, "rss-MiB")
		b.ReportMetric(float64(full.rssSynced)/1024, "rss-synced-MiB")
		b.ReportMetric(float64(full.hwm)/1024, "peak-rss-MiB")
		b.ReportMetric(float64(full.heap)/(1<<20), "go-live-heap-MiB")
		b.ReportMetric(float64(base.rss)/1024, "rss-0-pods-MiB")
		b.ReportMetric(float64(full.rss-base.rss)*1024/float64(n), "rss-B/pod")
		b.ReportMetric(float64(full.rss150-base.rss150)*1024/float64(n), "rss-150s-B/pod")
		b.ReportMetric(full.steadyAt.Seconds(), "steady-after-s")
		b.ReportMetric(float64(full.rssSynced-base.rssSynced)*1024/float64(n), "rss-synced-B/pod")
		b.ReportMetric(float64(full.heap-base.heap)/float64(n), "heap-B/pod")
		b.ReportMetric(float64(full.tracked), "tracked-pods")
		b.Logf("executor with %d pods: VmRSS %d kB %s after its sync, after %d collections (%d kB %s after it, %d kB %s after it), VmHWM %d kB, Go heap %d B, synced in %s; with 0 pods: VmRSS %d kB %s after its sync (%d kB, %d kB), Go heap %d B",
			full.tracked, full.rss, full.steadyAt.Round(time.Second), full.gcs, full.rssSynced, idle, full.rss150, steadyAfter, full.hwm, full.heap, full.synced,
			base.rss, base.steadyAt.Round(time.Second), base.rssSynced, base.rss150, base.heap)
	}
}

// provenanceKey marks the benchmark's pods as the executor's own.
var provenanceKey = []byte("the RSS benchmark's provenance..")

// createRunningPods creates n task pods of executor id in ns and sets
// their status to running.
func createRunningPods(b *testing.B, client kubernetes.Interface, ns, id string, n int) {
	template := podtemplate.DefaultTemplate()
	uid := int64(1000)
	template.Spec.SecurityContext.RunAsUser = &uid
	template.Spec.SchedulerName = noScheduler
	builder, err := podtemplate.New(template, podtemplate.Config{ExecutorID: id, Namespace: ns})
	require.NoError(b, err)
	marks, err := provenance.New(provenanceKey)
	require.NoError(b, err)
	ctx := context.Background()
	startedAt := metav1.Now()
	err = parallel.Do(n, 32, func(i int) error {
		spec := podtemplate.TaskSpec{
			Key: kubexec.TaskKey{WorkflowID: "nightly-etl", TaskID: fmt.Sprintf("load_partition_%05d", i),
				RunID: "scheduled__2026-03-01T00:00:00+00:00", MapIndex: kubexec.NotMapped, Attempt: 1},
			Image:   "registry.example.com/data/etl:2026.03.01",
			Command: []string{"python", "-m", "etl.load", "--partition", strconv.Itoa(i)},
			Env: []corev1.EnvVar{
				{Name: "ETL_TARGET", Value: "warehouse"},
				{Name: "ETL_PARTITION", Value: strconv.Itoa(i)},
				{Name: "LOG_LEVEL", Value: "info"},
			},
			Requests: map[corev1.ResourceName]string{corev1.ResourceCPU: "250m", corev1.ResourceMemory: "512Mi"},
			Limits:   map[corev1.ResourceName]string{corev1.ResourceMemory: "1Gi"},
		}
		pod, err := builder.Build(ctx, spec)
		if err != nil {
			return err
		}
		if err := kubexec.ApplyMetadata(pod, id, spec.Key); err != nil {
			return err
		}
		if err := marks.Sign(pod); err != nil { // as the executor does
			return err
		}
		created, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		created.Status = runningStatus(created, i, startedAt)
		_, err = client.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{})
		return err
	})
	require.NoError(b, err)
}

// runningStatus is the status a kubelet reports for a pod whose one
// container runs.
func runningStatus(pod *corev1.Pod, i int, at metav1.Time) corev1.PodStatus {
	ip := fmt.Sprintf("10.244.%d.%d", i/250, i%250+2)
	cond := func(t corev1.PodConditionType) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: at}
	}
	return corev1.PodStatus{
		Phase: corev1.PodRunning,
		Conditions: []corev1.PodCondition{
			cond(corev1.PodReadyToStartContainers), cond(corev1.PodInitialized), cond(corev1.PodReady),
			cond(corev1.ContainersReady), cond(corev1.PodScheduled),
		},
		HostIP:    "10.0.0.2",
		HostIPs:   []corev1.HostIP{{IP: "10.0.0.2"}},
		PodIP:     ip,
		PodIPs:    []corev1.PodIP{{IP: ip}},
		StartTime: &at,
		QOSClass:  corev1.PodQOSBurstable,
		ContainerStatuses: []corev1.ContainerStatus{{
			Name:         pod.Spec.Containers[0].Name,
			State:        corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at}},
			Ready:        true,
			Started:      new(true),
			Image:        pod.Spec.Containers[0].Image,
			ImageID:      "registry.example.com/data/etl@sha256:9b2a9f3c5d0e8a1b4c7d2e5f8a0b3c6d9e2f5a8b1c4d7e0f3a6b9c2d5e8f1a4b",
			ContainerID:  fmt.Sprintf("containerd://%064x", uint64(i)*0x9e3779b97f4a7c15),
			RestartCount: 0,
		}},
	}
}

// childMemory is what the parent learned of one child executor.
type childMemory struct {
	tracked int
	// rssSynced is VmRSS (kB) after the idle period that follows the sync:
	// it still holds the garbage of the first list, which an idle process
	// has no reason to collect yet. rss and hwm are VmRSS and VmHWM once
	// the runtime's periodic collections have run and the scavenger has
	// returned what they freed (steadyGCs, scavengeTime): the memory the
	// process keeps while it stays idle.
	rssSynced, rss, hwm int64
	// rss150 is VmRSS (kB) 150 s after the sync, the earliest steady
	// reading; steadyAt is how long after the sync rss was read.
	rss150   int64
	steadyAt time.Duration
	heap     int64 // bytes in use by the Go heap, from the child
	gcs      int64 // collections the child's runtime ran after its sync
	synced   time.Duration
}

// The steady reading of an idle child's memory is taken once its runtime
// has run steadyGCs collections since the sync (the forced one comes every
// two minutes when nothing else runs one) and the last of them is
// scavengeTime old, so that the scavenger has returned what they freed;
// not before steadyAfter, nor later than steadyBy after the sync.
const (
	steadyGCs    = 2
	scavengeTime = time.Minute
	steadyAfter  = 150 * time.Second
	steadyBy     = 8 * time.Minute
)

// runChild starts an executor process with id on ns, waits until it
// tracks want pods, lets it idle, reads its memory three times (idle, then
// steadyAfter after the sync, then steady), and stops it. It is safe to call from any
// goroutine: it returns errors instead of failing b.
func runChild(ns, id string, want int) (m childMemory, err error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleExecutorChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1", "RSS_NS="+ns, "RSS_ID="+id,
		"RSS_WANT="+strconv.Itoa(want), "RSS_KUBECONFIG="+cluster.Kubeconfig())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return m, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return m, err
	}
	if err := cmd.Start(); err != nil {
		return m, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	read := func(prefix string) (string, error) {
		deadline := time.After(5 * time.Minute)
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					return "", fmt.Errorf("the child executor %s exited before %q", id, prefix)
				}
				if rest, ok := strings.CutPrefix(line, prefix); ok {
					return rest, nil
				}
			case <-deadline:
				return "", fmt.Errorf("no %q from the child executor %s within 5 minutes", prefix, id)
			}
		}
	}
	ask := func(question string, format string, into ...any) error {
		if _, err := fmt.Fprintln(stdin, question); err != nil {
			return err
		}
		answer, err := read(question + " ")
		if err != nil {
			return err
		}
		_, err = fmt.Sscanf(answer, format, into...)
		return err
	}
	line, err := read("synced ")
	if err != nil {
		return m, err
	}
	if _, err := fmt.Sscanf(line, "%d %d", &m.tracked, &m.synced); err != nil {
		return m, err
	}
	if m.tracked != want {
		return m, fmt.Errorf("the child executor %s tracks %d pods, want %d", id, m.tracked, want)
	}
	syncedAt := time.Now()
	time.Sleep(idle)
	if m.rssSynced, _, err = procStatus(cmd.Process.Pid); err != nil {
		return m, err
	}
	time.Sleep(time.Until(syncedAt.Add(steadyAfter)))
	if m.rss150, _, err = procStatus(cmd.Process.Pid); err != nil {
		return m, err
	}
	for {
		var sinceLast time.Duration
		if err := ask("gcs", "%d %d", &m.gcs, &sinceLast); err != nil {
			return m, err
		}
		if (m.gcs >= steadyGCs && sinceLast >= scavengeTime) || time.Since(syncedAt) >= steadyBy {
			break
		}
		time.Sleep(5 * time.Second)
	}
	m.steadyAt = time.Since(syncedAt)
	if m.rss, m.hwm, err = procStatus(cmd.Process.Pid); err != nil {
		return m, err
	}
	if err := ask("heap", "%d", &m.heap); err != nil {
		return m, err
	}
	if err := stdin.Close(); err != nil {
		return m, err
	}
	_, err = read("stopped")
	return m, err
}

// procStatus returns VmRSS and VmHWM of process pid, in kB.
func procStatus(pid int) (rss, hwm int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	if rss <= 0 {
		return 0, 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return rss, hwm, nil
}

// TestIdleExecutorChild is the executor process of BenchmarkIdleRSS10k: it
// is a test only when KUBEXEC_RSS_CHILD is set. It prints "synced N
// NANOSECONDS" once it tracks RSS_WANT pods, calls Heartbeat once per second
// until its stdin closes, answers "gcs" with the number of collections its
// runtime ran since the sync and "heap" with the Go heap in use, and
// prints "stopped" at the end.
func TestIdleExecutorChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		return
	}
	rc, err := clientcmd.BuildConfigFromFlags("", os.Getenv("RSS_KUBECONFIG"))
	require.NoError(t, err)
	want, _ := strconv.Atoi(os.Getenv("RSS_WANT"))
	if os.Getenv("KUBEXEC_BENCH_RSS_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 1 // every allocation in the profile: the memory per pod is a few small ones
	}
	ctx := context.Background()
	start := time.Now()
	e, err := executor.New(rc, executor.NewMemoryStore(), executor.Config{
		ExecutorID:    os.Getenv("RSS_ID"),
		Namespace:     os.Getenv("RSS_NS"),
		ProvenanceKey: provenanceKey,
	})
	require.NoError(t, err)
	require.NoError(t, e.Start(ctx))
	for e.Stats().Running < want {
		if time.Since(start) > 5*time.Minute {
			t.Fatalf("tracking %d of %d pods after 5 minutes", e.Stats().Running, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gcsAtSync := ms.NumGC
	fmt.Printf("synced %d %d\n", e.Stats().Running, time.Since(start))

	var closed atomic.Bool
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == "gcs" {
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				mu.Lock()
				fmt.Printf("gcs %d %d\n", ms.NumGC-gcsAtSync, time.Since(time.Unix(0, int64(ms.LastGC))))
				mu.Unlock()
			}
			if sc.Text() == "heap" {
				mu.Lock()
				fmt.Printf("heap %d\n", heapInUse())
				writeHeapProfile(t)
				mu.Unlock()
			}
		}
		closed.Store(true)
	}()
	for !closed.Load() {
		require.NoError(t, e.Heartbeat())
		time.Sleep(time.Second)
	}
	stopCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	require.NoError(t, e.Stop(stopCtx))
	mu.Lock()
	fmt.Println("stopped")
	mu.Unlock()
}

// writeHeapProfile writes the child's heap profile to the file named by
// KUBEXEC_BENCH_RSS_HEAPPROFILE, if it is set: `go tool pprof -sample_index
// inuse_space` on it shows where the memory per tracked pod goes.
func writeHeapProfile(t *testing.T) {
	path := os.Getenv("KUBEXEC_BENCH_RSS_HEAPPROFILE")
	if path == "" || os.Getenv("RSS_WANT") == "0" { // the measured child's only
		return
	}
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, pprof.Lookup("heap").WriteTo(f, 0))
}

// heapInUse is the live Go heap after a full collection (the RSS was read
// before, so the collection does not change it).
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
