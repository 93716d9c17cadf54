package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/devcluster"
)

var cluster *devcluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(devcluster.Main(m, devcluster.Options{}, &cluster))
}

func TestLeaseName(t *testing.T) {
	t.Parallel()
	ids := []string{"a", "A", "scheduler-0", "Scheduler_0", "x.y.z", "0123456789012345678901234567890123456789012345678901234567890ab"}
	seen := map[string]string{}
	for _, id := range ids {
		// Claims and instance Leases share a namespace: no name is both.
		for _, name := range []string{LeaseName(id), ClaimName(id, ""), ClaimName(id, "team-a")} {
			require.Empty(t, validation.IsDNS1123Subdomain(name), "%q -> %q", id, name)
			require.LessOrEqual(t, len(name), 63)
			prev, dup := seen[name]
			require.False(t, dup, "%q and %q share lease %q", id, prev, name)
			seen[name] = id
		}
		require.Equal(t, LeaseName(id), LeaseName(id), "deterministic")
		require.Equal(t, ClaimName(id, "team-a"), ClaimName(id, "team-a"), "deterministic")
	}
}

func TestLeaseConfigValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  LeaseConfig
		want string
	}{
		{"defaults", LeaseConfig{ExecutorID: "a"}, ""},
		{"no id", LeaseConfig{}, "LeaseConfig.ExecutorID"},
		{"duration not above deadline", LeaseConfig{ExecutorID: "a", LeaseDuration: 10 * time.Second}, "LeaseDuration (10s) must be greater than RenewDeadline"},
		{"deadline too close to retry", LeaseConfig{ExecutorID: "a", RetryPeriod: 9 * time.Second}, "must be greater than 1.2 × RetryPeriod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.withDefaults().validate()
			if tt.want == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tt.want)
				require.ErrorIs(t, err, kubexec.ErrInvalidConfig)
			}
		})
	}
}

func TestSettled(t *testing.T) {
	t.Parallel()
	now := metav1.Now()
	tests := []struct {
		name string
		pod  corev1.Pod
		want bool
	}{
		{"pending", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending}}, false},
		{"running", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning}}, false},
		{"succeeded", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodSucceeded}}, true},
		{"failed", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed}}, true},
		{"running, deleted", corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}, true},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, settled(&tt.pod), tt.name)
	}
}

func TestLeaseLiveness(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "lease", nil)
	client := cluster.Client()
	// The observers' clocks are the test's, so the duration need not be
	// short; RenewDeadline, which bounds each Acquire, is generous for a
	// loaded machine.
	const duration = 30 * time.Second
	holder, err := NewLeaseHolder(client, LeaseConfig{ExecutorID: "alive-1", Namespace: ns, LeaseDuration: duration, RenewDeadline: 20 * time.Second, RetryPeriod: time.Second})
	require.NoError(t, err)
	require.NoError(t, holder.Acquire(ctx))

	clock := time.Now()
	l := NewLeaseLiveness(client, ns)
	l.now = func() time.Time { return clock }

	alive, err := l.Alive(ctx, "alive-1")
	require.NoError(t, err)
	require.True(t, alive)
	alive, err = l.Alive(ctx, "never-existed")
	require.NoError(t, err)
	require.False(t, alive, "an instance without a Lease is dead")

	// No renewal for longer than the duration, by this observer's clock
	// (not the holder's): dead.
	clock = clock.Add(duration + time.Second)
	alive, err = l.Alive(ctx, "alive-1")
	require.NoError(t, err)
	require.False(t, alive)

	// A renewal brings it back.
	require.NoError(t, holder.Acquire(ctx))
	alive, err = l.Alive(ctx, "alive-1")
	require.NoError(t, err)
	require.True(t, alive)

	// A new observer never compares the renewTime with its own clock: a
	// Lease it has not seen before counts as renewed when it first reads
	// it, however old its renewTime looks, and is dead only once this
	// observer has seen it unchanged for a duration.
	lease, err := client.CoordinationV1().Leases(ns).Get(ctx, LeaseName("alive-1"), metav1.GetOptions{})
	require.NoError(t, err)
	at := lease.Spec.RenewTime.Add(2*duration + time.Second)
	fresh := NewLeaseLiveness(client, ns)
	fresh.now = func() time.Time { return at }
	alive, err = fresh.Alive(ctx, "alive-1")
	require.NoError(t, err)
	require.True(t, alive, "first sighting, renewTime two durations old by this clock")
	at = at.Add(duration + time.Second)
	alive, err = fresh.Alive(ctx, "alive-1")
	require.NoError(t, err)
	require.False(t, alive, "seen unchanged for longer than a duration")

	// Run keeps it renewed.
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { holder.Run(runCtx); close(done) }()
	lease, err = client.CoordinationV1().Leases(ns).Get(ctx, LeaseName("alive-1"), metav1.GetOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		again, err := client.CoordinationV1().Leases(ns).Get(ctx, LeaseName("alive-1"), metav1.GetOptions{})
		return err == nil && again.Spec.RenewTime.After(lease.Spec.RenewTime.Time)
	}, 3*time.Minute, 100*time.Millisecond, "Run did not renew the Lease")
	cancel()
	<-done
}

// testGroup is the adoption group of the instances of these tests.
const testGroup = "test-group"

// makePods creates n kubexec pods owned by owner in ns with the given phase
// (set through the status subresource; no scheduler or node touches them),
// as an instance of testGroup with its Lease in ns makes them.
func makePods(t testing.TB, client kubernetes.Interface, ns, owner, prefix string, n int, phase corev1.PodPhase) []*corev1.Pod {
	t.Helper()
	return devcluster.CreatePods(t, client, ns, n, func(i int) (*corev1.Pod, error) {
		key := kubexec.TaskKey{WorkflowID: prefix, TaskID: fmt.Sprintf("t%d", i), MapIndex: kubexec.NotMapped}
		pod := &corev1.Pod{
			Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				// No scheduler takes it, so nothing but the test
				// changes it.
				SchedulerName: "kubexec-test-no-scheduler",
				Containers:    []corev1.Container{{Name: "base", Image: "busybox:1.36"}},
			},
		}
		if err := kubexec.ApplyMetadata(pod, owner, key); err != nil {
			return nil, err
		}
		if err := kubexec.ApplyGroup(pod, testGroup, ns); err != nil {
			return nil, err
		}
		pod.Finalizers = nil // test pods: nothing must hold them
		return pod, nil
	}, func(_ int, st *corev1.PodStatus) bool {
		st.Phase = phase
		return phase != corev1.PodPending
	})
}

func owner(t *testing.T, client kubernetes.Interface, pod *corev1.Pod) string {
	t.Helper()
	p, err := client.CoreV1().Pods(pod.Namespace).Get(t.Context(), pod.Name, metav1.GetOptions{})
	require.NoError(t, err)
	return p.Labels[kubexec.LabelExecutor]
}

func TestRelabelOneWinner(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "relabel", nil)
	client := cluster.Client()
	pod := makePods(t, client, ns, "dead-1", "relabel", 1, corev1.PodSucceeded)[0]
	// The pod changes after it was read (as a node writes a running pod's
	// status): that alone is no reason to fail.
	_, err := client.CoreV1().Pods(ns).Patch(ctx, pod.Name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"touched":"yes"}}}`), metav1.PatchOptions{})
	require.NoError(t, err)
	// Two adopters read the same version; exactly one wins.
	errA := Relabel(ctx, client, pod, "adopter-a")
	errB := Relabel(ctx, client, pod, "adopter-b")
	require.NoError(t, errA)
	require.ErrorIs(t, errB, ErrConflict)
	require.Equal(t, "adopter-a", owner(t, client, pod))
	// Relabelling to the owner it already has is a no-op.
	fresh, err := client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
	require.NoError(t, err)
	require.NoError(t, Relabel(ctx, client, fresh, "adopter-a"))
	require.Equal(t, "yes", fresh.Annotations["touched"], "the relabel changes nothing but the label")
}

func TestSweeperAdoptsOnlySettledPodsOfDeadOwners(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "sweep", nil)
	client := cluster.Client()
	holder, err := NewLeaseHolder(client, LeaseConfig{ExecutorID: "live-owner", Namespace: ns})
	require.NoError(t, err)
	require.NoError(t, holder.Acquire(ctx))

	deadDone := makePods(t, client, ns, "dead-owner", "dead-done", 3, corev1.PodSucceeded)
	deadFailed := makePods(t, client, ns, "dead-owner", "dead-failed", 2, corev1.PodFailed)
	deadRunning := makePods(t, client, ns, "dead-owner", "dead-running", 2, corev1.PodRunning)
	liveDone := makePods(t, client, ns, "live-owner", "live-done", 2, corev1.PodSucceeded)

	// The live owner renewed its Lease just now by the sweeper's clock,
	// however long the API calls of the sweeps take on a loaded machine:
	// the clock is the renewal's, not read.
	lease, err := client.CoordinationV1().Leases(ns).Get(ctx, LeaseName("live-owner"), metav1.GetOptions{})
	require.NoError(t, err)
	liveness := NewLeaseLiveness(client, ns)
	liveness.now = func() time.Time { return lease.Spec.RenewTime.Time }
	s, err := NewSweeper(client, liveness, SweepConfig{ExecutorID: "sweeper", Group: testGroup, Namespaces: []string{ns}, LeaseNamespace: ns, PageSize: 2})
	require.NoError(t, err)
	st, err := s.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 5, st.Adopted)
	require.Equal(t, 9, st.Listed)
	require.Equal(t, 1, st.DeadOwners)
	for _, p := range append(deadDone, deadFailed...) {
		require.Equal(t, "sweeper", owner(t, client, p))
	}
	for _, p := range deadRunning {
		require.Equal(t, "dead-owner", owner(t, client, p), "running pods wait for the host's Adopt")
	}
	for _, p := range liveDone {
		require.Equal(t, "live-owner", owner(t, client, p), "pods of a live owner are never touched")
	}
	// A second sweep finds nothing more to do.
	st, err = s.Sweep(ctx)
	require.NoError(t, err)
	require.Zero(t, st.Adopted)
}

func TestSweeperNeverAdoptsOnLivenessErrors(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "sweep-err", nil)
	client := cluster.Client()
	pods := makePods(t, client, ns, "unknown-owner", "unknown", 1, corev1.PodSucceeded)
	broken := LivenessFunc(func(context.Context, string) (bool, error) { return false, errors.New("liveness store down") })
	s, err := NewSweeper(client, broken, SweepConfig{ExecutorID: "sweeper", Group: testGroup, Namespaces: []string{ns}, LeaseNamespace: ns})
	require.NoError(t, err)
	st, err := s.Sweep(t.Context())
	require.ErrorContains(t, err, "liveness store down")
	require.Zero(t, st.Adopted)
	require.Equal(t, "unknown-owner", owner(t, client, pods[0]))
}

// BenchmarkSweep5000 adopts 5,000 ended pods of a dead instance in one
// sweep and reports the time and the API calls it took.
func BenchmarkSweep5000(b *testing.B) {
	cluster.Need(b)
	const n = 5000
	for b.Loop() {
		b.StopTimer()
		ns := cluster.NewNamespace(b, "sweep-bench", nil)
		rc := cluster.RESTConfig()
		rc.QPS, rc.Burst = 2000, 2000
		client, err := kubernetes.NewForConfig(rc)
		require.NoError(b, err)
		makePods(b, client, ns, "dead-owner", "bench", n, corev1.PodSucceeded)
		s, err := NewSweeper(client, NewLeaseLiveness(client, ns), SweepConfig{ExecutorID: "sweeper", Group: testGroup, Namespaces: []string{ns}, LeaseNamespace: ns})
		require.NoError(b, err)
		b.StartTimer()
		start := time.Now()
		st, err := s.Sweep(context.Background())
		elapsed := time.Since(start)
		require.NoError(b, err)
		require.Equal(b, n, st.Adopted)
		b.ReportMetric(elapsed.Seconds(), "adopt-5000-s")
		b.ReportMetric(float64(st.APICalls), "api-calls")
	}
}
