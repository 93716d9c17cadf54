package podwatch

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubexec/kubexec"
)

// fatPod is a pod as the API server returns it: managed fields, a full
// spec, and status details kubexec never reads.
func fatPod() *corev1.Pod {
	p := testPod(ranOK)
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubexec", Operation: metav1.ManagedFieldsOperationUpdate,
		FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{"f:labels":{}}}`)}}
	p.Labels = map[string]string{"kubexec.io/executor": "e1"}
	p.Annotations = map[string]string{"kubexec.io/task": "t", annotationLastApplied: `{"big":"object"}`}
	p.Finalizers = []string{"kubexec.io/result-tracking"}
	p.Spec.NodeName = "n1"
	p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	p.Spec.Containers[0].Command = []string{"python", "-m", "task"}
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "1"}}
	p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}
	p.Status.PodIP = "10.0.0.1"
	p.Status.QOSClass = corev1.PodQOSBurstable
	p.Status.ContainerStatuses[0].ImageID = "sha256:abc"
	p.Status.ContainerStatuses[0].VolumeMounts = []corev1.VolumeMountStatus{{Name: "data", MountPath: "/data"}}
	p.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastProbeTime: at(1), LastTransitionTime: at(2)},
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, ObservedGeneration: 1, LastProbeTime: at(1), LastTransitionTime: at(1)},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: at(2)},
	}
	return p
}

func TestTrim(t *testing.T) {
	t.Parallel()
	in := fatPod()
	before := in.DeepCopy()
	out := Trim(in)
	require.Equal(t, before, in, "Trim modified its input")

	require.Empty(t, out.ManagedFields)
	require.Equal(t, map[string]string{"kubexec.io/task": "t"}, out.Annotations)
	require.Equal(t, in.Labels, out.Labels)
	require.Equal(t, in.Finalizers, out.Finalizers)
	require.Equal(t, in.ResourceVersion, out.ResourceVersion)
	require.Equal(t, in.UID, out.UID)
	require.Equal(t, "n1", out.Spec.NodeName)
	require.Empty(t, out.Spec.Volumes)
	require.Equal(t, []corev1.Container{{Name: "base", Image: "python:3.12"}, {Name: "helper", Image: "busybox"}}, out.Spec.Containers)
	require.Equal(t, in.Spec.InitContainers[1].RestartPolicy, out.Spec.InitContainers[1].RestartPolicy, "the sidecar mark")
	require.Empty(t, out.Status.PodIP)
	require.Empty(t, out.Status.QOSClass)
	require.Empty(t, out.Status.ContainerStatuses[0].ImageID)
	require.Empty(t, out.Status.ContainerStatuses[0].VolumeMounts)
	require.Equal(t, in.Status.ContainerStatuses[0].State, out.Status.ContainerStatuses[0].State)
	require.Equal(t, []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: at(1)}}, out.Status.Conditions,
		"only the conditions Classify reads, without probe time and generation")

	require.Equal(t, out, Trim(out), "Trim is idempotent")
	require.Nil(t, Trim(nil))
}

func TestHandlerFuncsIsNilSafe(t *testing.T) {
	t.Parallel()
	var h Handler = HandlerFuncs{}
	h.OnAdd(testPod())
	h.OnUpdate(testPod(), testPod())
	h.OnDelete(testPod(), true)

	var got []string
	h = HandlerFuncs{
		AddFunc:    func(p *corev1.Pod) { got = append(got, "add "+p.Name) },
		UpdateFunc: func(o, p *corev1.Pod) { got = append(got, "update "+o.Name+" "+p.Name) },
		DeleteFunc: func(p *corev1.Pod, gone bool) {
			if gone {
				got = append(got, "gone "+p.Name)
			}
		},
	}
	h.OnAdd(testPod())
	h.OnUpdate(testPod(), testPod())
	h.OnDelete(testPod(), true)
	require.Equal(t, []string{"add p", "update p p", "gone p"}, got)
}

// TestStoredPod: the form a Watcher stores a pod in gives back exactly what
// Trim keeps, for every pod of the classification cases and a pod with
// everything the API server adds; the transform leaves a stored pod as it
// is, and a deep copy shares nothing with its original.
func TestStoredPod(t *testing.T) {
	t.Parallel()
	// A pod with kubexec's metadata: labels and annotations with the same
	// keys, most values equal.
	kx := fatPod()
	kx.Labels, kx.Annotations = nil, map[string]string{"other": "x"}
	require.NoError(t, kubexec.ApplyMetadata(kx, "e1", kubexec.TaskKey{WorkflowID: "wf", TaskID: "extract", RunID: "r1", MapIndex: 3, Attempt: 2}))
	ended := testPod(ranOK, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodFailed
		p.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled", FinishedAt: at(2 * time.Minute)}}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "EvictionByEvictionAPI"}}
	})
	pulling := testPod(func(p *corev1.Pod) {
		p.Spec.NodeName = "node-1"
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "base", Image: "python:3.12", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "back-off"}}}}
	})
	pods := []*corev1.Pod{fatPod(), kx, {}, testPod(), testPod(ranOK), ended, pulling}
	for i, p := range pods {
		want := Trim(p)
		stored := pack(p.DeepCopy())
		require.Equal(t, want, stored.unpack(), "pod %d (%s)", i, p.Name)

		again, err := podTransform(stored)
		require.NoError(t, err)
		require.Same(t, stored, again, "the transform of a stored pod")

		c := stored.DeepCopyObject().(*storedPod)
		require.Equal(t, stored, c)
		if len(c.meta) > 0 {
			for i := 1; i < len(c.meta); i += 2 {
				c.meta[i] = "changed"
			}
			require.Equal(t, want.Labels, stored.unpack().Labels, "the deep copy's labels are its own")
			require.Equal(t, want.Annotations, stored.unpack().Annotations, "the deep copy's annotations are its own")
		}
		if len(c.containerStatuses) > 0 {
			c.containerStatuses[0].name = "changed"
			require.Equal(t, want.Status.ContainerStatuses, stored.unpack().Status.ContainerStatuses, "the deep copy's statuses are its own")
		}
	}

	got, ok := podOf(pack(fatPod()))
	require.True(t, ok)
	require.Equal(t, Trim(fatPod()), got)
	_, ok = podOf((*storedPod)(nil))
	require.False(t, ok)
	_, ok = podOf("not a pod")
	require.False(t, ok)
}
