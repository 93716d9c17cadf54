// Package workflow reads the example scheduler's workflow files: a DAG of
// tasks, each run as one Kubernetes pod per attempt.
//
// A workflow file is YAML:
//
//	workflow: etl                  # the workflow's id
//	namespace: etl                 # optional; the scheduler's --namespace wins
//	defaults:                      # optional; each task may override them
//	  image: busybox:1.36
//	  retries: 1                   # retries after the task's own failures
//	  retryDelay: 2s               # doubles after each failed try, at most 1h
//	  timeout: 10m                 # the pod's activeDeadlineSeconds
//	  maxSystemRetries: 5          # retries after platform failures
//	secrets:                       # created in the namespace before the run, never replacing another's
//	- name: etl-credentials
//	  stringData: {API_TOKEN: example}
//	tasks:
//	- id: extract
//	  command: [sh, -c, "echo extracting"]
//	- id: load
//	  dependsOn: [extract]
//	  image: python:3.13
//	  command: [python, -m, etl.load]
//	  env: {MODE: full}
//	  resources: {requests: {cpu: 100m}, limits: {memory: 256Mi}}
//	  podOverride:                 # a partial pod, merged as kubectl does
//	    spec:
//	      containers:
//	      - name: base
//	        envFrom: [{secretRef: {name: etl-credentials}}]
//	- id: report
//	  dependsOn: [load]
//	  xcomInputs: {LOADED: load}   # load's XCom value, as JSON text, in $LOADED
//	  command: [sh, -c, 'echo "$LOADED"']
//
// XCom: a task's small result is a value, JSON or text, that it writes to
// the file named by $KUBEXEC_XCOM_PATH (its termination message, at most
// 4095 bytes; a pod override with the annotation xcom.kubexec.io/channel:
// sidecar allows larger values). Text that is not JSON is kept as a JSON
// string; a pod override with the annotation xcom.kubexec.io/format: json
// accepts JSON only. xcomInputs maps an environment variable to a task in
// dependsOn, whose value it receives as JSON text; that task must then
// produce a value, or it fails (XComFailed).
//
// Parse checks everything that can be checked without a cluster, and
// reports every problem it finds at once, each with the file, line, task
// and field (*Error, collected in *ValidationError). Cycles and unknown
// dependencies are found before anything runs.
package workflow

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	yamlv2 "go.yaml.in/yaml/v2"
	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubexec/kubexec/podtemplate"
)

// ErrInvalid is wrapped by every error about a workflow file.
var ErrInvalid = errors.New("invalid workflow")

// ReservedEnvPrefix starts the environment variables that the scheduler and
// kubexec set in every task (KUBEXEC_RUN, KUBEXEC_XCOM_PATH, ...).
const ReservedEnvPrefix = "KUBEXEC_"

// MaxRetryDelay caps the doubling retry delay.
const MaxRetryDelay = time.Hour

// maxTimeout is the longest timeout: a pod's activeDeadlineSeconds is at
// most 2^31-1 seconds.
const maxTimeout = math.MaxInt32 * time.Second

// Default values of the workflow's defaults.
const (
	DefaultRetryDelay       = 5 * time.Second
	DefaultMaxSystemRetries = 5
)

// Workflow is a parsed, valid workflow file.
type Workflow struct {
	// ID is the workflow's id (Airflow's dag_id).
	ID string
	// Description is free text.
	Description string
	// Namespace is where the workflow's pods go, or "" for the scheduler's.
	Namespace string
	// Secrets are created in the namespace before the run. The scheduler
	// replaces only Secrets it created itself for this workflow; it refuses
	// to run rather than replace any other (see the scheduler's README).
	Secrets []Secret
	// Tasks in file order.
	Tasks []*Task
	// Source is the file name the workflow was read from.
	Source string

	byID map[string]*Task
}

// Task is one node of the DAG.
type Task struct {
	ID        string
	Image     string
	Command   []string
	Args      []string
	Env       []corev1.EnvVar // sorted by name
	Requests  map[corev1.ResourceName]string
	Limits    map[corev1.ResourceName]string
	DependsOn []string
	// Retries is how many times the task is tried again after failures of
	// its own code (exit codes); platform failures do not count.
	Retries int
	// RetryDelay is the delay before the first retry; it doubles after
	// each failed try, up to MaxRetryDelay.
	RetryDelay time.Duration
	// MaxSystemRetries bounds the retries after platform failures
	// (Reason.SystemFailure: unschedulable, evicted, deleted, ...), which
	// do not consume Retries.
	MaxSystemRetries int
	// Timeout is the pod's activeDeadlineSeconds (TaskSpec.ActiveDeadline:
	// it wins over the template's, and the podOverride's wins over it);
	// 0 keeps the template's, none by default.
	Timeout time.Duration
	// XComInputs maps an environment variable of the task to the upstream
	// task (one of DependsOn) whose XCom value, as JSON text, it receives.
	XComInputs map[string]string
	// Override is the task's podOverride.
	Override podtemplate.Override
	// Line is the line of the task in its file.
	Line int
}

// Secret is a Secret the workflow declares.
type Secret struct {
	Name       string
	StringData map[string]string
}

// Task returns the task with the given id, or nil.
func (w *Workflow) Task(id string) *Task { return w.byID[id] }

// Downstream returns the ids of the tasks that depend directly on id.
func (w *Workflow) Downstream(id string) []string {
	var out []string
	for _, t := range w.Tasks {
		if slices.Contains(t.DependsOn, id) {
			out = append(out, t.ID)
		}
	}
	return out
}

// XComRead reports whether a task reads id's XCom value (names it in its
// xcomInputs): such a task must produce a value.
func (w *Workflow) XComRead(id string) bool {
	for _, t := range w.Tasks {
		for _, up := range t.XComInputs {
			if up == id {
				return true
			}
		}
	}
	return false
}

// Error is one problem in a workflow file.
type Error struct {
	// File is the workflow file's name.
	File string
	// Line is the 1-based line of the problem, or 0 when unknown.
	Line int
	// Task is the id of the task concerned, or "" for the workflow itself.
	Task string
	// Field is the path of the field concerned, e.g. "dependsOn[1]", or "".
	Field string
	// Problem says what is wrong and how to fix it.
	Problem string
}

// Error formats e as "file:line: task "id": field: problem".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Task != "" {
		fmt.Fprintf(&b, ": task %q", e.Task)
	}
	if e.Field != "" {
		b.WriteString(": " + e.Field)
	}
	b.WriteString(": " + e.Problem)
	return b.String()
}

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// ValidationError lists every problem found in a workflow file.
type ValidationError struct {
	Problems []*Error
}

// Error lists the problems, one a line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	if len(lines) == 1 {
		return lines[0]
	}
	return fmt.Sprintf("%d problems:\n  %s", len(lines), strings.Join(lines, "\n  "))
}

// Unwrap returns the problems.
func (e *ValidationError) Unwrap() []error {
	out := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p
	}
	return out
}

// Load reads and parses a workflow file.
func Load(path string) (*Workflow, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read workflow: %w", err)
	}
	return Parse(path, data)
}

type rawDoc struct {
	Workflow    string      `yaml:"workflow"`
	Description string      `yaml:"description"`
	Namespace   string      `yaml:"namespace"`
	Defaults    rawDefaults `yaml:"defaults"`
	Secrets     []rawSecret `yaml:"secrets"`
	Tasks       []rawTask   `yaml:"tasks"`
}

type rawDefaults struct {
	Image            string `yaml:"image"`
	Retries          *int   `yaml:"retries"`
	RetryDelay       string `yaml:"retryDelay"`
	Timeout          string `yaml:"timeout"`
	MaxSystemRetries *int   `yaml:"maxSystemRetries"`
}

type rawSecret struct {
	Name       string            `yaml:"name"`
	StringData map[string]string `yaml:"stringData"`
}

type rawTask struct {
	ID               string            `yaml:"id"`
	Image            string            `yaml:"image"`
	Command          []string          `yaml:"command"`
	Args             []string          `yaml:"args"`
	Env              map[string]string `yaml:"env"`
	Resources        rawResources      `yaml:"resources"`
	DependsOn        []string          `yaml:"dependsOn"`
	Retries          *int              `yaml:"retries"`
	RetryDelay       string            `yaml:"retryDelay"`
	Timeout          string            `yaml:"timeout"`
	MaxSystemRetries *int              `yaml:"maxSystemRetries"`
	XComInputs       map[string]string `yaml:"xcomInputs"`
	PodOverride      yaml.Node         `yaml:"podOverride"`
}

type rawResources struct {
	Requests map[string]string `yaml:"requests"`
	Limits   map[string]string `yaml:"limits"`
}

// idPattern is what workflow and task ids may hold: they appear in the CLI
// as RUN/TASK, so no "/".
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

const maxIDLength = 200

// Parse parses and validates a workflow file's contents. source names the
// file in errors. Errors are a *ValidationError listing every problem.
func Parse(source string, data []byte) (*Workflow, error) {
	p := &parser{file: source}
	// yaml v2 reports the lines of syntax errors more accurately than v3
	// (whose parser errors can point one line early).
	var syntax any
	if err := yamlv2.Unmarshal(data, &syntax); err != nil && !strings.Contains(err.Error(), "cannot unmarshal") {
		ve := p.yamlError(err).(*ValidationError)
		for _, e := range ve.Problems {
			e.Problem = "YAML syntax error: " + e.Problem
		}
		return nil, ve
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, p.yamlError(err)
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, &ValidationError{Problems: []*Error{{File: source, Problem: "is empty: write a mapping with workflow: and tasks:"}}}
	}
	var doc rawDoc
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, p.yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &ValidationError{Problems: []*Error{{File: source, Line: extra.Line, Problem: "holds a second YAML document: write one workflow per file"}}}
	}
	p.root = root.Content[0]
	w := p.build(&doc)
	if len(p.problems) > 0 {
		return nil, &ValidationError{Problems: p.problems}
	}
	return w, nil
}

type parser struct {
	file     string
	root     *yaml.Node
	problems []*Error
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlError turns a YAML syntax or type error into *ValidationError, one
// problem per line the decoder reported.
func (p *parser) yamlError(err error) error {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var out []*Error
	for _, m := range msgs {
		e := &Error{File: p.file, Problem: m}
		if sub := yamlLine.FindStringSubmatch(m); sub != nil {
			fmt.Sscan(sub[1], &e.Line)
			e.Problem = sub[2]
		}
		e.Problem = strings.Replace(e.Problem, "not found in type workflow.rawTask", "is not a task field (fields: id, image, command, args, env, resources, dependsOn, retries, retryDelay, timeout, maxSystemRetries, xcomInputs, podOverride)", 1)
		e.Problem = strings.Replace(e.Problem, "not found in type workflow.rawDoc", "is not a workflow field (fields: workflow, description, namespace, defaults, secrets, tasks)", 1)
		e.Problem = strings.Replace(e.Problem, "not found in type workflow.rawDefaults", "is not a defaults field (fields: image, retries, retryDelay, timeout, maxSystemRetries)", 1)
		out = append(out, e)
	}
	return &ValidationError{Problems: out}
}

func (p *parser) add(line int, task, field, format string, args ...any) {
	p.problems = append(p.problems, &Error{File: p.file, Line: line, Task: task, Field: field, Problem: fmt.Sprintf(format, args...)})
}

// mapValue returns the value node of key in mapping n, or nil.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// line returns the line of the value at path (keys, or "#i" for sequence
// items) below the document root, or of the deepest node found.
func (p *parser) line(path ...string) int {
	n := p.root
	line := 0
	if n != nil {
		line = n.Line
	}
	for _, k := range path {
		var next *yaml.Node
		if idx, ok := strings.CutPrefix(k, "#"); ok {
			var i int
			fmt.Sscan(idx, &i)
			if n != nil && n.Kind == yaml.SequenceNode && i < len(n.Content) {
				next = n.Content[i]
			}
		} else {
			next = mapValue(n, k)
		}
		if next == nil {
			return line
		}
		n, line = next, next.Line
	}
	return line
}

func (p *parser) duration(s string, line int, task, field string) time.Duration {
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		p.add(line, task, field, "%q is not a duration: write e.g. 30s, 5m or 1h30m", s)
		return 0
	}
	return d
}

func (p *parser) build(doc *rawDoc) *Workflow {
	w := &Workflow{ID: doc.Workflow, Description: doc.Description, Namespace: doc.Namespace, Source: p.file, byID: map[string]*Task{}}
	switch {
	case doc.Workflow == "":
		p.add(p.line(), "", "workflow", "is required: name the workflow, e.g. workflow: etl")
	case len(doc.Workflow) > maxIDLength || !idPattern.MatchString(doc.Workflow):
		p.add(p.line("workflow"), "", "workflow", "%q is not a valid id: use letters, digits, '_', '.' and '-', starting with a letter or digit, at most %d characters", doc.Workflow, maxIDLength)
	}
	if doc.Namespace != "" {
		for _, msg := range validation.IsDNS1123Label(doc.Namespace) {
			p.add(p.line("namespace"), "", "namespace", "%q: %s", doc.Namespace, msg)
		}
	}

	// Defaults.
	def := doc.Defaults
	defRetries, defSystem := 0, DefaultMaxSystemRetries
	if def.Retries != nil {
		defRetries = *def.Retries
		p.checkRetries(defRetries, p.line("defaults", "retries"), "", "defaults.retries")
	}
	if def.MaxSystemRetries != nil {
		defSystem = *def.MaxSystemRetries
		p.checkRetries(defSystem, p.line("defaults", "maxSystemRetries"), "", "defaults.maxSystemRetries")
	}
	defDelay := DefaultRetryDelay
	if def.RetryDelay != "" {
		defDelay = p.duration(def.RetryDelay, p.line("defaults", "retryDelay"), "", "defaults.retryDelay")
	}
	defTimeout := p.duration(def.Timeout, p.line("defaults", "timeout"), "", "defaults.timeout")
	if def.Image != "" {
		p.checkImage(def.Image, p.line("defaults", "image"), "", "defaults.image")
	}

	// Secrets.
	seenSecret := map[string]bool{}
	for i, s := range doc.Secrets {
		line := p.line("secrets", fmt.Sprintf("#%d", i))
		field := fmt.Sprintf("secrets[%d]", i)
		if s.Name == "" {
			p.add(line, "", field+".name", "is required")
		} else {
			for _, msg := range validation.IsDNS1123Subdomain(s.Name) {
				p.add(line, "", field+".name", "%q: %s", s.Name, msg)
			}
			if seenSecret[s.Name] {
				p.add(line, "", field+".name", "secret %q is declared twice", s.Name)
			}
			seenSecret[s.Name] = true
		}
		if len(s.StringData) == 0 {
			p.add(line, "", field+".stringData", "is empty: give the secret at least one key")
		}
		for _, k := range sortedKeys(s.StringData) {
			for _, msg := range validation.IsConfigMapKey(k) {
				p.add(p.line("secrets", fmt.Sprintf("#%d", i), "stringData", k), "", field+".stringData", "key %q: %s", k, msg)
			}
		}
		w.Secrets = append(w.Secrets, Secret(s))
	}

	// Tasks.
	if len(doc.Tasks) == 0 {
		p.add(p.line("tasks"), "", "tasks", "is empty: a workflow needs at least one task")
	}
	for i, rt := range doc.Tasks {
		item := fmt.Sprintf("#%d", i)
		at := func(keys ...string) int { return p.line(append([]string{"tasks", item}, keys...)...) }
		t := &Task{ID: rt.ID, Line: at(), Command: rt.Command, Args: rt.Args, DependsOn: rt.DependsOn, XComInputs: rt.XComInputs}
		name := rt.ID
		switch {
		case rt.ID == "":
			name = fmt.Sprintf("#%d", i+1)
			p.add(t.Line, name, "id", "is required: give every task an id")
		case len(rt.ID) > maxIDLength || !idPattern.MatchString(rt.ID):
			p.add(at("id"), name, "id", "is not a valid id: use letters, digits, '_', '.' and '-', starting with a letter or digit, at most %d characters", maxIDLength)
		case w.byID[rt.ID] != nil:
			p.add(at("id"), name, "id", "is used twice (first at line %d): task ids must be unique", w.byID[rt.ID].Line)
		default:
			w.byID[rt.ID] = t
		}

		t.Image = rt.Image
		if t.Image == "" {
			t.Image = def.Image
		}
		if t.Image == "" {
			p.add(t.Line, name, "image", "is required: set image here or in defaults.image")
		} else if rt.Image != "" {
			p.checkImage(rt.Image, at("image"), name, "image")
		}

		for _, k := range sortedKeys(rt.Env) {
			for _, msg := range validation.IsEnvVarName(k) {
				p.add(at("env", k), name, "env."+k, "%s", msg)
			}
			t.Env = append(t.Env, corev1.EnvVar{Name: k, Value: rt.Env[k]})
		}
		t.Requests = p.quantities(rt.Resources.Requests, name, "resources.requests", at)
		t.Limits = p.quantities(rt.Resources.Limits, name, "resources.limits", at)

		t.Retries, t.MaxSystemRetries = defRetries, defSystem
		if rt.Retries != nil {
			t.Retries = *rt.Retries
			p.checkRetries(t.Retries, at("retries"), name, "retries")
		}
		if rt.MaxSystemRetries != nil {
			t.MaxSystemRetries = *rt.MaxSystemRetries
			p.checkRetries(t.MaxSystemRetries, at("maxSystemRetries"), name, "maxSystemRetries")
		}
		t.RetryDelay = defDelay
		if rt.RetryDelay != "" {
			t.RetryDelay = p.duration(rt.RetryDelay, at("retryDelay"), name, "retryDelay")
		}
		t.Timeout = defTimeout
		if rt.Timeout != "" {
			t.Timeout = p.duration(rt.Timeout, at("timeout"), name, "timeout")
		}
		switch {
		case t.Timeout > 0 && t.Timeout < time.Second:
			p.add(at("timeout"), name, "timeout", "%s is shorter than a second: the pod's deadline counts whole seconds", t.Timeout)
		case t.Timeout > maxTimeout:
			p.add(at("timeout"), name, "timeout", "%s is longer than a pod's deadline may be, %s (about 68 years)", t.Timeout, maxTimeout)
		}

		if rt.PodOverride.Kind != 0 {
			data, err := yaml.Marshal(&rt.PodOverride)
			if err == nil {
				t.Override, err = podtemplate.ParseOverride("podOverride", data)
			}
			if err != nil {
				field, msg := "podOverride", err.Error()
				var de *podtemplate.DecodeError
				if errors.As(err, &de) {
					if de.Field != "" {
						field += "." + de.Field
					}
					msg = de.Err.Error()
				}
				p.add(at("podOverride"), name, field, "%s", msg)
			}
		}
		w.Tasks = append(w.Tasks, t)
	}

	// Dependencies and XCom inputs, once every id is known.
	for i, t := range w.Tasks {
		item := fmt.Sprintf("#%d", i)
		seen := map[string]bool{}
		for j, d := range t.DependsOn {
			field := fmt.Sprintf("dependsOn[%d]", j)
			line := p.line("tasks", item, "dependsOn", fmt.Sprintf("#%d", j))
			switch {
			case d == t.ID:
				p.add(line, t.ID, field, "the task depends on itself")
			case w.byID[d] == nil:
				p.add(line, t.ID, field, "unknown task %q%s", d, suggest(d, w.byID))
			case seen[d]:
				p.add(line, t.ID, field, "%q is listed twice", d)
			}
			seen[d] = true
		}
		for _, env := range sortedKeys(t.XComInputs) {
			line := p.line("tasks", item, "xcomInputs", env)
			up := t.XComInputs[env]
			for _, msg := range validation.IsEnvVarName(env) {
				p.add(line, t.ID, "xcomInputs."+env, "%s", msg)
			}
			if strings.HasPrefix(env, ReservedEnvPrefix) {
				p.add(line, t.ID, "xcomInputs."+env, "names starting with %s are the scheduler's: choose another name", ReservedEnvPrefix)
			}
			if slices.ContainsFunc(t.Env, func(e corev1.EnvVar) bool { return e.Name == env }) {
				p.add(line, t.ID, "xcomInputs."+env, "is also set in env: use one or the other")
			}
			if !slices.Contains(t.DependsOn, up) {
				p.add(line, t.ID, "xcomInputs."+env, "task %q is not in dependsOn: a task can only read the XCom of a task it depends on", up)
			}
		}
	}
	if cycle := findCycle(w); cycle != nil {
		first := w.byID[cycle[0]]
		p.add(first.Line, first.ID, "dependsOn", "dependency cycle: %s: a workflow must be acyclic", strings.Join(cycle, " -> "))
	}
	return w
}

func (p *parser) checkRetries(n, line int, task, field string) {
	if n < 0 || n > 100 {
		p.add(line, task, field, "is %d: use 0 to 100", n)
	}
}

func (p *parser) checkImage(image string, line int, task, field string) {
	if _, err := reference.ParseNormalizedNamed(image); err != nil {
		p.add(line, task, field, "%q is not a valid image reference (%v): write e.g. busybox:1.36 or registry.example.com/team/app@sha256:...", image, err)
	}
}

func (p *parser) quantities(in map[string]string, task, field string, at func(...string) int) map[corev1.ResourceName]string {
	if len(in) == 0 {
		return nil
	}
	out := make(map[corev1.ResourceName]string, len(in))
	parts := strings.Split(field, ".")
	for _, k := range sortedKeys(in) {
		if _, err := resource.ParseQuantity(in[k]); err != nil {
			p.add(at(append(parts, k)...), task, field+"."+k, "%q is not a quantity: write e.g. 500m, 2, 128Mi or 1Gi", in[k])
		}
		out[corev1.ResourceName(k)] = in[k]
	}
	return out
}

// findCycle returns the ids of a dependency cycle, first id repeated at
// the end, or nil when the graph is acyclic.
func findCycle(w *Workflow) []string {
	const (
		unseen = iota
		onStack
		done
	)
	state := map[string]int{}
	var stack []string
	var visit func(id string) []string
	visit = func(id string) []string {
		state[id] = onStack
		stack = append(stack, id)
		t := w.byID[id]
		for _, d := range t.DependsOn {
			if w.byID[d] == nil || d == id {
				continue // reported elsewhere
			}
			switch state[d] {
			case onStack:
				start := slices.Index(stack, d)
				return append(slices.Clone(stack[start:]), d)
			case unseen:
				if c := visit(d); c != nil {
					return c
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[id] = done
		return nil
	}
	for _, t := range w.Tasks {
		if w.byID[t.ID] == t && state[t.ID] == unseen {
			if c := visit(t.ID); c != nil {
				// Report the cycle in dependency order: a depends on b ...
				return c
			}
		}
	}
	return nil
}

// suggest names a known id close to id, for typos.
func suggest(id string, known map[string]*Task) string {
	best, bestDist := "", 3
	for k := range known {
		if d := editDistance(strings.ToLower(id), strings.ToLower(k)); d < bestDist || (d == bestDist && k < best) {
			best, bestDist = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	ids := make([]string, 0, len(known))
	for k := range known {
		ids = append(ids, k)
	}
	sort.Strings(ids)
	return fmt.Sprintf(" (tasks are: %s)", strings.Join(ids, ", "))
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Order returns the tasks in a topological order (each after its
// dependencies), keeping file order among tasks that are ready together.
func (w *Workflow) Order() []*Task {
	done := map[string]bool{}
	var out []*Task
	for len(out) < len(w.Tasks) {
		progressed := false
		for _, t := range w.Tasks {
			if done[t.ID] {
				continue
			}
			ready := true
			for _, d := range t.DependsOn {
				if !done[d] {
					ready = false
					break
				}
			}
			if ready {
				done[t.ID] = true
				out = append(out, t)
				progressed = true
			}
		}
		if !progressed { // impossible for a parsed workflow
			break
		}
	}
	return out
}
