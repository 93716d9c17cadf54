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

// A minimal host: it queues one attempt and waits for its result, with no
// ticker: Queue launches at once while a slot is open, and the result is
// in the StateStore when Wait returns it.
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
	key := kubexec.TaskKey{WorkflowID: "etl", TaskID: "load_users", RunID: "2026-11-27", MapIndex: kubexec.NotMapped, Attempt: 1}
	if err := exec.Queue(podtemplate.TaskSpec{
		Key:       key,
		Image:     "python:3.13",
		Command:   []string{"python", "-c", "print('loaded')"},
		RunAsUser: new(int64(1000)),
	}); err != nil {
		log.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	r, err := exec.Wait(waitCtx, key)
	if err != nil {
		log.Fatal(err) // ErrStopped, or the host's deadline
	}
	fmt.Println(r.Reason, r.Reason.Retryable(), r.Message)
}
