package devcluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"iter"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one running binary of the cluster. Its stdout and stderr are
// appended to a log file in the cluster's folder, so a restart keeps the
// earlier log.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}

	mu  sync.Mutex
	err error
}

// startProcess starts binary (a file in Options.BinDir) with args. The child
// gets SIGKILL when the process that started it dies (Pdeathsig), so a
// killed test binary leaves nothing behind.
func (c *Cluster) startProcess(name, binary string, args ...string) (*process, error) {
	return c.startCommand(name, filepath.Join(c.opts.BinDir, binary), nil, args...)
}

// startCommand starts the program at path with args, and env added to this
// process's environment, as startProcess does.
func (c *Cluster) startCommand(name, path string, env []string, args ...string) (*process, error) {
	logPath := filepath.Join(c.dir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "==== %s starting %s %s\n", time.Now().Format(time.RFC3339Nano), path, strings.Join(args, " "))
	cmd := exec.Command(path, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Dir = c.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("devcluster: start %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	c.opts.Logf("devcluster: started %s (pid %d, log %s)", name, cmd.Process.Pid, logPath)
	return p, nil
}

// running reports whether the process has not exited yet.
func (p *process) running() bool {
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *process) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// stop sends SIGTERM to the process's group, then SIGKILL after grace, and
// waits for it to exit. A nil or exited process is a no-op.
func (p *process) stop(grace time.Duration) error {
	if !p.running() {
		return nil
	}
	pgid := -p.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(pgid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("devcluster: %s (pid %d) did not exit after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// kill sends SIGKILL to the process's group and waits for it to exit.
func (p *process) kill() error { return p.stop(0) }

// logTails returns the last n lines of each component's log, for error
// messages and failed tests.
func (c *Cluster) logTails(n int) string {
	var b strings.Builder
	procs := []*process{c.etcd, c.apiserver, c.controller, c.scheduler}
	for _, a := range c.nodes {
		procs = append(procs, a.proc)
	}
	for _, k := range c.kubelets {
		procs = append(procs, k.containerd, k.kubelet)
	}
	procs = append(procs, c.kwok)
	for _, p := range procs {
		if p == nil {
			continue
		}
		fmt.Fprintf(&b, "---- last %d lines of %s\n", n, p.logPath)
		lines, err := tail(p.logPath, n)
		if err != nil {
			fmt.Fprintf(&b, "(%v)\n", err)
			continue
		}
		for _, l := range lines {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func tail(path string, n int) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	if err := s.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		return lines, err
	}
	return lines, nil
}

func splitLines(data []byte) iter.Seq[string] {
	return func(yield func(string) bool) {
		for line := range bytes.Lines(data) {
			if !yield(strings.TrimSpace(string(line))) {
				return
			}
		}
	}
}
