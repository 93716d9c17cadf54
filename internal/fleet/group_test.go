package fleet

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubexec/kubexec"
)

// setDeployment rewrites the adoption group and Lease namespace pods carry
// (a nil value removes the key).
func setDeployment(t *testing.T, client kubernetes.Interface, pods []*corev1.Pod, group, leaseNamespace *string) {
	t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"labels":      map[string]*string{kubexec.LabelGroup: group},
		"annotations": map[string]*string{kubexec.AnnotationLeaseNamespace: leaseNamespace},
	}})
	require.NoError(t, err)
	for _, p := range pods {
		_, err := client.CoreV1().Pods(p.Namespace).Patch(t.Context(), p.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		require.NoError(t, err)
	}
}

// TestSweeperStaysInItsDeployment: a sweeper takes over only the pods of
// dead instances of its own adoption group whose Lease lives in its Lease
// namespace. Pods of another group, of no group, or of its group with
// another Lease namespace are never touched, though their owners have no
// Lease at all; a sweeper with no group takes nothing.
func TestSweeperStaysInItsDeployment(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "sweep-group", nil)
	client := cluster.Client()
	other, elsewhere := "other-group", "elsewhere"
	mine := makePods(t, client, ns, "dead-a", "mine", 2, corev1.PodSucceeded)
	otherGroup := makePods(t, client, ns, "dead-b", "other", 2, corev1.PodSucceeded)
	setDeployment(t, client, otherGroup, &other, &ns)
	noGroup := makePods(t, client, ns, "dead-c", "none", 2, corev1.PodFailed)
	setDeployment(t, client, noGroup, nil, &ns)
	otherLeases := makePods(t, client, ns, "dead-d", "leases", 2, corev1.PodSucceeded)
	setDeployment(t, client, otherLeases, new(testGroup), &elsewhere)
	untouched := func() {
		t.Helper()
		for _, p := range otherGroup {
			require.Equal(t, "dead-b", owner(t, client, p), "pod of another group")
		}
		for _, p := range noGroup {
			require.Equal(t, "dead-c", owner(t, client, p), "pod of an instance with no group")
		}
		for _, p := range otherLeases {
			require.Equal(t, "dead-d", owner(t, client, p), "pod whose Lease lives elsewhere")
		}
	}

	// Every owner is dead: none has a Lease.
	lonely, err := NewSweeper(client, NewLeaseLiveness(client, ns), SweepConfig{ExecutorID: "no-group", Namespaces: []string{ns}, LeaseNamespace: ns})
	require.NoError(t, err)
	st, err := lonely.Sweep(ctx)
	require.NoError(t, err)
	require.Zero(t, st.Adopted, "an instance with no group adopts nothing")
	for _, p := range mine {
		require.Equal(t, "dead-a", owner(t, client, p))
	}
	untouched()

	s, err := NewSweeper(client, NewLeaseLiveness(client, ns), SweepConfig{ExecutorID: "sweeper", Group: testGroup, Namespaces: []string{ns}, LeaseNamespace: ns})
	require.NoError(t, err)
	st, err = s.Sweep(ctx)
	require.ErrorContains(t, err, `keep their Lease in namespace "elsewhere"`, "the misconfigured group is reported")
	require.Equal(t, 2, st.Adopted)
	for _, p := range mine {
		require.Equal(t, "sweeper", owner(t, client, p))
	}
	untouched()
}

func TestGroupValidated(t *testing.T) {
	cluster.Need(t)
	_, err := NewSweeper(cluster.Client(), NewLeaseLiveness(cluster.Client(), "default"), SweepConfig{ExecutorID: "x", Group: "not a label", Namespaces: []string{"default"}})
	require.ErrorIs(t, err, kubexec.ErrInvalidConfig)
	require.ErrorContains(t, err, "SweepConfig.Group")
}
