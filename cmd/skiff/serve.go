package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/api/eks"
	"skiff.dev/skiff/internal/api/skiffapi"
	"skiff.dev/skiff/internal/bundle"
	"skiff.dev/skiff/internal/clusters"
	"skiff.dev/skiff/internal/controlplane"
	"skiff.dev/skiff/internal/runtime/process"
	"skiff.dev/skiff/internal/store"
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
		region  = "us-east-1"
		verbose bool
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
			return serve(ctx, log, dataDir, listen, bundles, region)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", dataDir, "where skiff keeps its state (env SKIFF_DATA_DIR)")
	cmd.Flags().StringVar(&listen, "listen", listen, "address of the API")
	cmd.Flags().StringVar(&bundles, "bundles", bundles, "directory of Kubernetes bundles (env SKIFF_BUNDLES)")
	cmd.Flags().StringVar(&region, "region", region, "the region skiff presents itself as")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "debug logging")
	return cmd
}

func serve(ctx context.Context, log *slog.Logger, dataDir, listen, bundles, region string) error {
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	cat, err := bundle.Load(bundles)
	if err != nil {
		return err
	}
	st, err := store.Open(filepath.Join(dataDir, "skiff.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	rt := process.New(dataDir, filepath.Join(dataDir, "clusters"), log)
	eng := controlplane.New(controlplane.Config{DataDir: dataDir, Store: st, Runtime: rt, Bundles: cat, Log: log})
	svc := &clusters.Service{Store: st, Bundles: cat, Changed: eng.Trigger, SlotUsable: controlplane.SlotUsable}
	local := func(*http.Request) string { return "" } // one account until IAM arrives

	mux := http.NewServeMux()
	mux.Handle("/skiff/v1/", skiffapi.New(skiffapi.Handler{Clusters: svc, Engine: eng, Account: local}))
	mux.Handle("/", eks.New(eks.Handler{Clusters: svc, Region: region, Account: local, Log: log}))
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s (is another skiff running? pick another --listen): %w", listen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	engineDone := make(chan struct{})
	go func() {
		defer close(engineDone)
		eng.Run(ctx)
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("skiff serving", "endpoint", "http://"+ln.Addr().String(), "dataDir", dataDir,
		"versions", cat.Versions())
	fmt.Fprintf(os.Stderr, "skiff is serving the EKS API on http://%s (data in %s)\n", ln.Addr(), dataDir)

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	log.Info("shutting down; control planes keep running and are adopted at the next start")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	<-engineDone
	return nil
}
