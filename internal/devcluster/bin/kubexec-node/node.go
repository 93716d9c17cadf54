package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// runNode registers one node and runs its pod controller, node controller
// (status and Lease heartbeats) and kubelet API until ctx ends.
func runNode(ctx context.Context, cfg *config, client kubernetes.Interface, name string, port int, mem *memoryEnforcer) error {
	log := slog.With("node", name)
	nodeDir := filepath.Join(cfg.rootDir, name)
	if err := os.MkdirAll(nodeDir, 0o755); err != nil {
		return err
	}

	podFactory := informers.NewSharedInformerFactoryWithOptions(client, time.Minute, nodeutil.PodInformerFilter(name))
	objFactory := informers.NewSharedInformerFactory(client, time.Minute)
	podInformer := podFactory.Core().V1().Pods()
	secretInformer := objFactory.Core().V1().Secrets()
	configMapInformer := objFactory.Core().V1().ConfigMaps()
	serviceInformer := objFactory.Core().V1().Services()

	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&corev1client.EventSinkImpl{Interface: client.CoreV1().Events(corev1.NamespaceAll)})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: name})

	p := newProvider(ctx, providerConfig{
		cfg:        cfg,
		nodeName:   name,
		dir:        nodeDir,
		client:     client,
		pods:       podInformer.Lister(),
		secrets:    secretInformer.Lister(),
		configMaps: configMapInformer.Lister(),
		recorder:   recorder,
		mem:        mem,
		log:        log,
	})
	defer p.shutdown()

	pc, err := node.NewPodController(node.PodControllerConfig{
		PodClient:         &statusPatcher{PodsGetter: client.CoreV1()},
		PodInformer:       podInformer,
		EventRecorder:     recorder,
		Provider:          p,
		SecretInformer:    secretInformer,
		ConfigMapInformer: configMapInformer,
		ServiceInformer:   serviceInformer,
		// The provider resolves env itself, the kubelet's way: a missing
		// Secret is a CreateContainerConfigError, not a failed pod.
		SkipDownwardAPIResolution: true,
	})
	if err != nil {
		return err
	}

	nodeObj := newNodeObject(cfg, name, port)
	nc, err := node.NewNodeController(node.NewNaiveNodeProvider(), nodeObj, client.CoreV1().Nodes(),
		node.WithNodeEnableLeaseV1WithRenewInterval(client.CoordinationV1().Leases(corev1.NamespaceNodeLease), cfg.leaseDuration, cfg.renewInterval),
		node.WithNodeStatusUpdateInterval(cfg.statusInterval),
		node.WithNodePingInterval(cfg.renewInterval),
		node.WithNodeStatusUpdateErrorHandler(func(ctx context.Context, err error) error {
			if !apierrors.IsNotFound(err) {
				return err
			}
			// Someone deleted the Node: register it again.
			log.Info("the node object is gone; registering it again")
			_, err = client.CoreV1().Nodes().Create(ctx, newNodeObject(cfg, name, port), metav1.CreateOptions{})
			return err
		}),
	)
	if err != nil {
		return err
	}

	stopHTTP, err := serveKubeletAPI(ctx, cfg, name, port, p, podInformer.Lister())
	if err != nil {
		return err
	}
	defer stopHTTP()

	podFactory.Start(ctx.Done())
	objFactory.Start(ctx.Done())
	defer podFactory.Shutdown()
	defer objFactory.Shutdown()

	pcCtx, pcCancel := context.WithCancel(ctx)
	defer func() {
		pcCancel()
		<-pc.Done()
	}()
	go pc.Run(pcCtx, cfg.workers) //nolint:errcheck // reported through pc.Err
	select {
	case <-ctx.Done():
		return nil
	case <-pc.Done():
		return fmt.Errorf("pod controller: %w", pc.Err())
	case <-pc.Ready():
	}
	p.removeOrphans()

	ncCtx, ncCancel := context.WithCancel(ctx)
	defer func() {
		ncCancel()
		<-nc.Done()
	}()
	go nc.Run(ncCtx) //nolint:errcheck // reported through nc.Err
	select {
	case <-ctx.Done():
		return nil
	case <-nc.Done():
		return fmt.Errorf("node controller: %w", nc.Err())
	case <-nc.Ready():
	}
	log.Info("node registered and ready", "address", cfg.address, "kubeletPort", port, "memoryEnforcement", mem.describe(),
		"leaseDurationSeconds", cfg.leaseDuration, "leaseRenewInterval", cfg.renewInterval)

	select {
	case <-ctx.Done():
		return nil
	case <-pc.Done():
		return fmt.Errorf("pod controller stopped: %w", pc.Err())
	case <-nc.Done():
		return fmt.Errorf("node controller stopped: %w", nc.Err())
	}
}

// newNodeObject is the Node as the agent registers it: Ready, with the
// configured capacity, its address and its kubelet endpoint.
func newNodeObject(cfg *config, name string, port int) *corev1.Node {
	now := metav1.Now()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              cfg.cpu,
		corev1.ResourceMemory:           cfg.memory,
		corev1.ResourceEphemeralStorage: cfg.ephemeralStorage,
		corev1.ResourcePods:             *resource.NewQuantity(cfg.pods, resource.DecimalSI),
	}
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	var uts syscall.Utsname
	kernel := ""
	if syscall.Uname(&uts) == nil {
		kernel = utsString(uts.Release[:])
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				corev1.LabelHostname:      name,
				corev1.LabelOSStable:      runtime.GOOS,
				corev1.LabelArchStable:    runtime.GOARCH,
				"type":                    "virtual-kubelet",
				"kubexec.io/process-node": "true",
				"node.kubernetes.io/exclude-from-external-load-balancers": "true",
			},
		},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity.DeepCopy(),
			Phase:       corev1.NodeRunning,
			Conditions: []corev1.NodeCondition{
				cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
				cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
				cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
				cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"),
			},
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: cfg.address},
				{Type: corev1.NodeHostName, Address: name},
			},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(port)}},
			NodeInfo: corev1.NodeSystemInfo{
				KubeletVersion:          cfg.kubeletVersion,
				OperatingSystem:         runtime.GOOS,
				Architecture:            runtime.GOARCH,
				KernelVersion:           kernel,
				OSImage:                 osImage(),
				ContainerRuntimeVersion: "kubexec-node://" + version,
			},
		},
	}
}

func utsString(b []int8) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}

func osImage() string {
	data, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "Linux"
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}
