package executor

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/provenance"
	"github.com/kubexec/kubexec/podtemplate"
)

// DefaultProvenanceSecret is the name of the Secret, in
// Config.LeaseNamespace, that holds the provenance key of the instances
// with no AdoptionGroup; an instance of a group uses this name followed by
// "-" and the group.
const DefaultProvenanceSecret = "kubexec-provenance"

// ProvenanceSecretKey is the key of the provenance key's bytes in the
// Secret's data.
const ProvenanceSecretKey = "key"

// provenanceKeyBytes is the size of the key the executor generates.
const provenanceKeyBytes = 32

// Reasons passed to Metrics.ObserveForeignPod.
const (
	ForeignPodNoMark   = "no-mark"   // no kubexec.AnnotationProvenance
	ForeignPodBadMark  = "bad-mark"  // a mark made without the key, or for another pod
	ForeignPodOtherUID = "other-uid" // not the pod this process created for the attempt
	ForeignPodName     = "name"      // not the attempt's pod name
)

// setupTrust loads the provenance key and learns the executor's own
// ServiceAccount, before any pod is built or observed.
func (e *Executor) setupTrust(ctx context.Context) error {
	if !e.cfg.DisableProvenance {
		key := e.cfg.ProvenanceKey
		if key == nil {
			var err error
			if key, err = e.provenanceKey(ctx); err != nil {
				return err
			}
		}
		p, err := provenance.New(key)
		if err != nil {
			return fmt.Errorf("executor: the provenance key: %w", err)
		}
		e.provenance = p
	}
	e.policy = e.cfg.Policy
	if e.policy.Disabled || e.policy.ExecutorServiceAccount != "" {
		return nil
	}
	review, err := e.client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		e.log.Warn("could not learn the executor's own identity (SelfSubjectReview): tasks are not kept from running as its ServiceAccount; set Config.Policy.ExecutorServiceAccount", "err", err)
		return nil
	}
	if ns, name, ok := serviceAccountOf(review.Status.UserInfo.Username); ok {
		e.policy.ExecutorServiceAccount = ns + "/" + name
	}
	return nil
}

// serviceAccountOf returns the namespace and name of a ServiceAccount's
// user name (system:serviceaccount:NAMESPACE:NAME).
func serviceAccountOf(user string) (string, string, bool) {
	rest, ok := strings.CutPrefix(user, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	ns, name, ok := strings.Cut(rest, ":")
	return ns, name, ok && ns != "" && name != ""
}

// provenanceSecretName is the Secret that holds the provenance key.
func (c Config) provenanceSecretName() string {
	if c.ProvenanceSecret != "" {
		return c.ProvenanceSecret
	}
	if c.AdoptionGroup != "" {
		return DefaultProvenanceSecret + "-" + strings.ReplaceAll(strings.ToLower(c.AdoptionGroup), "_", "-")
	}
	return DefaultProvenanceSecret
}

// provenanceKey reads the provenance key from its Secret, creating the
// Secret with a new random key when there is none: the first instance of a
// deployment makes it, the others and later restarts read it.
func (e *Executor) provenanceKey(ctx context.Context) ([]byte, error) {
	name := e.cfg.provenanceSecretName()
	secrets := e.client.CoreV1().Secrets(e.cfg.LeaseNamespace)
	where := e.cfg.LeaseNamespace + "/" + name
	for range 2 {
		s, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			key := s.Data[ProvenanceSecretKey]
			if len(key) < provenance.MinKeyBytes {
				return nil, fmt.Errorf("executor: Secret %s holds %d bytes under %q, not a provenance key of at least %d random bytes: delete the Secret (the executor makes a new one) or fill it in",
					where, len(key), ProvenanceSecretKey, provenance.MinKeyBytes)
			}
			return key, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("executor: reading the provenance key (Secret %s): %w", where, err)
		}
		key := make([]byte, provenanceKeyBytes)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		labels := map[string]string{kubexec.LabelManagedBy: kubexec.ManagedByValue}
		if e.cfg.AdoptionGroup != "" {
			labels[kubexec.LabelGroup] = e.cfg.AdoptionGroup
		}
		immutable := true
		_, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Type:       corev1.SecretTypeOpaque,
			Immutable:  &immutable,
			Data:       map[string][]byte{ProvenanceSecretKey: key},
		}, metav1.CreateOptions{})
		if err == nil {
			e.log.Info("created the provenance key", "secret", where)
			return key, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("executor: creating the provenance key (Secret %s): %w", where, err)
		}
		// Another instance made it meanwhile: read that one.
	}
	return nil, fmt.Errorf("executor: the provenance key's Secret %s could not be read or created", where)
}

// checkPolicy applies the policy step to pod, built for spec, whose
// kubexec metadata is applied; preset lists the internal annotations the
// Builder or the XCom mutator had set before kubexec's own were applied.
func (e *Executor) checkPolicy(pod *corev1.Pod, spec podtemplate.TaskSpec, preset []string) error {
	if e.policy.Disabled {
		return nil
	}
	var out []podtemplate.Violation
	for _, a := range preset {
		out = append(out, podtemplate.Violation{
			Field: "metadata.annotations[" + a + "]", Rule: "internalAnnotation",
			Detail: "only kubexec writes this annotation: remove it from the template, override or middleware",
		})
	}
	if spec.Namespace != "" && pod.Namespace != spec.Namespace {
		out = append(out, podtemplate.Violation{
			Field: "metadata.namespace", Rule: "namespace",
			Detail: fmt.Sprintf("the task's namespace is %q, the pod's %q: the Builder may not move it", spec.Namespace, pod.Namespace),
		})
	}
	out = append(out, e.policy.Check(pod)...)
	if len(out) == 0 {
		return nil
	}
	return &podtemplate.PolicyError{Pod: pod.Namespace + "/" + pod.Name, Key: spec.Key, Violations: out}
}

// presetInternal returns the internal annotations pod carries.
func presetInternal(pod *corev1.Pod) []string {
	var out []string
	for k := range pod.Annotations {
		if kubexec.InternalAnnotation(k) {
			out = append(out, k)
		}
	}
	return out
}

// ErrForeignPod is wrapped by the errors about a pod that carries an
// attempt's labels but that the executor cannot tell its deployment made
// (see Config.ProvenanceKey): such a pod is never tracked, adopted or
// settled, and decides no result.
var ErrForeignPod = errors.New("executor: not a pod this executor's deployment created")

// genuine reports, with a nil error, whether pod is one the executor can
// tell its deployment made for key: it has the attempt's pod name, and
// either is the pod this process created for the attempt (uid, "" when
// not known) or carries a valid provenance mark. The error says why not,
// and its reason is one of the ForeignPod* constants.
func (e *Executor) genuine(pod *corev1.Pod, key kubexec.TaskKey, uid string) (string, error) {
	name, err := kubexec.PodName(key)
	if err != nil {
		return ForeignPodName, err
	}
	if pod.Name != name {
		return ForeignPodName, fmt.Errorf("%w: %s/%s carries the labels of %s, whose pod is named %s", ErrForeignPod, pod.Namespace, pod.Name, key, name)
	}
	if uid != "" {
		if string(pod.UID) != uid {
			return ForeignPodOtherUID, fmt.Errorf("%w: %s/%s (uid %s) is not the pod this executor created for %s (uid %s)", ErrForeignPod, pod.Namespace, pod.Name, pod.UID, key, uid)
		}
		return "", nil
	}
	if e.provenance == nil {
		return "", nil
	}
	if err := e.provenance.Verify(pod); err != nil {
		if errors.Is(err, provenance.ErrNoMark) {
			return ForeignPodNoMark, fmt.Errorf("%w: %w", ErrForeignPod, err)
		}
		return ForeignPodBadMark, fmt.Errorf("%w: %w", ErrForeignPod, err)
	}
	return "", nil
}

// reportForeign logs and counts a pod that failed genuine, once per pod
// UID and reason. It is called without e.mu held.
func (e *Executor) reportForeign(pod *corev1.Pod, reason string, err error) {
	k := string(pod.UID) + "/" + reason
	e.foreignMu.Lock()
	seen := e.foreign[k]
	if !seen {
		if len(e.foreign) >= maxForeignRemembered {
			clear(e.foreign)
		}
		e.foreign[k] = true
	}
	e.foreignMu.Unlock()
	if seen {
		return
	}
	e.log.Warn("ignoring a pod that carries an attempt's labels but that this executor cannot tell its deployment made: it decides no result", "pod", pod.Namespace+"/"+pod.Name, "reason", reason, "err", err)
	e.cfg.Metrics.ObserveForeignPod(reason)
}

// maxForeignRemembered bounds the memory of reported foreign pods.
const maxForeignRemembered = 10_000
