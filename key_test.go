package kubexec_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kubexec/kubexec"
)

func TestTaskKeyValidate(t *testing.T) {
	t.Parallel()
	valid := kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "r1", MapIndex: kubexec.NotMapped, Attempt: 1}
	tests := []struct {
		name  string
		edit  func(*kubexec.TaskKey)
		field string // "" when valid
	}{
		{name: "valid", edit: func(*kubexec.TaskKey) {}},
		{name: "empty run is allowed", edit: func(k *kubexec.TaskKey) { k.RunID = "" }},
		{name: "attempt zero", edit: func(k *kubexec.TaskKey) { k.Attempt = 0 }},
		{name: "mapped", edit: func(k *kubexec.TaskKey) { k.MapIndex = 0 }},
		{name: "any unicode", edit: func(k *kubexec.TaskKey) { k.TaskID = "日本 語/\x00 ok" }},
		{name: "empty workflow", edit: func(k *kubexec.TaskKey) { k.WorkflowID = "" }, field: "WorkflowID"},
		{name: "empty task", edit: func(k *kubexec.TaskKey) { k.TaskID = "" }, field: "TaskID"},
		{name: "invalid utf-8 run", edit: func(k *kubexec.TaskKey) { k.RunID = "\xff" }, field: "RunID"},
		{name: "invalid utf-8 task", edit: func(k *kubexec.TaskKey) { k.TaskID = "a\xc3" }, field: "TaskID"},
		{name: "map index below -1", edit: func(k *kubexec.TaskKey) { k.MapIndex = -2 }, field: "MapIndex"},
		{name: "negative attempt", edit: func(k *kubexec.TaskKey) { k.Attempt = -1 }, field: "Attempt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := valid
			tt.edit(&k)
			err := k.Validate()
			if tt.field == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, kubexec.ErrInvalidKey)
			var ke *kubexec.KeyError
			require.ErrorAs(t, err, &ke)
			require.Equal(t, tt.field, ke.Field)
			require.Contains(t, err.Error(), tt.field)
		})
	}
}

func TestTaskKeyString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key  kubexec.TaskKey
		want string
	}{
		{kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "r1", MapIndex: -1, Attempt: 2},
			"workflow=etl task=load run=r1 attempt=2"},
		{kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "", MapIndex: 3, Attempt: 0},
			`workflow=etl task=load run="" map=3 attempt=0`},
		{kubexec.TaskKey{WorkflowID: "my dag", TaskID: "a=b", RunID: "x\ny", MapIndex: -1, Attempt: 1},
			`workflow="my dag" task="a=b" run="x\ny" attempt=1`},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, tt.key.String())
	}
}

func TestTaskKeyLogValue(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: dropTime}))
	log.Info("launched", "key", kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "r1", MapIndex: 4, Attempt: 2})
	require.Equal(t, "level=INFO msg=launched key.workflow=etl key.task=load key.run=r1 key.map=4 key.attempt=2\n", buf.String())
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

func TestTaskKeyJSON(t *testing.T) {
	t.Parallel()
	k := kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "r1", MapIndex: -1, Attempt: 2}
	b, err := json.Marshal(k)
	require.NoError(t, err)
	require.JSONEq(t, `{"workflowID":"etl","taskID":"load","runID":"r1","mapIndex":-1,"attempt":2}`, string(b))
	var back kubexec.TaskKey
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, k, back)
}
