package executor_test

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/xcom"
)

// serviceAccountConfig makes a ServiceAccount in ns bound to role and
// returns a client configuration that authenticates as it.
func serviceAccountConfig(t *testing.T, ns string, role *rbacv1.Role) *rest.Config {
	t.Helper()
	return cluster.ServiceAccountConfig(t, ns, "scheduler", role)
}

// shippedRole returns the shipped Roles of the task namespaces and of the
// Lease namespace as one, for tests that keep the Lease with the pods.
func shippedRole(t *testing.T) *rbacv1.Role {
	t.Helper()
	var role, lease rbacv1.Role
	require.NoError(t, yaml.UnmarshalStrict(executor.RoleYAML, &role))
	require.Equal(t, "Role", role.Kind)
	require.NoError(t, yaml.UnmarshalStrict(executor.LeaseRoleYAML, &lease))
	require.Equal(t, "Role", lease.Kind)
	for _, r := range role.Rules {
		require.NotContains(t, r.Resources, "leases", "Leases are granted in the Lease namespace only")
	}
	role.Rules = append(role.Rules, lease.Rules...)
	return &role
}

// TestShippedRoleIsEnough runs an attempt under a ServiceAccount bound to
// only the Role in rbac.yaml.
func TestShippedRoleIsEnough(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "rbac", nil)
	rc := serviceAccountConfig(t, ns, shippedRole(t))
	store := executor.NewMemoryStore()
	e := startExecutor(t, rc, store, testConfig(ns))
	require.NoError(t, e.Queue(shell(key("rbac", 1), "exit 0")))
	require.NoError(t, e.Queue(shell(key("rbac", 2), "exit 4")))
	drive(t, e, 2*time.Minute, "results", func() bool { return len(store.Results()) == 2 })
	got := resultsByKey(store)
	require.Equal(t, kubexec.ReasonSucceeded, got[key("rbac", 1)].Reason)
	require.Equal(t, kubexec.ReasonFailed, got[key("rbac", 2)].Reason)
	requireNoTrackedPods(t, ns)
}

// minimalRole is the shipped Role without its optional rules (pods/log
// and pods/exec), as a host that uses neither logs archiving nor XCom
// grants it.
func minimalRole(t *testing.T) *rbacv1.Role {
	t.Helper()
	role := shippedRole(t)
	var rules []rbacv1.PolicyRule
	for _, r := range role.Rules {
		if slices.Contains(r.Resources, "pods/log") || slices.Contains(r.Resources, "pods/exec") {
			continue
		}
		rules = append(rules, r)
	}
	require.Len(t, rules, 4, "the shipped Roles have one rule each for pods, the admission policy, Leases and the provenance key's Secret besides the optional ones")
	role.Rules = rules
	return role
}

// TestMinimalRoleIsEnoughWithoutXCom: an executor without XCom and without
// a log archiver runs under a Role that grants no pods/exec and no pods/log.
func TestMinimalRoleIsEnoughWithoutXCom(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "rbac-minimal", nil)
	rc := serviceAccountConfig(t, ns, minimalRole(t))
	store := executor.NewMemoryStore()
	e := startExecutor(t, rc, store, testConfig(ns))
	require.NoError(t, e.Queue(shell(key("rbac-minimal", 1), "exit 0")))
	drive(t, e, 2*time.Minute, "result", func() bool { return len(store.Results()) == 1 })
	require.Equal(t, kubexec.ReasonSucceeded, store.Results()[0].Reason)
	requireNoTrackedPods(t, ns)
}

// TestMissingPermissionReportedAtStart: Start fails with one error that
// names every permission missing for the features configured: without
// XCom, a Role lacking delete and pods/exec misses only delete; with XCom
// it misses both.
func TestMissingPermissionReportedAtStart(t *testing.T) {
	cluster.Need(t)
	ns := cluster.NewNamespace(t, "rbac-missing", nil)
	role := minimalRole(t)
	role.Rules[0].Verbs = []string{"create", "get", "list", "watch", "patch"}
	rc := serviceAccountConfig(t, ns, role)
	missing := func(cfg executor.Config) []string {
		e, err := executor.New(rc, executor.NewMemoryStore(), cfg)
		require.NoError(t, err)
		err = e.Start(t.Context())
		require.ErrorIs(t, err, executor.ErrPermission)
		require.Contains(t, err.Error(), "rbac.yaml")
		var perr *executor.PermissionError
		require.ErrorAs(t, err, &perr)
		return perr.Missing
	}
	require.ElementsMatch(t, []string{`delete pods in namespace "` + ns + `"`}, missing(testConfig(ns)))

	withXCom := testConfig(ns)
	collector, err := xcom.NewCollector(cluster.Client(), cluster.RESTConfig(), &xcom.MemoryBackend{}, xcom.Config{})
	require.NoError(t, err)
	withXCom.XCom = collector
	require.ElementsMatch(t, []string{
		`delete pods in namespace "` + ns + `"`,
		`create pods/exec in namespace "` + ns + `"`,
	}, missing(withXCom))
}
