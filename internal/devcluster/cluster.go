package devcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options configures a dev cluster. The zero value starts a control plane
// with no nodes in a new temporary folder.
type Options struct {
	// Dir holds the cluster's data, certificates, kubeconfig and logs.
	// Default: a new temporary folder, removed by Stop.
	Dir string
	// KeepDir keeps Dir after Stop. Default: false (a folder given in Dir
	// is always kept).
	KeepDir bool
	// BinDir is where the binaries built by `make devcluster` are.
	// Default: $KUBEXEC_DEVCLUSTER_BIN, else _output/bin in the module root.
	BinDir string

	// Nodes is the number of process nodes to start. Default: 0.
	Nodes int
	// KubeletNodes is the number of real kubelet nodes to start (kubelet,
	// containerd and runc on this machine; see kubelet.go). They need root
	// and Debian's containerd, runc, containernetworking-plugins and
	// busybox-static. Default: 0. Both kinds can run in one cluster; pods
	// choose one with a nodeSelector on ProcessNodeLabel or
	// KubeletNodeLabel.
	KubeletNodes int
	// KubeletNodeTaint registers kubelet nodes with the taint
	// KubeletNodeLabel=true:NoSchedule, so that only pods that tolerate it
	// run there: a package's tests written for process nodes can share a
	// cluster with a kubelet node. Default: false.
	KubeletNodeTaint bool
	// KwokNodes is the number of kwok nodes to register (kwok.go): Node
	// objects that one kwok process keeps Ready and whose pods it moves
	// through Running to Succeeded or Failed without running anything.
	// They are for benchmarks where the node must not be what is
	// measured. Default: 0.
	KwokNodes int
	// KwokNodeTaint registers kwok nodes with the taint
	// KwokNodeLabel=true:NoSchedule, so that only pods that tolerate it
	// (KwokToleration) land there. Default: false.
	KwokNodeTaint bool
	// NodeCPU is each node's cpu capacity. Default: "8".
	NodeCPU string
	// NodeMemory is each node's memory capacity. Default: "16Gi".
	NodeMemory string
	// NodePods is each node's pod capacity. Default: 110.
	NodePods int
	// NodeMemoryEnforcement is how process nodes enforce memory limits:
	// "cgroup" (a cgroup v1 memory group per container, a kernel OOM kill),
	// "rss" (the agent watches each container's resident memory and kills
	// it), or "" for cgroup where it is writable, else rss.
	NodeMemoryEnforcement string

	// NodeMonitorGracePeriod is how long the controller-manager waits for
	// a silent node before it marks it NotReady. Default: 40s (as upstream).
	NodeMonitorGracePeriod time.Duration
	// NotReadyTolerationSeconds and UnreachableTolerationSeconds are the
	// tolerations the API server adds to pods that set none, which decide
	// how long a pod stays on a failed node before eviction. Default: 300.
	NotReadyTolerationSeconds    int64
	UnreachableTolerationSeconds int64

	// DisableWatchCache serves watches straight from etcd, so that a watch
	// from a resourceVersion older than the last compaction gets 410 Gone
	// at once. Default: false (the watch cache is on, as in production).
	DisableWatchCache bool

	// DisableQPSLimits lets the scheduler and the controller-manager talk
	// to the API server at 5,000 requests/s, burst 10,000 (kwokctl's
	// --disable-qps-limits values), instead of their client defaults: the
	// scheduler's 50/s, burst 100, binds at most 50 pods a second, and the
	// controller-manager's 20/s, burst 30, paces the Job controller and
	// the garbage collector. For benchmarks that must measure the API
	// server and their own client rather than those limits. Default:
	// false (the components' defaults, as a stock cluster has).
	DisableQPSLimits bool

	// ReadyTimeout bounds the wait for each component to become ready.
	// Default: 3m (a busy machine can take 30 s or more).
	ReadyTimeout time.Duration

	// Logf receives progress messages. Default: discarded.
	Logf func(format string, args ...any)
}

// NodeKinds are the values SetNodeKind takes.
var NodeKinds = []string{"process", "kubelet", "both", "kwok"}

// SetNodeKind sets Nodes, KubeletNodes and KwokNodes for a cluster of n
// nodes of one kind: "process" (n process nodes), "kubelet" (n kubelet
// nodes), "both" (n of each of those two) or "kwok" (n kwok nodes, which run
// nothing). It is what the --node-kind flags of `make cluster-up` and the
// example scheduler call.
func (o *Options) SetNodeKind(kind string, n int) error {
	switch kind {
	case "process":
		o.Nodes, o.KubeletNodes, o.KwokNodes = n, 0, 0
	case "kubelet":
		o.Nodes, o.KubeletNodes, o.KwokNodes = 0, n, 0
	case "both":
		o.Nodes, o.KubeletNodes, o.KwokNodes = n, n, 0
	case "kwok":
		o.Nodes, o.KubeletNodes, o.KwokNodes = 0, 0, n
	default:
		return fmt.Errorf("devcluster: node kind %q: use one of %s", kind, strings.Join(NodeKinds, ", "))
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.BinDir == "" {
		o.BinDir = os.Getenv("KUBEXEC_DEVCLUSTER_BIN")
	}
	if o.NodeCPU == "" {
		o.NodeCPU = "8"
	}
	if o.NodeMemory == "" {
		o.NodeMemory = "16Gi"
	}
	if o.NodePods == 0 {
		o.NodePods = 110
	}
	if o.NodeMonitorGracePeriod == 0 {
		o.NodeMonitorGracePeriod = 40 * time.Second
	}
	if o.NotReadyTolerationSeconds == 0 {
		o.NotReadyTolerationSeconds = 300
	}
	if o.UnreachableTolerationSeconds == 0 {
		o.UnreachableTolerationSeconds = 300
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 3 * time.Minute
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

func (o Options) validate() error {
	if o.Nodes < 0 {
		return fmt.Errorf("devcluster: Options.Nodes is %d; use 0 or more", o.Nodes)
	}
	if o.KubeletNodes < 0 || o.KubeletNodes > 250 {
		return fmt.Errorf("devcluster: Options.KubeletNodes is %d; use 0 to 250", o.KubeletNodes)
	}
	if o.KwokNodes < 0 {
		return fmt.Errorf("devcluster: Options.KwokNodes is %d; use 0 or more", o.KwokNodes)
	}
	if o.NodePods < 0 {
		return fmt.Errorf("devcluster: Options.NodePods is %d; use 1 or more", o.NodePods)
	}
	return nil
}

// Cluster is a running dev cluster: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and, optionally, process nodes,
// kubelet nodes and kwok nodes,
// all on loopback ports chosen at start.
type Cluster struct {
	opts       Options
	dir        string
	removeDir  bool
	pki        *pki
	kubeconfig string

	etcdPort, apiPort int

	mu         sync.Mutex
	etcd       *process
	apiserver  *process
	controller *process
	scheduler  *process
	nodes      []*nodeAgent
	kubelets   []*kubeletNode
	kwok       *process
	stopped    bool

	restConfig *rest.Config
	client     kubernetes.Interface
}

// Start builds nothing: it starts the binaries found in Options.BinDir and
// returns when the API server is ready, the default ServiceAccount exists
// and the requested nodes are Ready. On error nothing is left running.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts}
	if opts.BinDir == "" {
		root, err := moduleRoot()
		if err != nil {
			return nil, err
		}
		c.opts.BinDir = filepath.Join(root, "_output", "bin")
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		if _, err := os.Stat(filepath.Join(c.opts.BinDir, b)); err != nil {
			return nil, fmt.Errorf("devcluster: binary %s not found in %s: run `make devcluster` in the project root to build it (or set KUBEXEC_DEVCLUSTER_BIN)", b, c.opts.BinDir)
		}
	}
	c.dir = opts.Dir
	if c.dir == "" {
		c.dir, err = os.MkdirTemp("", "kubexec-devcluster-")
		if err != nil {
			return nil, err
		}
		c.removeDir = !opts.KeepDir
	} else if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, c.logTails(40))
			_ = c.Stop()
		}
	}()

	c.pki, err = newPKI(c.dir)
	if err != nil {
		return nil, fmt.Errorf("devcluster: certificates: %w", err)
	}
	if err := c.startEtcd(ctx); err != nil {
		return nil, err
	}
	if err := c.startAPIServer(ctx); err != nil {
		return nil, err
	}
	if err := c.writeKubeconfig(); err != nil {
		return nil, err
	}
	if err := c.startControllers(); err != nil {
		return nil, err
	}
	if err := c.waitDefaultServiceAccount(ctx); err != nil {
		return nil, err
	}
	if opts.Nodes > 0 {
		if err := c.startNodes(ctx); err != nil {
			return nil, err
		}
	}
	if opts.KubeletNodes > 0 {
		if err := c.startKubeletNodes(ctx); err != nil {
			return nil, err
		}
	}
	if opts.KwokNodes > 0 {
		if err := c.startKwok(ctx); err != nil {
			return nil, err
		}
	}
	opts.Logf("devcluster: ready at %s (folder %s)", c.restConfig.Host, c.dir)
	return c, nil
}

// RESTConfig returns a new copy of the cluster-admin client configuration.
// QPS and Burst are set explicitly (200/400), never left to client-go's
// silent default.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.restConfig) }

// Client returns a cluster-admin clientset.
func (c *Cluster) Client() kubernetes.Interface { return c.client }

// Kubeconfig returns the path of a kubeconfig file for the cluster-admin
// identity, usable by kubectl.
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// Dir returns the cluster's folder (data, certificates, logs).
func (c *Cluster) Dir() string { return c.dir }

// Host returns the API server's URL.
func (c *Cluster) Host() string { return c.restConfig.Host }

// Stop stops every process of the cluster, newest first, and removes its
// temporary folder. It is safe to call more than once.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true
	errs := []error{c.kwok.stop(5 * time.Second)}
	for i := len(c.kubelets) - 1; i >= 0; i-- {
		errs = append(errs, c.kubelets[i].stop())
	}
	for i := len(c.nodes) - 1; i >= 0; i-- {
		errs = append(errs, c.nodes[i].proc.stop(5*time.Second))
	}
	errs = append(errs, c.scheduler.stop(5*time.Second), c.controller.stop(5*time.Second),
		c.apiserver.stop(apiserverGrace), c.etcd.stop(10*time.Second))
	if c.removeDir {
		errs = append(errs, os.RemoveAll(c.dir))
	}
	return errors.Join(errs...)
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	c.etcdPort = ports[0]
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	c.etcd, err = c.startProcess("etcd", "etcd",
		"--name=devcluster",
		"--data-dir="+filepath.Join(c.dir, "etcd"),
		"--listen-client-urls="+client,
		"--advertise-client-urls="+client,
		"--listen-peer-urls="+peer,
		"--initial-advertise-peer-urls="+peer,
		"--initial-cluster=devcluster="+peer,
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	)
	if err != nil {
		return err
	}
	return c.waitHTTP(ctx, c.etcd, http.DefaultClient, client+"/health")
}

func (c *Cluster) apiserverArgs() []string {
	p := c.pki
	args := []string{
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", c.etcdPort),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(c.apiPort),
		"--cert-dir=" + filepath.Join(c.dir, "apiserver-certs"),
		"--tls-cert-file=" + p.servingCertFile,
		"--tls-private-key-file=" + p.servingKeyFile,
		"--client-ca-file=" + p.caCertFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.saPubFile,
		"--service-account-signing-key-file=" + p.saKeyFile,
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
		"--kubelet-client-certificate=" + p.adminCertFile,
		"--kubelet-client-key=" + p.adminKeyFile,
		"--kubelet-preferred-address-types=InternalIP",
		"--default-not-ready-toleration-seconds=" + strconv.FormatInt(c.opts.NotReadyTolerationSeconds, 10),
		"--default-unreachable-toleration-seconds=" + strconv.FormatInt(c.opts.UnreachableTolerationSeconds, 10),
		"--profiling=false",
		"--v=1",
	}
	if c.opts.DisableWatchCache {
		args = append(args, "--watch-cache=false")
	}
	return args
}

func (c *Cluster) startAPIServer(ctx context.Context) error {
	if c.apiPort == 0 {
		ports, err := freePorts(1)
		if err != nil {
			return err
		}
		c.apiPort = ports[0]
		c.restConfig = &rest.Config{
			Host: fmt.Sprintf("https://127.0.0.1:%d", c.apiPort),
			TLSClientConfig: rest.TLSClientConfig{
				CAData:   c.pki.caPEM,
				CertData: c.pki.adminCertPEM,
				KeyData:  c.pki.adminKeyPEM,
			},
			QPS:   200,
			Burst: 400,
		}
		client, err := kubernetes.NewForConfig(c.restConfig)
		if err != nil {
			return err
		}
		c.client = client
	}
	var err error
	c.apiserver, err = c.startProcess("kube-apiserver", "kube-apiserver", c.apiserverArgs()...)
	if err != nil {
		return err
	}
	httpClient, err := rest.HTTPClientFor(c.restConfig)
	if err != nil {
		return err
	}
	return c.waitHTTP(ctx, c.apiserver, httpClient, c.restConfig.Host+"/readyz")
}

func (c *Cluster) writeKubeconfig() error {
	c.kubeconfig = filepath.Join(c.dir, "kubeconfig")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["devcluster"] = &clientcmdapi.Cluster{
		Server:                   c.restConfig.Host,
		CertificateAuthorityData: c.pki.caPEM,
	}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: c.pki.adminCertPEM,
		ClientKeyData:         c.pki.adminKeyPEM,
	}
	cfg.Contexts["devcluster"] = &clientcmdapi.Context{Cluster: "devcluster", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "devcluster"
	return clientcmd.WriteToFile(*cfg, c.kubeconfig)
}

func (c *Cluster) startControllers() error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	kc := c.kubeconfig
	var qps []string
	if c.opts.DisableQPSLimits {
		qps = []string{"--kube-api-qps=5000", "--kube-api-burst=10000"}
	}
	c.controller, err = c.startProcess("kube-controller-manager", "kube-controller-manager", append([]string{
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(ports[0]),
		"--cert-dir=" + filepath.Join(c.dir, "controller-manager-certs"),
		"--service-account-private-key-file=" + c.pki.saKeyFile,
		"--root-ca-file=" + c.pki.caCertFile,
		"--cluster-signing-cert-file=" + c.pki.caCertFile,
		"--cluster-signing-key-file=" + c.pki.caKeyFile,
		"--use-service-account-credentials=false",
		"--node-monitor-grace-period=" + c.opts.NodeMonitorGracePeriod.String(),
		"--profiling=false",
		"--v=1",
	}, qps...)...)
	if err != nil {
		return err
	}
	c.scheduler, err = c.startProcess("kube-scheduler", "kube-scheduler", append([]string{
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(ports[1]),
		"--cert-dir=" + filepath.Join(c.dir, "scheduler-certs"),
		"--profiling=false",
		"--v=1",
	}, qps...)...)
	return err
}

// waitDefaultServiceAccount waits for the controller-manager's service
// account controller: until the default ServiceAccount exists, pods cannot
// be created in a namespace.
func (c *Cluster) waitDefaultServiceAccount(ctx context.Context) error {
	return c.poll(ctx, "the default ServiceAccount in namespace default", []*process{c.controller}, func(ctx context.Context) (bool, error) {
		_, err := c.client.CoreV1().ServiceAccounts(corev1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, nil
	})
}

// apiserverGrace is how long the API server gets to exit after SIGTERM
// before SIGKILL. Its graceful shutdown waits up to a minute for open watches
// to close; etcd holds the data, so cutting that short loses nothing.
const apiserverGrace = 3 * time.Second

// StopAPIServer stops the API server; etcd keeps its data. Clients see
// connection errors until StartAPIServer.
func (c *Cluster) StopAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.apiserver.stop(apiserverGrace)
}

// StartAPIServer starts the API server again on the same port after
// StopAPIServer, and waits until it is ready.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver.running() {
		return errors.New("devcluster: the API server is running; call StopAPIServer first")
	}
	if err := c.startAPIServer(ctx); err != nil {
		return fmt.Errorf("%w\n%s", err, c.logTails(40))
	}
	return nil
}

// RestartAPIServer stops the API server and starts it again on the same
// port, as a rolling upgrade of the control plane would.
func (c *Cluster) RestartAPIServer(ctx context.Context) error {
	if err := c.StopAPIServer(); err != nil {
		return err
	}
	return c.StartAPIServer(ctx)
}

// waitHTTP polls url until it answers 200, p exits, or the ready timeout
// or ctx ends.
func (c *Cluster) waitHTTP(ctx context.Context, p *process, client *http.Client, url string) error {
	return c.poll(ctx, url, []*process{p}, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// poll calls cond every 100 ms until it is true. It fails early when one of
// procs exits, and after Options.ReadyTimeout.
func (c *Cluster) poll(ctx context.Context, what string, procs []*process, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ReadyTimeout)
	defer cancel()
	start := time.Now()
	for {
		for _, p := range procs {
			if !p.running() {
				return fmt.Errorf("devcluster: %s exited while waiting for %s: %v (log: %s)", p.name, what, p.exitErr(), p.logPath)
			}
		}
		attemptCtx, attemptCancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := cond(attemptCtx)
		attemptCancel()
		if err != nil {
			return fmt.Errorf("devcluster: waiting for %s: %w", what, err)
		}
		if ok {
			c.opts.Logf("devcluster: %s ready after %s", what, time.Since(start).Round(time.Millisecond))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("devcluster: %s not ready after %s: %w", what, time.Since(start).Round(time.Second), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("devcluster: find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// moduleRoot finds the root of the github.com/kubexec/kubexec module from
// the working directory (go test runs in the package's folder).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && isMainModule(data) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("devcluster: cannot find the kubexec module root above the working directory; set Options.BinDir or KUBEXEC_DEVCLUSTER_BIN")
		}
		dir = parent
	}
}

func isMainModule(gomod []byte) bool {
	for line := range splitLines(gomod) {
		if line == "module github.com/kubexec/kubexec" {
			return true
		}
	}
	return false
}
