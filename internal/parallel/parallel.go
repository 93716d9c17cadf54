// Package parallel runs a loop body on a fixed number of goroutines, for
// tests and benchmarks that create many objects against the dev cluster.
package parallel

import (
	"sync"
	"sync/atomic"
)

// Do calls fn(i) for i in 0..n-1 from workers goroutines and returns the
// first error; a worker stops at its first error.
func Do(n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}
