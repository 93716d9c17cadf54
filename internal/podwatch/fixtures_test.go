package podwatch

import "github.com/kubexec/kubexec/internal/podtest"

// The pods of the trimming tests.
var (
	testPod = podtest.TestPod
	ranOK   = podtest.RanOK
	at      = podtest.At
)
