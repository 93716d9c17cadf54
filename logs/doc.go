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
// An archive holds at most Config.MaxArchiveBytes of log lines. An
// attempt that logged more keeps the beginning of its log and its last
// Config.ArchiveTailBytes, where the error that ended it usually is,
// with a note (a Line with Note set) between them that says how many bytes
// and lines were left out. Live reads are not capped.
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
// time (nanoseconds) and text. That is ambiguous in one case only: a
// stream opened with Options.TailLines and cut near the start of its
// window, when a line just before the window has the same time, to the
// nanosecond, and text as one inside it, which takes a coarse clock. Archives keep the last run of
// each container, not earlier ones (Options.Previous reads only live pods).
package logs
