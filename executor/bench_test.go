package executor_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/podtemplate"
)

// recorder is a Metrics that keeps launch and result latencies.
type recorder struct {
	executor.NopMetrics
	mu       sync.Mutex
	launches []time.Duration
	results  []time.Duration
}

func (r *recorder) ObserveLaunch(o executor.LaunchOutcome, d time.Duration) {
	if o == executor.LaunchCreated {
		r.mu.Lock()
		r.launches = append(r.launches, d)
		r.mu.Unlock()
	}
}

func (r *recorder) ObserveResult(_ kubexec.Reason, d time.Duration) {
	r.mu.Lock()
	r.results = append(r.results, d)
	r.mu.Unlock()
}

func (r *recorder) counts() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.launches), len(r.results)
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

const (
	benchCreates     = 1000
	benchConcurrency = 10
	benchQPS         = 1000
)

// parkedPod is a pod that no node will take, so that creating it is all
// that is measured.
func parkedSpec(b *testing.B, k kubexec.TaskKey) podtemplate.TaskSpec {
	spec := shell(k, "exit 0")
	o, err := podtemplate.ParseOverride("parked", []byte("spec:\n  nodeSelector:\n    kubexec.io/bench: parked\n"))
	require.NoError(b, err)
	spec.Override = o
	return spec
}

// BenchmarkLaunchThroughput creates 1,000 pods through kubexec and through a
// bare client-go loop with the same concurrency and rate limit, on the same
// API server, and reports both rates and their ratio.
func BenchmarkLaunchThroughput(b *testing.B) {
	cluster.Need(b)
	for b.Loop() {
		ctx := context.Background()
		// kubexec
		ns := cluster.NewNamespace(b, "bench-kubexec", nil)
		rec := &recorder{}
		cfg := testConfig(ns)
		cfg.Parallelism = benchCreates
		cfg.CreateConcurrency = benchConcurrency
		cfg.CreateQPS, cfg.CreateBurst = benchQPS, benchConcurrency
		cfg.Classify.PendingTimeout = time.Hour
		cfg.Metrics = rec
		e, err := executor.New(cluster.RESTConfig(), executor.NewMemoryStore(), cfg)
		require.NoError(b, err)
		require.NoError(b, e.Start(ctx))
		start := time.Now()
		for i := range benchCreates {
			require.NoError(b, e.Queue(parkedSpec(b, key("bench", i))))
		}
		for {
			require.NoError(b, e.Heartbeat())
			if n, _ := rec.counts(); n == benchCreates {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		kubexecRate := float64(benchCreates) / time.Since(start).Seconds()
		stopCtx, cancel := context.WithTimeout(ctx, time.Minute)
		_ = e.Stop(stopCtx)
		cancel()

		// bare client-go loop
		bareNS := cluster.NewNamespace(b, "bench-bare", nil)
		client, err := kubernetes.NewForConfig(cluster.RESTConfig())
		require.NoError(b, err)
		limiter := flowcontrol.NewTokenBucketRateLimiter(benchQPS, benchConcurrency)
		work := make(chan int)
		var wg sync.WaitGroup
		start = time.Now()
		for range benchConcurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					_ = limiter.Wait(ctx)
					pod := barePod(fmt.Sprintf("bare-%d", i))
					_, err := client.CoreV1().Pods(bareNS).Create(ctx, pod, metav1.CreateOptions{})
					if err != nil {
						b.Error(err)
					}
				}
			}()
		}
		for i := range benchCreates {
			work <- i
		}
		close(work)
		wg.Wait()
		bareRate := float64(benchCreates) / time.Since(start).Seconds()

		b.ReportMetric(kubexecRate, "kubexec-creates/s")
		b.ReportMetric(bareRate, "bare-creates/s")
		b.ReportMetric(kubexecRate/bareRate, "ratio")
		rec.mu.Lock()
		b.ReportMetric(float64(percentile(rec.launches, 0.5).Milliseconds()), "queue-to-created-p50-ms")
		b.ReportMetric(float64(percentile(rec.launches, 0.99).Milliseconds()), "queue-to-created-p99-ms")
		rec.mu.Unlock()
	}
}

// BenchmarkResultLatency runs short attempts on the process nodes and
// reports the time from a pod's end being observed to SaveResult returning.
func BenchmarkResultLatency(b *testing.B) {
	cluster.Need(b)
	const n = 200
	for b.Loop() {
		ctx := context.Background()
		ns := cluster.NewNamespace(b, "bench-results", nil)
		rec := &recorder{}
		cfg := testConfig(ns)
		cfg.Parallelism = 50
		cfg.Metrics = rec
		e, err := executor.New(cluster.RESTConfig(), executor.NewMemoryStore(), cfg)
		require.NoError(b, err)
		require.NoError(b, e.Start(ctx))
		start := time.Now()
		for i := range n {
			require.NoError(b, e.Queue(shell(key("latency", i), "exit 0")))
		}
		for {
			require.NoError(b, e.Heartbeat())
			if _, r := rec.counts(); r == n {
				break
			}
			if time.Since(start) > 10*time.Minute {
				b.Fatal("results did not arrive within 10 minutes")
			}
			time.Sleep(50 * time.Millisecond)
		}
		makespan := time.Since(start)
		stopCtx, cancel := context.WithTimeout(ctx, time.Minute)
		_ = e.Stop(stopCtx)
		cancel()
		rec.mu.Lock()
		b.ReportMetric(makespan.Seconds(), "makespan-s")
		b.ReportMetric(float64(percentile(rec.results, 0.5).Microseconds())/1000, "end-to-saved-p50-ms")
		b.ReportMetric(float64(percentile(rec.results, 0.99).Microseconds())/1000, "end-to-saved-p99-ms")
		rec.mu.Unlock()
	}
}

func barePod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			NodeSelector:  map[string]string{"kubexec.io/bench": "parked"},
			Containers: []corev1.Container{{
				Name: "base", Image: "busybox:1.36", Command: []string{"sh", "-c", "exit 0"},
			}},
		},
	}
}
