package watch_test

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubexec/kubexec/watch"
)

// An executor keeps one Observations with each attempt and classifies every
// state of its pod with it. The scheduler's clock is an hour ahead of the
// executor's, yet the pending timeout ends the attempt five minutes after
// the executor first saw the pod unschedulable, by the executor's clock.
func ExampleClassifyObserved() {
	executorClock := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) // time.Now() in a real executor
	schedulerClock := metav1.NewTime(executorClock.Add(time.Hour))
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{CreationTimestamp: schedulerClock},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "base"}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
			Message: "0/3 nodes are available: 3 Insufficient memory.", LastTransitionTime: schedulerClock,
		}}},
	}
	opts := watch.ClassifyOptions{PendingTimeout: 5 * time.Minute}
	var obs watch.Observations // kept with the attempt

	c := watch.ClassifyObserved(pod, executorClock, opts, &obs)
	fmt.Println(c.Phase, "until", c.RecheckAt.Sub(executorClock))
	// The pod does not change; the executor classifies it again at RecheckAt.
	c = watch.ClassifyObserved(pod, c.RecheckAt, opts, &obs)
	fmt.Println(c.Phase, c.Reason)
	// Output:
	// pending until 5m0s
	// terminal Unschedulable
}
