package podtemplate

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// maxAnnotationBytes is the API server's limit on the total size of an
// object's annotations.
const maxAnnotationBytes = 256 * 1024

// validatePod reports what the API server would reject in pod, and what
// would break kubexec's one-pod-one-attempt model, with details that say
// what to fix. It checks a subset of the server's validation: names, label
// and annotation syntax, containers, images, resources, volume references;
// and what the kubelet would refuse to start (root under runAsNonRoot). spec,
// when not nil, is the task spec the pod was built from: the problems its
// fields cause are named by their TaskSpec path.
func validatePod(pod *corev1.Pod, mainName string, spec *TaskSpec) field.ErrorList {
	errs := validateMeta(pod)
	specPath := field.NewPath("spec")

	if len(pod.Spec.Containers) == 0 {
		errs = append(errs, field.Required(specPath.Child("containers"), fmt.Sprintf("add the main container, named %q", mainName)))
	} else if mainIndex(pod, mainName) < 0 {
		errs = append(errs, field.Required(specPath.Child("containers"), fmt.Sprintf(
			"no container named %q: the main container receives the task's image and command; keep it in the template and do not delete it in an override",
			mainName)))
	}

	volumes := map[string]bool{}
	for i, v := range pod.Spec.Volumes {
		p := specPath.Child("volumes").Index(i).Child("name")
		for _, msg := range validation.IsDNS1123Label(v.Name) {
			errs = append(errs, field.Invalid(p, v.Name, msg))
		}
		if volumes[v.Name] {
			errs = append(errs, field.Invalid(p, v.Name, "another volume has this name: give each volume a unique name"))
		}
		volumes[v.Name] = true
	}

	containerNames := map[string]string{}
	reported := map[string]bool{} // root conflicts, by field: the pod's is reported once
	check := func(p *field.Path, c *corev1.Container) {
		np := p.Child("name")
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			errs = append(errs, field.Invalid(np, c.Name, msg))
		}
		if other, dup := containerNames[c.Name]; dup {
			errs = append(errs, field.Invalid(np, c.Name, fmt.Sprintf("%s has this name too: give each container a unique name", other)))
		} else {
			containerNames[c.Name] = p.String()
		}
		if c.Image == "" {
			detail := "set the container's image"
			if c.Name == mainName {
				detail = "set TaskSpec.Image, or the main container's image in the template"
			}
			errs = append(errs, field.Required(p.Child("image"), detail))
		}
		for i, e := range c.Env {
			for _, msg := range validation.IsRelaxedEnvVarName(e.Name) {
				errs = append(errs, field.Invalid(p.Child("env").Index(i).Child("name"), e.Name, msg))
			}
		}
		errs = append(errs, validateResources(p.Child("resources"), c.Resources)...)
		errs = append(errs, validateSecurityContext(p.Child("securityContext"), c.SecurityContext)...)
		if fe := rootConflict(pod, p, c, c.Name == mainName, spec); fe != nil && !reported[fe.Field] {
			reported[fe.Field] = true
			errs = append(errs, fe)
		}
		for i, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				errs = append(errs, field.Invalid(p.Child("volumeMounts").Index(i).Child("name"), m.Name,
					"no volume of this name in spec.volumes: add the volume or fix the mount's name"))
			}
		}
	}
	for i := range pod.Spec.InitContainers {
		check(specPath.Child("initContainers").Index(i), &pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		check(specPath.Child("containers").Index(i), &pod.Spec.Containers[i])
	}
	if len(pod.Spec.EphemeralContainers) > 0 {
		errs = append(errs, field.Forbidden(specPath.Child("ephemeralContainers"), "cannot be set when creating a pod: remove them"))
	}
	if p := pod.Spec.RestartPolicy; p != corev1.RestartPolicyNever {
		errs = append(errs, field.Invalid(specPath.Child("restartPolicy"), p,
			"a pod runs exactly one attempt: use Never (the scheduler decides about retries)"))
	}
	if d := pod.Spec.ActiveDeadlineSeconds; d != nil && *d <= 0 {
		errs = append(errs, field.Invalid(specPath.Child("activeDeadlineSeconds"), *d, "must be greater than 0: set a deadline in seconds, or leave it out"))
	}
	if spec != nil {
		errs = append(errs, validateFilesPlace(pod, mainName, spec.Files)...)
	}
	return errs
}

func validateMeta(pod *corev1.Pod) field.ErrorList {
	var errs field.ErrorList
	meta := field.NewPath("metadata")
	for _, msg := range validation.IsDNS1123Label(pod.Name) {
		errs = append(errs, field.Invalid(meta.Child("name"), pod.Name, msg))
	}
	for _, msg := range validation.IsDNS1123Label(pod.Namespace) {
		errs = append(errs, field.Invalid(meta.Child("namespace"), pod.Namespace,
			msg+": set a valid namespace in the task spec, template, override or Config.Namespace"))
	}
	for _, k := range sortedKeys(pod.Labels) {
		p := meta.Child("labels").Key(k)
		for _, msg := range content.IsLabelKey(k) {
			errs = append(errs, field.Invalid(p, k, msg))
		}
		for _, msg := range content.IsLabelValue(pod.Labels[k]) {
			errs = append(errs, field.Invalid(p, pod.Labels[k], msg+": kubexec.SafeLabelValue makes any string a valid value"))
		}
	}
	size := 0
	for _, k := range sortedKeys(pod.Annotations) {
		for _, msg := range content.IsLabelKey(k) {
			errs = append(errs, field.Invalid(meta.Child("annotations").Key(k), k, msg))
		}
		size += len(k) + len(pod.Annotations[k])
	}
	if size > maxAnnotationBytes {
		errs = append(errs, &field.Error{
			Type:  field.ErrorTypeTooLong,
			Field: meta.Child("annotations").String(),
			Detail: fmt.Sprintf("annotations take %d bytes, more than the %d the API server accepts: "+
				"shorten the task's ids, TaskSpec.Files or the template's annotations", size, maxAnnotationBytes),
		})
	}
	if pod.ResourceVersion != "" || pod.UID != "" || pod.DeletionTimestamp != nil {
		errs = append(errs, field.Forbidden(meta, "resourceVersion, uid and deletionTimestamp are set by the server: remove them"))
	}
	return errs
}

// validateSecurityContext checks the combinations the API server rejects:
// a privileged container, or one that adds CAP_SYS_ADMIN, escalates
// privileges by definition.
func validateSecurityContext(p *field.Path, sc *corev1.SecurityContext) field.ErrorList {
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		return nil
	}
	var errs field.ErrorList
	if sc.Privileged != nil && *sc.Privileged {
		errs = append(errs, field.Invalid(p.Child("privileged"), true,
			"a privileged container cannot set allowPrivilegeEscalation to false: set allowPrivilegeEscalation to true (or null) too, or drop privileged"))
	}
	if sc.Capabilities != nil && slices.Contains(sc.Capabilities.Add, "CAP_SYS_ADMIN") {
		errs = append(errs, field.Invalid(p.Child("capabilities", "add"), "CAP_SYS_ADMIN",
			"a container that adds CAP_SYS_ADMIN cannot set allowPrivilegeEscalation to false: set allowPrivilegeEscalation to true (or null) too, or drop the capability"))
	}
	return errs
}

func validateResources(p *field.Path, r corev1.ResourceRequirements) field.ErrorList {
	var errs field.ErrorList
	for _, list := range []struct {
		name string
		rl   corev1.ResourceList
	}{{"requests", r.Requests}, {"limits", r.Limits}} {
		for _, name := range sortedKeys(list.rl) {
			q := list.rl[name]
			lp := p.Child(list.name).Key(string(name))
			for _, msg := range content.IsLabelKey(string(name)) {
				errs = append(errs, field.Invalid(lp, name, "not a resource name: "+msg))
			}
			if q.Sign() < 0 {
				errs = append(errs, field.Invalid(lp, q.String(), "must not be negative"))
			}
		}
	}
	for _, name := range sortedKeys(r.Requests) {
		req := r.Requests[name]
		if lim, ok := r.Limits[name]; ok && req.Cmp(lim) > 0 {
			errs = append(errs, field.Invalid(p.Child("requests").Key(string(name)), req.String(),
				fmt.Sprintf("must be less than or equal to the limit %s: raise the limit or lower the request", lim.String())))
		}
	}
	return errs
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
