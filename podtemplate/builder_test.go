package podtemplate_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/podtemplate"
)

var testKey = kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "r1", MapIndex: kubexec.NotMapped, Attempt: 1}

func newTemplate(t *testing.T, base *corev1.Pod, cfg podtemplate.Config) *podtemplate.Template {
	t.Helper()
	if cfg.ExecutorID == "" {
		cfg.ExecutorID = "sched-1"
	}
	tpl, err := podtemplate.New(base, cfg)
	require.NoError(t, err)
	return tpl
}

func loadTestTemplate(t *testing.T) *corev1.Pod {
	t.Helper()
	pod, err := podtemplate.LoadTemplate(filepath.Join("testdata", "template.yaml"))
	require.NoError(t, err)
	return pod
}

func mustOverride(t *testing.T, yaml string) podtemplate.Override {
	t.Helper()
	o, err := podtemplate.ParseOverride("override.yaml", []byte(yaml))
	require.NoError(t, err)
	return o
}

func container(t *testing.T, pod *corev1.Pod, name string) corev1.Container {
	t.Helper()
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		if c.Name == name {
			return c
		}
	}
	require.FailNow(t, "no container "+name)
	return corev1.Container{}
}

func TestNew(t *testing.T) {
	t.Parallel()
	_, err := podtemplate.New(nil, podtemplate.Config{ExecutorID: "x"})
	require.ErrorIs(t, err, podtemplate.ErrInvalidTemplate)
	require.ErrorContains(t, err, "DefaultTemplate()")

	_, err = podtemplate.New(podtemplate.DefaultTemplate(), podtemplate.Config{ExecutorID: "has space"})
	require.ErrorIs(t, err, kubexec.ErrInvalidExecutorID)
	require.ErrorContains(t, err, "Config.ExecutorID")

	// No executor id of its own: the executor hands one in the task spec.
	anonymous, err := podtemplate.New(podtemplate.DefaultTemplate(), podtemplate.Config{})
	require.NoError(t, err)
	key := kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "r1", MapIndex: kubexec.NotMapped, Attempt: 1}
	_, err = anonymous.Build(t.Context(), podtemplate.TaskSpec{Key: key, Image: "busybox"})
	require.ErrorIs(t, err, kubexec.ErrInvalidConfig)
	require.ErrorContains(t, err, "TaskSpec.ExecutorID")
	pod, err := anonymous.Build(t.Context(), podtemplate.TaskSpec{Key: key, Image: "busybox", ExecutorID: "scheduler-0"})
	require.NoError(t, err)
	require.Equal(t, "scheduler-0", pod.Labels[kubexec.LabelExecutor])
	named, err := podtemplate.New(podtemplate.DefaultTemplate(), podtemplate.Config{ExecutorID: "from-config"})
	require.NoError(t, err)
	pod, err = named.Build(t.Context(), podtemplate.TaskSpec{Key: key, Image: "busybox", ExecutorID: "scheduler-0"})
	require.NoError(t, err)
	require.Equal(t, "scheduler-0", pod.Labels[kubexec.LabelExecutor], "the task spec's id wins")

	_, err = podtemplate.New(podtemplate.DefaultTemplate(), podtemplate.Config{ExecutorID: "x", MainContainer: "main"})
	require.ErrorIs(t, err, podtemplate.ErrInvalidTemplate)
	require.ErrorContains(t, err, `no container named "main"`)

	_, err = podtemplate.New(podtemplate.DefaultTemplate(), podtemplate.Config{ExecutorID: "x", Middleware: []podtemplate.Middleware{nil}})
	require.ErrorContains(t, err, "Config.Middleware[0] is nil")
	require.ErrorIs(t, err, kubexec.ErrInvalidConfig)

	base := podtemplate.DefaultTemplate()
	tpl := newTemplate(t, base, podtemplate.Config{})
	base.Spec.Containers[0].Image = "changed-after-new"
	pod, err = tpl.Build(t.Context(), podtemplate.TaskSpec{Key: testKey, Image: "busybox"})
	require.NoError(t, err)
	require.Equal(t, "busybox", pod.Spec.Containers[0].Image, "New copies the template")
}

func TestBuildDefaultTemplate(t *testing.T) {
	t.Parallel()
	tpl := newTemplate(t, podtemplate.DefaultTemplate(), podtemplate.Config{})
	pod, err := tpl.Build(t.Context(), podtemplate.TaskSpec{
		Key:      testKey,
		Image:    "python:3.14",
		Command:  []string{"python", "-c"},
		Args:     []string{"print(1)"},
		Env:      []corev1.EnvVar{{Name: "A", Value: "1"}},
		Requests: map[corev1.ResourceName]string{corev1.ResourceCPU: "100m"},
		Limits:   map[corev1.ResourceName]string{corev1.ResourceMemory: "64Mi"},
	})
	require.NoError(t, err)

	name, err := kubexec.PodName(testKey)
	require.NoError(t, err)
	require.Equal(t, name, pod.Name)
	require.Equal(t, "default", pod.Namespace)
	require.Equal(t, metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, pod.TypeMeta)
	require.Equal(t, []string{kubexec.FinalizerResultTracking}, pod.Finalizers)
	key, err := kubexec.KeyFromObject(pod)
	require.NoError(t, err)
	require.Equal(t, testKey, key)
	require.Equal(t, "sched-1", pod.Labels[kubexec.LabelExecutor])

	c := pod.Spec.Containers[0]
	require.Equal(t, "python:3.14", c.Image)
	require.Equal(t, []string{"python", "-c"}, c.Command)
	require.Equal(t, []string{"print(1)"}, c.Args)
	require.Equal(t, []corev1.EnvVar{{Name: "A", Value: "1"}}, c.Env)
	require.Equal(t, resource.MustParse("100m"), c.Resources.Requests[corev1.ResourceCPU])
	require.Equal(t, resource.MustParse("64Mi"), c.Resources.Limits[corev1.ResourceMemory])
	require.False(t, *c.SecurityContext.AllowPrivilegeEscalation)
	require.Equal(t, corev1.RestartPolicyNever, pod.Spec.RestartPolicy)
}

func TestBuildTaskSpecOverTemplate(t *testing.T) {
	t.Parallel()
	tpl := newTemplate(t, loadTestTemplate(t), podtemplate.Config{})

	pod, err := tpl.Build(t.Context(), podtemplate.TaskSpec{Key: testKey})
	require.NoError(t, err)
	base := container(t, pod, "base")
	require.Equal(t, "registry.example.com/etl:1.4", base.Image, "an empty spec keeps the template")
	require.Nil(t, base.Command)
	require.Equal(t, "data", pod.Labels["team"])

	pod, err = tpl.Build(t.Context(), podtemplate.TaskSpec{
		Key:       testKey,
		Namespace: "team-a",
		Image:     "registry.example.com/etl:1.5",
		Command:   []string{},
		Env:       []corev1.EnvVar{{Name: "MODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}, {Name: "NEW", Value: "x"}},
		Requests:  map[corev1.ResourceName]string{corev1.ResourceCPU: "1"},
		Limits:    map[corev1.ResourceName]string{corev1.ResourceCPU: "2"},
	})
	require.NoError(t, err)
	require.Equal(t, "team-a", pod.Namespace)
	base = container(t, pod, "base")
	require.Equal(t, "registry.example.com/etl:1.5", base.Image)
	require.Equal(t, []string{}, base.Command, "a non-nil empty command replaces the template's")
	require.Equal(t, []corev1.EnvVar{
		{Name: "MODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "LOG_LEVEL", Value: "info"},
		{Name: "NEW", Value: "x"},
	}, base.Env, "env entries are replaced whole by name, new ones appended")
	require.Equal(t, corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("1"),
		corev1.ResourceMemory: resource.MustParse("256Mi"),
	}, base.Resources.Requests)
	require.Equal(t, corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("2"),
		corev1.ResourceMemory: resource.MustParse("1Gi"),
	}, base.Resources.Limits)
	require.Equal(t, "registry.example.com/log-shipper:2.0", container(t, pod, "log-shipper").Image, "the sidecar is untouched")
}

func TestBuildOverrideMerge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		override string
		check    func(t *testing.T, pod *corev1.Pod)
	}{
		{
			name:     "main container image by name",
			override: "spec:\n  containers:\n  - name: base\n    image: etl:debug\n",
			check: func(t *testing.T, pod *corev1.Pod) {
				base := container(t, pod, "base")
				require.Equal(t, "etl:debug", base.Image)
				require.Equal(t, []string{"python", "job.py"}, base.Command, "the task spec's command stays")
				require.Len(t, base.Env, 2, "env not restated stays")
				require.Len(t, base.VolumeMounts, 1)
			},
		},
		{
			name: "add a sidecar without restating the template",
			override: "spec:\n  initContainers:\n  - name: proxy\n    image: proxy:1\n    restartPolicy: Always\n" +
				"  containers:\n  - name: helper\n    image: helper:1\n",
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Len(t, pod.Spec.InitContainers, 2)
				require.Equal(t, "proxy:1", container(t, pod, "proxy").Image)
				require.Equal(t, "registry.example.com/log-shipper:2.0", container(t, pod, "log-shipper").Image)
				require.Len(t, pod.Spec.Containers, 2)
				require.Equal(t, "base", pod.Spec.Containers[0].Name, "the main container stays first")
				require.Equal(t, "registry.example.com/etl:1.4", container(t, pod, "base").Image)
				require.Equal(t, "base", pod.Annotations[podtemplate.DefaultContainerAnnotation])
			},
		},
		{
			name:     "env merged by name, explicit empty value wins",
			override: "spec:\n  containers:\n  - name: base\n    env:\n    - name: MODE\n      value: \"\"\n    - name: EXTRA\n      value: \"1\"\n",
			check: func(t *testing.T, pod *corev1.Pod) {
				require.ElementsMatch(t, []corev1.EnvVar{{Name: "MODE"}, {Name: "LOG_LEVEL", Value: "info"}, {Name: "EXTRA", Value: "1"}},
					container(t, pod, "base").Env)
			},
		},
		{
			name:     "explicit false and zero win",
			override: "spec:\n  automountServiceAccountToken: false\n  securityContext:\n    runAsNonRoot: false\n  terminationGracePeriodSeconds: 0\n",
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Equal(t, ptrTo(false), pod.Spec.AutomountServiceAccountToken)
				require.Equal(t, ptrTo(false), pod.Spec.SecurityContext.RunAsNonRoot)
				require.Equal(t, ptrTo[int64](1000), pod.Spec.SecurityContext.RunAsUser, "siblings stay")
				require.Equal(t, ptrTo[int64](0), pod.Spec.TerminationGracePeriodSeconds)
			},
		},
		{
			name:     "explicit empty string wins",
			override: "spec:\n  serviceAccountName: \"\"\n",
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Empty(t, pod.Spec.ServiceAccountName)
			},
		},
		{
			name:     "null removes",
			override: "spec:\n  securityContext: null\n",
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Nil(t, pod.Spec.SecurityContext)
			},
		},
		{
			name:     "volumes merged by name, mounts by mountPath",
			override: "spec:\n  volumes:\n  - name: data\n    emptyDir: {}\n  containers:\n  - name: base\n    volumeMounts:\n    - name: data\n      mountPath: /data\n    - name: scratch\n      mountPath: /scratch\n      readOnly: true\n",
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Len(t, pod.Spec.Volumes, 2)
				require.ElementsMatch(t, []corev1.VolumeMount{
					{Name: "scratch", MountPath: "/scratch", ReadOnly: true},
					{Name: "data", MountPath: "/data"},
				}, container(t, pod, "base").VolumeMounts)
			},
		},
		{
			name:     "delete a sidecar",
			override: "spec:\n  initContainers:\n  - name: log-shipper\n    $patch: delete\n",
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Empty(t, pod.Spec.InitContainers)
			},
		},
		{
			name:     "replace a list",
			override: "spec:\n  containers:\n  - name: base\n    env:\n    - $patch: replace\n    - name: ONLY\n      value: \"1\"\n",
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Equal(t, []corev1.EnvVar{{Name: "ONLY", Value: "1"}}, container(t, pod, "base").Env)
			},
		},
		{
			name:     "labels and annotations merge",
			override: "metadata:\n  namespace: team-a\n  labels: {cost-center: \"42\"}\n  annotations: {note: hi}\n",
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Equal(t, "team-a", pod.Namespace, "an override may repeat the task's namespace")
				require.Equal(t, "data", pod.Labels["team"])
				require.Equal(t, "42", pod.Labels["cost-center"])
				require.Equal(t, "hi", pod.Annotations["note"])
			},
		},
		{
			name: "kubexec metadata cannot be overridden",
			override: "metadata:\n  name: mine\n  generateName: x-\n  labels:\n    kubexec.io/executor: other\n    kubexec.io/done: \"true\"\n" +
				"  annotations:\n    kubexec.io/task: forged\n  finalizers: []\n",
			check: func(t *testing.T, pod *corev1.Pod) {
				name, err := kubexec.PodName(testKey)
				require.NoError(t, err)
				require.Equal(t, name, pod.Name)
				require.Empty(t, pod.GenerateName)
				require.Equal(t, "sched-1", pod.Labels[kubexec.LabelExecutor])
				require.NotContains(t, pod.Labels, kubexec.LabelDone)
				key, err := kubexec.KeyFromObject(pod)
				require.NoError(t, err)
				require.Equal(t, testKey, key)
				require.Equal(t, []string{kubexec.FinalizerResultTracking}, pod.Finalizers)
			},
		},
	}
	tpl := newTemplate(t, loadTestTemplate(t), podtemplate.Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pod, err := tpl.Build(t.Context(), podtemplate.TaskSpec{
				Key:       testKey,
				Namespace: "team-a",
				Command:   []string{"python", "job.py"},
				Override:  mustOverride(t, tt.override),
			})
			require.NoError(t, err)
			tt.check(t, pod)
		})
	}
}

// orderTemplate is a template with an init container (git-sync, which the
// override's init containers must run after), env, a port, a volume and a
// mount in its main container, and a second container.
const orderTemplate = `apiVersion: v1
kind: Pod
spec:
  volumes:
  - name: repo
    emptyDir: {}
  initContainers:
  - name: git-sync
    image: git-sync:4
    volumeMounts:
    - name: repo
      mountPath: /repo
  containers:
  - name: base
    image: etl:1
    env:
    - name: DATA_DIR
      value: /data
    - name: MODE
      value: batch
    - name: LOG_LEVEL
      value: info
    ports:
    - containerPort: 8080
    volumeMounts:
    - name: repo
      mountPath: /repo
  - name: helper
    image: helper:1
`

// An override's additions to a merged list come after the template's
// entries (Airflow's order: the template's, then the override's), and an
// override entry with a template entry's merge key changes that entry where
// it stands.
func TestBuildOverrideListOrder(t *testing.T) {
	t.Parallel()
	base, err := podtemplate.ParseTemplate("order.yaml", []byte(orderTemplate))
	require.NoError(t, err)
	tpl := newTemplate(t, base, podtemplate.Config{})
	names := func(pod *corev1.Pod, list string) []string {
		var out []string
		c := container(t, pod, "base")
		switch list {
		case "initContainers":
			for _, c := range pod.Spec.InitContainers {
				out = append(out, c.Name)
			}
		case "containers":
			for _, c := range pod.Spec.Containers {
				out = append(out, c.Name)
			}
		case "volumes":
			for _, v := range pod.Spec.Volumes {
				out = append(out, v.Name)
			}
		case "env":
			for _, e := range c.Env {
				out = append(out, e.Name+"="+e.Value)
			}
		case "volumeMounts":
			for _, m := range c.VolumeMounts {
				out = append(out, m.MountPath)
			}
		case "ports":
			for _, p := range c.Ports {
				out = append(out, fmt.Sprint(p.ContainerPort))
			}
		case "git-sync mounts":
			for _, m := range container(t, pod, "git-sync").VolumeMounts {
				out = append(out, m.MountPath)
			}
		default:
			require.FailNow(t, "unknown list "+list)
		}
		return out
	}
	tests := []struct {
		name     string
		override string
		list     string
		want     []string
	}{
		{
			name:     "an added init container runs after the template's",
			override: "spec:\n  initContainers:\n  - name: fetch-model\n    image: fetch:1\n    volumeMounts: [{name: repo, mountPath: /repo}]\n",
			list:     "initContainers",
			want:     []string{"git-sync", "fetch-model"},
		},
		{
			name: "an updated init container keeps its place, additions follow",
			override: "spec:\n  initContainers:\n  - name: fetch-model\n    image: fetch:1\n" +
				"  - name: git-sync\n    image: git-sync:5\n    volumeMounts: [{name: extra, mountPath: /extra}]\n" +
				"  volumes: [{name: extra, emptyDir: {}}]\n",
			list: "initContainers",
			want: []string{"git-sync", "fetch-model"},
		},
		{
			name: "nested lists of an updated entry keep the template's order too",
			override: "spec:\n  initContainers:\n  - name: git-sync\n    volumeMounts: [{name: extra, mountPath: /extra}]\n" +
				"  volumes: [{name: extra, emptyDir: {}}]\n",
			list: "git-sync mounts",
			want: []string{"/repo", "/extra"},
		},
		{
			name:     "an added env var follows the template's, so $(VAR) can refer to them",
			override: "spec:\n  containers:\n  - name: base\n    env:\n    - name: OUT_DIR\n      value: $(DATA_DIR)/out\n",
			list:     "env",
			want:     []string{"DATA_DIR=/data", "MODE=batch", "LOG_LEVEL=info", "OUT_DIR=$(DATA_DIR)/out"},
		},
		{
			name:     "an updated env var keeps its place",
			override: "spec:\n  containers:\n  - name: base\n    env:\n    - name: NEW\n      value: x\n    - name: MODE\n      value: stream\n",
			list:     "env",
			want:     []string{"DATA_DIR=/data", "MODE=stream", "LOG_LEVEL=info", "NEW=x"},
		},
		{
			name:     "updates listed out of order keep the template's order",
			override: "spec:\n  containers:\n  - name: base\n    env:\n    - name: LOG_LEVEL\n      value: debug\n    - name: DATA_DIR\n      value: /scratch\n",
			list:     "env",
			want:     []string{"DATA_DIR=/scratch", "MODE=batch", "LOG_LEVEL=debug"},
		},
		{
			name:     "a deleted env var is gone, the others keep their order",
			override: "spec:\n  containers:\n  - name: base\n    env:\n    - name: EXTRA\n      value: \"1\"\n    - name: MODE\n      $patch: delete\n",
			list:     "env",
			want:     []string{"DATA_DIR=/data", "LOG_LEVEL=info", "EXTRA=1"},
		},
		{
			name:     "$patch: replace keeps the override's order",
			override: "spec:\n  containers:\n  - name: base\n    env:\n    - $patch: replace\n    - name: MODE\n      value: stream\n    - name: DATA_DIR\n      value: /data\n",
			list:     "env",
			want:     []string{"MODE=stream", "DATA_DIR=/data"},
		},
		{
			name: "$setElementOrder keeps the order it sets",
			override: "spec:\n  containers:\n  - name: base\n    $setElementOrder/env: [{name: LOG_LEVEL}, {name: NEW}, {name: DATA_DIR}, {name: MODE}]\n" +
				"    env:\n    - name: NEW\n      value: x\n",
			list: "env",
			want: []string{"LOG_LEVEL=info", "NEW=x", "DATA_DIR=/data", "MODE=batch"},
		},
		{
			name:     "an added volume follows the template's",
			override: "spec:\n  volumes:\n  - name: cache\n    emptyDir: {}\n",
			list:     "volumes",
			want:     []string{"repo", "cache"},
		},
		{
			name:     "an added volume mount follows the template's",
			override: "spec:\n  volumes: [{name: cache, emptyDir: {}}]\n  containers:\n  - name: base\n    volumeMounts: [{name: cache, mountPath: /cache}]\n",
			list:     "volumeMounts",
			want:     []string{"/repo", "/cache"},
		},
		{
			name:     "an added port follows the template's",
			override: "spec:\n  containers:\n  - name: base\n    ports: [{containerPort: 9090}]\n",
			list:     "ports",
			want:     []string{"8080", "9090"},
		},
		{
			name:     "an added container follows the template's, the main container first",
			override: "spec:\n  containers:\n  - name: extra\n    image: extra:1\n  - name: helper\n    image: helper:2\n",
			list:     "containers",
			want:     []string{"base", "helper", "extra"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pod, err := tpl.Build(t.Context(), podtemplate.TaskSpec{Key: testKey, Override: mustOverride(t, tt.override)})
			require.NoError(t, err)
			require.Equal(t, tt.want, names(pod, tt.list))
		})
	}
}

// Putting lists back in order does not round the template's integers
// through float64.
func TestBuildOverrideListOrderKeepsIntegers(t *testing.T) {
	t.Parallel()
	base := loadTestTemplate(t)
	base.Spec.ActiveDeadlineSeconds = ptrTo[int64](9007199254740993) // 2^53 + 1
	tpl := newTemplate(t, base, podtemplate.Config{})
	pod, err := tpl.Build(t.Context(), podtemplate.TaskSpec{Key: testKey, Override: mustOverride(t,
		"spec:\n  initContainers:\n  - name: fetch\n    image: fetch:1\n")})
	require.NoError(t, err)
	require.Equal(t, []string{"log-shipper", "fetch"}, []string{pod.Spec.InitContainers[0].Name, pod.Spec.InitContainers[1].Name})
	require.Equal(t, ptrTo[int64](9007199254740993), pod.Spec.ActiveDeadlineSeconds)
}

func TestOverrideFromPod(t *testing.T) {
	t.Parallel()
	o, err := podtemplate.OverrideFromPod(&corev1.Pod{Spec: corev1.PodSpec{
		NodeSelector: map[string]string{"disk": "ssd"},
		Containers:   []corev1.Container{{Name: "base", Image: "etl:typed"}},
	}})
	require.NoError(t, err)
	require.False(t, o.IsZero())
	tpl := newTemplate(t, loadTestTemplate(t), podtemplate.Config{})
	pod, err := tpl.Build(t.Context(), podtemplate.TaskSpec{Key: testKey, Override: o})
	require.NoError(t, err)
	require.Equal(t, "etl:typed", container(t, pod, "base").Image)
	require.Len(t, container(t, pod, "base").Env, 2)
	require.Equal(t, map[string]string{"disk": "ssd"}, pod.Spec.NodeSelector)

	// A pod that sets only annotations leaves the template's containers
	// alone (unset typed fields must not become "remove").
	o, err = podtemplate.OverrideFromPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Annotations: map[string]string{"team": "a"},
	}})
	require.NoError(t, err)
	pod, err = tpl.Build(t.Context(), podtemplate.TaskSpec{Key: testKey, Override: o})
	require.NoError(t, err)
	require.Equal(t, "a", pod.Annotations["team"])
	require.NotEmpty(t, container(t, pod, "base").Image)

	o, err = podtemplate.OverrideFromPod(nil)
	require.NoError(t, err)
	require.True(t, o.IsZero())
}

func TestBuildMiddleware(t *testing.T) {
	t.Parallel()
	var seen kubexec.TaskKey
	addToleration := func(_ context.Context, pod *corev1.Pod) error {
		key, err := kubexec.KeyFromObject(pod)
		if err != nil {
			return err
		}
		seen = key
		pod.Spec.Tolerations = append(pod.Spec.Tolerations, corev1.Toleration{Key: "batch", Operator: corev1.TolerationOpExists})
		pod.Spec.Containers[0].Image = "from-middleware"
		return nil
	}
	tamper := func(_ context.Context, pod *corev1.Pod) error {
		pod.Name = "renamed"
		pod.Labels[kubexec.LabelExecutor] = "other"
		pod.Annotations[kubexec.AnnotationAttempt] = "9"
		pod.Finalizers = nil
		return nil
	}
	tpl := newTemplate(t, podtemplate.DefaultTemplate(), podtemplate.Config{
		Middleware: []podtemplate.Middleware{addToleration, tamper},
	})
	pod, err := tpl.Build(t.Context(), podtemplate.TaskSpec{
		Key: testKey, Image: "busybox",
		Override: mustOverride(t, "spec:\n  containers:\n  - name: base\n    image: from-override\n"),
	})
	require.NoError(t, err)
	require.Equal(t, testKey, seen, "middleware sees the key")
	require.Equal(t, "from-middleware", pod.Spec.Containers[0].Image, "middleware wins over the override")
	require.Len(t, pod.Spec.Tolerations, 1)
	name, err := kubexec.PodName(testKey)
	require.NoError(t, err)
	require.Equal(t, name, pod.Name, "kubexec metadata wins over middleware")
	require.Equal(t, "sched-1", pod.Labels[kubexec.LabelExecutor])
	key, err := kubexec.KeyFromObject(pod)
	require.NoError(t, err)
	require.Equal(t, testKey, key)
	require.Equal(t, []string{kubexec.FinalizerResultTracking}, pod.Finalizers)

	boom := errors.New("quota service says no")
	failing := newTemplate(t, podtemplate.DefaultTemplate(), podtemplate.Config{
		Middleware: []podtemplate.Middleware{addToleration, func(context.Context, *corev1.Pod) error { return boom }},
	})
	_, err = failing.Build(t.Context(), podtemplate.TaskSpec{Key: testKey, Image: "busybox"})
	require.ErrorIs(t, err, podtemplate.ErrMiddleware)
	require.ErrorIs(t, err, boom)
	var me *podtemplate.MiddlewareError
	require.ErrorAs(t, err, &me)
	require.Equal(t, 1, me.Index)
	require.EqualError(t, err, "podtemplate: middleware 1: quota service says no")
}

func TestBuildContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancelling := func(context.Context, *corev1.Pod) error { cancel(); return nil }
	never := func(context.Context, *corev1.Pod) error { panic("must not run after cancel") }
	tpl := newTemplate(t, podtemplate.DefaultTemplate(), podtemplate.Config{
		Middleware: []podtemplate.Middleware{cancelling, never},
	})
	_, err := tpl.Build(ctx, podtemplate.TaskSpec{Key: testKey, Image: "busybox"})
	require.ErrorIs(t, err, context.Canceled)
	_, err = tpl.Build(ctx, podtemplate.TaskSpec{Key: testKey, Image: "busybox"})
	require.ErrorIs(t, err, context.Canceled)
}

func TestBuildInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		spec     podtemplate.TaskSpec
		override string
		// field and detail of one of the reported problems
		field, detail string
	}{
		{name: "no image", field: "spec.containers[0].image", detail: "set TaskSpec.Image"},
		{name: "bad request quantity", spec: podtemplate.TaskSpec{Requests: map[corev1.ResourceName]string{"cpu": "two"}},
			field: "TaskSpec.Requests[cpu]", detail: "write it like 500m"},
		{name: "bad limit quantity", spec: podtemplate.TaskSpec{Limits: map[corev1.ResourceName]string{"memory": "1GB"}},
			field: "TaskSpec.Limits[memory]", detail: "not a resource quantity"},
		{name: "env without name", spec: podtemplate.TaskSpec{Env: []corev1.EnvVar{{Value: "x"}}},
			field: "TaskSpec.Env[0].Name", detail: "give every variable a name"},
		{name: "request above limit", spec: podtemplate.TaskSpec{
			Requests: map[corev1.ResourceName]string{"memory": "2Gi"}, Limits: map[corev1.ResourceName]string{"memory": "1Gi"}},
			field: "spec.containers[0].resources.requests[memory]", detail: "must be less than or equal to the limit 1Gi"},
		{name: "negative quantity", spec: podtemplate.TaskSpec{Requests: map[corev1.ResourceName]string{"cpu": "-1"}},
			field: "spec.containers[0].resources.requests[cpu]", detail: "must not be negative"},
		{name: "invalid resource name", spec: podtemplate.TaskSpec{Requests: map[corev1.ResourceName]string{"gpus please": "1"}},
			field: "spec.containers[0].resources.requests[gpus please]", detail: "not a resource name"},
		{name: "invalid namespace", spec: podtemplate.TaskSpec{Namespace: "Team_A"},
			field: "metadata.namespace", detail: "set a valid namespace"},
		{name: "duplicate container names", override: "spec:\n  initContainers:\n  - name: base\n    image: x\n",
			field: "spec.containers[0].name", detail: "spec.initContainers[0] has this name too"},
		{name: "invalid container name", override: "spec:\n  containers:\n  - name: Side_Car\n    image: x\n",
			field: "spec.containers[1].name", detail: "RFC 1123"},
		{name: "sidecar without image", override: "spec:\n  containers:\n  - name: sidecar\n",
			field: "spec.containers[1].image", detail: "set the container's image"},
		{name: "main container deleted", override: "spec:\n  containers:\n  - name: base\n    $patch: delete\n  - name: other\n    image: x\n",
			field: "spec.containers", detail: `no container named "base"`},
		{name: "invalid label value", override: "metadata:\n  labels: {owner: \"Jane Doe\"}\n",
			field: "metadata.labels[owner]", detail: "kubexec.SafeLabelValue"},
		{name: "invalid label key", override: "metadata:\n  labels: {\"bad key\": x}\n",
			field: "metadata.labels[bad key]", detail: "name part must consist of"},
		{name: "mount without volume", override: "spec:\n  containers:\n  - name: base\n    volumeMounts: [{name: data, mountPath: /data}]\n",
			field: "spec.containers[0].volumeMounts[0].name", detail: "no volume of this name"},
		{name: "duplicate volume", override: "spec:\n  volumes:\n  - name: a\n    emptyDir: {}\n  - $patch: replace\n  - name: a\n    emptyDir: {}\n  - name: a\n    configMap: {name: c}\n",
			field: "spec.volumes[1].name", detail: "give each volume a unique name"},
		{name: "restart policy", override: "spec:\n  restartPolicy: OnFailure\n",
			field: "spec.restartPolicy", detail: "use Never"},
		{name: "deadline", override: "spec:\n  activeDeadlineSeconds: 0\n",
			field: "spec.activeDeadlineSeconds", detail: "must be greater than 0"},
		{name: "ephemeral containers", override: "spec:\n  ephemeralContainers:\n  - name: debug\n    image: x\n",
			field: "spec.ephemeralContainers", detail: "cannot be set when creating a pod"},
		{name: "server fields", override: "metadata:\n  resourceVersion: \"5\"\n",
			field: "metadata", detail: "set by the server"},
		{name: "privileged without privilege escalation", override: "spec:\n  containers:\n  - name: base\n    securityContext: {privileged: true}\n",
			field: "spec.containers[0].securityContext.privileged", detail: "set allowPrivilegeEscalation to true (or null) too"},
		{name: "CAP_SYS_ADMIN without privilege escalation", override: "spec:\n  containers:\n  - name: base\n    securityContext: {capabilities: {add: [CAP_SYS_ADMIN]}}\n",
			field: "spec.containers[0].securityContext.capabilities.add", detail: "drop the capability"},
		{name: "invalid env name", override: "spec:\n  containers:\n  - name: base\n    env: [{name: \"A=B\", value: x}]\n",
			field: "spec.containers[0].env[0].name", detail: "other than '='"},
	}
	tpl := newTemplate(t, podtemplate.DefaultTemplate(), podtemplate.Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spec := tt.spec
			spec.Key = testKey
			if spec.Image == "" && tt.name != "no image" {
				spec.Image = "busybox"
			}
			if tt.override != "" {
				spec.Override = mustOverride(t, tt.override)
			}
			_, err := tpl.Build(t.Context(), spec)
			require.ErrorIs(t, err, podtemplate.ErrInvalidPod)
			var ve *podtemplate.ValidationError
			require.ErrorAs(t, err, &ve)
			require.Equal(t, testKey, ve.Key)
			var found bool
			for _, fe := range ve.Errs {
				if fe.Field == tt.field {
					require.Contains(t, fe.Error(), tt.detail)
					found = true
				}
			}
			require.True(t, found, "no problem reported for %s in %v", tt.field, err)
			require.Contains(t, err.Error(), tt.detail)
		})
	}

	_, err := tpl.Build(t.Context(), podtemplate.TaskSpec{Key: kubexec.TaskKey{TaskID: "t"}, Image: "busybox"})
	require.ErrorIs(t, err, kubexec.ErrInvalidKey)
}

func TestBuildAnnotationsTooLarge(t *testing.T) {
	t.Parallel()
	key := testKey
	key.RunID = string(make([]byte, 300*1024))
	tpl := newTemplate(t, podtemplate.DefaultTemplate(), podtemplate.Config{})
	_, err := tpl.Build(t.Context(), podtemplate.TaskSpec{Key: key, Image: "busybox"})
	var ve *podtemplate.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "metadata.annotations", ve.Errs[0].Field)
	require.Contains(t, err.Error(), "shorten the task's ids")
}

func TestBuilderFunc(t *testing.T) {
	t.Parallel()
	want := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}
	var b podtemplate.Builder = podtemplate.BuilderFunc(func(_ context.Context, spec podtemplate.TaskSpec) (*corev1.Pod, error) {
		require.Equal(t, testKey, spec.Key)
		return want, nil
	})
	got, err := b.Build(t.Context(), podtemplate.TaskSpec{Key: testKey})
	require.NoError(t, err)
	require.Same(t, want, got)
}

func ptrTo[T any](v T) *T { return &v }
