package executor_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/podtemplate"
)

// A minimal host: it queues one attempt, drives the executor with a
// heartbeat, and reads the attempt's result from its StateStore.
func Example() {
	restConfig, err := clientcmd.BuildConfigFromFlags("", "/path/to/kubeconfig")
	if err != nil {
		log.Fatal(err)
	}
	store := executor.NewMemoryStore() // a real host saves results in its database
	exec, err := executor.New(restConfig, store, executor.Config{
		ExecutorID: "scheduler-0", // the same id after a restart resumes its pods
		Namespace:  "etl",
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if err := exec.Start(ctx); err != nil {
		log.Fatal(err) // for example a *executor.PermissionError naming what to grant
	}
	defer exec.Stop(context.Background())

	// python:3.13 runs as root, and the default template requires a
	// non-root user (runAsNonRoot, the "restricted" standard): the attempt
	// names one, or its pod would end with ConfigError.
	asUser, err := podtemplate.ParseOverride("example", []byte("spec: {securityContext: {runAsUser: 1000}}"))
	if err != nil {
		log.Fatal(err)
	}
	key := kubexec.TaskKey{WorkflowID: "etl", TaskID: "load_users", RunID: "2026-11-27", MapIndex: kubexec.NotMapped, Attempt: 1}
	if err := exec.Queue(podtemplate.TaskSpec{
		Key:      key,
		Image:    "python:3.13",
		Command:  []string{"python", "-c", "print('loaded')"},
		Override: asUser,
	}); err != nil {
		log.Fatal(err)
	}
	for {
		if err := exec.Heartbeat(); err != nil {
			log.Fatal(err)
		}
		if r, ok, _ := store.LoadResult(ctx, key); ok {
			fmt.Println(r.Reason, r.Reason.Retryable(), r.Message)
			return
		}
		time.Sleep(time.Second)
	}
}
