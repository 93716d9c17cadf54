package kubexec_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubexec/kubexec"
)

var podNameShape = regexp.MustCompile(`^([a-z0-9-]*)-([a-z2-7]{12})-([0-9]+)$`)

func TestPodName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		key      kubexec.TaskKey
		wantSlug string
	}{
		{"simple", kubexec.TaskKey{WorkflowID: "etl", TaskID: "load_users", RunID: "r1", MapIndex: -1, Attempt: 2}, "etl-load-users"},
		{"upper case and dots", kubexec.TaskKey{WorkflowID: "My.DAG", TaskID: "Group.Task", MapIndex: -1, Attempt: 1}, "my-dag-group-task"},
		{"runs of invalid characters", kubexec.TaskKey{WorkflowID: "__a  b__", TaskID: "--c--", MapIndex: -1, Attempt: 1}, "a-b-c"},
		{"nothing survives", kubexec.TaskKey{WorkflowID: "日本", TaskID: "語", MapIndex: -1, Attempt: 1}, "task"},
		{"long ids are cut", kubexec.TaskKey{WorkflowID: strings.Repeat("w", 100), TaskID: "t", MapIndex: -1, Attempt: 1}, strings.Repeat("w", 63-1-12-1-1)},
		{"cut does not end in a dash", kubexec.TaskKey{WorkflowID: strings.Repeat("w", 47), TaskID: "task", MapIndex: -1, Attempt: 1}, strings.Repeat("w", 47)},
		{"huge attempt", kubexec.TaskKey{WorkflowID: strings.Repeat("w", 100), TaskID: "t", MapIndex: -1, Attempt: 1<<63 - 1}, strings.Repeat("w", 63-1-12-1-19)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			name, err := kubexec.PodName(tt.key)
			require.NoError(t, err)
			requireValidPodName(t, name)
			m := podNameShape.FindStringSubmatch(name)
			require.NotNil(t, m, name)
			require.Equal(t, tt.wantSlug, m[1])

			again, err := kubexec.PodName(tt.key)
			require.NoError(t, err)
			require.Equal(t, name, again, "deterministic")
		})
	}

	_, err := kubexec.PodName(kubexec.TaskKey{TaskID: "t"})
	require.ErrorIs(t, err, kubexec.ErrInvalidKey)
}

// Pod names are part of kubexec's contract with pods that already exist:
// changing them breaks a repeated create of an attempt launched by an older
// version. This pins one.
func TestPodNameStable(t *testing.T) {
	t.Parallel()
	name, err := kubexec.PodName(kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "r1", MapIndex: -1, Attempt: 1})
	require.NoError(t, err)
	require.Equal(t, "etl-load-v5oo3kt6m5l3-1", name)
}

func TestPodNameDistinct(t *testing.T) {
	t.Parallel()
	base := kubexec.TaskKey{WorkflowID: "a-b", TaskID: "c", RunID: "r", MapIndex: -1, Attempt: 1}
	keys := []kubexec.TaskKey{
		base,
		{WorkflowID: "a", TaskID: "b-c", RunID: "r", MapIndex: -1, Attempt: 1}, // same slug
		{WorkflowID: "a-b", TaskID: "c", RunID: "r2", MapIndex: -1, Attempt: 1},
		{WorkflowID: "a-b", TaskID: "c", RunID: "", MapIndex: -1, Attempt: 1},
		{WorkflowID: "a-b", TaskID: "c", RunID: "r", MapIndex: 0, Attempt: 1},
		{WorkflowID: "a-b", TaskID: "c", RunID: "r", MapIndex: 1, Attempt: 1},
		{WorkflowID: "a-b", TaskID: "c", RunID: "r", MapIndex: -1, Attempt: 2},
		{WorkflowID: "A-B", TaskID: "c", RunID: "r", MapIndex: -1, Attempt: 1}, // same slug
		{WorkflowID: "a_b", TaskID: "c", RunID: "r", MapIndex: -1, Attempt: 1}, // same slug
		{WorkflowID: "a-b", TaskID: "c", RunID: "r", MapIndex: 11, Attempt: 1},
		{WorkflowID: "a-b", TaskID: "c", RunID: "r", MapIndex: 1, Attempt: 11},
	}
	seen := map[string]kubexec.TaskKey{}
	for _, k := range keys {
		name, err := kubexec.PodName(k)
		require.NoError(t, err)
		prev, dup := seen[name]
		require.False(t, dup, "%v and %v share the name %s", prev, k, name)
		seen[name] = k
	}
}

func requireValidPodName(t testing.TB, name string) {
	t.Helper()
	require.LessOrEqual(t, len(name), 63, name)
	require.Empty(t, validation.IsDNS1123Label(name), name)
}

func TestUniqueName(t *testing.T) {
	t.Parallel()
	a := kubexec.TaskKey{WorkflowID: "etl", TaskID: "load", RunID: "r1", MapIndex: kubexec.NotMapped, Attempt: 1}
	b := a
	b.RunID = "r2"
	na, err := kubexec.UniqueName(a)
	if err != nil {
		t.Fatal(err)
	}
	nb, err := kubexec.UniqueName(b)
	if err != nil {
		t.Fatal(err)
	}
	pod, _ := kubexec.PodName(a)
	if !strings.HasPrefix(na, pod+"-") || len(na) != len(pod)+17 {
		t.Fatalf("kubexec.UniqueName(a) = %q, want %q and 16 hex characters", na, pod)
	}
	if na == nb {
		t.Fatalf("distinct keys share the name %q", na)
	}
	if again, _ := kubexec.UniqueName(a); again != na {
		t.Fatalf("not deterministic: %q then %q", na, again)
	}
	if _, err := kubexec.UniqueName(kubexec.TaskKey{}); err == nil {
		t.Fatal("an invalid key must be an error")
	}
}

func TestSlug(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"Scheduler_0.example.com", 40, "scheduler-0-example-com"},
		{"--a--b--", 40, "a-b"},
		{"ÄÖÜ", 40, ""},
		{"abc-def", 4, "abc"},
		{"abcdef", 3, "abc"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, kubexec.Slug(tt.in, tt.max), "%q %d", tt.in, tt.max)
	}
}
