package kubexec_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kubexec/kubexec"
)

func TestInternalAnnotation(t *testing.T) {
	for name, want := range map[string]bool{
		kubexec.AnnotationLeaseNamespace: true,
		kubexec.AnnotationEnded:          true,
		kubexec.AnnotationProvenance:     true,
		kubexec.AnnotationNamespaces:     true,
		"kubexec.io/claimed-executor":    true,
		kubexec.AnnotationTask:           false, // written by ApplyMetadata, which replaces it
		"xcom.kubexec.io/channel":        false, // a task author's choice
		"example.com/note":               false,
	} {
		require.Equal(t, want, kubexec.InternalAnnotation(name), name)
	}
}
