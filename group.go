package kubexec

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// LabelGroup holds the adoption group of the executor instance that made
// the pod: the deployment it belongs to, whose instances share one
// StateStore and may adopt each other's pods. Pods of an instance with no
// group do not carry it, and no other instance ever adopts them.
const LabelGroup = Domain + "/group"

// AnnotationLeaseNamespace holds the namespace of the Lease by which the
// pod's executor instance shows it is alive. An adopter judges the owner's
// liveness only from a Lease in that namespace: instances whose Leases live
// elsewhere never take each other for dead.
const AnnotationLeaseNamespace = Domain + "/lease-namespace"

// AnnotationEnded records, on a pod that kubexec decided must end (revoked,
// timed out), the outcome kubexec gave the attempt, before the pod is
// deleted: an executor that restarts or adopts the pod while it stops
// saves that outcome rather than taking the deletion for someone else's.
// Its value is JSON written by [EndedAnnotation].
const AnnotationEnded = Domain + "/ended"

// AnnotationNamespaces, on an executor instance's Lease, lists the
// namespaces it creates pods in, comma-separated ("" alone: every
// namespace), so that an instance of the same group that adopts its
// attempts knows where to look.
const AnnotationNamespaces = Domain + "/namespaces"

// ErrInvalidGroup is wrapped by the errors of [ValidateGroup].
var ErrInvalidGroup = errors.New("kubexec: invalid adoption group")

// ValidateGroup reports whether group can name an adoption group: a valid
// label value (at most 63 characters of [A-Za-z0-9_.-], starting and ending
// with an alphanumeric). The empty group means "none". Errors wrap
// [ErrInvalidGroup].
func ValidateGroup(group string) error {
	if group == "" {
		return nil
	}
	if msgs := content.IsLabelValue(group); len(msgs) > 0 {
		return fmt.Errorf("%w: %q: %s", ErrInvalidGroup, group, strings.Join(msgs, "; "))
	}
	return nil
}

// ApplyGroup records on obj, a pod about to be created, the adoption group
// and the Lease namespace of the instance that creates it, replacing
// whatever a template or override set for those keys (an empty group
// removes the label).
func ApplyGroup(obj metav1.Object, group, leaseNamespace string) error {
	if err := ValidateGroup(group); err != nil {
		return err
	}
	l := overlay(obj.GetLabels(), []string{LabelGroup}, nil)
	if group != "" {
		l[LabelGroup] = group
	}
	obj.SetLabels(l)
	obj.SetAnnotations(overlay(obj.GetAnnotations(), []string{AnnotationLeaseNamespace, AnnotationEnded},
		map[string]string{AnnotationLeaseNamespace: leaseNamespace}))
	return nil
}

// SameDeployment reports whether obj, a kubexec pod, was made by an
// instance of the adoption group group whose Lease lives in
// leaseNamespace: only then may an instance of that group adopt it. An
// empty group matches nothing: an instance with no group adopts only its
// own pods, which carry its id.
func SameDeployment(obj metav1.Object, group, leaseNamespace string) bool {
	return group != "" && obj.GetLabels()[LabelGroup] == group &&
		obj.GetAnnotations()[AnnotationLeaseNamespace] == leaseNamespace
}

// GroupSelector selects the active (not done) kubexec pods of the adoption
// group group that executorID does not own: the pods it may adopt. Errors
// come from [ValidateGroup] and [ValidateExecutorID]; an empty group is an
// error, since it names no deployment.
func GroupSelector(group, executorID string) (labels.Selector, error) {
	if group == "" {
		return nil, fmt.Errorf("%w: empty: an instance with no group adopts no other instance's pods", ErrInvalidGroup)
	}
	if err := ValidateGroup(group); err != nil {
		return nil, err
	}
	if err := ValidateExecutorID(executorID); err != nil {
		return nil, err
	}
	return ManagedSelector().Add(
		mustRequirement(LabelGroup, selection.Equals, group),
		mustRequirement(LabelDone, selection.NotEquals, DoneValue),
		mustRequirement(LabelExecutor, selection.NotEquals, executorID),
	), nil
}

// ValidUTF8 returns r with every string made valid UTF-8: each invalid
// byte sequence becomes U+FFFD. A container's termination message is raw
// bytes; a strict store (PostgreSQL's text columns) refuses invalid UTF-8,
// and would refuse the result forever.
func (r Result) ValidUTF8() Result {
	for _, s := range []*string{&r.Key.WorkflowID, &r.Key.TaskID, &r.Key.RunID, &r.Container, &r.Message, &r.PodName, &r.Namespace, &r.Node, &r.XComRef} {
		if !utf8.ValidString(*s) {
			*s = strings.ToValidUTF8(*s, "\uFFFD")
		}
	}
	return r
}
