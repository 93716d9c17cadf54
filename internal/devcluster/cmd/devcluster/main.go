// Command devcluster runs kubexec's dev cluster for people.
//
//	devcluster up --dir DIR [--nodes N] [--node-kind K]   run until SIGINT/SIGTERM; DIR/kubeconfig is written when ready
//	devcluster info [--nodes N] [--node-kind K]           start a cluster, print what it serves, stop it
//
// K is process (kubexec-node, the default), kubelet (the real kubelet with
// containerd and runc), both, or kwok (nodes simulated by kwok, which run
// nothing; see the devcluster package).
//
// `make cluster-up` and `make cluster-down` wrap `up` in the background.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubexec/kubexec/internal/devcluster"
)

func main() {
	log.SetFlags(0)
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = up(os.Args[2:])
	case "info":
		err = info(os.Args[2:], os.Stdout)
	default:
		usage()
	}
	if err != nil {
		log.Fatalf("devcluster: %v", err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: devcluster up --dir DIR [--nodes N] [--node-kind process|kubelet|both|kwok] | devcluster info [--nodes N] [--node-kind process|kubelet|both|kwok]")
	os.Exit(2)
}

// clusterFlags are the flags of every subcommand.
type clusterFlags struct {
	fs    *flag.FlagSet
	opts  devcluster.Options
	nodes int
	kind  string
}

func commonFlags(name string) *clusterFlags {
	f := &clusterFlags{opts: devcluster.Options{Logf: log.Printf}, fs: flag.NewFlagSet(name, flag.ExitOnError)}
	f.fs.IntVar(&f.nodes, "nodes", 1, "number of nodes (of each kind with --node-kind both)")
	f.fs.StringVar(&f.kind, "node-kind", "process", "process (kubexec-node), kubelet (the real kubelet with containerd and runc), both, or kwok (simulated nodes that run nothing)")
	f.fs.StringVar(&f.opts.BinDir, "bin", "", "folder of the dev cluster binaries (default: _output/bin in the module root)")
	return f
}

// parse parses args and applies --nodes and --node-kind.
func (f *clusterFlags) parse(args []string) (*devcluster.Options, error) {
	_ = f.fs.Parse(args)
	if err := f.opts.SetNodeKind(f.kind, f.nodes); err != nil {
		return nil, err
	}
	return &f.opts, nil
}

// up runs a cluster in DIR until it is told to stop. It writes DIR/ready
// once the cluster is ready, so a script can wait for it.
func up(args []string) error {
	f := commonFlags("up")
	f.fs.StringVar(&f.opts.Dir, "dir", "", "folder for the cluster's data, kubeconfig and logs (required; emptied first)")
	opts, err := f.parse(args)
	if err != nil {
		return err
	}
	if opts.Dir == "" {
		return errors.New("--dir is required")
	}
	// A cluster's data is only valid with the certificates it was made
	// with: start from an empty folder each time.
	if err := os.RemoveAll(opts.Dir); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := devcluster.Start(ctx, *opts)
	if err != nil {
		return err
	}
	defer c.Stop()
	if err := os.WriteFile(filepath.Join(opts.Dir, "ready"), []byte(c.Kubeconfig()+"\n"), 0o644); err != nil {
		return err
	}
	log.Printf("devcluster: serving %s; kubeconfig %s", c.Host(), c.Kubeconfig())
	<-ctx.Done()
	log.Printf("devcluster: stopping")
	return c.Stop()
}

// info starts a cluster, prints what it serves and stops it.
func info(args []string, w io.Writer) error {
	opts, err := commonFlags("info").parse(args)
	if err != nil {
		return err
	}
	opts.Logf = func(string, ...any) {}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	c, err := devcluster.Start(ctx, *opts)
	if err != nil {
		return err
	}
	defer c.Stop()
	version, err := c.Client().Discovery().ServerVersion()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "dev cluster ready in %s\n", time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(w, "API server:  %s (Kubernetes %s)\n", c.Host(), version.GitVersion)
	fmt.Fprintf(w, "kubeconfig:  %s\n", c.Kubeconfig())
	nss, err := c.Client().CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	fmt.Fprint(w, "namespaces: ")
	for _, ns := range nss.Items {
		fmt.Fprintf(w, " %s", ns.Name)
	}
	fmt.Fprintln(w)
	nodes, err := c.Client().CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "nodes:       %d\n", len(nodes.Items))
	for _, n := range nodes.Items {
		fmt.Fprintf(w, "  %s cpu=%s memory=%s pods=%s\n", n.Name,
			n.Status.Allocatable.Cpu(), n.Status.Allocatable.Memory(), n.Status.Allocatable.Pods())
	}
	groups, err := c.Client().Discovery().ServerGroups()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "API groups:  %d\n", len(groups.Groups))
	fmt.Fprintln(w, "stopping the dev cluster")
	return nil
}
