package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/examples/scheduler/driver"
	"github.com/kubexec/kubexec/examples/scheduler/sqlitestore"
	"github.com/kubexec/kubexec/logs"
)

// Logs: the executor archives each attempt's logs (logs.Service as its
// LogArchiver) once its result is saved and before its pod is deleted or
// released, into a folder next to the database. `scheduler logs` reads
// them through the same Service: from the pod while it exists, from the
// archive once it is gone.

// logDir is the folder of the log archives of the database db:
// .kubexec/scheduler-logs for .kubexec/scheduler.db.
func logDir(db string) string {
	base := strings.TrimSuffix(filepath.Base(db), filepath.Ext(db))
	return filepath.Join(filepath.Dir(db), base+"-logs")
}

// newLogs returns the log service of the database in o.db, reading pods
// with client, and its sink.
func newLogs(o *options, client kubernetes.Interface, namespace string) (*logs.Service, *logs.FileSink, error) {
	sink, err := logs.NewFileSink(logDir(o.db))
	if err != nil {
		return nil, nil, err
	}
	svc, err := logs.New(client, sink, logs.Config{Namespace: namespace, Logger: o.logger})
	if err != nil {
		return nil, nil, err
	}
	return svc, sink, nil
}

// archivePath returns the file of key's log archive, or "" when its logs
// are not archived.
func archivePath(sink *logs.FileSink, key kubexec.TaskKey) string {
	path, err := sink.Path(key)
	if err != nil {
		return ""
	}
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	return path
}

// logsWhere says where the logs of attempt a (key) are, for the LOGS
// column: its archive once archived, else its pod; with a cluster, "none"
// when the pod is gone too.
func logsWhere(ctx context.Context, sink *logs.FileSink, cl *cluster, key kubexec.TaskKey, a sqlitestore.Attempt) string {
	if path := archivePath(sink, key); path != "" {
		return path
	}
	if cl != nil {
		_, err := cl.client.CoreV1().Pods(a.Namespace).Get(ctx, a.PodName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "none (pod deleted, not archived)"
		}
	}
	return "pod/" + a.PodName
}

// cmdLogs prints the logs of a task's attempt: from its pod while it
// exists (with --follow, until it ends), from the archive once the pod is
// gone. Without the run's cluster (no --kubeconfig, or another cluster)
// only the archive is read.
func cmdLogs(ctx context.Context, o *options, ref string) error {
	store, err := openExisting(ctx, o)
	if err != nil {
		return err
	}
	defer store.Close()
	run, task, err := resolveTask(ctx, store, ref)
	if err != nil {
		return err
	}
	a, err := pickAttempt(ctx, store, run, task, o.attempt)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("%s/%s attempt %d", run.ID, task.TaskID, a.Attempt)

	// noLive says why the pod cannot be read, when it cannot.
	var client kubernetes.Interface
	var noLive error
	if o.kubeconfig == "" {
		noLive = errNoCluster
	} else {
		cl, err := connect(ctx, o, false)
		if err != nil {
			return err
		}
		if cl.id == run.Cluster {
			client = cl.client
		} else {
			noLive = fmt.Errorf("run %s ran on another cluster (kube-system uid %s, not %s): pass the --kubeconfig of that cluster", run.ID, run.Cluster, cl.id)
		}
	}
	if client == nil {
		client = noPodsClient()
	}
	svc, _, err := newLogs(o, client, a.Namespace)
	if err != nil {
		return err
	}
	err = svc.Copy(ctx, o.stdout, driver.Key(run, task.TaskID, a.Attempt), logs.Options{Namespace: a.Namespace, Follow: o.follow})
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return nil // --follow interrupted
	case errors.Is(err, logs.ErrNotFound) && noLive != nil:
		if a.Result == nil {
			return fmt.Errorf("the logs of %s are not archived yet (it has not ended): they are in its pod %s/%s, which only the run's cluster has: %w", what, a.Namespace, a.PodName, noLive)
		}
		return fmt.Errorf("the logs of %s were not archived (its pod was released without them, e.g. by a scheduler that did not archive logs): only its pod %s/%s may have them, on the run's cluster: %w", what, a.Namespace, a.PodName, noLive)
	case errors.Is(err, logs.ErrNotFound):
		return fmt.Errorf("the pod %s/%s of %s is gone (deleted after it ended, by `scheduler cleanup`, or by someone else) and its logs were not archived: there are none to show",
			a.Namespace, a.PodName, what)
	case errors.Is(err, logs.ErrNotStarted):
		return fmt.Errorf("%s has not started yet (pod %s/%s): --follow waits for it; `scheduler explain %s/%s` says what it waits for", what, a.Namespace, a.PodName, run.ID, task.TaskID)
	}
	return fmt.Errorf("logs of %s (pod %s/%s): %w; `scheduler explain %s/%s` says more", what, a.Namespace, a.PodName, err, run.ID, task.TaskID)
}

// noPodsClient returns a client of a cluster without pods: it answers
// every request with 404 Not Found, without a network. A logs.Service
// that reads through it serves archives only, for runs whose cluster is
// gone or not given.
func noPodsClient() kubernetes.Interface {
	c, err := kubernetes.NewForConfig(&rest.Config{Host: "http://no-cluster.invalid", Transport: notFound{}})
	if err != nil {
		panic(err) // the config is valid
	}
	return c
}

type notFound struct{}

func (notFound) RoundTrip(req *http.Request) (*http.Response, error) {
	body := `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"no cluster: only archived logs can be read"}`
	return &http.Response{
		StatusCode: http.StatusNotFound,
		Status:     "404 Not Found",
		Header:     http.Header{"Content-Type": []string{"application/json"}},
		Body:       io.NopCloser(strings.NewReader(body)),
		Request:    req,
	}, nil
}
