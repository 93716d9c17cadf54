package logs

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kubexec/kubexec"
	"github.com/stretchr/testify/require"
)

// capHeader is the header of the archives of the cap tests.
var capHeader = archiveHeader{
	Key:        kubexec.TaskKey{WorkflowID: "w", TaskID: "t", MapIndex: kubexec.NotMapped, Attempt: 1},
	Namespace:  "ns",
	Pod:        "p",
	Containers: []string{"base"},
	Default:    "base",
}

// capBase is the time of the first line of the cap tests. Their lines are
// whole seconds apart, so that each record's time takes 20 bytes and a
// record of container "base" takes 29 bytes besides its text.
var capBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// shortLines returns n lines of text, one a second.
func shortLines(n int, text string) []Line {
	out := make([]Line, n)
	for i := range out {
		out[i] = Line{Container: "base", Time: capBase.Add(time.Duration(i) * time.Second), Text: text}
	}
	return out
}

// hugeLine returns one line of size bytes in pieces of at most piece
// bytes, as a cursor delivers a line longer than Config.MaxLineBytes.
func hugeLine(size, piece int) []Line {
	var out []Line
	for i := 0; size > 0; i++ {
		n := min(size, piece)
		size -= n
		out = append(out, Line{Container: "base", Time: capBase, Text: strings.Repeat(string(rune('a'+i%26)), n), Partial: size > 0})
	}
	return out
}

// logSize is what lines are of the log: texts and newlines, and how many
// lines end among them.
func logSize(lines []Line) (size, ended int64) {
	for _, l := range lines {
		size += lineSize(l)
		if !l.Partial {
			ended++
		}
	}
	return size, ended
}

// The cap counts every byte that the sink receives: the header, and each
// record with its time, container and kind, not one byte per line.
func TestArchiveCapCountsStoredBytes(t *testing.T) {
	t.Parallel()
	hdr, err := appendHeader(nil, capHeader)
	require.NoError(t, err)
	headerBytes := int64(len(hdr))
	for _, tc := range []struct {
		name string
		// room is the cap less the header; tail is ArchiveTailBytes.
		room, tail int64
		lines      []Line
		// head and end are how many of lines the archive keeps from the
		// start and the end; note says a note is between them.
		head, end int
		note      bool
		// size, when not 0, is the archive's exact size less the header.
		size int64
		// tooSmall says the cap cannot hold the header and the note.
		tooSmall bool
	}{{
		// 30-byte records: a head of 1800 bytes, an end of 1200 bytes
		// less the note's 320.
		name: "many short lines", room: 3000, tail: 1200, lines: shortLines(10000, "x"),
		head: 60, end: 29, note: true,
	}, {
		name: "records exactly at the cap", room: 3000, tail: 1200, lines: shortLines(100, "x"),
		head: 100, size: 3000,
	}, {
		// The head is exactly full; the last record overflows the end.
		name: "one byte over the cap", room: 3000, tail: 1200, lines: append(shortLines(99, "x"), Line{Container: "base", Time: capBase.Add(99 * time.Second), Text: "xx"}),
		head: 60, end: 29, note: true,
	}, {
		name: "empty lines", room: 3000, tail: 1200, lines: shortLines(1000, ""),
		head: 62, end: 30, note: true,
	}, {
		// 1029-byte records: two fill the head, two the end with the note.
		name: "one huge line", room: 5000, tail: 2500, lines: hugeLine(10500, 1000),
		head: 2, end: 2, note: true,
	}, {
		name: "pieces larger than the end", room: 6000, tail: 2500, lines: hugeLine(9000, 4000),
		head: 0, end: 1, note: true,
	}, {
		name: "an end too small for the note", room: 3000, tail: 100, lines: shortLines(200, "x"),
		head: 89, end: 0, note: true,
	}, {
		name: "a cap too small for the note, not reached", room: 100, tail: 50, lines: shortLines(3, "x"),
		head: 3, size: 90,
	}, {
		name: "a cap too small for the note", room: 100, tail: 50, lines: shortLines(4, "x"),
		head: 0, end: 0, note: true, tooSmall: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			maxBytes := headerBytes + tc.room
			var out bytes.Buffer
			aw, err := newArchiveWriter(&out, capHeader, maxBytes, tc.tail)
			require.NoError(t, err)
			for _, l := range tc.lines {
				require.NoError(t, aw.add(l))
			}
			require.NoError(t, aw.finish())

			stored := int64(out.Len())
			if tc.tooSmall {
				require.Greater(t, stored, maxBytes)
				require.LessOrEqual(t, stored, headerBytes+320, "just the header and the note")
			} else {
				require.LessOrEqual(t, stored, maxBytes, "the archive's size, records and header included")
			}
			if tc.size != 0 {
				require.Equal(t, tc.size, stored-headerBytes)
			}

			br := bufio.NewReader(&out)
			h, err := readHeader(br, capHeader.Key)
			require.NoError(t, err)
			require.Equal(t, capHeader.Containers, h.Containers)
			var got []Line
			require.NoError(t, eachRecord(br, func(l Line) error { got = append(got, l); return nil }))

			kept := tc.head + tc.end
			if tc.note {
				kept++
			}
			require.Len(t, got, kept)
			require.Equal(t, tc.lines[:tc.head], got[:tc.head], "the start of the log")
			require.Equal(t, tc.lines[len(tc.lines)-tc.end:], got[len(got)-tc.end:], "the end of the log")
			if !tc.note {
				require.Len(t, tc.lines, tc.head, "nothing left out")
				return
			}
			note := got[tc.head]
			require.True(t, note.Note)
			first := tc.lines[tc.head]
			require.Equal(t, first.Container, note.Container, "the note is where the first line left out was")
			require.True(t, first.Time.Equal(note.Time), "the note is timed at the first line left out")
			size, ended := logSize(tc.lines[tc.head : len(tc.lines)-tc.end])
			require.Contains(t, note.Text, fmt.Sprintf("%d bytes in %d lines were left out", size, ended))
			require.Contains(t, note.Text, fmt.Sprintf("cap of %d bytes", maxBytes))
		})
	}
}

// The note of a truncated archive fits in the room kept for it, however
// much was left out, also when the container's name is longer than any
// pod's (then it stands for the whole pod).
func TestArchiveNoteFitsItsRoom(t *testing.T) {
	t.Parallel()
	for _, container := range []string{strings.Repeat("c", 63), strings.Repeat("c", 300)} {
		hdr, err := appendHeader(nil, archiveHeader{})
		require.NoError(t, err)
		var out bytes.Buffer
		aw, err := newArchiveWriter(&out, archiveHeader{}, math.MaxInt64, 1<<20)
		require.NoError(t, err)
		aw.omitted.any = true
		aw.omitted.bytes, aw.omitted.lines = math.MaxInt64, math.MaxInt64
		aw.omitted.container = container
		aw.omitted.time = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
		require.NoError(t, aw.finish())
		rec := out.Bytes()[len(hdr):]
		require.LessOrEqual(t, len(rec), maxNoteBytes)
		l, err := parseRecord(bytes.TrimSuffix(rec, []byte{'\n'}))
		require.NoError(t, err)
		require.True(t, l.Note)
		if len(container) <= 63 {
			require.Equal(t, container, l.Container)
			require.True(t, aw.omitted.time.Equal(l.Time))
		} else {
			require.Empty(t, l.Container)
		}
	}
}

// countingWriter counts what it is given.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// BenchmarkArchiveWriter archives a large log under a cap of 1 MiB (an end
// of 512 KiB, as Config's defaults make it for that cap). It reports the
// bytes allocated per archive (B/op), the bytes the archive writer still
// held before its last flush, after a collection (held-B), and the bytes
// stored (stored-B).
func BenchmarkArchiveWriter(b *testing.B) {
	for _, bc := range []struct {
		name  string
		lines int
		text  string
	}{
		{"2M-lines-of-1-byte", 2_000_000, "x"},
		{"20k-lines-of-1000-bytes", 20_000, strings.Repeat("x", 1000)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const maxBytes, tailBytes = 1 << 20, 512 << 10
			b.ReportAllocs()
			var held, stored int64
			for b.Loop() {
				var ms runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&ms)
				before := ms.HeapAlloc
				var w countingWriter
				aw, err := newArchiveWriter(&w, capHeader, maxBytes, tailBytes)
				if err != nil {
					b.Fatal(err)
				}
				for i := range bc.lines {
					if err := aw.add(Line{Container: "base", Time: capBase.Add(time.Duration(i) * time.Microsecond), Text: bc.text}); err != nil {
						b.Fatal(err)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&ms)
				held = int64(ms.HeapAlloc) - int64(before)
				if err := aw.finish(); err != nil {
					b.Fatal(err)
				}
				stored = w.n
			}
			b.ReportMetric(float64(held), "held-B")
			b.ReportMetric(float64(stored), "stored-B")
		})
	}
}

// podLog is a pods/log stream with timestamps of n lines of text, one a
// microsecond, made as it is read.
type podLog struct {
	n, i int
	text string
	buf  []byte
}

func (r *podLog) Read(p []byte) (int, error) {
	for len(r.buf) < len(p) && r.i < r.n {
		r.buf = capBase.Add(time.Duration(r.i)*time.Microsecond).AppendFormat(r.buf, time.RFC3339Nano)
		r.buf = append(r.buf, ' ')
		r.buf = append(r.buf, r.text...)
		r.buf = append(r.buf, '\n')
		r.i++
	}
	if len(r.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.buf)
	r.buf = r.buf[:copy(r.buf, r.buf[n:])]
	return n, nil
}

// BenchmarkArchivePath archives a pods/log stream as Archive does, through
// the splitter and the cursor, under a cap of 1 MiB: 2,000,000 lines of
// one byte within 2 s, a flood that fills the cursor's counts of recent
// lines to their bound. held-B is what the cursor and the archive writer
// still held once the stream was read, after a collection.
func BenchmarkArchivePath(b *testing.B) {
	const maxBytes, tailBytes = 1 << 20, 512 << 10
	b.ReportAllocs()
	var held, stored int64
	for b.Loop() {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.HeapAlloc
		var w countingWriter
		aw, err := newArchiveWriter(&w, capHeader, maxBytes, tailBytes)
		if err != nil {
			b.Fatal(err)
		}
		cur := newCursor("base", time.Time{}, aw.add)
		cur.begin()
		if _, err := pump(&podLog{n: 2_000_000, text: "x"}, cur, defaultMaxLineBytes); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&ms)
		held = int64(ms.HeapAlloc) - int64(before)
		if err := cur.end(true); err != nil {
			b.Fatal(err)
		}
		if err := aw.finish(); err != nil {
			b.Fatal(err)
		}
		stored = w.n
	}
	b.ReportMetric(float64(held), "held-B")
	b.ReportMetric(float64(stored), "stored-B")
}
