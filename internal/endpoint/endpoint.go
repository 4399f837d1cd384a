// Package endpoint is one replica of a cluster's endpoint, run as an
// instance of its own (`skiff endpoint`) so that the endpoint keeps serving
// while skiff is down or being replaced: a TCP load balancer (package lb)
// in front of the cluster's apiservers.
//
// Two or more replicas share each listening address with SO_REUSEPORT: the
// kernel spreads new connections over them, and when one ends (replaced,
// or killed) the others take every new connection. A replica told to stop
// (SIGTERM) first closes its listeners and lets the connections it forwards
// finish for a while.
//
// Besides the public address (filtered by EKS' endpointPublicAccess and
// publicAccessCidrs), a replica may listen inside network namespaces (the
// endpoint in a cluster's VPC, for its nodes): it listens there as soon as
// the namespace exists, and again when the namespace is made anew.
//
// Each replica answers GET /healthz on its status address (package
// status) with the backends in its pool: the reconciler's probe.
package endpoint

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"skiff.dev/skiff/internal/lb"
	"skiff.dev/skiff/internal/status"
	"skiff.dev/skiff/internal/vpcnet"
)

// Config of one endpoint replica.
type Config struct {
	Name string // for logs: the cluster's
	// Listen is the public address (host:port), shared with the other replicas.
	Listen string
	// InNamespaces are addresses inside network namespaces (by name), not
	// filtered by the public access settings.
	InNamespaces []NamespaceAddr
	// Backends are the apiservers (host:port).
	Backends []string
	// CAFile holds the cluster CA, to verify the apiservers' /readyz.
	CAFile string
	// PublicAccess and PublicCIDRs are EKS' endpointPublicAccess and
	// publicAccessCidrs; Own (the control plane owner's source address)
	// is always let in.
	PublicAccess bool
	PublicCIDRs  []netip.Prefix
	Own          netip.Addr
	// Status is the address of the status server (host:port).
	Status string
	// Drain is how long a stopping replica lets its connections finish;
	// default 1s.
	Drain time.Duration
	Log   *slog.Logger
}

// NamespaceAddr is an address inside a named network namespace.
type NamespaceAddr struct {
	Namespace string
	Addr      string
}

// ParseNamespaceAddr parses "NAMESPACE=HOST:PORT".
func ParseNamespaceAddr(s string) (NamespaceAddr, error) {
	for i := range len(s) {
		if s[i] == '=' {
			na := NamespaceAddr{Namespace: s[:i], Addr: s[i+1:]}
			if na.Namespace == "" {
				break
			}
			if _, err := netip.ParseAddrPort(na.Addr); err != nil {
				return NamespaceAddr{}, fmt.Errorf("address in namespace %q: %w", na.Namespace, err)
			}
			return na, nil
		}
	}
	return NamespaceAddr{}, fmt.Errorf("%q: want NAMESPACE=HOST:PORT", s)
}

func (n NamespaceAddr) String() string { return n.Namespace + "=" + n.Addr }

// Validate checks cfg and fills in defaults.
func (cfg *Config) Validate() error {
	var errs []error
	if cfg.Listen == "" {
		errs = append(errs, errors.New("no listen address"))
	}
	if len(cfg.Backends) == 0 {
		errs = append(errs, errors.New("no backends"))
	}
	if cfg.CAFile == "" {
		errs = append(errs, errors.New("no CA file"))
	}
	if cfg.Status == "" {
		errs = append(errs, errors.New("no status address"))
	}
	if cfg.Drain == 0 {
		cfg.Drain = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return errors.Join(errs...)
}

// Status is a replica's answer to GET /status.
type Status struct {
	// Healthy are the backends in the pool, sorted.
	Healthy []string `json:"healthy"`
	// Listening are the addresses served, the public one first.
	Listening []string `json:"listening"`
}

// Run serves until ctx is done, then drains.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("endpoint: %w", err)
	}
	ca, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("endpoint: no certificate in %s", cfg.CAFile)
	}
	bal := lb.New(lb.Config{Name: cfg.Name, Check: lb.HTTPSCheck(&tls.Config{RootCAs: pool}, "/readyz"), Log: cfg.Log})
	bal.SetAccess(lb.PublicAccess(cfg.PublicAccess, cfg.PublicCIDRs, cfg.Own))
	bal.SetBackends(cfg.Backends)
	if err := bal.Listen(cfg.Listen); err != nil {
		bal.Close()
		return err
	}
	st := &state{listening: []string{cfg.Listen}}

	srv, err := status.Serve(cfg.Status, func() (any, error) {
		return Status{Healthy: bal.Healthy(), Listening: st.list()}, nil
	})
	if err != nil {
		bal.Close()
		return err
	}

	var wg sync.WaitGroup
	for _, na := range cfg.InNamespaces {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveIn(ctx, bal, na, st, cfg.Log)
		}()
	}
	cfg.Log.Info("endpoint serving", "cluster", cfg.Name, "listen", cfg.Listen, "backends", cfg.Backends)
	<-ctx.Done()
	srv.Close()
	dctx, cancel := context.WithTimeout(context.Background(), cfg.Drain)
	defer cancel()
	bal.Drain(dctx)
	wg.Wait()
	return nil
}

// state is what the status server reports besides the pool.
type state struct {
	mu        sync.Mutex
	listening []string
}

func (s *state) set(addr string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.listening[:0:0]
	for _, a := range s.listening {
		if a != addr {
			out = append(out, a)
		}
	}
	if on {
		out = append(out, addr)
	}
	s.listening = out
}

func (s *state) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.listening...)
}

// serveIn keeps a listener on na while ctx lasts: it listens once the
// namespace exists, and again when the namespace at that name is another
// one (made anew, e.g. after a host reboot or a VPC's re-creation).
func serveIn(ctx context.Context, bal *lb.Balancer, na NamespaceAddr, st *state, log *slog.Logger) {
	var ln net.Listener
	var ino uint64
	shown := na.String()
	defer func() {
		if ln != nil {
			ln.Close()
		}
	}()
	for {
		cur, err := nsInode(na.Namespace)
		if ln != nil && (err != nil || cur != ino) {
			log.Info("endpoint's namespace changed; listening again", "at", shown)
			ln.Close()
			ln = nil
			st.set(shown, false)
		}
		if ln == nil && err == nil {
			var l net.Listener
			lerr := vpcnet.In(na.Namespace, func() error {
				var err error
				l, err = lb.ListenShared(na.Addr)
				return err
			})
			if lerr == nil {
				ln, ino = l, cur
				bal.Serve(l)
				st.set(shown, true)
			} else {
				log.Debug("listen in namespace; retrying", "at", shown, "err", lerr)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// nsInode identifies the namespace now at a name.
func nsInode(ns string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(vpcnet.NamespacePath(ns), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// Get asks the replica whose status server is at addr for its status.
func Get(ctx context.Context, addr string) (Status, error) {
	var s Status
	err := status.Get(ctx, addr, &s)
	return s, err
}
