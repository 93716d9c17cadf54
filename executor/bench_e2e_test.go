package executor_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/internal/devcluster"
	"github.com/kubexec/kubexec/watch"
)

// The end-to-end benchmark's sizes. KUBEXEC_BENCH_E2E_TASKS and
// KUBEXEC_BENCH_AIRFLOW1_TASKS change them (for quick runs while editing).
const (
	e2eTasks         = 1000
	e2eAirflow1Tasks = 100 // batch size 1 creates one pod per second: 1,000 would take 17 minutes
	e2eScript        = "sleep 0.1"
	airflowTick      = time.Second
	airflowParallel  = 32 // Airflow's default [core] parallelism
)

// e2eTimeout bounds one system's run of n tasks: 15 minutes, or 250 ms per
// task when that is longer (the Job controller finishes about 8 Jobs per
// second on two cores).
func e2eTimeout(n int) time.Duration {
	return max(15*time.Minute, time.Duration(n)*250*time.Millisecond)
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// taskClock is what an independent watch in the benchmark saw of each
// task's pod, and when each system reported the task done. Times are keyed
// by task id ("task-17"); one pod per task.
type taskClock struct {
	mu      sync.Mutex
	start   time.Time
	created map[string]time.Time // the pod first seen
	bound   map[string]time.Time // first seen with a node
	ended   map[string]time.Time // first seen Succeeded or Failed
	done    map[string]time.Time // the system's result: saved, Job Complete, processed by the loop
	failed  int                  // pods that ended Failed
	onEnd   func(task string)
}

func newTaskClock() *taskClock {
	return &taskClock{
		created: map[string]time.Time{}, bound: map[string]time.Time{},
		ended: map[string]time.Time{}, done: map[string]time.Time{},
	}
}

func (c *taskClock) observe(task string, pod *corev1.Pod) {
	if task == "" {
		return
	}
	now := time.Now()
	c.mu.Lock()
	if _, ok := c.created[task]; !ok {
		c.created[task] = now
	}
	if _, ok := c.bound[task]; !ok && pod.Spec.NodeName != "" {
		c.bound[task] = now
	}
	_, seen := c.ended[task]
	terminal := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	if !seen && terminal {
		c.ended[task] = now
		if pod.Status.Phase == corev1.PodFailed {
			c.failed++
		}
	}
	onEnd := c.onEnd
	c.mu.Unlock()
	if !seen && terminal && onEnd != nil {
		onEnd(task)
	}
}

func (c *taskClock) markDone(task string) {
	now := time.Now()
	c.mu.Lock()
	if _, ok := c.done[task]; !ok {
		c.done[task] = now
	}
	c.mu.Unlock()
}

func (c *taskClock) doneCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.done)
}

// watchPods runs an informer on ns that feeds clock, until ctx ends. It is
// the same for every system, so that "pod ended" means the same moment:
// the terminal status visible on a watch of the API server.
func watchPods(ctx context.Context, b *testing.B, client kubernetes.Interface, ns string, clock *taskClock, task func(*corev1.Pod) string) {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { observePod(clock, task, obj) },
		UpdateFunc: func(_, obj any) { observePod(clock, task, obj) },
	})
	require.NoError(b, err)
	f.Start(ctx.Done())
	require.True(b, cache.WaitForCacheSync(ctx.Done(), inf.HasSynced))
}

func observePod(clock *taskClock, task func(*corev1.Pod) string, obj any) {
	if pod, ok := obj.(*corev1.Pod); ok {
		clock.observe(task(pod), pod)
	}
}

// e2eRun is one system's run.
type e2eRun struct {
	name     string
	tasks    int
	makespan time.Duration
	clock    *taskClock
}

func (r e2eRun) perTask() time.Duration { return r.makespan / time.Duration(r.tasks) }

// latencies returns, per task, the time from the pod's end (seen on the
// benchmark's watch) to the system's result.
func (r e2eRun) latencies() []time.Duration {
	r.clock.mu.Lock()
	defer r.clock.mu.Unlock()
	out := make([]time.Duration, 0, len(r.clock.done))
	for task, done := range r.clock.done {
		if ended, ok := r.clock.ended[task]; ok {
			out = append(out, done.Sub(ended))
		}
	}
	return out
}

// stages returns the p50 of each stage of a task's life: start to pod
// created, created to bound, bound to ended, ended to result.
func (r e2eRun) stages() [4]time.Duration {
	c := r.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	var s [4][]time.Duration
	for task, done := range c.done {
		created, ok1 := c.created[task]
		bound, ok2 := c.bound[task]
		ended, ok3 := c.ended[task]
		if !ok1 || !ok2 || !ok3 {
			continue
		}
		s[0] = append(s[0], created.Sub(c.start))
		s[1] = append(s[1], bound.Sub(created))
		s[2] = append(s[2], ended.Sub(bound))
		s[3] = append(s[3], done.Sub(ended))
	}
	var out [4]time.Duration
	for i := range s {
		out[i] = percentile(s[i], 0.5)
	}
	return out
}

// rates returns the pods created per second (from the start to the last
// pod seen) and ended per second (from the start to the last pod seen
// ended): which of creation and running set the pace.
func (r e2eRun) rates() (created, ended float64) {
	c := r.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	last := func(m map[string]time.Time) float64 {
		var l time.Time
		for _, t := range m {
			if t.After(l) {
				l = t
			}
		}
		if l.IsZero() {
			return 0
		}
		return float64(len(m)) / l.Sub(c.start).Seconds()
	}
	return last(c.created), last(c.ended)
}

// waitDone waits until clock has n results.
func waitDone(b *testing.B, what string, clock *taskClock, n int, tick func()) time.Time {
	timeout := e2eTimeout(n)
	deadline := time.Now().Add(timeout)
	lastLog := time.Now()
	for clock.doneCount() < n {
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d of %d tasks done after %s", what, clock.doneCount(), n, timeout)
		}
		if time.Since(lastLog) > 30*time.Second {
			// Progress goes to stderr: a benchmark's log keeps 10 lines.
			fmt.Fprintf(os.Stderr, "%s: %d of %d tasks done after %s\n", what, clock.doneCount(), n, time.Since(clock.start).Round(time.Second))
			lastLog = time.Now()
		}
		if tick != nil {
			tick()
		}
		time.Sleep(10 * time.Millisecond)
	}
	clock.mu.Lock()
	defer clock.mu.Unlock()
	var last time.Time
	for _, t := range clock.done {
		if t.After(last) {
			last = t
		}
	}
	return last
}

// e2eNamespace makes a namespace for one system's run; dropNamespace
// deletes it and waits until it is gone, so that one system's cleanup does
// not load the API server during the next one's run.
func e2eNamespace(b *testing.B, cl *devcluster.Cluster, prefix string) string {
	return cl.NewNamespace(b, prefix, nil)
}

func dropNamespace(b *testing.B, client kubernetes.Interface, ns string) {
	ctx := context.Background()
	start := time.Now()
	// The namespace controller deletes what is left under its client's
	// rate limit (20/s): thousands of Jobs and pods would outlast the wait
	// below. A delete collection is one request each.
	background := metav1.DeletePropagationBackground
	if err := client.BatchV1().Jobs(ns).DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: &background}, metav1.ListOptions{}); err != nil {
		b.Logf("delete the Jobs of namespace %s: %v", ns, err)
	}
	if err := client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		b.Logf("delete the pods of namespace %s: %v", ns, err)
	}
	if err := client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		b.Logf("delete namespace %s: %v", ns, err)
		return
	}
	for time.Since(start) < 3*time.Minute {
		if _, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	b.Logf("namespace %s still terminating after 3 minutes; going on", ns)
}

// benchPodSpec is the pod spec kubexec builds for a task running script:
// the Jobs and the Airflow-like loop run the very same spec.
func benchPodSpec(b *testing.B, ns, script string) corev1.PodSpec {
	cfg := testConfig(ns)
	spec := shell(key("spec", 0), script)
	spec.ExecutorID = cfg.ExecutorID
	pod, err := cfg.Builder.Build(context.Background(), spec)
	require.NoError(b, err)
	return pod.Spec
}

// BenchmarkEndToEnd runs the same short tasks ("sleep 0.1", exit 0) through
// three systems, one after the other on the same dev cluster, and reports
// each one's makespan and the time from a pod's end to its result:
//
//   - kubexec with its default flow control (creates at 20/s, burst 30, the
//     Job controller's client settings; other calls 50/s, burst 100),
//     Parallelism = the number of tasks, Heartbeat once per second;
//   - one batch/v1 Job per task, created up front by a client with no rate
//     limit (10 at a time), run by the cluster's Job controller (client
//     QPS 20, burst 30); a task is done when its Job is Complete;
//   - an Airflow-like loop: every 1 s tick it processes the pods its watch
//     saw end (and deletes them, as delete_worker_pods does), then creates
//     up to batch-size pods one after the other, with at most 32 running
//     (Airflow's defaults). With batch size 16 on all the tasks; with
//     batch size 1 on KUBEXEC_BENCH_AIRFLOW1_TASKS tasks (default 100),
//     since 1,000 would take 1,000 s: its per-task time is measured, its
//     makespan for all the tasks is extrapolated from it.
//
// "Pod ended" is when the benchmark's own watch of the namespace first sees
// the pod Succeeded or Failed; the result is SaveResult returning (kubexec),
// the Job's Complete condition seen on a watch (Jobs), or the loop's tick
// processing it (Airflow-like). kubexec's own metric (its watch seeing the
// end to SaveResult returning) is reported too.
// benchClient is the client of the benchmarks' bare loops, the other
// systems and the benchmarks' own watches: no rate limit of its own, and
// protobuf, as kubexec's client (executor.New) and the cluster's
// components use, so that none of them costs the API server more per pod
// than kubexec does.
func benchClient(b *testing.B, rc *rest.Config) kubernetes.Interface {
	rc.QPS, rc.Burst = 2000, 4000
	rc.ContentType = runtime.ContentTypeProtobuf
	rc.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	client, err := kubernetes.NewForConfig(rc)
	require.NoError(b, err)
	return client
}

func BenchmarkEndToEnd(b *testing.B) {
	cluster.Need(b)
	n := envInt("KUBEXEC_BENCH_E2E_TASKS", e2eTasks)
	n1 := min(n, envInt("KUBEXEC_BENCH_AIRFLOW1_TASKS", e2eAirflow1Tasks))
	client := benchClient(b, cluster.RESTConfig())

	for b.Loop() {
		kx, rec, meter := runKubexec(b, cluster, client, n, e2eFlow{})
		jobs := runJobs(b, cluster, client, n)
		af16 := runAirflowLike(b, cluster, client, n, 16)
		af1 := runAirflowLike(b, cluster, client, n1, 1)

		kxLat := kx.latencies()
		b.ReportMetric(float64(n), "tasks")
		b.ReportMetric(float64(n1), "airflow1-tasks")
		b.ReportMetric(kx.makespan.Seconds(), "kubexec-makespan-s")
		b.ReportMetric(jobs.makespan.Seconds(), "jobs-makespan-s")
		b.ReportMetric(kx.makespan.Seconds()/jobs.makespan.Seconds(), "makespan-vs-jobs")
		b.ReportMetric(af16.makespan.Seconds(), "airflow16-makespan-s")
		b.ReportMetric(af1.perTask().Seconds(), "airflow1-s/task")
		b.ReportMetric(af1.perTask().Seconds()*float64(n), "airflow1-makespan-extrapolated-s")
		b.ReportMetric(ms(percentile(kxLat, 0.5)), "kubexec-end-to-saved-p50-ms")
		b.ReportMetric(ms(percentile(kxLat, 0.99)), "kubexec-end-to-saved-p99-ms")
		rec.mu.Lock()
		b.ReportMetric(ms(percentile(rec.results, 0.5)), "kubexec-observed-to-saved-p50-ms")
		b.ReportMetric(ms(percentile(rec.results, 0.99)), "kubexec-observed-to-saved-p99-ms")
		rec.mu.Unlock()
		jobsLat := jobs.latencies()
		b.ReportMetric(ms(percentile(jobsLat, 0.5)), "jobs-end-to-complete-p50-ms")
		b.ReportMetric(ms(percentile(jobsLat, 0.99)), "jobs-end-to-complete-p99-ms")
		af16Lat := af16.latencies()
		b.ReportMetric(ms(percentile(af16Lat, 0.5)), "airflow16-end-to-processed-p50-ms")
		b.ReportMetric(ms(percentile(af16Lat, 0.99)), "airflow16-end-to-processed-p99-ms")

		b.Log(stageTable(kx, jobs, af16, af1) + meter.summary())
	}
}

// stageTable says where the time of each run went: pods created and ended
// per second, and the p50 of each stage of a task's life.
func stageTable(runs ...e2eRun) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "where the time goes: pods created and ended per second over the run; p50 per task of each stage, seconds (start = the first Queue / Job create / loop start)\n")
	fmt.Fprintf(&sb, "%-22s %5s %8s %9s %7s %14s %14s %12s %13s\n", "system", "tasks", "makespan", "created/s", "ended/s",
		"start->created", "created->bound", "bound->ended", "ended->result")
	for _, r := range runs {
		s := r.stages()
		created, ended := r.rates()
		fmt.Fprintf(&sb, "%-22s %5d %8.1f %9.1f %7.1f %14.2f %14.2f %12.2f %13.3f\n", r.name, r.tasks, r.makespan.Seconds(),
			created, ended, s[0].Seconds(), s[1].Seconds(), s[2].Seconds(), s[3].Seconds())
	}
	return sb.String()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// timedStore is a MemoryStore that marks each task done on the clock when
// its result is saved.
type timedStore struct {
	*executor.MemoryStore
	clock *taskClock
}

func (s timedStore) SaveResult(ctx context.Context, r kubexec.Result) error {
	err := s.MemoryStore.SaveResult(ctx, r)
	if err == nil {
		s.clock.markDone(r.Key.TaskID)
	}
	return err
}

// e2eFlow is kubexec's flow control in an end-to-end run. Zero fields keep
// kubexec's defaults.
type e2eFlow struct {
	createConcurrency int
	createQPS         float64
	createBurst       int
	clientQPS         float32
	clientBurst       int
}

func runKubexec(b *testing.B, cl *devcluster.Cluster, client kubernetes.Interface, n int, flow e2eFlow) (e2eRun, *recorder, *apiMeter) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := e2eNamespace(b, cl, "e2e-kubexec")
	clock := newTaskClock()
	watchPods(ctx, b, client, ns, clock, func(p *corev1.Pod) string {
		k, err := kubexec.KeyFromObject(p)
		if err != nil {
			return ""
		}
		return k.TaskID
	})
	rec := &recorder{}
	cfg := testConfig(ns) // for its builder (runAsUser 1000); the rest back to kubexec's defaults:
	cfg.Parallelism = n
	cfg.CreateConcurrency = flow.createConcurrency
	cfg.CreateQPS, cfg.CreateBurst = flow.createQPS, flow.createBurst
	cfg.ResyncInterval = 0
	cfg.Classify = watch.ClassifyOptions{}
	cfg.Metrics = rec
	krc := cl.RESTConfig()
	// kubexec's ClientQPS/ClientBurst (default 50, 100), as the token
	// bucket client-go would make of them, observed.
	meter := newAPIMeter(cmp.Or(flow.clientQPS, 50), cmp.Or(flow.clientBurst, 100))
	meter.createQPS, meter.createBurst = cmp.Or(flow.createQPS, 20), cmp.Or(flow.createBurst, 30)
	krc.QPS, krc.Burst, krc.RateLimiter = 0, 0, meter
	krc.Wrap(meter.wrap)
	store := executor.NewMemoryStore()
	e, err := executor.New(krc, timedStore{store, clock}, cfg)
	require.NoError(b, err)
	require.NoError(b, e.Start(ctx))

	clock.start = time.Now()
	for i := range n {
		require.NoError(b, e.Queue(shell(key("e2e", i), e2eScript)))
	}
	lastBeat := time.Time{}
	last := waitDone(b, "kubexec", clock, n, func() {
		if time.Since(lastBeat) >= airflowTick {
			require.NoError(b, e.Heartbeat())
			lastBeat = time.Now()
		}
	})
	run := e2eRun{name: "kubexec", tasks: n, makespan: last.Sub(clock.start), clock: clock}
	for _, r := range store.Results() {
		if r.Reason != kubexec.ReasonSucceeded {
			b.Errorf("kubexec: %s ended %s: %s", r.Key.TaskID, r.Reason, r.Message)
			break
		}
	}
	stopCtx, stopCancel := context.WithTimeout(ctx, 2*time.Minute)
	_ = e.Stop(stopCtx)
	stopCancel()
	cancel()
	dropNamespace(b, client, ns)
	return run, rec, meter
}

func runJobs(b *testing.B, cl *devcluster.Cluster, client kubernetes.Interface, n int) e2eRun {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := e2eNamespace(b, cl, "e2e-jobs")
	clock := newTaskClock()
	watchPods(ctx, b, client, ns, clock, func(p *corev1.Pod) string {
		return strings.TrimPrefix(p.Labels[batchv1.JobNameLabel], "job-")
	})
	// Jobs are done when their Complete (or Failed) condition is seen.
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns))
	jobInf := f.Batch().V1().Jobs().Informer()
	failed := 0
	onJob := func(obj any) {
		j, ok := obj.(*batchv1.Job)
		if !ok {
			return
		}
		for _, c := range j.Status.Conditions {
			if c.Status != corev1.ConditionTrue {
				continue
			}
			switch c.Type {
			case batchv1.JobFailed:
				clock.mu.Lock()
				_, seen := clock.done[strings.TrimPrefix(j.Name, "job-")]
				if !seen {
					failed++
				}
				clock.mu.Unlock()
				fallthrough
			case batchv1.JobComplete:
				clock.markDone(strings.TrimPrefix(j.Name, "job-"))
			}
		}
	}
	_, err := jobInf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onJob, UpdateFunc: func(_, obj any) { onJob(obj) }})
	require.NoError(b, err)
	f.Start(ctx.Done())
	require.True(b, cache.WaitForCacheSync(ctx.Done(), jobInf.HasSynced))

	spec := benchPodSpec(b, ns, e2eScript)
	backoff := int32(0)
	clock.start = time.Now()
	inParallel(n, 10, func(i int) {
		job := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("job-task-%d", i)},
			Spec: batchv1.JobSpec{
				BackoffLimit: &backoff,
				Template:     corev1.PodTemplateSpec{Spec: *spec.DeepCopy()},
			},
		}
		if _, err := client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
			b.Errorf("create job: %v", err)
		}
	})
	last := waitDone(b, "jobs", clock, n, nil)
	if failed > 0 {
		b.Errorf("jobs: %d Jobs failed", failed)
	}
	run := e2eRun{name: "jobs", tasks: n, makespan: last.Sub(clock.start), clock: clock}
	cancel()
	dropNamespace(b, client, ns)
	return run
}

// inParallel calls do(0) ... do(n-1) from workers goroutines, and returns
// when all calls have returned.
func inParallel(n, workers int, do func(i int)) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range work {
				do(i)
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
}

// runAirflowLike is Airflow's KubernetesExecutor loop reduced to what sets
// its pace: one loop per tick; each loop first processes the results its
// watcher queued (deleting succeeded pods), then creates up to batch pods,
// one request after the other, while fewer than airflowParallel run.
func runAirflowLike(b *testing.B, cl *devcluster.Cluster, client kubernetes.Interface, n, batch int) e2eRun {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := e2eNamespace(b, cl, fmt.Sprintf("e2e-airflow%d", batch))
	clock := newTaskClock()
	ended := make(chan string, n)
	clock.onEnd = func(task string) { ended <- task }
	watchPods(ctx, b, client, ns, clock, func(p *corev1.Pod) string { return p.Labels["kubexec.io/bench-task"] })
	spec := benchPodSpec(b, ns, e2eScript)
	podOf := map[string]string{}

	clock.start = time.Now()
	next, running := 0, 0
	tick := time.NewTicker(airflowTick)
	defer tick.Stop()
	for done := 0; done < n; {
		if time.Since(clock.start) > e2eTimeout(n) {
			b.Fatalf("airflow-like batch %d: %d of %d tasks done after %s", batch, done, n, e2eTimeout(n))
		}
		// sync(): drain the watcher's results.
	drain:
		for {
			select {
			case task := <-ended:
				clock.markDone(task)
				done++
				running--
				err := client.CoreV1().Pods(ns).Delete(ctx, podOf[task], metav1.DeleteOptions{})
				if err != nil && !apierrors.IsNotFound(err) {
					b.Errorf("delete pod: %v", err)
				}
			default:
				break drain
			}
		}
		// Then create up to batch pods, serially.
		for range min(batch, airflowParallel-running, n-next) {
			task := fmt.Sprintf("task-%d", next)
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{
					// Airflow's names end in 8 random characters.
					Name:   fmt.Sprintf("e2e-%s-%08x", task, rand.Uint32()),
					Labels: map[string]string{"kubexec.io/bench-task": task},
				},
				Spec: *spec.DeepCopy(),
			}
			if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				b.Fatalf("create pod: %v", err)
			}
			podOf[task] = pod.Name
			next++
			running++
		}
		if done < n {
			<-tick.C
		}
	}
	clock.mu.Lock()
	failed := clock.failed
	clock.mu.Unlock()
	if failed > 0 {
		b.Errorf("airflow-like batch %d: %d pods failed", batch, failed)
	}
	last := waitDone(b, "airflow", clock, n, nil)
	run := e2eRun{name: fmt.Sprintf("airflow-like batch %d", batch), tasks: n, makespan: last.Sub(clock.start), clock: clock}
	cancel()
	dropNamespace(b, client, ns)
	return run
}

// apiMeter observes kubexec's REST client: how long each request waited for
// the client-side token bucket, and how long the API server took to answer,
// by verb. It behaves as the token bucket client-go makes from QPS and
// Burst.
type apiMeter struct {
	flowcontrol.RateLimiter
	qps   float32
	burst int
	// createQPS and createBurst are the executor's own create bucket, for
	// the summary.
	createQPS   float64
	createBurst int

	mu      sync.Mutex
	waits   []time.Duration
	latency map[string][]time.Duration // "patch pods" -> server round trips
}

func newAPIMeter(qps float32, burst int) *apiMeter {
	return &apiMeter{
		RateLimiter: flowcontrol.NewTokenBucketRateLimiter(qps, burst),
		qps:         qps, burst: burst,
		latency: map[string][]time.Duration{},
	}
}

// Wait is what client-go calls before each request.
func (m *apiMeter) Wait(ctx context.Context) error {
	start := time.Now()
	err := m.RateLimiter.Wait(ctx)
	m.mu.Lock()
	m.waits = append(m.waits, time.Since(start))
	m.mu.Unlock()
	return err
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (m *apiMeter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		start := time.Now()
		resp, err := rt.RoundTrip(r)
		if verb := apiVerb(r); verb != "" {
			m.mu.Lock()
			m.latency[verb] = append(m.latency[verb], time.Since(start))
			m.mu.Unlock()
		}
		return resp, err
	})
}

// apiVerb names a request "verb resource", or "" for a watch (its round
// trip lasts as long as the watch).
func apiVerb(r *http.Request) string {
	if r.URL.Query().Get("watch") == "true" {
		return ""
	}
	// /api/v1/namespaces/NS/RESOURCE[/NAME[/SUBRESOURCE]]
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	resource, named := "", false
	for i, p := range parts {
		if p == "namespaces" && i+2 < len(parts) {
			resource, named = parts[i+2], i+3 < len(parts)
			break
		}
	}
	if resource == "" {
		resource = parts[len(parts)-1]
	}
	verb := strings.ToLower(r.Method)
	switch {
	case r.Method == http.MethodPost:
		verb = "create"
	case r.Method == http.MethodGet && !named:
		verb = "list"
	}
	return verb + " " + resource
}

// summary is two lines: the token bucket's waits and the API server's
// answers, by verb.
func (m *apiMeter) summary() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var sb strings.Builder
	var waited time.Duration
	for _, w := range m.waits {
		waited += w
	}
	fmt.Fprintf(&sb, "kubexec client token bucket (%.0f/s, burst %d; creates also paced at %.0f/s burst %d): %d requests, waits p50 %s p99 %s max %s, %s waited in all\n",
		m.qps, m.burst, m.createQPS, m.createBurst, len(m.waits), percentile(m.waits, 0.5).Round(time.Millisecond), percentile(m.waits, 0.99).Round(time.Millisecond),
		percentile(m.waits, 1).Round(time.Millisecond), waited.Round(time.Second))
	verbs := make([]string, 0, len(m.latency))
	for v := range m.latency {
		verbs = append(verbs, v)
	}
	slices.Sort(verbs)
	sb.WriteString("kubexec API server round trips:")
	for _, v := range verbs {
		l := m.latency[v]
		fmt.Fprintf(&sb, " %s %d (p50 %s, p99 %s);", v, len(l), percentile(l, 0.5).Round(time.Millisecond), percentile(l, 0.99).Round(time.Millisecond))
	}
	return strings.TrimSuffix(sb.String(), ";")
}
