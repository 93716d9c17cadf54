package logs

import (
	"bufio"
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kubexec/kubexec"
	"github.com/stretchr/testify/require"
)

func TestParseTimestamped(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		ok   bool
		when time.Time
		text string
	}{
		{"2026-01-02T03:04:05.123456789Z hello world", true, time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC), "hello world"},
		{"2026-01-02T03:04:05Z ", true, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), ""},
		{"2026-01-02T03:04:05+02:00 x", true, time.Date(2026, 1, 2, 1, 4, 5, 0, time.UTC), "x"},
		{"2026-01-02T03:04:05Z", false, time.Time{}, ""},
		{"hello world", false, time.Time{}, ""},
		{" 2026-01-02T03:04:05Z x", false, time.Time{}, ""},
		{"", false, time.Time{}, ""},
	} {
		when, text, ok := parseTimestamped([]byte(tc.in))
		require.Equal(t, tc.ok, ok, tc.in)
		if ok {
			require.True(t, tc.when.Equal(when), tc.in)
			require.Equal(t, tc.text, string(text), tc.in)
		}
	}
}

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	when := time.Date(2026, 1, 2, 3, 4, 5, 60, time.UTC)
	for _, l := range []Line{
		{Container: "base", Time: when, Text: "a line"},
		{Container: "base", Time: when, Text: ""},
		{Container: "base", Time: when, Text: "  spaces  and\ttabs ", Partial: true},
		{Container: "side-car", Time: when, Text: "[kubexec] note", Note: true},
		{Time: when, Text: "a note about the pod", Note: true},
	} {
		rec := appendRecord(nil, l)
		require.Equal(t, byte('\n'), rec[len(rec)-1])
		got, err := parseRecord(rec[:len(rec)-1])
		require.NoError(t, err)
		require.Equal(t, l, got)
	}
	// A note's newlines are flattened so that it stays one record.
	rec := appendRecord(nil, Line{Container: "c", Time: when, Text: "two\nlines", Note: true})
	require.Equal(t, 1, bytes.Count(rec, []byte{'\n'}))
}

func TestParseRecordRejectsGarbage(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"", "x", "2026-01-02T03:04:05Z", "2026-01-02T03:04:05Z base", "2026-01-02T03:04:05Z base X text",
		"2026-01-02T03:04:05Z base Ftext", "yesterday base F text", "2026-01-02T03:04:05Z  F text",
	} {
		_, err := parseRecord([]byte(in))
		require.ErrorIs(t, err, ErrCorruptArchive, "%q", in)
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	t.Parallel()
	key := kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "r 1", MapIndex: 3, Attempt: 2}
	h := archiveHeader{Key: key, Namespace: "ns", Pod: "p", ArchivedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Containers: []string{"init", "base"}, Default: "base"}
	b, err := appendHeader(nil, h)
	require.NoError(t, err)
	got, err := readHeader(bufio.NewReader(bytes.NewReader(b)), key)
	require.NoError(t, err)
	require.Equal(t, h, got)
	_, err = readHeader(bufio.NewReader(bytes.NewReader(b)), kubexec.TaskKey{WorkflowID: "etl", TaskID: "other", MapIndex: -1})
	require.ErrorIs(t, err, ErrCorruptArchive)
	_, err = readHeader(bufio.NewReader(strings.NewReader("not a header\n")), key)
	require.ErrorIs(t, err, ErrCorruptArchive)
}

func TestFileSink(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sink, err := NewFileSink(t.TempDir())
	require.NoError(t, err)
	key := kubexec.TaskKey{WorkflowID: "w", TaskID: "t", MapIndex: kubexec.NotMapped, Attempt: 1}
	_, err = sink.Open(ctx, key)
	require.ErrorIs(t, err, ErrNotArchived)

	w, err := sink.Create(ctx, key)
	require.NoError(t, err)
	_, err = w.Write([]byte("first"))
	require.NoError(t, err)
	require.NoError(t, w.Commit())
	require.Error(t, w.Commit(), "a second commit")

	// A new archive is invisible until committed, and an aborted one
	// leaves the old one.
	w, err = sink.Create(ctx, key)
	require.NoError(t, err)
	_, err = w.Write([]byte("second"))
	require.NoError(t, err)
	require.Equal(t, "first", readSink(t, sink, key))
	require.NoError(t, w.Abort())
	require.Equal(t, "first", readSink(t, sink, key))

	w, err = sink.Create(ctx, key)
	require.NoError(t, err)
	_, err = w.Write([]byte("third"))
	require.NoError(t, err)
	require.NoError(t, w.Commit())
	require.Equal(t, "third", readSink(t, sink, key))

	// Another attempt of the same task is another archive.
	other := key
	other.Attempt = 2
	_, err = sink.Open(ctx, other)
	require.ErrorIs(t, err, ErrNotArchived)
}

func readSink(t *testing.T, sink LogSink, key kubexec.TaskKey) string {
	t.Helper()
	rc, err := sink.Open(context.Background(), key)
	require.NoError(t, err)
	defer rc.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(rc)
	require.NoError(t, err)
	return b.String()
}

func TestConfigAndOptionsValidation(t *testing.T) {
	t.Parallel()
	require.NoError(t, Config{}.withDefaults().validate())
	small := Config{MaxArchiveBytes: 1000}.withDefaults()
	require.Equal(t, int64(500), small.ArchiveTailBytes)
	require.ErrorContains(t, Config{MaxArchiveBytes: 100, ArchiveTailBytes: 100}.withDefaults().validate(), "ArchiveTailBytes")
	require.ErrorIs(t, Config{MaxArchiveBytes: 100, ArchiveTailBytes: 100}.withDefaults().validate(), kubexec.ErrInvalidConfig)
	require.ErrorContains(t, Config{MaxLineBytes: 10}.withDefaults().validate(), "MaxLineBytes")
	require.ErrorIs(t, Options{TailLines: -1}.validate(), ErrInvalidOptions)
	require.ErrorIs(t, Options{AllContainers: true, Container: "x"}.validate(), ErrInvalidOptions)
}
