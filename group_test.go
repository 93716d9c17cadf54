package kubexec_test

import (
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kubexec/kubexec"
)

func TestSameDeployment(t *testing.T) {
	t.Parallel()
	pod := func(group, leaseNS string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"kubexec.io/group": "forged"}, Annotations: map[string]string{kubexec.AnnotationEnded: "forged"}}}
		require.NoError(t, kubexec.ApplyGroup(p, group, leaseNS))
		return p
	}
	tests := []struct {
		name          string
		pod           *corev1.Pod
		group, leases string
		want          bool
	}{
		{"same group and Lease namespace", pod("etl", "sys"), "etl", "sys", true},
		{"another group", pod("etl", "sys"), "ml", "sys", false},
		{"the pod has no group", pod("", "sys"), "etl", "sys", false},
		{"the adopter has no group", pod("", "sys"), "", "sys", false},
		{"another Lease namespace", pod("etl", "sys"), "etl", "default", false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, kubexec.SameDeployment(tt.pod, tt.group, tt.leases), tt.name)
	}
	p := pod("", "sys")
	require.NotContains(t, p.Labels, kubexec.LabelGroup, "a template's group label is removed")
	require.NotContains(t, p.Annotations, kubexec.AnnotationEnded, "a template cannot pre-set kubexec's outcome")
	require.ErrorIs(t, kubexec.ApplyGroup(p, "not a label!", "sys"), kubexec.ErrInvalidGroup)
}

func TestGroupSelector(t *testing.T) {
	t.Parallel()
	sel, err := kubexec.GroupSelector("etl", "me")
	require.NoError(t, err)
	base := labels.Set{kubexec.LabelManagedBy: kubexec.ManagedByValue, kubexec.LabelGroup: "etl", kubexec.LabelExecutor: "other"}
	require.True(t, sel.Matches(base))
	for name, change := range map[string]labels.Set{
		"own pod":     {kubexec.LabelExecutor: "me"},
		"other group": {kubexec.LabelGroup: "ml"},
		"done":        {kubexec.LabelDone: kubexec.DoneValue},
	} {
		l := labels.Merge(base, change)
		require.False(t, sel.Matches(l), name)
	}
	_, err = kubexec.GroupSelector("", "me")
	require.ErrorIs(t, err, kubexec.ErrInvalidGroup)
}

func TestResultValidUTF8(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"bad \xff\xfe bytes", "bad \uFFFD bytes"},
		{"cut \xe2\x82", "cut \uFFFD"},
		{"ok é ✓", "ok é ✓"},
	}
	for _, tt := range tests {
		r := kubexec.Result{Message: tt.in, Container: tt.in, Node: tt.in, XComRef: tt.in}.ValidUTF8()
		for _, s := range []string{r.Message, r.Container, r.Node, r.XComRef} {
			require.True(t, utf8.ValidString(s))
			require.Equal(t, tt.want, s)
		}
	}
}

func FuzzResultValidUTF8(f *testing.F) {
	f.Add("bad \xff bytes")
	f.Fuzz(func(t *testing.T, s string) {
		r := kubexec.Result{Message: s, PodName: s}.ValidUTF8()
		if !utf8.ValidString(r.Message) || !utf8.ValidString(r.PodName) {
			t.Fatalf("invalid UTF-8 left in %q", s)
		}
		if utf8.ValidString(s) && r.Message != s {
			t.Fatalf("valid %q changed to %q", s, r.Message)
		}
	})
}
