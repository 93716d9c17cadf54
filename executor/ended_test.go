package executor

import (
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubexec/kubexec"
)

func TestEndedAnnotationRoundTrip(t *testing.T) {
	t.Parallel()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{}}}
	_, ok := endedFromObject(p)
	require.False(t, ok)
	e := ended{Reason: kubexec.ReasonRevoked, Message: `the host "revoked" it`}
	p.Annotations[kubexec.AnnotationEnded] = e.annotation()
	got, ok := endedFromObject(p)
	require.True(t, ok)
	require.Equal(t, e, got)
	for _, bad := range []string{"", "{", `{"reason":"NoSuchReason"}`} {
		p.Annotations[kubexec.AnnotationEnded] = bad
		_, ok := endedFromObject(p)
		require.False(t, ok, "%q", bad)
	}
}
