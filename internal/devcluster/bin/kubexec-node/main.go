// Command kubexec-node is the dev cluster's node agent. Built on
// github.com/virtual-kubelet/virtual-kubelet, it registers one or more nodes
// with the API server and runs each container of the pods bound to them as a
// local process: init containers one after another, then the containers
// together, each in a private mount, PID and UTS namespace whose root is the
// host's with the pod's volumes bind-mounted at their mount paths.
//
// It must run as root (mount namespaces, bind mounts, cgroups), and needs
// nsenter (util-linux) for pods/exec. Every process it starts gets SIGKILL
// when the agent dies, and as PID 1 of its own PID namespace takes its
// whole process tree with it.
//
// What it does not do: pull images (a container runs the host's programs;
// image references are only checked, see image.go), probes (a running
// container is ready), networking (containers share the host network and
// report the node's address as pod IP), ports, attach, port-forward, TTYs
// for exec, volumes other than emptyDir, configMap, secret, downwardAPI,
// projected and hostPath (they make the containers wait with
// CreateContainerConfigError), and CPU limits.
//
// Usage:
//
//	kubexec-node --kubeconfig=FILE --node-name=node-0 --port=10250 --root-dir=DIR [flags]
//
// Run with -h for every flag.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	vkslog "github.com/virtual-kubelet/virtual-kubelet/log/slog"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// version is reported as the container runtime's version.
const version = "0.1.0"

type config struct {
	kubeconfig string
	nodeNames  []string
	address    string
	port       int
	rootDir    string

	cpu, memory, ephemeralStorage resource.Quantity
	pods                          int64
	kubeletVersion                string

	clientCAFile, tlsCertFile, tlsKeyFile string

	leaseDuration  int32
	renewInterval  time.Duration
	statusInterval time.Duration

	imagePullFailure *regexp.Regexp
	imagePullBackoff time.Duration
	crashLoopBackoff time.Duration
	maxBackoff       time.Duration

	memoryMode  string
	rssInterval time.Duration

	workers int
	verbose bool

	// Set by run from the kubeconfig: the API server as containers see it
	// through KUBERNETES_SERVICE_HOST/PORT.
	apiHost, apiPort string
}

func parseFlags(args []string) (*config, error) {
	fs := flag.NewFlagSet("kubexec-node", flag.ContinueOnError)
	cfg := &config{}
	var nodeNames, cpu, memory, storage, pullFailure string
	var leaseDuration int
	fs.StringVar(&cfg.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig `file` of the identity the agent uses (it needs to manage nodes, leases, pods, events, and read secrets and config maps)")
	fs.StringVar(&nodeNames, "node-name", "node-0", "comma-separated `names` of the nodes to register; node i serves its kubelet API on port+i")
	fs.StringVar(&cfg.address, "address", "127.0.0.1", "the nodes' InternalIP, where the kubelet API listens, also reported as each pod's IP (containers share the host network)")
	fs.IntVar(&cfg.port, "port", 10250, "kubelet API port of the first node")
	fs.StringVar(&cfg.rootDir, "root-dir", "/var/lib/kubexec-node", "`folder` for pod folders, volumes and container logs")
	fs.StringVar(&cpu, "cpu", "8", "cpu capacity of each node")
	fs.StringVar(&memory, "memory", "16Gi", "memory capacity of each node")
	fs.StringVar(&storage, "ephemeral-storage", "100Gi", "ephemeral-storage capacity of each node")
	fs.Int64Var(&cfg.pods, "pods", 110, "pod capacity of each node")
	fs.StringVar(&cfg.kubeletVersion, "kubelet-version", "v1.37.2", "kubelet version reported in the node's status")
	fs.StringVar(&cfg.clientCAFile, "client-ca-file", "", "CA `file` that signs the API server's kubelet client certificate; when set, the kubelet API requires a client certificate signed by it")
	fs.StringVar(&cfg.tlsCertFile, "tls-cert-file", "", "kubelet API serving certificate (default: a self-signed one made at start)")
	fs.StringVar(&cfg.tlsKeyFile, "tls-private-key-file", "", "key of --tls-cert-file")
	fs.IntVar(&leaseDuration, "lease-duration", 40, "node Lease duration in seconds")
	fs.DurationVar(&cfg.renewInterval, "lease-renew-interval", 10*time.Second, "how often the node Lease is renewed (keep it well below the controller-manager's --node-monitor-grace-period)")
	fs.DurationVar(&cfg.statusInterval, "status-update-interval", time.Minute, "how often the node status is posted")
	fs.StringVar(&pullFailure, "image-pull-failure-regexp", "does-not-exist", "images whose normalized repository (e.g. docker.io/library/name) matches this regular expression fail to pull: ErrImagePull, then ImagePullBackOff")
	fs.DurationVar(&cfg.imagePullBackoff, "image-pull-backoff", 10*time.Second, "first ImagePullBackOff delay; it doubles up to --max-backoff")
	fs.DurationVar(&cfg.crashLoopBackoff, "crash-loop-backoff", 10*time.Second, "first CrashLoopBackOff delay (the first restart is immediate); it doubles up to --max-backoff")
	fs.DurationVar(&cfg.maxBackoff, "max-backoff", 5*time.Minute, "longest image pull and crash loop back-off")
	fs.StringVar(&cfg.memoryMode, "memory-enforcement", "auto", "how resources.limits.memory is enforced: cgroup (cgroup v1 memory controller, a kernel OOM kill), rss (the agent watches the process tree's RSS and sends SIGKILL), or auto (cgroup when writable, else rss)")
	fs.DurationVar(&cfg.rssInterval, "rss-interval", 100*time.Millisecond, "how often the rss memory enforcement samples a container's processes")
	fs.IntVar(&cfg.workers, "workers", 4, "pod sync workers per node")
	fs.BoolVar(&cfg.verbose, "v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	for n := range strings.SplitSeq(nodeNames, ",") {
		if n = strings.TrimSpace(n); n != "" {
			cfg.nodeNames = append(cfg.nodeNames, n)
		}
	}
	if len(cfg.nodeNames) == 0 {
		return nil, errors.New("--node-name: at least one name is needed")
	}
	if cfg.kubeconfig == "" {
		return nil, errors.New("--kubeconfig is required")
	}
	if net.ParseIP(cfg.address) == nil {
		return nil, fmt.Errorf("--address %q is not an IP address", cfg.address)
	}
	var err error
	for _, q := range []struct {
		name string
		val  string
		dst  *resource.Quantity
	}{{"cpu", cpu, &cfg.cpu}, {"memory", memory, &cfg.memory}, {"ephemeral-storage", storage, &cfg.ephemeralStorage}} {
		if *q.dst, err = resource.ParseQuantity(q.val); err != nil {
			return nil, fmt.Errorf("--%s: %w", q.name, err)
		}
	}
	if cfg.imagePullFailure, err = regexp.Compile(pullFailure); err != nil {
		return nil, fmt.Errorf("--image-pull-failure-regexp: %w", err)
	}
	if leaseDuration <= 0 || cfg.renewInterval <= 0 {
		return nil, errors.New("--lease-duration and --lease-renew-interval must be positive")
	}
	cfg.leaseDuration = int32(leaseDuration)
	switch cfg.memoryMode {
	case "auto", "cgroup", "rss":
	default:
		return nil, fmt.Errorf("--memory-enforcement %q: use auto, cgroup or rss", cfg.memoryMode)
	}
	if cfg.workers < 1 {
		cfg.workers = 1
	}
	return cfg, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == containerInitArg {
		containerInit() // does not return
	}
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubexec-node:", err)
		os.Exit(2)
	}
	level := slog.LevelInfo
	if cfg.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)
	vklog.L = vkslog.FromSlog(logger)
	klog.SetSlogLogger(logger)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		slog.Error("kubexec-node failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg *config) error {
	if os.Geteuid() != 0 {
		return errors.New("kubexec-node must run as root: it uses mount namespaces, bind mounts and cgroups")
	}
	restConfig, err := clientcmd.BuildConfigFromFlags("", cfg.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	restConfig.QPS, restConfig.Burst = 100, 200
	restConfig.UserAgent = "kubexec-node/" + version
	u, err := url.Parse(restConfig.Host)
	if err != nil {
		return fmt.Errorf("kubeconfig server %q: %w", restConfig.Host, err)
	}
	cfg.apiHost, cfg.apiPort = u.Hostname(), u.Port()
	if cfg.apiPort == "" {
		cfg.apiPort = "443"
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.rootDir, 0o755); err != nil {
		return err
	}
	mem, err := newMemoryEnforcer(cfg.memoryMode, cfg.rssInterval)
	if err != nil {
		return err
	}
	defer mem.close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(cfg.nodeNames))
	var wg sync.WaitGroup
	for i, name := range cfg.nodeNames {
		wg.Go(func() {
			err := runNode(ctx, cfg, client, name, cfg.port+i, mem)
			if err != nil {
				err = fmt.Errorf("node %s: %w", name, err)
			}
			errs <- err
		})
	}
	// The first node to stop (an error, or the context) stops them all.
	err = <-errs
	cancel()
	wg.Wait()
	close(errs)
	for e := range errs {
		err = errors.Join(err, e)
	}
	if ctx.Err() != nil && err == nil {
		slog.Info("kubexec-node stopped")
	}
	return err
}
