package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubexec/kubexec/internal/devcluster"
)

// cluster is the Kubernetes cluster a command works with.
type cluster struct {
	rest   *rest.Config
	client kubernetes.Interface
	// id identifies the cluster: the UID of its kube-system namespace. A
	// run records it, so a run is never resumed on another cluster.
	id string
	// dev is the embedded dev cluster, or nil.
	dev *devcluster.Cluster
}

// errNoCluster says that a command needs --kubeconfig.
var errNoCluster = errors.New("this command needs a cluster that outlives the scheduler: pass --kubeconfig FILE " +
	"(the embedded dev cluster exists only while `run` or `resume` runs; `make cluster-up` starts one that stays, " +
	"with its kubeconfig in .devcluster/cluster/kubeconfig)")

// connect returns the cluster of --kubeconfig, or, when embedded is true
// and no kubeconfig is given, starts the dev cluster.
func connect(ctx context.Context, o *options, embedded bool) (*cluster, error) {
	if o.kubeconfig == "" {
		if !embedded {
			return nil, errNoCluster
		}
		return startDevCluster(ctx, o)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", o.kubeconfig, err)
	}
	// Explicit client rate limits: never client-go's silent QPS 5.
	rc.QPS, rc.Burst = 50, 100
	return newCluster(ctx, rc, nil)
}

func newCluster(ctx context.Context, rc *rest.Config, dev *devcluster.Cluster) (*cluster, error) {
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ns, err := client.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("cannot reach the cluster at %s: %w", rc.Host, err)
	}
	return &cluster{rest: rc, client: client, id: string(ns.UID), dev: dev}, nil
}

func startDevCluster(ctx context.Context, o *options) (*cluster, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the embedded dev cluster's node runs containers as local processes in their own namespaces, which needs root: run as root, or pass --kubeconfig for another cluster")
	}
	fmt.Fprintln(o.stderr, "Starting the dev cluster (no --kubeconfig given; it stops when the scheduler exits)...")
	fmt.Fprintln(o.stderr, devClusterWarning)
	start := time.Now()
	var opts devcluster.Options
	if err := opts.SetNodeKind(o.nodeKind, 1); err != nil {
		return nil, fmt.Errorf("--node-kind: %w", err)
	}
	if o.verbose {
		opts.Logf = func(format string, args ...any) { fmt.Fprintf(o.stderr, format+"\n", args...) }
	}
	dev, err := devcluster.Start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("start the dev cluster: %w", err)
	}
	c, err := newCluster(ctx, dev.RESTConfig(), dev)
	if err != nil {
		dev.Stop()
		return nil, err
	}
	fmt.Fprintf(o.stderr, "Dev cluster ready at %s in %s.\n", dev.Host(), time.Since(start).Round(100*time.Millisecond))
	return c, nil
}

// Close stops the embedded dev cluster, if any.
func (c *cluster) Close() {
	if c != nil && c.dev != nil {
		_ = c.dev.Stop()
	}
}

// devClusterWarning is printed when the scheduler starts the dev cluster.
const devClusterWarning = "The dev cluster is a development tool, not a sandbox: its pods are processes on this machine that share its network, " +
	"may run as root and mount host folders read-write (hostPath volumes), and its etcd has no authentication, so anyone on this machine " +
	"can read and change the cluster's data, Secrets included. Every component listens on loopback only. Run only workflows you trust on it."

// embeddedNote explains what happens to a run on the embedded cluster.
const embeddedNote = "the embedded dev cluster stopped with the scheduler, taking the run's pods with it"

// lock is an exclusive lock on the database for the process that drives
// runs: two drivers with the same executor id must not run at once.
type lock struct{ f *os.File }

// errLocked says another process drives runs from the same database.
var errLocked = errors.New("locked")

func acquireLock(db string) (*lock, error) {
	path := db + ".lock"
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		var pid int
		_, _ = fmt.Fscan(f, &pid)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: another scheduler (pid %d) is driving runs from %s; wait for it, cancel through it, or use another --db", errLocked, pid, db)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("%d\n", os.Getpid())), 0)
	return &lock{f: f}, nil
}

func (l *lock) release() {
	if l != nil {
		_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
		l.f.Close()
	}
}
