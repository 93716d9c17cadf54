package podtemplate_test

import (
	"context"
	"fmt"
	"log"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/podtemplate"
)

// Build a pod from a template file, a task spec and a per-task override.
// The override changes the main container's image and one env variable by
// name, deletes the template's sidecar and adds a node selector; everything
// else comes from the template. Labels, annotations, name and finalizer come
// from kubexec last.
func Example() {
	base, err := podtemplate.LoadTemplate(filepath.Join("testdata", "template.yaml"))
	if err != nil {
		panic(err)
	}
	tpl, err := podtemplate.New(base, podtemplate.Config{ExecutorID: "scheduler-a"})
	if err != nil {
		panic(err)
	}
	override, err := podtemplate.ParseOverride("load_users override", []byte(`
spec:
  nodeSelector:
    disk: ssd
  initContainers:
  - name: log-shipper
    $patch: delete
  containers:
  - name: base
    image: registry.example.com/etl:1.5-debug
    env:
    - name: LOG_LEVEL
      value: debug
`))
	if err != nil {
		panic(err)
	}
	pod, err := tpl.Build(context.Background(), podtemplate.TaskSpec{
		Key:       kubexec.TaskKey{WorkflowID: "etl", TaskID: "load_users", RunID: "manual__2026-05-01", MapIndex: kubexec.NotMapped, Attempt: 1},
		Namespace: "data",
		Command:   []string{"python", "-m", "etl.load_users"},
		Limits:    map[corev1.ResourceName]string{corev1.ResourceMemory: "2Gi"},
		Override:  override,
	})
	if err != nil {
		panic(err)
	}
	main := pod.Spec.Containers[0]
	fmt.Println("pod:", pod.Namespace+"/"+pod.Name)
	fmt.Println("image:", main.Image)
	fmt.Println("command:", main.Command)
	for _, e := range main.Env {
		fmt.Printf("env: %s=%s\n", e.Name, e.Value)
	}
	fmt.Println("memory limit:", main.Resources.Limits.Memory())
	fmt.Println("init containers:", len(pod.Spec.InitContainers))
	fmt.Println("node selector:", pod.Spec.NodeSelector)
	fmt.Println("team label:", pod.Labels["team"])
	fmt.Println("executor label:", pod.Labels[kubexec.LabelExecutor])
	key, err := kubexec.KeyFromObject(pod)
	if err != nil {
		panic(err)
	}
	fmt.Println("key:", key)
	// Output:
	// pod: data/etl-load-users-fonzhxlxe3dw-1
	// image: registry.example.com/etl:1.5-debug
	// command: [python -m etl.load_users]
	// env: MODE=batch
	// env: LOG_LEVEL=debug
	// memory limit: 2Gi
	// init containers: 0
	// node selector: map[disk:ssd]
	// team label: data
	// executor label: scheduler-a
	// key: workflow=etl task=load_users run=manual__2026-05-01 attempt=1
}

// A middleware adds what every pod of this host needs, here a priority
// class chosen from the task's key.
func ExampleMiddleware() {
	priority := func(_ context.Context, pod *corev1.Pod) error {
		key, err := kubexec.KeyFromObject(pod)
		if err != nil {
			return err
		}
		if key.WorkflowID == "billing" {
			pod.Spec.PriorityClassName = "high"
		}
		return nil
	}
	tpl, err := podtemplate.New(podtemplate.DefaultTemplate(), podtemplate.Config{
		ExecutorID: "scheduler-a",
		Middleware: []podtemplate.Middleware{priority},
	})
	if err != nil {
		panic(err)
	}
	pod, err := tpl.Build(context.Background(), podtemplate.TaskSpec{
		Key:   kubexec.TaskKey{WorkflowID: "billing", TaskID: "invoice", RunID: "r7", MapIndex: 3, Attempt: 2},
		Image: "registry.example.com/billing:3",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(pod.Spec.PriorityClassName)
	// Output: high
}

// Build errors say what to fix.
func ExampleValidationError() {
	tpl, err := podtemplate.New(podtemplate.DefaultTemplate(), podtemplate.Config{ExecutorID: "scheduler-a"})
	if err != nil {
		panic(err)
	}
	_, err = tpl.Build(context.Background(), podtemplate.TaskSpec{
		Key:      kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "r1", MapIndex: kubexec.NotMapped, Attempt: 1},
		Requests: map[corev1.ResourceName]string{corev1.ResourceMemory: "1GB"},
	})
	fmt.Println(err)
	// Output: podtemplate: invalid pod for task workflow=etl task=load run=r1 attempt=1: TaskSpec.Requests[memory]: Invalid value: "1GB": not a resource quantity: write it like 500m, 2, 128Mi or 1Gi
}

// An override's additions to a list come after the template's entries, as
// in Apache Airflow: its init container runs after the template's git-sync,
// and its env var can refer to the template's with $(VAR). An entry with a
// template entry's name (MODE) is changed where it stands.
func Example_mergeOrder() {
	base, err := podtemplate.ParseTemplate("template.yaml", []byte(`
apiVersion: v1
kind: Pod
spec:
  initContainers:
  - name: git-sync
    image: registry.k8s.io/git-sync/git-sync:v4.4.0
  containers:
  - name: base
    image: etl:1.4
    env:
    - {name: DATA_DIR, value: /data}
    - {name: MODE, value: batch}
`))
	if err != nil {
		panic(err)
	}
	tpl, err := podtemplate.New(base, podtemplate.Config{ExecutorID: "scheduler-a"})
	if err != nil {
		panic(err)
	}
	override, err := podtemplate.ParseOverride("train override", []byte(`
spec:
  initContainers:
  - name: fetch-model
    image: fetch:1
  containers:
  - name: base
    env:
    - {name: OUT_DIR, value: $(DATA_DIR)/out}
    - {name: MODE, value: stream}
`))
	if err != nil {
		panic(err)
	}
	pod, err := tpl.Build(context.Background(), podtemplate.TaskSpec{
		Key:      kubexec.TaskKey{WorkflowID: "ml", TaskID: "train", MapIndex: kubexec.NotMapped, Attempt: 1},
		Override: override,
	})
	if err != nil {
		panic(err)
	}
	for _, c := range pod.Spec.InitContainers {
		fmt.Println("init container:", c.Name)
	}
	for _, e := range pod.Spec.Containers[0].Env {
		fmt.Printf("env: %s=%s\n", e.Name, e.Value)
	}
	// Output:
	// init container: git-sync
	// init container: fetch-model
	// env: DATA_DIR=/data
	// env: MODE=stream
	// env: OUT_DIR=$(DATA_DIR)/out
}

// The policy step refuses a pod whose per-task override asks for more than
// a task should get, naming each field and rule; an operator widens the
// policy deliberately, field by field.
func ExamplePolicy() {
	tmpl, err := podtemplate.New(podtemplate.DefaultTemplate(), podtemplate.Config{ExecutorID: "scheduler-0", Namespace: "etl"})
	if err != nil {
		log.Fatal(err)
	}
	override, err := podtemplate.ParseOverride("load.yaml", []byte(`
spec:
  serviceAccountName: deployer
  hostNetwork: true
`))
	if err != nil {
		log.Fatal(err)
	}
	pod, err := tmpl.Build(context.Background(), podtemplate.TaskSpec{
		Key:      kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "r1", MapIndex: kubexec.NotMapped, Attempt: 1},
		Image:    "registry.example.com/etl:1.4",
		Override: override,
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, v := range (podtemplate.Policy{}).Check(pod) {
		fmt.Println(v.Field, v.Rule)
	}
	widened := podtemplate.Policy{
		Level:           podtemplate.LevelPrivileged,
		ServiceAccounts: []string{"default", "deployer"},
	}
	fmt.Println(len(widened.Check(pod)), "violations once widened")
	// Output:
	// spec.serviceAccountName serviceAccount
	// spec.hostNetwork baseline/hostNamespaces
	// 0 violations once widened
}

// A task's script and its configuration travel in TaskSpec.Files, with no
// image to build and no ConfigMap to create: each file is carried in an
// annotation of the pod and mounted at its path from a downwardAPI volume.
// The script runs as user 1000 (DefaultTemplate refuses root), in /tmp,
// for at most ten minutes.
func ExampleFile() {
	tpl, err := podtemplate.New(podtemplate.DefaultTemplate(), podtemplate.Config{ExecutorID: "scheduler-a"})
	if err != nil {
		panic(err)
	}
	pod, err := tpl.Build(context.Background(), podtemplate.TaskSpec{
		Key:     kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "r1", MapIndex: kubexec.NotMapped, Attempt: 1},
		Image:   "busybox:1.37",
		Command: []string{"/opt/task/run.sh"},
		Files: []podtemplate.File{
			{Path: "/opt/task/run.sh", Mode: 0o755, Content: "#!/bin/sh\nset -eu\necho \"loading $(cat /etc/task/table)\"\n"},
			{Path: "/etc/task/table", Content: "users"},
		},
		WorkingDir:     "/tmp",
		RunAsUser:      new(int64(1000)),
		ActiveDeadline: 10 * time.Minute,
	})
	if err != nil {
		panic(err)
	}
	main := pod.Spec.Containers[0]
	for _, m := range main.VolumeMounts {
		fmt.Printf("mount %s: volume %s, item %s\n", m.MountPath, m.Name, m.SubPath)
	}
	for _, item := range pod.Spec.Volumes[0].DownwardAPI.Items {
		fmt.Printf("item %s: %s, mode %#o\n", item.Path, item.FieldRef.FieldPath, *item.Mode)
	}
	fmt.Printf("annotation: %q\n", pod.Annotations["files.kubexec.io/1"])
	fmt.Println("working dir:", main.WorkingDir)
	fmt.Println("user:", *main.SecurityContext.RunAsUser)
	fmt.Println("deadline:", *pod.Spec.ActiveDeadlineSeconds)
	// Output:
	// mount /opt/task/run.sh: volume kubexec-files, item 0
	// mount /etc/task/table: volume kubexec-files, item 1
	// item 0: metadata.annotations['files.kubexec.io/0'], mode 0755
	// item 1: metadata.annotations['files.kubexec.io/1'], mode 0644
	// annotation: "users"
	// working dir: /tmp
	// user: 1000
	// deadline: 600
}
