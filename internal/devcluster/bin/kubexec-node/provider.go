package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"
)

type providerConfig struct {
	cfg        *config
	nodeName   string
	dir        string // this node's folder
	client     kubernetes.Interface
	pods       corev1listers.PodLister
	secrets    corev1listers.SecretLister
	configMaps corev1listers.ConfigMapLister
	recorder   record.EventRecorder
	mem        *memoryEnforcer
	log        *slog.Logger
}

// provider is the virtual-kubelet provider of one node: a
// node.PodLifecycleHandler and node.PodNotifier whose pods are podRuntimes,
// plus the logs and exec handlers of the kubelet API.
type provider struct {
	providerConfig
	ctx context.Context // the agent's lifetime

	mu       sync.Mutex
	runtimes map[string]*podRuntime // by namespace/name

	notifyMu sync.Mutex
	notify   func(*corev1.Pod)
}

func newProvider(ctx context.Context, c providerConfig) *provider {
	return &provider{providerConfig: c, ctx: ctx, runtimes: map[string]*podRuntime{}}
}

func podKey(namespace, name string) string { return namespace + "/" + name }

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

// CreatePod starts running a pod. Problems with the pod itself (an image,
// a volume, a missing Secret) show in its status, as on a kubelet; they are
// never an error here, which virtual-kubelet would turn into a failed pod.
func (p *provider) CreatePod(_ context.Context, pod *corev1.Pod) error {
	key := podKey(pod.Namespace, pod.Name)
	p.mu.Lock()
	if old, ok := p.runtimes[key]; ok {
		if old.uid == pod.UID {
			p.mu.Unlock()
			old.update(pod)
			return nil
		}
		// A new pod under the name of one that is gone from the API.
		delete(p.runtimes, key)
		go old.terminate(0, stopDeleted, false, true)
	}
	r := newPodRuntime(p, pod)
	p.runtimes[key] = r
	p.mu.Unlock()
	r.start()
	return nil
}

// UpdatePod takes the pod's new metadata and spec (labels, annotations,
// activeDeadlineSeconds).
func (p *provider) UpdatePod(ctx context.Context, pod *corev1.Pod) error {
	r := p.runtime(pod.Namespace, pod.Name)
	if r == nil || r.uid != pod.UID {
		return p.CreatePod(ctx, pod)
	}
	r.update(pod)
	return nil
}

// DeletePod stops the pod's containers: SIGTERM, then SIGKILL after the
// grace period. While the pod is still in the API (graceful deletion), the
// agent then writes its final status and releases it with a zero-grace
// delete, as the kubelet does; once it is gone from the API, the pod's
// folder is removed.
func (p *provider) DeletePod(_ context.Context, pod *corev1.Pod) error {
	r := p.runtime(pod.Namespace, pod.Name)
	if r == nil && ranBefore(pod) && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
		// Deleted while an earlier agent ran it: report its containers
		// lost, then release it.
		p.mu.Lock()
		if r = p.runtimes[podKey(pod.Namespace, pod.Name)]; r == nil {
			r = newPodRuntime(p, pod)
			p.runtimes[r.key] = r
			defer r.start()
		}
		p.mu.Unlock()
	}
	if r == nil || (pod.UID != "" && r.uid != pod.UID) {
		return errdefs.NotFoundf("pod %s/%s is not on node %s", pod.Namespace, pod.Name, p.nodeName)
	}
	inAPI := false
	if cur, err := p.pods.Pods(pod.Namespace).Get(pod.Name); err == nil && cur.UID == r.uid {
		inAPI = true
	}
	grace := gracePeriod(pod)
	r.terminate(grace, stopDeleted, inAPI, !inAPI)
	return nil
}

// gracePeriod is the pod's deletion grace period, at least 2 s as the
// kubelet has it.
func gracePeriod(pod *corev1.Pod) time.Duration {
	g := int64(corev1.DefaultTerminationGracePeriodSeconds)
	switch {
	case pod.DeletionGracePeriodSeconds != nil:
		g = *pod.DeletionGracePeriodSeconds
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		g = *pod.Spec.TerminationGracePeriodSeconds
	}
	if g < 2 {
		g = 2
	}
	return time.Duration(g) * time.Second
}

func (p *provider) GetPod(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	r := p.runtime(namespace, name)
	if r == nil {
		return nil, errdefs.NotFoundf("pod %s/%s is not on node %s", namespace, name, p.nodeName)
	}
	return r.podWithStatus(), nil
}

func (p *provider) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	pod, err := p.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

func (p *provider) GetPods(context.Context) ([]*corev1.Pod, error) {
	p.mu.Lock()
	rs := make([]*podRuntime, 0, len(p.runtimes))
	for _, r := range p.runtimes {
		rs = append(rs, r)
	}
	p.mu.Unlock()
	pods := make([]*corev1.Pod, 0, len(rs))
	for _, r := range rs {
		pods = append(pods, r.podWithStatus())
	}
	return pods, nil
}

// NotifyPods registers virtual-kubelet's status callback.
func (p *provider) NotifyPods(_ context.Context, f func(*corev1.Pod)) {
	p.notifyMu.Lock()
	defer p.notifyMu.Unlock()
	p.notify = f
}

func (p *provider) notifyPod(pod *corev1.Pod) {
	p.notifyMu.Lock()
	f := p.notify
	p.notifyMu.Unlock()
	if f != nil {
		f(pod)
	}
}

func (p *provider) runtime(namespace, name string) *podRuntime {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runtimes[podKey(namespace, name)]
}

// forget drops r once its pod is gone from the API.
func (p *provider) forget(r *podRuntime) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.runtimes[r.key] == r {
		delete(p.runtimes, r.key)
	}
}

func (p *provider) allocatable() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:              p.cfg.cpu,
		corev1.ResourceMemory:           p.cfg.memory,
		corev1.ResourceEphemeralStorage: p.cfg.ephemeralStorage,
	}
}

// shutdown kills every container: the agent is stopping.
func (p *provider) shutdown() {
	p.mu.Lock()
	rs := make([]*podRuntime, 0, len(p.runtimes))
	for _, r := range p.runtimes {
		rs = append(rs, r)
	}
	p.mu.Unlock()
	for _, r := range rs {
		r.terminate(0, stopShutdown, false, false)
		r.killAll()
	}
	for _, r := range rs {
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			p.log.Warn("a pod's processes did not exit after SIGKILL", "pod", r.key)
		}
	}
}

// GetContainerLogs serves pods/log.
func (p *provider) GetContainerLogs(ctx context.Context, namespace, podName, containerName string, opts api.ContainerLogOpts) (io.ReadCloser, error) {
	r := p.runtime(namespace, podName)
	if r == nil {
		// A pod that ended under an earlier agent: its logs are on disk.
		pod, err := p.pods.Pods(namespace).Get(podName)
		if err != nil {
			return nil, errdefs.NotFoundf("pod %q cannot be found - no logs available", podName)
		}
		r = newPodRuntime(p, pod)
		r.finished = true
	}
	return r.logs(ctx, containerName, opts)
}

// RunInContainer serves pods/exec.
func (p *provider) RunInContainer(ctx context.Context, namespace, podName, containerName string, cmd []string, attach api.AttachIO) error {
	r := p.runtime(namespace, podName)
	if r == nil {
		return errdefs.NotFoundf("pod %q not found", podName)
	}
	return r.exec(ctx, containerName, cmd, attach)
}

// AttachToContainer serves pods/attach, which is not supported: containers
// have no stdin and no terminal.
func (p *provider) AttachToContainer(_ context.Context, _, podName, containerName string, _ api.AttachIO) error {
	return fmt.Errorf("attach to container %q in pod %q: not supported by the kubexec process node", containerName, podName)
}

func (p *provider) podDir(uid string) string { return filepath.Join(p.dir, "pods", uid) }

// removeOrphans removes the folders of pods that an earlier agent for this
// node ran and that are gone from the API. Call it once the pod informer
// has synced.
func (p *provider) removeOrphans() {
	known := map[string]bool{}
	if pods, err := p.pods.List(labels.Everything()); err == nil {
		for _, pod := range pods {
			known[string(pod.UID)] = true
		}
	} else {
		return
	}
	p.mu.Lock()
	for _, r := range p.runtimes {
		known[string(r.uid)] = true
	}
	p.mu.Unlock()
	entries, _ := os.ReadDir(filepath.Join(p.dir, "pods"))
	for _, e := range entries {
		if !known[e.Name()] {
			p.log.Info("removing the folder of a pod that is gone", "uid", e.Name())
			_ = os.RemoveAll(p.podDir(e.Name()))
		}
	}
}
