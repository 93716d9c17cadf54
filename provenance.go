package kubexec

import "strings"

// AnnotationProvenance holds the provenance mark of a pod that a kubexec
// executor created: an HMAC-SHA256, keyed by a secret the executors of one
// deployment share, over the pod's namespace, name and task key, so that a
// pod someone else created with kubexec's labels is told apart (see
// executor.Config.ProvenanceKey).
const AnnotationProvenance = Domain + "/provenance"

// InternalAnnotation reports whether an annotation is one that only kubexec
// writes on a pod, after a template, override or middleware has run: the
// adoption group's Lease namespace, the recorded outcome and the
// provenance mark. A pod built with one of them set is refused by the
// executor's policy (rule "internalAnnotation").
func InternalAnnotation(name string) bool {
	switch name {
	case AnnotationLeaseNamespace, AnnotationEnded, AnnotationProvenance, AnnotationNamespaces:
		return true
	}
	return strings.HasPrefix(name, Domain+"/claimed-")
}
