package logs_test

import (
	"context"
	"fmt"
	"os"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/logs"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Follow an attempt's logs as kubectl logs -f would, from its pod while it
// runs and from the archive once it is gone.
func ExampleService_Copy() {
	var config *rest.Config // the cluster's, e.g. from clientcmd
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		panic(err)
	}
	sink, err := logs.NewFileSink("/var/lib/scheduler/logs")
	if err != nil {
		panic(err)
	}
	svc, err := logs.New(client, sink, logs.Config{Namespace: "airflow"})
	if err != nil {
		panic(err)
	}
	key := kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "2026-01-02", MapIndex: kubexec.NotMapped, Attempt: 1}
	err = svc.Copy(context.Background(), os.Stdout, key, logs.Options{Follow: true, Timestamps: true, AllContainers: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

// Lines gives each line with its container and time; a Note line is
// kubexec's own, such as where an archive was truncated.
func ExampleService_Lines() {
	var svc *logs.Service // from logs.New
	key := kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", MapIndex: kubexec.NotMapped, Attempt: 1}
	for line, err := range svc.Lines(context.Background(), key, logs.Options{TailLines: 100}) {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			break
		}
		if line.Note {
			fmt.Print("-- ")
		}
		fmt.Println(line.Time.Format("15:04:05.000"), line.Text)
	}
}
