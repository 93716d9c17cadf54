package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/util/retry"

	"github.com/kubexec/kubexec/examples/scheduler/driver"
	"github.com/kubexec/kubexec/examples/scheduler/prommetrics"
	"github.com/kubexec/kubexec/examples/scheduler/sqlitestore"
	"github.com/kubexec/kubexec/examples/scheduler/workflow"
	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/podtemplate"
	"github.com/kubexec/kubexec/xcom"
)

// cmdRun starts a run of the workflow in file and drives it to the end.
// Nothing is created (no run, no Secret, no pod) unless every task's pod
// passes the API server's dry run and no Secret the workflow declares
// would replace one that is not the scheduler's.
func cmdRun(ctx context.Context, o *options, file string) (int, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return exitUsage, err
	}
	wf, err := workflow.Parse(file, data)
	if err != nil {
		return exitUsage, err
	}
	store, err := sqlitestore.Open(ctx, o.db)
	if err != nil {
		return exitFailed, err
	}
	defer store.Close()
	lk, err := acquireLock(o.db)
	if err != nil {
		return exitFailed, err
	}
	defer lk.release()

	cl, err := connect(ctx, o, true)
	if err != nil {
		return exitFailed, err
	}
	defer cl.Close()
	ns := namespaceFor(o, wf)
	execID, err := store.ExecutorID(ctx)
	if err != nil {
		return exitFailed, err
	}
	builder, err := newBuilder(o, wf, ns)
	if err != nil {
		return exitUsage, err
	}
	if err := preflight(ctx, cl, builder, wf, ns, execID); err != nil {
		return exitUsage, err
	}
	if err := applySecrets(ctx, cl, wf, ns); err != nil {
		var conflict *secretConflictError
		if errors.As(err, &conflict) {
			return exitUsage, err
		}
		return exitFailed, err
	}
	ids := make([]string, len(wf.Tasks))
	for i, t := range wf.Tasks {
		ids[i] = t.ID
	}
	run, err := store.CreateRun(ctx, sqlitestore.Run{Workflow: wf.ID, Source: file, Definition: data, Namespace: ns, Cluster: cl.id}, ids)
	if err != nil {
		return exitFailed, err
	}
	fmt.Fprintf(o.stdout, "Run %s of workflow %s (%d tasks) in namespace %s, database %s\n", run.ID, wf.ID, len(wf.Tasks), ns, o.db)
	return drive(ctx, o, store, cl, wf, run, builder, execID)
}

// cmdResume continues an unfinished run.
func cmdResume(ctx context.Context, o *options, runID string) (int, error) {
	store, err := sqlitestore.Open(ctx, o.db)
	if err != nil {
		return exitFailed, err
	}
	defer store.Close()
	lk, err := acquireLock(o.db)
	if err != nil {
		return exitFailed, err
	}
	defer lk.release()
	run, err := findRun(ctx, store, runID, true)
	if err != nil {
		return exitFailed, err
	}
	if run.State.Terminal() {
		fmt.Fprintf(o.stdout, "Run %s is over (%s): nothing to resume.\n", run.ID, run.State)
		return runExitCode(run.State), nil
	}
	return resumeRun(ctx, o, store, run)
}

// resumeRun connects to the run's cluster and drives the run.
func resumeRun(ctx context.Context, o *options, store *sqlitestore.Store, run sqlitestore.Run) (int, error) {
	wf, err := workflow.Parse(run.Source, run.Definition)
	if err != nil {
		return exitFailed, fmt.Errorf("run %s: its stored workflow no longer parses: %w", run.ID, err)
	}
	if o.kubeconfig == "" {
		return exitFailed, fmt.Errorf("run %s: resume needs the --kubeconfig of the cluster the run is on. A run on the embedded dev cluster cannot be resumed (%s); `scheduler cancel %s` marks it cancelled", run.ID, embeddedNote, run.ID)
	}
	cl, err := connect(ctx, o, false)
	if err != nil {
		return exitFailed, err
	}
	defer cl.Close()
	if cl.id != run.Cluster {
		return exitFailed, fmt.Errorf("run %s ran on another cluster (kube-system uid %s; this one is %s): its pods are not here. Pass the --kubeconfig of that cluster", run.ID, run.Cluster, cl.id)
	}
	if o.namespace != "" && o.namespace != run.Namespace {
		return exitUsage, usageError{fmt.Errorf("run %s runs in namespace %s, not %s", run.ID, run.Namespace, o.namespace)}
	}
	execID, err := store.ExecutorID(ctx)
	if err != nil {
		return exitFailed, err
	}
	builder, err := newBuilder(o, wf, run.Namespace)
	if err != nil {
		return exitUsage, err
	}
	fmt.Fprintf(o.stdout, "Resuming run %s of workflow %s in namespace %s\n", run.ID, wf.ID, run.Namespace)
	return drive(ctx, o, store, cl, wf, run, builder, execID)
}

// findRun returns the run with id, or, when id is "", the latest run
// (the latest unfinished one when unfinished is set).
func findRun(ctx context.Context, store *sqlitestore.Store, id string, unfinished bool) (sqlitestore.Run, error) {
	if id != "" {
		return store.GetRun(ctx, id)
	}
	runs, err := store.ListRuns(ctx, 1, unfinished)
	if err != nil {
		return sqlitestore.Run{}, err
	}
	if len(runs) == 0 {
		if unfinished {
			return sqlitestore.Run{}, fmt.Errorf("no unfinished run in %s", store.Path())
		}
		return sqlitestore.Run{}, fmt.Errorf("no run in %s yet: start one with `scheduler run FILE`", store.Path())
	}
	return runs[0], nil
}

func namespaceFor(o *options, wf *workflow.Workflow) string {
	switch {
	case o.namespace != "":
		return o.namespace
	case wf.Namespace != "":
		return wf.Namespace
	}
	return podtemplate.DefaultNamespace
}

// newBuilder returns the pod builder: the base template (--pod-template,
// or kubexec's restricted default running as uid 65534) and the XCom
// channel: each task may write a value, JSON or text, to the file named by
// $KUBEXEC_XCOM_PATH, its termination message unless its pod override
// chooses the sidecar channel (annotation xcom.kubexec.io/channel:
// sidecar), and JSON only if it asks for it (xcom.kubexec.io/format:
// json). Each task's timeout is its pod's deadline through its TaskSpec
// (driver.Spec). It needs no executor id: the executor hands its own in
// each TaskSpec.
func newBuilder(o *options, wf *workflow.Workflow, ns string) (podtemplate.Builder, error) {
	var base *corev1.Pod
	if o.podTemplate != "" {
		var err error
		if base, err = podtemplate.LoadTemplate(o.podTemplate); err != nil {
			return nil, err
		}
	} else {
		base = podtemplate.DefaultTemplate()
		// The default template says runAsNonRoot; most images default to
		// root, so run as "nobody".
		nobody := int64(65534)
		base.Spec.SecurityContext.RunAsUser = &nobody
		base.Spec.SecurityContext.RunAsGroup = &nobody
	}
	return podtemplate.New(base, podtemplate.Config{
		Namespace: ns,
		Middleware: []podtemplate.Middleware{
			driver.RequireXComMiddleware(wf),
			xcom.Middleware(xcom.PodConfig{Channel: xcom.ChannelTerminationMessage}),
		},
	})
}

// preflight builds every task's first pod and has the API server check it
// with a dry run, so that a pod the cluster would reject is reported
// before anything of the run exists. The pods carry execID, as the
// executor's will. An identity that may not create pods skips the dry run:
// the executor reports its missing permissions.
func preflight(ctx context.Context, cl *cluster, builder podtemplate.Builder, wf *workflow.Workflow, ns, execID string) error {
	if _, err := cl.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("namespace %q does not exist: create it (kubectl create namespace %s) or pick another with --namespace", ns, ns)
		}
		return fmt.Errorf("namespace %q: %w", ns, err)
	}
	// Without the right to create pods there is nothing to dry-run: the
	// executor's Start then names every permission that is missing, with
	// the fix, and explain shows it for the run's tasks.
	if missing, err := executor.MissingPermissions(ctx, cl.client, []executor.Permission{{Namespace: ns, Resource: "pods", Verb: "create"}}); err == nil && len(missing) > 0 {
		return nil
	}
	probe := sqlitestore.Run{ID: "preflight", Workflow: wf.ID, Namespace: ns}
	var problems []*workflow.Error
	for _, t := range wf.Tasks {
		spec := driver.Spec(probe, t, 1)
		spec.ExecutorID = execID
		pod, err := builder.Build(ctx, spec)
		if err == nil {
			_, err = cl.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if executor.IsQuotaExceeded(err) {
				// A full quota is a wait, not a defect of the workflow:
				// the executor keeps the attempt queued until there is
				// room (explain says which quota).
				err = nil
			}
			if err != nil {
				err = fmt.Errorf("the API server rejected the task's pod (dry run): %w", err)
			}
		}
		if err != nil {
			field := ""
			if !t.Override.IsZero() {
				field = "podOverride"
			}
			problems = append(problems, &workflow.Error{File: wf.Source, Line: t.Line, Task: t.ID, Field: field, Problem: err.Error()})
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("nothing was started: %w", &workflow.ValidationError{Problems: problems})
	}
	return nil
}

// The Secrets a workflow declares carry the label secretManagedByLabel =
// secretManagedBy (the scheduler created them) and the annotation
// secretWorkflowAnnotation (the workflow that declared them).
// applySecrets replaces only Secrets that carry the label.
const (
	secretManagedByLabel     = "app.kubernetes.io/managed-by"
	secretManagedBy          = "kubexec-scheduler"
	secretWorkflowAnnotation = "scheduler.kubexec.io/workflow"
)

// secretConflictError says that a Secret the workflow declares exists and
// is not the scheduler's to replace: it was not created by the scheduler
// (owner is ""), or it was for another workflow, with other content.
type secretConflictError struct {
	namespace, name string
	workflow        string // the workflow that declares it
	owner           string // the workflow whose Secret it is, or "" if not the scheduler's
}

func (e *secretConflictError) Error() string {
	if e.owner == "" {
		return fmt.Sprintf("Secret %s/%s already exists and was not created by the scheduler (it lacks the label %s=%s), so the secrets: section of workflow %s does not replace it, and the run was not started. "+
			"Give the workflow's Secret another name (its secrets[].name and the tasks' references to it); or, to use the existing Secret as it is, drop it from secrets: and keep the tasks' references; "+
			"or, if the existing Secret is no longer needed, delete it (kubectl -n %s delete secret %s)",
			e.namespace, e.name, secretManagedByLabel, secretManagedBy, e.workflow, e.namespace, e.name)
	}
	return fmt.Sprintf("Secret %s/%s was created by the scheduler for workflow %s, with other content, so the secrets: section of workflow %s does not replace it, and the run was not started. "+
		"Give the Secret another name in one of the two workflows, or declare the same content in both",
		e.namespace, e.name, e.owner, e.workflow)
}

// applySecrets creates the Secrets the workflow declares. A Secret of the
// same name may already exist: the scheduler's own (it has the label) for
// this workflow, or without a workflow annotation, is updated to the
// declared content; one for another workflow is used as it is if its
// content is the declared one. Any other is left alone and the run refused
// (*secretConflictError). All are checked before any is written, so a
// refusal writes none, unless the Secret in the way appears meanwhile.
func applySecrets(ctx context.Context, cl *cluster, wf *workflow.Workflow, ns string) error {
	secrets := cl.client.CoreV1().Secrets(ns)
	for _, s := range wf.Secrets {
		cur, err := secrets.Get(ctx, s.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err), apierrors.IsForbidden(err):
			// Created below; an identity that may not read Secrets
			// finds out there whether the name is taken.
			continue
		case err != nil:
			return fmt.Errorf("secret %s/%s: %w", ns, s.Name, err)
		}
		if _, err := secretUpdate(cur, wf.ID, s); err != nil {
			return err
		}
	}
	for _, s := range wf.Secrets {
		if err := applySecret(ctx, secrets, wf.ID, ns, s); err != nil {
			return err
		}
	}
	return nil
}

func applySecret(ctx context.Context, secrets corev1client.SecretInterface, workflowID, ns string, s workflow.Secret) error {
	want := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:        s.Name,
			Namespace:   ns,
			Labels:      map[string]string{secretManagedByLabel: secretManagedBy},
			Annotations: map[string]string{secretWorkflowAnnotation: workflowID},
		},
		Type: corev1.SecretTypeOpaque,
		Data: secretData(s),
	}
	_, err := secrets.Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// Read, check and write again if someone changed it meanwhile.
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := secrets.Get(ctx, s.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			update, err := secretUpdate(cur, workflowID, s)
			if err != nil || update == nil {
				return err
			}
			_, err = secrets.Update(ctx, update, metav1.UpdateOptions{})
			return err
		})
	}
	var conflict *secretConflictError
	if err != nil && !errors.As(err, &conflict) {
		return fmt.Errorf("secret %s/%s: %w", ns, s.Name, err)
	}
	return err
}

// secretUpdate decides what to do with cur, an existing Secret of the name
// that workflow workflowID declares as s: it returns the Secret to write
// (nil when cur is usable as it is), or a *secretConflictError when cur is
// not the scheduler's to replace.
func secretUpdate(cur *corev1.Secret, workflowID string, s workflow.Secret) (*corev1.Secret, error) {
	owner := cur.Annotations[secretWorkflowAnnotation]
	same := cur.Type == corev1.SecretTypeOpaque && maps.EqualFunc(cur.Data, secretData(s), bytes.Equal)
	switch {
	case cur.Labels[secretManagedByLabel] != secretManagedBy:
		return nil, &secretConflictError{namespace: cur.Namespace, name: cur.Name, workflow: workflowID}
	case owner != "" && owner != workflowID:
		if same {
			return nil, nil
		}
		return nil, &secretConflictError{namespace: cur.Namespace, name: cur.Name, workflow: workflowID, owner: owner}
	case same && owner == workflowID:
		return nil, nil
	}
	up := cur.DeepCopy()
	up.Data, up.StringData = secretData(s), nil
	if up.Annotations == nil {
		up.Annotations = map[string]string{}
	}
	up.Annotations[secretWorkflowAnnotation] = workflowID
	return up, nil
}

func secretData(s workflow.Secret) map[string][]byte {
	data := make(map[string][]byte, len(s.StringData))
	for k, v := range s.StringData {
		data[k] = []byte(v)
	}
	return data
}

// drive runs the executor and the run's driver until the run ends or ctx
// is done, showing progress, then prints the final table.
func drive(ctx context.Context, o *options, store *sqlitestore.Store, cl *cluster, wf *workflow.Workflow, run sqlitestore.Run, builder podtemplate.Builder, execID string) (int, error) {
	cfg := executor.Config{
		ExecutorID:  execID,
		Namespace:   run.Namespace,
		Parallelism: o.parallelism,
		Builder:     builder,
		// Succeeded pods are deleted (their logs are archived first),
		// failed ones kept for explain until cleanup; --keep-pods keeps
		// all.
		GC:     executor.GCPolicy{KeepOnSuccess: o.keepPods},
		Logger: o.logger,
		// The workflow file's podOverride is a task author's: every pod
		// must pass the policy (--pod-policy sets its level).
		Policy: podtemplate.Policy{Level: podtemplate.Level(o.podPolicy)},
	}
	// XCom values go to the database, next to the results that refer to
	// them.
	collector, err := xcom.NewCollector(cl.client, cl.rest, store.XCom(), xcom.Config{Logger: o.logger})
	if err != nil {
		return exitFailed, err
	}
	cfg.XCom = collector
	// Logs are archived before pods go, so they outlive them.
	logService, _, err := newLogs(o, cl.client, run.Namespace)
	if err != nil {
		return exitFailed, err
	}
	cfg.LogArchiver = logService
	if o.metricsAddr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		m, err := prommetrics.New(reg)
		if err != nil {
			return exitFailed, err
		}
		cfg.Metrics = m
		stop, addr, err := serveMetrics(o.metricsAddr, reg)
		if err != nil {
			return exitFailed, err
		}
		defer stop()
		fmt.Fprintf(o.stderr, "Metrics on http://%s/metrics\n", addr)
	}
	exec, err := executor.New(cl.rest, store, cfg)
	if err != nil {
		return exitFailed, err
	}
	if err := exec.Start(ctx); err != nil {
		return exitFailed, err
	}
	// stopExecutor waits for the results of ended attempts to be saved,
	// their logs archived and their pods released, within a bound. It is
	// called before the final table, so that the table says where each
	// attempt's logs are; later calls do nothing.
	stopExecutor := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := exec.Stop(sctx); err != nil {
			fmt.Fprintf(o.stderr, "scheduler: %v\n", err)
		}
	}
	defer stopExecutor()

	prog := newProgress(o, store, exec, wf, run)
	d, err := driver.New(driver.Config{Store: store, Executor: exec, Workflow: wf, RunID: run.ID, Notef: prog.Notef, Logger: o.logger})
	if err != nil {
		return exitFailed, err
	}
	pctx, stopProgress := context.WithCancel(context.WithoutCancel(ctx))
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		prog.Loop(pctx)
	}()
	final, runErr := d.Run(ctx)
	stopProgress()
	<-progressDone
	stopExecutor()

	if runErr != nil {
		if ctx.Err() == nil {
			return exitFailed, runErr
		}
		// Interrupted.
		bg := context.Background()
		if cl.dev != nil {
			_ = store.FinishRun(bg, run.ID, sqlitestore.RunFailed, "interrupted: "+embeddedNote)
			final, _ = store.GetRun(bg, run.ID)
			printFinal(bg, o, store, cl, wf, final)
			fmt.Fprintf(o.stderr, "Interrupted: %s.\n", embeddedNote)
			return exitStopped, nil
		}
		final, _ = store.GetRun(bg, run.ID)
		printFinal(bg, o, store, cl, wf, final)
		fmt.Fprintf(o.stderr, "Interrupted: run %s goes on without a scheduler (its pods keep running); `scheduler --kubeconfig %s --db %s resume %s` continues it.\n",
			run.ID, o.kubeconfig, o.db, run.ID)
		return exitStopped, nil
	}
	printFinal(ctx, o, store, cl, wf, final)
	return runExitCode(final.State), nil
}

func runExitCode(s sqlitestore.RunState) int {
	if s == sqlitestore.RunSucceeded {
		return exitOK
	}
	return exitFailed
}

// serveMetrics serves reg on addr; a bare ":port" listens on loopback.
func serveMetrics(addr string, reg *prometheus.Registry) (stop func(), bound string, err error) {
	if strings.HasPrefix(addr, ":") {
		addr = "127.0.0.1" + addr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "scheduler: metrics server: %v\n", err)
		}
	}()
	return func() { _ = srv.Close() }, ln.Addr().String(), nil
}
