package podtemplate_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/podtemplate"
)

var fuzzSeeds = []string{
	"apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: base\n    image: busybox\n",
	"apiVersion: v1\nkind: PodTemplate\ntemplate:\n  spec:\n    containers: [{name: base}]\n",
	`{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"base","resources":{"limits":{"cpu":"1"}}}]}}`,
	"spec:\n  containers:\n  - name: base\n    image: x\n    env: [{name: A, value: \"\"}]\n",
	"spec:\n  automountServiceAccountToken: false\n  securityContext: null\n",
	"spec:\n  initContainers:\n  - name: side\n    $patch: delete\n  containers:\n  - $patch: replace\n  - name: base\n    image: y\n",
	"metadata:\n  name: x\n  labels: {kubexec.io/executor: other}\n",
	"spec:\n  $setElementOrder/containers: [{name: base}]\n  containers: [{name: base, $retainKeys: [image]}]\n",
	"spec:\n  containers:\n  - name: base\n    $deleteFromPrimitiveList/args: [a]\n",
	"spec:\n  volumes: [{name: v, emptyDir: {}}]\n  containers: [{name: base, volumeMounts: [{name: v, mountPath: /v}]}]\n",
	"a: &a [*a]\n",
	"---\n---\n",
	"spec:\n  containers:\n  - name: base\n    resources: {requests: {cpu: 1e3, memory: 1Gi}}\n",
	"spec:\n  initContainers: [{name: b, image: b}, {name: a, image: a}]\n  containers:\n  - name: base\n    env: [{name: B, value: $(A)}, {name: A}, {name: A, $patch: delete}]\n    ports: [{containerPort: 1}, {containerPort: 1, protocol: UDP}]\n",
}

func FuzzParseTemplate(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	if b, err := os.ReadFile(filepath.Join("testdata", "template.yaml")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pod, err := podtemplate.ParseTemplate("fuzz.yaml", data)
		if err != nil {
			if !errors.Is(err, podtemplate.ErrInvalidTemplate) {
				t.Fatalf("error does not wrap ErrInvalidTemplate: %v", err)
			}
			return
		}
		if len(pod.Spec.Containers) == 0 {
			t.Fatal("accepted a template without containers")
		}
		if pod.Name != "" || pod.ResourceVersion != "" || pod.UID != "" {
			t.Fatalf("kept server or name fields: %+v", pod.ObjectMeta)
		}
	})
}

// FuzzOverrideMerge checks that any override either fails with a clear
// error or yields a pod that is valid locally and still carries kubexec's
// identity.
func FuzzOverrideMerge(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	tpl, err := podtemplate.New(podtemplate.DefaultTemplate(), podtemplate.Config{ExecutorID: "fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	wantName, err := kubexec.PodName(testKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := podtemplate.ParseOverride("fuzz.yaml", data)
		if err != nil {
			if !errors.Is(err, podtemplate.ErrInvalidOverride) {
				t.Fatalf("error does not wrap ErrInvalidOverride: %v", err)
			}
			return
		}
		pod, err := tpl.Build(context.Background(), podtemplate.TaskSpec{Key: testKey, Image: "busybox", Override: o})
		if err != nil {
			if !errors.Is(err, podtemplate.ErrInvalidOverride) && !errors.Is(err, podtemplate.ErrInvalidPod) {
				t.Fatalf("unexpected build error: %v", err)
			}
			return
		}
		if pod.Name != wantName {
			t.Fatalf("name %q, want %q", pod.Name, wantName)
		}
		if msgs := validation.IsDNS1123Label(pod.Namespace); len(msgs) > 0 {
			t.Fatalf("namespace %q: %v", pod.Namespace, msgs)
		}
		for k, v := range pod.Labels {
			if msgs := append(content.IsLabelKey(k), content.IsLabelValue(v)...); len(msgs) > 0 {
				t.Fatalf("label %s=%q: %v", k, v, msgs)
			}
		}
		key, err := kubexec.KeyFromObject(pod)
		if err != nil || key != testKey {
			t.Fatalf("key %v, %v; want %v", key, err, testKey)
		}
		if pod.Labels[kubexec.LabelExecutor] != "fuzz" {
			t.Fatalf("executor label %q", pod.Labels[kubexec.LabelExecutor])
		}
		if len(pod.Spec.Containers) == 0 || pod.Spec.Containers[0].Name != podtemplate.DefaultMainContainer {
			t.Fatalf("main container is not first: %+v", pod.Spec.Containers)
		}
	})
}
