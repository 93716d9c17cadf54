package logs

import (
	"bufio"
	"errors"
	"hash"
	"hash/fnv"
	"io"
	"time"
)

// A container's log is read as a sequence of streams: the first request,
// then, after each dropped connection, a request that starts a little
// before the last line read (pods/log's sinceTime has whole seconds, and
// the lines of stdout and stderr can be a little out of time order). The
// cursor remembers which line was read last by its time, a hash of its
// text and how many lines before it had both the same, skips the new
// stream up to that line, and passes on only what follows, so that a
// reader sees every line once.
//
// Two cases stay ambiguous: a first request with tailLines whose window
// starts right after a line with the same time, to the nanosecond, and
// the same text as one in the window; and a stream cut in a flood of lines
// (more than maxCounts within resumeSlack), after a line with the same
// time and text as an earlier one whose count was forgotten, which is
// then resumed from the earlier one and repeats the lines between them.
// Runtimes stamp lines with nanosecond clocks, so it takes a coarse clock
// to happen.

// piece is a line, or a piece of a long line, of one stream.
type piece struct {
	ts    time.Time
	text  []byte // valid until the next read of the stream
	start bool   // the piece starts a line
	end   bool   // the line ends with this piece
	note  bool   // a kubexec note from an archive
}

// resumeSlack bounds how far out of time order lines may be: a line that
// follows the last line read in the log may carry a time up to this much
// earlier, and a line that precedes it one up to this much later.
const resumeSlack = time.Second

// maxPending bounds the memory of the lines held back while a resumed
// stream looks for the last line read, counted as their text and
// pendingLineCost for each: past it, the cursor stops looking.
const maxPending = 4 << 20

// pendingLineCost is about what a held-back Line takes beside its text.
const pendingLineCost = 64

// position is how far a container's log has been consumed.
type position struct {
	started bool      // at least one complete line was consumed
	ts      time.Time // the time of the last complete line
	hash    uint64    // the hash of its text
	dup     int       // how many consumed lines had that same time and hash
	partTS  time.Time // the time of the line consumed in part, if partBytes > 0
	// partBytes is how many bytes of the line after the last complete one
	// were consumed.
	partBytes int
}

// resumeSince is where a resumed stream must start to include the line
// after pos: a whole second (what sinceTime carries) that leaves room for
// lines out of order.
func (p position) resumeSince() time.Time {
	return p.ts.Add(-resumeSlack).Truncate(time.Second)
}

// cursor consumes the pieces of successive streams of one container's log
// and delivers each line once.
type cursor struct {
	container string
	since     time.Time // lines before it are consumed but not delivered
	emit      func(Line) error

	pos position
	// counts holds how many consumed lines had each time and hash, for
	// the lines of the last few seconds, which a resumed stream repeats;
	// at most maxCounts of them.
	counts map[identity]int
	spare  map[identity]int // the map counts had before it was last pruned
	maxTS  time.Time        // the latest time of a consumed line
	pruned time.Time        // maxTS when counts was last pruned

	// State of the current stream.
	aligning  bool   // looking for pos's line: skip what precedes it
	seen      int    // lines equal to pos's seen while aligning
	pending   []Line // lines later than pos's line, held while aligning
	pendBytes int    // memory of pending: see maxPending
	inLine    bool   // a line started in this stream and has not ended
	lineTS    time.Time
	lineHash  hash.Hash64
	lineBytes int  // bytes of the current line consumed in this stream
	skip      int  // bytes of the current line still to skip (delivered before)
	drop      bool // the current line precedes pos's line: do not deliver
	hold      bool // the current line is held in pending
}

func newCursor(container string, since time.Time, emit func(Line) error) *cursor {
	return &cursor{container: container, since: since, emit: emit, lineHash: fnv.New64a()}
}

// begin starts a new stream. A stream that follows a consumed line must
// start at or before pos.resumeSince().
func (c *cursor) begin() {
	c.aligning = c.pos.started
	c.seen = 0
	c.pending, c.pendBytes = nil, 0
	c.inLine = false
}

// end ends the current stream. complete says the stream ended normally
// (not cut): if it never reached the last line read, that line is gone
// from the log, and what was held back is delivered.
func (c *cursor) end(complete bool) error {
	defer func() { c.pending, c.pendBytes = nil, 0 }()
	if !complete || !c.aligning {
		return nil
	}
	return c.fallBack()
}

// fallBack gives up looking for the last line read (the log lost it,
// e.g. rotated away): it says so and delivers the held-back lines, which
// are later than that line.
func (c *cursor) fallBack() error {
	c.aligning = false
	err := c.emit(Line{Container: c.container, Time: c.pos.ts, Note: true,
		Text: "[kubexec] the log stream was resumed, but the last line read before could not be found again; lines may be missing here"})
	if err != nil {
		return err
	}
	pending := c.pending
	c.pending, c.pendBytes = nil, 0
	h := fnv.New64a()
	n := 0
	for _, l := range pending {
		_, _ = h.Write([]byte(l.Text))
		n += len(l.Text)
		c.advance(l.Time, h.Sum64(), !l.Partial, n)
		if !l.Partial {
			h.Reset()
			n = 0
		}
		if err := c.deliver(l); err != nil {
			return err
		}
	}
	return nil
}

// advance records that a line, or its first lineBytes bytes when it has
// not ended, was consumed.
func (c *cursor) advance(ts time.Time, sum uint64, end bool, lineBytes int) {
	if !end {
		if c.pos.partBytes > lineBytes && c.pos.partTS.Equal(ts) {
			return // still within what an earlier stream consumed
		}
		c.pos.partTS, c.pos.partBytes = ts, lineBytes
		return
	}
	id := identity{ts.UnixNano(), sum}
	if c.counts == nil {
		c.counts = map[identity]int{}
	}
	c.counts[id]++
	c.pos.ts, c.pos.hash, c.pos.dup = ts, sum, c.counts[id]
	c.pos.started = true
	c.pos.partBytes = 0
	if ts.After(c.maxTS) {
		c.maxTS = ts
	}
	switch {
	case len(c.counts) > maxCounts:
		// A flood of lines: no later line can equal one more than
		// resumeSlack older than the latest (lines are at most that out
		// of time order), and of the rest, half are forgotten.
		c.pruneCounts(id, c.maxTS.Add(-resumeSlack), maxCounts/2)
	case c.maxTS.Sub(c.pruned) > 2*resumeSlack && len(c.counts) > 256:
		// A resumed stream starts at most resumeSlack and a second before
		// the last line; older counts are no longer needed.
		c.pruneCounts(id, c.maxTS.Add(-3*resumeSlack), len(c.counts))
	}
}

// maxCounts bounds cursor.counts, which otherwise grows with the lines of
// the last few seconds, however many.
const maxCounts = 1 << 16

// pruneCounts keeps in counts at most most of the lines from oldest on,
// keep (the last line's) among them. A count forgotten too early can only
// make a resumed stream align on an earlier line with the same time, to
// the nanosecond, and text as the last line read, and so repeat the lines
// after it, never lose them. The lines kept are copied to spare, which
// becomes counts: deleting them in place would leave the map as large as
// it was.
func (c *cursor) pruneCounts(keep identity, oldest time.Time, most int) {
	from := oldest.UnixNano()
	kept := c.spare
	if kept == nil {
		kept = make(map[identity]int, min(len(c.counts), most))
	}
	clear(kept)
	kept[keep] = c.counts[keep]
	for id, n := range c.counts {
		if len(kept) >= most {
			break
		}
		if id.ts >= from {
			kept[id] = n
		}
	}
	c.counts, c.spare = kept, c.counts
	c.pruned = c.maxTS
}

// identity is a line's time and the hash of its text: with the number of
// earlier lines that had the same, it finds the line in a resumed stream.
type identity struct {
	ts   int64
	hash uint64
}

// feed consumes one piece of the current stream.
func (c *cursor) feed(p piece) error {
	if p.note {
		if c.aligning {
			return nil
		}
		return c.emit(Line{Container: c.container, Time: p.ts, Text: string(p.text), Note: true})
	}
	if p.start {
		c.inLine, c.lineTS, c.lineBytes, c.skip = true, p.ts, 0, 0
		c.drop, c.hold = false, false
		c.lineHash.Reset()
		if c.aligning {
			switch {
			case p.ts.After(c.pos.ts.Add(resumeSlack)) || c.pendBytes > maxPending:
				if err := c.fallBack(); err != nil {
					return err
				}
			case p.ts.After(c.pos.ts):
				c.hold = true
			default:
				c.drop = true
			}
		}
		if !c.aligning && c.pos.partBytes > 0 {
			if p.ts.Equal(c.pos.partTS) {
				c.skip = c.pos.partBytes
			} else {
				// The line read in part is gone; start afresh.
				c.pos.partBytes = 0
			}
		}
	}
	if !c.inLine {
		// The rest of a line whose start this stream did not have.
		return nil
	}
	_, _ = c.lineHash.Write(p.text)
	c.lineBytes += len(p.text)
	if p.end {
		c.inLine = false
	}
	if c.hold && c.pendBytes > maxPending {
		// A long line: stop looking here rather than hold all of it; the
		// rest of the line is delivered as it comes.
		if err := c.fallBack(); err != nil {
			return err
		}
		c.hold = false
	}
	if c.drop || c.hold {
		if c.hold {
			c.hold = !p.end
			c.pending = append(c.pending, Line{Container: c.container, Time: c.lineTS, Text: string(p.text), Partial: !p.end})
			c.pendBytes += len(p.text) + pendingLineCost
		}
		if p.end && c.lineTS.Equal(c.pos.ts) && c.lineHash.Sum64() == c.pos.hash {
			c.seen++
			if c.seen >= c.pos.dup {
				// Found: what was held back preceded it in the log.
				c.aligning = false
				c.pending, c.pendBytes = nil, 0
			}
		}
		return nil
	}
	text := p.text
	if c.skip > 0 {
		n := min(c.skip, len(text))
		text, c.skip = text[n:], c.skip-n
	}
	c.advance(c.lineTS, c.lineHash.Sum64(), p.end, c.lineBytes)
	if len(text) == 0 && !p.end {
		return nil
	}
	return c.deliver(Line{Container: c.container, Time: c.lineTS, Text: string(text), Partial: !p.end})
}

func (c *cursor) deliver(l Line) error {
	if !c.since.IsZero() && l.Time.Before(c.since) {
		return nil
	}
	return c.emit(l)
}

// splitter cuts a pods/log stream requested with timestamps into pieces
// of at most maxLine bytes of text.
type splitter struct {
	br      *bufio.Reader
	maxLine int
	atStart bool
	ts      time.Time
	rest    []byte // the rest of the last read, still to return
	restEnd bool   // rest ends its line
	err     error
}

// tsRoom is room in the read buffer for a line's timestamp, so that the
// first piece of a long line always holds it whole.
const tsRoom = 64

func newSplitter(r io.Reader, maxLine int) *splitter {
	return &splitter{br: bufio.NewReaderSize(r, maxLine+tsRoom), maxLine: maxLine, atStart: true}
}

// next returns the next piece. It returns io.EOF when the stream ended
// normally, after the unterminated end of its last line if there is one,
// and any other error when the stream was cut; the bytes of a line cut by
// the error are not returned (they will be read again).
func (s *splitter) next() (piece, error) {
	if s.rest != nil {
		return s.cut(s.rest, s.restEnd), nil
	}
	if s.err != nil {
		return piece{}, s.err
	}
	line, err := s.br.ReadSlice('\n')
	switch {
	case err == nil, errors.Is(err, bufio.ErrBufferFull):
	case errors.Is(err, io.EOF):
		s.err = io.EOF
		if len(line) == 0 {
			return piece{}, io.EOF
		}
	default:
		s.err = err
		return piece{}, err
	}
	end := len(line) > 0 && line[len(line)-1] == '\n'
	if end {
		line = line[:len(line)-1]
	}
	if s.atStart {
		if t, text, ok := parseTimestamped(line); ok {
			s.ts, line = t, text
		}
	}
	return s.cut(line, end), nil
}

// cut returns the first maxLine bytes of text as a piece, and keeps the
// rest for the next call.
func (s *splitter) cut(text []byte, end bool) piece {
	p := piece{ts: s.ts, start: s.atStart, end: end, text: text}
	s.rest = nil
	if len(text) > s.maxLine {
		p.text, p.end = text[:s.maxLine], false
		s.rest, s.restEnd = text[s.maxLine:], end
	}
	s.atStart = p.end
	return p
}

// pump feeds a stream to c until it ends. It returns nil when the stream
// ended normally, the stream's error when it was cut, and the error of
// c.emit wrapped in an emitError.
func pump(r io.Reader, c *cursor, maxLine int) (progress bool, err error) {
	s := newSplitter(r, maxLine)
	for {
		p, err := s.next()
		if errors.Is(err, io.EOF) {
			return progress, nil
		}
		if err != nil {
			return progress, err
		}
		progress = true
		if err := c.feed(p); err != nil {
			return progress, &emitError{err}
		}
	}
}

// emitError carries an error of the line consumer, which stops reading.
type emitError struct{ err error }

func (e *emitError) Error() string { return e.err.Error() }
func (e *emitError) Unwrap() error { return e.err }
