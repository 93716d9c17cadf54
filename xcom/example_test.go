package xcom_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/podtemplate"
	"github.com/kubexec/kubexec/xcom"
	corev1 "k8s.io/api/core/v1"
)

// A task's value reaches a downstream task as an environment variable and
// as an argument.
func ExamplePass() {
	ctx := context.Background()
	backend := &xcom.MemoryBackend{}
	extract := kubexec.TaskKey{WorkflowID: "etl", TaskID: "extract", MapIndex: kubexec.NotMapped, Attempt: 1}
	// What the Collector does when extract ends; ref is its Result.XComRef.
	ref, err := backend.Put(ctx, extract, json.RawMessage(`{"rows": 42}`))
	if err != nil {
		panic(err)
	}

	load := podtemplate.TaskSpec{
		Key:   kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", MapIndex: kubexec.NotMapped, Attempt: 1},
		Image: "python:3.13",
		Args:  []string{"load.py"},
	}
	if err := xcom.Pass(ctx, backend, &load, xcom.Input{Ref: ref, Env: "EXTRACT"}, xcom.Input{Ref: ref}); err != nil {
		panic(err)
	}
	fmt.Println(load.Env[0].Name, load.Env[0].Value)
	fmt.Printf("%q\n", load.Args)
	// Output:
	// EXTRACT {"rows": 42}
	// ["load.py" "{\"rows\": 42}"]
}

// A task that asks for the sidecar channel at Airflow's path gets an
// emptyDir and the sidecar that keeps the file until kubexec reads it.
func ExampleMiddleware() {
	base := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "base"}}}}
	tmpl, err := podtemplate.New(base, podtemplate.Config{
		ExecutorID: "scheduler-1",
		Middleware: []podtemplate.Middleware{xcom.Middleware(xcom.PodConfig{})},
	})
	if err != nil {
		panic(err)
	}
	override, err := podtemplate.ParseOverride("task.yaml", []byte(`
metadata:
  annotations:
    xcom.kubexec.io/channel: sidecar
    xcom.kubexec.io/path: /airflow/xcom/return.json
`))
	if err != nil {
		panic(err)
	}
	pod, err := tmpl.Build(context.Background(), podtemplate.TaskSpec{
		Key:      kubexec.TaskKey{WorkflowID: "etl", TaskID: "extract", MapIndex: kubexec.NotMapped, Attempt: 1},
		Image:    "apache/airflow-task:1",
		Override: override,
	})
	if err != nil {
		panic(err)
	}
	for _, c := range pod.Spec.Containers {
		fmt.Println(c.Name, c.VolumeMounts[0].MountPath)
	}
	fmt.Println(pod.Spec.Containers[0].Env)
	// Output:
	// base /airflow/xcom
	// kubexec-xcom /airflow/xcom
	// [{KUBEXEC_XCOM_PATH /airflow/xcom/return.json nil}]
}

// A value that is JSON is kept as it is; other text becomes a JSON string,
// unless the pod asks for JSON only (xcom.kubexec.io/format: json).
func ExampleParseValue() {
	for _, s := range []string{` {"ok": true} `, "done\n", ``} {
		v, err := xcom.ParseValue([]byte(s), 4096, xcom.FormatAuto)
		fmt.Printf("%s %v\n", v, err)
	}
	_, err := xcom.ParseValue([]byte("done\n"), 4096, xcom.FormatJSON)
	fmt.Println(err)
	v, _ := xcom.ParseValue([]byte("42"), 4096, xcom.FormatText)
	fmt.Printf("%s\n", v)
	// Output:
	// {"ok": true} <nil>
	// "done" <nil>
	//  xcom: required value missing
	// xcom: value is not JSON: invalid character 'd' looking for beginning of value (the pod asks for JSON: xcom.kubexec.io/format is "json")
	// "42"
}
