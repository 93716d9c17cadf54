package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// procSpec is one container process to start.
type procSpec struct {
	init     initConfig
	logFile  *logFile
	memLimit int64  // bytes; 0 means none
	cgroup   string // cgroup name under the agent's, when memLimit is set
}

// procResult is how a container process ended.
type procResult struct {
	exitCode   int32
	oomKilled  bool
	finishedAt time.Time
}

// process is a running container: PID 1 of its own PID namespace, so when
// it exits the kernel kills whatever it left behind.
type process struct {
	cmd    *exec.Cmd
	pid    int
	cgroup string
	mem    *memoryEnforcer
	done   chan struct{}
	result procResult

	rssKilled chan struct{} // closed when the RSS watcher killed it
	rssOnce   sync.Once
}

// startProcess starts a container: the agent binary re-executed as
// containerInit in new mount, PID and UTS namespaces, with Pdeathsig so it
// dies with the agent. It returns once the container's command has been
// exec'd, or an error saying why it could not be.
func startProcess(spec procSpec, mem *memoryEnforcer) (*process, error) {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer cfgW.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		return nil, err
	}
	defer errR.Close()
	// One pipe for stdout and stderr keeps the order in which the process
	// wrote its lines; pods/log serves them merged anyway.
	outR, outW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		errW.Close()
		return nil, err
	}

	cmd := exec.Command("/proc/self/exe", containerInitArg)
	cmd.Env = []string{}
	cmd.Stdout = outW
	cmd.Stderr = outW
	cmd.ExtraFiles = []*os.File{cfgR, errW}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS,
		Pdeathsig:  syscall.SIGKILL,
	}
	err = cmd.Start()
	cfgR.Close()
	errW.Close()
	outW.Close()
	if err != nil {
		outR.Close()
		return nil, fmt.Errorf("start the container process: %w", err)
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, mem: mem, done: make(chan struct{}), rssKilled: make(chan struct{})}
	abort := func(err error) (*process, error) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		outR.Close()
		mem.remove(p.cgroup)
		return nil, err
	}

	if spec.memLimit > 0 && mem.cgroupMode() {
		p.cgroup, err = mem.create(spec.cgroup, spec.memLimit)
		if err == nil {
			err = mem.join(p.cgroup, p.pid)
		}
		if err != nil {
			return abort(fmt.Errorf("memory cgroup: %w", err))
		}
	}
	if err := json.NewEncoder(cfgW).Encode(spec.init); err != nil {
		return abort(fmt.Errorf("send the container config: %w", err))
	}
	cfgW.Close()

	var pumps sync.WaitGroup
	pumps.Go(func() { spec.logFile.pump(outR, "stdout") })

	// fd 4 is closed on exec: EOF with nothing read means the command runs.
	msg, _ := io.ReadAll(errR)
	if len(msg) > 0 {
		_ = cmd.Wait()
		pumps.Wait()
		mem.remove(p.cgroup)
		return nil, errors.New(string(msg))
	}

	if spec.memLimit > 0 && !mem.cgroupMode() {
		go mem.watchRSS(p, spec.memLimit)
	}
	go func() {
		err := cmd.Wait()
		p.result.finishedAt = time.Now()
		p.result.exitCode = exitCode(cmd.ProcessState, err)
		// PID 1 is gone, so the kernel is killing the rest of the namespace;
		// their end of the log pipes closes with them.
		waitTimeout(&pumps, 5*time.Second)
		spec.logFile.finish()
		if p.cgroup != "" {
			p.result.oomKilled = mem.oomKilled(p.cgroup)
			mem.remove(p.cgroup)
		}
		select {
		case <-p.rssKilled:
			p.result.oomKilled = true
		default:
		}
		close(p.done)
	}()
	return p, nil
}

func exitCode(ps *os.ProcessState, err error) int32 {
	if ps == nil {
		if err != nil {
			return 128
		}
		return 0
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int32(ws.Signal())
	}
	return int32(ps.ExitCode())
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// signal sends sig to the container's PID 1. As in any container, PID 1
// only receives SIGTERM if it handles it; SIGKILL always ends it.
func (p *process) signal(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// oomKill is the RSS watcher's kill.
func (p *process) oomKill() {
	p.rssOnce.Do(func() { close(p.rssKilled) })
	p.signal(syscall.SIGKILL)
}
