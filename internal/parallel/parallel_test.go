package parallel

import (
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDoCallsEachIndexOnce(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[int]int{}
	require.NoError(t, Do(100, 7, func(i int) error {
		mu.Lock()
		seen[i]++
		mu.Unlock()
		return nil
	}))
	require.Len(t, seen, 100)
	for i, n := range seen {
		require.Equal(t, 1, n, "index %d", i)
	}
}

func TestDoReturnsAnError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	err := Do(50, 4, func(i int) error {
		if i == 10 {
			return boom
		}
		return nil
	})
	require.ErrorIs(t, err, boom)
	require.NoError(t, Do(0, 4, func(int) error { return boom }))
}
