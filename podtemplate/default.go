package podtemplate

import (
	_ "embed"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

//go:embed default.yaml
var defaultYAML []byte

var defaultTemplate = sync.OnceValue(func() *corev1.Pod {
	pod, err := ParseTemplate("default.yaml", defaultYAML)
	if err != nil {
		panic(err) // the embedded template is tested
	}
	return pod
})

// DefaultTemplate returns a copy of the template used by hosts that bring
// none. It passes the "restricted" Pod Security Standard:
//
//   - restartPolicy Never and automountServiceAccountToken false;
//   - pod securityContext: runAsNonRoot true, seccompProfile RuntimeDefault;
//   - one container, "base", with allowPrivilegeEscalation false and all
//     capabilities dropped.
//
// It sets no image: each task spec names one. Images whose default user is
// root do not start under runAsNonRoot (the attempt ends with ConfigError);
// give them a user with TaskSpec.RunAsUser (or a runAsUser in an
// override). Containers added by an override need the same
// securityContext to pass the restricted standard.
func DefaultTemplate() *corev1.Pod {
	return defaultTemplate().DeepCopy()
}
