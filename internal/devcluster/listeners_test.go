package devcluster

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TestListenersOnLoopback: the dev cluster is a development tool, not a
// sandbox (its etcd has no authentication, its nodes run pods as host
// processes), so nothing of it may be reachable from another machine.
// With a node of every kind, every socket that a process of the cluster
// (a component, or a process it started) listens on, TCP or UDP, is bound
// to a loopback address.
func TestListenersOnLoopback(t *testing.T) {
	c := StartForTest(t, Options{Nodes: 1, KubeletNodes: 1, KwokNodes: 1})

	c.mu.Lock()
	components := []*process{c.etcd, c.apiserver, c.controller, c.scheduler, c.kwok}
	for _, a := range c.nodes {
		components = append(components, a.proc)
	}
	for _, k := range c.kubelets {
		components = append(components, k.holder, k.containerd, k.kubelet)
	}
	roots := map[int]string{}
	for _, p := range components {
		roots[p.cmd.Process.Pid] = p.name
	}
	// containerd's shims leave its process tree.
	for _, k := range c.kubelets {
		for _, pid := range k.shimPids() {
			roots[pid] = k.containerd.name + " shim"
		}
	}
	// The components that serve something: each must be seen listening
	// before the check, so that it is not made before they are up.
	serving := []string{c.etcd.name, c.apiserver.name, c.controller.name, c.scheduler.name}
	for _, a := range c.nodes {
		serving = append(serving, a.proc.name)
	}
	for _, k := range c.kubelets {
		serving = append(serving, k.kubelet.name)
	}
	c.mu.Unlock()

	var found []socketListener
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 3*time.Minute, true, func(context.Context) (bool, error) {
		var err error
		found, err = clusterListeners(roots)
		if err != nil {
			return false, err
		}
		for _, name := range serving {
			if !slices.ContainsFunc(found, func(l socketListener) bool { return l.component == name }) {
				return false, nil
			}
		}
		return true, nil
	})
	require.NoError(t, err, "not every component listens yet: %v", found)
	for _, l := range found {
		t.Logf("%s", l)
		require.True(t, l.addr.Addr().IsLoopback(), "%s listens on a non-loopback address", l)
	}
}

// socketListener is a listening TCP socket, or a bound and unconnected UDP
// socket, of a process of the cluster.
type socketListener struct {
	component string // the component whose process tree holds it
	pid       int
	command   string
	proto     string // tcp, tcp6, udp, udp6
	addr      netip.AddrPort
}

func (l socketListener) String() string {
	return fmt.Sprintf("%s (pid %d, %s) on %s %s", l.component, l.pid, l.command, l.proto, l.addr)
}

// clusterListeners returns the listening sockets held by the processes in
// roots (pid -> component) and by all their descendants, from /proc: each
// process's socket inodes (/proc/PID/fd) matched against the listening
// entries of its network namespace's tables (/proc/PID/net/tcp, tcp6, udp
// and udp6).
func clusterListeners(roots map[int]string) ([]socketListener, error) {
	procs, err := descendants(roots)
	if err != nil {
		return nil, err
	}
	var out []socketListener
	for pid, component := range procs {
		inodes, err := socketInodes(pid)
		if err != nil {
			if gone(err) {
				continue
			}
			return nil, err
		}
		if len(inodes) == 0 {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		for _, table := range []string{"tcp", "tcp6", "udp", "udp6"} {
			listening, err := listenTable(fmt.Sprintf("/proc/%d/net/%s", pid, table))
			if err != nil {
				if gone(err) {
					continue
				}
				return nil, err
			}
			for inode, addr := range listening {
				if inodes[inode] {
					out = append(out, socketListener{component: component, pid: pid, command: strings.TrimSpace(string(comm)), proto: table, addr: addr})
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b socketListener) int { return strings.Compare(a.String(), b.String()) })
	return out, nil
}

// gone reports whether err is that of a process that exited meanwhile.
func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}

// descendants returns the processes in roots and all their descendants,
// each with the component of its root.
func descendants(roots map[int]string) (map[int]string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
		fields := strings.Fields(rest)
		if len(fields) < 2 {
			continue
		}
		ppid, err := strconv.Atoi(fields[1])
		if err != nil {
			continue
		}
		children[ppid] = append(children[ppid], pid)
	}
	out := map[int]string{}
	var walk func(pid int, component string)
	walk = func(pid int, component string) {
		if _, seen := out[pid]; seen {
			return
		}
		out[pid] = component
		for _, child := range children[pid] {
			walk(child, component)
		}
	}
	for pid, component := range roots {
		walk(pid, component)
	}
	return out, nil
}

// socketInodes returns the inodes of the sockets process pid has open.
func socketInodes(pid int) (map[uint64]bool, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	inodes := map[uint64]bool{}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if s, ok := strings.CutPrefix(target, "socket:["); ok {
			if inode, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64); err == nil {
				inodes[inode] = true
			}
		}
	}
	return inodes, nil
}

// Socket states in /proc/net/tcp and udp: a listening TCP socket, and an
// unconnected UDP socket (which receives from anyone).
const (
	tcpListen = "0A"
	udpClose  = "07"
)

// listenTable returns the listening sockets of a /proc/net table (tcp,
// tcp6, udp, udp6), by inode: LISTEN for TCP, unconnected for UDP.
func listenTable(path string) (map[uint64]netip.AddrPort, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[uint64]netip.AddrPort{}
	s := bufio.NewScanner(f)
	s.Scan() // the header
	for s.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
		fields := strings.Fields(s.Text())
		if len(fields) < 10 {
			continue
		}
		want := tcpListen
		if strings.HasPrefix(filepath.Base(path), "udp") {
			want = udpClose // a connected UDP socket is ESTABLISHED (01)
		}
		if fields[3] != want {
			continue
		}
		addr, err := parseProcAddr(fields[1])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		inode, err := strconv.ParseUint(fields[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: inode %q: %w", path, fields[9], err)
		}
		out[inode] = addr
	}
	return out, s.Err()
}

// parseProcAddr parses an address of /proc/net/tcp{,6}: the IP as 32-bit
// words in hex, each in the machine's byte order, then ':' and the port
// in hex.
func parseProcAddr(s string) (netip.AddrPort, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address %q: no port", s)
	}
	raw, err := hex.DecodeString(ipHex)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q: bad IP", s)
	}
	ip := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(ip[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: bad port", s)
	}
	addr, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

func TestParseProcAddr(t *testing.T) {
	t.Parallel()
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the cases are written for a little-endian machine")
	}
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000:0050":                         "0.0.0.0:80",
		"0200007F:2710":                         "127.0.0.2:10000",
		"00000000000000000000000001000000:0016": "[::1]:22",
		"00000000000000000000000000000000:0016": "[::]:22",
		"0000000000000000FFFF00000100007F:0016": "127.0.0.1:22",
	} {
		got, err := parseProcAddr(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got.String(), in)
	}
}
