package podtemplate_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/devcluster"
	"github.com/kubexec/kubexec/podtemplate"
)

// restricted labels a namespace to enforce the restricted Pod Security
// Standard.
var restricted = map[string]string{
	"pod-security.kubernetes.io/enforce":         "restricted",
	"pod-security.kubernetes.io/enforce-version": "latest",
}

// TestCluster checks built pods against a real API server (the dev
// cluster): server-side dry-run creates go through the API server's
// validation and admission, Pod Security included, without creating
// anything. One cluster serves the subtests; each makes its own namespace.
//
// The cluster is started here rather than in a TestMain so that the unit
// tests and fuzz workers of this package do not start one.
func TestCluster(t *testing.T) {
	cluster := devcluster.StartForTest(t, devcluster.Options{})
	client := cluster.Client()

	t.Run("built pods pass a server-side dry run", func(t *testing.T) {
		t.Parallel()
		ns := cluster.NewNamespace(t, "podtemplate-dryrun", nil)
		_, err := client.CoreV1().ServiceAccounts(ns).Create(t.Context(),
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "etl-runner"}}, metav1.CreateOptions{})
		require.NoError(t, err)

		fromFile := newTemplate(t, loadTestTemplate(t), podtemplate.Config{Namespace: ns})
		fromDefault := newTemplate(t, podtemplate.DefaultTemplate(), podtemplate.Config{Namespace: ns})
		tests := []struct {
			name     string
			tpl      *podtemplate.Template
			spec     podtemplate.TaskSpec
			override string
		}{
			{name: "default template", tpl: fromDefault, spec: podtemplate.TaskSpec{
				Image: "busybox:1.37", Command: []string{"sh", "-c", "echo hi"},
				Env:      []corev1.EnvVar{{Name: "A", Value: "1"}},
				Requests: map[corev1.ResourceName]string{"cpu": "100m", "memory": "64Mi"},
				Limits:   map[corev1.ResourceName]string{"memory": "128Mi"},
			}},
			{name: "template file", tpl: fromFile},
			{name: "template file with override", tpl: fromFile, spec: podtemplate.TaskSpec{Command: []string{"python", "job.py"}},
				override: "spec:\n  nodeSelector: {disk: ssd}\n  activeDeadlineSeconds: 600\n" +
					"  initContainers:\n  - name: log-shipper\n    $patch: delete\n" +
					"  volumes:\n  - name: data\n    emptyDir: {}\n" +
					"  containers:\n  - name: base\n    image: registry.example.com/etl:1.5\n" +
					"    env: [{name: MODE, value: \"\"}]\n    volumeMounts: [{name: data, mountPath: /data}]\n" +
					"  - name: helper\n    image: registry.example.com/helper:1\n"},
			{name: "long and odd ids", tpl: fromDefault, spec: podtemplate.TaskSpec{
				Key: kubexec.TaskKey{
					WorkflowID: "Ünïcode DAG with a very long name that goes on and on and on and on and on",
					TaskID:     "group.task/with spaces & symbols!", RunID: "manual__2026-01-01T00:00:00+00:00",
					MapIndex: 12, Attempt: 3,
				},
				Image: "busybox:1.37",
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				spec := tt.spec
				if spec.Key == (kubexec.TaskKey{}) {
					spec.Key = testKey
				}
				if tt.override != "" {
					spec.Override = mustOverride(t, tt.override)
				}
				pod, err := tt.tpl.Build(t.Context(), spec)
				require.NoError(t, err)
				got := dryRunCreate(t, client, pod)
				require.Equal(t, pod.Name, got.Name)
				require.Equal(t, ns, got.Namespace)
				key, err := kubexec.KeyFromObject(got)
				require.NoError(t, err)
				require.Equal(t, spec.Key, key, "the server keeps the key annotations")
				require.Equal(t, pod.Labels, got.Labels)
				require.Contains(t, got.Finalizers, kubexec.FinalizerResultTracking)
			})
		}

		// Nothing was created.
		pods, err := client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
		require.NoError(t, err)
		require.Empty(t, pods.Items)
	})

	t.Run("default template is admitted under restricted Pod Security", func(t *testing.T) {
		t.Parallel()
		ns := cluster.NewNamespace(t, "podtemplate-restricted", restricted)
		tpl := newTemplate(t, podtemplate.DefaultTemplate(), podtemplate.Config{Namespace: ns})
		pod, err := tpl.Build(t.Context(), podtemplate.TaskSpec{Key: testKey, Image: "busybox:1.37", Command: []string{"true"}})
		require.NoError(t, err)
		_, err = client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		require.NoError(t, err)
	})

	t.Run("privileged override is rejected under restricted Pod Security", func(t *testing.T) {
		t.Parallel()
		ns := cluster.NewNamespace(t, "podtemplate-privileged", restricted)
		tpl := newTemplate(t, podtemplate.DefaultTemplate(), podtemplate.Config{Namespace: ns})
		pod, err := tpl.Build(t.Context(), podtemplate.TaskSpec{
			Key: testKey, Image: "busybox:1.37",
			Override: mustOverride(t, "spec:\n  containers:\n  - name: base\n    securityContext:\n      privileged: true\n      allowPrivilegeEscalation: true\n"),
		})
		require.NoError(t, err, "Pod Security is the cluster's policy, not a local validation")
		require.True(t, *pod.Spec.Containers[0].SecurityContext.Privileged)

		_, err = client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		require.Error(t, err)
		require.True(t, apierrors.IsForbidden(err), "want 403 Forbidden, got %v", err)
		require.ErrorContains(t, err, `violates PodSecurity "restricted:latest"`)
		require.ErrorContains(t, err, `privileged (container "base" must not set securityContext.privileged=true)`)
		t.Logf("the server says: %v", err)
	})

	// Policy.Check agrees with the API server's own Pod Security admission
	// on every case of policyCases that only the Pod Security Standard
	// judges, at both levels: it refuses exactly the pods the server
	// forbids.
	for _, level := range []podtemplate.Level{podtemplate.LevelRestricted, podtemplate.LevelBaseline} {
		t.Run("Policy agrees with Pod Security admission at "+string(level), func(t *testing.T) {
			t.Parallel()
			ns := cluster.NewNamespace(t, "podtemplate-pss-"+string(level), map[string]string{
				"pod-security.kubernetes.io/enforce":         string(level),
				"pod-security.kubernetes.io/enforce-version": "latest",
			})
			policy := podtemplate.Policy{Level: level}
			for _, c := range policyCases {
				if !c.pssOnly() {
					continue
				}
				pod := buildPolicyCase(t, c, ns)
				violations := policy.Check(pod)
				_, err := client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				if err != nil && !apierrors.IsForbidden(err) {
					t.Fatalf("%s: the server refused the pod for another reason than Pod Security: %v\n%s", c.name, err, policyPod(pod))
				}
				require.Equal(t, err != nil, len(violations) > 0,
					"%s: the server says %v; Policy.Check says %v\n%s", c.name, err, violations, policyPod(pod))
			}
		})
	}
}

// dryRunCreate creates pod with a server-side dry run and returns the pod
// the server would have stored.
func dryRunCreate(t *testing.T, client kubernetes.Interface, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	got, err := client.CoreV1().Pods(pod.Namespace).Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	require.NoError(t, err)
	return got
}
