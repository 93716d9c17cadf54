package podwatch

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/parallel"
	"github.com/kubexec/kubexec/internal/podtest"
)

// benchPods is the number of pods BenchmarkWatch10k watches.
const benchPods = 10_000

// benchSetup creates the benchmark's pods once per test binary: the
// namespace stays until the cluster stops.
var benchSetup = sync.OnceValues(func() (benchFixture, error) {
	return createBenchPods(benchPods)
})

type benchFixture struct {
	namespace  string
	executorID string
	created    time.Duration
}

// fastClient is a client with QPS and Burst far above what the benchmark
// asks for, so the client never throttles it.
func fastClient() (kubernetes.Interface, error) {
	cfg := cluster.RESTConfig()
	cfg.QPS, cfg.Burst = 5000, 10000
	return kubernetes.NewForConfig(cfg)
}

// benchPod is a pod shaped like a real task pod: a command, environment,
// resources, a volume, kubexec's labels and annotations (and what the API
// server adds: managed fields, the service account token volume).
func benchPod(executorID string, i int) (*corev1.Pod, error) {
	key := kubexec.TaskKey{WorkflowID: "benchmark-workflow", TaskID: fmt.Sprintf("extract_transform_load_%05d", i),
		RunID: "scheduled__2026-03-01T00:00:00+00:00", MapIndex: kubexec.NotMapped, Attempt: 1}
	name, err := kubexec.PodName(key)
	if err != nil {
		return nil, err
	}
	labels, annotations, err := podtest.TaskMetadata(executorID, key)
	if err != nil {
		return nil, err
	}
	env := make([]corev1.EnvVar, 12)
	for j := range env {
		env[j] = corev1.EnvVar{Name: fmt.Sprintf("SETTING_%02d", j), Value: fmt.Sprintf("value-of-setting-%02d-for-task-%05d", j, i)}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{
			SchedulerName: podtest.NoScheduler,
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name:    "base",
				Image:   "registry.example.com/data/etl:2026.03.01",
				Command: []string{"python", "-m", "etl.run", "--task", key.TaskID, "--run", key.RunID},
				Env:     env,
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("512Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}},
			}},
			Volumes: []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}, nil
}

// createBenchPods creates n pods in a new namespace with 32 concurrent
// creators.
func createBenchPods(n int) (benchFixture, error) {
	ctx := context.Background()
	client, err := fastClient()
	if err != nil {
		return benchFixture{}, err
	}
	ns, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "watch-bench-"}}, metav1.CreateOptions{})
	if err != nil {
		return benchFixture{}, err
	}
	f := benchFixture{namespace: ns.Name, executorID: "bench"}
	// Pods cannot be created before the namespace's default ServiceAccount.
	for deadline := time.Now().Add(podtest.WaitTimeout); ; {
		if _, err := client.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		} else if time.Now().After(deadline) {
			return f, fmt.Errorf("no default ServiceAccount in %s: %w", ns.Name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	err = parallel.Do(n, 32, func(i int) error {
		pod, err := benchPod(f.executorID, i)
		if err == nil {
			_, err = client.CoreV1().Pods(ns.Name).Create(ctx, pod, metav1.CreateOptions{})
		}
		return err
	})
	if err != nil {
		return f, err
	}
	f.created = time.Since(start)
	return f, nil
}

// countingHandler counts events and keeps nothing.
type countingHandler struct{ adds, updates, deletes atomic.Int64 }

func (h *countingHandler) OnAdd(*corev1.Pod)          { h.adds.Add(1) }
func (h *countingHandler) OnUpdate(_, _ *corev1.Pod)  { h.updates.Add(1) }
func (h *countingHandler) OnDelete(*corev1.Pod, bool) { h.deletes.Add(1) }
func (h *countingHandler) OnAddAny(any, bool)         { h.adds.Add(1) }
func (h *countingHandler) OnUpdateAny(_, _ any)       { h.updates.Add(1) }
func (h *countingHandler) OnDeleteAny(any)            { h.deletes.Add(1) }
func (h *countingHandler) total() int64               { return h.adds.Load() + h.updates.Load() + h.deletes.Load() }
func (h *countingHandler) waitTotal(n int64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for h.total() < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkWatch10k watches 10,000 pods of one executor and reports:
//
//   - sync-events/s: pods delivered per second by the first list (from Run
//     to HasSynced, the Handler receiving every pod), best of three runs;
//   - watch-events/s: changes delivered per second while 2,000 pods are
//     patched by 32 writers (bounded by the API server's write rate, also
//     reported as writes/s);
//   - B/pod: live heap per tracked pod, the Watcher's whole footprint
//     divided by the pods it holds;
//
// and the same for a bare client-go informer on the same pods (no
// transform, default settings) as the baseline measured in the same run,
// with the ratios heap-vs-informer and sync-vs-informer.
func BenchmarkWatch10k(b *testing.B) {
	cluster.Need(b)
	f, err := benchSetup()
	require.NoError(b, err)
	b.Logf("created %d pods in %s (%.0f/s)", benchPods, f.created.Round(time.Millisecond), benchPods/f.created.Seconds())
	client, err := fastClient()
	require.NoError(b, err)

	var syncRate, watchRate, writeRate, perPod, baseSyncRate, basePerPod float64
	for b.Loop() {
		// The machine is shared: the best of three alternating rounds is
		// the least disturbed measurement of each.
		for round := range 3 {
			rate, heap := measureInformer(b, client, f)
			baseSyncRate, basePerPod = max(baseSyncRate, rate), heap
			rate, heap = measureWatcher(b, client, f, func(w *Watcher, h *countingHandler) {
				if round == 2 {
					watchRate, writeRate = measureUpdates(b, client, f, h)
				}
			})
			syncRate, perPod = max(syncRate, rate), heap
		}
	}
	b.ReportMetric(syncRate, "sync-events/s")
	b.ReportMetric(watchRate, "watch-events/s")
	b.ReportMetric(writeRate, "writes/s")
	b.ReportMetric(perPod, "B/pod")
	b.ReportMetric(baseSyncRate, "informer-sync-events/s")
	b.ReportMetric(basePerPod, "informer-B/pod")
	b.ReportMetric(perPod/basePerPod, "heap-vs-informer")
	b.ReportMetric(syncRate/baseSyncRate, "sync-vs-informer")
}

// measureWatcher runs a Watcher until it synced and returns its sync rate
// and heap per pod, then calls more while it runs.
func measureWatcher(b *testing.B, client kubernetes.Interface, f benchFixture, more func(*Watcher, *countingHandler)) (rate, perPod float64) {
	b.StopTimer()
	before := heapInUse()
	b.StartTimer()
	h := &countingHandler{}
	w, err := New(client, Config{ExecutorID: f.executorID, Namespaces: []string{f.namespace}}, h)
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- w.Run(ctx) }()
	require.NoError(b, w.WaitForSync(b.Context()))
	elapsed := time.Since(start)
	require.EqualValues(b, benchPods, h.adds.Load())
	b.StopTimer()
	after := heapInUse()
	require.Len(b, w.List(), benchPods)
	perPod = float64(int64(after)-int64(before)) / benchPods
	more(w, h)
	b.StartTimer()
	cancel()
	require.NoError(b, <-done)
	runtime.KeepAlive(w)
	return benchPods / elapsed.Seconds(), perPod
}

// measureUpdates patches 2,000 pods with 32 writers and returns the rate at
// which the Watcher delivered the changes and the rate of the writes.
func measureUpdates(b *testing.B, client kubernetes.Interface, f benchFixture, h *countingHandler) (events, writes float64) {
	const n = 2000
	base := h.total()
	patch := fmt.Appendf(nil, `{"metadata":{"labels":{"bench-round":%q}}}`, fmt.Sprint(time.Now().UnixNano()))
	start := time.Now()
	err := parallel.Do(n, 32, func(i int) error {
		pod, err := benchPod(f.executorID, i)
		if err == nil {
			_, err = client.CoreV1().Pods(f.namespace).Patch(context.Background(), pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		}
		return err
	})
	require.NoError(b, err)
	written := time.Since(start)
	require.True(b, h.waitTotal(base+n, podtest.WaitTimeout), "the watcher delivered %d of %d changes", h.total()-base, n)
	return n / time.Since(start).Seconds(), n / written.Seconds()
}

// measureInformer is the baseline: a bare client-go informer, as most
// controllers run it, on the same pods.
func measureInformer(b *testing.B, client kubernetes.Interface, f benchFixture) (rate, perPod float64) {
	b.StopTimer()
	before := heapInUse()
	b.StartTimer()
	sel, err := kubexec.ActiveSelector(f.executorID)
	require.NoError(b, err)
	h := &countingHandler{}
	store, controller := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (k8sruntime.Object, error) {
				opts.LabelSelector = sel.String()
				return client.CoreV1().Pods(f.namespace).List(ctx, opts)
			},
			WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
				opts.LabelSelector = sel.String()
				return client.CoreV1().Pods(f.namespace).Watch(ctx, opts)
			},
		},
		ObjectType: &corev1.Pod{},
		Handler: cache.ResourceEventHandlerDetailedFuncs{
			AddFunc: h.OnAddAny, UpdateFunc: h.OnUpdateAny, DeleteFunc: h.OnDeleteAny,
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() { controller.RunWithContext(ctx) })
	require.True(b, h.waitTotal(benchPods, podtest.WaitTimeout), "the informer delivered %d of %d pods", h.total(), benchPods)
	elapsed := time.Since(start)
	b.StopTimer()
	after := heapInUse()
	require.Len(b, store.List(), benchPods)
	b.StartTimer()
	cancel()
	wg.Wait()
	runtime.KeepAlive(store)
	return benchPods / elapsed.Seconds(), float64(int64(after)-int64(before)) / benchPods
}
