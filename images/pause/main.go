// Command pause is the pod sandbox's process, like Kubernetes' pause: it
// holds the pod's namespaces, reaps orphans when it is PID 1 of a shared PID
// namespace, and exits at SIGINT or SIGTERM. skiff builds it into the
// pause image its registry serves to every node (no outside registry).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
