package kubexec

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
)

// maxPodName is the longest name PodName returns: a DNS-1123 label, so it
// also serves as the pod's hostname and as a label value.
const maxPodName = 63

// podNameHashLen is the number of base32 characters (5 bits each) of the key
// hash in a pod name: 60 bits.
const podNameHashLen = 12

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// PodName returns the name of the pod that runs key:
//
//	<slug>-<hash>-<attempt>
//
// where slug is "workflow-task" lower-cased with every run of characters
// outside [a-z0-9] turned into one "-" and cut to fit, hash is 12 base32
// characters of the SHA-256 of the whole key (workflow, task, run, map index
// and attempt, unambiguously encoded), and attempt is key.Attempt in decimal.
// For example {WorkflowID: "etl", TaskID: "load_users", Attempt: 2} gives
// a name of the form "etl-load-users-xxxxxxxxxxxx-2".
//
// The name is a DNS-1123 label of at most 63 characters. It depends on the
// key alone (not on the executor or the time), so creating the same attempt
// twice collides with AlreadyExists on purpose, and it is stable across
// kubexec versions. Keys that differ in any field get different names
// except for a 60-bit hash collision; a caller that gets AlreadyExists
// therefore confirms the existing pod's key with [KeyFromObject] before
// adopting it. Errors come from [TaskKey.Validate].
func PodName(key TaskKey) (string, error) {
	if err := key.Validate(); err != nil {
		return "", err
	}
	suffix := "-" + keyHash(key) + "-" + strconv.Itoa(key.Attempt)
	slug := Slug(key.WorkflowID+"-"+key.TaskID, maxPodName-len(suffix))
	if slug == "" {
		slug = "task"
	}
	return slug + suffix, nil
}

// keyHash returns podNameHashLen lower-case base32 characters of the SHA-256
// of an unambiguous encoding of key: each string is prefixed by its length.
func keyHash(key TaskKey) string {
	h := sha256.New()
	h.Write([]byte("kubexec/pod-name/v1\x00"))
	for _, s := range []string{key.WorkflowID, key.TaskID, key.RunID} {
		h.Write([]byte(strconv.Itoa(len(s)) + ":" + s))
	}
	h.Write([]byte(strconv.Itoa(key.MapIndex) + "," + strconv.Itoa(key.Attempt)))
	return lowerBase32.EncodeToString(h.Sum(nil))[:podNameHashLen]
}

// Slug returns the readable part of the names kubexec gives its objects
// (pods, Leases, generated executor ids): s lower-cased, each run of
// characters outside [a-z0-9] turned into one "-", cut to at most max
// bytes, with no leading or trailing "-". It may be empty. Names built from
// it add a hash of the exact string when they must stay distinct.
func Slug(s string, max int) string {
	slug := dnsSlug(s)
	if len(slug) > max {
		slug = strings.TrimRight(slug[:max], "-")
	}
	return slug
}

// dnsSlug is Slug without the cut.
func dnsSlug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
			continue
		}
		dash = true
	}
	return b.String()
}

// UniqueName returns a name for key's attempt that is safe in file names
// and storage keys, readable (it starts with PodName(key)) and distinct for
// distinct keys (it ends with 16 hex characters of the SHA-256 of the whole
// key). Log archives and XCom values are stored under it.
func UniqueName(key TaskKey) (string, error) {
	name, err := PodName(key)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(key)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return name + "-" + hex.EncodeToString(sum[:8]), nil
}
