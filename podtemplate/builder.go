package podtemplate

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/kubexec/kubexec"
)

// DefaultMainContainer is the name of the main container when
// Config.MainContainer is empty, as in Apache Airflow.
const DefaultMainContainer = "base"

// DefaultNamespace is the namespace of a pod when neither Config.Namespace,
// the template, the task spec nor the override names one.
const DefaultNamespace = corev1.NamespaceDefault

// Builder builds the pod for one task attempt. Implementations must be safe
// for concurrent use; the executor calls Build from its launch goroutines.
type Builder interface {
	// Build returns the pod that runs spec.Key, ready to create, or an
	// error that says what to fix.
	Build(ctx context.Context, spec TaskSpec) (*corev1.Pod, error)
}

// BuilderFunc adapts a function to the [Builder] interface.
type BuilderFunc func(ctx context.Context, spec TaskSpec) (*corev1.Pod, error)

// Build calls f(ctx, spec).
func (f BuilderFunc) Build(ctx context.Context, spec TaskSpec) (*corev1.Pod, error) {
	return f(ctx, spec)
}

var (
	_ Builder = BuilderFunc(nil)
	_ Builder = (*Template)(nil)
)

// Middleware changes a built pod before kubexec's metadata is applied
// (Airflow's pod mutation hook). It runs after the template, task spec and
// override are merged, and sees the pod's final name, labels and
// annotations, so it can read the attempt with [kubexec.KeyFromObject]. It
// may add labels, annotations and finalizers of its own; changes to the name
// or to kubexec's own labels, annotations and finalizer are undone. An error
// fails the build with a *[MiddlewareError] that carries it unchanged.
type Middleware func(ctx context.Context, pod *corev1.Pod) error

// TaskSpec is what the host says about one attempt. Empty fields leave the
// template's values alone.
type TaskSpec struct {
	// Key identifies the attempt. Required.
	Key kubexec.TaskKey
	// Namespace is the pod's namespace; it wins over the template's.
	Namespace string
	// Image is the main container's image; it wins over the template's.
	Image string
	// Command replaces the main container's command (its entrypoint) when
	// not nil.
	Command []string
	// Args replaces the main container's args when not nil.
	Args []string
	// Env sets environment variables of the main container: an entry
	// replaces the template's entry of the same name, others are appended.
	Env []corev1.EnvVar
	// Requests sets resource requests of the main container, by resource
	// name, as quantities such as "500m", "2" or "1Gi". Each entry replaces
	// the template's entry for that resource.
	Requests map[corev1.ResourceName]string
	// Limits sets resource limits of the main container, like Requests.
	Limits map[corev1.ResourceName]string
	// WorkingDir is the main container's working directory, an absolute
	// path such as "/work"; it wins over the template's. Default: the
	// template's, else the image's.
	WorkingDir string
	// Volumes adds volumes to the pod: an entry replaces the template's
	// volume of the same name, others are appended in order. Mount them in
	// the main container with VolumeMounts (a sidecar's mounts go in the
	// template or an override). Default none.
	Volumes []corev1.Volume
	// VolumeMounts mounts volumes, TaskSpec.Volumes' or the template's, in
	// the main container: an entry replaces the template's mount at the
	// same mount path (the merge key of Kubernetes and of an override),
	// others are appended in order. Default none.
	VolumeMounts []corev1.VolumeMount
	// Files are small text files put in the main container, such as a
	// script its command runs: see [File] for how they get there. At most
	// [MaxFilesBytes] of content in all. Default none.
	Files []File
	// ActiveDeadline bounds the pod's run, counted from its start on a
	// node (image pulls included): past it Kubernetes stops the pod and
	// the attempt ends DeadlineExceeded. It becomes
	// spec.activeDeadlineSeconds, rounded up to whole seconds, and wins
	// over the template's. From 1s to 2147483647s (about 68 years); 0
	// keeps the template's (none in DefaultTemplate).
	ActiveDeadline time.Duration
	// RunAsUser is the user id the main container runs as, 0 to
	// 2147483647: its securityContext.runAsUser, which wins over the
	// template's (the container's, and the pod's for this container).
	// Use it for images whose user is root under DefaultTemplate, whose
	// runAsNonRoot refuses them. 0 (root) conflicts with runAsNonRoot:
	// true, which DefaultTemplate sets: Build refuses it unless the
	// template or override sets runAsNonRoot false, and the executor's
	// Policy refuses root at its default (restricted) level. Default: the
	// template's, else the image's user.
	RunAsUser *int64
	// RunAsGroup is the main container's primary group id, 0 to
	// 2147483647 (securityContext.runAsGroup); it wins over the
	// template's. Default: the template's, else the image's.
	RunAsGroup *int64
	// Override is merged into the pod after the fields above; see
	// [ParseOverride]. It wins over them, except over the annotations
	// that carry Files, which it may not set.
	Override Override
	// ExecutorID is the executor instance that will own the pod; it goes
	// into the pod's labels. The executor sets it before it calls Build
	// (a value the host set is replaced), so a Builder needs no identity
	// of its own. Default: Config.ExecutorID.
	ExecutorID string
}

// Config configures a [Template].
type Config struct {
	// ExecutorID identifies the executor instance that will own the pods
	// of task specs that name none (TaskSpec.ExecutorID); it goes into
	// their labels (see [kubexec.Labels]). A Template used by an executor
	// needs none: the executor hands its own id in each TaskSpec.
	// Default: none.
	ExecutorID string
	// MainContainer is the name of the container that runs the task: it
	// receives the task spec's image, command, args, env and resources.
	// Default "base".
	MainContainer string
	// Namespace is the namespace of pods whose template, task spec and
	// override name none. Default "default".
	Namespace string
	// Middleware runs in order on every built pod; see [Middleware].
	// Default none.
	Middleware []Middleware
	// OverrideFields, when set, are the only fields a per-task override
	// may set, as dotted paths of the pod's JSON field names without list
	// indexes: "metadata.labels", "spec.nodeSelector",
	// "spec.containers.resources", "spec.containers.env". A path allows
	// everything under it. Inside a list merged by key (containers, env,
	// volumes, ...), changing an existing entry sets the fields it names
	// ("spec.containers.resources.limits"), while adding or deleting an
	// entry sets the list ("spec.containers"). An override that sets
	// anything else is refused with a *[PolicyError] (rule
	// "overrideFields") naming the field. Whatever the list, an override
	// never moves the pod to another namespace (rule "namespace").
	// Default: every field; the executor's Policy still applies.
	OverrideFields []string
}

func (c Config) withDefaults() Config {
	if c.MainContainer == "" {
		c.MainContainer = DefaultMainContainer
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	c.Middleware = slices.Clone(c.Middleware)
	c.OverrideFields = slices.Clone(c.OverrideFields)
	return c
}

func (c Config) validate() error {
	if c.ExecutorID != "" {
		if err := kubexec.ValidateExecutorID(c.ExecutorID); err != nil {
			return fmt.Errorf("%w: Config.ExecutorID: %w", kubexec.ErrInvalidConfig, err)
		}
	}
	if err := validateOverrideFields(c.OverrideFields); err != nil {
		return err
	}
	if i := slices.IndexFunc(c.Middleware, func(m Middleware) bool { return m == nil }); i >= 0 {
		return fmt.Errorf("%w: Config.Middleware[%d] is nil: remove it", kubexec.ErrInvalidConfig, i)
	}
	return nil
}

// Template is the standard [Builder]: it builds each pod from a base
// template in the order described in the package documentation. It is safe
// for concurrent use.
type Template struct {
	base *corev1.Pod
	cfg  Config
}

// New returns a Template that builds pods from base, which is copied. Use
// [DefaultTemplate] when the host has no template of its own, or
// [LoadTemplate] for a file. base must have a container named
// Config.MainContainer.
func New(base *corev1.Pod, cfg Config) (*Template, error) {
	if base == nil {
		return nil, fmt.Errorf("%w: the template is nil: pass podtemplate.DefaultTemplate() or a template from podtemplate.LoadTemplate", ErrInvalidTemplate)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if mainIndex(base, cfg.MainContainer) < 0 {
		return nil, &DecodeError{
			Field: "spec.containers",
			Err: fmt.Errorf("has no container named %q: name the template's main container %q or set Config.MainContainer",
				cfg.MainContainer, cfg.MainContainer),
			kind: ErrInvalidTemplate,
		}
	}
	for _, k := range sortedKeys(base.Annotations) {
		if isFilesAnnotation(k) {
			return nil, &DecodeError{
				Field: "metadata.annotations[" + k + "]",
				Err: fmt.Errorf("annotations under %s carry TaskSpec.Files and only the builder writes them: remove it, and give the file in TaskSpec.Files",
					filesAnnotationPrefix),
				kind: ErrInvalidTemplate,
			}
		}
	}
	return &Template{base: base.DeepCopy(), cfg: cfg}, nil
}

// Build builds the pod for spec.Key. Errors are a *[kubexec.KeyError] for an
// invalid key, a *[ValidationError] for an invalid task spec or resulting
// pod, a *[DecodeError] for an override that cannot be merged, a
// *[PolicyError] for an override that sets a field outside
// Config.OverrideFields, moves the pod to another namespace or sets the
// annotations of TaskSpec.Files, a *[MiddlewareError], or the context's
// error.
func (t *Template) Build(ctx context.Context, spec TaskSpec) (*corev1.Pod, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := spec.Key.Validate(); err != nil {
		return nil, err
	}
	id := spec.ExecutorID
	if id == "" {
		id = t.cfg.ExecutorID
	}
	if id == "" {
		return nil, fmt.Errorf("%w: no executor id for %s: an executor sets TaskSpec.ExecutorID; a Template used on its own needs Config.ExecutorID", kubexec.ErrInvalidConfig, spec.Key)
	}
	pod := t.base.DeepCopy()
	if errs := applySpec(pod, t.cfg.MainContainer, spec); len(errs) > 0 {
		return nil, &ValidationError{Key: spec.Key, Errs: errs}
	}
	files := filesAnnotations(spec.Files)
	setFilesAnnotations(pod, files)
	if pod.Namespace == "" {
		pod.Namespace = t.cfg.Namespace
	}
	if !spec.Override.IsZero() {
		if err := t.checkOverrideFields(pod, spec); err != nil {
			return nil, err
		}
		chosen := pod.Namespace
		merged, err := merge(pod, spec.Override)
		if err != nil {
			return nil, err
		}
		pod = merged
		var out []Violation
		if pod.Namespace != chosen {
			out = append(out, Violation{
				Field: "metadata.namespace", Rule: "namespace",
				Detail: fmt.Sprintf("an override may not move the pod from namespace %q to %q: set TaskSpec.Namespace", chosen, pod.Namespace),
			})
		}
		// The files' content is the task spec's: an override cannot
		// forge it, even where Config.OverrideFields lets it set
		// annotations.
		out = append(out, forgedFiles(pod, files)...)
		if len(out) > 0 {
			return nil, &PolicyError{Pod: pod.Namespace + "/" + pod.Name, Key: spec.Key, Violations: out}
		}
	}
	mainFirst(pod, t.cfg.MainContainer)
	// Middleware sees the pod's final name, labels and annotations ...
	if err := kubexec.ApplyMetadata(pod, id, spec.Key); err != nil {
		return nil, err
	}
	for i, mw := range t.cfg.Middleware {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := mw(ctx, pod); err != nil {
			return nil, &MiddlewareError{Index: i, Err: err}
		}
	}
	// ... and what it changed of them is undone, so that a Template used
	// without an executor builds correctly labelled pods too.
	if err := kubexec.ApplyMetadata(pod, id, spec.Key); err != nil {
		return nil, err
	}
	setFilesAnnotations(pod, files)
	pod.APIVersion, pod.Kind = "v1", "Pod"
	if pod.Spec.RestartPolicy == "" {
		pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	}
	if errs := validatePod(pod, t.cfg.MainContainer, &spec); len(errs) > 0 {
		return nil, &ValidationError{Pod: pod.Namespace + "/" + pod.Name, Key: spec.Key, Errs: errs}
	}
	return pod, nil
}

// checkOverrideFields refuses an override that sets a field outside
// Config.OverrideFields, when that list is set.
func (t *Template) checkOverrideFields(pod *corev1.Pod, spec TaskSpec) error {
	if len(t.cfg.OverrideFields) == 0 {
		return nil
	}
	original, err := json.Marshal(pod)
	if err != nil {
		return err
	}
	var before, patch map[string]any
	if err := utiljson.Unmarshal(original, &before); err != nil {
		return err
	}
	if err := utiljson.Unmarshal(spec.Override.patch, &patch); err != nil {
		return &DecodeError{Source: spec.Override.source, Err: err, kind: ErrInvalidOverride}
	}
	var out []Violation
	for _, p := range overridePaths(podPatchMeta, "", before, patch) {
		if !fieldAllowed(p, t.cfg.OverrideFields) {
			out = append(out, Violation{Field: p, Rule: "overrideFields", Detail: fmt.Sprintf(
				"an override may set only %s: ask the platform's operator, or leave this field to the template", strings.Join(t.cfg.OverrideFields, ", "))})
		}
	}
	if len(out) > 0 {
		return &PolicyError{Pod: pod.Namespace + "/" + pod.Name, Key: spec.Key, Violations: out}
	}
	return nil
}

// mainIndex returns the index of the container named name, or -1.
func mainIndex(pod *corev1.Pod, name string) int {
	return slices.IndexFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == name })
}

// DefaultContainerAnnotation names the container that kubectl logs and
// kubectl exec use when none is given (kubexec.AnnotationDefaultContainer).
// Build sets it to the main container unless the template, override or
// middleware set it.
const DefaultContainerAnnotation = kubexec.AnnotationDefaultContainer

// mainFirst moves the main container, if there is one, to the front of the
// containers (a template may list it after others), and makes it kubectl's
// default container.
func mainFirst(pod *corev1.Pod, mainName string) {
	i := mainIndex(pod, mainName)
	if i < 0 {
		return
	}
	c := pod.Spec.Containers[i]
	copy(pod.Spec.Containers[1:i+1], pod.Spec.Containers[:i])
	pod.Spec.Containers[0] = c
	if _, ok := pod.Annotations[DefaultContainerAnnotation]; !ok {
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[DefaultContainerAnnotation] = mainName
	}
}

// applySpec writes the task spec into pod, whose main container exists.
// The annotations that carry spec.Files are written by the caller.
func applySpec(pod *corev1.Pod, mainName string, spec TaskSpec) field.ErrorList {
	c := &pod.Spec.Containers[mainIndex(pod, mainName)]
	root := field.NewPath("TaskSpec")
	var errs field.ErrorList
	requests, reqErrs := parseQuantities(root.Child("Requests"), spec.Requests)
	limits, limErrs := parseQuantities(root.Child("Limits"), spec.Limits)
	errs = append(append(errs, reqErrs...), limErrs...)
	errs = append(errs, validateSpec(spec)...)
	if len(errs) > 0 {
		return errs
	}

	if spec.Namespace != "" {
		pod.Namespace = spec.Namespace
	}
	if spec.Image != "" {
		c.Image = spec.Image
	}
	if spec.Command != nil {
		c.Command = slices.Clone(spec.Command)
	}
	if spec.Args != nil {
		c.Args = slices.Clone(spec.Args)
	}
	for _, e := range spec.Env {
		if i := slices.IndexFunc(c.Env, func(t corev1.EnvVar) bool { return t.Name == e.Name }); i >= 0 {
			c.Env[i] = *e.DeepCopy()
		} else {
			c.Env = append(c.Env, *e.DeepCopy())
		}
	}
	c.Resources.Requests = setQuantities(c.Resources.Requests, requests)
	c.Resources.Limits = setQuantities(c.Resources.Limits, limits)
	if spec.WorkingDir != "" {
		c.WorkingDir = spec.WorkingDir
	}
	if spec.ActiveDeadline > 0 {
		pod.Spec.ActiveDeadlineSeconds = new(deadlineSeconds(spec.ActiveDeadline))
	}
	applySecurity(c, spec)
	return applyVolumes(pod, c, spec)
}

func parseQuantities(path *field.Path, in map[corev1.ResourceName]string) (corev1.ResourceList, field.ErrorList) {
	var errs field.ErrorList
	out := corev1.ResourceList{}
	for name, s := range in {
		q, err := resource.ParseQuantity(s)
		if err != nil {
			errs = append(errs, field.Invalid(path.Key(string(name)), s, "not a resource quantity: write it like 500m, 2, 128Mi or 1Gi"))
			continue
		}
		out[name] = q
	}
	return out, errs
}

func setQuantities(dst, src corev1.ResourceList) corev1.ResourceList {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = corev1.ResourceList{}
	}
	for name, q := range src {
		dst[name] = q
	}
	return dst
}

// merge applies o to pod with strategic-merge-patch semantics, then puts
// the entries of every merged list back in the template's order, the
// override's additions after them (see keepTemplateOrder).
func merge(pod *corev1.Pod, o Override) (*corev1.Pod, error) {
	fail := func(err error) error {
		return &DecodeError{Source: o.source, Err: err, kind: ErrInvalidOverride}
	}
	original, err := json.Marshal(pod)
	if err != nil {
		return nil, fail(err)
	}
	out, err := strategicpatch.StrategicMergePatch(original, o.patch, corev1.Pod{})
	if err != nil {
		return nil, fail(fmt.Errorf("cannot merge: %w", err))
	}
	// utiljson keeps integers as int64, as the merge does: a round trip
	// through float64 would change large ones.
	var before, patch, after map[string]any
	if utiljson.Unmarshal(original, &before) == nil && utiljson.Unmarshal(o.patch, &patch) == nil && utiljson.Unmarshal(out, &after) == nil {
		if keepTemplateOrder(podPatchMeta, before, patch, after) {
			if out, err = json.Marshal(after); err != nil {
				return nil, fail(err)
			}
		}
	}
	merged := &corev1.Pod{}
	if err := json.Unmarshal(out, merged); err != nil {
		return nil, fail(fmt.Errorf("merged pod does not decode: %w", err))
	}
	return merged, nil
}

// podPatchMeta is the strategic-merge schema of a core/v1 Pod: which lists
// merge, and by which key.
var podPatchMeta = func() strategicpatch.LookupPatchMeta {
	meta, err := strategicpatch.NewPatchMetaFromStruct(corev1.Pod{})
	if err != nil {
		panic(err)
	}
	return meta
}()

// keepTemplateOrder puts the lists of merged that the strategic merge of
// patch into before merged by key (init containers, containers, env,
// volumes, volume mounts, ports, ...) in Apache Airflow's order: before's
// entries where they were, then the entries patch added, in patch's order.
// A strategic merge puts patch's entries first instead, so an override's
// init container would run before the template's and its env var could not
// refer to the template's with $(VAR). An entry patch changed keeps its
// place. Lists patch replaces ($patch: replace, or lists that do not merge)
// and lists whose order patch sets ($setElementOrder) are left as merged.
// It reports whether it changed merged.
func keepTemplateOrder(schema strategicpatch.LookupPatchMeta, before, patch, merged map[string]any) bool {
	changed := false
	for k, p := range patch {
		if strings.HasPrefix(k, "$") {
			continue
		}
		b, m := before[k], merged[k]
		switch p := p.(type) {
		case map[string]any:
			bm, ok1 := b.(map[string]any)
			mm, ok2 := m.(map[string]any)
			if !ok1 || !ok2 || p[directiveMarker] == "replace" {
				continue
			}
			sub, _, err := schema.LookupPatchMetadataForStruct(k)
			if err != nil {
				continue // a map of values (labels, resources): no lists
			}
			changed = keepTemplateOrder(sub, bm, p, mm) || changed
		case []any:
			bl, ok1 := b.([]any)
			ml, ok2 := m.([]any)
			if !ok1 || !ok2 || len(bl) == 0 || listReplaced(p) {
				continue
			}
			sub, meta, err := schema.LookupPatchMetadataForSlice(k)
			if err != nil || !slices.Contains(meta.GetPatchStrategies(), "merge") {
				continue
			}
			mergeKey := meta.GetPatchMergeKey()
			if _, ordered := patch["$setElementOrder/"+k]; !ordered {
				if sorted, ok := templateOrder(bl, ml, mergeKey); ok {
					merged[k], ml, changed = sorted, sorted, true
				}
			}
			if mergeKey != "" {
				changed = keepItemsOrder(sub, mergeKey, bl, p, ml) || changed
			}
		}
	}
	return changed
}

// directiveMarker is the strategic-merge key of a $patch directive.
const directiveMarker = "$patch"

// listReplaced reports whether a patch list replaces the list it is merged
// into ($patch: replace).
func listReplaced(patch []any) bool {
	return slices.ContainsFunc(patch, func(e any) bool {
		m, ok := e.(map[string]any)
		return ok && m[directiveMarker] == "replace"
	})
}

// keepItemsOrder applies keepTemplateOrder to the entries of a merged list
// that both before and patch hold (by mergeKey): the lists inside an entry
// the patch changed, such as a container's env.
func keepItemsOrder(schema strategicpatch.LookupPatchMeta, mergeKey string, before, patch, merged []any) bool {
	byKey := func(list []any, skipDirectives bool) map[any]map[string]any {
		out := map[any]map[string]any{}
		for _, e := range list {
			m, ok := e.(map[string]any)
			if !ok || (skipDirectives && m[directiveMarker] != nil) {
				continue
			}
			if k, ok := scalarKey(m[mergeKey]); ok {
				if _, seen := out[k]; !seen {
					out[k] = m
				}
			}
		}
		return out
	}
	b, p := byKey(before, false), byKey(patch, true)
	changed := false
	for _, e := range merged {
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		k, ok := scalarKey(m[mergeKey])
		if !ok || b[k] == nil || p[k] == nil {
			continue
		}
		changed = keepTemplateOrder(schema, b[k], p[k], m) || changed
	}
	return changed
}

// templateOrder returns merged with before's entries (matched by mergeKey,
// or by value for a list of scalars) in before's order and the others after
// them in merged's order, or false when it is already in that order or an
// entry has no usable key.
func templateOrder(before, merged []any, mergeKey string) ([]any, bool) {
	keyOf := func(e any) (any, bool) {
		if mergeKey == "" {
			return scalarKey(e)
		}
		m, ok := e.(map[string]any)
		if !ok {
			return nil, false
		}
		return scalarKey(m[mergeKey])
	}
	positions := map[any][]int{}
	for i, e := range before {
		k, ok := keyOf(e)
		if !ok {
			return nil, false
		}
		positions[k] = append(positions[k], i)
	}
	rank := make([]int, len(merged))
	for i, e := range merged {
		k, ok := keyOf(e)
		if !ok {
			return nil, false
		}
		if p := positions[k]; len(p) > 0 {
			rank[i], positions[k] = p[0], p[1:]
		} else {
			rank[i] = len(before) + i
		}
	}
	order := make([]int, len(merged))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int { return cmp.Compare(rank[i], rank[j]) })
	if slices.IsSorted(order) {
		return nil, false
	}
	out := make([]any, len(merged))
	for i, j := range order {
		out[i] = merged[j]
	}
	return out, true
}

// scalarKey returns a decoded JSON merge-key value usable as a map key; a
// whole number is an int64 however it was written (8080 or 8.08e3).
func scalarKey(v any) (any, bool) {
	switch n := v.(type) {
	case nil, string, bool, int64:
		return v, true
	case float64:
		if n == math.Trunc(n) && n >= math.MinInt64 && n < math.MaxInt64 {
			return int64(n), true
		}
		return v, true
	}
	return nil, false
}
