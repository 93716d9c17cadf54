package logs

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
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

// FuzzArchiveWriter archives lines of the lengths the fuzzer says under
// the cap it says, and checks that the archive stays within the cap (or
// holds just its header and the note) and is the start of the log, the
// note, and the end of the log, with the note's counts right.
func FuzzArchiveWriter(f *testing.F) {
	f.Add(uint16(3000), uint16(1200), []byte{1, 1, 1, 1, 63, 0x40 | 63, 5})
	f.Add(uint16(100), uint16(50), []byte{1, 1, 1, 1})
	f.Add(uint16(0), uint16(0), []byte{0})
	f.Add(uint16(400), uint16(399), bytes.Repeat([]byte{0x40 | 60, 0x80 | 2}, 30))
	f.Fuzz(func(t *testing.T, room, tail uint16, spec []byte) {
		hdr, err := appendHeader(nil, capHeader)
		if err != nil {
			t.Fatal(err)
		}
		maxBytes := int64(len(hdr)) + int64(room)
		tailBytes := 1 + int64(tail)%max(1, maxBytes-1)
		var lines []Line
		for i, b := range spec {
			l := Line{Container: "base", Time: capBase.Add(time.Duration(i) * time.Second), Text: strings.Repeat("x", int(b&0x3f)), Partial: b&0x40 != 0}
			if b&0x80 != 0 {
				l.Container = ""
			}
			lines = append(lines, l)
		}
		var out bytes.Buffer
		aw, err := newArchiveWriter(&out, capHeader, maxBytes, tailBytes)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			if err := aw.add(l); err != nil {
				t.Fatal(err)
			}
		}
		if err := aw.finish(); err != nil {
			t.Fatal(err)
		}
		size := int64(out.Len())
		br := bufio.NewReader(&out)
		if _, err := readHeader(br, capHeader.Key); err != nil {
			t.Fatal(err)
		}
		var got []Line
		if err := eachRecord(br, func(l Line) error { got = append(got, l); return nil }); err != nil {
			t.Fatal(err)
		}
		note := slices.IndexFunc(got, func(l Line) bool { return l.Note })
		if note < 0 {
			if size > maxBytes || !slices.Equal(lines, got) {
				t.Fatalf("%d bytes under a cap of %d, %d of %d lines, no note", size, maxBytes, len(got), len(lines))
			}
			return
		}
		if size > maxBytes && (size > int64(len(hdr))+maxNoteBytes || len(got) > 1) {
			t.Fatalf("%d bytes under a cap of %d, %d records", size, maxBytes, len(got))
		}
		head, end := got[:note], got[note+1:]
		if len(head)+len(end) >= len(lines) || !slices.Equal(lines[:len(head)], head) || !slices.Equal(lines[len(lines)-len(end):], end) {
			t.Fatalf("kept %d and %d of %d lines, not the start and the end", len(head), len(end), len(lines))
		}
		leftBytes, leftLines := logSize(lines[len(head) : len(lines)-len(end)])
		if want := fmt.Sprintf("%d bytes in %d lines were left out", leftBytes, leftLines); !strings.Contains(got[note].Text, want) {
			t.Fatalf("note %q, want %q", got[note].Text, want)
		}
		if first := lines[len(head)]; got[note].Container != first.Container || !got[note].Time.Equal(first.Time) {
			t.Fatalf("note at %s %s, first line left out at %s %s", got[note].Container, got[note].Time, first.Container, first.Time)
		}
	})
}
