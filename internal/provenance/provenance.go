// Package provenance writes and checks the mark kubexec puts on the pods
// its executors create (kubexec.AnnotationProvenance).
package provenance

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubexec/kubexec"
)

// MinKeyBytes is the shortest key [New] accepts.
const MinKeyBytes = 32

// provenanceVersion prefixes every mark, so that the scheme can change.
const provenanceVersion = "v1."

var (
	// ErrNoMark: the pod carries no provenance mark.
	ErrNoMark = errors.New("provenance: the pod carries no provenance mark")
	// ErrBadMark: the pod's provenance mark was not made for it with
	// this key.
	ErrBadMark = errors.New("provenance: the pod's provenance mark does not match")
)

// Marker marks the pods an executor creates, and tells them from pods
// that someone else created with the same labels and annotations. The mark
// ([kubexec.AnnotationProvenance]) is an HMAC-SHA256, keyed by a secret the
// executors of one deployment share, over the pod's namespace, name and
// task key: whoever can create pods but does not hold the key cannot make
// a mark that verifies, for any pod.
//
// What it does not stop: a mark is bound to the pod's namespace, name and
// key, not to one pod object, so a pod creator who read a genuine pod's
// mark can create a pod with the same name, namespace and mark once the
// genuine pod is gone. An executor never takes such a pod for the pod it
// created in the same process (it checks the pod's UID too); after a
// restart it would. The ValidatingAdmissionPolicy that ships with the
// executor (executor/admission-policy.yaml) closes that gap on the
// cluster's side: only the executor's identity may create pods that carry
// kubexec's labels.
//
// A Marker is safe for concurrent use.
type Marker struct {
	key []byte
}

// New returns a Marker keyed by key, which must hold at
// least [MinKeyBytes] random bytes and is copied.
func New(key []byte) (*Marker, error) {
	if len(key) < MinKeyBytes {
		return nil, fmt.Errorf("kubexec: a provenance key needs at least %d random bytes, not %d: generate one with crypto/rand (or `head -c 32 /dev/urandom`)",
			MinKeyBytes, len(key))
	}
	return &Marker{key: append([]byte(nil), key...)}, nil
}

// Sign sets obj's [kubexec.AnnotationProvenance] to the mark of its namespace,
// name and task key. Call it last, once the namespace, name and key
// annotations are final ([ApplyMetadata]).
func (p *Marker) Sign(obj metav1.Object) error {
	mark, err := p.mark(obj)
	if err != nil {
		return err
	}
	a := maps.Clone(obj.GetAnnotations())
	if a == nil {
		a = map[string]string{}
	}
	a[kubexec.AnnotationProvenance] = mark
	obj.SetAnnotations(a)
	return nil
}

// Verify reports whether obj carries the mark Sign gives it: nil, or an
// error wrapping [ErrNoMark], [ErrBadMark] or (for a pod whose
// key annotations do not decode) [ErrMalformedMetadata].
func (p *Marker) Verify(obj metav1.Object) error {
	got, ok := obj.GetAnnotations()[kubexec.AnnotationProvenance]
	if !ok {
		return fmt.Errorf("%w: pod %s/%s", ErrNoMark, obj.GetNamespace(), obj.GetName())
	}
	want, err := p.mark(obj)
	if err != nil {
		return err
	}
	if !hmac.Equal([]byte(got), []byte(want)) {
		return fmt.Errorf("%w: pod %s/%s: it was not created by an executor holding this deployment's provenance key", ErrBadMark, obj.GetNamespace(), obj.GetName())
	}
	return nil
}

func (p *Marker) mark(obj metav1.Object) (string, error) {
	key, err := kubexec.KeyFromObject(obj)
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, p.key)
	// Length-prefixed fields: no two different inputs write the same bytes.
	for _, f := range []string{"kubexec provenance v1", obj.GetNamespace(), obj.GetName(),
		key.WorkflowID, key.TaskID, key.RunID, strconv.Itoa(key.MapIndex), strconv.Itoa(key.Attempt)} {
		mac.Write([]byte(strconv.Itoa(len(f)) + ":" + f))
	}
	return provenanceVersion + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}
