// Package logs serves the logs of task attempts, from their pods while they
// exist and from an archive afterwards, so that an attempt's logs never
// vanish with its pod (Apache Airflow's "logs 404 once the pod is deleted",
// #29963).
//
// # Lifecycle
//
// A Service, made with New from a Kubernetes client and a LogSink, does
// both halves:
//
//   - Reading: Service.Lines (an iterator) and Service.Copy (kubectl-style
//     text) serve an attempt's logs by its kubexec.TaskKey. While the pod
//     exists they read pods/log: one container or all, follow, tail,
//     since, previous. A stream that drops (the API server restarts, a
//     proxy cuts it) is reopened from a little before the last line read,
//     and the lines already delivered are skipped by their time and text,
//     so none is lost or repeated. Once the pod is gone, the same calls
//     read the archive; a followed pod that disappears continues from the
//     archive where the live stream stopped.
//   - Archiving: Service.Archive, the Archiver that the executor calls when
//     an attempt has ended and before its pod may be deleted (the pod's
//     tracking finalizer keeps it meanwhile, so a crash only means Archive
//     runs again). It copies every container's log, with times, into one
//     archive that replaces any earlier one of the attempt, so archiving
//     twice never duplicates lines.
//
// Services start no goroutines of their own beyond those of a call, which
// end when it returns. A Service is safe for concurrent use.
//
// # Size cap
//
// Config.MaxArchiveBytes caps an archive's size as its LogSink receives
// it. Every byte counts: the header (one line that names the attempt, its
// pod and its containers) and each line's record, which takes the line's
// text and its container's name and at most 35 bytes more for its time,
// kind, separators and newline, so a log of many short lines fills the
// cap with far fewer lines than its size suggests. An attempt whose records take more keeps the beginning
// of its log and its end, where the error that ended it usually is, with
// a note (a Line with Note set) between them that says how many bytes and
// lines of the log were left out. The note and the end share the last
// Config.ArchiveTailBytes; the note's record takes at most 320 bytes. The
// cap is exceeded only when it is too small for the header and the note
// together: a truncated archive then holds just those two. Live reads are
// not capped.
//
// Archiving writes the beginning of a log to the sink as it reads it, and
// holds in memory only the records that may end up as the kept end: at
// most Config.ArchiveTailBytes of them (320 bytes when that is less), and
// never more than MaxArchiveBytes. Besides those, archiving and reading
// take memory of fixed bounds, whatever a container logs: buffers of
// 64 KiB for the sink and a few times Config.MaxLineBytes for the stream
// and its records; the time and a hash of each line of the last few
// seconds, of at most 65,536 lines (in about 7 MiB), to resume a stream
// that is cut; and, while a resumed stream looks for the last line read,
// about 4 MiB of the lines after it, past which it stops looking (and
// says so).
//
// # Sinks
//
// LogSink is the host's storage: Create an archive, write it, Commit (or
// Abort) it, Open it. FileSink keeps each archive as a file in a folder,
// written to a temporary file and renamed into place. kubexec owns the
// archive's format (a header line, then one line per log line with its
// container and time), its cap and when it is written.
//
// # Limits
//
// Lines come in pieces of at most Config.MaxLineBytes (Line.Partial).
// pods/log carries no line numbers, so resuming relies on each line's
// time (nanoseconds) and text. That is ambiguous in two cases, both of
// which take lines with the same time, to the nanosecond, and text, so a
// coarse clock: a stream opened with Options.TailLines and cut near the
// start of its window, when a line just before the window is the same as
// one inside it; and a stream cut in a flood of more than 65,536 lines
// within a second or so, when its last line read is the same as an
// earlier one: resumed, it may repeat some lines (never lose them).
// Archives keep the last run of each container, not earlier ones
// (Options.Previous reads only live pods).
package logs
