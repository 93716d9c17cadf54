package atomicfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWriteFileAndAbort(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "v.json")
	require.NoError(t, WriteFile(path, []byte(`{"a":1}`)))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, `{"a":1}`, string(got))

	// Replacing keeps the old content until the commit.
	w, err := Create(path)
	require.NoError(t, err)
	_, err = w.Write([]byte("new"))
	require.NoError(t, err)
	got, err = os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, `{"a":1}`, string(got), "the file changes only at Commit")
	require.NoError(t, w.Abort())
	require.Error(t, w.Commit(), "a file aborted cannot be committed")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "Abort leaves no temporary file")

	w, err = Create(path)
	require.NoError(t, err)
	_, err = w.Write([]byte("new"))
	require.NoError(t, err)
	require.NoError(t, w.Commit())
	require.Error(t, w.Commit(), "a file is committed once")
	got, err = os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "new", string(got))

	require.Error(t, WriteFile(filepath.Join(dir, "missing", "x"), nil), "a missing folder is an error")
}
