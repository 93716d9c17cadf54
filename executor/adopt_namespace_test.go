package executor_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/executor"
)

// TestAdoptLooksWhereTheGroupMakesPods: A, of B's adoption group, creates
// an attempt's pod in a namespace B does not watch. B's Adopt finds it
// there (A's Lease lists A's namespaces) and says so in its error instead
// of reporting the attempt as having no pod, which would make the host run
// it again.
func TestAdoptLooksWhereTheGroupMakesPods(t *testing.T) {
	cluster.Need(t)
	ctx := t.Context()
	shared := cluster.NewNamespace(t, "adopt-ns", nil)
	extra := cluster.NewNamespace(t, "adopt-ns-extra", nil)
	store := executor.NewMemoryStore()
	cfgA := testConfig(shared)
	cfgA.Namespaces = []string{shared, extra}
	a := startExecutor(t, cluster.RESTConfig(), store, cfgA)
	b := startExecutor(t, cluster.RESTConfig(), store, testConfig(shared))

	k := key("adopt-ns", 1)
	spec := shell(k, "sleep 3")
	spec.Namespace = extra
	require.NoError(t, a.Queue(spec))
	drive(t, a, 3*time.Minute, "A's pod exists", func() bool {
		st, _ := a.Attempt(k)
		return st.State == kubexec.StatePending || st.State == kubexec.StateRunning
	})
	noPod, err := b.Adopt(ctx, []kubexec.TaskKey{k})
	require.Empty(t, noPod, "the attempt has a pod: the host must not run it again")
	require.ErrorContains(t, err, "in a namespace this executor does not watch")
	require.ErrorContains(t, err, extra)
	drive(t, a, 3*time.Minute, "A's result", func() bool { return len(store.Results()) == 1 })
}
