package watch_test

import (
	"context"
	"fmt"
	"log"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubexec/kubexec/watch"
)

// A pod whose main container was killed for exceeding its memory limit.
func ExampleClassify() {
	finished := metav1.NewTime(time.Date(2026, 3, 1, 12, 5, 0, 0, time.UTC))
	pod := &corev1.Pod{
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "base"}}},
		Status: corev1.PodStatus{
			Phase: corev1.PodFailed,
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "base",
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: 137, Reason: "OOMKilled", FinishedAt: finished,
				}},
			}},
		},
	}
	c := watch.Classify(pod, time.Now(), watch.ClassifyOptions{})
	fmt.Println(c.Phase, c.Reason, c.Retryable, c.Container, c.ExitCode)
	fmt.Println(c.Message)
	// Output:
	// terminal OOMKilled false base 137
	// container "base" was killed for exceeding its memory limit (OOMKilled, exit code 137); raise its resources.limits.memory or reduce its memory use
}

// Watch the pods of executor "scheduler-1" in two namespaces and classify
// each change.
func ExampleWatcher() {
	restConfig, err := rest.InClusterConfig()
	if err != nil {
		log.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		log.Fatal(err)
	}
	classify := func(pod *corev1.Pod) {
		c := watch.Classify(pod, time.Now(), watch.ClassifyOptions{})
		if c.Terminal() {
			fmt.Printf("%s/%s: %s: %s\n", pod.Namespace, pod.Name, c.Reason, c.Message)
		}
	}
	w, err := watch.New(client, watch.Config{ExecutorID: "scheduler-1", Namespaces: []string{"etl", "ml"}}, watch.HandlerFuncs{
		AddFunc:    classify,
		UpdateFunc: func(_, pod *corev1.Pod) { classify(pod) },
		DeleteFunc: func(pod *corev1.Pod, gone bool) {
			c := watch.ClassifyDeleted(pod, time.Now())
			fmt.Printf("%s/%s gone: %s\n", pod.Namespace, pod.Name, c.Reason)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		if err := w.WaitForSync(ctx); err == nil {
			fmt.Println("synced; pods:", len(w.List()))
		}
	}()
	_ = w.Run(ctx) // until cancel
}
