package main

import (
	"context"
	"log/slog"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/instancecmd"

	"skiff.dev/skiff/internal/kmsplugin"
)

// newKMSPluginCmd runs a cluster's KMS v2 plugin: its apiservers wrap the
// data keys of Secrets with the cluster's KMS key through it (skiff's
// control-plane reconciler starts one per cluster with encryptionConfig).
func newKMSPluginCmd() *cobra.Command {
	var cfg kmsplugin.Config
	cmd := &cobra.Command{
		Use:    "kms-plugin --socket PATH --material FILE --root-key FILE --status HOST:PORT",
		Short:  "Serve a cluster's KMS v2 plugin for its apiservers (run by skiff serve)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return instancecmd.Run(func(ctx context.Context, log *slog.Logger) error {
				cfg.Log = log
				return kmsplugin.Run(ctx, cfg)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Socket, "socket", "", "the gRPC unix socket the apiservers call")
	f.StringVar(&cfg.Material, "material", "", "the file with the cluster's key (written by skiff serve)")
	f.StringVar(&cfg.RootKey, "root-key", "", "skiff's KMS root key file")
	f.StringVar(&cfg.Status, "status", "", "the status server's address, HOST:PORT")
	return cmd
}
