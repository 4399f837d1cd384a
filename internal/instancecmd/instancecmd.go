// Package instancecmd holds the commands of the lean instances among
// skiff's own per-cluster programs: the endpoint's replicas and the
// tunnel, which link nothing heavy. Both binaries serve them: `skiff`
// (skiff endpoint …) and `skiff-instance`, which links none of the API,
// the reconcilers, Kubernetes' types or the AWS SDK, so that such an
// instance takes ~1.5 MiB of anonymous memory instead of the ~10 MiB
// that skiff's package initialization alone takes (docs/performance.md).
// The authenticator, door and kms-plugin link Kubernetes' types, the
// registry and the store, and run from skiff itself.
package instancecmd

import "github.com/spf13/cobra"

// Commands are the lean instances' commands, each new.
func Commands() []*cobra.Command {
	return []*cobra.Command{Endpoint(), Tunnel()}
}
