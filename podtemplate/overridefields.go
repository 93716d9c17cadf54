package podtemplate

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/strategicpatch"

	"github.com/kubexec/kubexec"
)

// validateOverrideFields checks Config.OverrideFields: each entry is a
// dotted path of JSON field names.
func validateOverrideFields(fields []string) error {
	for i, f := range fields {
		if f == "" || strings.HasPrefix(f, ".") || strings.HasSuffix(f, ".") || strings.Contains(f, "..") ||
			strings.ContainsAny(f, "[]* ") {
			return fmt.Errorf("%w: Config.OverrideFields[%d] %q: write a dotted path of field names, such as \"spec.containers.resources\" or \"metadata.labels\"", kubexec.ErrInvalidConfig, i, f)
		}
	}
	return nil
}

// overridePaths returns the fields a strategic merge patch sets, as dotted
// paths of JSON field names without list indexes ("spec.containers.env"),
// sorted and without duplicates. Inside a list merged by key, an entry
// that changes an existing entry (one of before's, by the merge key) sets
// the fields it names; an entry that adds one, deletes one or names no
// field sets the list itself. A map of values (labels, annotations,
// nodeSelector, resources.limits), a list that does not merge and a
// directive ($patch, $retainKeys, $setElementOrder) set the field that
// holds them.
func overridePaths(schema strategicpatch.LookupPatchMeta, prefix string, before, patch map[string]any) []string {
	var out []string
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	for k, v := range patch {
		if strings.HasPrefix(k, "$") {
			if _, list, ok := strings.Cut(k, "/"); ok {
				out = append(out, join(list))
			} else if prefix != "" {
				out = append(out, prefix)
			}
			continue
		}
		b := before[k]
		switch v := v.(type) {
		case map[string]any:
			sub, _, err := schema.LookupPatchMetadataForStruct(k)
			bm, _ := b.(map[string]any)
			if err != nil || sub.Name() != "struct" || v[directiveMarker] != nil {
				out = append(out, join(k))
				continue
			}
			out = append(out, overridePaths(sub, join(k), bm, v)...)
		case []any:
			sub, meta, err := schema.LookupPatchMetadataForSlice(k)
			mergeKey := ""
			if err == nil && slices.Contains(meta.GetPatchStrategies(), "merge") {
				mergeKey = meta.GetPatchMergeKey()
			}
			if mergeKey == "" {
				out = append(out, join(k))
				continue
			}
			bl, _ := b.([]any)
			for _, e := range v {
				m, ok := e.(map[string]any)
				if !ok || m[directiveMarker] != nil {
					out = append(out, join(k))
					continue
				}
				var existing map[string]any
				for _, be := range bl {
					if bm, ok := be.(map[string]any); ok && bm[mergeKey] == m[mergeKey] && m[mergeKey] != nil {
						existing = bm
						break
					}
				}
				fields := 0
				for f := range m {
					if f != mergeKey {
						fields++
					}
				}
				if existing == nil || fields == 0 {
					out = append(out, join(k))
					continue
				}
				rest := make(map[string]any, fields)
				for f, fv := range m {
					if f != mergeKey {
						rest[f] = fv
					}
				}
				out = append(out, overridePaths(sub, join(k), existing, rest)...)
			}
		default:
			out = append(out, join(k))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// fieldAllowed reports whether path is one of allowed or lies under one.
func fieldAllowed(path string, allowed []string) bool {
	return slices.ContainsFunc(allowed, func(a string) bool {
		return path == a || strings.HasPrefix(path, a+".")
	})
}
