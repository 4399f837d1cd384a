package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/apitls"
	"skiff.dev/skiff/internal/clusters"
	"skiff.dev/skiff/internal/nodes"
	"skiff.dev/skiff/internal/server"
)

func defaultDataDir() string {
	if d := os.Getenv("SKIFF_DATA_DIR"); d != "" {
		return d
	}
	return ".data"
}

func newServeCmd() *cobra.Command {
	var (
		dataDir = defaultDataDir()
		listen  = "127.0.0.1:7443"
		bundles = defaultBundles()
		imgDir  = defaultImages()
		region  = "us-east-1"
		verbose bool
		sandbox = nodes.SandboxUserNS
		quotas  = clusters.DefaultQuotas
		tlsCfg  apitls.Config
		drain   = nodes.DefaultReplaceDrainLimit
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run skiff: the EKS API and the control-plane reconciler",
		Long: `Run skiff: the EKS wire API on --listen and the reconciler that keeps every
cluster's control plane running. State lives in --data-dir and survives restarts;
control-plane instances keep running while skiff restarts and are adopted again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			s, err := server.Start(ctx, server.Config{DataDir: dataDir, Listen: listen, Bundles: bundles, Images: imgDir,
				Region: region, Sandbox: sandbox, Quotas: quotas, DrainTimeout: drain, TLS: tlsCfg, Log: log})
			if err != nil {
				return err
			}
			abs, _ := filepath.Abs(dataDir)
			fmt.Fprintf(os.Stderr, "skiff is serving the EKS, IAM, STS, EC2, ECR and KMS APIs and the registry (/v2/) on %s (data in %s)\n"+
				"get credentials: eval \"$(skiff env --data-dir %s)\"\n"+
				"web console: %s/console/ (sign in with those keys, or with the link 'skiff console' prints)\n", s.Endpoint(), abs, abs, s.Endpoint())
			select {
			case <-ctx.Done():
			case err := <-s.Done():
				if !errors.Is(err, http.ErrServerClosed) {
					s.Stop()
					return err
				}
			}
			log.Info("shutting down; control planes keep running and are adopted at the next start")
			s.Stop()
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", dataDir, "where skiff keeps its state (env SKIFF_DATA_DIR)")
	cmd.Flags().StringVar(&listen, "listen", listen, "address of the API")
	cmd.Flags().StringVar(&bundles, "bundles", bundles, "directory of Kubernetes bundles (env SKIFF_BUNDLES)")
	cmd.Flags().StringVar(&imgDir, "images", imgDir, "directory of the system images' sources, built by `make images` (env SKIFF_IMAGES)")
	cmd.Flags().StringVar(&region, "region", region, "the region skiff presents itself as")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "debug logging")
	cmd.Flags().StringVar(&sandbox, "node-sandbox", sandbox, "how worker nodes are isolated: "+nodes.SandboxUserNS+
		" (each a system container in its own user namespace) or "+nodes.SandboxHost+" (host root; no boundary against a privileged pod)")
	cmd.Flags().DurationVar(&drain, "node-drain-timeout", drain, "how long a node group's version update waits for pod evictions that PodDisruptionBudgets refuse before it fails with PodEvictionFailure (unless forced)")
	cmd.Flags().IntVar(&quotas.Clusters, "quota-clusters", quotas.Clusters, "clusters an account may have")
	cmd.Flags().IntVar(&quotas.Nodes, "quota-nodes", quotas.Nodes, "worker nodes an account's node groups may run in all")
	cmd.Flags().StringVar(&tlsCfg.CertFile, "tls-cert-file", "", "the API's serving certificate (PEM); default: one of skiff's own CA, DATA/tls/ca.crt")
	cmd.Flags().StringVar(&tlsCfg.KeyFile, "tls-key-file", "", "the key of --tls-cert-file")
	cmd.Flags().StringVar(&tlsCfg.CAFile, "tls-ca-file", "", "CA bundle that clients need to trust --tls-cert-file (skiff env prints it as AWS_CA_BUNDLE)")
	cmd.Flags().BoolVar(&tlsCfg.Insecure, "insecure-http", false, "serve plain HTTP (only on a loopback --listen address)")
	return cmd
}
