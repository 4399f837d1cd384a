package instancecmd

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/endpoint"
)

// Run runs one of skiff's own instances (endpoint, authenticator,
// tunnel) until SIGTERM or SIGINT, logging to stderr (the runtime's log).
func Run(run func(ctx context.Context, log *slog.Logger) error) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return run(ctx, log)
}

// Endpoint runs one replica of a cluster's endpoint (skiff's
// control-plane reconciler starts two per cluster).
func Endpoint() *cobra.Command {
	var cfg endpoint.Config
	var in, cidrs []string
	var own string
	cmd := &cobra.Command{
		Use:    "endpoint --listen ADDR --backend ADDR… --ca FILE --status ADDR",
		Short:  "Serve one replica of a cluster's endpoint (run by skiff serve)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, s := range in {
				na, err := endpoint.ParseNamespaceAddr(s)
				if err != nil {
					return fmt.Errorf("--listen-in: %w", err)
				}
				cfg.InNamespaces = append(cfg.InNamespaces, na)
			}
			for _, s := range cidrs {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					return fmt.Errorf("--public-cidr: %w", err)
				}
				cfg.PublicCIDRs = append(cfg.PublicCIDRs, p.Masked())
			}
			if own != "" {
				a, err := netip.ParseAddr(own)
				if err != nil {
					return fmt.Errorf("--own: %w", err)
				}
				cfg.Own = a
			}
			return Run(func(ctx context.Context, log *slog.Logger) error {
				cfg.Log = log
				return endpoint.Run(ctx, cfg)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Name, "name", "", "the cluster's name, for logs")
	f.StringVar(&cfg.Listen, "listen", "", "the public address, HOST:PORT (shared with the other replicas)")
	f.StringArrayVar(&in, "listen-in", nil, "an address inside a network namespace, NAMESPACE=HOST:PORT (repeatable)")
	f.StringArrayVar(&cfg.Backends, "backend", nil, "an apiserver, HOST:PORT (repeatable)")
	f.StringVar(&cfg.CAFile, "ca", "", "the cluster CA, to check the apiservers' /readyz")
	f.BoolVar(&cfg.PublicAccess, "public-access", true, "whether the public address serves clients (endpointPublicAccess)")
	f.StringArrayVar(&cidrs, "public-cidr", nil, "a CIDR the public address serves (publicAccessCidrs; repeatable; none: all)")
	f.StringVar(&own, "own", "", "a source address always let in (skiff's own clients)")
	f.StringVar(&cfg.Status, "status", "", "the status server's address, HOST:PORT")
	f.StringVar(&cfg.Link, "link", "", "this replica's unix socket for its sibling")
	f.StringVar(&cfg.Peer, "peer", "", "the sibling's unix socket (with --link)")
	f.DurationVar(&cfg.Drain, "drain", time.Second, "how long a stopping replica without a sibling lets its connections finish")
	f.DurationVar(&cfg.Wait, "client-wait", 0, "how long a client's connection waits for an apiserver while the replica is asleep (0: closed at once)")
	f.DurationVar(&cfg.Interval, "check-interval", 0, "how often each apiserver's /readyz is checked (0: 200ms)")
	f.DurationVar(&cfg.IdleInterval, "idle-check-interval", endpoint.DefaultIdleInterval, "how often while every apiserver is in the pool and no client came for 10s")
	return cmd
}
