package executor

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubexec/kubexec"
)

// ended is the outcome kubexec recorded on a pod it decided must end.
type ended struct {
	Reason  kubexec.Reason `json:"reason"`
	Message string         `json:"message,omitempty"`
}

// annotation returns the value of kubexec.AnnotationEnded for e.
func (e ended) annotation() string {
	b, _ := json.Marshal(e) // a struct of strings always marshals
	return string(b)
}

// endedFromObject returns the outcome recorded on obj by
// kubexec.AnnotationEnded, and false when it carries none or one that does not
// name a known reason.
func endedFromObject(obj metav1.Object) (ended, bool) {
	v, ok := obj.GetAnnotations()[kubexec.AnnotationEnded]
	if !ok {
		return ended{}, false
	}
	var e ended
	if err := json.Unmarshal([]byte(v), &e); err != nil || !e.Reason.Known() {
		return ended{}, false
	}
	return e, true
}
