package podtemplate

import (
	"fmt"
	"io/fs"
	"math"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/kubexec/kubexec"
)

// File is a small text file that [TaskSpec.Files] puts in the main
// container, such as a script the task runs or a configuration file it
// reads.
//
// A [Template] delivers it without creating any other API object (the
// executor needs no permission on ConfigMaps): the file's content goes into
// an annotation of the pod, files.kubexec.io/<index in TaskSpec.Files>,
// which a downwardAPI volume named "kubexec-files" projects; the file is
// mounted read-only at Path with a subPath, so the rest of its folder stays
// as the image has it. Only the Template writes these annotations: a
// template or an override that sets one is refused, and a middleware's
// changes to them are undone.
//
// The content is part of the pod object: whoever can read the pod can read
// it (keep secrets in a Secret, mounted with TaskSpec.Volumes), and it
// counts towards the pod's size in etcd and in the executor's watch cache.
type File struct {
	// Path is where the file appears in the main container: an absolute,
	// clean path such as "/opt/task/run.sh". It may not be the path of
	// another volume mount of the main container, inside one, or a folder
	// of one, nor the container's working directory or a folder of it.
	// Required.
	Path string
	// Content is the file's text, in UTF-8 (annotations hold text; encode
	// binary content, for example in base64, and decode it in the task).
	// All files together hold at most [MaxFilesBytes]. Default: an empty
	// file.
	Content string
	// Mode is the file's permission bits, such as 0o755 for a script the
	// command runs directly; no other bits. The file belongs to root (its
	// group is the pod's fsGroup when one is set), so a task that runs as
	// another user needs the bits for others: 0o644 or 0o755, not 0o600.
	// Default 0o644.
	Mode fs.FileMode
}

// MaxFilesBytes is the most content TaskSpec.Files may hold, all files
// together: half of the 256 KiB the API server allows for all of a pod's
// annotations, the other half left to the template, the override,
// middleware and kubexec's own annotations.
const MaxFilesBytes = 128 * 1024

const (
	// filesAnnotationPrefix prefixes the annotations that carry
	// TaskSpec.Files, one per file, named by the file's index.
	filesAnnotationPrefix = "files." + kubexec.Domain + "/"
	// filesVolume is the downwardAPI volume that projects the files.
	filesVolume = "kubexec-files"
	// defaultFileMode is a file's mode when File.Mode is 0.
	defaultFileMode fs.FileMode = 0o644
	// maxID is the largest user or group id the API server accepts.
	maxID = math.MaxInt32
)

// filesAnnotation is the annotation that carries file i of TaskSpec.Files.
func filesAnnotation(i int) string { return filesAnnotationPrefix + strconv.Itoa(i) }

// isFilesAnnotation reports whether an annotation is one of those that
// carry TaskSpec.Files.
func isFilesAnnotation(name string) bool { return strings.HasPrefix(name, filesAnnotationPrefix) }

// filesAnnotations returns the annotations that carry files.
func filesAnnotations(files []File) map[string]string {
	out := make(map[string]string, len(files))
	for i, f := range files {
		out[filesAnnotation(i)] = f.Content
	}
	return out
}

// setFilesAnnotations makes the files annotations of pod exactly want:
// every other annotation under the prefix is removed.
func setFilesAnnotations(pod *corev1.Pod, want map[string]string) {
	for k := range pod.Annotations {
		if isFilesAnnotation(k) {
			delete(pod.Annotations, k)
		}
	}
	if len(want) == 0 {
		return
	}
	if pod.Annotations == nil {
		pod.Annotations = make(map[string]string, len(want))
	}
	for k, v := range want {
		pod.Annotations[k] = v
	}
}

// forgedFiles returns the violations of a pod whose files annotations are
// not exactly want: an override set, changed or removed one.
func forgedFiles(pod *corev1.Pod, want map[string]string) []Violation {
	var out []Violation
	add := func(k, what string) {
		out = append(out, Violation{
			Field: "metadata.annotations[" + k + "]", Rule: "internalAnnotation",
			Detail: what + ": annotations under " + filesAnnotationPrefix + " carry TaskSpec.Files and only the builder writes them; set TaskSpec.Files instead",
		})
	}
	for _, k := range sortedKeys(pod.Annotations) {
		if !isFilesAnnotation(k) {
			continue
		}
		if v, ok := want[k]; !ok {
			add(k, "an override may not set it")
		} else if v != pod.Annotations[k] {
			add(k, "an override may not change it")
		}
	}
	for _, k := range sortedKeys(want) {
		if _, ok := pod.Annotations[k]; !ok {
			add(k, "an override may not remove it")
		}
	}
	return out
}

// validateSpec checks the fields of spec that need no template: what the
// API server would reject, named by their TaskSpec path.
func validateSpec(spec TaskSpec) field.ErrorList {
	root := field.NewPath("TaskSpec")
	var errs field.ErrorList
	for i, e := range spec.Env {
		if e.Name == "" {
			errs = append(errs, field.Required(root.Child("Env").Index(i).Child("Name"), "give every variable a name"))
		}
	}
	if d := spec.WorkingDir; d != "" {
		p := root.Child("WorkingDir")
		switch {
		case !path.IsAbs(d):
			errs = append(errs, field.Invalid(p, d, "not an absolute path: write it from the root, such as /work"))
		case path.Clean(d) != d:
			errs = append(errs, field.Invalid(p, d, fmt.Sprintf("not a clean path: write it as %q", path.Clean(d))))
		}
	}
	if d := spec.ActiveDeadline; d != 0 {
		p := root.Child("ActiveDeadline")
		switch {
		case d < 0:
			errs = append(errs, field.Invalid(p, d.String(), "must not be negative: set a duration of 1s or more, or 0 for no deadline"))
		case d < time.Second:
			errs = append(errs, field.Invalid(p, d.String(), "must be at least 1s (the pod's deadline is in whole seconds): set 1s or more, or 0 for no deadline"))
		case deadlineSeconds(d) > math.MaxInt32:
			errs = append(errs, field.Invalid(p, d.String(), fmt.Sprintf("must be at most %ds (about 68 years), the API server's limit: set a shorter one, or 0 for no deadline", math.MaxInt32)))
		}
	}
	for _, id := range []struct {
		name, what string
		v          *int64
	}{{"RunAsUser", "user", spec.RunAsUser}, {"RunAsGroup", "group", spec.RunAsGroup}} {
		if id.v != nil && (*id.v < 0 || *id.v > maxID) {
			errs = append(errs, field.Invalid(root.Child(id.name), *id.v, fmt.Sprintf("not a %s id: use one from 0 to %d, or nil to keep the template's", id.what, maxID)))
		}
	}
	errs = append(errs, validateSpecVolumes(root, spec)...)
	errs = append(errs, validateFiles(root.Child("Files"), spec.Files)...)
	return errs
}

func validateSpecVolumes(root *field.Path, spec TaskSpec) field.ErrorList {
	var errs field.ErrorList
	names := map[string]int{}
	for i, v := range spec.Volumes {
		p := root.Child("Volumes").Index(i)
		switch {
		case v.Name == "":
			errs = append(errs, field.Required(p.Child("Name"), "give every volume a name"))
		case len(spec.Files) > 0 && v.Name == filesVolume:
			errs = append(errs, field.Invalid(p.Child("Name"), v.Name, "is the volume that carries TaskSpec.Files: give the volume another name"))
		default:
			for _, msg := range validation.IsDNS1123Label(v.Name) {
				errs = append(errs, field.Invalid(p.Child("Name"), v.Name, msg))
			}
			if j, dup := names[v.Name]; dup {
				errs = append(errs, field.Duplicate(p.Child("Name"), fmt.Sprintf("%s (TaskSpec.Volumes[%d] has this name too: give each volume a unique name)", v.Name, j)))
			} else {
				names[v.Name] = i
			}
		}
		switch n := volumeSources(v.VolumeSource); {
		case n == 0:
			errs = append(errs, field.Required(p, "set the volume's source, such as EmptyDir, ConfigMap, Secret or PersistentVolumeClaim"))
		case n > 1:
			errs = append(errs, field.Invalid(p, v.Name, fmt.Sprintf("sets %d sources: a volume has exactly one; use one volume per source, or a Projected volume", n)))
		}
	}
	paths := map[string]int{}
	for i, m := range spec.VolumeMounts {
		p := root.Child("VolumeMounts").Index(i)
		if m.Name == "" {
			errs = append(errs, field.Required(p.Child("Name"), "name the volume to mount: one of TaskSpec.Volumes or the template's"))
		}
		switch mp := m.MountPath; {
		case mp == "":
			errs = append(errs, field.Required(p.Child("MountPath"), "set where the volume appears in the main container, such as /data"))
		case !path.IsAbs(mp):
			errs = append(errs, field.Invalid(p.Child("MountPath"), mp, "not an absolute path: write it from the root, such as /data"))
		default:
			if j, dup := paths[path.Clean(mp)]; dup {
				errs = append(errs, field.Duplicate(p.Child("MountPath"), fmt.Sprintf("%s (TaskSpec.VolumeMounts[%d] mounts there too: mount each volume at its own path)", mp, j)))
			} else {
				paths[path.Clean(mp)] = i
			}
		}
	}
	return errs
}

// volumeSources counts the sources a volume sets.
func volumeSources(vs corev1.VolumeSource) int {
	v := reflect.ValueOf(vs)
	n := 0
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			n++
		}
	}
	return n
}

func validateFiles(p *field.Path, files []File) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]int{}
	total := 0
	for i, f := range files {
		fp := p.Index(i)
		switch {
		case f.Path == "":
			errs = append(errs, field.Required(fp.Child("Path"), "set where the file appears in the main container, such as /opt/task/run.sh"))
		case !path.IsAbs(f.Path):
			errs = append(errs, field.Invalid(fp.Child("Path"), f.Path, "not an absolute path: write it from the root, such as /opt/task/run.sh"))
		case f.Path == "/" || strings.HasSuffix(f.Path, "/"):
			errs = append(errs, field.Invalid(fp.Child("Path"), f.Path, "names a folder: end it with the file's name, such as /opt/task/run.sh"))
		case path.Clean(f.Path) != f.Path:
			errs = append(errs, field.Invalid(fp.Child("Path"), f.Path, fmt.Sprintf("not a clean path: write it as %q", path.Clean(f.Path))))
		default:
			if j, dup := seen[f.Path]; dup {
				errs = append(errs, field.Duplicate(fp.Child("Path"), fmt.Sprintf("%s (TaskSpec.Files[%d] has this path too: give each file its own path)", f.Path, j)))
			} else {
				seen[f.Path] = i
			}
		}
		if f.Mode&^fs.ModePerm != 0 {
			errs = append(errs, field.Invalid(fp.Child("Mode"), fmt.Sprintf("%#o (%v)", uint32(f.Mode), f.Mode),
				"only permission bits: use a mode such as 0o644, or 0o755 for a script"))
		}
		if !utf8.ValidString(f.Content) {
			errs = append(errs, field.Invalid(fp.Child("Content"), fmt.Sprintf("%d bytes", len(f.Content)),
				"not UTF-8 text: annotations hold text; encode binary content (base64, say) and decode it in the task"))
		}
		total += len(f.Content)
	}
	// A file may not be a folder of another: /a and /a/b.
	for _, a := range sortedKeys(seen) {
		for _, b := range sortedKeys(seen) {
			if strings.HasPrefix(b, a+"/") {
				errs = append(errs, field.Invalid(p.Index(seen[b]).Child("Path"), b,
					fmt.Sprintf("is inside %s, which TaskSpec.Files[%d] makes a file: give one of them another path", a, seen[a])))
			}
		}
	}
	if total > MaxFilesBytes {
		errs = append(errs, &field.Error{
			Type: field.ErrorTypeTooLong, Field: p.String(), BadValue: total,
			Detail: fmt.Sprintf("the files hold %d bytes, more than the %d (podtemplate.MaxFilesBytes) a pod's annotations can carry: "+
				"put larger files in the image, in a ConfigMap or Secret mounted with TaskSpec.Volumes, or fetch them in the task", total, MaxFilesBytes),
		})
	}
	return errs
}

// applyVolumes merges spec's volumes into the pod and its mounts into the
// main container c, and adds the volume and mounts of spec.Files.
func applyVolumes(pod *corev1.Pod, c *corev1.Container, spec TaskSpec) field.ErrorList {
	for _, v := range spec.Volumes {
		if i := slices.IndexFunc(pod.Spec.Volumes, func(t corev1.Volume) bool { return t.Name == v.Name }); i >= 0 {
			pod.Spec.Volumes[i] = *v.DeepCopy()
		} else {
			pod.Spec.Volumes = append(pod.Spec.Volumes, *v.DeepCopy())
		}
	}
	for _, m := range spec.VolumeMounts {
		same := func(t corev1.VolumeMount) bool { return path.Clean(t.MountPath) == path.Clean(m.MountPath) }
		if i := slices.IndexFunc(c.VolumeMounts, same); i >= 0 {
			c.VolumeMounts[i] = *m.DeepCopy()
		} else {
			c.VolumeMounts = append(c.VolumeMounts, *m.DeepCopy())
		}
	}
	if len(spec.Files) == 0 {
		return nil
	}
	if slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == filesVolume }) {
		return field.ErrorList{field.Invalid(field.NewPath("TaskSpec", "Files"), filesVolume,
			"the template has a volume named "+filesVolume+", the volume that carries TaskSpec.Files: rename the template's volume")}
	}
	items := make([]corev1.DownwardAPIVolumeFile, len(spec.Files))
	for i, f := range spec.Files {
		mode := f.Mode
		if mode == 0 {
			mode = defaultFileMode
		}
		m := int32(mode.Perm())
		item := strconv.Itoa(i)
		items[i] = corev1.DownwardAPIVolumeFile{
			Path:     item,
			FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.annotations['" + filesAnnotation(i) + "']"},
			Mode:     &m,
		}
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: filesVolume, MountPath: f.Path, SubPath: item, ReadOnly: true})
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{
		Name:         filesVolume,
		VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: items, DefaultMode: new(int32(defaultFileMode))}},
	})
	return nil
}

// applySecurity sets the main container's user and group.
func applySecurity(c *corev1.Container, spec TaskSpec) {
	if spec.RunAsUser == nil && spec.RunAsGroup == nil {
		return
	}
	if c.SecurityContext == nil {
		c.SecurityContext = &corev1.SecurityContext{}
	}
	if spec.RunAsUser != nil {
		c.SecurityContext.RunAsUser = new(*spec.RunAsUser)
	}
	if spec.RunAsGroup != nil {
		c.SecurityContext.RunAsGroup = new(*spec.RunAsGroup)
	}
}

// deadlineSeconds is d in whole seconds, rounded up.
func deadlineSeconds(d time.Duration) int64 {
	s := int64(d / time.Second)
	if d%time.Second != 0 {
		s++
	}
	return s
}

// validateFilesPlace checks, on the built pod, that no file of spec.Files
// collides with another mount of the main container or with its working
// directory, wherever those came from.
func validateFilesPlace(pod *corev1.Pod, mainName string, files []File) field.ErrorList {
	i := mainIndex(pod, mainName)
	if i < 0 || len(files) == 0 {
		return nil
	}
	c := pod.Spec.Containers[i]
	p := field.NewPath("TaskSpec", "Files")
	own := map[string]bool{} // the subPaths of the files' own mounts
	for j := range files {
		own[strconv.Itoa(j)] = true
	}
	var errs field.ErrorList
	for j, f := range files {
		fp := p.Index(j).Child("Path")
		for _, m := range c.VolumeMounts {
			if m.Name == filesVolume && own[m.SubPath] {
				continue
			}
			mp := path.Clean(m.MountPath)
			switch {
			case mp == f.Path:
				errs = append(errs, field.Invalid(fp, f.Path, fmt.Sprintf("is where volume %q is mounted: give the file another path, or mount the volume elsewhere", m.Name)))
			case mp == "/" || strings.HasPrefix(f.Path, mp+"/"):
				errs = append(errs, field.Invalid(fp, f.Path, fmt.Sprintf("is inside %s, where volume %q is mounted: give the file a path outside every volume mount, such as /opt/task/%s", mp, m.Name, path.Base(f.Path))))
			case strings.HasPrefix(mp, f.Path+"/"):
				errs = append(errs, field.Invalid(fp, f.Path, fmt.Sprintf("is a folder of %s, where volume %q is mounted: give the file another path", mp, m.Name)))
			}
		}
		if wd := path.Clean(c.WorkingDir); c.WorkingDir != "" && (wd == f.Path || strings.HasPrefix(wd, f.Path+"/")) {
			errs = append(errs, field.Invalid(fp, f.Path, fmt.Sprintf("is the main container's working directory %s or a folder of it: give the file a path inside it instead, such as %s/%s", c.WorkingDir, c.WorkingDir, path.Base(f.Path))))
		}
	}
	return errs
}

// rootConflict returns the problem of a container that would run as root
// (uid 0) while runAsNonRoot is true, which the kubelet refuses to start
// (CreateContainerConfigError), or nil. p is the container's path; spec is
// the task spec, which names TaskSpec.RunAsUser when the root user came
// from it.
func rootConflict(pod *corev1.Pod, p *field.Path, c *corev1.Container, isMain bool, spec *TaskSpec) *field.Error {
	psc := pod.Spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	uid, uidPath := sc.RunAsUser, p.Child("securityContext", "runAsUser")
	if uid == nil {
		uid, uidPath = psc.RunAsUser, field.NewPath("spec", "securityContext", "runAsUser")
	}
	nonRoot, nonRootAt := sc.RunAsNonRoot, p.Child("securityContext", "runAsNonRoot").String()
	if nonRoot == nil {
		nonRoot, nonRootAt = psc.RunAsNonRoot, "spec.securityContext.runAsNonRoot"
	}
	if uid == nil || *uid != 0 || nonRoot == nil || !*nonRoot {
		return nil
	}
	if isMain && spec != nil && spec.RunAsUser != nil && *spec.RunAsUser == 0 && sc.RunAsUser != nil {
		return field.Invalid(field.NewPath("TaskSpec", "RunAsUser"), int64(0), fmt.Sprintf(
			"0 is root, but %s is true (DefaultTemplate sets it), so the container would not start: "+
				"set a non-zero user id; to run as root, set runAsNonRoot: false in the template or an override, "+
				"and lower the executor's Policy.Level to baseline (the restricted level refuses root)", nonRootAt))
	}
	return field.Invalid(uidPath, int64(0), fmt.Sprintf(
		"0 is root, but %s is true, so the container would not start: run as a non-zero user id (TaskSpec.RunAsUser for the main container), "+
			"or set runAsNonRoot: false", nonRootAt))
}
