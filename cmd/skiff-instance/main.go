// Command skiff-instance runs the lean ones of skiff's own per-cluster
// instances (the endpoint's replicas, the tunnel), as `skiff` does, in a
// binary that links nothing else: skiff serve uses it when it finds it
// next to itself (package instancecmd).
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/instancecmd"
)

func main() {
	root := &cobra.Command{Use: "skiff-instance", Short: "skiff's own per-cluster instances (run by skiff serve)",
		SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(instancecmd.Commands()...)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "skiff-instance:", err)
		os.Exit(1)
	}
}
