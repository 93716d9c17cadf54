package podtemplate_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/podtemplate"
)

// policyCase is a pod, given as an override of the default template, and
// the rules the default Policy finds broken in it ("" for none). Each
// case is also sent to an API server that enforces the same Pod Security
// Standard (TestCluster), which must agree on the PSS rules.
type policyCase struct {
	name     string
	override string
	// rules are the Violation.Rule values Check reports, in any order.
	rules []string
	// field is the field of the first violation, when rules is not empty.
	field string
}

var policyCases = []policyCase{
	{name: "default template", override: "", rules: nil},
	{name: "runAsUser set", override: "spec:\n  securityContext:\n    runAsUser: 1000\n"},
	{
		name:     "privileged",
		override: "spec:\n  containers:\n  - name: base\n    securityContext:\n      privileged: true\n      allowPrivilegeEscalation: null\n",
		rules:    []string{"baseline/privileged", "restricted/allowPrivilegeEscalation"},
		field:    "spec.containers[0].securityContext.privileged",
	},
	{
		name:     "security context replaced",
		override: "spec:\n  containers:\n  - name: base\n    securityContext:\n      $patch: replace\n",
		rules:    []string{"restricted/allowPrivilegeEscalation", "restricted/capabilities"},
		field:    "spec.containers[0].securityContext.allowPrivilegeEscalation",
	},
	{
		name:     "run as root",
		override: "spec:\n  securityContext:\n    runAsNonRoot: false\n    runAsUser: 0\n",
		rules:    []string{"restricted/runAsNonRoot", "restricted/runAsUser", "restricted/runAsNonRoot"},
		field:    "spec.securityContext.runAsNonRoot",
	},
	{
		name:     "added capability",
		override: "spec:\n  containers:\n  - name: base\n    securityContext:\n      capabilities:\n        add: [SYS_ADMIN]\n",
		rules:    []string{"baseline/capabilities"},
		field:    "spec.containers[0].securityContext.capabilities.add[0]",
	},
	{
		name:     "baseline capability",
		override: "spec:\n  containers:\n  - name: base\n    securityContext:\n      capabilities:\n        add: [CHOWN]\n",
		rules:    []string{"restricted/capabilities"},
		field:    "spec.containers[0].securityContext.capabilities.add[0]",
	},
	{
		name:     "host namespaces",
		override: "spec:\n  hostNetwork: true\n  hostPID: true\n",
		rules:    []string{"baseline/hostNamespaces", "baseline/hostNamespaces"},
		field:    "spec.hostNetwork",
	},
	{
		name: "host path",
		override: "spec:\n  volumes:\n  - name: root\n    hostPath: {path: /}\n" +
			"  containers:\n  - name: base\n    volumeMounts:\n    - {name: root, mountPath: /host}\n",
		rules: []string{"baseline/hostPathVolumes"},
		field: "spec.volumes[0].hostPath",
	},
	{
		name:     "host port",
		override: "spec:\n  containers:\n  - name: base\n    ports:\n    - {containerPort: 8080, hostPort: 8080}\n",
		rules:    []string{"baseline/hostPorts"},
		field:    "spec.containers[0].ports[0].hostPort",
	},
	{
		name:     "unconfined seccomp",
		override: "spec:\n  securityContext:\n    seccompProfile: {type: Unconfined}\n",
		rules:    []string{"baseline/seccompProfile"},
		field:    "spec.securityContext.seccompProfile.type",
	},
	{
		name:     "seccomp removed",
		override: "spec:\n  securityContext:\n    seccompProfile: null\n",
		rules:    []string{"restricted/seccompProfile"},
		field:    "spec.containers[0].securityContext.seccompProfile",
	},
	{
		name:     "unsafe sysctl",
		override: "spec:\n  securityContext:\n    sysctls:\n    - {name: kernel.msgmax, value: \"65536\"}\n",
		rules:    []string{"baseline/sysctls"},
		field:    "spec.securityContext.sysctls[0]",
	},
	{
		name:     "safe sysctl",
		override: "spec:\n  securityContext:\n    sysctls:\n    - {name: net.ipv4.ip_local_port_range, value: \"1024 65535\"}\n",
	},
	{
		name:     "selinux user",
		override: "spec:\n  securityContext:\n    seLinuxOptions: {user: root}\n",
		rules:    []string{"baseline/seLinuxOptions"},
		field:    "spec.securityContext.seLinuxOptions.user",
	},
	{
		name:     "nfs volume",
		override: "spec:\n  volumes:\n  - name: share\n    nfs: {server: nfs.example, path: /}\n",
		rules:    []string{"restricted/volumes"},
		field:    "spec.volumes[0]",
	},
	{
		name:     "allowed volumes",
		override: "spec:\n  volumes:\n  - name: scratch\n    emptyDir: {}\n  - name: creds\n    secret: {secretName: creds}\n",
	},
	{
		name:     "init container without security context",
		override: "spec:\n  initContainers:\n  - name: setup\n    image: busybox\n",
		rules:    []string{"restricted/allowPrivilegeEscalation", "restricted/capabilities"},
		field:    "spec.initContainers[0].securityContext.allowPrivilegeEscalation",
	},
	{
		name:     "apparmor unconfined",
		override: "spec:\n  securityContext:\n    appArmorProfile: {type: Unconfined}\n",
		rules:    []string{"baseline/appArmorProfile"},
		field:    "spec.securityContext.appArmorProfile.type",
	},
	{
		name:     "proc mount unmasked",
		override: "spec:\n  hostUsers: false\n  containers:\n  - name: base\n    securityContext:\n      procMount: Unmasked\n",
		rules:    []string{"restricted/procMount"},
		field:    "spec.containers[0].securityContext.procMount",
	},
	// kubexec's own rules: the API server's Pod Security has none of these.
	{
		name:     "another service account",
		override: "spec:\n  serviceAccountName: deployer\n",
		rules:    []string{"serviceAccount"},
		field:    "spec.serviceAccountName",
	},
	{
		name:     "foreign finalizer",
		override: "metadata:\n  finalizers: [example.com/keep]\n",
		rules:    []string{"finalizer"},
		field:    "metadata.finalizers[0]",
	},
	{
		name:     "owner reference",
		override: "metadata:\n  ownerReferences:\n  - {apiVersion: v1, kind: ConfigMap, name: owner, uid: 0b4b5c1e-0000-4000-8000-000000000001}\n",
		rules:    []string{"ownerReferences"},
		field:    "metadata.ownerReferences",
	},
	{
		name:     "node name",
		override: "spec:\n  nodeName: node-1\n",
		rules:    []string{"nodeName"},
		field:    "spec.nodeName",
	},
}

// pssOnly reports whether every rule of c is a Pod Security Standard's.
func (c policyCase) pssOnly() bool {
	for _, r := range c.rules {
		if r[:min(len(r), 9)] != "baseline/" && r[:min(len(r), 11)] != "restricted/" {
			return false
		}
	}
	return true
}

// buildPolicyCase builds c's pod in namespace ns from the default template,
// with runAsUser 1000 so that the default passes on a node too.
func buildPolicyCase(t *testing.T, c policyCase, ns string) *corev1.Pod {
	t.Helper()
	tpl := podtemplate.DefaultTemplate()
	uid := int64(1000)
	tpl.Spec.SecurityContext.RunAsUser = &uid
	tpl.Spec.Containers[0].Image = "registry.example/task:1"
	b := newTemplate(t, tpl, podtemplate.Config{ExecutorID: "policy", Namespace: ns})
	spec := podtemplate.TaskSpec{Key: testKey}
	if c.override != "" {
		spec.Override = mustOverride(t, c.override)
	}
	pod, err := b.Build(t.Context(), spec)
	require.NoError(t, err)
	return pod
}

func rulesOf(vs []podtemplate.Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Rule)
	}
	return out
}

func TestPolicyCheck(t *testing.T) {
	for _, c := range policyCases {
		t.Run(c.name, func(t *testing.T) {
			pod := buildPolicyCase(t, c, "tasks")
			vs := podtemplate.Policy{}.Check(pod)
			require.ElementsMatch(t, c.rules, rulesOf(vs), "%v", vs)
			if len(c.rules) > 0 {
				require.Equal(t, c.field, vs[0].Field)
				require.NotEmpty(t, vs[0].Detail)
			}
			require.Empty(t, podtemplate.Policy{Disabled: true}.Check(pod), "a disabled policy checks nothing")
		})
	}
}

func TestPolicyWidened(t *testing.T) {
	pod := buildPolicyCase(t, policyCase{override: "metadata:\n  finalizers: [example.com/keep]\n" +
		"  ownerReferences:\n  - {apiVersion: v1, kind: ConfigMap, name: owner, uid: 0b4b5c1e-0000-4000-8000-000000000001}\n" +
		"spec:\n  serviceAccountName: deployer\n  nodeName: node-1\n  hostNetwork: true\n"}, "tasks")
	require.Len(t, podtemplate.Policy{}.Check(pod), 5)
	wide := podtemplate.Policy{
		Level:                LevelFor(t, "privileged"),
		ServiceAccounts:      []string{"default", "deployer"},
		Finalizers:           []string{"example.com/keep"},
		AllowOwnerReferences: true,
		AllowNodeName:        true,
	}
	require.NoError(t, wide.Validate())
	require.Empty(t, wide.Check(pod))
	require.Equal(t, []string{"baseline/hostNamespaces"}, rulesOf(podtemplate.Policy{
		Level: podtemplate.LevelBaseline, ServiceAccounts: []string{podtemplate.AnyServiceAccount},
		Finalizers: []string{"example.com/keep"}, AllowOwnerReferences: true, AllowNodeName: true,
	}.Check(pod)))
}

// LevelFor returns the Level named s, so that a typo fails the test.
func LevelFor(t *testing.T, s string) podtemplate.Level {
	t.Helper()
	l := podtemplate.Level(s)
	require.NoError(t, podtemplate.Policy{Level: l}.Validate())
	return l
}

func TestPolicyExecutorServiceAccount(t *testing.T) {
	own := podtemplate.Policy{ExecutorServiceAccount: "tasks/kubexec", ServiceAccounts: []string{"kubexec", "default"}}
	for _, tt := range []struct {
		name, ns, sa string
		allow        bool
		rules        []string
	}{
		{name: "the executor's own, even when listed", ns: "tasks", sa: "kubexec", rules: []string{"executorServiceAccount"}},
		{name: "allowed deliberately", ns: "tasks", sa: "kubexec", allow: true},
		{name: "same name in another namespace", ns: "other", sa: "kubexec"},
		{name: "the namespace's default", ns: "tasks", sa: ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pod := buildPolicyCase(t, policyCase{}, tt.ns)
			pod.Spec.ServiceAccountName = tt.sa
			p := own
			p.AllowExecutorServiceAccount = tt.allow
			require.Equal(t, tt.rules, rulesOf(p.Check(pod)))
		})
	}
	t.Run("the deprecated field too", func(t *testing.T) {
		pod := buildPolicyCase(t, policyCase{}, "tasks")
		pod.Spec.DeprecatedServiceAccount = "kubexec"
		require.Equal(t, []string{"executorServiceAccount"}, rulesOf(own.Check(pod)))
	})
	t.Run("the default is the executor's own", func(t *testing.T) {
		pod := buildPolicyCase(t, policyCase{}, "tasks")
		p := podtemplate.Policy{ExecutorServiceAccount: "tasks/default"}
		vs := p.Check(pod)
		require.Equal(t, []string{"executorServiceAccount"}, rulesOf(vs))
		require.Equal(t, "spec.serviceAccountName", vs[0].Field)
	})
}

func TestPolicyValidate(t *testing.T) {
	for _, p := range []podtemplate.Policy{
		{Level: "strict"},
		{ServiceAccounts: []string{""}},
		{ExecutorServiceAccount: "kubexec"},
		{ExecutorServiceAccount: "a/b/c"},
		{Finalizers: []string{kubexec.FinalizerResultTracking}},
	} {
		err := p.Validate()
		require.ErrorIs(t, err, kubexec.ErrInvalidConfig, "%+v", p)
	}
}

func TestPolicyError(t *testing.T) {
	err := error(&podtemplate.PolicyError{Pod: "tasks/p", Key: testKey, Violations: []podtemplate.Violation{{
		Field: "spec.hostPID", Rule: "baseline/hostNamespaces", Detail: "remove it",
	}}})
	require.ErrorIs(t, err, podtemplate.ErrPolicy)
	require.Contains(t, err.Error(), "spec.hostPID: rule baseline/hostNamespaces: remove it")
	var pe *podtemplate.PolicyError
	require.True(t, errors.As(err, &pe))
}

func TestOverrideFields(t *testing.T) {
	tests := []struct {
		name     string
		allowed  []string
		override string
		refused  []string // fields named by the violations
	}{
		{name: "resources of the main container", allowed: []string{"spec.containers.resources"},
			override: "spec:\n  containers:\n  - name: base\n    resources:\n      limits: {memory: 1Gi}\n"},
		{name: "a new container sets the list", allowed: []string{"spec.containers.resources"},
			override: "spec:\n  containers:\n  - name: extra\n    image: busybox\n",
			refused:  []string{"spec.containers"}},
		{name: "security context of the main container", allowed: []string{"spec.containers.resources", "metadata.labels"},
			override: "metadata:\n  labels: {team: a}\nspec:\n  containers:\n  - name: base\n    securityContext:\n      $patch: replace\n",
			refused:  []string{"spec.containers.securityContext"}},
		{name: "a whole list", allowed: []string{"spec.containers"},
			override: "spec:\n  containers:\n  - name: base\n    env:\n    - {name: A, value: b}\n  - name: extra\n    image: busybox\n"},
		{name: "list directive", allowed: []string{"spec.nodeSelector"},
			override: "spec:\n  tolerations:\n  - $patch: replace\n",
			refused:  []string{"spec.tolerations"}},
		{name: "service account and node", allowed: []string{"spec.nodeSelector", "spec.containers.env"},
			override: "spec:\n  serviceAccountName: deployer\n  nodeSelector: {zone: a}\n  nodeName: n1\n",
			refused:  []string{"spec.nodeName", "spec.serviceAccountName"}},
		{name: "a prefix is not a parent", allowed: []string{"spec.node"},
			override: "spec:\n  nodeSelector: {zone: a}\n",
			refused:  []string{"spec.nodeSelector"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tpl := podtemplate.DefaultTemplate()
			tpl.Spec.Containers[0].Image = "registry.example/task:1"
			b := newTemplate(t, tpl, podtemplate.Config{ExecutorID: "fields", OverrideFields: tt.allowed})
			_, err := b.Build(t.Context(), podtemplate.TaskSpec{Key: testKey, Override: mustOverride(t, tt.override)})
			if tt.refused == nil {
				require.NoError(t, err)
				return
			}
			var pe *podtemplate.PolicyError
			require.ErrorAs(t, err, &pe)
			var fields []string
			for _, v := range pe.Violations {
				require.Equal(t, "overrideFields", v.Rule)
				fields = append(fields, v.Field)
			}
			require.Equal(t, tt.refused, fields)
		})
	}
	_, err := podtemplate.New(podtemplate.DefaultTemplate(), podtemplate.Config{OverrideFields: []string{"spec.containers[0]"}})
	require.ErrorIs(t, err, kubexec.ErrInvalidConfig)
}

func TestOverrideCannotMoveNamespace(t *testing.T) {
	tpl := podtemplate.DefaultTemplate()
	tpl.Spec.Containers[0].Image = "registry.example/task:1"
	b := newTemplate(t, tpl, podtemplate.Config{ExecutorID: "ns", Namespace: "tasks"})
	for _, spec := range []podtemplate.TaskSpec{
		{Key: testKey, Override: mustOverride(t, "metadata:\n  namespace: kube-system\n")},
		{Key: testKey, Namespace: "team-a", Override: mustOverride(t, "metadata:\n  namespace: kube-system\n")},
	} {
		_, err := b.Build(t.Context(), spec)
		var pe *podtemplate.PolicyError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, "metadata.namespace", pe.Violations[0].Field)
		require.Equal(t, "namespace", pe.Violations[0].Rule)
	}
	pod, err := b.Build(t.Context(), podtemplate.TaskSpec{Key: testKey, Namespace: "team-a", Override: mustOverride(t, "metadata:\n  namespace: team-a\n")})
	require.NoError(t, err)
	require.Equal(t, "team-a", pod.Namespace)
}

// policyPod returns the pod of c as YAML, for failure messages.
func policyPod(pod *corev1.Pod) string {
	out, _ := yaml.Marshal(struct {
		metav1.ObjectMeta `json:"metadata"`
		Spec              corev1.PodSpec `json:"spec"`
	}{pod.ObjectMeta, pod.Spec})
	return string(out)
}

// BenchmarkPolicyCheck measures the policy step on a pod built from the
// default template with an init container, a sidecar and volumes: the
// cost it adds to each launch.
func BenchmarkPolicyCheck(b *testing.B) {
	tpl := podtemplate.DefaultTemplate()
	tpl.Spec.Containers[0].Image = "registry.example/task:1"
	t, err := podtemplate.New(tpl, podtemplate.Config{ExecutorID: "bench", Namespace: "etl"})
	require.NoError(b, err)
	o, err := podtemplate.ParseOverride("bench", []byte(`spec:
  initContainers: [{name: setup, image: busybox, securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}}]
  containers: [{name: helper, image: busybox, securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}}]
  volumes: [{name: scratch, emptyDir: {}}, {name: creds, secret: {secretName: creds}}]
`))
	require.NoError(b, err)
	pod, err := t.Build(b.Context(), podtemplate.TaskSpec{Key: testKey, Override: o})
	require.NoError(b, err)
	p := podtemplate.Policy{ExecutorServiceAccount: "kubexec/scheduler"}
	b.ReportAllocs()
	for b.Loop() {
		if vs := p.Check(pod); len(vs) != 0 {
			b.Fatal(vs)
		}
	}
}
