package podtemplate_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubexec/kubexec/podtemplate"
)

func TestParseTemplate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		// wantField and wantMsg describe the *DecodeError; both empty
		// when the template is valid.
		wantField string
		wantMsg   string
		check     func(t *testing.T, pod *corev1.Pod)
	}{
		{
			name: "pod",
			yaml: "apiVersion: v1\nkind: Pod\nmetadata:\n  labels: {team: data}\nspec:\n  containers:\n  - name: base\n    image: busybox\n",
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Equal(t, "busybox", pod.Spec.Containers[0].Image)
				require.Equal(t, map[string]string{"team": "data"}, pod.Labels)
			},
		},
		{
			name: "pod template",
			yaml: "apiVersion: v1\nkind: PodTemplate\nmetadata: {name: ignored}\ntemplate:\n  metadata:\n    labels: {a: b}\n  spec:\n    containers: [{name: base, image: busybox}]\n",
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Equal(t, "busybox", pod.Spec.Containers[0].Image)
				require.Equal(t, map[string]string{"a": "b"}, pod.Labels)
				require.Empty(t, pod.Name)
			},
		},
		{
			name: "json",
			yaml: `{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"base"}]}}`,
		},
		{
			name: "leading separator and comments",
			yaml: "# a template\n---\napiVersion: v1\nkind: Pod\nspec:\n  containers: [{name: base}]\n---\n# trailing comment\n",
		},
		{
			name: "server fields are dropped",
			yaml: "apiVersion: v1\nkind: Pod\nmetadata:\n  name: exported\n  namespace: ns1\n  uid: \"1234\"\n  resourceVersion: \"99\"\n  creationTimestamp: \"2026-01-01T00:00:00Z\"\n" +
				"spec:\n  containers: [{name: base}]\nstatus:\n  phase: Running\n",
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Equal(t, metav1.ObjectMeta{Namespace: "ns1"}, pod.ObjectMeta)
				require.Equal(t, corev1.PodStatus{}, pod.Status)
			},
		},
		{
			name:    "unknown field",
			yaml:    "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: base\n    imagee: busybox\n",
			wantMsg: `unknown field "spec.containers[0].imagee"`,
		},
		{
			name:    "unknown field in pod template",
			yaml:    "apiVersion: v1\nkind: PodTemplate\ntemplate:\n  spec:\n    containers: [{name: base, foo: 1}]\n",
			wantMsg: `unknown field "template.spec.containers[0].foo"`,
		},
		{
			name:    "duplicate field",
			yaml:    "apiVersion: v1\nkind: Pod\nspec:\n  restartPolicy: Never\n  restartPolicy: Always\n  containers: [{name: base}]\n",
			wantMsg: `"restartPolicy" already set`,
		},
		{
			name:    "two documents",
			yaml:    "apiVersion: v1\nkind: Pod\nspec:\n  containers: [{name: base}]\n---\napiVersion: v1\nkind: Pod\nspec:\n  containers: [{name: base}]\n",
			wantMsg: "has 2 YAML documents: keep exactly one",
		},
		{name: "empty", yaml: "", wantMsg: "is empty"},
		{name: "only comments", yaml: "# nothing\n---\n", wantMsg: "is empty"},
		{name: "not a mapping", yaml: "- a\n- b\n", wantMsg: "is not a YAML mapping"},
		{name: "missing apiVersion", yaml: "kind: Pod\nspec: {containers: [{name: base}]}\n", wantField: "apiVersion", wantMsg: "set apiVersion: v1"},
		{name: "wrong apiVersion", yaml: "apiVersion: apps/v1\nkind: Pod\n", wantField: "apiVersion", wantMsg: `"apps/v1"`},
		{name: "wrong kind", yaml: "apiVersion: v1\nkind: Service\nspec: {}\n", wantField: "kind", wantMsg: `is "Service": set kind: Pod`},
		{name: "missing kind", yaml: "apiVersion: v1\nspec: {}\n", wantField: "kind", wantMsg: `is ""`},
		{name: "no containers", yaml: "apiVersion: v1\nkind: Pod\nspec: {}\n", wantField: "spec.containers", wantMsg: `add the main container, named "base"`},
		{name: "no containers in pod template", yaml: "apiVersion: v1\nkind: PodTemplate\ntemplate: {}\n", wantField: "template.spec.containers"},
		{
			name:      "bad quantity",
			yaml:      "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: base\n    resources:\n      limits: {cpu: lots}\n",
			wantField: "spec.containers[0].resources.limits.cpu",
			wantMsg:   `"lots" is not a resource quantity: write it like 500m`,
		},
		{
			name:    "wrong type",
			yaml:    "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: base\n    ports: [{containerPort: http}]\n",
			wantMsg: "containerPort",
		},
		{
			name:    "syntax error has the line",
			yaml:    "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: base\n   image: x\n",
			wantMsg: "line 5",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pod, err := podtemplate.ParseTemplate("pod.yaml", []byte(tt.yaml))
			if tt.wantField == "" && tt.wantMsg == "" {
				require.NoError(t, err)
				require.NotEmpty(t, pod.Spec.Containers)
				if tt.check != nil {
					tt.check(t, pod)
				}
				return
			}
			require.ErrorIs(t, err, podtemplate.ErrInvalidTemplate)
			var de *podtemplate.DecodeError
			require.ErrorAs(t, err, &de)
			require.Equal(t, "pod.yaml", de.Source)
			require.Equal(t, tt.wantField, de.Field)
			require.Contains(t, err.Error(), "pod.yaml")
			require.Contains(t, err.Error(), tt.wantMsg)
		})
	}
}

func TestLoadTemplate(t *testing.T) {
	t.Parallel()
	pod, err := podtemplate.LoadTemplate(filepath.Join("testdata", "template.yaml"))
	require.NoError(t, err)
	require.Equal(t, "registry.example.com/etl:1.4", pod.Spec.Containers[0].Image)
	require.Equal(t, resource.MustParse("250m"), pod.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU])

	_, err = podtemplate.LoadTemplate(filepath.Join("testdata", "missing.yaml"))
	require.ErrorContains(t, err, "missing.yaml")
}

func TestParseOverride(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		yaml      string
		wantZero  bool
		wantField string
		wantMsg   string // "" when valid
	}{
		{name: "spec fields", yaml: "spec:\n  containers:\n  - name: base\n    image: x\n"},
		{name: "with apiVersion and kind", yaml: "apiVersion: v1\nkind: Pod\nspec: {hostNetwork: false}\n"},
		{name: "explicit zero values", yaml: "spec:\n  automountServiceAccountToken: false\n  priority: 0\n  containers: [{name: base, image: \"\"}]\n"},
		{name: "null removes", yaml: "spec:\n  nodeSelector: null\n"},
		{name: "directives", yaml: "spec:\n  $setElementOrder/containers: [{name: base}]\n  containers:\n  - name: sidecar\n    $patch: delete\n  volumes:\n  - $patch: replace\n"},
		{name: "metadata", yaml: "metadata:\n  labels: {a: b}\n  annotations: {c: d}\n"},
		{name: "empty", yaml: "", wantZero: true},
		{name: "comments only", yaml: "# no override\n", wantZero: true},
		{name: "unknown field", yaml: "spec:\n  containers:\n  - name: base\n    imagee: x\n", wantMsg: `unknown field "spec.containers[0].imagee"`},
		{name: "unknown top-level field", yaml: "containers: []\n", wantMsg: `unknown field "containers"`},
		{name: "duplicate field", yaml: "spec:\n  hostNetwork: true\n  hostNetwork: false\n", wantMsg: "already set"},
		{name: "wrong kind", yaml: "kind: PodTemplate\n", wantField: "kind", wantMsg: "leave kind out or set kind: Pod"},
		{name: "wrong apiVersion", yaml: "apiVersion: v2\n", wantField: "apiVersion", wantMsg: "leave it out"},
		{name: "not a mapping", yaml: "[1, 2]\n", wantMsg: "is not a mapping"},
		{name: "null document", yaml: "null\n", wantZero: true},
		{name: "two documents", yaml: "spec: {}\n---\nspec: {}\n", wantMsg: "has 2 YAML documents"},
		{name: "bad quantity", yaml: "spec:\n  containers:\n  - name: base\n    resources: {requests: {memory: 1GB}}\n",
			wantField: "spec.containers[0].resources.requests.memory", wantMsg: `"1GB" is not a resource quantity`},
		{name: "wrong type", yaml: "spec:\n  hostNetwork: \"yes\"\n", wantMsg: "hostNetwork"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o, err := podtemplate.ParseOverride("override.yaml", []byte(tt.yaml))
			if tt.wantMsg == "" && tt.wantField == "" {
				require.NoError(t, err)
				require.Equal(t, tt.wantZero, o.IsZero())
				return
			}
			require.ErrorIs(t, err, podtemplate.ErrInvalidOverride)
			var de *podtemplate.DecodeError
			require.ErrorAs(t, err, &de)
			require.Equal(t, tt.wantField, de.Field)
			require.Contains(t, err.Error(), "override.yaml")
			require.Contains(t, err.Error(), tt.wantMsg)
		})
	}
}

func TestDefaultTemplate(t *testing.T) {
	t.Parallel()
	pod := podtemplate.DefaultTemplate()
	require.Equal(t, corev1.RestartPolicyNever, pod.Spec.RestartPolicy)
	require.False(t, *pod.Spec.AutomountServiceAccountToken)
	require.True(t, *pod.Spec.SecurityContext.RunAsNonRoot)
	require.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, pod.Spec.SecurityContext.SeccompProfile.Type)
	require.Len(t, pod.Spec.Containers, 1)
	c := pod.Spec.Containers[0]
	require.Equal(t, podtemplate.DefaultMainContainer, c.Name)
	require.False(t, *c.SecurityContext.AllowPrivilegeEscalation)
	require.Equal(t, []corev1.Capability{"ALL"}, c.SecurityContext.Capabilities.Drop)

	pod.Spec.Containers[0].Name = "changed"
	require.Equal(t, podtemplate.DefaultMainContainer, podtemplate.DefaultTemplate().Spec.Containers[0].Name, "each call returns a copy")
}
