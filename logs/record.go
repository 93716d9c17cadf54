package logs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kubexec/kubexec"
)

// Line is one line of a container's log, or a piece of one.
type Line struct {
	// Container is the container that wrote the line.
	Container string
	// Time is when the container runtime received the line.
	Time time.Time
	// Text is the line without its newline.
	Text string
	// Partial says the line does not end here: a line longer than
	// Config.MaxLineBytes comes in several pieces, all but the last Partial,
	// and a log that ends without a newline ends with a Partial line.
	Partial bool
	// Note marks a line written by kubexec rather than by the container:
	// where an archive was truncated, or why a container's logs could not
	// be archived.
	Note bool
}

// parseTimestamped splits a line of pods/log output requested with
// timestamps=true ("2026-01-02T03:04:05.123456789Z text") into its time
// and text. ok is false when the line does not start with an RFC 3339
// time followed by a space.
func parseTimestamped(line []byte) (t time.Time, text []byte, ok bool) {
	// The longest RFC 3339 time with nanoseconds and a numeric zone is 35
	// bytes; look no further for the separator.
	head := line[:min(len(line), 40)]
	i := bytes.IndexByte(head, ' ')
	if i <= 0 {
		return time.Time{}, nil, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(line[:i]))
	if err != nil {
		return time.Time{}, nil, false
	}
	return t, line[i+1:], true
}

// The archive format, version 1, is text: a header line, then one record
// per line.
//
//	kubexec-logs v1 {"key":{...},"namespace":"ns","pod":"name","archivedAt":"..."}
//	2026-01-02T03:04:05.123456789Z base F a complete line
//	2026-01-02T03:04:05.2Z base P the first piece of a long line
//	2026-01-02T03:04:05.2Z base F and its last piece
//	2026-01-02T03:04:06Z base ! a note from kubexec
//
// A record is the time (RFC 3339, UTC, nanoseconds), the container name,
// the kind (F: a line or the last piece of one, P: a piece followed by
// more of the same line, or the unterminated end of a log, !: a note),
// and the text up to the newline. A note about the whole pod has "-" for
// its container. Container names are DNS labels and
// times contain no spaces, so the fields split on the first three spaces.
const archiveMagic = "kubexec-logs v1 "

// archiveHeader is the first line of an archive.
type archiveHeader struct {
	Key        kubexec.TaskKey `json:"key"`
	Namespace  string          `json:"namespace,omitempty"`
	Pod        string          `json:"pod,omitempty"`
	ArchivedAt time.Time       `json:"archivedAt,omitzero"`
	// Containers lists the pod's containers, init containers first.
	Containers []string `json:"containers,omitempty"`
	// Default is the container read when none is named.
	Default string `json:"default,omitempty"`
}

func appendHeader(dst []byte, h archiveHeader) ([]byte, error) {
	b, err := json.Marshal(h)
	if err != nil {
		return dst, err
	}
	dst = append(dst, archiveMagic...)
	dst = append(dst, b...)
	return append(dst, '\n'), nil
}

func parseHeader(line []byte) (archiveHeader, error) {
	rest, ok := bytes.CutPrefix(line, []byte(archiveMagic))
	if !ok {
		return archiveHeader{}, fmt.Errorf("%w: the first line is not a kubexec-logs v1 header", ErrCorruptArchive)
	}
	var h archiveHeader
	if err := json.Unmarshal(rest, &h); err != nil {
		return archiveHeader{}, fmt.Errorf("%w: header: %w", ErrCorruptArchive, err)
	}
	return h, nil
}

// noContainer stands for the container of a note about the whole pod; no
// container name (a DNS label) can be "-".
const noContainer = '-'

const (
	kindFull    = 'F'
	kindPartial = 'P'
	kindNote    = '!'
)

// appendRecord appends l as one archive record. Newlines in l.Text (which
// only a note could hold) become spaces, so that a record stays one line.
func appendRecord(dst []byte, l Line) []byte {
	dst = l.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, ' ')
	if l.Container == "" {
		dst = append(dst, noContainer)
	} else {
		dst = append(dst, l.Container...)
	}
	dst = append(dst, ' ')
	switch {
	case l.Note:
		dst = append(dst, kindNote)
	case l.Partial:
		dst = append(dst, kindPartial)
	default:
		dst = append(dst, kindFull)
	}
	dst = append(dst, ' ')
	start := len(dst)
	dst = append(dst, l.Text...)
	for i := start; i < len(dst); i++ {
		if dst[i] == '\n' {
			dst[i] = ' '
		}
	}
	return append(dst, '\n')
}

// parseRecord decodes one archive record (without its newline).
func parseRecord(line []byte) (Line, error) {
	ts, container, kind, text, err := cutRecord(line)
	if err != nil {
		return Line{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return Line{}, fmt.Errorf("%w: record %.40q: %w", ErrCorruptArchive, line, err)
	}
	l := Line{Time: t, Text: string(text)}
	if string(container) != string(noContainer) {
		l.Container = string(container)
	}
	switch kind {
	case kindFull:
	case kindPartial:
		l.Partial = true
	case kindNote:
		l.Note = true
	default:
		return Line{}, fmt.Errorf("%w: record %.40q has unknown kind %q", ErrCorruptArchive, line, kind)
	}
	return l, nil
}

// cutRecord splits one archive record (without its newline) into its
// fields, unchecked but for their separators.
func cutRecord(line []byte) (ts, container []byte, kind byte, text []byte, err error) {
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return nil, nil, 0, nil, fmt.Errorf("%w: record %.40q has no container", ErrCorruptArchive, line)
	}
	container, rest, ok = bytes.Cut(rest, []byte{' '})
	if !ok || len(container) == 0 {
		return nil, nil, 0, nil, fmt.Errorf("%w: record %.40q has no kind", ErrCorruptArchive, line)
	}
	if len(rest) < 2 || rest[1] != ' ' {
		return nil, nil, 0, nil, fmt.Errorf("%w: record %.40q has no text separator", ErrCorruptArchive, line)
	}
	return ts, container, rest[0], rest[2:], nil
}
