package logs

import (
	"bufio"
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

// archiveWriter writes an archive under a size cap: the head of the log
// goes straight to the sink; once the head's budget is spent, lines go to
// a ring that keeps the last tailBytes, written at the end after a note
// that says what was left out.
type archiveWriter struct {
	bw       *bufio.Writer
	headLeft int64
	max      int64
	tailCap  int64
	tailing  bool
	ring     []Line
	ringHead int // index of the oldest line in ring
	ringLen  int
	ringSize int64
	omitted  struct {
		bytes, lines int64
		first        Line
	}
	buf []byte
}

func newArchiveWriter(w io.Writer, h archiveHeader, maxBytes, tailBytes int64) (*archiveWriter, error) {
	a := &archiveWriter{bw: bufio.NewWriterSize(w, 64<<10), headLeft: maxBytes - tailBytes, max: maxBytes, tailCap: tailBytes}
	b, err := appendHeader(nil, h)
	if err != nil {
		return nil, err
	}
	if _, err := a.bw.Write(b); err != nil {
		return nil, &sinkError{err}
	}
	return a, nil
}

func lineSize(l Line) int64 {
	if l.Partial {
		return int64(len(l.Text))
	}
	return int64(len(l.Text)) + 1
}

func (a *archiveWriter) write(l Line) error {
	a.buf = appendRecord(a.buf[:0], l)
	if _, err := a.bw.Write(a.buf); err != nil {
		return &sinkError{err}
	}
	return nil
}

// add archives one line.
func (a *archiveWriter) add(l Line) error {
	size := lineSize(l)
	if !a.tailing && size <= a.headLeft {
		a.headLeft -= size
		return a.write(l)
	}
	a.tailing = true
	if a.ringLen == len(a.ring) {
		a.growRing()
	}
	a.ring[(a.ringHead+a.ringLen)%len(a.ring)] = l
	a.ringLen++
	a.ringSize += size
	for a.ringSize > a.tailCap && a.ringLen > 0 {
		old := a.ring[a.ringHead]
		a.ring[a.ringHead] = Line{}
		a.ringHead = (a.ringHead + 1) % len(a.ring)
		a.ringLen--
		a.ringSize -= lineSize(old)
		if a.omitted.bytes == 0 && a.omitted.lines == 0 {
			a.omitted.first = old
		}
		a.omitted.bytes += lineSize(old)
		if !old.Partial {
			a.omitted.lines++
		}
	}
	return nil
}

func (a *archiveWriter) growRing() {
	n := max(16, 2*len(a.ring))
	ring := make([]Line, n)
	for i := range a.ringLen {
		ring[i] = a.ring[(a.ringHead+i)%len(a.ring)]
	}
	a.ring, a.ringHead = ring, 0
}

// finish writes the truncation note and the kept end of the log, and
// flushes. It does not commit.
func (a *archiveWriter) finish() error {
	if a.omitted.bytes > 0 {
		note := Line{Container: a.omitted.first.Container, Time: a.omitted.first.Time, Note: true,
			Text: fmt.Sprintf("[kubexec] %d bytes in %d lines were left out here: the attempt's logs exceeded the archive's cap of %d bytes (logs.Config.MaxArchiveBytes)",
				a.omitted.bytes, a.omitted.lines, a.max)}
		if err := a.write(note); err != nil {
			return err
		}
	}
	for i := range a.ringLen {
		if err := a.write(a.ring[(a.ringHead+i)%len(a.ring)]); err != nil {
			return err
		}
	}
	if err := a.bw.Flush(); err != nil {
		return &sinkError{err}
	}
	return nil
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
