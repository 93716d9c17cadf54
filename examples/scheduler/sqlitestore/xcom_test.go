package sqlitestore_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/xcom"
)

func TestXComBackend(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "db")
	s := open(t, path)
	b := s.XCom()
	key := kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "etl-1", MapIndex: kubexec.NotMapped, Attempt: 1}

	ref, err := b.Put(ctx, key, json.RawMessage(`{"rows": 42}`))
	require.NoError(t, err)
	require.Regexp(t, `^sqlite:xcom/\d+$`, ref)
	got, err := b.Get(ctx, ref)
	require.NoError(t, err)
	require.JSONEq(t, `{"rows": 42}`, string(got))

	// The same attempt again: replaced, and the reference still works.
	again, err := b.Put(ctx, key, json.RawMessage(`43`))
	require.NoError(t, err)
	require.Equal(t, ref, again)
	got, err = b.Get(ctx, ref)
	require.NoError(t, err)
	require.Equal(t, `43`, string(got))

	// Another attempt has its own reference.
	key2 := key
	key2.Attempt = 2
	ref2, err := b.Put(ctx, key2, json.RawMessage(`"two"`))
	require.NoError(t, err)
	require.NotEqual(t, ref, ref2)

	// Values outlive the process.
	require.NoError(t, s.Close())
	got, err = open(t, path).XCom().Get(ctx, ref2)
	require.NoError(t, err)
	require.Equal(t, `"two"`, string(got))

	for _, bad := range []string{"sqlite:xcom/999", "sqlite:xcom/x", "sqlite:xcom/-1", "file:x.json", ""} {
		_, err := open(t, path).XCom().Get(ctx, bad)
		require.ErrorIs(t, err, xcom.ErrNotFound, bad)
	}
	_, err = open(t, path).XCom().Put(ctx, key, json.RawMessage(`not json`))
	require.ErrorIs(t, err, xcom.ErrNotJSON)
}

// The executor's result workers put values concurrently.
func TestXComBackendConcurrentPuts(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := open(t, filepath.Join(t.TempDir(), "db")).XCom()
	refs := make([]string, 16)
	var wg sync.WaitGroup
	for i := range refs {
		wg.Go(func() {
			key := kubexec.TaskKey{WorkflowID: "w", TaskID: fmt.Sprintf("t%d", i%4), RunID: "w-1", MapIndex: kubexec.NotMapped, Attempt: 1 + i/4}
			ref, err := b.Put(ctx, key, json.RawMessage(fmt.Sprint(i)))
			require.NoError(t, err)
			refs[i] = ref
		})
	}
	wg.Wait()
	for i, ref := range refs {
		got, err := b.Get(ctx, ref)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprint(i), string(got))
	}
}
