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
// panics nor invents a reference together with an error.
func FuzzRecall(f *testing.F) {
	for _, s := range []string{`{"ref":"file:x.json"}`, `{"error":{"kind":"too-large","message":"xcom: value too large: 5"}}`, `{"error":{"kind":"?"}}`, `[]`, ``} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		pod := newPod(map[string]string{AnnotationResult: v})
		ref, err, _, ok := recall(pod, unitKey)
		if !ok && (ref != "" || err != nil) {
			t.Fatalf("%q: not recalled, but ref %q err %v", v, ref, err)
		}
		if ref != "" && err != nil {
			t.Fatalf("%q: both ref %q and err %v", v, ref, err)
		}
		var verr *ValueError
		if err != nil && !errors.As(err, &verr) {
			t.Fatalf("%q: error %v is not a *ValueError", v, err)
		}
	})
}
