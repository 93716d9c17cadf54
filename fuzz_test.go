package kubexec_test

import (
	"errors"
	"testing"

	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kubexec/kubexec"
)

func FuzzSafeLabelValue(f *testing.F) {
	for _, s := range []string{"", "my_dag", "my dag", "_.-", "ünïcode", "manual__2024-01-01T00:00:00+00:00", "a\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := kubexec.SafeLabelValue(s)
		if msgs := content.IsLabelValue(got); len(msgs) > 0 {
			t.Fatalf("SafeLabelValue(%q) = %q: %v", s, got, msgs)
		}
		if len(content.IsLabelValue(s)) == 0 && got != s {
			t.Fatalf("SafeLabelValue(%q) = %q, want a valid label value unchanged", s, got)
		}
		if got == s && len(content.IsLabelValue(s)) > 0 {
			t.Fatalf("SafeLabelValue(%q) kept an invalid value", s)
		}
	})
}

// FuzzCodec checks that for any key, the codec either rejects it with a
// clear error or produces a valid name and labels, annotations that decode
// to the same key, and selectors that match those labels.
func FuzzCodec(f *testing.F) {
	f.Add("etl", "load", "r1", -1, 1, "sched-1")
	f.Add("my dag", "a.b", "", 3, 0, "x")
	f.Add("日本", "_", "\x00", 0, 1<<40, "a,b")
	f.Add("", "t", "r", -2, -1, "")
	f.Fuzz(func(t *testing.T, workflow, task, run string, mapIndex, attempt int, executor string) {
		key := kubexec.TaskKey{WorkflowID: workflow, TaskID: task, RunID: run, MapIndex: mapIndex, Attempt: attempt}
		obj := &metav1.ObjectMeta{}
		err := kubexec.ApplyMetadata(obj, executor, key)
		if err != nil {
			if !errors.Is(err, kubexec.ErrInvalidKey) && !errors.Is(err, kubexec.ErrInvalidExecutorID) {
				t.Fatalf("ApplyMetadata(%v, %q): unexpected error %v", key, executor, err)
			}
			if key.Validate() == nil && kubexec.ValidateExecutorID(executor) == nil {
				t.Fatalf("ApplyMetadata(%v, %q) rejected a valid input: %v", key, executor, err)
			}
			return
		}
		requireValidPodName(t, obj.Name)
		for k, v := range obj.Labels {
			if msgs := append(content.IsLabelKey(k), content.IsLabelValue(v)...); len(msgs) > 0 {
				t.Fatalf("label %s=%q: %v", k, v, msgs)
			}
		}
		got, err := kubexec.KeyFromObject(obj)
		if err != nil || got != key {
			t.Fatalf("KeyFromObject = %v, %v; want %v", got, err, key)
		}
		sel, err := kubexec.ActiveSelector(executor)
		if err != nil {
			t.Fatal(err)
		}
		if !sel.Matches(labels.Set(obj.Labels)) {
			t.Fatalf("%s does not match %v", sel, obj.Labels)
		}
		if _, err := labels.Parse(sel.String()); err != nil {
			t.Fatalf("selector %q does not parse: %v", sel, err)
		}
	})
}
