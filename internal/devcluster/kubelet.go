package devcluster

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"
)

// A kubelet node is the real kubelet of the control plane's version, with
// Debian's containerd and runc, on this machine:
//
//   - kubelet and containerd run in a mount namespace of their own, held by
//     a sleeping process. In it, files holding the values the kubelet wants
//     are bind-mounted over the sysctls it checks (vm.overcommit_memory,
//     kernel.panic, ...; it runs with protectKernelDefaults, so it never
//     writes them), and tmpfs over the host paths containerd and the
//     kubelet write to (/run/containerd, /run/netns, /var/log/containers),
//     so the host is left as it was and every mount goes away with the
//     namespace.
//   - Everything else is under the cluster's folder (<Dir>/kubelet-i):
//     containerd's root and state, the kubelet's root, pod logs,
//     certificates, the CNI plugin and its addresses.
//   - Pods get their cgroups under a cgroup root of the node's own
//     (/kubexec-<random> in each hierarchy), removed on stop.
//   - The node is named after its address, 127.0.0.2 for the first (the
//     kubelet refuses a loopback node IP unless it is the node's name), and
//     serves on it; the API server reaches it there for logs and exec.
//   - Pod networking stays inside each pod: the CNI plugin
//     (kubelet-net.sh) gives eth0 an address whose veth peer is in the same
//     namespace. hostNetwork pods share the host's loopback.
//   - Images come from this machine only (images.go). containerd is told to
//     reach every registry through 127.0.0.1:1, where nothing listens, so a
//     missing image is a real ErrImagePull and no packet leaves the machine.

// Binaries and programs a kubelet node needs.
const (
	kubeletBinary = "kubelet"
	pauseBinary   = "kubexec-pause"
	// KubeletNodeLabel is set to "true" on kubelet nodes; process nodes
	// carry ProcessNodeLabel. It is also the key of the taint of
	// Options.KubeletNodeTaint.
	KubeletNodeLabel = "kubexec.io/kubelet-node"
	// ProcessNodeLabel is set to "true" on process nodes.
	ProcessNodeLabel = "kubexec.io/process-node"
	// noRegistry is where containerd is sent for every registry: a loopback
	// port nothing listens on, so a pull fails at once.
	noRegistry = "127.0.0.1:1"
)

// hostPackages are the programs a kubelet node runs, and the Debian package
// of each (installed by internal/devcluster/bin/install-packages.sh).
var hostPackages = []struct{ path, pkg string }{
	{"/usr/bin/containerd", "containerd"},
	{"/usr/bin/containerd-shim-runc-v2", "containerd"},
	{"/usr/bin/ctr", "containerd"},
	{"/usr/sbin/runc", "runc"},
	{"/usr/lib/cni/loopback", "containernetworking-plugins"},
	{busyboxBinary, "busybox-static"},
	{"/usr/bin/unshare", "util-linux"},
	{"/usr/bin/nsenter", "util-linux"},
	{"/usr/bin/flock", "util-linux"},
	{"/usr/sbin/ip", "iproute2"},
}

// kubeletSysctls are the sysctls the kubelet checks at start, with the
// values it wants (setupKernelTunables). In the node's mount namespace each
// is covered by a file holding that value, and the kubelet runs with
// protectKernelDefaults, so it never writes one: if the cover were missing,
// it would refuse to start ("invalid kernel flag") rather than change the
// host.
var kubeletSysctls = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// hostTmpfs are host paths containerd and the kubelet write to whatever
// their configuration says; the node mounts a tmpfs over each in its mount
// namespace.
var hostTmpfs = []string{"/run/containerd", "/run/netns", "/var/log/containers"}

//go:embed kubelet-net.sh
var podNetPlugin []byte

// kubeletNode is one kubelet node and the processes it runs.
type kubeletNode struct {
	name        string // also its IP address
	dir         string
	port        int
	healthzPort int
	cgroupRoot  string // e.g. /kubexec-0123abcd

	holder, containerd, kubelet *process
	createdDirs                 []string
}

func (k *kubeletNode) socket() string { return filepath.Join(k.dir, "containerd", "containerd.sock") }

// checkKubeletHost reports what a kubelet node needs that this machine
// lacks.
func (c *Cluster) checkKubeletHost() error {
	var missing, pkgs []string
	for _, b := range []string{kubeletBinary, pauseBinary} {
		if _, err := os.Stat(filepath.Join(c.opts.BinDir, b)); err != nil {
			return fmt.Errorf("devcluster: binary %s not found in %s: run `make devcluster` in the project root to build it (or set KUBEXEC_DEVCLUSTER_BIN)", b, c.opts.BinDir)
		}
	}
	for _, p := range hostPackages {
		if _, err := os.Stat(p.path); err != nil {
			missing = append(missing, p.path)
			pkgs = append(pkgs, p.pkg)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("devcluster: a kubelet node needs %s: run `make devcluster` (it installs Debian's %s) or apt-get install them", strings.Join(missing, ", "), strings.Join(pkgs, " "))
	}
	if os.Geteuid() != 0 {
		return errors.New("devcluster: a kubelet node runs containerd and the kubelet, which need root")
	}
	return nil
}

// startKubeletNodes starts Options.KubeletNodes kubelet nodes and waits
// until they are Ready.
func (c *Cluster) startKubeletNodes(ctx context.Context) error {
	if err := c.checkKubeletHost(); err != nil {
		return err
	}
	for i := range c.opts.KubeletNodes {
		ports, err := freePorts(2)
		if err != nil {
			return err
		}
		var suffix [4]byte
		if _, err := rand.Read(suffix[:]); err != nil {
			return err
		}
		k := &kubeletNode{
			name:        "127.0.0." + strconv.Itoa(2+i),
			dir:         filepath.Join(c.dir, "kubelet-"+strconv.Itoa(i)),
			port:        ports[0],
			healthzPort: ports[1],
			cgroupRoot:  "/kubexec-" + hex.EncodeToString(suffix[:]),
		}
		c.mu.Lock()
		c.kubelets = append(c.kubelets, k)
		c.mu.Unlock()
		start := time.Now()
		if err := c.startKubelet(ctx, k); err != nil {
			return fmt.Errorf("devcluster: kubelet node %s: %w", k.name, err)
		}
		if err := c.waitReady(ctx, k.name, k.kubelet, k.containerd); err != nil {
			return err
		}
		c.opts.Logf("devcluster: kubelet node %s Ready %s after its start", k.name, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

func (c *Cluster) startKubelet(ctx context.Context, k *kubeletNode) error {
	for _, d := range []string{"containerd", "cni/bin", "cni/conf", "cni/state", "kubelet", "pod-logs", "images", "sysctl", "certs.d/_default", "pki"} {
		if err := os.MkdirAll(filepath.Join(k.dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := c.writeKubeletFiles(k); err != nil {
		return err
	}
	if err := k.makeCgroupRoot(); err != nil {
		return err
	}

	var err error
	k.holder, err = c.startCommand(k.logName("namespace"), "/usr/bin/unshare", nil,
		"--mount", "--propagation", "private", "--", "/bin/sleep", "infinity")
	if err != nil {
		return err
	}
	if err := c.waitNamespace(ctx, k); err != nil {
		return err
	}
	if err := k.prepareNamespace(ctx); err != nil {
		return err
	}

	// The proxy variables send every registry request to noRegistry too,
	// whatever a registry's hosts.toml says.
	env := []string{"HTTP_PROXY=http://" + noRegistry, "HTTPS_PROXY=http://" + noRegistry, "NO_PROXY=127.0.0.1,localhost"}
	k.containerd, err = c.startCommand(k.logName("containerd"), "/usr/bin/nsenter", env,
		append(k.enter(), "/usr/bin/containerd", "--config", filepath.Join(k.dir, "containerd", "config.toml"))...)
	if err != nil {
		return err
	}
	err = c.poll(ctx, "containerd of "+k.name, []*process{k.containerd}, func(ctx context.Context) (bool, error) {
		return exec.CommandContext(ctx, "/usr/bin/ctr", "--address", k.socket(), "version").Run() == nil, nil
	})
	if err != nil {
		return err
	}
	for _, img := range []string{"pause.tar", "busybox.tar"} {
		out, err := exec.CommandContext(ctx, "/usr/bin/ctr", "--address", k.socket(), "-n", "k8s.io",
			"images", "import", filepath.Join(k.dir, "images", img)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("import %s into containerd: %v: %s", img, err, out)
		}
	}

	k.kubelet, err = c.startCommand(k.logName("kubelet"), "/usr/bin/nsenter", nil,
		append(k.enter(), filepath.Join(c.opts.BinDir, kubeletBinary),
			"--config="+filepath.Join(k.dir, "kubelet-config.yaml"),
			"--kubeconfig="+filepath.Join(k.dir, "kubeconfig"),
			"--hostname-override="+k.name,
			"--root-dir="+filepath.Join(k.dir, "kubelet"),
			"--cert-dir="+filepath.Join(k.dir, "pki"),
			"--node-labels="+KubeletNodeLabel+"=true",
			"--v=2",
		)...)
	return err
}

func (k *kubeletNode) logName(component string) string {
	return filepath.Base(k.dir) + "-" + component
}

// enter is the nsenter prefix that runs a program in the node's mount
// namespace.
func (k *kubeletNode) enter() []string {
	return []string{"--target", strconv.Itoa(k.holder.cmd.Process.Pid), "--mount", "--"}
}

// waitNamespace waits until the holder runs sleep in a mount namespace of
// its own. Until then /proc/<pid>/ns/mnt is still the host's, and a mount
// made through it would land on the host.
func (c *Cluster) waitNamespace(ctx context.Context, k *kubeletNode) error {
	host, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return err
	}
	pid := strconv.Itoa(k.holder.cmd.Process.Pid)
	return c.poll(ctx, "the mount namespace of "+k.name, []*process{k.holder}, func(context.Context) (bool, error) {
		ns, err := os.Readlink(filepath.Join("/proc", pid, "ns", "mnt"))
		if err != nil || ns == host {
			return false, nil
		}
		comm, err := os.ReadFile(filepath.Join("/proc", pid, "comm"))
		return err == nil && strings.TrimSpace(string(comm)) == "sleep", nil
	})
}

// prepareNamespace covers the kubelet's sysctls and the host paths with
// tmpfs, inside the node's mount namespace. The script refuses to run in
// the host's mount namespace.
func (k *kubeletNode) prepareNamespace(ctx context.Context) error {
	host, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return err
	}
	var script strings.Builder
	fmt.Fprintf(&script, "set -e\n[ \"$(readlink /proc/self/ns/mnt)\" != %q ] || { echo 'in the host mount namespace' >&2; exit 1; }\n", host)
	for s := range kubeletSysctls {
		fmt.Fprintf(&script, "mount --bind %s /proc/sys/%s\n", filepath.Join(k.dir, "sysctl", strings.ReplaceAll(s, "/", ".")), s)
	}
	for _, p := range hostTmpfs {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			k.createdDirs = append(k.createdDirs, p)
		}
		fmt.Fprintf(&script, "mount -t tmpfs -o mode=0755 tmpfs %s\n", p)
	}
	args := append(k.enter(), "/bin/sh", "-c", script.String())
	if out, err := exec.CommandContext(ctx, "/usr/bin/nsenter", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("prepare the mount namespace: %v: %s", err, out)
	}
	return nil
}

// writeKubeletFiles writes the node's certificates, kubeconfig, kubelet and
// containerd configuration, CNI plugin and images.
func (c *Cluster) writeKubeletFiles(k *kubeletNode) error {
	ip := net.ParseIP(k.name)
	serial := time.Now().UnixNano()
	servingDER, servingKey, err := c.pki.issue(serial, pkix.Name{CommonName: k.name}, nil, []net.IP{ip}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return err
	}
	servingCert, servingKeyFile := filepath.Join(k.dir, "pki", "kubelet.crt"), filepath.Join(k.dir, "pki", "kubelet.key")
	if err := writeCertAndKey(servingCert, servingKeyFile, servingDER, servingKey); err != nil {
		return err
	}
	clientDER, clientKey, err := c.pki.issue(serial+1, pkix.Name{CommonName: "system:node:" + k.name, Organization: []string{"system:nodes"}}, nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return err
	}
	clientKeyPEM, err := keyPEM(clientKey)
	if err != nil {
		return err
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["devcluster"] = &clientcmdapi.Cluster{Server: c.restConfig.Host, CertificateAuthorityData: c.pki.caPEM}
	kc.AuthInfos["node"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: clientDER}),
		ClientKeyData:         clientKeyPEM,
	}
	kc.Contexts["node"] = &clientcmdapi.Context{Cluster: "devcluster", AuthInfo: "node"}
	kc.CurrentContext = "node"
	if err := clientcmd.WriteToFile(*kc, filepath.Join(k.dir, "kubeconfig")); err != nil {
		return err
	}

	grace := c.opts.NodeMonitorGracePeriod
	renew := min(max(grace/5, time.Second), 10*time.Second)
	resolv := filepath.Join(k.dir, "resolv.conf")
	if err := os.WriteFile(resolv, nil, 0o644); err != nil {
		return err
	}
	kubeletConfig := map[string]any{
		"apiVersion":                  "kubelet.config.k8s.io/v1beta1",
		"kind":                        "KubeletConfiguration",
		"address":                     k.name,
		"port":                        k.port,
		"healthzBindAddress":          k.name,
		"healthzPort":                 k.healthzPort,
		"readOnlyPort":                0,
		"tlsCertFile":                 servingCert,
		"tlsPrivateKeyFile":           servingKeyFile,
		"authentication":              map[string]any{"anonymous": map[string]any{"enabled": false}, "webhook": map[string]any{"enabled": true}, "x509": map[string]any{"clientCAFile": c.pki.caCertFile}},
		"authorization":               map[string]any{"mode": "Webhook"},
		"failCgroupV1":                false,
		"cgroupDriver":                "cgroupfs",
		"cgroupRoot":                  k.cgroupRoot,
		"cgroupsPerQOS":               true,
		"containerRuntimeEndpoint":    "unix://" + k.socket(),
		"imageServiceEndpoint":        "unix://" + k.socket(),
		"resolvConf":                  resolv,
		"oomScoreAdj":                 0,
		"failSwapOn":                  false,
		"makeIPTablesUtilChains":      false,
		"protectKernelDefaults":       true,
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		"evictionHard":                map[string]string{"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
		"podLogsDir":                  filepath.Join(k.dir, "pod-logs"),
		"maxPods":                     c.opts.NodePods,
		"serializeImagePulls":         false,
		"nodeStatusUpdateFrequency":   renew.String(),
		"nodeLeaseDurationSeconds":    max(int(grace/time.Second), 1),
		"syncFrequency":               "10s",
		"fileCheckFrequency":          "10s",
		"enableDebuggingHandlers":     true,
		"clusterDomain":               "cluster.local",
	}
	if c.opts.KubeletNodeTaint {
		kubeletConfig["registerWithTaints"] = []map[string]string{{"key": KubeletNodeLabel, "value": "true", "effect": "NoSchedule"}}
	}
	data, err := yaml.Marshal(kubeletConfig)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(k.dir, "kubelet-config.yaml"), data, 0o644); err != nil {
		return err
	}

	ctrd := filepath.Join(k.dir, "containerd")
	containerdConfig := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
oom_score = 0
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[6]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %[9]q
`, filepath.Join(ctrd, "root"), filepath.Join(ctrd, "state"), k.socket(), k.socket()+".ttrpc", pauseImage,
		filepath.Join(ctrd, "runc"), filepath.Join(k.dir, "cni", "bin"), filepath.Join(k.dir, "cni", "conf"), filepath.Join(k.dir, "certs.d"))
	if err := os.WriteFile(filepath.Join(ctrd, "config.toml"), []byte(containerdConfig), 0o644); err != nil {
		return err
	}
	hosts := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+noRegistry, "http://"+noRegistry)
	for _, h := range []string{"_default", "docker.io"} {
		if err := os.MkdirAll(filepath.Join(k.dir, "certs.d", h), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(k.dir, "certs.d", h, "hosts.toml"), []byte(hosts), 0o644); err != nil {
			return err
		}
	}

	if err := os.WriteFile(filepath.Join(k.dir, "cni", "bin", "kubexec-pod-net"), podNetPlugin, 0o755); err != nil {
		return err
	}
	if err := os.Symlink("/usr/lib/cni/loopback", filepath.Join(k.dir, "cni", "bin", "loopback")); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	netConf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"kubexec-pod-net","plugins":[{"type":"kubexec-pod-net","stateDir":%q}]}`, filepath.Join(k.dir, "cni", "state"))
	if err := os.WriteFile(filepath.Join(k.dir, "cni", "conf", "10-kubexec-pod-net.conflist"), []byte(netConf), 0o644); err != nil {
		return err
	}

	for s, v := range kubeletSysctls {
		if err := os.WriteFile(filepath.Join(k.dir, "sysctl", strings.ReplaceAll(s, "/", ".")), []byte(v+"\n"), 0o644); err != nil {
			return err
		}
	}

	busybox, err := busyboxImage()
	if err != nil {
		return err
	}
	pause, err := pauseImageFor(filepath.Join(c.opts.BinDir, pauseBinary))
	if err != nil {
		return err
	}
	if err := writeDockerArchive(filepath.Join(k.dir, "images", "busybox.tar"), busybox); err != nil {
		return err
	}
	return writeDockerArchive(filepath.Join(k.dir, "images", "pause.tar"), pause)
}

// cgroupHierarchies are the mounted cgroup hierarchies: each v1 controller
// folder of /sys/fs/cgroup, and the unified one.
func cgroupHierarchies() ([]string, error) {
	entries, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		p := filepath.Join("/sys/fs/cgroup", e.Name())
		if st, err := os.Lstat(p); err != nil || !st.IsDir() {
			continue // cpu,cpuacct style links
		}
		if _, err := os.Stat(filepath.Join(p, "cgroup.procs")); err == nil {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		// cgroup v2 alone: the unified hierarchy is /sys/fs/cgroup itself.
		out = append(out, "/sys/fs/cgroup")
	}
	return out, nil
}

// makeCgroupRoot creates the node's cgroup root in every hierarchy; the
// kubelet refuses a cgroup root that does not exist.
func (k *kubeletNode) makeCgroupRoot() error {
	hs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	for _, h := range hs {
		dir := filepath.Join(h, k.cgroupRoot)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		// A new cpuset group has no cpus and mems; give it its parent's.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(h, f)); err == nil {
				_ = os.WriteFile(filepath.Join(dir, f), v, 0o644)
			}
		}
	}
	return nil
}

// stop stops the kubelet, kills every process left in the node's cgroups
// and every containerd shim of the node, then containerd and the namespace
// holder, and removes the cgroups. Each process is found by its pid: from
// the cgroups' member lists and from the shims' command lines, which name
// this node's containerd socket.
func (k *kubeletNode) stop() error {
	var errs []error
	errs = append(errs, k.kubelet.stop(5*time.Second))
	hs, _ := cgroupHierarchies()
	for range 3 {
		for _, pid := range k.cgroupPids(hs) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		for _, pid := range k.shimPids() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if len(k.cgroupPids(hs)) == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	errs = append(errs, k.containerd.stop(5*time.Second), k.holder.stop(time.Second))
	errs = append(errs, k.removeCgroups(hs))
	for _, d := range k.createdDirs {
		_ = os.Remove(d) // only if empty; another node may use it
	}
	return errors.Join(errs...)
}

// cgroupPids lists the processes in the node's cgroups.
func (k *kubeletNode) cgroupPids(hs []string) []int {
	seen := map[int]bool{}
	var pids []int
	for _, h := range hs {
		_ = filepath.WalkDir(filepath.Join(h, k.cgroupRoot), func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			if err != nil {
				return nil
			}
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
					seen[pid] = true
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// shimPids lists the containerd shims started by this node's containerd:
// their command line carries its socket.
func (k *kubeletNode) shimPids() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) == 0 || !strings.HasSuffix(args[0], "containerd-shim-runc-v2") {
			continue
		}
		for i := range len(args) - 1 {
			if args[i] == "-address" && args[i+1] == k.socket() {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// removeCgroups removes the node's cgroup folders, deepest first, waiting
// for the kernel to let the last killed processes go.
func (k *kubeletNode) removeCgroups(hs []string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var left []string
		for _, h := range hs {
			root := filepath.Join(h, k.cgroupRoot)
			var dirs []string
			_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
					left = append(left, dirs[i])
				}
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("devcluster: cgroups not removed: %s", strings.Join(left, ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// KubeletToleration tolerates the taint of Options.KubeletNodeTaint.
var KubeletToleration = corev1.Toleration{Key: KubeletNodeLabel, Operator: corev1.TolerationOpEqual, Value: "true", Effect: corev1.TaintEffectNoSchedule}

// KubeletNodeNames returns the names of the cluster's kubelet nodes.
func (c *Cluster) KubeletNodeNames() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.kubelets))
	for _, k := range c.kubelets {
		names = append(names, k.name)
	}
	return names
}

// ContainerdSocket returns the containerd socket of kubelet node name, for
// `ctr --address <socket> -n k8s.io images import` of a user's own image.
func (c *Cluster) ContainerdSocket(name string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range c.kubelets {
		if k.name == name {
			return k.socket(), nil
		}
	}
	return "", fmt.Errorf("devcluster: no kubelet node named %q", name)
}
