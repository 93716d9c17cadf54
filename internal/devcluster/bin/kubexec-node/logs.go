package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"
)

// A container's log is one file per run, in the CRI format the kubelet
// reads: one record per line, "<RFC3339Nano time> <stream> <F|P> <text>",
// where P marks a partial line (longer than 16 KiB, or cut by the end of
// the stream) that the next record continues.
const maxLogLine = 16 * 1024

// logFile is the log of one container run.
type logFile struct {
	path string

	mu      sync.Mutex
	f       *os.File
	done    bool
	changed chan struct{} // closed and replaced on every write and at finish
}

func newLogFile(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, err
	}
	return &logFile{path: path, f: f, changed: make(chan struct{})}, nil
}

// pump copies one stream of the container into the file.
func (l *logFile) pump(r io.ReadCloser, stream string) {
	defer r.Close()
	br := bufio.NewReaderSize(r, maxLogLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			full := line[len(line)-1] == '\n'
			if full {
				line = line[:len(line)-1]
			}
			l.write(time.Now(), stream, full, line)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func (l *logFile) write(t time.Time, stream string, full bool, text []byte) {
	tag := " F "
	if !full {
		tag = " P "
	}
	var b bytes.Buffer
	b.Grow(len(text) + 48)
	b.WriteString(t.UTC().Format(time.RFC3339Nano))
	b.WriteByte(' ')
	b.WriteString(stream)
	b.WriteString(tag)
	b.Write(text)
	b.WriteByte('\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		_, _ = l.f.Write(b.Bytes())
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// finish marks the end of the run: readers that follow stop at the end.
func (l *logFile) finish() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return
	}
	l.done = true
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *logFile) state() (done bool, changed <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.done, l.changed
}

// logRecord is one parsed line of a log file.
type logRecord struct {
	time time.Time
	full bool
	text []byte
}

func parseLogRecord(line []byte) (logRecord, bool) {
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return logRecord{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return logRecord{}, false
	}
	_, rest, ok = bytes.Cut(rest, []byte{' '}) // stream
	if !ok {
		return logRecord{}, false
	}
	tag, text, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return logRecord{}, false
	}
	return logRecord{time: t, full: string(tag) == "F", text: text}, true
}

// tailOffset returns the offset of the first of the last n records of the
// file at path (0 for n < 0: the whole file).
func tailOffset(path string, n int) (int64, error) {
	if n < 0 {
		return 0, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return int64(len(data)), nil
	}
	// Only complete records count.
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		return 0, nil
	}
	pos := len(data) - 1 // the last newline
	for count := 0; pos > 0; {
		i := bytes.LastIndexByte(data[:pos], '\n')
		count++
		if count == n {
			return int64(i + 1), nil
		}
		if i < 0 {
			break
		}
		pos = i
	}
	return 0, nil
}

// readLogs writes the log at path to w as the kubelet serves pods/log.
// live is the run's logFile while it may still grow (nil for a finished
// run): with opts.Follow the copy waits for new records until the run ends.
func readLogs(ctx context.Context, path string, live *logFile, opts api.ContainerLogOpts, w io.Writer) error {
	start, err := tailOffset(path, opts.Tail)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return err
	}
	var since time.Time
	switch {
	case opts.SinceSeconds > 0:
		since = time.Now().Add(-time.Duration(opts.SinceSeconds) * time.Second)
	case !opts.SinceTime.IsZero():
		since = opts.SinceTime
	}
	remaining := -1
	if opts.LimitBytes > 0 {
		remaining = opts.LimitBytes
	}
	emit := func(rec logRecord) (bool, error) {
		if !since.IsZero() && rec.time.Before(since) {
			return true, nil
		}
		var b []byte
		if opts.Timestamps {
			b = append(b, rec.time.Format(time.RFC3339Nano)...)
			b = append(b, ' ')
		}
		b = append(b, rec.text...)
		if rec.full {
			b = append(b, '\n')
		}
		if remaining >= 0 && len(b) >= remaining {
			_, err := w.Write(b[:remaining])
			return false, err
		}
		if remaining >= 0 {
			remaining -= len(b)
		}
		_, err := w.Write(b)
		return err == nil, err
	}

	buf := make([]byte, 0, 64*1024)
	chunk := make([]byte, 32*1024)
	for {
		var done bool
		var changed <-chan struct{}
		if live != nil {
			done, changed = live.state()
		}
		// Read everything there is now.
		for {
			n, err := f.Read(chunk)
			buf = append(buf, chunk[:n]...)
			for {
				i := bytes.IndexByte(buf, '\n')
				if i < 0 {
					break
				}
				if rec, ok := parseLogRecord(buf[:i]); ok {
					more, werr := emit(rec)
					if werr != nil || !more {
						return werr
					}
				}
				buf = buf[i+1:]
			}
			if n == 0 || err != nil {
				break
			}
		}
		if live == nil || !opts.Follow || done {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// logTail returns the end of the log at path, at most lines records and
// bytes bytes, for FallbackToLogsOnError.
func logTail(path string, lines, maxBytes int) string {
	var b bytes.Buffer
	_ = readLogs(context.Background(), path, nil, api.ContainerLogOpts{Tail: lines}, &b)
	out := b.Bytes()
	if len(out) > maxBytes {
		out = out[len(out)-maxBytes:]
	}
	return string(out)
}
