package podtemplate

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubexec/kubexec"
)

// ErrPolicy is wrapped by *[PolicyError]: the built pod breaks the host's
// [Policy].
var ErrPolicy = errors.New("podtemplate: pod refused by policy")

// Level is a Pod Security Standard level
// (https://kubernetes.io/docs/concepts/security/pod-security-standards/).
type Level string

// The Pod Security Standard levels, from the most to the least strict.
const (
	// LevelRestricted: baseline, plus a non-root user, no privilege
	// escalation, every capability dropped but NET_BIND_SERVICE, the
	// runtime's seccomp profile, and only configMap, csi, downwardAPI,
	// emptyDir, ephemeral, persistentVolumeClaim, projected and secret
	// volumes.
	LevelRestricted Level = "restricted"
	// LevelBaseline: no host namespaces, ports or paths, no privileged
	// containers, no added capabilities beyond the runtime's defaults, no
	// unconfined seccomp or AppArmor, no custom SELinux user, role or type,
	// no unmasked /proc, only the safe sysctls.
	LevelBaseline Level = "baseline"
	// LevelPrivileged checks nothing.
	LevelPrivileged Level = "privileged"
)

// DefaultServiceAccount is the only ServiceAccount a [Policy] allows when
// its ServiceAccounts is empty: the namespace's own, which holds no
// permissions unless someone granted it some.
const DefaultServiceAccount = "default"

// AnyServiceAccount in Policy.ServiceAccounts allows every ServiceAccount
// but the executor's own (see Policy.AllowExecutorServiceAccount).
const AnyServiceAccount = "*"

// Policy is what every pod the executor creates must respect, whoever wrote
// the part of it that breaks the rule: the template, the task spec, a
// per-task override, a middleware or a Builder of the host's own. It is
// checked last, on the pod exactly as it will be created, so it holds for
// overrides written by task authors the host trusts less than itself.
//
// The zero value is the default: the restricted Pod Security Standard, the
// namespace's "default" ServiceAccount only, no finalizers but kubexec's
// own, no ownerReferences and no spec.nodeName. Widen it field by field;
// Disabled turns it off.
type Policy struct {
	// Disabled turns every check off. Default false.
	Disabled bool
	// Level is the Pod Security Standard every pod must pass.
	// Default LevelRestricted.
	Level Level
	// ServiceAccounts are the ServiceAccounts a pod may run as, by name, in
	// any namespace (an empty spec.serviceAccountName is "default"), or
	// AnyServiceAccount. Default: ["default"].
	ServiceAccounts []string
	// ExecutorServiceAccount is the executor's own ServiceAccount as
	// "namespace/name", refused to every pod unless
	// AllowExecutorServiceAccount is set, even when ServiceAccounts allows
	// it: a task that runs as the executor can create, exec into and
	// delete every task's pod. Default: the executor fills it in at Start
	// from the identity of its client (a SelfSubjectReview) when that is a
	// ServiceAccount.
	ExecutorServiceAccount string
	// AllowExecutorServiceAccount lets pods run as ExecutorServiceAccount.
	// Default false.
	AllowExecutorServiceAccount bool
	// Finalizers are the finalizers a pod may carry besides kubexec's own
	// (a Middleware's, for example). Default none.
	Finalizers []string
	// AllowOwnerReferences lets pods carry ownerReferences: an owner's
	// deletion then deletes the pod through the garbage collector, and a
	// controller reference hands the pod to that controller. Default
	// false.
	AllowOwnerReferences bool
	// AllowNodeName lets pods set spec.nodeName, which skips the scheduler
	// with its taints, affinity and resource checks. Default false.
	AllowNodeName bool
}

// Validate reports a Policy that cannot be applied.
func (p Policy) Validate() error {
	switch p.Level {
	case "", LevelRestricted, LevelBaseline, LevelPrivileged:
	default:
		return fmt.Errorf("%w: Policy.Level %q: use %q, %q or %q", kubexec.ErrInvalidConfig, p.Level, LevelRestricted, LevelBaseline, LevelPrivileged)
	}
	if i := slices.Index(p.ServiceAccounts, ""); i >= 0 {
		return fmt.Errorf("%w: Policy.ServiceAccounts[%d] is empty: name a ServiceAccount, %q, or %q for any", kubexec.ErrInvalidConfig, i, DefaultServiceAccount, AnyServiceAccount)
	}
	if p.ExecutorServiceAccount != "" {
		if ns, name, ok := strings.Cut(p.ExecutorServiceAccount, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("%w: Policy.ExecutorServiceAccount %q: write it as namespace/name", kubexec.ErrInvalidConfig, p.ExecutorServiceAccount)
		}
	}
	if i := slices.Index(p.Finalizers, kubexec.FinalizerResultTracking); i >= 0 {
		return fmt.Errorf("%w: Policy.Finalizers[%d]: %s is kubexec's own and always allowed: remove it", kubexec.ErrInvalidConfig, i, kubexec.FinalizerResultTracking)
	}
	return nil
}

// Violation is one rule a pod breaks.
type Violation struct {
	// Field is the path of the offending field, such as
	// "spec.containers[0].securityContext.privileged".
	Field string
	// Rule names the rule: a Pod Security Standard control as
	// "restricted/runAsNonRoot" or "baseline/privileged", or one of
	// kubexec's own: "serviceAccount", "executorServiceAccount",
	// "namespace", "internalAnnotation", "finalizer", "ownerReferences",
	// "nodeName", "overrideFields".
	Rule string
	// Detail says what is wrong and what to do.
	Detail string
}

func (v Violation) String() string {
	return fmt.Sprintf("%s: rule %s: %s", v.Field, v.Rule, v.Detail)
}

// PolicyError reports a pod that breaks the host's Policy, with every rule
// it breaks. It wraps [ErrPolicy].
type PolicyError struct {
	// Pod is the pod's namespace/name.
	Pod string
	// Key is the attempt the pod was built for.
	Key kubexec.TaskKey
	// Violations lists the broken rules, at least one.
	Violations []Violation
}

// Error implements error.
func (e *PolicyError) Error() string {
	msgs := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		msgs[i] = v.String()
	}
	return fmt.Sprintf("%v: pod %s for %s: %s", ErrPolicy, e.Pod, e.Key, strings.Join(msgs, "; "))
}

// Unwrap returns [ErrPolicy].
func (e *PolicyError) Unwrap() error { return ErrPolicy }

// Check returns the rules pod breaks, or nil. pod is the pod as it will be
// created: kubexec's own finalizer is allowed, every other one must be in
// p.Finalizers.
func (p Policy) Check(pod *corev1.Pod) []Violation {
	if p.Disabled {
		return nil
	}
	var out []Violation
	add := func(field, rule, detail string) { out = append(out, Violation{field, rule, detail}) }

	for _, sa := range []struct{ field, name string }{
		{"spec.serviceAccountName", pod.Spec.ServiceAccountName},
		{"spec.serviceAccount", pod.Spec.DeprecatedServiceAccount},
	} {
		name := sa.name
		if name == "" {
			if sa.field == "spec.serviceAccount" {
				continue
			}
			name = DefaultServiceAccount
		}
		if p.ExecutorServiceAccount == pod.Namespace+"/"+name && !p.AllowExecutorServiceAccount {
			add(sa.field, "executorServiceAccount", fmt.Sprintf(
				"%q is the executor's own ServiceAccount, which may create, exec into and delete every task's pod: run tasks as another one (Policy.AllowExecutorServiceAccount allows it)", name))
			continue
		}
		allowed := p.ServiceAccounts
		if len(allowed) == 0 {
			allowed = []string{DefaultServiceAccount}
		}
		if !slices.Contains(allowed, name) && !slices.Contains(allowed, AnyServiceAccount) {
			add(sa.field, "serviceAccount", fmt.Sprintf("%q is not an allowed ServiceAccount (%s): use one of those, or add it to Policy.ServiceAccounts", name, strings.Join(allowed, ", ")))
		}
	}
	for i, f := range pod.Finalizers {
		if f != kubexec.FinalizerResultTracking && !slices.Contains(p.Finalizers, f) {
			add(fmt.Sprintf("metadata.finalizers[%d]", i), "finalizer", fmt.Sprintf(
				"%q is not kubexec's: a finalizer keeps the pod after its deletion until someone removes it; remove it, or add it to Policy.Finalizers", f))
		}
	}
	if len(pod.OwnerReferences) > 0 && !p.AllowOwnerReferences {
		add("metadata.ownerReferences", "ownerReferences",
			"a task's pod belongs to its executor only: an owner's deletion would delete it, and a controller would take it over; remove them, or set Policy.AllowOwnerReferences")
	}
	if pod.Spec.NodeName != "" && !p.AllowNodeName {
		add("spec.nodeName", "nodeName", fmt.Sprintf(
			"%q skips the scheduler (taints, affinity, resources): choose nodes with a nodeSelector or affinity instead, or set Policy.AllowNodeName", pod.Spec.NodeName))
	}
	switch p.Level {
	case LevelPrivileged:
	case LevelBaseline:
		out = append(out, checkBaseline(pod)...)
	default:
		out = append(out, checkBaseline(pod)...)
		out = append(out, checkRestricted(pod)...)
	}
	return out
}

// containerRef is one container of a pod with its field path.
type containerRef struct {
	path string
	c    *corev1.Container
}

func allContainers(pod *corev1.Pod) []containerRef {
	var out []containerRef
	for i := range pod.Spec.InitContainers {
		out = append(out, containerRef{fmt.Sprintf("spec.initContainers[%d]", i), &pod.Spec.InitContainers[i]})
	}
	for i := range pod.Spec.Containers {
		out = append(out, containerRef{fmt.Sprintf("spec.containers[%d]", i), &pod.Spec.Containers[i]})
	}
	for i := range pod.Spec.EphemeralContainers {
		c := corev1.Container(pod.Spec.EphemeralContainers[i].EphemeralContainerCommon)
		out = append(out, containerRef{fmt.Sprintf("spec.ephemeralContainers[%d]", i), &c})
	}
	return out
}

// baselineCapabilities are the capabilities the baseline level lets a
// container add: the container runtimes' defaults.
var baselineCapabilities = []corev1.Capability{
	"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
	"SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}

// safeSysctls are the sysctls the baseline level allows.
var safeSysctls = []string{
	"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
	"net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
	"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
	"net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
}

// seLinuxTypes are the SELinux types the baseline level allows.
var seLinuxTypes = []string{"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}

const appArmorAnnotationPrefix = "container.apparmor.security.beta.kubernetes.io/"

// checkBaseline applies the baseline Pod Security Standard.
func checkBaseline(pod *corev1.Pod) []Violation {
	var out []Violation
	add := func(field, control, detail string) {
		out = append(out, Violation{field, "baseline/" + control, detail})
	}
	s := pod.Spec
	psc := s.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if s.HostNetwork {
		add("spec.hostNetwork", "hostNamespaces", "a task may not share the node's network: remove it")
	}
	if s.HostPID {
		add("spec.hostPID", "hostNamespaces", "a task may not see the node's processes: remove it")
	}
	if s.HostIPC {
		add("spec.hostIPC", "hostNamespaces", "a task may not share the node's IPC namespace: remove it")
	}
	if w := psc.WindowsOptions; w != nil && w.HostProcess != nil && *w.HostProcess {
		add("spec.securityContext.windowsOptions.hostProcess", "hostProcess", "host processes are not allowed: remove it")
	}
	for i, v := range s.Volumes {
		if v.HostPath != nil {
			add(fmt.Sprintf("spec.volumes[%d].hostPath", i), "hostPathVolumes", fmt.Sprintf("volume %q mounts a folder of the node: use an emptyDir, a ConfigMap, a Secret or a PersistentVolumeClaim", v.Name))
		}
	}
	for k, v := range pod.Annotations {
		if strings.HasPrefix(k, appArmorAnnotationPrefix) && v != "runtime/default" && !strings.HasPrefix(v, "localhost/") {
			add(fmt.Sprintf("metadata.annotations[%s]", k), "appArmorProfile", fmt.Sprintf("%q: use runtime/default or localhost/<profile>", v))
		}
	}
	checkAppArmor := func(path string, p *corev1.AppArmorProfile) {
		if p != nil && p.Type == corev1.AppArmorProfileTypeUnconfined {
			add(path+".appArmorProfile.type", "appArmorProfile", "Unconfined: use RuntimeDefault or Localhost")
		}
	}
	checkSELinux := func(path string, o *corev1.SELinuxOptions) {
		if o == nil {
			return
		}
		if !slices.Contains(seLinuxTypes, o.Type) {
			add(path+".seLinuxOptions.type", "seLinuxOptions", fmt.Sprintf("%q: use container_t, container_init_t, container_kvm_t or container_engine_t, or leave it empty", o.Type))
		}
		if o.User != "" {
			add(path+".seLinuxOptions.user", "seLinuxOptions", "a custom SELinux user is not allowed: remove it")
		}
		if o.Role != "" {
			add(path+".seLinuxOptions.role", "seLinuxOptions", "a custom SELinux role is not allowed: remove it")
		}
	}
	checkSeccomp := func(path string, p *corev1.SeccompProfile) {
		if p != nil && p.Type == corev1.SeccompProfileTypeUnconfined {
			add(path+".seccompProfile.type", "seccompProfile", "Unconfined: use RuntimeDefault or Localhost")
		}
	}
	checkAppArmor("spec.securityContext", psc.AppArmorProfile)
	checkSELinux("spec.securityContext", psc.SELinuxOptions)
	checkSeccomp("spec.securityContext", psc.SeccompProfile)
	for i, sc := range psc.Sysctls {
		if !slices.Contains(safeSysctls, sc.Name) {
			add(fmt.Sprintf("spec.securityContext.sysctls[%d]", i), "sysctls", fmt.Sprintf("%q is not one of the safe sysctls: remove it", sc.Name))
		}
	}
	for _, r := range allContainers(pod) {
		c := r.c
		for j, port := range c.Ports {
			if port.HostPort != 0 {
				add(fmt.Sprintf("%s.ports[%d].hostPort", r.path, j), "hostPorts", fmt.Sprintf("%d opens a port on the node: remove it", port.HostPort))
			}
		}
		sc := c.SecurityContext
		if sc == nil {
			continue
		}
		p := r.path + ".securityContext"
		if sc.Privileged != nil && *sc.Privileged {
			add(p+".privileged", "privileged", "privileged containers are not allowed: remove it")
		}
		if w := sc.WindowsOptions; w != nil && w.HostProcess != nil && *w.HostProcess {
			add(p+".windowsOptions.hostProcess", "hostProcess", "host processes are not allowed: remove it")
		}
		if sc.Capabilities != nil {
			for j, cp := range sc.Capabilities.Add {
				if !slices.Contains(baselineCapabilities, cp) {
					add(fmt.Sprintf("%s.capabilities.add[%d]", p, j), "capabilities", fmt.Sprintf("%q is not one of the runtime's default capabilities: remove it", cp))
				}
			}
		}
		// An unmasked /proc is the baseline's in a user namespace only.
		if unmaskedProc(sc) && !(pod.Spec.HostUsers != nil && !*pod.Spec.HostUsers) {
			add(p+".procMount", "procMount", fmt.Sprintf("%q: use Default or leave it out", *sc.ProcMount))
		}
		checkAppArmor(p, sc.AppArmorProfile)
		checkSELinux(p, sc.SELinuxOptions)
		checkSeccomp(p, sc.SeccompProfile)
	}
	return out
}

// checkRestricted applies what the restricted Pod Security Standard adds
// to the baseline.
func checkRestricted(pod *corev1.Pod) []Violation {
	var out []Violation
	add := func(field, control, detail string) {
		out = append(out, Violation{field, "restricted/" + control, detail})
	}
	s := pod.Spec
	psc := s.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	for i, v := range s.Volumes {
		vs := v.VolumeSource
		if vs.ConfigMap == nil && vs.CSI == nil && vs.DownwardAPI == nil && vs.EmptyDir == nil &&
			vs.Ephemeral == nil && vs.PersistentVolumeClaim == nil && vs.Projected == nil && vs.Secret == nil && vs.HostPath == nil {
			add(fmt.Sprintf("spec.volumes[%d]", i), "volumes", fmt.Sprintf(
				"volume %q is of a type the restricted level does not allow: use configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, projected or secret", v.Name))
		}
	}
	podNonRoot := psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
	if psc.RunAsNonRoot != nil && !*psc.RunAsNonRoot {
		add("spec.securityContext.runAsNonRoot", "runAsNonRoot", "false: set it to true, or leave it out and set it on every container")
	}
	if psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		add("spec.securityContext.runAsUser", "runAsUser", "0 is root: run as another user (TaskSpec.RunAsUser sets the main container's), or lower Policy.Level to baseline")
	}
	podSeccomp := psc.SeccompProfile != nil
	for _, r := range allContainers(pod) {
		p := r.path + ".securityContext"
		sc := r.c.SecurityContext
		if sc == nil {
			sc = &corev1.SecurityContext{}
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			add(p+".allowPrivilegeEscalation", "allowPrivilegeEscalation", "must be false: set allowPrivilegeEscalation: false")
		}
		switch {
		case sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot:
			add(p+".runAsNonRoot", "runAsNonRoot", "false: set it to true, or leave it out and set spec.securityContext.runAsNonRoot: true")
		case sc.RunAsNonRoot == nil && !podNonRoot:
			add(p+".runAsNonRoot", "runAsNonRoot", "must be true: set runAsNonRoot: true here or in spec.securityContext")
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			add(p+".runAsUser", "runAsUser", "0 is root: run as another user (TaskSpec.RunAsUser sets the main container's), or lower Policy.Level to baseline")
		}
		if sc.SeccompProfile == nil && !podSeccomp {
			add(p+".seccompProfile", "seccompProfile", "must be set: set seccompProfile.type RuntimeDefault here or in spec.securityContext")
		}
		if unmaskedProc(sc) && pod.Spec.HostUsers != nil && !*pod.Spec.HostUsers {
			add(p+".procMount", "procMount", fmt.Sprintf("%q: use Default or leave it out", *sc.ProcMount))
		}
		caps := sc.Capabilities
		if caps == nil || !slices.Contains(caps.Drop, "ALL") {
			add(p+".capabilities.drop", "capabilities", `must drop "ALL": set capabilities.drop: ["ALL"]`)
		}
		if caps != nil {
			for j, cp := range caps.Add {
				// Capabilities outside the baseline's are reported by it.
				if cp != "NET_BIND_SERVICE" && slices.Contains(baselineCapabilities, cp) {
					add(fmt.Sprintf("%s.capabilities.add[%d]", p, j), "capabilities", fmt.Sprintf("%q: only NET_BIND_SERVICE may be added", cp))
				}
			}
		}
	}
	return out
}

func unmaskedProc(sc *corev1.SecurityContext) bool {
	return sc.ProcMount != nil && *sc.ProcMount != corev1.DefaultProcMount
}
