package xcom

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"
)

// FuzzParseValue: ParseValue accepts exactly the inputs that are UTF-8
// within the limit once trimmed (and, in FormatJSON, one JSON value), and
// returns one JSON value: the trimmed input itself when it is JSON (but in
// FormatText), else a JSON string that holds the trimmed text.
func FuzzParseValue(f *testing.F) {
	for _, s := range []string{`{"a":1}`, ` [1, 2] `, `"x"`, `nul`, ``, "\"\xff\"", `{"a":1}{}`, `1e999`, `"\u0000"`,
		"done\n", `a "quoted" \ path`, "tab\there", "<&>", "\u2028", "42"} {
		for _, format := range []byte{0, 1, 2, 3} {
			f.Add([]byte(s), int64(8), format)
		}
	}
	formats := []Format{"", FormatAuto, FormatJSON, FormatText}
	f.Fuzz(func(t *testing.T, data []byte, limit int64, fb byte) {
		if limit <= 0 {
			limit = 1 - limit%1000
		}
		format := formats[int(fb)%len(formats)]
		got, err := ParseValue(data, limit, format)
		trimmed := bytes.TrimSpace(data)
		isJSON := utf8.Valid(trimmed) && json.Valid(trimmed)
		switch {
		case len(trimmed) == 0:
			if !errors.Is(err, ErrMissing) {
				t.Fatalf("%q: want ErrMissing, got %v", data, err)
			}
		case int64(len(trimmed)) > limit:
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("%q (limit %d): want ErrTooLarge, got %v", data, limit, err)
			}
		case !utf8.Valid(trimmed):
			if !errors.Is(err, ErrNotJSON) {
				t.Fatalf("%q: want ErrNotJSON, got %v", data, err)
			}
		case format == FormatJSON && !isJSON:
			if !errors.Is(err, ErrNotJSON) {
				t.Fatalf("%q (%s): want ErrNotJSON, got %v", data, format, err)
			}
		case format != FormatText && isJSON:
			if err != nil || !bytes.Equal(got, trimmed) {
				t.Fatalf("%q (%s): want %q, got %q, %v", data, format, trimmed, got, err)
			}
		default:
			// Text: a JSON string that holds exactly the trimmed text.
			var text string
			if err != nil || !json.Valid(got) || json.Unmarshal(got, &text) != nil || text != string(trimmed) {
				t.Fatalf("%q (%s): want the JSON string of %q, got %q, %v", data, format, trimmed, got, err)
			}
		}
		if err == nil && !json.Valid(got) {
			t.Fatalf("%q (%s): %q is not JSON", data, format, got)
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
