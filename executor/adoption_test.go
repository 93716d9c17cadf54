package executor_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/executor/executortest"
)

// crashAttempts is the crash test's size: 100 in the test suite, more with
// KUBEXEC_CRASH_ATTEMPTS (make bench uses 500).
func crashAttempts() int {
	if n, err := strconv.Atoi(os.Getenv("KUBEXEC_CRASH_ATTEMPTS")); err == nil && n > 0 {
		return n
	}
	return 100
}

func crashSpec(i int) (kubexec.TaskKey, string) {
	k := key("crash", i)
	sleep := fmt.Sprintf("%.1f", 0.2+float64(i%7)*0.4)
	if i%4 == 3 {
		return k, "sleep " + sleep + "; exit 2"
	}
	return k, "sleep " + sleep
}

// crashChildEnv makes the test binary TestCrashAndRestart's executor
// process.
const crashChildEnv = "KUBEXEC_CRASH_CHILD"

// TestCrashChildProcess is the executor process of TestCrashAndRestart: it is
// a test only when KUBEXEC_CRASH_CHILD is set.
func TestCrashChildProcess(t *testing.T) {
	if os.Getenv(crashChildEnv) == "" {
		return
	}
	ns, id, storePath := os.Getenv("CRASH_NS"), os.Getenv("CRASH_ID"), os.Getenv("CRASH_STORE")
	n, _ := strconv.Atoi(os.Getenv("CRASH_N"))
	rc, err := clientcmd.BuildConfigFromFlags("", os.Getenv("CRASH_KUBECONFIG"))
	require.NoError(t, err)
	store, err := executortest.OpenFileStore(storePath)
	require.NoError(t, err)
	cfg := testConfig(ns)
	cfg.ExecutorID = id
	cfg.Parallelism = 10 // launches span many processes' lives
	e, err := executor.New(rc, &reportingStore{store}, cfg)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, e.Start(ctx))
	fmt.Println("started")
	for i := range n {
		k, script := crashSpec(i)
		if _, ok, _ := store.LoadResult(ctx, k); ok {
			continue
		}
		if err := e.Queue(shell(k, script)); err != nil && !errorsIsDuplicate(err) {
			t.Fatal(err)
		}
	}
	for len(store.Results()) < n {
		require.NoError(t, e.Heartbeat())
		time.Sleep(100 * time.Millisecond)
	}
	stopCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	require.NoError(t, e.Stop(stopCtx))
	fmt.Println("done")
}

// reportingStore prints a line for each idempotent repeat, so the parent can
// count them across processes.
type reportingStore struct{ *executortest.FileStore }

func (s *reportingStore) SaveResult(ctx context.Context, r kubexec.Result) error {
	before := s.Repeats()
	err := s.FileStore.SaveResult(ctx, r)
	if s.Repeats() > before {
		fmt.Println("repeat", r.Key.TaskID)
	}
	return err
}

func errorsIsDuplicate(err error) bool {
	return err != nil && strings.Contains(err.Error(), executor.ErrDuplicate.Error())
}

// TestCrashAndRestart runs an executor in a child process over many
// attempts and SIGKILLs it at 10 random moments, each time starting a new
// process with the same id and a durable store; once in between, etcd is
// compacted and the API server restarted. In the end every attempt has one
// result, no pod is left without its result, and no finalizer is left.
func TestCrashAndRestart(t *testing.T) {
	cluster.Need(t)
	n := crashAttempts()
	ns := cluster.NewNamespace(t, "crash", nil)
	storePath := filepath.Join(t.TempDir(), "results.jsonl")
	id := fmt.Sprintf("crash-%d", os.Getpid())
	var repeats, kills int
	var mu sync.Mutex

	run := func(killAfter time.Duration) (finished bool) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChildProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"=1", "CRASH_NS="+ns, "CRASH_ID="+id,
			"CRASH_STORE="+storePath, "CRASH_N="+strconv.Itoa(n), "CRASH_KUBECONFIG="+cluster.Kubeconfig())
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		started := make(chan struct{})
		done := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(out)
			var sawDone bool
			for sc.Scan() {
				line := sc.Text()
				switch {
				case line == "started":
					close(started)
				case line == "done":
					sawDone = true
				case strings.HasPrefix(line, "repeat "):
					mu.Lock()
					repeats++
					mu.Unlock()
				}
			}
			done <- sawDone
		}()
		if killAfter == 0 {
			require.NoError(t, cmd.Wait())
			return <-done
		}
		select {
		case <-started:
		case <-time.After(2 * time.Minute):
			t.Fatal("the child executor did not start")
		}
		time.Sleep(killAfter)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		kills++
		return <-done
	}

	for i := range 10 {
		if run(time.Duration(100+rand.IntN(1500)) * time.Millisecond) {
			break // finished before the kill
		}
		if i == 2 {
			_, err := cluster.CompactEtcd(t.Context())
			require.NoError(t, err)
			require.NoError(t, cluster.RestartAPIServer(t.Context()))
		}
	}
	require.True(t, run(0), "the last executor process did not finish")

	store, err := executortest.OpenFileStore(storePath)
	require.NoError(t, err)
	defer store.Close()
	results := store.Results()
	require.Len(t, results, n, "every attempt has exactly one result")
	for i := range n {
		k, script := crashSpec(i)
		r, ok, err := store.LoadResult(t.Context(), k)
		require.NoError(t, err)
		require.True(t, ok, "%s has no result", k)
		if strings.HasSuffix(script, "exit 2") {
			require.Equal(t, kubexec.ReasonFailed, r.Reason, "%s: %+v", k, r)
		} else {
			require.Equal(t, kubexec.ReasonSucceeded, r.Reason, "%s: %+v", k, r)
		}
	}
	requireNoTrackedPods(t, ns)
	pods, err := cluster.Client().CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	for _, p := range pods.Items {
		k, err := kubexec.KeyFromObject(&p)
		require.NoError(t, err)
		_, ok, _ := store.LoadResult(t.Context(), k)
		require.True(t, ok, "pod %s has no result", p.Name)
	}
	t.Logf("%d attempts, %d kills, %d results, %d idempotent repeat saves, %d pods kept (failures), 0 finalizers left",
		n, kills, len(results), repeats, len(pods.Items))
}

// TestHighAvailability: two executors share a namespace. While both live,
// neither takes the other's pods. When one dies, the survivor adopts its
// pods (running ones through Adopt, ended ones through the sweep) within
// the lease duration plus a sweep, and every attempt gets its result.
func TestHighAvailability(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "ha", nil)
	store := executor.NewMemoryStore()
	short := func(cfg executor.Config) executor.Config {
		cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod = 3*time.Second, 2*time.Second, 500*time.Millisecond
		cfg.SweepInterval = time.Second
		return cfg
	}
	cfgA, cfgB := short(testConfig(ns)), short(testConfig(ns))
	a := startExecutor(t, cluster.RESTConfig(), store, cfgA)
	b := startExecutor(t, cluster.RESTConfig(), store, cfgB)

	// Record every change of a pod's owner.
	owners := watchOwners(t, ns)

	var aKeys, bKeys []kubexec.TaskKey
	for i := range 6 {
		k := key("ha-a", i)
		script := "sleep 2" // ends while A is dead: the sweep adopts it
		if i%2 == 1 {
			script = "sleep 12" // still running when the host calls Adopt
		}
		require.NoError(t, a.Queue(shell(k, script)))
		aKeys = append(aKeys, k)
	}
	for i := range 3 {
		k := key("ha-b", i)
		require.NoError(t, b.Queue(shell(k, "sleep 1")))
		bKeys = append(bKeys, k)
	}
	// Running counts attempts whose create is still in flight: wait for
	// the pods themselves.
	drive(t, a, 3*time.Minute, "A's pods created", func() bool {
		pods, err := cluster.Client().CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: kubexec.LabelExecutor + "=" + cfgA.ExecutorID})
		return err == nil && len(pods.Items) == 6
	})
	require.NoError(t, b.Heartbeat())

	// Both alive: B must not take A's pods.
	noPod, err := b.Adopt(ctx, aKeys)
	require.ErrorIs(t, err, executor.ErrOwnerAlive)
	require.Empty(t, noPod)

	// A dies: it stops without saving anything more.
	dead, cancel := context.WithCancel(ctx)
	cancel()
	_ = a.Stop(dead)
	killedAt := time.Now()

	// The host, seeing A gone, asks B to adopt A's attempts until A's
	// Lease has expired.
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		require.NoError(t, b.Heartbeat())
		noPod, err := b.Adopt(ctx, aKeys)
		require.Empty(t, noPod)
		return err == nil, nil
	}))
	adoptedAfter := time.Since(killedAt)
	drive(t, b, 2*time.Minute, "all results", func() bool { return len(store.Results()) == 9 })
	for _, k := range append(aKeys, bKeys...) {
		r, ok, err := store.LoadResult(ctx, k)
		require.NoError(t, err)
		require.True(t, ok, "%s", k)
		require.Equal(t, kubexec.ReasonSucceeded, r.Reason, "%s: %+v", k, r)
	}
	requireNoTrackedPods(t, ns)
	changes := owners.list()
	for _, c := range changes {
		require.True(t, c.at.After(killedAt), "pod %s changed owner %s -> %s while both executors were alive", c.pod, c.from, c.to)
		require.Equal(t, cfgA.ExecutorID, c.from)
		require.Equal(t, cfgB.ExecutorID, c.to)
	}
	require.NotEmpty(t, changes)
	t.Logf("A's pods adopted %s after it died (lease %s); %d owner changes, all A -> B", adoptedAfter.Round(time.Millisecond), cfgA.LeaseDuration, len(changes))
}

// hostLiveness is a StateStore that also says who is alive (the optional
// adoption.Liveness capability): here, everyone but the executors in dead.
type hostLiveness struct {
	*executor.MemoryStore
	mu   sync.Mutex
	dead map[string]bool
}

func (s *hostLiveness) Alive(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.dead[id], nil
}

// TestHostSuppliedLiveness: the host's Config.Liveness decides who is
// alive instead of the Leases (B's), as does a StateStore that implements
// adoption.Liveness (A's, the fallback).
func TestHostSuppliedLiveness(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "liveness", nil)
	cfgA, cfgB := testConfig(ns), testConfig(ns)
	store := &hostLiveness{MemoryStore: executor.NewMemoryStore(), dead: map[string]bool{}}
	cfgB.Liveness = store
	a := startExecutor(t, cluster.RESTConfig(), store, cfgA)
	b := startExecutor(t, cluster.RESTConfig(), store.MemoryStore, cfgB)
	k := key("liveness", 1)
	require.NoError(t, a.Queue(shell(k, "sleep 5")))
	drive(t, a, 3*time.Minute, "A launched", func() bool { return a.Stats().Running == 1 })

	_, err := b.Adopt(ctx, []kubexec.TaskKey{k})
	require.ErrorIs(t, err, executor.ErrOwnerAlive)

	// The host says A is gone, though A's Lease is fresh: B adopts at once.
	store.mu.Lock()
	store.dead[cfgA.ExecutorID] = true
	store.mu.Unlock()
	noPod, err := b.Adopt(ctx, []kubexec.TaskKey{k})
	require.NoError(t, err)
	require.Empty(t, noPod)
	name, err := kubexec.PodName(k)
	require.NoError(t, err)
	pod, err := cluster.Client().CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, cfgB.ExecutorID, pod.Labels[kubexec.LabelExecutor])
	drive(t, b, 3*time.Minute, "result", func() bool { return len(store.Results()) == 1 })
	require.Equal(t, kubexec.ReasonSucceeded, store.Results()[0].Reason)
}
