package devcluster

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	//lint:ignore SA1019 client-go's remotecommand.NewFallbackExecutor takes this package's IsUpgradeFailure; k8s.io/streaming is not a dependency of the module
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
)

// Main starts one cluster for a package's tests, runs them, prints the
// components' log tails if any failed, and stops the cluster. Use it from
// TestMain:
//
//	var cluster *devcluster.Cluster
//
//	func TestMain(m *testing.M) {
//		os.Exit(devcluster.Main(m, devcluster.Options{Nodes: 1}, &cluster))
//	}
//
// With -short (the fast loop, `make test-unit`), and in a fuzzing worker,
// no cluster is started and *c stays nil: the tests that need it skip
// themselves as their first call on it (NewNamespace and the other
// methods that take a testing.TB) finds no cluster, and the others run.
func Main(m *testing.M, opts Options, c **Cluster) int {
	if !flag.Parsed() {
		flag.Parse()
	}
	if testing.Short() || fuzzWorker() {
		*c = nil
		return m.Run()
	}
	if opts.Logf == nil && testing.Verbose() {
		opts.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	}
	cl, err := Start(context.Background(), opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "devcluster: the dev cluster did not start, so no test ran: %v\n", err)
		return 1
	}
	*c = cl
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "devcluster: tests failed; component logs are in %s\n%s", cl.Dir(), cl.logTails(60))
	}
	if err := cl.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "devcluster: stop: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// fuzzWorker reports whether this process is a fuzzing worker, which runs
// only a fuzz target's inputs.
func fuzzWorker() bool {
	f := flag.Lookup("test.fuzzworker")
	return f != nil && f.Value.String() == "true"
}

// skipShort skips a test that needs a dev cluster in the fast loop (-short).
func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the dev cluster: run it without -short (make test)")
	}
}

// Need skips t when there is no cluster (Main started none: -short, the
// fast loop). A test that uses the cluster calls it first.
func (c *Cluster) Need(t testing.TB) {
	t.Helper()
	if c == nil {
		skipShort(t)
		t.Fatal("devcluster: no cluster: start one with Main or StartForTest")
	}
}

// StartForTest starts a cluster for one test and stops it when the test
// ends, printing the components' log tails if the test failed.
func StartForTest(t testing.TB, opts Options) *Cluster {
	t.Helper()
	skipShort(t)
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	c, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("start the dev cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("component logs are in %s\n%s", c.Dir(), c.logTails(60))
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stop the dev cluster: %v", err)
		}
	})
	return c
}

// NewNamespace creates a namespace with a generated name that starts with
// prefix, waits for its default ServiceAccount (pods cannot be created
// before it exists), and deletes the namespace when the test ends.
func (c *Cluster) NewNamespace(t testing.TB, prefix string, labels map[string]string) string {
	t.Helper()
	c.Need(t)
	ctx := t.Context()
	ns, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = c.client.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	err = c.poll(ctx, "the default ServiceAccount in namespace "+ns.Name, []*process{c.controller}, func(ctx context.Context) (bool, error) {
		_, err := c.client.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// NewQuota creates the ResourceQuota name in ns with the given hard limits
// and waits until the quota controller has computed its status: admission
// refuses every pod of the namespace before that.
func (c *Cluster) NewQuota(t testing.TB, ns, name string, hard corev1.ResourceList) {
	t.Helper()
	c.Need(t)
	ctx := t.Context()
	quotas := c.client.CoreV1().ResourceQuotas(ns)
	_, err := quotas.Create(ctx, &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.ResourceQuotaSpec{Hard: hard},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create ResourceQuota %s/%s: %v", ns, name, err)
	}
	err = c.poll(ctx, "the status of ResourceQuota "+ns+"/"+name, []*process{c.controller}, func(ctx context.Context) (bool, error) {
		q, err := quotas.Get(ctx, name, metav1.GetOptions{})
		return err == nil && q.Status.Hard != nil, err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// ServiceAccountConfig makes the ServiceAccount name in ns, bound to role
// (created in ns), and returns a client configuration that authenticates
// as it with a token valid for an hour.
func (c *Cluster) ServiceAccountConfig(t testing.TB, ns, name string, role *rbacv1.Role) *rest.Config {
	t.Helper()
	c.Need(t)
	ctx := t.Context()
	fail := func(what string, err error) {
		if err != nil {
			t.Fatalf("%s for ServiceAccount %s/%s: %v", what, ns, name, err)
		}
	}
	_, err := c.client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	fail("create the ServiceAccount", err)
	_, err = c.client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{})
	fail("create the Role", err)
	_, err = c.client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
	}, metav1.CreateOptions{})
	fail("create the RoleBinding", err)
	expiry := int64(3600)
	tok, err := c.client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	fail("create a token", err)
	admin := c.RESTConfig()
	return &rest.Config{
		Host:            admin.Host,
		TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData},
		BearerToken:     tok.Status.Token,
	}
}

// Exec runs cmd in a pod's container the way kubectl exec does (WebSocket,
// falling back to SPDY) and returns its stdout, stderr and exit code. It
// fails the test if the command cannot be run at all.
func (c *Cluster) Exec(t testing.TB, ns, pod, container string, cmd ...string) (stdout, stderr string, code int) {
	t.Helper()
	c.Need(t)
	req := c.client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: cmd, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	fail := func(err error) {
		if err != nil {
			t.Fatalf("exec %v in %s/%s (container %s): %v", cmd, ns, pod, container, err)
		}
	}
	ws, err := remotecommand.NewWebSocketExecutor(c.restConfig, "GET", req.URL().String())
	fail(err)
	spdy, err := remotecommand.NewSPDYExecutor(c.restConfig, "POST", req.URL())
	fail(err)
	exec, err := remotecommand.NewFallbackExecutor(ws, spdy, httpstream.IsUpgradeFailure)
	fail(err)
	var out, errOut bytes.Buffer
	err = exec.StreamWithContext(t.Context(), remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
	var exitErr utilexec.ExitError
	if errors.As(err, &exitErr) {
		return out.String(), errOut.String(), exitErr.ExitStatus()
	}
	fail(err)
	return out.String(), errOut.String(), 0
}

// CreatePods creates the n pods pod(0) … pod(n-1) in ns through client, 20
// at a time, as a node-less stand-in for pods some executor made earlier. When status is
// set, it fills in pod i's status after the create and returns whether to
// write it (through the status subresource, as a node would). The pods are
// returned as last written, in order.
func CreatePods(tb testing.TB, client kubernetes.Interface, ns string, n int, pod func(i int) (*corev1.Pod, error), status func(i int, st *corev1.PodStatus) bool) []*corev1.Pod {
	tb.Helper()
	pods := client.CoreV1().Pods(ns)
	out := make([]*corev1.Pod, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 20)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p, err := pod(i)
			if err == nil {
				p, err = pods.Create(context.Background(), p, metav1.CreateOptions{})
			}
			if err == nil && status != nil && status(i, &p.Status) {
				p, err = pods.UpdateStatus(context.Background(), p, metav1.UpdateOptions{})
			}
			out[i], errs[i] = p, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		tb.Fatalf("devcluster: create %d pods in %s: %v", n, ns, err)
	}
	return out
}
