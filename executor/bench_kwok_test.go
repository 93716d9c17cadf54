package executor_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/devcluster"
)

// The kwok end-to-end benchmark's sizes. KUBEXEC_BENCH_KWOK_TASKS changes
// the task count; KUBEXEC_BENCH_KWOK_SYSTEMS (a comma-separated subset of
// bare, bare-release, kubexec, jobs, airflow) runs only some of the
// systems.
const (
	kwokTasks = 10000
	kwokNodes = 4
)

// kwokFlow is kubexec's flow control on kwok nodes: creates as the bare
// loop's (benchConcurrency in flight, a token bucket of benchQPS, burst
// benchConcurrency); its other calls (finalizer patches, deletes, leases)
// under a bucket that does not cap them at this scale.
var kwokFlow = e2eFlow{
	createConcurrency: benchConcurrency,
	createQPS:         benchQPS,
	createBurst:       benchConcurrency,
	clientQPS:         benchQPS,
	clientBurst:       benchQPS,
}

// BenchmarkEndToEndKwok is BenchmarkEndToEnd on a dev cluster of its own
// whose nodes are kwok nodes: they run nothing, and each pod ends
// Succeeded 100 ms after kwok marks it Running (devcluster's
// kwok-stages.yaml), so the nodes are not what sets the pace; the API
// server, the scheduler and each system's client are. The scheduler and
// the controller-manager run without their client rate limits
// (Options.DisableQPSLimits, as kwokctl's --disable-qps-limits): the
// scheduler's default 50 binds a second would set every system's pace at
// 10,000 tasks. On that cluster, in
// one run, one system after the other:
//
//   - a bare client-go create loop: the same pods, with the create flow
//     control kubexec is given (kwokFlow), its time to create them all;
//   - the bare loop with kubexec's writes (runBareReleaseLoop): the same
//     creates, each pod with the tracking finalizer, and as soon as it
//     ends a delete and the patch that releases it; its makespan is how
//     fast these writes alone can go, so kubexec's against it is what
//     kubexec itself adds;
//   - kubexec with kwokFlow, Parallelism = the number of tasks, Heartbeat
//     once per second;
//   - batch/v1 Jobs and the Airflow-like loops, as in BenchmarkEndToEnd.
func BenchmarkEndToEndKwok(b *testing.B) {
	cluster.Need(b)
	n := envInt("KUBEXEC_BENCH_KWOK_TASKS", kwokTasks)
	n1 := min(n, envInt("KUBEXEC_BENCH_AIRFLOW1_TASKS", e2eAirflow1Tasks))
	run := map[string]bool{"bare": true, "bare-release": true, "kubexec": true, "jobs": true, "airflow": true}
	if only := os.Getenv("KUBEXEC_BENCH_KWOK_SYSTEMS"); only != "" {
		run = map[string]bool{}
		for s := range strings.SplitSeq(only, ",") {
			run[strings.TrimSpace(s)] = true
		}
	}
	cl := devcluster.StartForTest(b, devcluster.Options{KwokNodes: kwokNodes, DisableQPSLimits: true, Logf: func(string, ...any) {}})
	client := benchClient(b, cl.RESTConfig())

	for b.Loop() {
		b.ReportMetric(float64(n), "tasks")
		var runs []e2eRun
		var bare, bareRel, kx e2eRun
		var bareEnded, bareReleased time.Duration
		if run["bare"] {
			bare, bareEnded = runBareCreateLoop(b, cl, client, n, kwokFlow)
			created, _ := bare.rates()
			b.ReportMetric(bare.makespan.Seconds(), "bare-create-s")
			b.ReportMetric(created, "bare-created/s")
		}
		if run["bare-release"] {
			bareRel, bareReleased = runBareReleaseLoop(b, cl, client, n, kwokFlow)
			runs = append(runs, bareRel)
			b.ReportMetric(bareRel.makespan.Seconds(), "bare-release-makespan-s")
		}
		var meter *apiMeter
		if run["kubexec"] {
			var rec *recorder
			kx, rec, meter = runKubexec(b, cl, client, n, kwokFlow)
			runs = append(runs, kx)
			created, _ := kx.rates()
			lat := kx.latencies()
			b.ReportMetric(kx.makespan.Seconds(), "kubexec-makespan-s")
			b.ReportMetric(created, "kubexec-created/s")
			b.ReportMetric(ms(percentile(lat, 0.5)), "kubexec-end-to-saved-p50-ms")
			b.ReportMetric(ms(percentile(lat, 0.99)), "kubexec-end-to-saved-p99-ms")
			rec.mu.Lock()
			b.ReportMetric(ms(percentile(rec.results, 0.5)), "kubexec-observed-to-saved-p50-ms")
			b.ReportMetric(ms(percentile(rec.results, 0.99)), "kubexec-observed-to-saved-p99-ms")
			rec.mu.Unlock()
			if run["bare"] {
				bareCreated, _ := bare.rates()
				b.ReportMetric(created/bareCreated, "created-vs-bare")
				b.ReportMetric(kx.makespan.Seconds()/bare.makespan.Seconds(), "makespan-vs-bare-create")
			}
			if run["bare-release"] {
				b.ReportMetric(kx.makespan.Seconds()/bareRel.makespan.Seconds(), "makespan-vs-bare-release")
			}
		}
		if run["jobs"] {
			jobs := runJobs(b, cl, client, n)
			runs = append(runs, jobs)
			lat := jobs.latencies()
			b.ReportMetric(jobs.makespan.Seconds(), "jobs-makespan-s")
			b.ReportMetric(ms(percentile(lat, 0.5)), "jobs-end-to-complete-p50-ms")
			b.ReportMetric(ms(percentile(lat, 0.99)), "jobs-end-to-complete-p99-ms")
			if run["kubexec"] {
				b.ReportMetric(kx.makespan.Seconds()/jobs.makespan.Seconds(), "makespan-vs-jobs")
			}
		}
		if run["airflow"] {
			af16 := runAirflowLike(b, cl, client, n, 16)
			af1 := runAirflowLike(b, cl, client, n1, 1)
			runs = append(runs, af16, af1)
			lat := af16.latencies()
			b.ReportMetric(float64(n1), "airflow1-tasks")
			b.ReportMetric(af16.makespan.Seconds(), "airflow16-makespan-s")
			b.ReportMetric(ms(percentile(lat, 0.5)), "airflow16-end-to-processed-p50-ms")
			b.ReportMetric(ms(percentile(lat, 0.99)), "airflow16-end-to-processed-p99-ms")
			b.ReportMetric(af1.perTask().Seconds(), "airflow1-s/task")
			b.ReportMetric(af1.perTask().Seconds()*float64(n), "airflow1-makespan-extrapolated-s")
			if run["kubexec"] {
				b.ReportMetric(kx.makespan.Seconds()/af16.makespan.Seconds(), "makespan-vs-airflow16")
			}
		}

		var sb strings.Builder
		if run["bare"] {
			created, ended := bare.rates()
			fmt.Fprintf(&sb, "bare create loop: %d pods created in %.1f s (%.1f/s on the benchmark's watch); all ended %.1f s after the start (%.1f/s)\n",
				n, bare.makespan.Seconds(), created, bareEnded.Seconds(), ended)
		}
		if run["bare-release"] {
			fmt.Fprintf(&sb, "bare create+release loop: last pod ended %.1f s after the start, last released %.1f s after it\n",
				bareRel.makespan.Seconds(), bareReleased.Seconds())
		}
		sb.WriteString(stageTable(runs...))
		if meter != nil {
			sb.WriteString(meter.summary())
		}
		b.Log(sb.String())
	}
}

// runBareReleaseLoop is the bare loop with the writes kubexec makes for
// each pod: it creates the pods with kubexec's tracking finalizer, as
// runBareCreateLoop does, and as soon as its watch sees one ended (its
// "result"), it releases it as kubexec's default GC policy does, from
// releaseWorkers goroutines (kubexec's default ResultWorkers): a delete,
// then one patch that labels it done and removes the finalizer. Its
// makespan is kubexec's: from the start to the last pod seen ended; the
// run also waits for the last release, and returns when that was.
func runBareReleaseLoop(b *testing.B, cl *devcluster.Cluster, client kubernetes.Interface, n int, flow e2eFlow) (e2eRun, time.Duration) {
	const releaseWorkers = 8
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := e2eNamespace(b, cl, "e2e-bare-release")
	clock := newTaskClock()
	ended := make(chan string, n)
	clock.onEnd = func(task string) {
		clock.markDone(task)
		ended <- task
	}
	watchPods(ctx, b, client, ns, clock, func(p *corev1.Pod) string { return p.Labels["kubexec.io/bench-task"] })
	spec := benchPodSpec(b, ns, e2eScript)
	release := fmt.Sprintf(`{"metadata":{"labels":{%q:%q},"$deleteFromPrimitiveList/finalizers":[%q]}}`,
		kubexec.LabelDone, kubexec.DoneValue, kubexec.FinalizerResultTracking)
	var released sync.WaitGroup
	released.Add(n)
	var lastRelease atomic.Int64
	for range releaseWorkers {
		go func() {
			for task := range ended {
				name := "bare-" + task
				if err := client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					b.Errorf("delete pod %s: %v", name, err)
				}
				if _, err := client.CoreV1().Pods(ns).Patch(ctx, name, types.StrategicMergePatchType, []byte(release), metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
					b.Errorf("release pod %s: %v", name, err)
				}
				lastRelease.Store(time.Now().UnixNano())
				released.Done()
			}
		}()
	}
	clock.start = time.Now()
	createBarePods(ctx, b, client, ns, spec, n, flow, []string{kubexec.FinalizerResultTracking})
	last := waitDone(b, "bare release loop", clock, n, nil)
	run := e2eRun{name: "bare create+release loop", tasks: n, makespan: last.Sub(clock.start), clock: clock}
	released.Wait()
	close(ended)
	releasedAfter := time.Duration(lastRelease.Load() - clock.start.UnixNano())
	cancel()
	dropNamespace(b, client, ns)
	return run, releasedAfter
}

// runBareCreateLoop creates n pods of the spec kubexec builds, from
// flow.createConcurrency goroutines under a token bucket of flow.createQPS,
// burst flow.createBurst, and returns the run (its makespan: the time to
// create them all) and when the last of them was seen ended.
func runBareCreateLoop(b *testing.B, cl *devcluster.Cluster, client kubernetes.Interface, n int, flow e2eFlow) (e2eRun, time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := e2eNamespace(b, cl, "e2e-bare")
	clock := newTaskClock()
	watchPods(ctx, b, client, ns, clock, func(p *corev1.Pod) string { return p.Labels["kubexec.io/bench-task"] })
	spec := benchPodSpec(b, ns, e2eScript)
	clock.start = time.Now()
	createBarePods(ctx, b, client, ns, spec, n, flow, nil)
	run := e2eRun{name: "bare create loop", tasks: n, makespan: time.Since(clock.start), clock: clock}
	// The pods still end on the kwok nodes; wait for that before the
	// namespace goes, so that the next system's run has the cluster to
	// itself.
	deadline := time.Now().Add(e2eTimeout(n))
	for {
		clock.mu.Lock()
		ended := len(clock.ended)
		clock.mu.Unlock()
		if ended == n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("bare create loop: %d of %d pods ended after %s", ended, n, e2eTimeout(n))
		}
		time.Sleep(10 * time.Millisecond)
	}
	var endedAfter time.Duration
	clock.mu.Lock()
	for _, t := range clock.ended {
		endedAfter = max(endedAfter, t.Sub(clock.start))
	}
	clock.mu.Unlock()
	cancel()
	dropNamespace(b, client, ns)
	return run, endedAfter
}

// createBarePods creates the bare loops' n pods "bare-task-I" of spec in
// ns, with finalizers, from flow.createConcurrency goroutines under a
// token bucket of flow.createQPS, burst flow.createBurst, and returns once
// every create has returned.
func createBarePods(ctx context.Context, b *testing.B, client kubernetes.Interface, ns string, spec corev1.PodSpec, n int, flow e2eFlow, finalizers []string) {
	limiter := flowcontrol.NewTokenBucketRateLimiter(float32(flow.createQPS), flow.createBurst)
	inParallel(n, flow.createConcurrency, func(i int) {
		_ = limiter.Wait(ctx)
		task := fmt.Sprintf("task-%d", i)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "bare-" + task, Labels: map[string]string{"kubexec.io/bench-task": task},
				Finalizers: finalizers},
			Spec: *spec.DeepCopy(),
		}
		if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			b.Errorf("create pod: %v", err)
		}
	})
}
