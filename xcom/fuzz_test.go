package xcom

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"
)

// FuzzParseValue: ParseValue accepts exactly the inputs that are one JSON
// value in UTF-8 within the limit once trimmed, and returns them trimmed.
func FuzzParseValue(f *testing.F) {
	for _, s := range []string{`{"a":1}`, ` [1, 2] `, `"x"`, `nul`, ``, "\"\xff\"", `{"a":1}{}`, `1e999`, `"\u0000"`} {
		f.Add([]byte(s), int64(8))
	}
	f.Fuzz(func(t *testing.T, data []byte, limit int64) {
		if limit <= 0 {
			limit = 1 - limit%1000
		}
		got, err := ParseValue(data, limit)
		trimmed := bytes.TrimSpace(data)
		switch {
		case len(trimmed) == 0:
			if !errors.Is(err, ErrMissing) {
				t.Fatalf("%q: want ErrMissing, got %v", data, err)
			}
		case int64(len(trimmed)) > limit:
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("%q (limit %d): want ErrTooLarge, got %v", data, limit, err)
			}
		case !utf8.Valid(trimmed) || !json.Valid(trimmed):
			if !errors.Is(err, ErrNotJSON) {
				t.Fatalf("%q: want ErrNotJSON, got %v", data, err)
			}
		default:
			if err != nil || !bytes.Equal(got, trimmed) {
				t.Fatalf("%q: want %q, got %q, %v", data, trimmed, got, err)
			}
		}
	})
}

// FuzzRecall: whatever a pod's result annotation holds, recall neither
// panics nor invents a reference together with an error, and trusts only
// a record of the pod's own UID.
func FuzzRecall(f *testing.F) {
	for _, s := range []string{`{"pod":"uid-1","ref":"file:x.json"}`, `{"pod":"uid-1","error":{"kind":"too-large","message":"xcom: value too large: 5"}}`,
		`{"pod":"uid-1","error":{"kind":"?"}}`, `{"ref":"file:x.json"}`, `{"pod":"uid-2","ref":"file:x.json"}`, `[]`, ``} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		pod := newPod(map[string]string{AnnotationResult: v})
		pod.UID = "uid-1"
		a, ok, why := recall(pod, unitKey)
		if !ok && (a.ref != "" || a.err != nil) {
			t.Fatalf("%q: not recalled, but ref %q err %v", v, a.ref, a.err)
		}
		if ok == (why != "") {
			t.Fatalf("%q: recalled %v, but why %q", v, ok, why)
		}
		var r recorded
		if ok && (json.Unmarshal([]byte(v), &r) != nil || r.Pod != pod.UID) {
			t.Fatalf("%q: recalled a record that does not name the pod's UID", v)
		}
		if a.ref != "" && a.err != nil {
			t.Fatalf("%q: both ref %q and err %v", v, a.ref, a.err)
		}
		var verr *ValueError
		if a.err != nil && !errors.As(a.err, &verr) {
			t.Fatalf("%q: error %v is not a *ValueError", v, a.err)
		}
	})
}
