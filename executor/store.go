package executor

import (
	"context"
	"sync"

	"github.com/kubexec/kubexec"
)

// StateStore is the host's seam: where the results of attempts are kept. It
// is modelled on database/sql/driver: the executor owns the logic, retries
// and concurrency; the store only stores.
//
// SaveResult is called from the executor's result goroutines (see
// Config.ResultWorkers); calls for different keys can overlap, calls for the
// same key never do. A call that returns an error is retried with backoff
// until it succeeds or the executor stops; the pod keeps its tracking
// finalizer meanwhile, so a result is never lost, even across a crash.
//
// LoadResult is called by Adopt (an attempt with no pod whose result is
// saved is not handed back for a reset) and by a create that found the
// attempt's pod made by another instance (its saved result ends the
// attempt instead of a second run). It may be called from any goroutine,
// concurrently with SaveResult. The conformance suite in executortest
// checks both methods.
type StateStore interface {
	// SaveResult durably records the terminal result of r.Key. It must be
	// idempotent per key: saving a key that is already saved returns nil
	// and keeps the first result. It returns only once the result is
	// durable (a crash after it returns must not lose it).
	SaveResult(ctx context.Context, r kubexec.Result) error
	// LoadResult returns the saved result of key and true, or false when
	// none was saved.
	LoadResult(ctx context.Context, key kubexec.TaskKey) (kubexec.Result, bool, error)
}

// MemoryStore is a StateStore that keeps results in memory. It is NOT
// durable: a restarted process has lost them. It exists for tests and
// examples. It is safe for concurrent use.
type MemoryStore struct {
	mu      sync.Mutex
	results map[kubexec.TaskKey]kubexec.Result
	order   []kubexec.TaskKey
	calls   map[kubexec.TaskKey]int
}

var _ StateStore = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{results: map[kubexec.TaskKey]kubexec.Result{}, calls: map[kubexec.TaskKey]int{}}
}

// SaveResult records r unless a result for r.Key is already saved.
func (s *MemoryStore) SaveResult(ctx context.Context, r kubexec.Result) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[r.Key]++
	if _, ok := s.results[r.Key]; ok {
		return nil
	}
	s.results[r.Key] = r
	s.order = append(s.order, r.Key)
	return nil
}

// LoadResult returns the saved result of key.
func (s *MemoryStore) LoadResult(ctx context.Context, key kubexec.TaskKey) (kubexec.Result, bool, error) {
	if err := ctx.Err(); err != nil {
		return kubexec.Result{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.results[key]
	return r, ok, nil
}

// Results returns the saved results in the order they were first saved.
func (s *MemoryStore) Results() []kubexec.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]kubexec.Result, 0, len(s.order))
	for _, k := range s.order {
		out = append(out, s.results[k])
	}
	return out
}

// Calls returns how many times SaveResult was called for key, including
// idempotent repeats.
func (s *MemoryStore) Calls(key kubexec.TaskKey) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[key]
}
