package logs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/internal/apierr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Archive copies the logs of every container of key's pod that started
// (init containers and sidecars included) to the sink, as one archive that
// replaces any earlier archive of key. Call it once the attempt has ended
// and before its pod may be deleted; pod is the attempt's pod as last seen
// (only its namespace and name are used: Archive reads the pod afresh).
//
// Archive is idempotent. It returns nil when the archive was committed,
// and an error when it should be called again later: the API server or
// the node failed, or the sink did. Logs that cannot be read at all (the
// pod or a container is gone, or reads kept failing for
// Config.GiveUpAfter after the pod ended) are replaced by a note in the
// archive, unless an earlier archive of key exists, which is then kept.
func (s *Service) Archive(ctx context.Context, pod *corev1.Pod, key kubexec.TaskKey) error {
	if err := key.Validate(); err != nil {
		return err
	}
	name, err := kubexec.PodName(key)
	if err != nil {
		return err
	}
	t := target{ns: s.cfg.Namespace, name: name, key: key}
	if pod != nil && pod.Namespace != "" {
		t.ns = pod.Namespace
	}
	fresh, err := s.getPod(ctx, t)
	if errors.Is(err, errGone) {
		return s.archiveNote(ctx, t, "[kubexec] the pod was gone before its logs were archived")
	}
	if err != nil {
		return err
	}
	h := archiveHeader{Key: key, Namespace: t.ns, Pod: t.name, ArchivedAt: time.Now().UTC(), Default: defaultContainer(fresh)}
	h.Containers, _ = pickContainers(fresh, Options{AllContainers: true})
	w, err := s.sink.Create(ctx, key)
	if err != nil {
		return fmt.Errorf("logs: archive %s: %w", key, err)
	}
	aw, err := newArchiveWriter(w, h, s.cfg.MaxArchiveBytes, s.cfg.ArchiveTailBytes)
	if err != nil {
		_ = w.Abort()
		return fmt.Errorf("logs: archive %s: %w", key, err)
	}
	incomplete := false
	for _, c := range h.Containers {
		if !started(containerStatus(fresh, c), false) {
			continue
		}
		err := s.readContainer(ctx, t, fresh, c, Options{}, newCursor(c, time.Time{}, aw.add))
		if err == nil {
			continue
		}
		var se *sinkError
		if ctx.Err() != nil || errors.As(err, &se) || !(unavailable(err) || time.Since(podEnded(fresh)) > s.cfg.GiveUpAfter) {
			_ = w.Abort()
			return fmt.Errorf("logs: archive %s: container %s: %w", key, c, err)
		}
		s.cfg.Logger.WarnContext(ctx, "archiving a note in place of unreadable logs", "pod", t.String(), "container", c, "err", err)
		incomplete = true
		if err := aw.add(Line{Container: c, Time: time.Now().UTC(), Note: true,
			Text: fmt.Sprintf("[kubexec] the logs of container %s could not be read when the attempt was archived: %v", c, err)}); err != nil {
			_ = w.Abort()
			return fmt.Errorf("logs: archive %s: %w", key, err)
		}
	}
	if err := aw.finish(); err != nil {
		_ = w.Abort()
		return fmt.Errorf("logs: archive %s: %w", key, err)
	}
	if incomplete && s.archived(ctx, key) {
		// A complete earlier archive is better than this one.
		_ = w.Abort()
		return nil
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("logs: archive %s: %w", key, err)
	}
	return nil
}

// archiveNote commits an archive holding only a note, unless key already
// has an archive.
func (s *Service) archiveNote(ctx context.Context, t target, note string) error {
	if s.archived(ctx, t.key) {
		return nil
	}
	w, err := s.sink.Create(ctx, t.key)
	if err != nil {
		return fmt.Errorf("logs: archive %s: %w", t.key, err)
	}
	h := archiveHeader{Key: t.key, Namespace: t.ns, Pod: t.name, ArchivedAt: time.Now().UTC()}
	aw, err := newArchiveWriter(w, h, s.cfg.MaxArchiveBytes, s.cfg.ArchiveTailBytes)
	if err == nil {
		err = aw.add(Line{Time: h.ArchivedAt, Note: true, Text: note})
	}
	if err == nil {
		err = aw.finish()
	}
	if err == nil {
		err = w.Commit()
	} else {
		_ = w.Abort()
	}
	if err != nil {
		return fmt.Errorf("logs: archive %s: %w", t.key, err)
	}
	return nil
}

// archived reports whether key has an archive that can be read.
func (s *Service) archived(ctx context.Context, key kubexec.TaskKey) bool {
	rc, err := s.sink.Open(ctx, key)
	if err != nil {
		return false
	}
	defer rc.Close()
	_, err = readHeader(bufio.NewReader(rc), key)
	return err == nil
}

// unavailable reports whether err says a container's log cannot be read
// at all, as opposed to not right now.
func unavailable(err error) bool {
	if errors.Is(err, errGone) || errors.Is(err, ErrNotStarted) || errors.Is(err, ErrUnknownContainer) {
		return true
	}
	var status apierrors.APIStatus
	return errors.As(err, &status) && !apierr.Transient(err)
}

// podEnded is when pod's attempt ended, as far as its status says: the
// latest container finish, or its deletion; now when neither is known.
func podEnded(pod *corev1.Pod) time.Time {
	var end time.Time
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, st := range list {
			if t := st.State.Terminated; t != nil && t.FinishedAt.After(end) {
				end = t.FinishedAt.Time
			}
		}
	}
	if d := pod.DeletionTimestamp; d != nil && d.After(end) {
		end = d.Time
	}
	if end.IsZero() {
		return time.Now()
	}
	return end
}

// sinkError is an error of the sink while writing an archive.
type sinkError struct{ err error }

func (e *sinkError) Error() string { return "write to the log sink: " + e.err.Error() }
func (e *sinkError) Unwrap() error { return e.err }

// maxNoteBytes bounds the record of the note that says what a truncated
// archive left out. The cap keeps room for it.
const maxNoteBytes = 320

// archiveWriter writes an archive under a size cap of maxBytes, counted as
// what the sink receives: the header and every record, whole. The head of
// the log goes straight to the sink while it fits in headMax; the records
// after it go to a ring of at most ringCap bytes. When a record does not
// fit in the ring, the oldest ones are left out until it fits with room
// for the note that says what was left out; finish writes that note, then
// the ring. So the archive is never larger than maxBytes, unless maxBytes
// cannot hold the header and the note: a truncated archive then holds just
// those two. The ring is the only part of the log held in memory.
type archiveWriter struct {
	bw      *bufio.Writer
	max     int64 // the cap, for the note
	headMax int64 // bytes of records that go straight to the sink
	head    int64 // bytes of records written to the sink so far
	ringCap int64 // bytes of records the ring holds while nothing was left out
	tailing bool  // a record did not fit in the head: the rest goes to the ring
	ring    byteRing
	omitted struct {
		any          bool
		bytes, lines int64 // of the log: text and newlines, and lines that ended
		container    string
		time         time.Time // of the first record left out
	}
	buf  []byte // the record being added
	peek []byte // the oldest record of the ring, being left out
}

func newArchiveWriter(w io.Writer, h archiveHeader, maxBytes, tailBytes int64) (*archiveWriter, error) {
	a := &archiveWriter{bw: bufio.NewWriterSize(w, 64<<10), max: maxBytes}
	b, err := appendHeader(nil, h)
	if err != nil {
		return nil, err
	}
	if _, err := a.bw.Write(b); err != nil {
		return nil, &sinkError{err}
	}
	if room := maxBytes - int64(len(b)); room > 0 {
		a.ringCap = min(room, max(tailBytes, maxNoteBytes))
		a.headMax = room - a.ringCap
	}
	return a, nil
}

// lineSize is what l is of the log: its text and its newline.
func lineSize(l Line) int64 {
	if l.Partial {
		return int64(len(l.Text))
	}
	return int64(len(l.Text)) + 1
}

// add archives one line.
func (a *archiveWriter) add(l Line) error {
	a.buf = appendRecord(a.buf[:0], l)
	size := int64(len(a.buf))
	if !a.tailing {
		if a.head+size <= a.headMax {
			a.head += size
			if _, err := a.bw.Write(a.buf); err != nil {
				return &sinkError{err}
			}
			return nil
		}
		a.tailing = true
	}
	limit := a.ringCap
	if a.omitted.any || int64(a.ring.n)+size > limit {
		// Truncated: keep room for the note.
		limit -= maxNoteBytes
	}
	for a.ring.n > 0 && int64(a.ring.n)+size > limit {
		a.peek = a.ring.peek(a.peek[:0], a.ring.indexByte('\n')+1)
		a.ring.discard(len(a.peek))
		a.leaveOut(a.peek)
	}
	if size > limit {
		a.leaveOut(a.buf)
		return nil
	}
	a.ring.push(a.buf, int(a.ringCap))
	return nil
}

// leaveOut counts a record that the archive leaves out.
func (a *archiveWriter) leaveOut(rec []byte) {
	ts, container, kind, text, err := cutRecord(rec[:len(rec)-1])
	if err != nil {
		// Not from appendRecord, which makes every record: count it all.
		ts, container, kind, text = nil, nil, kindFull, rec[:len(rec)-1]
	}
	if !a.omitted.any {
		a.omitted.any = true
		a.omitted.time, _ = time.Parse(time.RFC3339Nano, string(ts))
		if string(container) != string(noContainer) {
			a.omitted.container = string(container)
		}
	}
	a.omitted.bytes += int64(len(text))
	if kind != kindPartial {
		a.omitted.bytes++
		a.omitted.lines++
	}
}

// finish writes the truncation note and the kept end of the log, and
// flushes. It does not commit.
func (a *archiveWriter) finish() error {
	if a.omitted.any {
		note := Line{Container: a.omitted.container, Time: a.omitted.time, Note: true,
			Text: fmt.Sprintf("[kubexec] %d bytes in %d lines were left out here: the attempt's logs exceeded the archive's cap of %d bytes (logs.Config.MaxArchiveBytes)",
				a.omitted.bytes, a.omitted.lines, a.max)}
		a.buf = appendRecord(a.buf[:0], note)
		if len(a.buf) > maxNoteBytes {
			// Only a container name longer than a DNS label, or a time
			// past the year 9999, can make it longer.
			note.Container, note.Time = "", time.Time{}
			a.buf = appendRecord(a.buf[:0], note)
		}
		if _, err := a.bw.Write(a.buf); err != nil {
			return &sinkError{err}
		}
	}
	first, second := a.ring.segments()
	for _, b := range [][]byte{first, second} {
		if _, err := a.bw.Write(b); err != nil {
			return &sinkError{err}
		}
	}
	if err := a.bw.Flush(); err != nil {
		return &sinkError{err}
	}
	return nil
}

// byteRing is a queue of bytes in one buffer, which grows as needed up to
// the limit that push is given.
type byteRing struct {
	buf   []byte
	start int // index of the oldest byte
	n     int // bytes held
}

// push appends p. The ring must then hold at most limit bytes.
func (r *byteRing) push(p []byte, limit int) {
	if r.n+len(p) > len(r.buf) {
		buf := make([]byte, min(limit, max(r.n+len(p), 2*len(r.buf), 4<<10)))
		first, second := r.segments()
		copy(buf[copy(buf, first):], second)
		r.buf, r.start = buf, 0
	}
	end := (r.start + r.n) % len(r.buf)
	copy(r.buf, p[copy(r.buf[end:], p):])
	r.n += len(p)
}

// segments returns the bytes held, oldest first, as two slices.
func (r *byteRing) segments() (first, second []byte) {
	if r.start+r.n <= len(r.buf) {
		return r.buf[r.start : r.start+r.n], nil
	}
	return r.buf[r.start:], r.buf[:r.start+r.n-len(r.buf)]
}

// indexByte returns the index of the first c held, or -1.
func (r *byteRing) indexByte(c byte) int {
	first, second := r.segments()
	if i := bytes.IndexByte(first, c); i >= 0 {
		return i
	}
	if i := bytes.IndexByte(second, c); i >= 0 {
		return len(first) + i
	}
	return -1
}

// peek appends the n oldest bytes to dst.
func (r *byteRing) peek(dst []byte, n int) []byte {
	first, second := r.segments()
	if n <= len(first) {
		return append(dst, first[:n]...)
	}
	dst = append(dst, first...)
	return append(dst, second[:n-len(first)]...)
}

// discard drops the n oldest bytes.
func (r *byteRing) discard(n int) {
	r.start = (r.start + n) % len(r.buf)
	r.n -= n
	if r.n == 0 {
		r.start = 0
	}
}

// readHeader reads and checks an archive's header.
func readHeader(br *bufio.Reader, key kubexec.TaskKey) (archiveHeader, error) {
	line, err := br.ReadBytes('\n')
	if err != nil {
		if errors.Is(err, io.EOF) {
			return archiveHeader{}, fmt.Errorf("%w: the archive has no complete header", ErrCorruptArchive)
		}
		return archiveHeader{}, err
	}
	h, err := parseHeader(line[:len(line)-1])
	if err != nil {
		return h, err
	}
	if h.Key != key {
		return h, fmt.Errorf("%w: the archive holds attempt %s, not %s", ErrCorruptArchive, h.Key, key)
	}
	return h, nil
}

// fromArchive serves opts from key's archive. With cur, it continues that
// container's cursor (the pod went away while it was read); without, it
// makes a cursor per container with opts.Since and emit.
func (s *Service) fromArchive(ctx context.Context, key kubexec.TaskKey, opts Options, cur *cursor, emit func(Line) error) error {
	if opts.Previous {
		return fmt.Errorf("%w: the pod of %s is gone, and archives keep only the last run of each container", ErrNotFound, key)
	}
	rc, err := s.sink.Open(ctx, key)
	if errors.Is(err, ErrNotArchived) {
		return fmt.Errorf("%w: %s: %w", ErrNotFound, key, err)
	}
	if err != nil {
		return fmt.Errorf("logs: open the archive of %s: %w", key, err)
	}
	defer func() { _ = rc.Close() }()
	br := bufio.NewReaderSize(rc, 64<<10)
	h, err := readHeader(br, key)
	if err != nil {
		return err
	}

	var want func(string) bool
	switch {
	case opts.AllContainers:
		want = func(string) bool { return true }
	case opts.Container != "":
		if h.Containers != nil && !slices.Contains(h.Containers, opts.Container) {
			return fmt.Errorf("%w: the archived pod of %s had no container %q; it had %q", ErrUnknownContainer, key, opts.Container, h.Containers)
		}
		want = func(c string) bool { return c == opts.Container }
	default:
		want = func(c string) bool { return c == h.Default || c == "" }
	}

	// A tail needs each container's line count: a first pass. A line
	// starts with a record that does not continue a partial one.
	var skip map[string]int
	if opts.TailLines > 0 && (cur == nil || !cur.pos.started) {
		counts := map[string]int{}
		mid := map[string]bool{}
		if err := eachRecord(br, func(l Line) error {
			if want(l.Container) && !l.Note {
				if !mid[l.Container] {
					counts[l.Container]++
				}
				mid[l.Container] = l.Partial
			}
			return nil
		}); err != nil {
			return err
		}
		skip = map[string]int{}
		for c, n := range counts {
			skip[c] = max(0, n-opts.TailLines)
		}
		_ = rc.Close()
		if rc, err = s.sink.Open(ctx, key); err != nil {
			return fmt.Errorf("logs: open the archive of %s: %w", key, err)
		}
		br = bufio.NewReaderSize(rc, 64<<10)
		if _, err := readHeader(br, key); err != nil {
			return err
		}
	}

	cursors := map[string]*cursor{}
	midLine := map[string]bool{}
	if cur != nil {
		cursors[cur.container] = cur
		cur.begin()
	}
	err = eachRecord(br, func(l Line) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !want(l.Container) {
			return nil
		}
		if skip[l.Container] > 0 {
			// Skip the lines before the tail, the last one up to its end.
			if !l.Note && !l.Partial {
				skip[l.Container]--
			}
			return nil
		}
		c := cursors[l.Container]
		if c == nil {
			c = newCursor(l.Container, opts.Since, emit)
			c.begin()
			cursors[l.Container] = c
		}
		p := piece{ts: l.Time, text: []byte(l.Text), note: l.Note}
		if !l.Note {
			p.start, p.end = !midLine[l.Container], !l.Partial
			midLine[l.Container] = l.Partial
		}
		return c.feed(p)
	})
	if err != nil {
		return err
	}
	for _, c := range cursors {
		if err := c.end(true); err != nil {
			return err
		}
	}
	return nil
}

// eachRecord calls fn with each record of an archive after its header.
func eachRecord(br *bufio.Reader, fn func(Line) error) error {
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: the last record is cut short", ErrCorruptArchive)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		l, err := parseRecord(line[:len(line)-1])
		if err != nil {
			return err
		}
		if err := fn(l); err != nil {
			return err
		}
	}
}
