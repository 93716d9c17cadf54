package main

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/kubernetes/third_party/forked/golang/expansion"
)

// configError is a container whose configuration cannot be honoured yet:
// the kubelet's CreateContainerConfigError. The container waits and is
// tried again, in case the missing object appears.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func configErrorf(format string, args ...any) error {
	return &configError{msg: fmt.Sprintf(format, args...)}
}

// getSecret reads a Secret from the informer's cache, else from the API
// (it may be newer than the cache). Errors read as the kubelet's.
func (p *provider) getSecret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	if s, err := p.secrets.Secrets(namespace).Get(name); err == nil {
		return s, nil
	}
	s, err := p.client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	return s, objectError("secret", name, err)
}

func (p *provider) getConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	if cm, err := p.configMaps.ConfigMaps(namespace).Get(name); err == nil {
		return cm, nil
	}
	cm, err := p.client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	return cm, objectError("configmap", name, err)
}

func objectError(kind, name string, err error) error {
	switch {
	case err == nil:
		return nil
	case isNotFound(err):
		return apierrors.NewNotFound(schema.GroupResource{Resource: kind}, name)
	}
	return fmt.Errorf("failed to get %s %q: %w", kind, name, err)
}

// envVars is an ordered set of variables: setting a name again replaces
// its value in place.
type envVars struct {
	names  []string
	values map[string]string
}

func (e *envVars) set(name, value string) {
	if e.values == nil {
		e.values = map[string]string{}
	}
	if _, ok := e.values[name]; !ok {
		e.names = append(e.names, name)
	}
	e.values[name] = value
}

func (e *envVars) list() []string {
	out := make([]string, 0, len(e.names))
	for _, n := range e.names {
		out = append(out, n+"="+e.values[n])
	}
	return out
}

// containerEnv is the environment of container c, as the kubelet makes it:
// the API server's service variables, then envFrom, then env (with $(VAR)
// references expanded), then what the image would set (PATH, HOME,
// HOSTNAME) where the pod does not.
func (r *podRuntime) containerEnv(ctx context.Context, pod *corev1.Pod, c *corev1.Container) ([]string, error) {
	p := r.p
	service := map[string]string{
		"KUBERNETES_SERVICE_HOST":       p.cfg.apiHost,
		"KUBERNETES_SERVICE_PORT":       p.cfg.apiPort,
		"KUBERNETES_SERVICE_PORT_HTTPS": p.cfg.apiPort,
		"KUBERNETES_PORT":               "tcp://" + p.cfg.apiHost + ":" + p.cfg.apiPort,
	}
	var env envVars
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			optional := from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional
			cm, err := p.getConfigMap(ctx, pod.Namespace, from.ConfigMapRef.Name)
			if err != nil {
				if optional && isNotFound(err) {
					continue
				}
				return nil, configErrorf("%v", err)
			}
			keys := make([]string, 0, len(cm.Data))
			for k := range cm.Data {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				env.set(from.Prefix+k, cm.Data[k])
			}
		case from.SecretRef != nil:
			optional := from.SecretRef.Optional != nil && *from.SecretRef.Optional
			s, err := p.getSecret(ctx, pod.Namespace, from.SecretRef.Name)
			if err != nil {
				if optional && isNotFound(err) {
					continue
				}
				return nil, configErrorf("%v", err)
			}
			keys := make([]string, 0, len(s.Data))
			for k := range s.Data {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				env.set(from.Prefix+k, string(s.Data[k]))
			}
		}
	}
	for _, ev := range c.Env {
		if ev.ValueFrom == nil {
			mapping := expansion.MappingFuncFor(env.values, service)
			env.set(ev.Name, expansion.Expand(ev.Value, mapping))
			continue
		}
		v, ok, err := r.envValueFrom(ctx, pod, c, ev)
		if err != nil {
			return nil, err
		}
		if ok {
			env.set(ev.Name, v)
		}
	}
	for _, k := range []string{"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBERNETES_SERVICE_PORT_HTTPS", "KUBERNETES_PORT"} {
		if _, ok := env.values[k]; !ok {
			env.set(k, service[k])
		}
	}
	if _, ok := env.values["PATH"]; !ok {
		env.set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	if _, ok := env.values["HOSTNAME"]; !ok {
		env.set("HOSTNAME", podHostname(pod))
	}
	if _, ok := env.values["HOME"]; !ok {
		home := "/root"
		if uid := runAsUser(pod, c); uid != nil && *uid != 0 {
			home = "/"
		}
		env.set("HOME", home)
	}
	return env.list(), nil
}

func (r *podRuntime) envValueFrom(ctx context.Context, pod *corev1.Pod, c *corev1.Container, ev corev1.EnvVar) (string, bool, error) {
	from := ev.ValueFrom
	switch {
	case from.FieldRef != nil:
		v, err := r.fieldValue(pod, from.FieldRef.FieldPath)
		if err != nil {
			return "", false, configErrorf("env %s: %v", ev.Name, err)
		}
		return v, true, nil
	case from.ResourceFieldRef != nil:
		v, err := r.resourceValue(pod, c, from.ResourceFieldRef)
		if err != nil {
			return "", false, configErrorf("env %s: %v", ev.Name, err)
		}
		return v, true, nil
	case from.ConfigMapKeyRef != nil:
		ref := from.ConfigMapKeyRef
		optional := ref.Optional != nil && *ref.Optional
		cm, err := r.p.getConfigMap(ctx, pod.Namespace, ref.Name)
		if err != nil {
			if optional && isNotFound(err) {
				return "", false, nil
			}
			return "", false, configErrorf("%v", err)
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			if b, isBinary := cm.BinaryData[ref.Key]; isBinary {
				return string(b), true, nil
			}
			if optional {
				return "", false, nil
			}
			return "", false, configErrorf("couldn't find key %v in ConfigMap %v/%v", ref.Key, pod.Namespace, ref.Name)
		}
		return v, true, nil
	case from.SecretKeyRef != nil:
		ref := from.SecretKeyRef
		optional := ref.Optional != nil && *ref.Optional
		s, err := r.p.getSecret(ctx, pod.Namespace, ref.Name)
		if err != nil {
			if optional && isNotFound(err) {
				return "", false, nil
			}
			return "", false, configErrorf("%v", err)
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			if optional {
				return "", false, nil
			}
			return "", false, configErrorf("couldn't find key %v in Secret %v/%v", ref.Key, pod.Namespace, ref.Name)
		}
		return string(v), true, nil
	}
	return "", false, configErrorf("env %s: unsupported valueFrom", ev.Name)
}

// fieldValue is a downward API field of the pod.
func (r *podRuntime) fieldValue(pod *corev1.Pod, fieldPath string) (string, error) {
	ip := r.p.cfg.address
	switch fieldPath {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs":
		return ip, nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations} {
		if rest, ok := strings.CutPrefix(fieldPath, prefix+"['"); ok {
			if key, ok := strings.CutSuffix(rest, "']"); ok {
				return m[key], nil
			}
		}
	}
	return "", fmt.Errorf("unsupported fieldPath %q", fieldPath)
}

// formatMap is the downward API's format of labels and annotations.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%v=%q\n", k, m[k])
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// resourceValue is a downward API resource of a container: its limit (the
// node's allocatable when it has none) or request, over the divisor,
// rounded up.
func (r *podRuntime) resourceValue(pod *corev1.Pod, c *corev1.Container, sel *corev1.ResourceFieldSelector) (string, error) {
	if sel.ContainerName != "" {
		c = findContainer(pod, sel.ContainerName)
		if c == nil {
			return "", fmt.Errorf("container %q not found", sel.ContainerName)
		}
	}
	kind, name, ok := strings.Cut(sel.Resource, ".")
	if !ok {
		return "", fmt.Errorf("unsupported resource %q", sel.Resource)
	}
	var q resource.Quantity
	switch kind {
	case "limits":
		if v, ok := c.Resources.Limits[corev1.ResourceName(name)]; ok {
			q = v
		} else {
			q = r.p.allocatable()[corev1.ResourceName(name)]
		}
	case "requests":
		q = c.Resources.Requests[corev1.ResourceName(name)]
	default:
		return "", fmt.Errorf("unsupported resource %q", sel.Resource)
	}
	divisor := sel.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if name == string(corev1.ResourceCPU) {
		return fmt.Sprint(int64(math.Ceil(float64(q.MilliValue()) / float64(divisor.MilliValue())))), nil
	}
	return fmt.Sprint(int64(math.Ceil(float64(q.Value()) / float64(divisor.Value())))), nil
}

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

func podHostname(pod *corev1.Pod) string {
	if pod.Spec.Hostname != "" {
		return pod.Spec.Hostname
	}
	name := pod.Name
	if len(name) > 63 {
		name = name[:63]
	}
	return name
}

func runAsUser(pod *corev1.Pod, c *corev1.Container) *int64 {
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		return c.SecurityContext.RunAsUser
	}
	if pod.Spec.SecurityContext != nil {
		return pod.Spec.SecurityContext.RunAsUser
	}
	return nil
}

func runAsGroup(pod *corev1.Pod, c *corev1.Container) *int64 {
	if c.SecurityContext != nil && c.SecurityContext.RunAsGroup != nil {
		return c.SecurityContext.RunAsGroup
	}
	if pod.Spec.SecurityContext != nil {
		return pod.Spec.SecurityContext.RunAsGroup
	}
	return nil
}

func runAsNonRoot(pod *corev1.Pod, c *corev1.Container) bool {
	if c.SecurityContext != nil && c.SecurityContext.RunAsNonRoot != nil {
		return *c.SecurityContext.RunAsNonRoot
	}
	return pod.Spec.SecurityContext != nil && pod.Spec.SecurityContext.RunAsNonRoot != nil && *pod.Spec.SecurityContext.RunAsNonRoot
}
