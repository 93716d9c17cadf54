package executor_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/adoption"
	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/internal/provenance"
	"github.com/kubexec/kubexec/podtemplate"
)

// TestPolicyRefusesUnsafePods: with the default Config.Policy, an executor
// running as a ServiceAccount of the task namespace (the layout the old
// docs recommended) refuses every override that would give a task more
// than a task: each attempt ends LaunchRejected naming the field and the
// rule, and no pod of theirs is ever created. A plain task still runs, and
// turning the policy off is one line.
func TestPolicyRefusesUnsafePods(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "policy", nil)
	rc := serviceAccountConfig(t, ns, shippedRole(t)) // ServiceAccount "scheduler"
	store := executor.NewMemoryStore()
	e := startExecutor(t, rc, store, testConfig(ns))

	cases := []struct {
		name, override string
		field, rule    string
	}{
		{"privileged", "spec:\n  containers:\n  - name: base\n    securityContext:\n      privileged: true\n      allowPrivilegeEscalation: null\n",
			"spec.containers[0].securityContext.privileged", "baseline/privileged"},
		{"security context replaced", "spec:\n  securityContext:\n    $patch: replace\n    runAsUser: 0\n",
			"spec.securityContext.runAsUser", "restricted/runAsUser"},
		{"host path", "spec:\n  volumes:\n  - name: root\n    hostPath: {path: /}\n  containers:\n  - name: base\n    volumeMounts: [{name: root, mountPath: /host}]\n",
			"spec.volumes[0].hostPath", "baseline/hostPathVolumes"},
		{"the executor's token", "spec:\n  serviceAccountName: scheduler\n  automountServiceAccountToken: true\n",
			"spec.serviceAccountName", "executorServiceAccount"},
		{"another namespace", "metadata:\n  namespace: kube-system\n",
			"metadata.namespace", "namespace"},
		{"internal annotation", "metadata:\n  annotations:\n    kubexec.io/lease-namespace: elsewhere\n",
			"metadata.annotations[kubexec.io/lease-namespace]", "internalAnnotation"},
		{"foreign finalizer", "metadata:\n  finalizers: [example.com/keep-forever]\n",
			"metadata.finalizers[0]", "finalizer"},
		{"owner reference", "metadata:\n  ownerReferences:\n  - {apiVersion: v1, kind: ConfigMap, name: owner, uid: 0b4b5c1e-0000-4000-8000-000000000001}\n",
			"metadata.ownerReferences", "ownerReferences"},
		{"node name", "spec:\n  nodeName: some-node\n", "spec.nodeName", "nodeName"},
	}
	for i, c := range cases {
		require.NoError(t, e.Queue(withOverride(t, shell(key("policy", i), "exit 0"), c.override)), c.name)
	}
	plain := key("policy", len(cases))
	require.NoError(t, e.Queue(shell(plain, "exit 0")))
	drive(t, e, 3*time.Minute, "results", func() bool { return len(store.Results()) == len(cases)+1 })
	got := resultsByKey(store)
	for i, c := range cases {
		r := got[key("policy", i)]
		require.Equal(t, kubexec.ReasonLaunchRejected, r.Reason, "%s: %+v", c.name, r)
		require.Contains(t, r.Message, c.field+": rule "+c.rule, c.name)
	}
	require.Equal(t, kubexec.ReasonSucceeded, got[plain].Reason, "%+v", got[plain])
	pods, err := cluster.Client().CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	for _, p := range pods.Items {
		k, err := kubexec.KeyFromObject(&p)
		require.NoError(t, err)
		require.Equal(t, plain, k, "only the plain task's pod was created")
	}

	off := testConfig(cluster.NewNamespace(t, "policy-off", nil))
	off.Policy = podtemplate.Policy{Disabled: true}
	offStore := executor.NewMemoryStore()
	e2 := startExecutor(t, cluster.RESTConfig(), offStore, off)
	k := key("policy-off", 1)
	require.NoError(t, e2.Queue(withOverride(t, podtemplate.TaskSpec{Key: k, Namespace: off.Namespace, Image: "busybox:1.36", Command: []string{"sh", "-c", "exit 0"}}, cases[0].override)))
	drive(t, e2, 3*time.Minute, "result with the policy off", func() bool { return len(offStore.Results()) == 1 })
	require.Equal(t, kubexec.ReasonSucceeded, offStore.Results()[0].Reason, "%+v", offStore.Results()[0])
}

// foreignCounter records Metrics.ObserveForeignPod calls.
type foreignCounter struct {
	executor.NopMetrics
	mu      sync.Mutex
	reasons []string
}

func (m *foreignCounter) ObserveForeignPod(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reasons = append(m.reasons, reason)
}

func (m *foreignCounter) seen(reason string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.reasons {
		if r == reason {
			return true
		}
	}
	return false
}

// forge creates, as the cluster admin, a pod named name in ns that copies
// labels and annotations (the tracking finalizer aside) and runs script.
func forge(t *testing.T, ns, name string, labels, annotations map[string]string, script string) *corev1.Pod {
	t.Helper()
	uid := int64(1000)
	no := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{
			RestartPolicy:   corev1.RestartPolicyNever,
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: &uid},
			Containers: []corev1.Container{{
				Name: "base", Image: "busybox:1.36", Command: []string{"sh", "-c", script},
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &no},
			}},
		},
	}
	created, err := cluster.Client().CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
	require.NoError(t, err)
	return created
}

// waitPodPhase waits until the pod reaches phase.
func waitPodPhase(t *testing.T, ns, name string, phase corev1.PodPhase) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := cluster.Client().CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == phase, nil
	})
	require.NoError(t, err, "pod %s/%s never reached %s", ns, name, phase)
}

// TestForgedPodDecidesNothing: a pod created by someone else with a
// running attempt's labels and annotations (its provenance mark copied
// too) ends first and successfully, with a value of its own; the
// attempt's result is still its own pod's.
func TestForgedPodDecidesNothing(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "forged", nil)
	metrics := &foreignCounter{}
	cfg := testConfig(ns)
	cfg.Metrics = metrics
	store := executor.NewMemoryStore()
	e := startExecutor(t, cluster.RESTConfig(), store, cfg)
	k := key("forged", 1)
	require.NoError(t, e.Queue(shell(k, "sleep 4; echo genuine > /dev/termination-log; exit 3")))
	drive(t, e, 3*time.Minute, "the attempt running", func() bool {
		st, _ := e.Attempt(k)
		return st.State == kubexec.StateRunning
	})
	name, err := kubexec.PodName(k)
	require.NoError(t, err)
	genuine, err := cluster.Client().CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, genuine.Annotations[kubexec.AnnotationProvenance], "the executor marks its pods")
	forge(t, ns, "forged-pod", genuine.Labels, genuine.Annotations, "echo forged > /dev/termination-log; exit 0")
	drive(t, e, 3*time.Minute, "the forged pod reported", func() bool { return metrics.seen(executor.ForeignPodName) })
	drive(t, e, 3*time.Minute, "the result", func() bool { _, ok, _ := store.LoadResult(ctx, k); return ok })
	r, _, err := store.LoadResult(ctx, k)
	require.NoError(t, err)
	require.Equal(t, kubexec.ReasonFailed, r.Reason, "the attempt's own pod decides: %+v", r)
	require.Equal(t, int32(3), r.ExitCode)
	require.Equal(t, name, r.PodName)
	require.NotContains(t, r.Message, "forged")
}

// TestForgedPodOfAFutureAttempt: a pod created before the run, named as a
// future attempt's pod and labelled with a made-up executor id of the
// group, ends successfully. The group's sweeps, for which that executor is
// dead, never take it over, and the attempt, once queued, is refused
// rather than decided by it.
func TestForgedPodOfAFutureAttempt(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "forged-future", nil)
	k := key("forged-future", 1)
	name, err := kubexec.PodName(k)
	require.NoError(t, err)
	labels, err := kubexec.Labels("made-up-executor", k)
	require.NoError(t, err)
	labels[kubexec.LabelGroup] = testGroup
	annotations, err := kubexec.Annotations(k)
	require.NoError(t, err)
	annotations[kubexec.AnnotationLeaseNamespace] = ns
	annotations[kubexec.AnnotationProvenance] = "v1.forged"
	forge(t, ns, name, labels, annotations, "exit 0")
	waitPodPhase(t, ns, name, corev1.PodSucceeded)

	metrics := &foreignCounter{}
	cfg := testConfig(ns)
	cfg.Metrics = metrics
	cfg.SweepInterval = 200 * time.Millisecond
	store := executor.NewMemoryStore()
	e := startExecutor(t, cluster.RESTConfig(), store, cfg)
	drive(t, e, 3*time.Minute, "the forged pod reported by a sweep", func() bool { return metrics.seen(executor.ForeignPodBadMark) })
	_, saved, err := store.LoadResult(ctx, k)
	require.NoError(t, err)
	require.False(t, saved, "no result comes from the forged pod")

	require.NoError(t, e.Queue(shell(k, "exit 0")))
	drive(t, e, 3*time.Minute, "the attempt ended", func() bool { _, ok, _ := store.LoadResult(ctx, k); return ok })
	r, _, err := store.LoadResult(ctx, k)
	require.NoError(t, err)
	require.Equal(t, kubexec.ReasonLaunchRejected, r.Reason, "%+v", r)
	require.Contains(t, r.Message, "cannot tell its deployment made it")

	secret, err := cluster.Client().CoreV1().Secrets(ns).Get(ctx, executor.DefaultProvenanceSecret+"-"+testGroup, metav1.GetOptions{})
	require.NoError(t, err, "the first instance keeps the group's provenance key in a Secret")
	require.Len(t, secret.Data[executor.ProvenanceSecretKey], 32)
}

// TestAdoptRefusesAnotherKeysPod: an instance of the same group whose
// provenance key differs (another deployment that reused the group's name)
// does not adopt the pod, and says why.
func TestAdoptRefusesAnotherKeysPod(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "other-key", nil)
	cfgA := testConfig(ns)
	cfgA.ProvenanceKey = []byte(strings.Repeat("a", 32))
	storeA := executor.NewMemoryStore()
	a := startExecutor(t, cluster.RESTConfig(), storeA, cfgA)
	k := key("other-key", 1)
	require.NoError(t, a.Queue(shell(k, "sleep 600")))
	drive(t, a, 3*time.Minute, "running", func() bool { st, _ := a.Attempt(k); return st.State == kubexec.StateRunning })
	stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, a.Stop(stopCtx))
	require.NoError(t, cluster.Client().CoordinationV1().Leases(ns).Delete(t.Context(), adoption.LeaseName(cfgA.ExecutorID), metav1.DeleteOptions{}))

	cfgB := testConfig(ns)
	cfgB.ProvenanceKey = []byte(strings.Repeat("b", 32))
	b := startExecutor(t, cluster.RESTConfig(), executor.NewMemoryStore(), cfgB)
	_, err := b.Adopt(t.Context(), []kubexec.TaskKey{k})
	require.ErrorIs(t, err, executor.ErrForeignPod)
	require.ErrorIs(t, err, provenance.ErrBadMark)
}

// TestAdmissionPolicy: the shipped ValidatingAdmissionPolicy, bound to one
// namespace, lets the executor (bound to the shipped Roles) run its
// attempts, and refuses a pod creator without "manage" on pods.kubexec.io
// both a pod with kubexec's labels and a change to an attempt pod's
// labels, while plain pods still pass.
func TestAdmissionPolicy(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	admin := cluster.Client()
	ns := cluster.NewNamespace(t, "admission", map[string]string{"kubexec.io/tasks": "enabled"})
	var policy admissionregistrationv1.ValidatingAdmissionPolicy
	var binding admissionregistrationv1.ValidatingAdmissionPolicyBinding
	docs := strings.Split(string(executor.AdmissionPolicyYAML), "\n---\n")
	require.Len(t, docs, 2)
	require.NoError(t, yaml.UnmarshalStrict([]byte(docs[0]), &policy))
	require.NoError(t, yaml.UnmarshalStrict([]byte(docs[1]), &binding))
	// Names of this test's own, since the policy is cluster-wide; the
	// binding selects only namespaces labelled as this test's is.
	policy.Name = "kubexec-pod-identity-" + ns
	binding.Name, binding.Spec.PolicyName = policy.Name, policy.Name
	_, err := admin.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, &policy, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = admin.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(context.Background(), policy.Name, metav1.DeleteOptions{})
	})
	binding.Spec.MatchResources.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
	_, err = admin.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, &binding, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = admin.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
	})

	forgerRC := cluster.ServiceAccountConfig(t, ns, "forger", &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "forger"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"create", "get", "list", "patch"}}},
	})
	forger, err := kubernetes.NewForConfig(forgerRC)
	require.NoError(t, err)
	k := key("admission", 1)
	labels, err := kubexec.Labels("made-up-executor", k)
	require.NoError(t, err)
	uid := int64(1000)
	podWith := func(name string, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec: corev1.PodSpec{
				RestartPolicy:   corev1.RestartPolicyNever,
				SecurityContext: &corev1.PodSecurityContext{RunAsUser: &uid},
				Containers:      []corev1.Container{{Name: "base", Image: "busybox:1.36", Command: []string{"true"}}},
			},
		}
	}
	// The policy takes effect once the API server has loaded it.
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := forger.CoreV1().Pods(ns).Create(ctx, podWith("forged", labels), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return apierrors.IsForbidden(err) || apierrors.IsInvalid(err), nil
	})
	require.NoError(t, err, "the admission policy never refused a forged pod")
	_, err = forger.CoreV1().Pods(ns).Create(ctx, podWith("forged", labels), metav1.CreateOptions{})
	require.Error(t, err)
	require.Contains(t, err.Error(), "only a kubexec executor may set or change kubexec labels")
	_, err = forger.CoreV1().Pods(ns).Create(ctx, podWith("plain", map[string]string{"app": "mine"}), metav1.CreateOptions{})
	require.NoError(t, err, "pods without kubexec's labels pass")

	rc := serviceAccountConfig(t, ns, shippedRole(t))
	store := executor.NewMemoryStore()
	e := startExecutor(t, rc, store, testConfig(ns))
	running := key("admission", 2)
	require.NoError(t, e.Queue(shell(running, "sleep 600")))
	drive(t, e, 3*time.Minute, "running", func() bool { st, _ := e.Attempt(running); return st.State == kubexec.StateRunning })
	name, err := kubexec.PodName(running)
	require.NoError(t, err)
	_, err = forger.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"kubexec.io/executor":"made-up-executor"}}}`), metav1.PatchOptions{})
	require.Error(t, err, "the forger may not relabel an attempt's pod")
	require.Contains(t, err.Error(), "only a kubexec executor may set or change kubexec labels")
	_, err = forger.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"note":"fine"}}}`), metav1.PatchOptions{})
	require.NoError(t, err, "other labels may change")
	require.NoError(t, e.Revoke(running))
	drive(t, e, 3*time.Minute, "revoked", func() bool { _, ok, _ := store.LoadResult(ctx, running); return ok })
	r, _, err := store.LoadResult(ctx, running)
	require.NoError(t, err)
	require.Equal(t, kubexec.ReasonRevoked, r.Reason, "%+v", r)
	requirePodGone(t, ns, running) // the executor removed its finalizer
}
