package logs

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// These tests drive the cursor with streams rendered the way the kubelet
// serves pods/log with timestamps=true (sinceTime in whole seconds,
// inclusive; tailLines), cut at random points, and check that the lines
// delivered are exactly the log.

type logLine struct {
	ts   time.Time
	text string
	open bool // the log ends in this line, without a newline
}

// render serves log as pods/log would for sinceTime and tailLines.
func render(log []logLine, since time.Time, tail int) []byte {
	since = since.Truncate(time.Second) // sinceTime travels as RFC 3339 seconds
	var sel []logLine
	for _, l := range log {
		if !since.IsZero() && l.ts.Before(since) {
			continue
		}
		sel = append(sel, l)
	}
	if tail > 0 && len(sel) > tail {
		sel = sel[len(sel)-tail:]
	}
	var b bytes.Buffer
	for _, l := range sel {
		b.WriteString(l.ts.UTC().Format(time.RFC3339Nano))
		b.WriteByte(' ')
		b.WriteString(l.text)
		if !l.open {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// cutReader returns r's bytes up to n, then err.
type cutReader struct {
	r   io.Reader
	n   int
	err error
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, c.err
	}
	if len(p) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= n
	return n, err
}

// readAll reads log through the cursor, cutting each stream at a point
// chosen by cut (return -1 for no cut), and returns the delivered lines.
func readAll(t testing.TB, log []logLine, tail int, maxLine int, cut func(size int) int) []Line {
	t.Helper()
	var got []Line
	cur := newCursor("c", time.Time{}, func(l Line) error {
		got = append(got, l)
		return nil
	})
	for range 10000 {
		var since time.Time
		tl := tail
		if cur.pos.started {
			since, tl = cur.pos.resumeSince(), 0
		}
		body := render(log, since, tl)
		var r io.Reader = bytes.NewReader(body)
		if n := cut(len(body)); n >= 0 {
			r = &cutReader{r: r, n: n, err: io.ErrUnexpectedEOF}
		}
		cur.begin()
		_, err := pump(r, cur, maxLine)
		if err == nil {
			require.NoError(t, cur.end(true))
			return got
		}
		require.NoError(t, cur.end(false))
	}
	t.Fatal("the log was never read to its end")
	return nil
}

// joined rebuilds whole lines from delivered pieces.
func joined(lines []Line) []logLine {
	var out []logLine
	mid := false
	for _, l := range lines {
		if l.Note {
			continue
		}
		if mid {
			out[len(out)-1].text += l.Text
			out[len(out)-1].open = l.Partial
		} else {
			out = append(out, logLine{ts: l.Time, text: l.Text, open: l.Partial})
		}
		mid = l.Partial
	}
	return out
}

func equalLogs(t testing.TB, want, got []logLine) {
	t.Helper()
	require.Equal(t, len(want), len(got), "line count")
	for i := range want {
		require.True(t, want[i].ts.Equal(got[i].ts), "line %d time: want %s, got %s", i, want[i].ts, got[i].ts)
		require.Equal(t, want[i].text, got[i].text, "line %d text", i)
		require.Equal(t, want[i].open, got[i].open, "line %d end", i)
	}
}

// randomLog makes n lines over a few seconds: many in the same second,
// some at the same nanosecond, repeated texts, empty and long lines, and a
// few written slightly out of time order (stdout and stderr).
//
// With sharedTimes false every line has its own time, as with a
// nanosecond clock: a tail is only exact then (see cursor).
func randomLog(rng *rand.Rand, n int, sharedTimes bool) []logLine {
	base := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	ts := base
	log := make([]logLine, n)
	for i := range log {
		switch rng.IntN(10) {
		case 0: // same time as the line before
			if !sharedTimes {
				ts = ts.Add(time.Duration(1 + rng.IntN(1000)))
			}
		case 1:
			ts = ts.Add(time.Duration(rng.IntN(900)) * time.Millisecond)
		default:
			ts = ts.Add(time.Duration(rng.IntN(3000)) * time.Microsecond)
		}
		l := logLine{ts: ts}
		if rng.IntN(20) == 0 {
			l.ts = ts.Add(-time.Duration(1+rng.IntN(500000)) * time.Nanosecond) // out of order
		}
		switch rng.IntN(8) {
		case 0:
			l.text = ""
		case 1:
			l.text = "same text"
		case 2:
			l.text = strings.Repeat(fmt.Sprint(i%10), 300+rng.IntN(900)) // longer than maxLine
		default:
			l.text = fmt.Sprintf("line %d: %s", i, strings.Repeat("x", rng.IntN(80)))
		}
		log[i] = l
	}
	if rng.IntN(2) == 0 {
		// The log ends without a newline (never with an empty line: the
		// runtime writes no empty record).
		log[n-1].open = true
		log[n-1].text += "end"
	}
	return log
}

func TestCursorResumesWithoutLossOrDuplicates(t *testing.T) {
	t.Parallel()
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		log := randomLog(rng, 1+rng.IntN(200), true)
		got := readAll(t, log, 0, 256, func(size int) int {
			if rng.IntN(4) == 0 {
				return -1
			}
			return rng.IntN(size + 1)
		})
		equalLogs(t, log, joined(got))
	}
}

func TestCursorResumesAfterTail(t *testing.T) {
	t.Parallel()
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 11))
		log := randomLog(rng, 20+rng.IntN(100), false)
		tail := 1 + rng.IntN(len(log))
		got := readAll(t, log, tail, 256, func(size int) int {
			if rng.IntN(3) == 0 {
				return -1
			}
			return rng.IntN(size + 1)
		})
		equalLogs(t, log[len(log)-tail:], joined(got))
	}
}

func TestCursorCutsLongLinesIntoPieces(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 1, 1, 0, 0, 0, 5, time.UTC)
	log := []logLine{{ts: ts, text: strings.Repeat("a", 1000)}, {ts: ts.Add(1), text: "short"}}
	got := readAll(t, log, 0, 256, func(int) int { return -1 })
	for _, l := range got {
		require.LessOrEqual(t, len(l.Text), 256)
	}
	require.Greater(t, len(got), 2)
	require.True(t, got[0].Partial)
	equalLogs(t, log, joined(got))
}

// A log that lost the last line read (rotated away) is resumed from the
// first line after it, with a note.
func TestCursorFallsBackWhenTheLastLineIsGone(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var log []logLine
	for i := range 10 {
		log = append(log, logLine{ts: base.Add(time.Duration(i) * 100 * time.Millisecond), text: fmt.Sprint("line ", i)})
	}
	var got []Line
	cur := newCursor("c", time.Time{}, func(l Line) error { got = append(got, l); return nil })
	cur.begin()
	body := render(log[:5], time.Time{}, 0)
	_, err := pump(&cutReader{r: bytes.NewReader(body), n: len(body), err: io.ErrUnexpectedEOF}, cur, 256)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	require.NoError(t, cur.end(false))
	// Lines 3 and 4 were rotated away.
	rotated := append(append([]logLine{}, log[:3]...), log[5:]...)
	cur.begin()
	_, err = pump(bytes.NewReader(render(rotated, cur.pos.resumeSince(), 0)), cur, 256)
	require.NoError(t, err)
	require.NoError(t, cur.end(true))
	var texts []string
	for _, l := range got {
		if l.Note {
			texts = append(texts, "NOTE")
			continue
		}
		texts = append(texts, l.Text)
	}
	require.Equal(t, []string{"line 0", "line 1", "line 2", "line 3", "line 4", "NOTE", "line 5", "line 6", "line 7", "line 8", "line 9"}, texts)
}

func TestCursorSince(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	log := []logLine{
		{ts: base.Add(100 * time.Millisecond), text: "before"},
		{ts: base.Add(500 * time.Millisecond), text: "at"},
		{ts: base.Add(700 * time.Millisecond), text: "after"},
	}
	var got []string
	cur := newCursor("c", base.Add(500*time.Millisecond), func(l Line) error { got = append(got, l.Text); return nil })
	cur.begin()
	// The server rounds sinceTime down to the second: the cursor filters.
	_, err := pump(bytes.NewReader(render(log, base, 0)), cur, 256)
	require.NoError(t, err)
	require.Equal(t, []string{"at", "after"}, got)
}

func TestSplitterKeepsUnterminatedEnd(t *testing.T) {
	t.Parallel()
	s := newSplitter(strings.NewReader("2026-01-01T00:00:00Z one\n2026-01-01T00:00:01Z two"), 256)
	p, err := s.next()
	require.NoError(t, err)
	require.Equal(t, "one", string(p.text))
	require.True(t, p.start && p.end)
	p, err = s.next()
	require.NoError(t, err)
	require.Equal(t, "two", string(p.text))
	require.True(t, p.start)
	require.False(t, p.end)
	_, err = s.next()
	require.ErrorIs(t, err, io.EOF)
}

func TestSplitterDropsCutFragment(t *testing.T) {
	t.Parallel()
	s := newSplitter(&cutReader{r: strings.NewReader("2026-01-01T00:00:00Z one\n2026-01-01T00:00:01Z tw"), n: 40, err: io.ErrUnexpectedEOF}, 256)
	p, err := s.next()
	require.NoError(t, err)
	require.Equal(t, "one", string(p.text))
	_, err = s.next()
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
}

// The lines held back while a resumed stream looks for the last line read
// are bounded by the memory they take (their text, and 64 bytes each),
// empty lines and long ones too: a resumed stream that lost that line and
// goes on with a flood of lines, or one huge line, within the second
// after it stops looking for it rather than hold them all, and delivers
// everything after it with a note.
func TestCursorBoundsHeldBackLines(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const pieceBytes = 64 << 10
	for _, tc := range []struct {
		name   string
		pieces []piece
	}{{
		name: "empty lines",
		pieces: func() []piece {
			out := make([]piece, 200_000)
			for i := range out {
				out[i] = piece{ts: base.Add(time.Duration(i+1) * time.Microsecond), start: true, end: true}
			}
			return out
		}(),
	}, {
		name: "one huge line",
		pieces: func() []piece {
			out := make([]piece, 160) // 10 MiB
			for i := range out {
				out[i] = piece{ts: base.Add(time.Millisecond), text: bytes.Repeat([]byte{'x'}, pieceBytes), start: i == 0, end: i == len(out)-1}
			}
			return out
		}(),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var delivered []Line
			cur := newCursor("c", time.Time{}, func(l Line) error { delivered = append(delivered, l); return nil })
			cur.begin()
			require.NoError(t, cur.feed(piece{ts: base, text: []byte("last read"), start: true, end: true}))
			require.NoError(t, cur.end(false))

			cur.begin()
			most, held, counted := 0, 0, 0
			for _, p := range tc.pieces {
				require.NoError(t, cur.feed(p))
				if len(cur.pending) < counted {
					held, counted = 0, 0 // given up: delivered
				}
				for _, l := range cur.pending[counted:] {
					held += len(l.Text) + 64
				}
				counted = len(cur.pending)
				most = max(most, held)
			}
			require.NoError(t, cur.end(true))
			require.LessOrEqual(t, most, 4<<20+pieceBytes+64, "at most 4 MiB held back, and one piece")

			require.Equal(t, "last read", delivered[0].Text)
			require.True(t, delivered[1].Note, "a note says that lines may be missing")
			var want, got []byte
			for _, p := range tc.pieces {
				want = append(append(want, p.text...), fmt.Sprint(p.end)...)
			}
			for _, l := range delivered[2:] {
				require.False(t, l.Note)
				got = append(append(got, l.Text...), fmt.Sprint(!l.Partial)...)
			}
			require.Equal(t, len(want), len(got))
			require.True(t, bytes.Equal(want, got), "everything after the lost line is delivered once")
		})
	}
}

// The counts of lines that a cursor keeps to resume a stream are bounded,
// also in a flood of lines within a second, and a stream cut in such a
// flood still resumes without losing or repeating a line.
func TestCursorBoundsLineCounts(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	log := make([]logLine, 200_000)
	for i := range log {
		log[i] = logLine{ts: base.Add(time.Duration(i) * time.Microsecond), text: fmt.Sprint(i)}
	}
	var got []Line
	var cur *cursor
	most := 0
	cur = newCursor("c", time.Time{}, func(l Line) error {
		got = append(got, l)
		most = max(most, len(cur.counts))
		return nil
	})
	// The log spans less than a second, so each resumed stream serves it
	// all again: the cursor skips up to the last line read.
	body := render(log, time.Time{}, 0)
	for _, cut := range []int{len(body) / 2, len(body) * 9 / 10, -1} {
		if cur.pos.started {
			require.Equal(t, body, render(log, cur.pos.resumeSince(), 0))
		}
		var r io.Reader = bytes.NewReader(body)
		if cut >= 0 {
			r = &cutReader{r: r, n: cut, err: io.ErrUnexpectedEOF}
		}
		cur.begin()
		_, err := pump(r, cur, 256)
		if cut >= 0 {
			require.ErrorIs(t, err, io.ErrUnexpectedEOF)
			require.NoError(t, cur.end(false))
			continue
		}
		require.NoError(t, err)
		require.NoError(t, cur.end(true))
	}
	require.LessOrEqual(t, most, 1<<16+1, "lines counted")
	equalLogs(t, log, joined(got))
	for _, l := range got {
		require.False(t, l.Note, l.Text)
	}
}
