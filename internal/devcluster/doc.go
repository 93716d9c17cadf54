// Package devcluster runs a real Kubernetes control plane on this machine
// for kubexec's tests and examples: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler built from the Go module proxy
// (`make devcluster`), plus optional process nodes that run each container's
// command as a local process, kubelet nodes (the real kubelet with
// containerd), and kwok nodes, which run nothing: kwok writes the statuses
// of their pods (kwok.go).
//
// Every component listens on a free loopback port chosen at start, so two
// clusters can run at once (TestListenersOnLoopback checks every socket
// the cluster's processes listen on). The cluster generates its own CA and
// certificates; the client identity it hands out is in system:masters
// (cluster-admin). ServiceAccount admission and the controller-manager's
// service account and token controllers are on, as in a real cluster.
//
// A dev cluster is a development tool, not a sandbox: process nodes run
// each container as a process of this machine, in its network, as any
// user the pod asks for (root included), with hostPath folders mounted
// read-write, and etcd has no authentication, so anyone on the machine can
// read and change the cluster's data. Run only trusted pods on it.
//
// Each component logs to <Dir>/<name>.log. Children are started with
// Pdeathsig, so they die with the process that started them even when it is
// killed; Stop stops them all by process id.
//
// Fault hooks: StopAPIServer, StartAPIServer and RestartAPIServer keep etcd's
// data; CompactEtcd makes old resourceVersions return 410 Gone.
//
// Tests use Main (one cluster per package, from TestMain) or StartForTest
// (one cluster per test) and make a namespace per test with NewNamespace.
package devcluster
