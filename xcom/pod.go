package xcom

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/podtemplate"
)

// Channel is how a task hands its value to kubexec.
type Channel string

const (
	// ChannelTerminationMessage (DefaultChannel): the task writes its value
	// to its main container's terminationMessagePath (/dev/termination-log
	// unless the pod says otherwise), the file EnvPath names. No sidecar
	// and no exec are needed, but the kubelet keeps only the last 4096
	// bytes of the file (less in a pod of more than three containers,
	// which share 12 KiB): a message that fills what the kubelet keeps
	// may have been cut, and fails with ErrTooLarge, so values are at
	// most 4095 bytes. Larger values go through ChannelSidecar.
	ChannelTerminationMessage Channel = "termination-message"
	// ChannelSidecar: the task writes its value to a file in a folder
	// shared with a small sidecar (an emptyDir); once the main container
	// has ended, kubexec reads the file by exec in the sidecar, then stops
	// the sidecar. Values up to Config.MaxBytes.
	ChannelSidecar Channel = "sidecar"
	// ChannelNone: the task produces no value.
	ChannelNone Channel = "none"

	// DefaultChannel is the channel of a pod that names none, for
	// Middleware and Collector alike (PodConfig.Channel changes it).
	DefaultChannel = ChannelTerminationMessage
)

// Format says how the Collector reads the bytes a task wrote. Whatever the
// format, whitespace around the value is dropped, the rest must be UTF-8,
// and what is stored (and handed to downstream tasks by Pass) is one JSON
// value.
type Format string

const (
	// FormatAuto (the default): a value that is valid JSON is stored as
	// it is; any other text is stored as a JSON string holding the text,
	// so that a task may return done or a path as well as {"rows": 3}.
	// Broken JSON is stored as text too: a pod that asks for FormatJSON
	// has it fail instead.
	FormatAuto Format = "auto"
	// FormatJSON: the value must be one JSON value; anything else fails
	// with ErrNotJSON.
	FormatJSON Format = "json"
	// FormatText: the value is text, stored as a JSON string even when it
	// looks like JSON (42 is stored as "42").
	FormatText Format = "text"
)

// Pod annotations. A task chooses its channel with them, usually in its
// per-task override:
//
//	metadata:
//	  annotations:
//	    xcom.kubexec.io/channel: sidecar
//	    xcom.kubexec.io/path: /airflow/xcom/return.json
//	    xcom.kubexec.io/required: "true"
//	    xcom.kubexec.io/format: json
//
// Middleware reads them when the pod is built; Collector reads them when
// the attempt has ended.
const (
	// AnnotationChannel holds the pod's Channel. Default:
	// PodConfig.Channel (Config.Pod.Channel for the Collector), else
	// DefaultChannel. Middleware records the channel it prepared the pod
	// for here, so that Collect reads what the pod was prepared for.
	AnnotationChannel = "xcom.kubexec.io/channel"
	// AnnotationPath holds the file the task writes its value to, for
	// ChannelSidecar. Default: PodConfig.Path, DefaultPath.
	AnnotationPath = "xcom.kubexec.io/path"
	// AnnotationRequired is "true" when the task must produce a value:
	// a task that succeeds without one fails with ErrMissing. Default
	// "false".
	AnnotationRequired = "xcom.kubexec.io/required"
	// AnnotationFormat holds the pod's Format: "auto" (the default),
	// "json" or "text".
	AnnotationFormat = "xcom.kubexec.io/format"
	// AnnotationMaxBytes holds the largest value accepted for this pod, in
	// bytes. It can only lower the host's Config.MaxBytes: a larger number
	// is capped at Config.MaxBytes (a value over that fails with an
	// ErrTooLarge that says so).
	AnnotationMaxBytes = "xcom.kubexec.io/max-bytes"
	// AnnotationSidecar names the sidecar container that Middleware added;
	// it is always SidecarName. Collector reads values only from that
	// container, and only if it is the sidecar Middleware adds.
	AnnotationSidecar = "xcom.kubexec.io/sidecar"
	// AnnotationResult records what Collector read from a sidecar pod (a
	// reference or a ValueError, as JSON, with the pod's UID) before it
	// stops the sidecar, so that collecting again after a crash gives the
	// same answer. Collector trusts only a record that names the pod's own
	// UID, which is unknown until the pod is created: a record set in a
	// template or override is ignored (with a warning in Config.Logger)
	// and the value read from the sidecar instead.
	AnnotationResult = "xcom.kubexec.io/result"
)

const (
	// DefaultPath is where a task writes its value for ChannelSidecar
	// unless the pod says otherwise.
	DefaultPath = "/kubexec/xcom/return.json"
	// AirflowPath is where Apache Airflow's KubernetesPodOperator images
	// write their return value; set it in AnnotationPath or PodConfig.Path
	// and such images work unchanged.
	AirflowPath = "/airflow/xcom/return.json"
	// SidecarName is the name of the sidecar container Middleware adds.
	SidecarName = "kubexec-xcom"
	// DefaultSidecarImage is the sidecar's image unless PodConfig says
	// otherwise: any image with a POSIX sh, sleep, kill, head and wc.
	DefaultSidecarImage = "busybox:1.37"
	// EnvPath is set in the main container to the file it should write its
	// value to, whatever the channel: its terminationMessagePath, or the
	// file in the sidecar's folder. Writing that file is all a task does.
	EnvPath = "KUBEXEC_XCOM_PATH"
	// volumeName is the emptyDir shared by the main container and the
	// sidecar.
	volumeName = "kubexec-xcom"
	// pidFile, in the shared folder, holds the sidecar's process id.
	pidFile = ".kubexec-xcom.pid"
)

// sidecarScript keeps the sidecar alive until it is told to stop: it
// records its process id in the shared folder ($1), and exits 0 on TERM.
// Kubernetes expands a container's command, turning "$$" into "$": the
// shell's "$$" is written "$$$$".
const sidecarScript = `trap 'exit 0' TERM INT
echo $$$$ > "$1/` + pidFile + `"
while :; do sleep 1 & wait $!; done`

// PodConfig configures Middleware. The zero PodConfig is valid.
type PodConfig struct {
	// Channel is the channel of pods whose AnnotationChannel is not set.
	// Default DefaultChannel (the termination message). In a Collector's
	// Config.Pod, it is also the channel Collect reads from a pod that
	// neither Middleware nor MutatePod prepared.
	Channel Channel
	// Path is the file of ChannelSidecar pods whose AnnotationPath is not
	// set. Default DefaultPath; AirflowPath for Airflow images.
	Path string
	// SidecarImage is the sidecar's image. Collector reads values only
	// from a sidecar with the image of its own Config.Pod, so a Builder's
	// Middleware and the Collector must agree on it. Default
	// DefaultSidecarImage.
	SidecarImage string
	// SidecarResources are the sidecar's resources. Default: requests of
	// 1m CPU and 16Mi memory, a limit of 64Mi memory.
	SidecarResources *corev1.ResourceRequirements
}

// Middleware returns a podtemplate.Middleware that prepares each pod for
// its channel (AnnotationChannel, else cfg.Channel, else DefaultChannel):
//
//   - ChannelTerminationMessage: the main container's
//     terminationMessagePath is set (to the kubelet's default,
//     /dev/termination-log, unless the pod names another) and EnvPath
//     names it.
//   - ChannelSidecar: an emptyDir mounted at the folder of the value's
//     file in the main container and in a sidecar container, SidecarName,
//     that waits until Collector stops it. The sidecar runs as the main
//     container's user (or 65534 when none is set), without privileges, so
//     the pod still meets the restricted Pod Security Standard. EnvPath
//     names the file.
//   - ChannelNone: nothing.
//
// The pod's annotations record the channel (and, for the sidecar, the
// path) for Collector. A pod whose annotations are invalid fails the
// build.
func Middleware(cfg PodConfig) podtemplate.Middleware {
	if cfg.Channel == "" {
		cfg.Channel = DefaultChannel
	}
	if cfg.Path == "" {
		cfg.Path = DefaultPath
	}
	if cfg.SidecarImage == "" {
		cfg.SidecarImage = DefaultSidecarImage
	}
	return func(_ context.Context, pod *corev1.Pod) error {
		s, err := podSettings(pod, cfg.Channel, cfg.Path)
		if err != nil {
			return err
		}
		main := mainContainer(pod)
		if main == nil {
			return fmt.Errorf("xcom: pod %s has no containers", pod.Name)
		}
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[AnnotationChannel] = string(s.channel)
		switch s.channel {
		case ChannelNone:
			return nil
		case ChannelTerminationMessage:
			// The kubelet reads the file at terminationMessagePath into
			// the status Collect reads: the task is told that file.
			if main.TerminationMessagePath == "" {
				main.TerminationMessagePath = corev1.TerminationMessagePathDefault
			}
			setEnv(main, EnvPath, main.TerminationMessagePath)
			return nil
		}
		pod.Annotations[AnnotationPath] = s.path
		pod.Annotations[AnnotationSidecar] = SidecarName
		return addSidecar(pod, main, s.path, cfg)
	}
}

func addSidecar(pod *corev1.Pod, main *corev1.Container, file string, cfg PodConfig) error {
	dir := path.Dir(file)
	for _, v := range pod.Spec.Volumes {
		if v.Name == volumeName {
			return fmt.Errorf("xcom: pod %s already has a volume %q", pod.Name, volumeName)
		}
	}
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		if c.Name == SidecarName {
			return fmt.Errorf("xcom: pod %s already has a container %q", pod.Name, SidecarName)
		}
	}
	for _, m := range main.VolumeMounts {
		if m.MountPath == dir {
			return fmt.Errorf("xcom: the main container of pod %s already mounts %s, the folder of the value's file %s: choose another path (%s)", pod.Name, dir, file, AnnotationPath)
		}
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: volumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	mount := corev1.VolumeMount{Name: volumeName, MountPath: dir}
	main.VolumeMounts = append(main.VolumeMounts, mount)
	setEnv(main, EnvPath, file)

	resources := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
	}
	if cfg.SidecarResources != nil {
		resources = *cfg.SidecarResources.DeepCopy()
	}
	no, yes := false, true
	sc := &corev1.SecurityContext{
		AllowPrivilegeEscalation: &no,
		RunAsNonRoot:             &yes,
		ReadOnlyRootFilesystem:   &yes,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	// The sidecar must read what the main container wrote: run as its
	// user when it has one (the pod's runAsUser applies to both anyway).
	switch {
	case main.SecurityContext != nil && main.SecurityContext.RunAsUser != nil:
		uid := *main.SecurityContext.RunAsUser
		sc.RunAsUser = &uid
		sc.RunAsNonRoot = nil
		if uid != 0 {
			sc.RunAsNonRoot = &yes
		}
		if main.SecurityContext.RunAsGroup != nil {
			gid := *main.SecurityContext.RunAsGroup
			sc.RunAsGroup = &gid
		}
	case pod.Spec.SecurityContext != nil && pod.Spec.SecurityContext.RunAsUser != nil:
		if *pod.Spec.SecurityContext.RunAsUser == 0 {
			sc.RunAsNonRoot = nil
		}
	default:
		nobody := int64(65534)
		sc.RunAsUser = &nobody
	}
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{
		Name:            SidecarName,
		Image:           cfg.SidecarImage,
		Command:         sidecarCommand(dir),
		VolumeMounts:    []corev1.VolumeMount{mount},
		Resources:       resources,
		SecurityContext: sc,
	})
	return nil
}

// sidecarCommand is the command of the sidecar whose folder is dir.
func sidecarCommand(dir string) []string {
	return []string{"sh", "-c", sidecarScript, SidecarName, dir}
}

// checkSidecar says why pod's container SidecarName is not the sidecar
// that Middleware adds for the value file file with image, or returns ""
// when it is: that name, that image and command, the emptyDir volumeName
// mounted at the file's folder, no other mount over that folder, and no
// privileges. Collector execs only in such a container, and reads only
// file, so that a template or override can make it read nothing but the
// pod's own value folder.
func checkSidecar(pod *corev1.Pod, file, image string) string {
	if name := pod.Annotations[AnnotationSidecar]; name != "" && name != SidecarName {
		return fmt.Sprintf("annotation %s names container %q, but kubexec reads values only from its own sidecar, %s", AnnotationSidecar, name, SidecarName)
	}
	var side *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == SidecarName {
			side = &pod.Spec.Containers[i]
		}
	}
	if side == nil {
		return fmt.Sprintf("the pod has no sidecar container %s", SidecarName)
	}
	dir := path.Dir(file)
	notOurs := "container " + SidecarName + " is not the sidecar kubexec adds: "
	switch {
	case side.Image != image:
		return notOurs + fmt.Sprintf("its image is %q, not %q (xcom.PodConfig.SidecarImage)", side.Image, image)
	case !slices.Equal(side.Command, sidecarCommand(dir)) || len(side.Args) > 0:
		return notOurs + fmt.Sprintf("its command is not the one that keeps the folder %s of the value's file %s", dir, file)
	}
	mounted := false
	for _, m := range side.VolumeMounts {
		at := path.Clean(m.MountPath)
		if at == dir && m.Name == volumeName && m.SubPath == "" && m.SubPathExpr == "" && !mounted {
			mounted = true
			continue
		}
		if at == dir || at == "/" || strings.HasPrefix(at, dir+"/") || strings.HasPrefix(dir, at+"/") {
			return notOurs + fmt.Sprintf("it mounts volume %q at %s, over the folder %s of the value's file", m.Name, m.MountPath, dir)
		}
	}
	if !mounted {
		return notOurs + fmt.Sprintf("it does not mount volume %q at the folder %s of the value's file %s", volumeName, dir, file)
	}
	emptyDir := false
	for _, v := range pod.Spec.Volumes {
		if v.Name == volumeName {
			emptyDir = v.EmptyDir != nil
		}
	}
	if !emptyDir {
		return notOurs + fmt.Sprintf("its volume %q is not an emptyDir", volumeName)
	}
	if sc := side.SecurityContext; sc == nil || (sc.Privileged != nil && *sc.Privileged) ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || (sc.Capabilities != nil && len(sc.Capabilities.Add) > 0) {
		return notOurs + "it is privileged, may gain privileges, or adds capabilities"
	}
	return ""
}

// settings are a pod's xcom settings, from its annotations and defaults.
type settings struct {
	channel  Channel
	path     string
	format   Format
	required bool
	maxBytes int64 // 0: the Collector's
	// askedMaxBytes is AnnotationMaxBytes when the Collector capped it at
	// its Config.MaxBytes, else 0.
	askedMaxBytes int64
}

// podSettings reads pod's annotations; channel and file are the defaults.
// An annotation set to "" counts as not set.
func podSettings(pod *corev1.Pod, channel Channel, file string) (settings, error) {
	s := settings{channel: channel, path: file, format: FormatAuto}
	a := pod.Annotations
	from := "the configured channel (xcom.PodConfig.Channel)"
	if v := a[AnnotationChannel]; v != "" {
		s.channel, from = Channel(v), "annotation "+AnnotationChannel
	}
	if !validChannel(s.channel) {
		return s, fmt.Errorf("xcom: pod %s: %s is %q; use %q, %q or %q", pod.Name, from, s.channel, ChannelTerminationMessage, ChannelSidecar, ChannelNone)
	}
	if v := a[AnnotationFormat]; v != "" {
		s.format = Format(v)
		if !validFormat(s.format) {
			return s, fmt.Errorf("xcom: pod %s: annotation %s is %q; use %q, %q or %q", pod.Name, AnnotationFormat, v, FormatAuto, FormatJSON, FormatText)
		}
	}
	if v, ok := a[AnnotationPath]; ok {
		s.path = v
	}
	if s.channel == ChannelSidecar {
		if !path.IsAbs(s.path) || path.Clean(s.path) != s.path || path.Dir(s.path) == "/" || path.Base(s.path) == pidFile {
			return s, fmt.Errorf("xcom: pod %s: path %q must be a clean absolute file path in a folder of its own, such as %s", pod.Name, s.path, DefaultPath)
		}
	}
	if v, ok := a[AnnotationRequired]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return s, fmt.Errorf("xcom: pod %s: annotation %s is %q; use \"true\" or \"false\"", pod.Name, AnnotationRequired, v)
		}
		s.required = b
	}
	if v, ok := a[AnnotationMaxBytes]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return s, fmt.Errorf("xcom: pod %s: annotation %s is %q; use a positive number of bytes", pod.Name, AnnotationMaxBytes, v)
		}
		s.maxBytes = n
	}
	return s, nil
}

func validChannel(c Channel) bool {
	return c == ChannelTerminationMessage || c == ChannelSidecar || c == ChannelNone
}

func validFormat(f Format) bool {
	return f == FormatAuto || f == FormatJSON || f == FormatText
}

// mainContainer is the container that runs the task (kubexec.MainContainer).
func mainContainer(pod *corev1.Pod) *corev1.Container {
	i := kubexec.MainContainer(pod)
	if i < 0 {
		return nil
	}
	return &pod.Spec.Containers[i]
}

func mainContainerName(pod *corev1.Pod) string {
	if c := mainContainer(pod); c != nil {
		return c.Name
	}
	if len(pod.Status.ContainerStatuses) > 0 {
		return pod.Status.ContainerStatuses[0].Name
	}
	return ""
}

func setEnv(c *corev1.Container, name, value string) {
	for i := range c.Env {
		if c.Env[i].Name == name {
			c.Env[i] = corev1.EnvVar{Name: name, Value: value}
			return
		}
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
}

func containerStatus(pod *corev1.Pod, name string) *corev1.ContainerStatus {
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == name {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	return nil
}

// Waiting reports whether pod is kept running only by its xcom sidecar:
// its main container has ended and the sidecar still runs. Such a pod does
// not end by itself: call Collector.Collect, which reads the value and
// stops the sidecar, after which the pod ends. The executor checks it on
// every event of a running pod; it needs only what watch.Trim keeps.
func Waiting(pod *corev1.Pod) bool {
	if pod == nil || pod.Annotations[AnnotationSidecar] == "" {
		return false
	}
	main := containerStatus(pod, mainContainerName(pod))
	side := containerStatus(pod, pod.Annotations[AnnotationSidecar])
	return main != nil && main.State.Terminated != nil && side != nil && side.State.Running != nil
}
