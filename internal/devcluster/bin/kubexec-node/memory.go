package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const cgroupMemoryRoot = "/sys/fs/cgroup/memory"

// memoryEnforcer enforces resources.limits.memory, in one of two modes:
//
//   - cgroup: each limited container runs in its own cgroup v1 memory group
//     (under the agent's own) with memory.limit_in_bytes set, so going over
//     is a kernel OOM kill, seen in memory.oom_control's oom_kill count.
//   - rss: where the memory controller is not writable, the agent samples
//     the resident memory of every process in the container's PID
//     namespace and sends SIGKILL to PID 1 when the sum is over the limit.
type memoryEnforcer struct {
	mode     string
	base     string // cgroup mode: the agent's folder of groups
	interval time.Duration
	reason   string // why rss mode was chosen in auto mode
}

func newMemoryEnforcer(mode string, interval time.Duration) (*memoryEnforcer, error) {
	m := &memoryEnforcer{mode: "rss", interval: interval}
	if mode == "rss" {
		m.reason = "--memory-enforcement=rss"
		slog.Info("memory limits: watching each container's process RSS", "interval", interval, "why", m.reason)
		return m, nil
	}
	base, err := m.setupCgroup()
	if err == nil {
		m.mode, m.base = "cgroup", base
		slog.Info("memory limits: cgroup v1 memory controller, a kernel OOM kill", "cgroup", base)
		return m, nil
	}
	if mode == "cgroup" {
		return nil, fmt.Errorf("--memory-enforcement=cgroup: %w", err)
	}
	m.reason = err.Error()
	slog.Info("memory limits: the cgroup memory controller is not writable, watching each container's process RSS instead", "interval", interval, "why", err)
	return m, nil
}

// setupCgroup makes the agent's folder in its own memory cgroup, so that
// the host's accounting of the agent still covers its containers. Empty
// folders of earlier agents that were killed are removed.
func (m *memoryEnforcer) setupCgroup() (string, error) {
	own, err := ownMemoryCgroup()
	if err != nil {
		return "", err
	}
	parent := filepath.Join(cgroupMemoryRoot, own)
	if _, err := os.Stat(filepath.Join(parent, "memory.limit_in_bytes")); err != nil {
		return "", fmt.Errorf("no cgroup v1 memory controller at %s: %w", parent, err)
	}
	old, _ := filepath.Glob(filepath.Join(parent, "kubexec-node-*"))
	for _, dir := range old {
		// Another agent's folder stays while that agent lives.
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(dir), "kubexec-node-"))
		if err == nil && syscall.Kill(pid, 0) == nil {
			continue
		}
		removeCgroupTree(dir)
	}
	base := filepath.Join(parent, fmt.Sprintf("kubexec-node-%d", os.Getpid()))
	if err := os.Mkdir(base, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("create %s: %w", base, err)
	}
	probe := filepath.Join(base, "probe")
	if err := os.Mkdir(probe, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", probe, err)
	}
	defer os.Remove(probe)
	if err := os.WriteFile(filepath.Join(probe, "memory.limit_in_bytes"), []byte("104857600"), 0o644); err != nil {
		return "", fmt.Errorf("set a memory limit in %s: %w", probe, err)
	}
	return base, nil
}

func ownMemoryCgroup() (string, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			if c == "memory" {
				return parts[2], nil
			}
		}
	}
	return "", errors.New("no cgroup v1 memory controller in /proc/self/cgroup")
}

// removeCgroupTree removes dir and its sub-groups, deepest first. Groups that
// still hold processes stay.
func removeCgroupTree(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroupTree(filepath.Join(dir, e.Name()))
		}
	}
	_ = os.Remove(dir)
}

func (m *memoryEnforcer) cgroupMode() bool { return m.mode == "cgroup" }

func (m *memoryEnforcer) describe() string {
	if m.cgroupMode() {
		return "cgroup v1 memory controller (" + m.base + ")"
	}
	return "process RSS watch every " + m.interval.String() + " (" + m.reason + ")"
}

// create makes the memory group name with the given limit.
func (m *memoryEnforcer) create(name string, limit int64) (string, error) {
	dir := filepath.Join(m.base, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	v := []byte(strconv.FormatInt(limit, 10))
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), v, 0o644); err != nil {
		_ = os.Remove(dir)
		return "", err
	}
	// No escape into swap, where there is any.
	_ = os.WriteFile(filepath.Join(dir, "memory.memsw.limit_in_bytes"), v, 0o644)
	_ = os.WriteFile(filepath.Join(dir, "memory.swappiness"), []byte("0"), 0o644)
	return dir, nil
}

func (m *memoryEnforcer) join(dir string, pid int) error {
	return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
}

// oomKilled reports whether the kernel OOM-killed a process of the group.
func (m *memoryEnforcer) oomKilled(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n > 0
		}
	}
	// Kernels before 4.13 have no oom_kill count: a failed charge at the
	// limit is the best sign left.
	data, err = os.ReadFile(filepath.Join(dir, "memory.failcnt"))
	if err != nil {
		return false
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return n > 0
}

// remove deletes a group once its processes are gone.
func (m *memoryEnforcer) remove(dir string) {
	if dir == "" {
		return
	}
	for range 50 {
		if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (m *memoryEnforcer) close() {
	if m.base != "" {
		removeCgroupTree(m.base)
	}
}

// watchRSS kills p when the processes of its PID namespace use more than
// limit bytes of resident memory.
func (m *memoryEnforcer) watchRSS(p *process, limit int64) {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p.pid))
	if err != nil {
		return
	}
	page := int64(os.Getpagesize())
	ticker := time.NewTicker(m.interval)
	defer ticker.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-ticker.C:
		}
		if rss := namespaceRSS(ns, page); rss > limit {
			slog.Info("container over its memory limit: SIGKILL", "pid", p.pid, "rss", rss, "limit", limit)
			p.oomKill()
			return
		}
	}
}

// namespaceRSS sums the resident memory of the processes in PID namespace
// ns (a /proc/<pid>/ns/pid link).
func namespaceRSS(ns string, page int64) int64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var total int64
	for _, e := range entries {
		name := e.Name()
		if name[0] < '0' || name[0] > '9' {
			continue
		}
		if link, err := os.Readlink("/proc/" + name + "/ns/pid"); err != nil || link != ns {
			continue
		}
		data, err := os.ReadFile("/proc/" + name + "/statm")
		if err != nil {
			continue
		}
		fields := bytes.Fields(data)
		if len(fields) < 2 {
			continue
		}
		pages, _ := strconv.ParseInt(string(fields[1]), 10, 64)
		total += pages * page
	}
	return total
}
