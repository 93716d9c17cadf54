package logs

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"
)

// FuzzParseTimestamped: any input is either rejected or split so that the
// time, formatted back, and the text make up a line that parses the same.
func FuzzParseTimestamped(f *testing.F) {
	for _, s := range []string{
		"2026-01-02T03:04:05.123456789Z hello", "2026-01-02T03:04:05Z ", "2026-01-02T03:04:05+02:00 x y",
		"", " ", "garbage", "2026-13-02T03:04:05Z x", "2026-01-02T03:04:05.Z x",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		when, text, ok := parseTimestamped(line)
		if !ok {
			return
		}
		if !bytes.HasSuffix(line, text) {
			t.Fatalf("text %q is not the end of %q", text, line)
		}
		again := append(when.UTC().AppendFormat(nil, time.RFC3339Nano), ' ')
		again = append(again, text...)
		when2, text2, ok := parseTimestamped(again)
		if !ok || !when2.Equal(when) || !bytes.Equal(text2, text) {
			t.Fatalf("%q parsed as %s %q, formatted as %q, which parses as %v %s %q", line, when, text, again, ok, when2, text2)
		}
	})
}

// FuzzParseRecord: a record either is rejected or survives formatting and
// parsing again unchanged.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"2026-01-02T03:04:05.123456789Z base F hello", "2026-01-02T03:04:05Z base P ", "2026-01-02T03:04:05Z - ! note",
		"", "2026-01-02T03:04:05Z base", "2026-01-02T03:04:05Z base Q x",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		l, err := parseRecord(rec)
		if err != nil {
			return
		}
		if bytes.IndexByte([]byte(l.Text), '\n') >= 0 {
			return // cannot come from one line of an archive
		}
		again := appendRecord(nil, l)
		l2, err := parseRecord(again[:len(again)-1])
		if err != nil {
			t.Fatalf("%q parsed, formatted as %q, which does not parse: %v", rec, again, err)
		}
		if !l2.Time.Equal(l.Time) || l2.Container != l.Container || l2.Text != l.Text || l2.Partial != l.Partial || l2.Note != l.Note {
			t.Fatalf("%q parsed as %+v, then as %+v", rec, l, l2)
		}
	})
}

// FuzzCursor reads a random log through streams cut where the fuzzer says
// and checks that the lines delivered are exactly the log.
func FuzzCursor(f *testing.F) {
	f.Add(uint64(1), []byte{10, 200, 3})
	f.Add(uint64(2), []byte{})
	f.Add(uint64(3), []byte{0, 0, 0, 255, 255})
	f.Fuzz(func(t *testing.T, seed uint64, cuts []byte) {
		rng := rand.New(rand.NewPCG(seed, seed>>7))
		log := randomLog(rng, 1+rng.IntN(60), true)
		i := 0
		got := readAll(t, log, 0, 256, func(size int) int {
			if i >= len(cuts) {
				return -1
			}
			n := int(cuts[i]) * (size + 1) / 256
			i++
			return n
		})
		equalLogs(t, log, joined(got))
	})
}
