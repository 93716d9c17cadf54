package main

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/kubexec/kubexec/executor"
)

// serviceAccountKubeconfig makes a ServiceAccount in ns bound to role (and
// allowed to read namespaces, which the scheduler does to identify the
// cluster) and writes a kubeconfig that authenticates as it.
func serviceAccountKubeconfig(t *testing.T, ns string, role *rbacv1.Role) string {
	t.Helper()
	ctx := t.Context()
	client := devCluster.Client()
	sa := devCluster.ServiceAccountConfig(t, ns, "scheduler", role)
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "scheduler", Namespace: ns}}
	readNS := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "read-namespaces-" + ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get"}}},
	}
	_, err := client.RbacV1().ClusterRoles().Create(ctx, readNS, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: readNS.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: readNS.Name},
		Subjects:   subject,
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = client.RbacV1().ClusterRoleBindings().Delete(context.Background(), readNS.Name, metav1.DeleteOptions{})
		_ = client.RbacV1().ClusterRoles().Delete(context.Background(), readNS.Name, metav1.DeleteOptions{})
	})
	return writeKubeconfig(t, &clientcmdapi.Cluster{Server: sa.Host, CertificateAuthorityData: sa.CAData}, sa.BearerToken, ns)
}

// writeKubeconfig writes a kubeconfig for cluster that authenticates
// with token, in namespace ns, and returns its path.
func writeKubeconfig(t *testing.T, cluster *clientcmdapi.Cluster, token, ns string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["dev"] = cluster
	cfg.AuthInfos["scheduler"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["scheduler"] = &clientcmdapi.Context{Cluster: "dev", AuthInfo: "scheduler", Namespace: ns}
	cfg.CurrentContext = "scheduler"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*cfg, path))
	return path
}

// TestExplainPermissionError: a run whose executor cannot start for want
// of permissions leaves its root task waiting; explain of that task does
// not crash, and names what the executor's identity lacks (the same
// permissions Start checks, pods/exec and Leases included) and the fix.
func TestExplainPermissionError(t *testing.T) {
	devCluster.Need(t)
	e := newEnv(t, "explain-rbac")
	ctx := t.Context()
	var role, leases rbacv1.Role
	require.NoError(t, yaml.UnmarshalStrict(executor.RoleYAML, &role))
	require.NoError(t, yaml.UnmarshalStrict(executor.LeaseRoleYAML, &leases))
	var rules []rbacv1.PolicyRule
	for _, r := range append(role.Rules, leases.Rules...) {
		switch {
		case len(r.Resources) == 1 && r.Resources[0] == "pods/exec":
			continue // no XCom rights
		case len(r.Resources) == 1 && r.Resources[0] == "pods":
			r.Verbs = []string{"get", "list", "watch", "patch"} // no create, no delete
		}
		rules = append(rules, r)
	}
	role.Rules = rules
	kubeconfig := serviceAccountKubeconfig(t, e.ns, &role)
	wf := e.writeWorkflow(`workflow: rbac
defaults: {image: busybox:1.36}
tasks:
- id: root
  command: [sh, -c, "true"]
- id: after
  dependsOn: [root]
  command: [sh, -c, "true"]
`)
	args := func(a ...string) []string {
		return append([]string{"--kubeconfig", kubeconfig, "--namespace", e.ns, "--db", e.db}, a...)
	}
	var out, errb strings.Builder
	code := Main(ctx, args("run", wf), &out, &errb)
	t.Logf("run: exit %d\n%s%s", code, out.String(), errb.String())
	require.Equal(t, exitFailed, code)
	require.Contains(t, errb.String(), "lacks")

	for _, task := range []string{"root", "after"} {
		out.Reset()
		errb.Reset()
		code = Main(ctx, args("explain", task), &out, &errb)
		t.Logf("explain %s: exit %d\n%s%s", task, code, out.String(), errb.String())
		require.Equal(t, exitOK, code)
		require.Contains(t, out.String(), `create pods in namespace "`+e.ns+`"`)
		require.Contains(t, out.String(), `delete pods in namespace "`+e.ns+`"`)
		require.Contains(t, out.String(), `create pods/exec in namespace "`+e.ns+`"`)
		require.Contains(t, out.String(), "Grant the scheduler's identity the Roles in kubexec's executor/rbac.yaml (pods) and executor/rbac-lease.yaml")
		require.NotContains(t, out.String(), "leases in", "the shipped Lease Role is granted")
		require.NotContains(t, out.String(), "secrets in", "the shipped Lease Role is granted")
		todo := out.String()[strings.Index(out.String(), "What to do:"):]
		require.True(t, strings.HasPrefix(todo, "What to do:\n  - Grant the scheduler's identity"), "the missing permissions come first:\n%s", todo)
		if task == "root" {
			docExample(t, "explain-rbac.txt", e.normalize(out.String()), explainShape)
		}
	}

	// An API server that cannot be reached: explain says what it knows
	// from the database, then which address it could not reach.
	unreachable := writeKubeconfig(t, &clientcmdapi.Cluster{Server: "https://127.0.0.1:1", InsecureSkipTLSVerify: true}, "none", e.ns)
	out.Reset()
	errb.Reset()
	code = Main(ctx, []string{"--kubeconfig", unreachable, "--db", e.db, "explain", "root"}, &out, &errb)
	t.Logf("explain root, unreachable: exit %d\n%s%s", code, out.String(), errb.String())
	require.Equal(t, exitFailed, code)
	require.Contains(t, out.String(), "Task root of run rbac-1 (workflow rbac): waiting")
	require.Contains(t, errb.String(), "scheduler explain: cannot reach the cluster at https://127.0.0.1:1: ")
	require.Contains(t, errb.String(), "connection refused")
	docExample(t, "explain-unreachable.txt", e.normalize(out.String()+errb.String()), func(s string) string {
		return strings.Split(s, "\n")[0] + "\n" + s[strings.Index(s, "scheduler explain:"):strings.Index(s, "https://127.0.0.1:1:")]
	})
}

// TestExplainQuotaWithNoRoom: an attempt held back by a ResourceQuota with
// no room is explained by that quota, with what the pod needs; once a pod
// exists (it passed the quota), the quota is shown but not blamed.
func TestExplainQuotaWithNoRoom(t *testing.T) {
	devCluster.Need(t)
	e := newEnv(t, "explain-quota")
	ctx := t.Context()
	devCluster.NewQuota(t, e.ns, "cpu", corev1.ResourceList{corev1.ResourceRequestsCPU: resource.MustParse("1")})
	// used 0 < hard 1: only what the task asks for (2) makes it full.
	wf := e.writeWorkflow(`workflow: quota
defaults: {image: busybox:1.36}
tasks:
- id: big
  command: [sh, -c, "true"]
  resources: {requests: {cpu: "2"}}
`)
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.main(runCtx, "run", wf)
	}()
	defer func() { cancel(); wg.Wait() }()

	// Wait until the run has recorded its attempt (the executor keeps it
	// queued while the quota refuses it).
	var out string
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, out, _ = e.main(ctx, "explain", "big")
		return strings.Contains(out, "has no room"), nil
	}), "explain never blamed the quota:\n%s", out)
	require.Contains(t, out, "ResourceQuota cpu has no room for the task's pod: requests.cpu is 0 of 1 and the pod needs 2")
	require.Contains(t, out, "permissions: this identity may do all the executor needs")
}
