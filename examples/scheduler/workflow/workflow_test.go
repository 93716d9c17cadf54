package workflow_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kubexec/kubexec/examples/scheduler/workflow"
)

func TestParseValid(t *testing.T) {
	t.Parallel()
	w, err := workflow.Parse("wf.yaml", []byte(`
workflow: etl
defaults:
  image: busybox:1.36
  retries: 2
  retryDelay: 1s
secrets:
- name: creds
  stringData: {TOKEN: abc}
tasks:
- id: extract
  command: [sh, -c, "echo hi"]
- id: load
  dependsOn: [extract]
  image: python:3.13
  env: {B: "2", A: "1"}
  resources: {requests: {cpu: 100m}, limits: {memory: 64Mi}}
  timeout: 30s
  retries: 0
  podOverride:
    spec:
      containers:
      - name: base
        envFrom: [{secretRef: {name: creds}}]
`))
	require.NoError(t, err)
	require.Equal(t, "etl", w.ID)
	require.Len(t, w.Tasks, 2)
	extract, load := w.Task("extract"), w.Task("load")
	require.Equal(t, "busybox:1.36", extract.Image)
	require.Equal(t, 2, extract.Retries)
	require.Equal(t, time.Second, extract.RetryDelay)
	require.Equal(t, workflow.DefaultMaxSystemRetries, extract.MaxSystemRetries)
	require.Equal(t, "python:3.13", load.Image)
	require.Equal(t, 0, load.Retries)
	require.Equal(t, 30*time.Second, load.Timeout)
	require.Equal(t, "A", load.Env[0].Name, "env is sorted by name")
	require.Equal(t, "100m", load.Requests["cpu"])
	require.False(t, load.Override.IsZero())
	require.Equal(t, []string{"load"}, w.Downstream("extract"))
	require.Equal(t, []workflow.Secret{{Name: "creds", StringData: map[string]string{"TOKEN": "abc"}}}, w.Secrets)
}

func TestParseXComInputs(t *testing.T) {
	t.Parallel()
	w, err := workflow.Parse("wf.yaml", []byte(`
workflow: etl
defaults: {image: busybox:1.36}
tasks:
- id: count
- id: other
- id: report
  dependsOn: [count, other]
  xcomInputs: {ROWS: count}
`))
	require.NoError(t, err)
	require.Equal(t, map[string]string{"ROWS": "count"}, w.Task("report").XComInputs)
	require.True(t, w.XComRead("count"))
	require.False(t, w.XComRead("other"))
	require.False(t, w.XComRead("report"))
}

func TestSampleWorkflowParses(t *testing.T) {
	t.Parallel()
	w, err := workflow.Load(filepath.Join("..", "workflows", "sample.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, w.Tasks)
	require.Len(t, w.Order(), len(w.Tasks))
}

// Every problem names the file, the line, the task and the field.
func TestParseErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		yaml string
		want []string // each is the exact text of one problem
	}{{
		name: "malformed YAML",
		yaml: "workflow: etl\ntasks:\n- id: a\n  command: [sh, -c\n",
		want: []string{"wf.yaml:4: YAML syntax error: did not find expected ',' or ']'"},
	}, {
		name: "not a mapping",
		yaml: "- just\n- a list\n",
		want: []string{"wf.yaml:1: cannot unmarshal !!seq into workflow.rawDoc"},
	}, {
		name: "empty file",
		yaml: "",
		want: []string{"wf.yaml: is empty: write a mapping with workflow: and tasks:"},
	}, {
		name: "unknown task field",
		yaml: "workflow: etl\ntasks:\n- id: a\n  imgae: busybox\n",
		want: []string{"wf.yaml:4: field imgae is not a task field (fields: id, image, command, args, env, resources, dependsOn, retries, retryDelay, timeout, maxSystemRetries, xcomInputs, podOverride)"},
	}, {
		name: "wrong type",
		yaml: "workflow: etl\ntasks:\n- id: a\n  image: busybox\n  retries: many\n",
		want: []string{"wf.yaml:5: cannot unmarshal !!str `many` into int"},
	}, {
		name: "missing workflow id and tasks",
		yaml: "description: nothing\n",
		want: []string{
			"wf.yaml:1: workflow: is required: name the workflow, e.g. workflow: etl",
			"wf.yaml:1: tasks: is empty: a workflow needs at least one task",
		},
	}, {
		name: "cycle",
		yaml: "workflow: etl\ndefaults: {image: busybox}\ntasks:\n- id: a\n  dependsOn: [c]\n- id: b\n  dependsOn: [a]\n- id: c\n  dependsOn: [b]\n",
		want: []string{`wf.yaml:4: task "a": dependsOn: dependency cycle: a -> c -> b -> a: a workflow must be acyclic`},
	}, {
		name: "self dependency",
		yaml: "workflow: etl\ndefaults: {image: busybox}\ntasks:\n- id: a\n  dependsOn: [a]\n",
		want: []string{`wf.yaml:5: task "a": dependsOn[0]: the task depends on itself`},
	}, {
		name: "unknown dependency",
		yaml: "workflow: etl\ndefaults: {image: busybox}\ntasks:\n- id: extract\n- id: load\n  dependsOn: [extract, extrct]\n",
		want: []string{`wf.yaml:6: task "load": dependsOn[1]: unknown task "extrct" (did you mean "extract"?)`},
	}, {
		name: "unknown dependency, nothing close",
		yaml: "workflow: etl\ndefaults: {image: busybox}\ntasks:\n- id: extract\n- id: load\n  dependsOn:\n  - report\n",
		want: []string{`wf.yaml:7: task "load": dependsOn[0]: unknown task "report" (tasks are: extract, load)`},
	}, {
		name: "invalid image name",
		yaml: "workflow: etl\ntasks:\n- id: a\n  image: Busybox:latest\n",
		want: []string{`wf.yaml:4: task "a": image: "Busybox:latest" is not a valid image reference (invalid reference format: repository name (library/Busybox) must be lowercase): write e.g. busybox:1.36 or registry.example.com/team/app@sha256:...`},
	}, {
		name: "missing image",
		yaml: "workflow: etl\ntasks:\n- id: a\n  command: [true]\n",
		want: []string{`wf.yaml:3: task "a": image: is required: set image here or in defaults.image`},
	}, {
		name: "duplicate task and bad ids",
		yaml: "workflow: my/etl\ndefaults: {image: busybox}\ntasks:\n- id: a\n- id: a\n- id: b/c\n- command: [x]\n",
		want: []string{
			`wf.yaml:1: workflow: "my/etl" is not a valid id: use letters, digits, '_', '.' and '-', starting with a letter or digit, at most 200 characters`,
			`wf.yaml:5: task "a": id: is used twice (first at line 4): task ids must be unique`,
			`wf.yaml:6: task "b/c": id: is not a valid id: use letters, digits, '_', '.' and '-', starting with a letter or digit, at most 200 characters`,
			`wf.yaml:7: task "#4": id: is required: give every task an id`,
		},
	}, {
		name: "bad values",
		yaml: "workflow: etl\ndefaults: {image: busybox}\ntasks:\n- id: a\n  retries: -1\n  retryDelay: soon\n  timeout: 10ms\n  env: {1BAD: x}\n  resources: {limits: {memory: lots}}\n",
		want: []string{
			`wf.yaml:8: task "a": env.1BAD: a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')`,
			`wf.yaml:9: task "a": resources.limits.memory: "lots" is not a quantity: write e.g. 500m, 2, 128Mi or 1Gi`,
			`wf.yaml:5: task "a": retries: is -1: use 0 to 100`,
			`wf.yaml:6: task "a": retryDelay: "soon" is not a duration: write e.g. 30s, 5m or 1h30m`,
			`wf.yaml:7: task "a": timeout: 10ms is shorter than a second: the pod's deadline counts whole seconds`,
		},
	}, {
		name: "timeout longer than a pod's deadline may be",
		yaml: "workflow: etl\ndefaults: {image: busybox}\ntasks:\n- id: a\n  timeout: 600000h\n",
		want: []string{
			`wf.yaml:5: task "a": timeout: 600000h0m0s is longer than a pod's deadline may be, 596523h14m7s (about 68 years)`,
		},
	}, {
		name: "override with an unknown field",
		yaml: "workflow: etl\ndefaults: {image: busybox}\ntasks:\n- id: a\n  podOverride:\n    spec:\n      containerz: []\n",
		want: []string{`wf.yaml:6: task "a": podOverride: strict decoding error: unknown field "spec.containerz"`},
	}, {
		name: "secret problems",
		yaml: "workflow: etl\ndefaults: {image: busybox}\nsecrets:\n- name: Bad_Name\n  stringData: {}\ntasks:\n- id: a\n",
		want: []string{
			`wf.yaml:4: secrets[0].name: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
			`wf.yaml:4: secrets[0].stringData: is empty: give the secret at least one key`,
		},
	}, {
		name: "xcom inputs",
		yaml: "workflow: etl\ndefaults: {image: busybox}\ntasks:\n- id: a\n- id: c\n- id: b\n  dependsOn: [a]\n  env: {ROWS: '1'}\n  xcomInputs:\n    ROWS: a\n    FROM_C: c\n    KUBEXEC_RUN: a\n    1X: a\n",
		want: []string{
			`wf.yaml:13: task "b": xcomInputs.1X: a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')`,
			`wf.yaml:11: task "b": xcomInputs.FROM_C: task "c" is not in dependsOn: a task can only read the XCom of a task it depends on`,
			`wf.yaml:12: task "b": xcomInputs.KUBEXEC_RUN: names starting with KUBEXEC_ are the scheduler's: choose another name`,
			`wf.yaml:10: task "b": xcomInputs.ROWS: is also set in env: use one or the other`,
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w, err := workflow.Parse("wf.yaml", []byte(tc.yaml))
			require.Error(t, err)
			require.Nil(t, w)
			require.ErrorIs(t, err, workflow.ErrInvalid)
			var ve *workflow.ValidationError
			require.True(t, errors.As(err, &ve), "%T", err)
			var got []string
			for _, p := range ve.Problems {
				got = append(got, p.Error())
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := workflow.Load(filepath.Join(t.TempDir(), "nope.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestOrder(t *testing.T) {
	t.Parallel()
	w, err := workflow.Parse("wf.yaml", []byte("workflow: w\ndefaults: {image: busybox}\ntasks:\n- id: c\n  dependsOn: [b]\n- id: a\n- id: b\n  dependsOn: [a]\n"))
	require.NoError(t, err)
	var ids []string
	for _, t := range w.Order() {
		ids = append(ids, t.ID)
	}
	require.Equal(t, []string{"a", "b", "c"}, ids)
}
