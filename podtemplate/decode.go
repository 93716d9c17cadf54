package podtemplate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// strictDecoder decodes YAML or JSON into core/v1 objects, failing on
// unknown and duplicate fields with the field's path.
var strictDecoder = func() runtime.Decoder {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})
}()

// LoadTemplate reads a base template from a YAML or JSON file; see
// [ParseTemplate].
func LoadTemplate(path string) (*corev1.Pod, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("podtemplate: read template: %w", err)
	}
	return ParseTemplate(path, data)
}

// ParseTemplate decodes a base template: one YAML (or JSON) document of
// apiVersion v1 and kind Pod, or kind PodTemplate (whose template is used).
// source names the input in errors, usually its file name.
//
// Decoding is strict: an unknown or duplicated field, a second document, a
// missing or wrong apiVersion or kind, an invalid resource quantity, or a
// template without containers is a *[DecodeError] wrapping
// [ErrInvalidTemplate] that names the source and the field (or, for YAML
// syntax errors, the line).
//
// Of the template's metadata only namespace, labels, annotations,
// finalizers and ownerReferences are kept: the name is always derived from
// the task key, and fields the server sets (uid, resourceVersion,
// creationTimestamp, status, ...) are dropped, so a pod exported with
// kubectl can serve as a template.
func ParseTemplate(source string, data []byte) (*corev1.Pod, error) {
	fail := func(fieldPath string, err error) (*corev1.Pod, error) {
		return nil, &DecodeError{Source: source, Field: fieldPath, Err: err, kind: ErrInvalidTemplate}
	}
	doc, err := singleDocument(data)
	if err != nil {
		return fail("", err)
	}
	if doc == nil {
		return fail("", errors.New("is empty: write one object of kind Pod or PodTemplate"))
	}
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return fail("", errors.New("is not a YAML mapping: write one object of kind Pod or PodTemplate"))
	}
	if tm.APIVersion != "v1" {
		return fail("apiVersion", fmt.Errorf("is %q: set apiVersion: v1", tm.APIVersion))
	}
	var into runtime.Object
	switch tm.Kind {
	case "Pod":
		into = &corev1.Pod{}
	case "PodTemplate":
		into = &corev1.PodTemplate{}
	default:
		return fail("kind", fmt.Errorf("is %q: set kind: Pod (or PodTemplate)", tm.Kind))
	}
	if err := strictDecode(doc, into); err != nil {
		return fail(badQuantityPath(doc, err))
	}

	var meta metav1.ObjectMeta
	var spec corev1.PodSpec
	prefix := "spec"
	switch obj := into.(type) {
	case *corev1.Pod:
		meta, spec = obj.ObjectMeta, obj.Spec
	case *corev1.PodTemplate:
		meta, spec = obj.Template.ObjectMeta, obj.Template.Spec
		prefix = "template.spec"
	}
	if len(spec.Containers) == 0 {
		return fail(prefix+".containers", fmt.Errorf("is empty: add the main container, named %q", DefaultMainContainer))
	}
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace:       meta.Namespace,
			Labels:          meta.Labels,
			Annotations:     meta.Annotations,
			Finalizers:      meta.Finalizers,
			OwnerReferences: meta.OwnerReferences,
		},
		Spec: spec,
	}, nil
}

// Override is a partial pod merged into a built pod with Kubernetes
// strategic-merge-patch semantics; see the package documentation. The zero
// Override changes nothing. An Override is immutable and safe to share.
type Override struct {
	source string
	patch  []byte // a strategic merge patch for a core/v1 Pod, as JSON
}

// IsZero reports whether o is the zero Override, which changes nothing.
func (o Override) IsZero() bool { return len(o.patch) == 0 }

// ParseOverride decodes a per-task override from YAML or JSON: one document
// shaped like a Pod (apiVersion and kind may be left out; when present they
// must be v1 and Pod) holding only the fields to change. source names the
// input in errors.
//
// Explicit values win, including false, 0, "" and null (null removes the
// field). Lists with a merge key (containers, initContainers, volumes, env,
// ports, volumeMounts by mountPath, ...) are merged by that key, the
// template's entries first and the override's additions after them; other
// lists are replaced. Strategic-merge directives such as "$patch: delete" or
// "$patch: replace" are accepted. Decoding is strict: an unknown or
// duplicated field is a *[DecodeError] wrapping [ErrInvalidOverride]. An
// empty document is the zero Override.
func ParseOverride(source string, data []byte) (Override, error) {
	fail := func(fieldPath string, err error) (Override, error) {
		return Override{}, &DecodeError{Source: source, Field: fieldPath, Err: err, kind: ErrInvalidOverride}
	}
	doc, err := singleDocument(data)
	if err != nil {
		return fail("", err)
	}
	if doc == nil {
		return Override{}, nil
	}
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return fail("", err)
	}
	var patch map[string]any
	if err := json.Unmarshal(js, &patch); err != nil || patch == nil {
		return fail("", errors.New("is not a mapping: write the fields of a Pod to change, e.g. spec: {...}"))
	}
	if v, ok := patch["apiVersion"]; ok && v != "v1" {
		return fail("apiVersion", fmt.Errorf("is %v: leave it out or set apiVersion: v1", v))
	}
	if v, ok := patch["kind"]; ok && v != "Pod" {
		return fail("kind", fmt.Errorf("is %v: an override is a partial Pod: leave kind out or set kind: Pod", v))
	}
	delete(patch, "apiVersion")
	delete(patch, "kind")

	// Check field names and types against core/v1 Pod, without the
	// strategic-merge directives, which are not fields.
	check, ok := withoutDirectives(patch).(map[string]any)
	if !ok {
		check = map[string]any{}
	}
	check["apiVersion"], check["kind"] = "v1", "Pod"
	checkJSON, err := json.Marshal(check)
	if err != nil {
		return fail("", err)
	}
	if err := strictDecode(checkJSON, &corev1.Pod{}); err != nil {
		return fail(badQuantityPath(checkJSON, err))
	}
	patchJSON, err := json.Marshal(patch)
	if err != nil {
		return fail("", err)
	}
	return Override{source: source, patch: patchJSON}, nil
}

// OverrideFromPod returns an Override holding the fields set in pod. A typed
// pod cannot say "set this to false, 0 or empty" for fields that are not
// pointers (their zero values are left out), so use [ParseOverride] when an
// override must clear such a field. A nil pod gives the zero Override.
func OverrideFromPod(pod *corev1.Pod) (Override, error) {
	if pod == nil {
		return Override{}, nil
	}
	b, err := json.Marshal(pod)
	if err != nil {
		return Override{}, &DecodeError{Source: "OverrideFromPod", Err: err, kind: ErrInvalidOverride}
	}
	var patch map[string]any
	if err := json.Unmarshal(b, &patch); err != nil {
		return Override{}, &DecodeError{Source: "OverrideFromPod", Err: err, kind: ErrInvalidOverride}
	}
	delete(patch, "status")
	if meta, ok := patch["metadata"].(map[string]any); ok {
		delete(meta, "creationTimestamp")
	}
	// A typed pod marshals unset fields without omitempty (such as
	// spec.containers) as null, which a merge patch reads as "remove":
	// unset must mean "leave alone".
	dropNulls(patch)
	b, err = json.Marshal(patch)
	if err != nil {
		return Override{}, &DecodeError{Source: "OverrideFromPod", Err: err, kind: ErrInvalidOverride}
	}
	return Override{source: "OverrideFromPod", patch: b}, nil
}

// dropNulls removes, recursively, the object fields whose value is null.
func dropNulls(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if e == nil {
				delete(v, k)
				continue
			}
			dropNulls(e)
		}
	case []any:
		for _, e := range v {
			dropNulls(e)
		}
	}
}

// singleDocument returns the only non-empty YAML document in data, nil if
// there is none, or an error if there are several or one does not parse.
func singleDocument(data []byte) ([]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		var v any
		if err := yaml.Unmarshal(doc, &v); err != nil {
			return nil, err
		}
		if v != nil {
			docs = append(docs, doc)
		}
	}
	switch len(docs) {
	case 0:
		return nil, nil
	case 1:
		return docs[0], nil
	}
	return nil, fmt.Errorf("has %d YAML documents: keep exactly one", len(docs))
}

// strictDecode decodes YAML or JSON data into obj, failing on unknown and
// duplicated fields.
func strictDecode(data []byte, obj runtime.Object) error {
	_, _, err := strictDecoder.Decode(data, nil, obj)
	return err
}

// withoutDirectives returns a copy of v without strategic-merge directives:
// the map keys that start with "$" ($patch, $retainKeys,
// $setElementOrder/..., $deleteFromPrimitiveList/...).
func withoutDirectives(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			if !strings.HasPrefix(k, "$") {
				out[k] = withoutDirectives(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = withoutDirectives(e)
		}
		return out
	}
	return v
}

// quantityMaps are the keys under which core/v1 holds maps of resource
// quantities.
var quantityMaps = []string{"requests", "limits", "overhead"}

// badQuantityPath turns a decoding error caused by an invalid resource
// quantity, whose message does not say where it is, into the path of that
// quantity and an error that says how to write one. Other errors pass
// through with an empty path.
func badQuantityPath(doc []byte, decodeErr error) (string, error) {
	var v any
	if yaml.Unmarshal(doc, &v) != nil {
		return "", decodeErr
	}
	var walk func(path string, v any) (string, error)
	walk = func(path string, v any) (string, error) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				p := joinPath(path, k)
				if q, ok := e.(map[string]any); ok && slices.Contains(quantityMaps, k) {
					for name, val := range q {
						if val == nil {
							continue // null removes the entry in a patch
						}
						s := fmt.Sprint(val)
						if _, err := resource.ParseQuantity(s); err != nil {
							return p + "." + name, fmt.Errorf("%q is not a resource quantity: write it like 500m, 2, 128Mi or 1Gi", s)
						}
					}
				}
				if p, err := walk(p, e); err != nil {
					return p, err
				}
			}
		case []any:
			for i, e := range v {
				if p, err := walk(path+"["+strconv.Itoa(i)+"]", e); err != nil {
					return p, err
				}
			}
		}
		return "", nil
	}
	if p, err := walk("", v); err != nil {
		return p, err
	}
	return "", decodeErr
}

func joinPath(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}
