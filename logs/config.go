package logs

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubexec/kubexec"
)

var (
	// ErrNotFound is returned when an attempt has neither a pod nor an
	// archive: it never ran, or its logs were never archived.
	ErrNotFound = errors.New("logs: the attempt has no pod and no archived logs")
	// ErrNotArchived is returned by LogSink.Open (wrapped) when a sink holds
	// no archive for a key.
	ErrNotArchived = errors.New("logs: no archive for the attempt")
	// ErrNotStarted is returned when the logs of a container that has not
	// started are read without Options.Follow.
	ErrNotStarted = errors.New("logs: the container has not started")
	// ErrUnknownContainer is returned when Options.Container names a
	// container that the pod (or its archive) does not have.
	ErrUnknownContainer = errors.New("logs: no such container")
	// ErrCorruptArchive is wrapped by the errors about an archive that
	// cannot be decoded or belongs to another attempt.
	ErrCorruptArchive = errors.New("logs: corrupt archive")
	// ErrInvalidOptions is wrapped by the errors about invalid Options.
	ErrInvalidOptions = errors.New("logs: invalid options")
)

// Config configures a Service. The zero Config is valid.
type Config struct {
	// Namespace is where an attempt's pod is looked for when
	// Options.Namespace is empty. Default "default".
	Namespace string
	// MaxArchiveBytes caps the size of one attempt's archive as its
	// LogSink receives it. Every byte counts: the archive's header (one
	// line naming the attempt, its pod and its containers) and each log
	// line's whole record, its text and container name and at most 35
	// bytes more for its time, kind, separators and newline (for a
	// container named "base", 39 bytes and the text). An attempt whose
	// records take more keeps the start of its log and its end
	// (ArchiveTailBytes), with a note between them that says how many
	// bytes and lines of the log were left out; the note's record, at
	// most 320 bytes, counts too. Only a cap too small for the header and
	// that note is exceeded, by a truncated archive that holds just those
	// two. Default 10 MiB.
	MaxArchiveBytes int64
	// ArchiveTailBytes is the part of MaxArchiveBytes kept for the end of
	// a truncated log, where the error that ended it usually is, counted
	// as MaxArchiveBytes is. It holds the note that says what was left
	// out, and the last records in what the note leaves (nothing when it
	// is under 320 bytes). It also bounds the memory that archiving takes:
	// until a log ends, archiving holds its records that may be kept as
	// its end, at most ArchiveTailBytes or 320 bytes, whichever is more,
	// and never more than MaxArchiveBytes. It must be less than
	// MaxArchiveBytes. Default 1 MiB, or half of MaxArchiveBytes when that
	// is 2 MiB or less.
	ArchiveTailBytes int64
	// MaxLineBytes is the longest Line.Text; longer lines come in pieces
	// (Line.Partial). Default 64 KiB.
	MaxLineBytes int
	// RetryTimeout is how long a log stream keeps reconnecting after an
	// error without receiving anything before it gives up with that error.
	// Default 2m.
	RetryTimeout time.Duration
	// GiveUpAfter is how long after its pod ended an attempt's logs may
	// stay unreadable (an API server or node error) before Archive stops
	// returning an error and archives a note in their place, so that a
	// dead node does not hold the pod forever. Default 10m.
	GiveUpAfter time.Duration
	// PollInterval is how often a followed container that has not started
	// yet is checked. Default 1s.
	PollInterval time.Duration
	// Logger receives what the Service retries and gives up on.
	// Default: discarded.
	Logger *slog.Logger
}

const (
	defaultNamespace        = corev1.NamespaceDefault
	defaultMaxArchiveBytes  = 10 << 20
	defaultArchiveTailBytes = 1 << 20
	defaultMaxLineBytes     = 64 << 10
	minMaxLineBytes         = 256
)

func (c Config) withDefaults() Config {
	if c.Namespace == "" {
		c.Namespace = defaultNamespace
	}
	if c.MaxArchiveBytes == 0 {
		c.MaxArchiveBytes = defaultMaxArchiveBytes
	}
	if c.ArchiveTailBytes == 0 {
		c.ArchiveTailBytes = defaultArchiveTailBytes
		if c.MaxArchiveBytes <= 2*defaultArchiveTailBytes {
			c.ArchiveTailBytes = c.MaxArchiveBytes / 2
		}
	}
	if c.MaxLineBytes == 0 {
		c.MaxLineBytes = defaultMaxLineBytes
	}
	if c.RetryTimeout == 0 {
		c.RetryTimeout = 2 * time.Minute
	}
	if c.GiveUpAfter == 0 {
		c.GiveUpAfter = 10 * time.Minute
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.MaxArchiveBytes < 2:
		return fmt.Errorf("%w: Config.MaxArchiveBytes is %d; use at least 2 (default 10 MiB)", kubexec.ErrInvalidConfig, c.MaxArchiveBytes)
	case c.ArchiveTailBytes <= 0 || c.ArchiveTailBytes >= c.MaxArchiveBytes:
		return fmt.Errorf("%w: Config.ArchiveTailBytes is %d; use more than 0 and less than MaxArchiveBytes (%d)", kubexec.ErrInvalidConfig, c.ArchiveTailBytes, c.MaxArchiveBytes)
	case c.MaxLineBytes < minMaxLineBytes:
		return fmt.Errorf("%w: Config.MaxLineBytes is %d; use at least %d", kubexec.ErrInvalidConfig, c.MaxLineBytes, minMaxLineBytes)
	case c.RetryTimeout < 0:
		return fmt.Errorf("%w: Config.RetryTimeout is %s; use a positive duration", kubexec.ErrInvalidConfig, c.RetryTimeout)
	case c.GiveUpAfter < 0:
		return fmt.Errorf("%w: Config.GiveUpAfter is %s; use a positive duration", kubexec.ErrInvalidConfig, c.GiveUpAfter)
	case c.PollInterval < 0:
		return fmt.Errorf("%w: Config.PollInterval is %s; use a positive duration", kubexec.ErrInvalidConfig, c.PollInterval)
	}
	return nil
}

// Options selects the logs that Service.Lines and Service.Copy return.
// The zero Options reads the whole log of the pod's default container
// once.
type Options struct {
	// Namespace is the namespace of the attempt's pod. Default
	// Config.Namespace. The archive is found by the key alone; the live
	// pod only in this namespace.
	Namespace string
	// Container names the container to read. Default: the pod's default
	// container (kubectl's default-container annotation, which
	// podtemplate sets to the main container), else its first container.
	Container string
	// AllContainers reads every container of the pod, init containers
	// first. Without Follow the containers are read one after the other;
	// with Follow they are read at once, and their lines interleave as
	// they arrive. It cannot be combined with Container.
	AllContainers bool
	// Follow keeps reading until the containers end, waiting for those
	// that have not started. A dropped connection is resumed where it
	// stopped.
	Follow bool
	// TailLines, when positive, starts each container's log at its last
	// TailLines lines. Default 0: the whole log.
	TailLines int
	// Since, when set, skips lines written before it.
	Since time.Time
	// Timestamps makes Copy start each line with its time (RFC 3339 with
	// nanoseconds). Lines always carry it in Line.Time.
	Timestamps bool
	// Previous reads the previous run of a container that restarted. Only
	// the live pod has it; archives keep the last run.
	Previous bool
}

func (o Options) validate() error {
	switch {
	case o.TailLines < 0:
		return fmt.Errorf("%w: TailLines is %d; use 0 for the whole log or a positive count", ErrInvalidOptions, o.TailLines)
	case o.AllContainers && o.Container != "":
		return fmt.Errorf("%w: Container %q and AllContainers both set; use one", ErrInvalidOptions, o.Container)
	}
	return nil
}
