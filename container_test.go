package kubexec

import (
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMainContainer(t *testing.T) {
	t.Parallel()
	pod := func(annotation string, names ...string) *corev1.Pod {
		p := &corev1.Pod{}
		if annotation != "" {
			p.ObjectMeta = metav1.ObjectMeta{Annotations: map[string]string{AnnotationDefaultContainer: annotation}}
		}
		for _, n := range names {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n})
		}
		return p
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want int
	}{
		{"nil pod", nil, -1},
		{"no container", pod("base"), -1},
		{"the first without the annotation", pod("", "base", "proxy"), 0},
		{"the annotated one", pod("base", "proxy", "base"), 1},
		{"the first when the annotation names no container", pod("gone", "base", "proxy"), 0},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, MainContainer(tt.pod), tt.name)
	}
}
