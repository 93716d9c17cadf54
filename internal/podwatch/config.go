package podwatch

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubexec/kubexec"
)

// Config configures a Watcher. ExecutorID is required; every other field
// has a default.
type Config struct {
	// ExecutorID is the id of the executor instance whose pods are
	// watched; see [kubexec.ValidateExecutorID]. Required.
	ExecutorID string
	// Namespaces lists the namespaces to watch, one watch each. Duplicates
	// are ignored. Default: nil, one watch of all namespaces (which needs
	// permission to list and watch pods cluster-wide).
	Namespaces []string
	// Selector selects the pods to watch. Default:
	// kubexec.ActiveSelector(ExecutorID), the executor's pods not marked
	// done.
	Selector labels.Selector
	// WatchTimeout is the server-side timeout (timeoutSeconds) of each
	// watch request, lengthened at random by up to a quarter so that many
	// watchers do not reconnect together. When it ends the watch resumes
	// from the last resourceVersion seen; nothing is relisted. Default: 5m.
	WatchTimeout time.Duration
	// ClientTimeout is how long the client waits past a watch request's
	// server-side timeout before it abandons the request as a dead
	// connection and resumes on a new one. (Over HTTP/2, client-go's
	// connection health checks usually notice a dead connection sooner.)
	// Default: 30s.
	ClientTimeout time.Duration
	// ListTimeout bounds each list request (the first list, and relists
	// after 410 Gone). Default: 5m.
	ListTimeout time.Duration
	// Logger receives the watcher's log records (and client-go's, for this
	// watcher's informers). Default: discard.
	Logger *slog.Logger
	// OnRestart, when set, is called each time a namespace's watch stream
	// broke and is opened again: relist is true when the watcher must
	// list again (410 Gone, or a watch refused), false when it resumes
	// from the last resourceVersion (a broken or silent connection). The
	// routine end of a request at its server-side timeout is not a
	// restart. It is called from the watch's goroutines and must not
	// block. Default: none.
	OnRestart func(namespace string, relist bool)
}

// Defaults of Config.
const (
	DefaultWatchTimeout  = 5 * time.Minute
	DefaultClientTimeout = 30 * time.Second
	DefaultListTimeout   = 5 * time.Minute
)

func (c Config) withDefaults() (Config, error) {
	if c.WatchTimeout == 0 {
		c.WatchTimeout = DefaultWatchTimeout
	}
	if c.ClientTimeout == 0 {
		c.ClientTimeout = DefaultClientTimeout
	}
	if c.ListTimeout == 0 {
		c.ListTimeout = DefaultListTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if len(c.Namespaces) > 0 {
		ns := slices.Clone(c.Namespaces)
		slices.Sort(ns)
		c.Namespaces = slices.Compact(ns)
	}
	if c.Selector == nil {
		sel, err := kubexec.ActiveSelector(c.ExecutorID)
		if err != nil {
			return c, fmt.Errorf("%w: Config.ExecutorID: %w", kubexec.ErrInvalidConfig, err)
		}
		c.Selector = sel
	}
	return c, nil
}

func (c Config) validate() error {
	if err := kubexec.ValidateExecutorID(c.ExecutorID); err != nil {
		return fmt.Errorf("%w: Config.ExecutorID: %w", kubexec.ErrInvalidConfig, err)
	}
	for _, ns := range c.Namespaces {
		if ns == "" {
			return fmt.Errorf("%w: Config.Namespaces holds an empty name; leave Namespaces nil to watch all namespaces", kubexec.ErrInvalidConfig)
		}
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return fmt.Errorf("%w: Config.Namespaces: %q is not a namespace name: %s", kubexec.ErrInvalidConfig, ns, errs[0])
		}
	}
	for name, d := range map[string]time.Duration{"WatchTimeout": c.WatchTimeout, "ClientTimeout": c.ClientTimeout, "ListTimeout": c.ListTimeout} {
		if d < 0 {
			return fmt.Errorf("%w: Config.%s is %s; use a positive duration, or 0 for the default", kubexec.ErrInvalidConfig, name, d)
		}
	}
	if c.WatchTimeout > 0 && c.WatchTimeout < time.Second {
		return fmt.Errorf("%w: Config.WatchTimeout is %s; the server counts it in whole seconds, so use 1s or more", kubexec.ErrInvalidConfig, c.WatchTimeout)
	}
	return nil
}
