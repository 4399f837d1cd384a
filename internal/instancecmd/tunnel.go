package instancecmd

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/tunnel"
)

// Tunnel runs a cluster's tunnel: its apiservers' egress (skiff's
// control-plane reconciler starts one per cluster).
func Tunnel() *cobra.Command {
	var cfg tunnel.Config
	var podRange string
	cmd := &cobra.Command{
		Use:    "tunnel --cluster-socket PATH --controlplane-socket PATH --nodes FILE …",
		Short:  "Serve a cluster's egress from its apiservers into its VPC (run by skiff serve)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := netip.ParsePrefix(podRange)
			if err != nil {
				return fmt.Errorf("--pod-range: %w", err)
			}
			cfg.PodRange = p
			return Run(func(ctx context.Context, log *slog.Logger) error {
				cfg.Log = log
				return tunnel.Run(ctx, cfg)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Name, "name", "", "the cluster's name, for errors and logs")
	f.StringVar(&cfg.ClusterSocket, "cluster-socket", "", "the \"cluster\" egress socket (kubelets, pods)")
	f.StringVar(&cfg.ControlPlaneSocket, "controlplane-socket", "", "the \"controlplane\" egress socket (webhooks)")
	f.StringVar(&cfg.Namespace, "netns", "", "the cluster's VPC network namespace")
	f.StringArrayVar(&cfg.Direct, "direct", nil, "an address the control-plane egress dials from the host (repeatable)")
	f.StringVar(&cfg.Nodes, "nodes", "", "the file listing the cluster's node addresses")
	f.StringVar(&podRange, "pod-range", "", "the range of every pod address")
	f.StringVar(&cfg.Status, "status", "", "the status server's address, HOST:PORT")
	return cmd
}
