package devcluster

import (
	"context"
	"errors"
)

// nodeAgent is one process node.
type nodeAgent struct {
	name string
	proc *process
}

// startNodes starts Options.Nodes process nodes and waits until they are Ready.
func (c *Cluster) startNodes(ctx context.Context) error {
	return errors.New("devcluster: process nodes are not available yet: Options.Nodes must be 0")
}
