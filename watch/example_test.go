package watch_test

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
