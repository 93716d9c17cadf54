package podtemplate_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
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
// anything; and the pods of the typed TaskSpec fields (files, working
// directory, user, deadline) run on both kinds of node, the process node
// and the real kubelet (tainted, so that only the pods that ask for it
// land there). One cluster serves the subtests; each makes its own
// namespace.
//
// The cluster is started here rather than in a TestMain so that the unit
// tests and fuzz workers of this package do not start one.
func TestCluster(t *testing.T) {
	cluster := devcluster.StartForTest(t, devcluster.Options{Nodes: 1, KubeletNodes: 1, KubeletNodeTaint: true})
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
			{name: "typed fields", tpl: fromFile, spec: podtemplate.TaskSpec{
				Volumes: []corev1.Volume{
					{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
					{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
				Files: []podtemplate.File{
					{Path: "/opt/task/run.sh", Content: "#!/bin/sh\necho hi\n", Mode: 0o755},
					{Path: "/etc/task.conf", Content: strings.Repeat("x", podtemplate.MaxFilesBytes-100)},
				},
				WorkingDir: "/data", ActiveDeadline: 90 * time.Second,
				RunAsUser: new(int64(4242)), RunAsGroup: new(int64(4242)),
			}},
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
				// The server stores what the typed fields built (and adds
				// the ServiceAccount token's volume where the template
				// mounts it).
				require.Equal(t, pod.Annotations, got.Annotations)
				notToken := func(name string) bool { return !strings.HasPrefix(name, "kube-api-access-") }
				var volumes []corev1.Volume
				for _, v := range got.Spec.Volumes {
					if notToken(v.Name) {
						volumes = append(volumes, v)
					}
				}
				require.Equal(t, pod.Spec.Volumes, volumes)
				var mounts []corev1.VolumeMount
				for _, m := range got.Spec.Containers[0].VolumeMounts {
					if notToken(m.Name) {
						mounts = append(mounts, m)
					}
				}
				require.Equal(t, pod.Spec.Containers[0].VolumeMounts, mounts)
				require.Equal(t, pod.Spec.Containers[0].WorkingDir, got.Spec.Containers[0].WorkingDir)
				require.Equal(t, pod.Spec.Containers[0].SecurityContext, got.Spec.Containers[0].SecurityContext)
				require.Equal(t, pod.Spec.ActiveDeadlineSeconds, got.Spec.ActiveDeadlineSeconds)
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

	// A script and a config file from TaskSpec.Files, run as the user and
	// group and in the working directory the task spec gives, under the
	// restricted Pod Security Standard, on each kind of node. The config
	// file sits in /etc, whose other files stay: a file is mounted alone,
	// not its folder.
	for _, node := range []struct{ kind, override string }{
		{"process", "spec:\n  nodeSelector: {" + devcluster.ProcessNodeLabel + ": \"true\"}\n"},
		{"kubelet", "spec:\n  nodeSelector: {" + devcluster.KubeletNodeLabel + ": \"true\"}\n" +
			"  tolerations: [{key: " + devcluster.KubeletNodeLabel + ", operator: Equal, value: \"true\", effect: NoSchedule}]\n"},
	} {
		t.Run("files, working dir and user on the "+node.kind+" node", func(t *testing.T) {
			t.Parallel()
			ns := cluster.NewNamespace(t, "podtemplate-files-"+node.kind, restricted)
			tpl := newTemplate(t, podtemplate.DefaultTemplate(), podtemplate.Config{Namespace: ns})
			pod, err := tpl.Build(t.Context(), podtemplate.TaskSpec{
				Key: testKey, Image: "busybox:1.37",
				Command: []string{"/opt/task/run.sh"},
				Files: []podtemplate.File{
					{Path: "/opt/task/run.sh", Mode: 0o755, Content: "#!/bin/sh\nset -eu\n" +
						"echo \"user=$(id -u) group=$(id -g)\"\n" +
						"echo \"pwd=$(pwd)\"\n" +
						"echo \"table=$(cat /etc/kubexec-task.conf)\"\n" +
						"echo \"modes=$(stat -c %a /opt/task/run.sh) $(stat -c %a /etc/kubexec-task.conf)\"\n" +
						"grep -q '^root:' /etc/passwd && echo 'etc kept'\n"},
					{Path: "/etc/kubexec-task.conf", Content: "users ünïcode"},
				},
				WorkingDir: "/var",
				RunAsUser:  new(int64(1000)), RunAsGroup: new(int64(3000)),
				Override: mustOverride(t, node.override),
			})
			require.NoError(t, err)
			require.Empty(t, (podtemplate.Policy{}).Check(pod), "the executor's default policy step lets it through")
			ended := runPod(t, client, pod)
			logs := podLogs(t, client, ended)
			require.Equal(t, corev1.PodSucceeded, ended.Status.Phase, "logs:\n%s", logs)
			require.Equal(t, "user=1000 group=3000\npwd=/var\ntable=users ünïcode\nmodes=755 644\netc kept\n", logs)
		})
		t.Run("deadline on the "+node.kind+" node", func(t *testing.T) {
			t.Parallel()
			ns := cluster.NewNamespace(t, "podtemplate-deadline-"+node.kind, restricted)
			tpl := newTemplate(t, podtemplate.DefaultTemplate(), podtemplate.Config{Namespace: ns})
			pod, err := tpl.Build(t.Context(), podtemplate.TaskSpec{
				Key: testKey, Image: "busybox:1.37", Command: []string{"sleep", "600"},
				RunAsUser: new(int64(1000)), ActiveDeadline: 1500 * time.Millisecond,
				// sleep, as PID 1, ignores SIGTERM: end it at once.
				Override: mustOverride(t, node.override+"  terminationGracePeriodSeconds: 1\n"),
			})
			require.NoError(t, err)
			require.Equal(t, new(int64(2)), pod.Spec.ActiveDeadlineSeconds)
			ended := runPod(t, client, pod)
			require.Equal(t, corev1.PodFailed, ended.Status.Phase)
			require.Equal(t, "DeadlineExceeded", ended.Status.Reason, "%s", ended.Status.Message)
		})
	}

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

// runPod creates pod, without kubexec's finalizer (no executor here
// removes it, and the namespace must go at the end of the test), and
// returns it once it has ended: phase Succeeded or Failed.
func runPod(t *testing.T, client kubernetes.Interface, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	pod = pod.DeepCopy()
	pod.Finalizers = nil
	pods := client.CoreV1().Pods(pod.Namespace)
	_, err := pods.Create(t.Context(), pod, metav1.CreateOptions{})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	for {
		p, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		require.NoError(t, err, "waiting for pod %s/%s to end", pod.Namespace, pod.Name)
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			return p
		}
		w, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + pod.Name, ResourceVersion: p.ResourceVersion})
		require.NoError(t, err, "waiting for pod %s/%s to end (last status %+v)", pod.Namespace, pod.Name, p.Status)
		for ev := range w.ResultChan() {
			if q, ok := ev.Object.(*corev1.Pod); ok && (q.Status.Phase == corev1.PodSucceeded || q.Status.Phase == corev1.PodFailed) {
				w.Stop()
				return q
			}
			if ev.Type == watch.Error {
				break // start over from a fresh Get
			}
		}
		w.Stop()
	}
}

// podLogs returns the main container's log.
func podLogs(t *testing.T, client kubernetes.Interface, pod *corev1.Pod) string {
	t.Helper()
	data, err := client.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: pod.Spec.Containers[0].Name}).DoRaw(t.Context())
	require.NoError(t, err)
	return string(data)
}
