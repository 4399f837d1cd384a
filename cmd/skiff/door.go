package main

import (
	"context"
	"log/slog"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/door"
	"skiff.dev/skiff/internal/instancecmd"
)

// newDoorCmd runs a cluster's door in its VPC (skiff's control-plane
// reconciler starts one per cluster with a VPC).
func newDoorCmd() *cobra.Command {
	var cfg door.Config
	cmd := &cobra.Command{
		Use:    "door --netns NS --listen ADDR --dir DIR --api ADDR --api-socket PATH --material FILE --status ADDR",
		Short:  "Serve the registry and skiff's API to a cluster's VPC (run by skiff serve)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return instancecmd.Run(func(ctx context.Context, log *slog.Logger) error {
				cfg.Log = log
				return door.Run(ctx, cfg)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Name, "name", "", "the cluster's name, for logs")
	f.StringVar(&cfg.VPC, "vpc", "", "the VPC's ID")
	f.StringVar(&cfg.Netns, "netns", "", "the VPC's network namespace")
	f.StringVar(&cfg.Listen, "listen", "", "the registry's address in the VPC, HOST:PORT (shared)")
	f.StringVar(&cfg.Dir, "dir", "", "the registry's storage")
	f.StringVar(&cfg.API, "api", "", "skiff's API's address in the VPC, HOST:PORT (shared)")
	f.StringVar(&cfg.APISocket, "api-socket", "", "the unix socket where skiff serves its API to the VPC")
	f.StringVar(&cfg.Material, "material", "", "the material file (pull key, the account's nodes)")
	f.StringVar(&cfg.Status, "status", "", "the status server's address, HOST:PORT")
	return cmd
}
