// Command scheduler is kubexec's example scheduler: it runs workflows (DAGs
// of tasks, defined in YAML) with every task attempt as a Kubernetes pod,
// keeping its state in SQLite. It is the template for embedding kubexec.
//
// Usage:
//
//	scheduler [flags] run FILE            start a run of the workflow in FILE and follow it
//	scheduler [flags] resume [RUN]        continue an unfinished run (the latest by default)
//	scheduler [flags] status [RUN]        list runs, or show one run's tasks
//	scheduler [flags] logs TASK [--follow] [--attempt N]
//	scheduler [flags] cancel RUN|TASK     cancel a run or one task
//	scheduler [flags] cleanup [--older-than D] [--dry-run]
//	scheduler [flags] explain TASK        why a task is where it is, and what to do
//
// TASK is RUN/TASK_ID, or TASK_ID alone for the latest run that has it.
//
// With no --kubeconfig, run starts the dev cluster (etcd, kube-apiserver,
// kube-scheduler, kube-controller-manager and a process node, built with
// `make devcluster`) and stops it on exit; its pods go with it, but their
// logs are archived next to the database. Give --kubeconfig to use any
// cluster, for example one started with `make cluster-up`, so that runs
// and pods outlive the scheduler.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kubexec/kubexec/examples/scheduler/termtext"
	"github.com/kubexec/kubexec/podtemplate"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // the run or the command failed
	exitUsage   = 2 // bad command line or invalid workflow
	exitStopped = 3 // interrupted; the run can be resumed
)

// options are the flags every command accepts.
type options struct {
	kubeconfig  string
	namespace   string
	db          string
	metricsAddr string
	parallelism int
	podTemplate string
	keepPods    bool
	podPolicy   string
	verbose     bool
	nodeKind    string
	plain       bool

	// command flags
	follow    bool
	attempt   int
	olderThan time.Duration
	dryRun    bool

	stdout, stderr io.Writer
	logger         *slog.Logger
}

const usage = `Usage: scheduler [flags] COMMAND [ARGS]

Commands:
  run FILE             start a run of the workflow in FILE and follow it to the end
  resume [RUN]         continue an unfinished run (default: the latest)
  status [RUN]         list the latest runs, or show one run's tasks
  logs TASK            print a task's logs, live or archived (--follow, --attempt N)
  cancel RUN|TASK      cancel a run, or one task of a run
  cleanup              delete kept pods whose results are saved (--older-than, --dry-run)
  explain TASK         say why a task is where it is, and what to do about it

TASK is RUN/TASK_ID, or TASK_ID for the latest run that has such a task.

Flags (before or after the command):
`

func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("scheduler", flag.ContinueOnError)
	fs.SetOutput(o.stderr)
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig `file` of the cluster to use; without it, run and resume start the dev cluster and stop it on exit")
	fs.StringVar(&o.namespace, "namespace", "", "namespace of the pods (default: the workflow's namespace, else \"default\")")
	fs.StringVar(&o.db, "db", defaultDB(), "SQLite database `file` holding runs, tasks and results")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this `address` (a bare :port listens on loopback only)")
	fs.IntVar(&o.parallelism, "parallelism", 16, "most task attempts running at once")
	fs.StringVar(&o.podTemplate, "pod-template", "", "base pod template `file` (YAML, kind Pod or PodTemplate, main container \"base\"); default: kubexec's restricted template running as uid 65534")
	fs.StringVar(&o.podPolicy, "pod-policy", string(podtemplate.LevelRestricted), "the Pod Security Standard every task pod must pass before it is created: restricted, baseline or privileged (pod overrides may then use host folders, host namespaces and root); the executor's other rules (ServiceAccount, namespace, finalizers) hold whatever the level")
	fs.BoolVar(&o.keepPods, "keep-pods", false, "keep succeeded pods (labelled done) until cleanup, e.g. for explain; by default they are deleted once their result is saved and their logs archived (failed pods are always kept)")
	fs.StringVar(&o.nodeKind, "node-kind", "process", "nodes of the embedded dev cluster: process (kubexec-node, runs each container as a local process), kubelet (the real kubelet with containerd and runc) or both")
	fs.BoolVar(&o.verbose, "v", false, "log what the executor does, to stderr")
	fs.BoolVar(&o.plain, "plain", false, "print one line per event even on a terminal")
	fs.BoolVar(&o.follow, "follow", false, "logs: keep streaming while the task runs")
	fs.IntVar(&o.attempt, "attempt", 0, "logs, explain: the attempt to look at (default: the latest)")
	fs.DurationVar(&o.olderThan, "older-than", time.Hour, "cleanup: delete kept pods that finished longer ago than this")
	fs.BoolVar(&o.dryRun, "dry-run", false, "cleanup: only list the pods that would be deleted")
	fs.Usage = func() {
		fmt.Fprint(o.stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

// defaultDB is .kubexec/scheduler.db in the working directory.
func defaultDB() string { return filepath.Join(".kubexec", "scheduler.db") }

// Main runs the command line args and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o := &options{stdout: stdout, stderr: stderr}
	fs := newFlagSet(o)
	pos, err := parseArgs(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if len(pos) == 0 {
		fs.Usage()
		return exitUsage
	}
	switch podtemplate.Level(o.podPolicy) {
	case podtemplate.LevelRestricted, podtemplate.LevelBaseline, podtemplate.LevelPrivileged:
	default:
		fmt.Fprintf(stderr, "scheduler: --pod-policy %q: use restricted, baseline or privileged\n", o.podPolicy)
		return exitUsage
	}
	level := slog.LevelError
	if o.verbose {
		level = slog.LevelInfo
	}
	o.logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	cmd, rest := pos[0], pos[1:]
	want := func(min, max int, what string) bool {
		if len(rest) < min || len(rest) > max {
			fmt.Fprintf(stderr, "scheduler %s: usage: scheduler %s %s\n", cmd, cmd, what)
			return false
		}
		return true
	}
	arg := func() string {
		if len(rest) > 0 {
			return rest[0]
		}
		return ""
	}
	code := exitOK
	switch cmd {
	case "run":
		if !want(1, 1, "FILE") {
			return exitUsage
		}
		code, err = cmdRun(ctx, o, rest[0])
	case "resume":
		if !want(0, 1, "[RUN]") {
			return exitUsage
		}
		code, err = cmdResume(ctx, o, arg())
	case "status":
		if !want(0, 1, "[RUN]") {
			return exitUsage
		}
		err = cmdStatus(ctx, o, arg())
	case "logs":
		if !want(1, 1, "TASK [--follow] [--attempt N]") {
			return exitUsage
		}
		err = cmdLogs(ctx, o, rest[0])
	case "cancel":
		if !want(1, 1, "RUN|TASK") {
			return exitUsage
		}
		code, err = cmdCancel(ctx, o, rest[0])
	case "cleanup":
		if !want(0, 0, "[--older-than D] [--dry-run]") {
			return exitUsage
		}
		err = cmdCleanup(ctx, o)
	case "explain":
		if !want(1, 1, "TASK [--attempt N]") {
			return exitUsage
		}
		err = cmdExplain(ctx, o, rest[0])
	case "help":
		fs.Usage()
		return exitOK
	default:
		fmt.Fprintf(stderr, "scheduler: unknown command %q\n\n", cmd)
		fs.Usage()
		return exitUsage
	}
	if err != nil {
		var ue usageError
		// Errors quote the API server, pods and results: their text goes
		// through termtext.Text, which keeps their line breaks.
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "scheduler %s: %s\n", cmd, indentLines(termtext.Text(err.Error())))
			return exitUsage
		}
		fmt.Fprintf(stderr, "scheduler %s: %s\n", cmd, indentLines(termtext.Text(err.Error())))
		if code == exitOK {
			code = exitFailed
		}
	}
	return code
}

// parseArgs parses args with fs and returns the positional arguments: the
// command and its arguments. Flags may come before or after them.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// usageError is an error in what the user asked for (exit code 2).
type usageError struct{ error }

func indentLines(s string) string { return strings.ReplaceAll(s, "\n", "\n  ") }
