package watch

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/kubexec/kubexec/internal/podwatch"
)

// Trim returns a copy of pod that keeps only what kubexec reads, so that a
// cache of many pods stays small (the executor's pod watch keeps each pod
// so). pod is not modified; the copy
// shares its strings, maps and timestamps with pod. Trimming a trimmed pod
// changes nothing.
//
// Kept:
//   - metadata: name, generateName, namespace, uid, resourceVersion,
//     generation, creation and deletion timestamps, deletion grace period,
//     labels, annotations (except kubectl's last-applied-configuration),
//     owner references, finalizers. Dropped: managedFields.
//   - spec: nodeName, schedulerName, restartPolicy, activeDeadlineSeconds,
//     and for each container and init container its name and image (and an
//     init container's restartPolicy, which marks a sidecar). Dropped:
//     everything else (commands, env, volumes, resources, probes, ...).
//   - status: phase, reason, message, startTime, the PodScheduled and
//     DisruptionTarget conditions (without lastProbeTime and
//     observedGeneration), and for each container and init container status
//     its name, image, state, lastTerminationState, ready, started and
//     restartCount. Dropped: the other conditions (Ready, ContainersReady,
//     Initialized, PodReadyToStartContainers, readiness gates), IPs, QoS
//     class, ephemeral containers, resources, volume mounts, allocation and
//     resize status.
func Trim(pod *corev1.Pod) *corev1.Pod { return podwatch.Trim(pod) }
