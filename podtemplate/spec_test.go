package podtemplate_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/podtemplate"
)

// filesAnnotation is the annotation that carries TaskSpec.Files[i].
func filesAnnotation(i string) string { return "files.kubexec.io/" + i }

// The typed TaskSpec fields land where the override YAML of a host would
// put them, winning over the template, and an override still wins over
// them.
func TestBuildSpecFields(t *testing.T) {
	t.Parallel()
	base := loadTestTemplate(t) // main container "base": mount scratch at /scratch, pod runAsUser 1000
	base.Spec.ActiveDeadlineSeconds = new(int64(600))
	base.Spec.Containers[0].WorkingDir = "/from-template"
	base.Spec.Containers[0].SecurityContext.RunAsUser = new(int64(2000))
	tests := []struct {
		name     string
		spec     podtemplate.TaskSpec
		override string
		check    func(t *testing.T, pod *corev1.Pod)
	}{
		{
			name: "no new field keeps the template",
			check: func(t *testing.T, pod *corev1.Pod) {
				c := container(t, pod, "base")
				require.Equal(t, "/from-template", c.WorkingDir)
				require.Equal(t, new(int64(600)), pod.Spec.ActiveDeadlineSeconds)
				require.Equal(t, new(int64(2000)), c.SecurityContext.RunAsUser)
				require.Nil(t, c.SecurityContext.RunAsGroup)
				require.Len(t, pod.Spec.Volumes, 1)
				for k := range pod.Annotations {
					require.False(t, strings.HasPrefix(k, "files.kubexec.io/"), k)
				}
			},
		},
		{
			name: "working dir wins over the template's",
			spec: podtemplate.TaskSpec{WorkingDir: "/work"},
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Equal(t, "/work", container(t, pod, "base").WorkingDir)
				require.Empty(t, container(t, pod, "log-shipper").WorkingDir, "only the main container")
			},
		},
		{
			name:     "an override wins over the working dir",
			spec:     podtemplate.TaskSpec{WorkingDir: "/work"},
			override: "spec:\n  containers:\n  - name: base\n    workingDir: /elsewhere\n",
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Equal(t, "/elsewhere", container(t, pod, "base").WorkingDir)
			},
		},
		{
			name: "deadline in whole seconds wins over the template's",
			spec: podtemplate.TaskSpec{ActiveDeadline: 90 * time.Second},
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Equal(t, new(int64(90)), pod.Spec.ActiveDeadlineSeconds)
			},
		},
		{
			name: "deadline rounded up",
			spec: podtemplate.TaskSpec{ActiveDeadline: 1500 * time.Millisecond},
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Equal(t, new(int64(2)), pod.Spec.ActiveDeadlineSeconds)
			},
		},
		{
			name: "longest deadline",
			spec: podtemplate.TaskSpec{ActiveDeadline: (1<<31 - 1) * time.Second},
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Equal(t, new(int64(1<<31-1)), pod.Spec.ActiveDeadlineSeconds)
			},
		},
		{
			name: "deadline of exactly one second",
			spec: podtemplate.TaskSpec{ActiveDeadline: time.Second},
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Equal(t, new(int64(1)), pod.Spec.ActiveDeadlineSeconds)
			},
		},
		{
			name:     "an override wins over the deadline",
			spec:     podtemplate.TaskSpec{ActiveDeadline: time.Minute},
			override: "spec:\n  activeDeadlineSeconds: 5\n",
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Equal(t, new(int64(5)), pod.Spec.ActiveDeadlineSeconds)
			},
		},
		{
			name: "user and group of the main container",
			spec: podtemplate.TaskSpec{RunAsUser: new(int64(4242)), RunAsGroup: new(int64(0))},
			check: func(t *testing.T, pod *corev1.Pod) {
				sc := container(t, pod, "base").SecurityContext
				require.Equal(t, new(int64(4242)), sc.RunAsUser)
				require.Equal(t, new(int64(0)), sc.RunAsGroup, "group 0 is allowed")
				require.False(t, *sc.AllowPrivilegeEscalation, "the rest of the template's security context stays")
				require.Nil(t, container(t, pod, "log-shipper").SecurityContext.RunAsUser, "only the main container")
				require.Equal(t, new(int64(1000)), pod.Spec.SecurityContext.RunAsUser, "the pod's stays for the others")
			},
		},
		{
			name:     "an override wins over the user",
			spec:     podtemplate.TaskSpec{RunAsUser: new(int64(4242))},
			override: "spec:\n  containers:\n  - name: base\n    securityContext:\n      runAsUser: 7\n",
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Equal(t, new(int64(7)), container(t, pod, "base").SecurityContext.RunAsUser)
			},
		},
		{
			name: "volumes replace the template's by name, others appended",
			spec: podtemplate.TaskSpec{Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "etl-data"}}},
				{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
				{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "db"}}},
			}},
			check: func(t *testing.T, pod *corev1.Pod) {
				var names []string
				for _, v := range pod.Spec.Volumes {
					names = append(names, v.Name)
				}
				require.Equal(t, []string{"scratch", "data", "creds"}, names)
				require.Equal(t, corev1.StorageMediumMemory, pod.Spec.Volumes[0].EmptyDir.Medium, "the task spec's entry replaced the template's")
				require.Equal(t, "etl-data", pod.Spec.Volumes[1].PersistentVolumeClaim.ClaimName)
			},
		},
		{
			name: "mounts replace the template's by mount path, others appended",
			spec: podtemplate.TaskSpec{
				Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "data", MountPath: "/data"},
					{Name: "scratch", MountPath: "/scratch", ReadOnly: true},
					{Name: "scratch", MountPath: "/scratch2", SubPath: "two"},
				},
			},
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Equal(t, []corev1.VolumeMount{
					{Name: "scratch", MountPath: "/scratch", ReadOnly: true},
					{Name: "data", MountPath: "/data"},
					{Name: "scratch", MountPath: "/scratch2", SubPath: "two"},
				}, container(t, pod, "base").VolumeMounts)
				require.Empty(t, container(t, pod, "log-shipper").VolumeMounts, "only the main container")
			},
		},
		{
			name: "files: a downwardAPI volume of the pod's annotations, one subPath mount per file",
			spec: podtemplate.TaskSpec{Files: []podtemplate.File{
				{Path: "/opt/task/run.sh", Content: "#!/bin/sh\necho hi\n", Mode: 0o755},
				{Path: "/etc/task.conf", Content: "table=users\n"},
				{Path: "/opt/task/empty"},
			}},
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Equal(t, "#!/bin/sh\necho hi\n", pod.Annotations[filesAnnotation("0")])
				require.Equal(t, "table=users\n", pod.Annotations[filesAnnotation("1")])
				v, ok := pod.Annotations[filesAnnotation("2")]
				require.True(t, ok)
				require.Empty(t, v)
				require.Len(t, pod.Spec.Volumes, 2)
				vol := pod.Spec.Volumes[1]
				require.Equal(t, "kubexec-files", vol.Name)
				require.NotNil(t, vol.DownwardAPI)
				require.Equal(t, []corev1.DownwardAPIVolumeFile{
					{Path: "0", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.annotations['files.kubexec.io/0']"}, Mode: new(int32(0o755))},
					{Path: "1", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.annotations['files.kubexec.io/1']"}, Mode: new(int32(0o644))},
					{Path: "2", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.annotations['files.kubexec.io/2']"}, Mode: new(int32(0o644))},
				}, vol.DownwardAPI.Items)
				require.Equal(t, []corev1.VolumeMount{
					{Name: "scratch", MountPath: "/scratch"},
					{Name: "kubexec-files", MountPath: "/opt/task/run.sh", SubPath: "0", ReadOnly: true},
					{Name: "kubexec-files", MountPath: "/etc/task.conf", SubPath: "1", ReadOnly: true},
					{Name: "kubexec-files", MountPath: "/opt/task/empty", SubPath: "2", ReadOnly: true},
				}, container(t, pod, "base").VolumeMounts)
				key, err := kubexec.KeyFromObject(pod)
				require.NoError(t, err)
				require.Equal(t, testKey, key, "kubexec's annotations stay")
			},
		},
		{
			name: "files as large as allowed",
			spec: podtemplate.TaskSpec{Files: []podtemplate.File{
				{Path: "/a", Content: strings.Repeat("a", podtemplate.MaxFilesBytes/2)},
				{Path: "/b", Content: strings.Repeat("b", podtemplate.MaxFilesBytes/2)},
			}},
			check: func(t *testing.T, pod *corev1.Pod) {
				require.Len(t, pod.Annotations[filesAnnotation("1")], podtemplate.MaxFilesBytes/2)
			},
		},
	}
	tpl := newTemplate(t, base, podtemplate.Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spec := tt.spec
			spec.Key = testKey
			if tt.override != "" {
				spec.Override = mustOverride(t, tt.override)
			}
			pod, err := tpl.Build(t.Context(), spec)
			require.NoError(t, err)
			tt.check(t, pod)
			require.Empty(t, (podtemplate.Policy{ServiceAccounts: []string{"etl-runner"}}).Check(pod),
				"the typed fields pass the default policy step")
		})
	}
}

// Invalid typed fields are refused before any API call, each with its
// TaskSpec path and what to write instead.
func TestBuildSpecFieldsInvalid(t *testing.T) {
	t.Parallel()
	emptyDir := corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
	tests := []struct {
		name     string
		spec     podtemplate.TaskSpec
		override string
		base     *corev1.Pod // default: DefaultTemplate
		// field and detail of one of the reported problems
		field, detail string
		// tooLong: the problem is of type TooLong
		tooLong bool
	}{
		{name: "relative working dir", spec: podtemplate.TaskSpec{WorkingDir: "work"},
			field: "TaskSpec.WorkingDir", detail: "not an absolute path"},
		{name: "unclean working dir", spec: podtemplate.TaskSpec{WorkingDir: "/work/../tmp/"},
			field: "TaskSpec.WorkingDir", detail: `write it as "/tmp"`},
		{name: "negative deadline", spec: podtemplate.TaskSpec{ActiveDeadline: -time.Second},
			field: "TaskSpec.ActiveDeadline", detail: "must not be negative: set a duration of 1s or more, or 0 for no deadline"},
		{name: "deadline under a second", spec: podtemplate.TaskSpec{ActiveDeadline: 999 * time.Millisecond},
			field: "TaskSpec.ActiveDeadline", detail: "must be at least 1s"},
		{name: "deadline beyond the server's limit", spec: podtemplate.TaskSpec{ActiveDeadline: (1<<31)*time.Second - time.Millisecond},
			field: "TaskSpec.ActiveDeadline", detail: "must be at most 2147483647s"},
		{name: "negative user", spec: podtemplate.TaskSpec{RunAsUser: new(int64(-1))},
			field: "TaskSpec.RunAsUser", detail: "not a user id: use one from 0 to 2147483647"},
		{name: "user too large", spec: podtemplate.TaskSpec{RunAsUser: new(int64(1 << 31))},
			field: "TaskSpec.RunAsUser", detail: "not a user id"},
		{name: "negative group", spec: podtemplate.TaskSpec{RunAsGroup: new(int64(-5))},
			field: "TaskSpec.RunAsGroup", detail: "not a group id"},
		{name: "root under the default template's runAsNonRoot", spec: podtemplate.TaskSpec{RunAsUser: new(int64(0))},
			field: "TaskSpec.RunAsUser", detail: "0 is root, but spec.securityContext.runAsNonRoot is true (DefaultTemplate sets it), so the container would not start: set a non-zero user id"},
		{name: "root under the main container's runAsNonRoot", spec: podtemplate.TaskSpec{RunAsUser: new(int64(0))},
			override: "spec:\n  securityContext:\n    runAsNonRoot: false\n  containers:\n  - name: base\n    securityContext:\n      runAsNonRoot: true\n",
			field:    "TaskSpec.RunAsUser", detail: "spec.containers[0].securityContext.runAsNonRoot is true"},
		{name: "root from an override", override: "spec:\n  containers:\n  - name: base\n    securityContext:\n      runAsUser: 0\n",
			field: "spec.containers[0].securityContext.runAsUser", detail: "0 is root, but spec.securityContext.runAsNonRoot is true"},
		{name: "root for the whole pod", override: "spec:\n  securityContext:\n    runAsUser: 0\n",
			field: "spec.securityContext.runAsUser", detail: "run as a non-zero user id (TaskSpec.RunAsUser for the main container)"},
		{name: "volume without name", spec: podtemplate.TaskSpec{Volumes: []corev1.Volume{{VolumeSource: emptyDir}}},
			field: "TaskSpec.Volumes[0].Name", detail: "give every volume a name"},
		{name: "invalid volume name", spec: podtemplate.TaskSpec{Volumes: []corev1.Volume{{Name: "Data_1", VolumeSource: emptyDir}}},
			field: "TaskSpec.Volumes[0].Name", detail: "RFC 1123"},
		{name: "duplicate volume", spec: podtemplate.TaskSpec{Volumes: []corev1.Volume{{Name: "a", VolumeSource: emptyDir}, {Name: "a", VolumeSource: emptyDir}}},
			field: "TaskSpec.Volumes[1].Name", detail: "TaskSpec.Volumes[0] has this name too"},
		{name: "volume without source", spec: podtemplate.TaskSpec{Volumes: []corev1.Volume{{Name: "a"}}},
			field: "TaskSpec.Volumes[0]", detail: "set the volume's source, such as EmptyDir"},
		{name: "volume with two sources", spec: podtemplate.TaskSpec{Volumes: []corev1.Volume{{Name: "a", VolumeSource: corev1.VolumeSource{
			EmptyDir: &corev1.EmptyDirVolumeSource{}, Secret: &corev1.SecretVolumeSource{SecretName: "s"}}}}},
			field: "TaskSpec.Volumes[0]", detail: "sets 2 sources: a volume has exactly one"},
		{name: "volume named like the files' volume", spec: podtemplate.TaskSpec{
			Volumes: []corev1.Volume{{Name: "kubexec-files", VolumeSource: emptyDir}},
			Files:   []podtemplate.File{{Path: "/f"}}},
			field: "TaskSpec.Volumes[0].Name", detail: "is the volume that carries TaskSpec.Files: give the volume another name"},
		{name: "template volume named like the files' volume", spec: podtemplate.TaskSpec{Files: []podtemplate.File{{Path: "/f"}}},
			base: func() *corev1.Pod {
				p := podtemplate.DefaultTemplate()
				p.Spec.Volumes = []corev1.Volume{{Name: "kubexec-files", VolumeSource: emptyDir}}
				return p
			}(),
			field: "TaskSpec.Files", detail: "rename the template's volume"},
		{name: "mount without volume name", spec: podtemplate.TaskSpec{VolumeMounts: []corev1.VolumeMount{{MountPath: "/data"}}},
			field: "TaskSpec.VolumeMounts[0].Name", detail: "name the volume to mount"},
		{name: "mount without path", spec: podtemplate.TaskSpec{VolumeMounts: []corev1.VolumeMount{{Name: "a"}}},
			field: "TaskSpec.VolumeMounts[0].MountPath", detail: "set where the volume appears"},
		{name: "relative mount path", spec: podtemplate.TaskSpec{VolumeMounts: []corev1.VolumeMount{{Name: "a", MountPath: "data"}}},
			field: "TaskSpec.VolumeMounts[0].MountPath", detail: "not an absolute path"},
		{name: "two mounts at one path", spec: podtemplate.TaskSpec{
			Volumes:      []corev1.Volume{{Name: "a", VolumeSource: emptyDir}, {Name: "b", VolumeSource: emptyDir}},
			VolumeMounts: []corev1.VolumeMount{{Name: "a", MountPath: "/data"}, {Name: "b", MountPath: "/data/"}}},
			field: "TaskSpec.VolumeMounts[1].MountPath", detail: "TaskSpec.VolumeMounts[0] mounts there too"},
		{name: "mount of a volume nobody defines", spec: podtemplate.TaskSpec{VolumeMounts: []corev1.VolumeMount{{Name: "nowhere", MountPath: "/data"}}},
			field: "spec.containers[0].volumeMounts[0].name", detail: "no volume of this name in spec.volumes"},
		{name: "file without path", spec: podtemplate.TaskSpec{Files: []podtemplate.File{{Content: "x"}}},
			field: "TaskSpec.Files[0].Path", detail: "set where the file appears"},
		{name: "relative file path", spec: podtemplate.TaskSpec{Files: []podtemplate.File{{Path: "run.sh"}}},
			field: "TaskSpec.Files[0].Path", detail: "not an absolute path"},
		{name: "unclean file path", spec: podtemplate.TaskSpec{Files: []podtemplate.File{{Path: "/opt//task/./run.sh"}}},
			field: "TaskSpec.Files[0].Path", detail: `write it as "/opt/task/run.sh"`},
		{name: "file path escapes", spec: podtemplate.TaskSpec{Files: []podtemplate.File{{Path: "/opt/../../etc/x"}}},
			field: "TaskSpec.Files[0].Path", detail: `write it as "/etc/x"`},
		{name: "file path is a folder", spec: podtemplate.TaskSpec{Files: []podtemplate.File{{Path: "/opt/task/"}}},
			field: "TaskSpec.Files[0].Path", detail: "names a folder"},
		{name: "file at the root", spec: podtemplate.TaskSpec{Files: []podtemplate.File{{Path: "/"}}},
			field: "TaskSpec.Files[0].Path", detail: "names a folder"},
		{name: "two files at one path", spec: podtemplate.TaskSpec{Files: []podtemplate.File{{Path: "/a"}, {Path: "/b"}, {Path: "/a"}}},
			field: "TaskSpec.Files[2].Path", detail: "TaskSpec.Files[0] has this path too"},
		{name: "a file inside another", spec: podtemplate.TaskSpec{Files: []podtemplate.File{{Path: "/opt/task/x"}, {Path: "/opt/task"}}},
			field: "TaskSpec.Files[0].Path", detail: "is inside /opt/task, which TaskSpec.Files[1] makes a file"},
		{name: "mode beyond permission bits", spec: podtemplate.TaskSpec{Files: []podtemplate.File{{Path: "/a", Mode: 0o4755}}},
			field: "TaskSpec.Files[0].Mode", detail: "only permission bits"},
		{name: "binary content", spec: podtemplate.TaskSpec{Files: []podtemplate.File{{Path: "/a", Content: "\xff\xfe"}}},
			field: "TaskSpec.Files[0].Content", detail: "not UTF-8 text"},
		{name: "files too large", spec: podtemplate.TaskSpec{Files: []podtemplate.File{
			{Path: "/a", Content: strings.Repeat("a", podtemplate.MaxFilesBytes/2)},
			{Path: "/b", Content: strings.Repeat("b", podtemplate.MaxFilesBytes/2+1)}}},
			field: "TaskSpec.Files", detail: "the files hold 131073 bytes, more than the 131072 (podtemplate.MaxFilesBytes)", tooLong: true},
		{name: "file at a mount path", spec: podtemplate.TaskSpec{Files: []podtemplate.File{{Path: "/data"}},
			Volumes:      []corev1.Volume{{Name: "data", VolumeSource: emptyDir}},
			VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}},
			field: "TaskSpec.Files[0].Path", detail: `is where volume "data" is mounted`},
		{name: "file inside a mount", spec: podtemplate.TaskSpec{Files: []podtemplate.File{{Path: "/data/in/run.sh"}},
			Volumes:      []corev1.Volume{{Name: "data", VolumeSource: emptyDir}},
			VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data/"}}},
			field: "TaskSpec.Files[0].Path", detail: `is inside /data, where volume "data" is mounted: give the file a path outside every volume mount, such as /opt/task/run.sh`},
		{name: "file inside a mount of the override", spec: podtemplate.TaskSpec{Files: []podtemplate.File{{Path: "/cache/run.sh"}}},
			override: "spec:\n  volumes: [{name: cache, emptyDir: {}}]\n  containers:\n  - name: base\n    volumeMounts: [{name: cache, mountPath: /cache}]\n",
			field:    "TaskSpec.Files[0].Path", detail: `is inside /cache, where volume "cache" is mounted`},
		{name: "file is a folder of a mount", spec: podtemplate.TaskSpec{Files: []podtemplate.File{{Path: "/data"}},
			Volumes:      []corev1.Volume{{Name: "data", VolumeSource: emptyDir}},
			VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data/in"}}},
			field: "TaskSpec.Files[0].Path", detail: `is a folder of /data/in, where volume "data" is mounted`},
		{name: "file at the working dir", spec: podtemplate.TaskSpec{Files: []podtemplate.File{{Path: "/work"}}, WorkingDir: "/work/sub"},
			field: "TaskSpec.Files[0].Path", detail: "is the main container's working directory /work/sub or a folder of it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := tt.base
			if base == nil {
				base = podtemplate.DefaultTemplate()
			}
			tpl := newTemplate(t, base, podtemplate.Config{})
			spec := tt.spec
			spec.Key, spec.Image = testKey, "busybox"
			if tt.override != "" {
				spec.Override = mustOverride(t, tt.override)
			}
			_, err := tpl.Build(t.Context(), spec)
			require.ErrorIs(t, err, podtemplate.ErrInvalidPod)
			var ve *podtemplate.ValidationError
			require.ErrorAs(t, err, &ve)
			require.Equal(t, testKey, ve.Key)
			var found bool
			for _, fe := range ve.Errs {
				if fe.Field == tt.field && strings.Contains(fe.Error(), tt.detail) {
					found = true
					if tt.tooLong {
						require.Equal(t, field.ErrorTypeTooLong, fe.Type)
					}
				}
			}
			require.True(t, found, "no problem reported for %s with %q in %v", tt.field, tt.detail, err)
		})
	}
}

// Root under runAsNonRoot is refused by Build; with runAsNonRoot false it
// builds, and the policy step refuses it at the restricted level only.
func TestBuildRunAsRoot(t *testing.T) {
	t.Parallel()
	tpl := newTemplate(t, podtemplate.DefaultTemplate(), podtemplate.Config{})
	spec := podtemplate.TaskSpec{Key: testKey, Image: "busybox", RunAsUser: new(int64(0)),
		Override: mustOverride(t, "spec:\n  securityContext:\n    runAsNonRoot: false\n")}
	pod, err := tpl.Build(t.Context(), spec)
	require.NoError(t, err)
	require.Equal(t, new(int64(0)), pod.Spec.Containers[0].SecurityContext.RunAsUser)
	violations := (podtemplate.Policy{}).Check(pod)
	require.Contains(t, violations, podtemplate.Violation{
		Field: "spec.containers[0].securityContext.runAsUser", Rule: "restricted/runAsUser",
		Detail: "0 is root: run as another user (TaskSpec.RunAsUser sets the main container's), or lower Policy.Level to baseline",
	})
	require.Empty(t, (podtemplate.Policy{Level: podtemplate.LevelBaseline}).Check(pod))

	// A container that keeps its root user away from runAsNonRoot builds.
	spec.Override = podtemplate.Override{}
	tpl = newTemplate(t, &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "base"}}}}, podtemplate.Config{})
	_, err = tpl.Build(t.Context(), spec)
	require.NoError(t, err)
}

// The annotations that carry TaskSpec.Files are the builder's: a template
// may not hold one, an override may not set, change or remove one (even
// where Config.OverrideFields lets it set annotations), and a middleware's
// changes to them are undone. The executor's policy step does not take
// them for internal annotations.
func TestBuildFilesAnnotations(t *testing.T) {
	t.Parallel()
	files := []podtemplate.File{{Path: "/opt/task/run.sh", Content: "echo genuine\n", Mode: 0o755}}

	base := podtemplate.DefaultTemplate()
	base.Annotations = map[string]string{filesAnnotation("0"): "echo forged"}
	_, err := podtemplate.New(base, podtemplate.Config{ExecutorID: "x"})
	require.ErrorIs(t, err, podtemplate.ErrInvalidTemplate)
	require.ErrorContains(t, err, "metadata.annotations[files.kubexec.io/0]: annotations under files.kubexec.io/ carry TaskSpec.Files and only the builder writes them")

	for _, tt := range []struct {
		name, override string
		files          []podtemplate.File
		cfg            podtemplate.Config
		field, detail  string
	}{
		{name: "change", override: "metadata:\n  annotations:\n    files.kubexec.io/0: echo forged\n", files: files,
			field: "metadata.annotations[files.kubexec.io/0]", detail: "an override may not change it"},
		{name: "change where annotations are allowed", override: "metadata:\n  annotations:\n    files.kubexec.io/0: echo forged\n", files: files,
			cfg:   podtemplate.Config{OverrideFields: []string{"metadata.annotations"}},
			field: "metadata.annotations[files.kubexec.io/0]", detail: "an override may not change it"},
		{name: "remove", override: "metadata:\n  annotations:\n    files.kubexec.io/0: null\n", files: files,
			field: "metadata.annotations[files.kubexec.io/0]", detail: "an override may not remove it"},
		{name: "add", override: "metadata:\n  annotations:\n    files.kubexec.io/1: echo more\n", files: files,
			field: "metadata.annotations[files.kubexec.io/1]", detail: "an override may not set it"},
		{name: "add without files", override: "metadata:\n  annotations:\n    files.kubexec.io/0: echo forged\n",
			field: "metadata.annotations[files.kubexec.io/0]", detail: "an override may not set it"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tpl := newTemplate(t, podtemplate.DefaultTemplate(), tt.cfg)
			_, err := tpl.Build(t.Context(), podtemplate.TaskSpec{Key: testKey, Image: "busybox", Files: tt.files, Override: mustOverride(t, tt.override)})
			require.ErrorIs(t, err, podtemplate.ErrPolicy)
			var pe *podtemplate.PolicyError
			require.ErrorAs(t, err, &pe)
			require.Len(t, pe.Violations, 1)
			require.Equal(t, tt.field, pe.Violations[0].Field)
			require.Equal(t, "internalAnnotation", pe.Violations[0].Rule)
			require.Contains(t, pe.Violations[0].Detail, tt.detail+": annotations under files.kubexec.io/ carry TaskSpec.Files")
		})
	}

	t.Run("an override may set other annotations", func(t *testing.T) {
		t.Parallel()
		tpl := newTemplate(t, podtemplate.DefaultTemplate(), podtemplate.Config{})
		pod, err := tpl.Build(t.Context(), podtemplate.TaskSpec{Key: testKey, Image: "busybox", Files: files,
			Override: mustOverride(t, "metadata:\n  annotations:\n    note: hi\n")})
		require.NoError(t, err)
		require.Equal(t, "hi", pod.Annotations["note"])
		require.Equal(t, "echo genuine\n", pod.Annotations[filesAnnotation("0")])
	})

	t.Run("middleware changes are undone", func(t *testing.T) {
		t.Parallel()
		var seen string
		tamper := func(_ context.Context, pod *corev1.Pod) error {
			seen = pod.Annotations[filesAnnotation("0")]
			pod.Annotations[filesAnnotation("0")] = "echo forged"
			pod.Annotations[filesAnnotation("7")] = "echo extra"
			return nil
		}
		tpl := newTemplate(t, podtemplate.DefaultTemplate(), podtemplate.Config{Middleware: []podtemplate.Middleware{tamper}})
		pod, err := tpl.Build(t.Context(), podtemplate.TaskSpec{Key: testKey, Image: "busybox", Files: files})
		require.NoError(t, err)
		require.Equal(t, "echo genuine\n", seen, "middleware sees the files")
		require.Equal(t, "echo genuine\n", pod.Annotations[filesAnnotation("0")])
		require.NotContains(t, pod.Annotations, filesAnnotation("7"))

		// The executor's policy step refuses kubexec's internal
		// annotations (kubexec.InternalAnnotation) on a built pod; the
		// files' annotations are not among them, so the pod passes it.
		for k := range pod.Annotations {
			if strings.HasPrefix(k, "files.kubexec.io/") {
				require.False(t, kubexec.InternalAnnotation(k), k)
			}
		}
		require.Empty(t, (podtemplate.Policy{}).Check(pod))
	})
}
