// Command kubexec-pause is the dev cluster's pod sandbox image for the
// kubelet node: the process that holds a pod's namespaces. It sleeps until
// SIGTERM or SIGINT, and reaps every child that ends, as the pause
// container of a real cluster does. It is built as a static binary and
// packed into an image by the dev cluster harness; no registry is used.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
