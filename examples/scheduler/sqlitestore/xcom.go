package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/xcom"
)

// XComBackend is an xcom.Backend that keeps attempts' XCom values in the
// store's database, next to their results: the executor's Collector puts a
// value there before the attempt's result (which carries the reference) is
// saved, and the scheduler gets it back to pass it to downstream tasks.
//
// References look like "sqlite:xcom/<id>". Putting a value for the same
// attempt again replaces it and keeps its reference.
type XComBackend struct{ s *Store }

var _ xcom.Backend = (*XComBackend)(nil)

// XCom returns the store's xcom.Backend.
func (s *Store) XCom() *XComBackend { return &XComBackend{s: s} }

const xcomRefPrefix = "sqlite:xcom/"

// Put implements xcom.Backend.
func (b *XComBackend) Put(ctx context.Context, key kubexec.TaskKey, value json.RawMessage) (string, error) {
	if !json.Valid(value) {
		return "", fmt.Errorf("store the XCom value of %s: %w", key, xcom.ErrNotJSON)
	}
	var id int64
	err := b.s.db.QueryRowContext(ctx, `INSERT INTO xcom (workflow, task, run, map_index, attempt, value, saved_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (workflow, task, run, map_index, attempt) DO UPDATE SET value = excluded.value, saved_at = excluded.saved_at
		RETURNING id`,
		key.WorkflowID, key.TaskID, key.RunID, key.MapIndex, key.Attempt, string(value), time.Now().UnixNano()).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("store the XCom value of %s: %w", key, err)
	}
	return xcomRefPrefix + strconv.FormatInt(id, 10), nil
}

// Get implements xcom.Backend.
func (b *XComBackend) Get(ctx context.Context, ref string) (json.RawMessage, error) {
	digits, ok := strings.CutPrefix(ref, xcomRefPrefix)
	id, err := strconv.ParseInt(digits, 10, 64)
	if !ok || err != nil || id <= 0 {
		return nil, fmt.Errorf("%w: %q is not a reference of this database (they look like %s1)", xcom.ErrNotFound, ref, xcomRefPrefix)
	}
	var value string
	err = b.s.db.QueryRowContext(ctx, `SELECT value FROM xcom WHERE id = ?`, id).Scan(&value)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s is not in %s", xcom.ErrNotFound, ref, b.s.path)
	}
	if err != nil {
		return nil, fmt.Errorf("read XCom value %s: %w", ref, err)
	}
	return json.RawMessage(value), nil
}
