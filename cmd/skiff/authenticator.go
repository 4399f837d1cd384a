package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/instancecmd"

	"skiff.dev/skiff/internal/authenticator"
)

// newAuthenticatorCmd runs one replica of a cluster's IAM token
// authenticator (skiff's control-plane reconciler starts two per cluster).
func newAuthenticatorCmd() *cobra.Command {
	var cfg authenticator.Config
	var source string
	cmd := &cobra.Command{
		Use:    "authenticator --listen ADDR --material FILE …",
		Short:  "Serve one replica of a cluster's token-review webhook (run by skiff serve)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if source != "" {
				a, err := netip.ParseAddr(source)
				if err != nil {
					return fmt.Errorf("--source: %w", err)
				}
				cfg.Source = a
			}
			return instancecmd.Run(func(ctx context.Context, log *slog.Logger) error {
				cfg.Log = log
				return authenticator.Run(ctx, cfg)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "", "the webhook's address, HOST:PORT (shared with the other replicas)")
	f.StringVar(&cfg.CertFile, "cert", "", "the serving certificate")
	f.StringVar(&cfg.KeyFile, "key", "", "the serving certificate's key")
	f.StringVar(&cfg.ClientCAFile, "client-ca", "", "the CA of the apiservers' client certificate")
	f.StringVar(&cfg.ClientCN, "client-cn", "", "the common name of the only client allowed")
	f.StringVar(&cfg.Material, "material", "", "the material file skiff keeps up to date")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "a kubeconfig to read the aws-auth ConfigMap")
	f.StringVar(&source, "source", "", "the address to dial the cluster from")
	f.StringVar(&cfg.Status, "status", "", "the status server's address, HOST:PORT")
	return cmd
}
