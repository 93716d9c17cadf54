// Package podtest holds the pods and helpers that the tests of the pod
// watch (internal/podwatch) and of the classification (watch) share.
package podtest

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubexec/kubexec"
)

// WaitTimeout bounds every wait on the cluster: generous, because the
// machine is shared and the API server can be slow.
const WaitTimeout = 3 * time.Minute

// NoScheduler is a scheduler name no scheduler answers to: test pods stay
// unscheduled and unchanged unless the test changes them, and are deleted
// at once.
const NoScheduler = "kubexec-test-none"

// NewPod returns a pod of executorID for the task named name.
func NewPod(t testing.TB, executorID, name string) *corev1.Pod {
	t.Helper()
	key := kubexec.TaskKey{WorkflowID: "watch-test", TaskID: name, MapIndex: kubexec.NotMapped, Attempt: 1}
	labels, annotations, err := TaskMetadata(executorID, key)
	require.NoError(t, err)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{
			SchedulerName: NoScheduler,
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name:    "base",
				Image:   "busybox:1.36",
				Command: []string{"sh", "-c", "echo hello"},
				Env:     []corev1.EnvVar{{Name: "TASK", Value: name}},
			}},
		},
	}
}

// TaskMetadata returns the labels and annotations of the pod of key.
func TaskMetadata(executorID string, key kubexec.TaskKey) (labels, annotations map[string]string, err error) {
	if labels, err = kubexec.Labels(executorID, key); err != nil {
		return nil, nil, err
	}
	annotations, err = kubexec.Annotations(key)
	return labels, annotations, err
}

// Run starts w.Run and stops it when the test ends, checking that
// Run returned nil.
func Run(t testing.TB, w interface{ Run(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(WaitTimeout):
			t.Errorf("Run did not return %s after its context ended", WaitTimeout)
		}
	})
}

// ExecutorID returns an executor id unique to the test, so that watches
// of all namespaces see only the test's pods.
func ExecutorID(t testing.TB) string {
	name := strings.ToLower(t.Name())
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, name)
	if len(name) > 40 {
		name = name[:40]
	}
	return strings.Trim(name, "-") + "-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
}

// T0 is when the test pods were created.
var T0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// At is T0 plus d.
func At(d time.Duration) metav1.Time { return metav1.NewTime(T0.Add(d)) }

// TestPod is a pod with a main container "base", a helper, a sidecar
// "proxy" (a restartable init container) and an init container "setup",
// with no status yet, changed by mutate.
func TestPod(mutate ...func(*corev1.Pod)) *corev1.Pod {
	always := corev1.ContainerRestartPolicyAlways
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1", ResourceVersion: "7", CreationTimestamp: At(0)},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			InitContainers: []corev1.Container{
				{Name: "setup", Image: "busybox"},
				{Name: "proxy", Image: "envoy", RestartPolicy: &always},
			},
			Containers: []corev1.Container{{Name: "base", Image: "python:3.12"}, {Name: "helper", Image: "busybox"}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

// RanOK adds statuses of a pod whose init container, sidecar and
// containers ran; the main container started at 1m.
func RanOK(p *corev1.Pod) {
	p.Status.InitContainerStatuses = []corev1.ContainerStatus{
		{Name: "setup", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: At(30 * time.Second), FinishedAt: At(50 * time.Second)}}},
		{Name: "proxy", Started: new(true), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: At(55 * time.Second)}}},
	}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{
		{Name: "base", Started: new(true), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: At(time.Minute)}}},
		{Name: "helper", Started: new(true), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: At(time.Minute)}}},
	}
}
