package kubexec

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// Domain is the prefix of every label, annotation and finalizer that kubexec
// sets.
const Domain = "kubexec.io"

// Label keys. Values of the string fields are sanitised with
// [SafeLabelValue]; use them for selection only, never to rebuild a key.
const (
	// LabelManagedBy marks every pod that kubexec created; its value is
	// [ManagedByValue].
	LabelManagedBy = Domain + "/managed-by"
	// LabelExecutor holds the id of the executor instance that owns the pod.
	// Adoption changes it.
	LabelExecutor = Domain + "/executor"
	// LabelWorkflow holds the sanitised [TaskKey.WorkflowID].
	LabelWorkflow = Domain + "/workflow"
	// LabelTask holds the sanitised [TaskKey.TaskID].
	LabelTask = Domain + "/task"
	// LabelRun holds the sanitised [TaskKey.RunID].
	LabelRun = Domain + "/run"
	// LabelMapIndex holds [TaskKey.MapIndex] in decimal; it is absent for
	// tasks that are not mapped.
	LabelMapIndex = Domain + "/map-index"
	// LabelAttempt holds [TaskKey.Attempt] in decimal.
	LabelAttempt = Domain + "/attempt"
	// LabelDone marks a pod whose result has been saved but which is kept
	// (for example failed pods kept for inspection); its value is
	// [DoneValue]. Watches and lists of active pods skip it.
	LabelDone = Domain + "/done"
)

// Label values.
const (
	// ManagedByValue is the value of [LabelManagedBy].
	ManagedByValue = "kubexec"
	// DoneValue is the value of [LabelDone].
	DoneValue = "true"
)

// Annotation keys. They carry the exact values of the [TaskKey] fields, and
// are the only source [KeyFromAnnotations] reads.
const (
	// AnnotationWorkflow holds [TaskKey.WorkflowID] exactly.
	AnnotationWorkflow = Domain + "/workflow"
	// AnnotationTask holds [TaskKey.TaskID] exactly.
	AnnotationTask = Domain + "/task"
	// AnnotationRun holds [TaskKey.RunID] exactly.
	AnnotationRun = Domain + "/run"
	// AnnotationMapIndex holds [TaskKey.MapIndex] in decimal (-1 when not
	// mapped).
	AnnotationMapIndex = Domain + "/map-index"
	// AnnotationAttempt holds [TaskKey.Attempt] in decimal.
	AnnotationAttempt = Domain + "/attempt"
)

// FinalizerResultTracking is the finalizer that every kubexec pod carries
// from creation. The executor removes it only after the attempt's [Result]
// has been saved, so a pod cannot disappear with its result unsaved.
const FinalizerResultTracking = Domain + "/result-tracking"

// maxLabelValue is the longest valid label value.
const maxLabelValue = 63

var (
	// ErrInvalidExecutorID is wrapped by the errors that report an invalid
	// executor id.
	ErrInvalidExecutorID = errors.New("kubexec: invalid executor id")
	// ErrNotManaged is returned when an object carries none of kubexec's
	// key annotations: it was not created by kubexec.
	ErrNotManaged = errors.New("kubexec: object carries no kubexec task key")
	// ErrMalformedMetadata is wrapped by *[MetadataError]: an object carries
	// some of kubexec's key annotations, but they do not form a valid key.
	ErrMalformedMetadata = errors.New("kubexec: malformed kubexec metadata")
)

// MetadataError reports an annotation that is missing or does not hold a
// valid value. It wraps [ErrMalformedMetadata] and the underlying cause.
type MetadataError struct {
	// Annotation is the annotation key.
	Annotation string
	// Value is the annotation's value ("" when missing).
	Value string
	// Err is the cause.
	Err error
}

// Error implements error.
func (e *MetadataError) Error() string {
	return fmt.Sprintf("%v: annotation %s=%q: %v", ErrMalformedMetadata, e.Annotation, e.Value, e.Err)
}

// Unwrap returns [ErrMalformedMetadata] and the cause.
func (e *MetadataError) Unwrap() []error { return []error{ErrMalformedMetadata, e.Err} }

// SafeLabelValue turns any string into a valid label value, following
// Apache Airflow's make_safe_label_value so labels match Airflow's for the
// same ids: characters outside [A-Za-z0-9_.-] are dropped, leading and
// trailing non-alphanumerics are stripped, and if anything changed or the
// result is longer than 63 characters, it keeps its first 53 characters
// followed by "-" and the first 9 hex digits of the MD5 of the original.
//
// It differs from Airflow in one case only, where Airflow's output is not a
// valid label value: when nothing of the input survives (for example "_.-"
// or "日本"), the result is the 9 hex digits alone, without the leading "-".
func SafeLabelValue(s string) string {
	safe := sanitizeLabelValue(s)
	if len(safe) <= maxLabelValue && safe == s {
		return safe
	}
	sum := md5.Sum([]byte(s))
	hash := hex.EncodeToString(sum[:])[:9]
	if keep := maxLabelValue - len(hash) - 1; len(safe) > keep {
		safe = safe[:keep]
	}
	if safe == "" {
		return hash
	}
	return safe + "-" + hash
}

// sanitizeLabelValue drops characters outside [A-Za-z0-9_.-] and strips
// leading and trailing characters that are not ASCII alphanumerics.
func sanitizeLabelValue(s string) string {
	var b strings.Builder
	for _, r := range s {
		if isAlnum(r) || r == '_' || r == '.' || r == '-' {
			b.WriteRune(r)
		}
	}
	return strings.TrimFunc(b.String(), func(r rune) bool { return !isAlnum(r) })
}

func isAlnum(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
}

// ValidateExecutorID reports whether id can identify an executor instance:
// it must be a non-empty valid label value (at most 63 characters of
// [A-Za-z0-9_.-], starting and ending with an alphanumeric), because it is
// matched exactly in label selectors. Errors wrap [ErrInvalidExecutorID].
func ValidateExecutorID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: must not be empty", ErrInvalidExecutorID)
	}
	if msgs := content.IsLabelValue(id); len(msgs) > 0 {
		return fmt.Errorf("%w: %q: %s", ErrInvalidExecutorID, id, strings.Join(msgs, "; "))
	}
	return nil
}

// Labels returns the labels of the pod that runs key for the executor
// executorID. Errors come from [TaskKey.Validate] and [ValidateExecutorID].
func Labels(executorID string, key TaskKey) (map[string]string, error) {
	if err := ValidateExecutorID(executorID); err != nil {
		return nil, err
	}
	if err := key.Validate(); err != nil {
		return nil, err
	}
	l := map[string]string{
		LabelManagedBy: ManagedByValue,
		LabelExecutor:  executorID,
		LabelWorkflow:  SafeLabelValue(key.WorkflowID),
		LabelTask:      SafeLabelValue(key.TaskID),
		LabelRun:       SafeLabelValue(key.RunID),
		LabelAttempt:   strconv.Itoa(key.Attempt),
	}
	if key.MapIndex != NotMapped {
		l[LabelMapIndex] = strconv.Itoa(key.MapIndex)
	}
	return l, nil
}

// Annotations returns the annotations that carry key exactly. Errors come
// from [TaskKey.Validate].
func Annotations(key TaskKey) (map[string]string, error) {
	if err := key.Validate(); err != nil {
		return nil, err
	}
	return map[string]string{
		AnnotationWorkflow: key.WorkflowID,
		AnnotationTask:     key.TaskID,
		AnnotationRun:      key.RunID,
		AnnotationMapIndex: strconv.Itoa(key.MapIndex),
		AnnotationAttempt:  strconv.Itoa(key.Attempt),
	}, nil
}

var (
	codecLabels      = []string{LabelManagedBy, LabelExecutor, LabelWorkflow, LabelTask, LabelRun, LabelMapIndex, LabelAttempt, LabelDone}
	codecAnnotations = []string{AnnotationWorkflow, AnnotationTask, AnnotationRun, AnnotationMapIndex, AnnotationAttempt}
)

// ApplyMetadata gives obj, a pod about to be created, kubexec's identity for
// key: the name [PodName], an empty generateName, the [Labels] and
// [Annotations] (replacing any value a template set for those keys, and
// removing [LabelMapIndex] and [LabelDone] where they do not apply), and the
// [FinalizerResultTracking] finalizer. Other labels, annotations and
// finalizers are kept. On error obj is unchanged.
func ApplyMetadata(obj metav1.Object, executorID string, key TaskKey) error {
	l, err := Labels(executorID, key)
	if err != nil {
		return err
	}
	a, err := Annotations(key)
	if err != nil {
		return err
	}
	name, err := PodName(key)
	if err != nil {
		return err
	}
	obj.SetName(name)
	obj.SetGenerateName("")
	obj.SetLabels(overlay(obj.GetLabels(), codecLabels, l))
	obj.SetAnnotations(overlay(obj.GetAnnotations(), codecAnnotations, a))
	if !slices.Contains(obj.GetFinalizers(), FinalizerResultTracking) {
		obj.SetFinalizers(append(slices.Clone(obj.GetFinalizers()), FinalizerResultTracking))
	}
	return nil
}

// overlay returns a copy of base without the owned keys, with set added.
func overlay(base map[string]string, owned []string, set map[string]string) map[string]string {
	out := maps.Clone(base)
	if out == nil {
		out = make(map[string]string, len(set))
	}
	for _, k := range owned {
		delete(out, k)
	}
	maps.Copy(out, set)
	return out
}

// KeyFromObject decodes the [TaskKey] of a kubexec pod (or its metadata
// only) from its annotations; see [KeyFromAnnotations].
func KeyFromObject(obj metav1.Object) (TaskKey, error) {
	return KeyFromAnnotations(obj.GetAnnotations())
}

// KeyFromAnnotations decodes a [TaskKey] from annotations written by
// [Annotations]. It returns [ErrNotManaged] when none of the key annotations
// is present, and a *[MetadataError] when one is missing or malformed.
func KeyFromAnnotations(annotations map[string]string) (TaskKey, error) {
	if !slices.ContainsFunc(codecAnnotations, func(k string) bool { _, ok := annotations[k]; return ok }) {
		return TaskKey{}, ErrNotManaged
	}
	for _, k := range codecAnnotations {
		if _, ok := annotations[k]; !ok {
			return TaskKey{}, &MetadataError{Annotation: k, Err: errors.New("missing")}
		}
	}
	key := TaskKey{
		WorkflowID: annotations[AnnotationWorkflow],
		TaskID:     annotations[AnnotationTask],
		RunID:      annotations[AnnotationRun],
	}
	var err error
	if key.MapIndex, err = parseCanonicalInt(annotations, AnnotationMapIndex); err != nil {
		return TaskKey{}, err
	}
	if key.Attempt, err = parseCanonicalInt(annotations, AnnotationAttempt); err != nil {
		return TaskKey{}, err
	}
	if err := key.Validate(); err != nil {
		var ke *KeyError
		errors.As(err, &ke)
		ann := map[string]string{
			"WorkflowID": AnnotationWorkflow, "TaskID": AnnotationTask, "RunID": AnnotationRun,
			"MapIndex": AnnotationMapIndex, "Attempt": AnnotationAttempt,
		}[ke.Field]
		return TaskKey{}, &MetadataError{Annotation: ann, Value: annotations[ann], Err: err}
	}
	return key, nil
}

// parseCanonicalInt parses a decimal integer written by strconv.Itoa.
func parseCanonicalInt(annotations map[string]string, k string) (int, error) {
	v := annotations[k]
	n, err := strconv.Atoi(v)
	if err == nil && strconv.Itoa(n) != v {
		err = errors.New("not a canonical decimal integer")
	}
	if err != nil {
		return 0, &MetadataError{Annotation: k, Value: v, Err: err}
	}
	return n, nil
}

// ManagedSelector selects every pod that kubexec created, whichever executor
// owns it and whether or not it is done.
func ManagedSelector() labels.Selector {
	return labels.NewSelector().Add(mustRequirement(LabelManagedBy, selection.Equals, ManagedByValue))
}

// ExecutorSelector selects the pods owned by the executor executorID,
// including those marked done. Errors come from [ValidateExecutorID].
func ExecutorSelector(executorID string) (labels.Selector, error) {
	if err := ValidateExecutorID(executorID); err != nil {
		return nil, err
	}
	return ManagedSelector().Add(mustRequirement(LabelExecutor, selection.Equals, executorID)), nil
}

// ActiveSelector selects the pods owned by the executor executorID that are
// not marked done: the pods whose results are still to be saved, or that are
// not yet garbage collected. Errors come from [ValidateExecutorID].
func ActiveSelector(executorID string) (labels.Selector, error) {
	sel, err := ExecutorSelector(executorID)
	if err != nil {
		return nil, err
	}
	return sel.Add(mustRequirement(LabelDone, selection.NotEquals, DoneValue)), nil
}

// DoneSelector selects the pods owned by the executor executorID that are
// marked done: released, and kept by the GC policy. Errors come from
// [ValidateExecutorID].
func DoneSelector(executorID string) (labels.Selector, error) {
	sel, err := ExecutorSelector(executorID)
	if err != nil {
		return nil, err
	}
	return sel.Add(mustRequirement(LabelDone, selection.Equals, DoneValue)), nil
}

// LeaseSelector selects the kubexec Leases of the adoption group group (the
// executor instances' and the sweeps' claims), or those of no group when
// group is empty. Errors come from [ValidateGroup].
func LeaseSelector(group string) (labels.Selector, error) {
	if group == "" {
		r, err := labels.NewRequirement(LabelGroup, selection.DoesNotExist, nil)
		if err != nil {
			return nil, err
		}
		return ManagedSelector().Add(*r), nil
	}
	if err := ValidateGroup(group); err != nil {
		return nil, err
	}
	return ManagedSelector().Add(mustRequirement(LabelGroup, selection.Equals, group)), nil
}

// mustRequirement builds a requirement from values that were validated
// before (constants and validated executor ids).
func mustRequirement(key string, op selection.Operator, value string) labels.Requirement {
	r, err := labels.NewRequirement(key, op, []string{value})
	if err != nil {
		panic(fmt.Sprintf("kubexec: selector requirement %s %s %q: %v", key, op, value, err))
	}
	return *r
}
