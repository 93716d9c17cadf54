package podtemplate_test

import (
	"context"
	"errors"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	"metadata:\n  annotations: {files.kubexec.io/0: forged, files.kubexec.io/1: more}\n",
	"metadata:\n  annotations: {files.kubexec.io/0: null}\n",
	"spec:\n  volumes:\n  - name: kubexec-files\n    $patch: delete\n",
	"spec:\n  volumes: [{name: kubexec-files, downwardAPI: {items: [{path: \"0\", fieldRef: {fieldPath: \"metadata.annotations['note']\"}}]}}]\n",
	"spec:\n  activeDeadlineSeconds: 3\n  containers:\n  - name: base\n    workingDir: /opt/task\n    securityContext: {runAsUser: 0}\n",
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
// identity and the task spec's files.
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
		pod, err := tpl.Build(context.Background(), podtemplate.TaskSpec{Key: testKey, Image: "busybox", Override: o,
			Files: []podtemplate.File{{Path: "/opt/task/run.sh", Content: "echo genuine\n", Mode: 0o755}}})
		if err != nil {
			if !errors.Is(err, podtemplate.ErrInvalidOverride) && !errors.Is(err, podtemplate.ErrInvalidPod) && !errors.Is(err, podtemplate.ErrPolicy) {
				t.Fatalf("unexpected build error: %v", err)
			}
			return
		}
		for k, v := range pod.Annotations {
			if strings.HasPrefix(k, "files.kubexec.io/") && (k != "files.kubexec.io/0" || v != "echo genuine\n") {
				t.Fatalf("files annotation %s=%q, want only files.kubexec.io/0 with the task spec's content", k, v)
			}
		}
		if _, ok := pod.Annotations["files.kubexec.io/0"]; !ok {
			t.Fatal("the file's annotation is gone")
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

// FuzzFiles checks that any file, working directory and deadline either
// fail with a *ValidationError naming a TaskSpec field, or land in the pod
// as given: the content in its annotation, projected with its mode and
// mounted at its clean absolute path.
func FuzzFiles(f *testing.F) {
	f.Add("/opt/task/run.sh", "#!/bin/sh\necho hi\n", uint32(0o755), "/work", int64(time.Minute))
	f.Add("/etc/task.conf", "", uint32(0), "", int64(0))
	f.Add("relative", "x", uint32(0o644), "work", int64(-1))
	f.Add("/a/../b", "\xff", uint32(0o4755), "/", int64(999*time.Millisecond))
	f.Add("/work", "x", uint32(0o600), "/work/sub", int64(1500*time.Millisecond))
	f.Add("/", "x", uint32(0), "/w/", int64(time.Second))
	tpl, err := podtemplate.New(podtemplate.DefaultTemplate(), podtemplate.Config{ExecutorID: "fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, file, content string, mode uint32, workingDir string, deadline int64) {
		spec := podtemplate.TaskSpec{Key: testKey, Image: "busybox", WorkingDir: workingDir, ActiveDeadline: time.Duration(deadline),
			Files: []podtemplate.File{{Path: file, Content: content, Mode: fs.FileMode(mode)}}}
		pod, err := tpl.Build(context.Background(), spec)
		if err != nil {
			var ve *podtemplate.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("not a *ValidationError: %v", err)
			}
			for _, fe := range ve.Errs {
				if !strings.HasPrefix(fe.Field, "TaskSpec.") && fe.Field != "metadata.annotations" {
					t.Fatalf("a problem not named by its TaskSpec field: %v", fe)
				}
			}
			return
		}
		if !path.IsAbs(file) || path.Clean(file) != file || file == "/" || len(content) > podtemplate.MaxFilesBytes {
			t.Fatalf("accepted the file %q of %d bytes", file, len(content))
		}
		if pod.Annotations["files.kubexec.io/0"] != content {
			t.Fatalf("annotation %q, want %q", pod.Annotations["files.kubexec.io/0"], content)
		}
		main := pod.Spec.Containers[0]
		m := main.VolumeMounts[len(main.VolumeMounts)-1]
		if m.MountPath != file || m.SubPath != "0" || m.Name != "kubexec-files" || !m.ReadOnly {
			t.Fatalf("mount %+v", m)
		}
		want := int32(mode)
		if want == 0 {
			want = 0o644
		}
		if item := pod.Spec.Volumes[len(pod.Spec.Volumes)-1].DownwardAPI.Items[0]; *item.Mode != want {
			t.Fatalf("mode %#o, want %#o", *item.Mode, want)
		}
		if main.WorkingDir != workingDir {
			t.Fatalf("working dir %q, want %q", main.WorkingDir, workingDir)
		}
		d := time.Duration(deadline)
		switch ads := pod.Spec.ActiveDeadlineSeconds; {
		case d == 0 && ads != nil:
			t.Fatalf("deadline %d without TaskSpec.ActiveDeadline", *ads)
		case d != 0 && (ads == nil || d < time.Second || *ads > math.MaxInt32 || time.Duration(*ads-1)*time.Second >= d || time.Duration(*ads) < d/time.Second):
			t.Fatalf("deadline %v became %v", d, ads)
		}
	})
}
