package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	utilexec "k8s.io/utils/exec"
)

func (r *podRuntime) findCtr(name string) *ctr {
	for _, c := range append(append([]*ctr{}, r.initCs...), r.mainCs...) {
		if c.spec.Name == name {
			return c
		}
	}
	return nil
}

// logs serves a container's log, with the kubelet's errors for containers
// that have none yet.
func (r *podRuntime) logs(ctx context.Context, container string, opts api.ContainerLogOpts) (io.ReadCloser, error) {
	r.mu.Lock()
	podName := r.pod.Name
	c := r.findCtr(container)
	if c == nil {
		r.mu.Unlock()
		return nil, errdefs.InvalidInputf("container %q in pod %q is not available", container, podName)
	}
	var path string
	var live *logFile
	switch {
	case opts.Previous:
		if c.prevLogPath == "" {
			r.mu.Unlock()
			return nil, errdefs.InvalidInputf("previous terminated container %q in pod %q not found", container, podName)
		}
		path = c.prevLogPath
	case c.logPath != "":
		path, live = c.logPath, c.log
	default:
		reason := "ContainerCreating"
		if c.state.Waiting != nil && c.state.Waiting.Reason != "" {
			reason = c.state.Waiting.Reason
		}
		r.mu.Unlock()
		switch reason {
		case "ErrImagePull":
			return nil, errdefs.InvalidInputf("container %q in pod %q is waiting to start: image can't be pulled", container, podName)
		case "ImagePullBackOff":
			return nil, errdefs.InvalidInputf("container %q in pod %q is waiting to start: trying and failing to pull image", container, podName)
		}
		return nil, errdefs.InvalidInputf("container %q in pod %q is waiting to start: %s", container, podName, reason)
	}
	r.mu.Unlock()

	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(readLogs(ctx, path, live, opts, pw))
	}()
	return pr, nil
}

// exec runs cmd in a running container's mount, UTS and PID namespaces
// (nsenter), with its environment, user and working folder, and returns
// its exit code the way the kubelet's exec handler expects.
func (r *podRuntime) exec(ctx context.Context, container string, cmd []string, attach api.AttachIO) error {
	if len(cmd) == 0 {
		return errdefs.InvalidInput("no command given")
	}
	r.mu.Lock()
	c := r.findCtr(container)
	if c == nil {
		r.mu.Unlock()
		return errdefs.NotFoundf("container %q not found in pod %q", container, r.pod.Name)
	}
	if c.proc == nil || c.proc.exited() {
		r.mu.Unlock()
		return fmt.Errorf("container %q in pod %q is not running", container, r.pod.Name)
	}
	pid, env, uid, gid := c.proc.pid, c.env, c.uid, c.gid
	r.mu.Unlock()

	args := []string{"--target", strconv.Itoa(pid), "--mount", "--uts", "--pid", "--root", "--wd"}
	if uid != nil {
		args = append(args, "--setuid", strconv.FormatInt(*uid, 10))
	}
	if gid != nil {
		args = append(args, "--setgid", strconv.FormatInt(*gid, 10))
	}
	args = append(args, "--")
	args = append(args, cmd...)
	x := exec.CommandContext(ctx, "nsenter", args...)
	x.Env = env
	if in := attach.Stdin(); in != nil {
		x.Stdin = in
	}
	if out := attach.Stdout(); out != nil {
		x.Stdout = out
	}
	if errOut := attach.Stderr(); errOut != nil {
		x.Stderr = errOut
	}
	x.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	x.WaitDelay = time.Second
	err := x.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code := exitCode(exitErr.ProcessState, err)
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: int(code)}
	}
	if err != nil {
		return fmt.Errorf("exec in container %q: %w", container, err)
	}
	return nil
}
