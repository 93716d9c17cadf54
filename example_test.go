package kubexec_test

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubexec/kubexec"
)

func ExamplePodName() {
	key := kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "r1", MapIndex: kubexec.NotMapped, Attempt: 1}
	name, err := kubexec.PodName(key)
	if err != nil {
		panic(err)
	}
	fmt.Println(name)
	// Output: etl-load-v5oo3kt6m5l3-1
}

func ExampleSafeLabelValue() {
	fmt.Println(kubexec.SafeLabelValue("my_dag"))
	fmt.Println(kubexec.SafeLabelValue("manual__2024-01-01T00:00:00+00:00"))
	// Output:
	// my_dag
	// manual__2024-01-01T0000000000-701821d7a
}

// The metadata that ApplyMetadata writes is how every kubexec package finds a
// pod's attempt again: the key comes back exactly from the annotations.
func ExampleApplyMetadata() {
	key := kubexec.TaskKey{WorkflowID: "reports", TaskID: "render pdf", RunID: "scheduled__2026-01-01T00:00:00+00:00", MapIndex: 4, Attempt: 2}
	pod := &corev1.Pod{}
	if err := kubexec.ApplyMetadata(pod, "scheduler-a", key); err != nil {
		panic(err)
	}
	fmt.Println("task label:", pod.Labels[kubexec.LabelTask])
	fmt.Println("run label:", pod.Labels[kubexec.LabelRun])
	fmt.Println("finalizers:", pod.Finalizers)

	decoded, err := kubexec.KeyFromObject(pod)
	if err != nil {
		panic(err)
	}
	fmt.Println("same key:", decoded == key)
	// Output:
	// task label: renderpdf-22e03e248
	// run label: scheduled__2026-01-01T0000000000-b36726f5d
	// finalizers: [kubexec.io/result-tracking]
	// same key: true
}

func ExampleActiveSelector() {
	sel, err := kubexec.ActiveSelector("scheduler-a")
	if err != nil {
		panic(err)
	}
	fmt.Println(sel.String())
	// Output: kubexec.io/done!=true,kubexec.io/executor=scheduler-a,kubexec.io/managed-by=kubexec
}

func ExampleReason() {
	r := kubexec.ReasonDisrupted
	fmt.Println(r.Retryable(), r.SystemFailure(), r.State())
	// Output: true true failed
}
