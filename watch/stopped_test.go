package watch

import (
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestStopped(t *testing.T) {
	t.Parallel()
	now := metav1.Now()
	pod := func(phase corev1.PodPhase, node string, deleting bool, states ...corev1.ContainerState) *corev1.Pod {
		p := &corev1.Pod{Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: phase}}
		if deleting {
			p.DeletionTimestamp = &now
		}
		for _, s := range states {
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{State: s})
		}
		return p
	}
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	waiting := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}
	done := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 143}}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"unknown: it may exist and run", nil, false},
		{"failed", pod(corev1.PodFailed, "n", true, done), true},
		{"succeeded", pod(corev1.PodSucceeded, "n", false, done), true},
		{"being deleted, never bound: the API server refuses to bind it", pod(corev1.PodPending, "", true), true},
		{"no node, not being deleted: it may be bound any moment", pod(corev1.PodPending, "", false), false},
		{"running, not deleted", pod(corev1.PodRunning, "n", false, running), false},
		{"running and being deleted", pod(corev1.PodRunning, "n", true, running), false},
		{"being deleted, one container still running", pod(corev1.PodRunning, "n", true, done, running), false},
		{"being deleted, containers stopped, phase not yet written by the node", pod(corev1.PodRunning, "n", true, done), true},
		{"being deleted on its node, never started: the node starts none now", pod(corev1.PodPending, "n", true, waiting), true},
		{"pending, not deleted", pod(corev1.PodPending, "n", false, waiting), false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, Stopped(tt.pod), tt.name)
		if tt.pod != nil {
			ended := tt.pod.Status.Phase == corev1.PodSucceeded || tt.pod.Status.Phase == corev1.PodFailed
			require.Equal(t, ended, Ended(tt.pod), tt.name)
		}
	}
}
