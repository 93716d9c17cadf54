package watch

import (
	"os"
	"testing"
	"time"

	"github.com/kubexec/kubexec/internal/devcluster"
)

// cluster is the package's dev cluster, with the watch cache on as in
// production and two process nodes for the tests that run pods.
var cluster *devcluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(devcluster.Main(m, devcluster.Options{
		// Two nodes: the node controller evicts nothing when every node of
		// a zone is lost, so TestClassifyNodeLost needs one to survive.
		Nodes: 2,
		// One real kubelet node, tainted so that only the pods of the
		// cross-node cases (TestClassifyRealPods) run there.
		KubeletNodes:     1,
		KubeletNodeTaint: true,
		// A lost node is noticed, and its pods evicted, within seconds
		// (TestClassifyNodeLost) rather than minutes.
		NodeMonitorGracePeriod:       16 * time.Second,
		NotReadyTolerationSeconds:    2,
		UnreachableTolerationSeconds: 2,
	}, &cluster))
}
