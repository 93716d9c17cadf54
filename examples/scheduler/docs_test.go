package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/watch"
)

// The operator's guide (docs/ in the project root) shows real outputs of
// the tests in this package: each is kept in docs/examples/NAME.txt (or
// NAME.md, inserted as Markdown) and copied into the guide between
//
//	<!-- example: NAME -->
//	<!-- /example -->
//
// With KUBEXEC_UPDATE_DOCS=1 the tests that produce them write the files,
// normalized (namespaces, paths and clock times replaced), and the guide's
// copies. Without it they check that the committed example still has the
// shape of what they saw: the lines that name the cause and the fix, not
// the ones that change from run to run.

const docsDir = "../../docs"

// updateDocs says whether the tests write the guide's examples.
var updateDocs = os.Getenv("KUBEXEC_UPDATE_DOCS") == "1"

// normalize replaces what differs between two runs of the same test:
// the generated namespace (by its prefix), the database's folder (by
// .kubexec, the default) and clock times (shifted so that the earliest is
// 10:00:00, keeping the distances between them).
func (e *env) normalize(out string) string {
	prefix := e.ns[:strings.LastIndex(e.ns, "-")]
	out = strings.ReplaceAll(out, e.ns, prefix)
	out = strings.ReplaceAll(out, filepath.Dir(e.db), ".kubexec")
	clock := regexp.MustCompile(`\b\d\d:\d\d:\d\d\b`)
	var first time.Time
	for _, m := range clock.FindAllString(out, -1) {
		if t, err := time.Parse(time.TimeOnly, m); err == nil && (first.IsZero() || t.Before(first)) {
			first = t
		}
	}
	base, _ := time.Parse(time.TimeOnly, "10:00:00")
	return clock.ReplaceAllStringFunc(out, func(m string) string {
		t, err := time.Parse(time.TimeOnly, m)
		if err != nil {
			return m
		}
		return base.Add(t.Sub(first)).Format(time.TimeOnly)
	})
}

// explainShape is what an explain example must keep: its first line, the
// Reason lines, and what to do.
func explainShape(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	var keep []string
	todo := false
	for i, l := range lines {
		switch {
		case i == 0, strings.HasPrefix(l, "  Reason "), strings.HasPrefix(l, "  Attempt "):
			keep = append(keep, l)
		case l == "What to do:":
			todo = true
			keep = append(keep, l)
		case todo:
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// numberShape is text with its numbers replaced, for measurements.
func numberShape(out string) string {
	return regexp.MustCompile(`[0-9]+(\.[0-9]+)?`).ReplaceAllString(out, "N")
}

// docExample records out (already normalized) as the guide's example
// file (NAME.txt or NAME.md), or checks that the committed file still has
// its shape.
func docExample(t *testing.T, file, out string, shape func(string) string) {
	t.Helper()
	path := filepath.Join(docsDir, "examples", file)
	if updateDocs {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(out), 0o644))
		require.NoError(t, spliceExamples(true))
		return
	}
	committed, err := os.ReadFile(path)
	require.NoError(t, err, "the guide's example %s is missing: KUBEXEC_UPDATE_DOCS=1 go test -run '%s' writes it", path, t.Name())
	require.Equal(t, shape(string(committed)), shape(out),
		"the guide's example %s no longer matches what the test sees: KUBEXEC_UPDATE_DOCS=1 go test -run '%s' rewrites it (then review the guide's text around it)", path, t.Name())
}

var exampleBlock = regexp.MustCompile("(?s)<!-- example: ([a-z0-9.-]+) -->\n(.*?)<!-- /example -->")

// exampleText is how the example file's content appears in the guide.
func exampleText(file string, content []byte) string {
	if strings.HasSuffix(file, ".md") {
		return string(content)
	}
	return "```text\n" + string(content) + "```\n"
}

// spliceExamples compares each example block of docs/*.md with its file
// and, with write, replaces the block by the file's content. It returns an
// error naming the blocks that differ (without write) or refer to no file.
func spliceExamples(write bool) error {
	docs, err := filepath.Glob(filepath.Join(docsDir, "*.md"))
	if err != nil {
		return err
	}
	var problems []string
	for _, doc := range docs {
		data, err := os.ReadFile(doc)
		if err != nil {
			return err
		}
		changed := exampleBlock.ReplaceAllStringFunc(string(data), func(block string) string {
			m := exampleBlock.FindStringSubmatch(block)
			content, err := os.ReadFile(filepath.Join(docsDir, "examples", m[1]))
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: example %s: %v", doc, m[1], err))
				return block
			}
			want := exampleText(m[1], content)
			if m[2] != want {
				problems = append(problems, fmt.Sprintf("%s: example %s differs from docs/examples/%s", doc, m[1], m[1]))
			}
			return "<!-- example: " + m[1] + " -->\n" + want + "<!-- /example -->"
		})
		if write && changed != string(data) {
			if err := os.WriteFile(doc, []byte(changed), 0o644); err != nil {
				return err
			}
		}
	}
	if len(problems) > 0 && !write {
		return fmt.Errorf("%s\n(KUBEXEC_UPDATE_DOCS=1 go test -run TestDocsExamplesInSync copies the files into the guide)", strings.Join(problems, "\n"))
	}
	return nil
}

// The guide's copies of the examples are those of docs/examples, and every
// file there is shown in the guide.
func TestDocsExamplesInSync(t *testing.T) {
	t.Parallel()
	require.NoError(t, spliceExamples(updateDocs))
	used := map[string]bool{}
	docs, err := filepath.Glob(filepath.Join(docsDir, "*.md"))
	require.NoError(t, err)
	require.NotEmpty(t, docs)
	for _, doc := range docs {
		data, err := os.ReadFile(doc)
		require.NoError(t, err)
		for _, m := range exampleBlock.FindAllStringSubmatch(string(data), -1) {
			used[m[1]] = true
		}
	}
	files, err := os.ReadDir(filepath.Join(docsDir, "examples"))
	require.NoError(t, err)
	for _, f := range files {
		require.True(t, used[f.Name()], "docs/examples/%s is shown nowhere in docs/*.md", f.Name())
	}
}

// docCommands returns every scheduler command line the Markdown text shows:
// lines of sh blocks that run the scheduler, and code spans that do
// ("scheduler ...", "go run . ...", "go -C examples/scheduler run . ...").
func docCommands(text string) []string {
	var cmds []string
	span := regexp.MustCompile("`(?:scheduler|go run \\.|go -C examples/scheduler run \\.) ([^`]+)`")
	for _, m := range span.FindAllStringSubmatch(text, -1) {
		cmds = append(cmds, "scheduler "+m[1])
	}
	inSh := false
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "```"):
			inSh = !inSh && slices.Contains([]string{"```sh", "```bash", "```console", "```shell"}, trimmed)
			continue
		case !inSh:
			continue
		}
		trimmed = strings.TrimPrefix(trimmed, "$ ")
		if i := strings.Index(trimmed, " #"); i >= 0 {
			trimmed = strings.TrimSpace(trimmed[:i])
		}
		for _, prefix := range []string{"go -C examples/scheduler run . ", "go run . ", "scheduler "} {
			if strings.HasPrefix(trimmed, prefix) {
				cmds = append(cmds, "scheduler "+strings.TrimPrefix(trimmed, prefix))
			}
		}
	}
	return cmds
}

// Every scheduler command the guide, the README and the scheduler's README
// show exists, with the flags it is shown with.
func TestDocsCommandsExist(t *testing.T) {
	t.Parallel()
	docs, err := filepath.Glob(filepath.Join(docsDir, "*.md"))
	require.NoError(t, err)
	docs = append(docs, filepath.Join(docsDir, "..", "README.md"), "README.md")
	checked := 0
	for _, doc := range docs {
		data, err := os.ReadFile(doc)
		require.NoError(t, err)
		for _, line := range docCommands(string(data)) {
			args := strings.Fields(strings.TrimPrefix(line, "scheduler "))
			fs := newFlagSet(&options{stderr: io.Discard})
			pos, err := parseArgs(fs, args)
			require.NoError(t, err, "%s: `%s`: the scheduler does not accept these flags", doc, line)
			require.NotEmpty(t, pos, "%s: `%s` names no command", doc, line)
			// Main says whether it knows the command; with a database
			// that does not exist no command touches anything.
			var stderr bytes.Buffer
			Main(context.Background(), []string{"--db", filepath.Join(t.TempDir(), "none.db"), pos[0]}, io.Discard, &stderr)
			require.False(t, strings.Contains(stderr.String(), "unknown command"), "%s: `%s`: the scheduler has no command %q", doc, line, pos[0])
			checked++
		}
	}
	require.Greater(t, checked, 10, "the guide shows scheduler commands")
}

// docCommands finds the commands in code spans and sh blocks, and only
// those.
func TestDocCommandsParsing(t *testing.T) {
	t.Parallel()
	text := "Run `scheduler explain run-1/a --attempt 2`, `go run . status` or:\n\n```sh\n$ scheduler status   # the runs\ngo -C examples/scheduler run . logs a\nkubectl get pods\n```\n\n```text\nthe scheduler retries it\n```\n"
	got := docCommands(text)
	sort.Strings(got)
	require.Equal(t, []string{"scheduler explain run-1/a --attempt 2", "scheduler logs a", "scheduler status", "scheduler status"}, got)
	fs := newFlagSet(&options{stderr: io.Discard})
	_, err := parseArgs(fs, []string{"explain", "a", "--no-such-flag"})
	require.Error(t, err)
	require.NotErrorIs(t, err, flag.ErrHelp)
}

// docs/configuration.md names every field of executor.Config, of its
// GCPolicy and of the classification's options.
func TestDocsConfigurationCoversConfig(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join(docsDir, "configuration.md"))
	require.NoError(t, err)
	doc := string(data)
	for _, typ := range []reflect.Type{reflect.TypeFor[executor.Config](), reflect.TypeFor[executor.GCPolicy](), reflect.TypeFor[watch.ClassifyOptions]()} {
		for f := range typ.Fields() {
			if f.IsExported() {
				require.Contains(t, doc, "`"+f.Name+"`", "docs/configuration.md does not describe %s.%s", typ, f.Name)
			}
		}
	}
}
