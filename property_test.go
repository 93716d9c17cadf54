package kubexec_test

import (
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"testing/quick"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"

	"github.com/kubexec/kubexec"
)

// randomKey generates valid task keys with ids of every shape: empty,
// ASCII, punctuation, any Unicode, control characters, very long.
func randomKey(r *rand.Rand) kubexec.TaskKey {
	key := kubexec.TaskKey{
		WorkflowID: randomID(r),
		TaskID:     randomID(r),
		RunID:      randomID(r),
		MapIndex:   r.Intn(5) - 1,
		Attempt:    r.Intn(4),
	}
	if r.Intn(10) == 0 {
		key.MapIndex, key.Attempt = r.Int(), r.Int()
	}
	for key.WorkflowID == "" {
		key.WorkflowID = randomID(r)
	}
	for key.TaskID == "" {
		key.TaskID = randomID(r)
	}
	return key
}

func randomID(r *rand.Rand) string {
	alphabets := []string{
		"abcdefghijklmnopqrstuvwxyz",
		"abcXYZ019_.-",
		" !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~=",
		"\x00\t\n\r\x7f",
		"日本語üéñ😀\u200b\ufeff",
	}
	n := r.Intn(20)
	if r.Intn(8) == 0 {
		n = 60 + r.Intn(2000)
	}
	var b strings.Builder
	for range n {
		a := []rune(alphabets[r.Intn(len(alphabets))])
		b.WriteRune(a[r.Intn(len(a))])
	}
	return b.String()
}

// genKey adapts randomKey to testing/quick.
type genKey struct{ kubexec.TaskKey }

func (genKey) Generate(r *rand.Rand, _ int) reflect.Value {
	return reflect.ValueOf(genKey{randomKey(r)})
}

// For any valid key, the metadata kubexec writes decodes to the same key,
// and every name and label is valid.
func TestPropertyMetadataRoundTrip(t *testing.T) {
	t.Parallel()
	roundTrip := func(g genKey) bool {
		pod := &corev1.Pod{}
		if err := kubexec.ApplyMetadata(pod, "executor-1", g.TaskKey); err != nil {
			t.Logf("ApplyMetadata(%v): %v", g.TaskKey, err)
			return false
		}
		got, err := kubexec.KeyFromObject(pod)
		if err != nil || got != g.TaskKey {
			t.Logf("round trip of %v: got %v, %v", g.TaskKey, got, err)
			return false
		}
		if len(pod.Name) > 63 || !podNameShape.MatchString(pod.Name) {
			t.Logf("bad pod name %q for %v", pod.Name, g.TaskKey)
			return false
		}
		for k, v := range pod.Labels {
			if len(content.IsLabelKey(k)) > 0 || len(content.IsLabelValue(v)) > 0 {
				t.Logf("bad label %s=%q for %v", k, v, g.TaskKey)
				return false
			}
		}
		return true
	}
	require.NoError(t, quick.Check(roundTrip, &quick.Config{MaxCount: 5000}))
}

// Distinct keys get distinct pod names.
func TestPropertyPodNamesDistinct(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewSource(1))
	seen := map[string]kubexec.TaskKey{}
	for range 20000 {
		k := randomKey(r)
		name, err := kubexec.PodName(k)
		require.NoError(t, err)
		if prev, ok := seen[name]; ok {
			require.Equal(t, prev, k, "two keys share the pod name %s", name)
		}
		seen[name] = k
	}
}
