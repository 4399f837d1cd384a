// Package endpoint is one replica of a cluster's endpoint, run as an
// instance of its own (`skiff endpoint`) so that the endpoint keeps serving
// while skiff is down or being replaced: a TCP load balancer (package lb)
// in front of the cluster's apiservers.
//
// Two replicas share each listening address, and are linked (package lb's
// Pair, over unix sockets the runtime places): each serves the other's
// listening sockets too and holds a copy of every connection the other
// forwards. When one ends, killed or replaced, the other carries its
// connections on where they stood, and the connections waiting in its
// queues: a client notices nothing. A replica told to stop (SIGTERM) hands
// its connections over at once; one without a sibling lets them finish for
// a while.
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
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"skiff.dev/skiff/internal/lb"
	"skiff.dev/skiff/internal/status"
	"skiff.dev/skiff/internal/vpcnet"
)

// DefaultIdleInterval is how often an idle replica checks each apiserver
// (Config.IdleInterval). BenchmarkDensity, 3 idle HA clusters: the
// apiservers took 7.8 % of a core per cluster with 1 s, 11.5–13.3 % with
// 200 ms.
const DefaultIdleInterval = time.Second

// ReadyPath is how the endpoint asks an apiserver whether it may take
// requests: /readyz, short of the KMS plugin's health. A cluster whose KMS
// key is disabled keeps its API (only Secrets fail, with the reason), as
// the health issue tells.
const ReadyPath = "/readyz?exclude=kms-provider-0&exclude=kms-providers"

// wakeInterval is how often a replica checks each apiserver while a
// client's connection waits for one (a control plane waking): every
// check saved is up to that much of the wake.
const wakeInterval = 50 * time.Millisecond

// WakePath and VersionPath are how a replica that is asleep (a control
// plane waking) asks an apiserver whether it may take requests a second
// early: /readyz short of the two post-start hooks that begin with a
// one-second sleep (wait.Poll) and, on a cluster that ran before, only
// confirm what etcd holds; and an anonymous GET /version, which RBAC
// authorizes (system:public-info-viewer) only once its caches hold that
// binding. A variant without /version once answered a waking request 403
// (docs/architecture.md, "Hibernation").
const (
	WakePath    = ReadyPath + "&exclude=poststarthook/rbac/bootstrap-roles&exclude=poststarthook/scheduling/bootstrap-system-priority-classes"
	VersionPath = "/version"
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
	// Link is this replica's unix socket for its sibling, Peer the
	// sibling's; none: no sibling.
	Link, Peer string
	// Drain is how long a stopping replica without a sibling lets its
	// connections finish; default 1s.
	Drain time.Duration
	// Wait is how long a client's connection waits for an apiserver while
	// the replica is asleep (SleepPath: a hibernating control plane wakes
	// meanwhile, the reconciler asks AwaitPath); zero: it is closed at
	// once, as it is when the replica is awake.
	Wait time.Duration
	// Interval is how often each apiserver's /readyz is checked; default
	// lb's (200ms). IdleInterval is how often while the replica is idle
	// (lb.Config.IdleInterval); default DefaultIdleInterval.
	Interval, IdleInterval time.Duration
	Log                    *slog.Logger
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
	if (cfg.Link == "") != (cfg.Peer == "") {
		errs = append(errs, errors.New("a link needs both sockets"))
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
	// Linked: the sibling holds this replica's connections (and would
	// carry them on).
	Linked bool `json:"linked"`
	// Connections forwarded here, and the sibling's held here.
	Connections int `json:"connections"`
	Held        int `json:"held"`
	// Holding: what clients send waits (HoldPath).
	Holding bool `json:"holding,omitempty"`
	// Clients are the connections forwarded here that are not the
	// owner's (skiff's own), LastClient when one last opened or ended.
	Clients    int       `json:"clients"`
	LastClient time.Time `json:"lastClient"`
	// Asleep: the control plane hibernates (SleepPath); Waiting are the
	// connections waiting for an apiserver (Config.Wait).
	Asleep  bool `json:"asleep,omitempty"`
	Waiting int  `json:"waiting,omitempty"`
}

// Control paths of an endpoint replica's status server (POST).
const (
	// HoldPath holds what clients send to the apiservers for the
	// duration in the query's "for" (Go syntax, lb.MaxHold at most):
	// the control plane's etcd is about to move its leadership, and a
	// write reaching etcd then would be dropped.
	HoldPath = "/hold"
	// ReleasePath ends a hold.
	ReleasePath = "/release"
	// SleepPath tells the replica that the apiservers are being stopped
	// on purpose (the control plane hibernates): until one is ready again,
	// a client's connection waits for it (Config.Wait) instead of being
	// closed.
	SleepPath = "/sleep"
	// AwaitPath answers 200 as soon as a client's connection waits for an
	// apiserver (at once if one does), 204 when the query's "for" (Go
	// syntax, a minute at most) passes first: how the reconciler of a
	// hibernating control plane learns, without polling, that a client
	// wants it.
	AwaitPath = "/await-client"
)

// controls are the replica's control paths.
func controls(bal *lb.Balancer) map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		HoldPath: func(w http.ResponseWriter, r *http.Request) {
			d, err := time.ParseDuration(r.URL.Query().Get("for"))
			if err != nil || d <= 0 {
				http.Error(w, "hold: the query's \"for\" must be a positive duration", http.StatusBadRequest)
				return
			}
			bal.Hold(d)
			w.WriteHeader(http.StatusNoContent)
		},
		ReleasePath: func(w http.ResponseWriter, r *http.Request) {
			bal.Release()
			w.WriteHeader(http.StatusNoContent)
		},
		SleepPath: func(w http.ResponseWriter, r *http.Request) {
			bal.Sleep()
			w.WriteHeader(http.StatusNoContent)
		},
		AwaitPath: func(w http.ResponseWriter, r *http.Request) {
			d, err := time.ParseDuration(r.URL.Query().Get("for"))
			if err != nil || d <= 0 {
				http.Error(w, "await: the query's \"for\" must be a positive duration", http.StatusBadRequest)
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), min(d, time.Minute))
			defer cancel()
			if bal.AwaitClient(ctx) {
				w.WriteHeader(http.StatusOK)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		},
	}
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
	tc := &tls.Config{RootCAs: pool}
	wake, version := lb.HTTPSCheck(tc, WakePath), lb.HTTPSCheck(tc, VersionPath)
	wakeCheck := func(ctx context.Context, addr string) error {
		if err := wake(ctx, addr); err != nil {
			return err
		}
		if err := version(ctx, addr); err != nil {
			cfg.Log.Info("waking: ready but for RBAC's caches", "backend", addr, "err", err)
			return err
		}
		return nil
	}
	bal := lb.New(lb.Config{Name: cfg.Name, Check: lb.HTTPSCheck(tc, ReadyPath), WakeCheck: wakeCheck, WakeInterval: wakeInterval, Wait: cfg.Wait, Own: cfg.Own, Interval: cfg.Interval, IdleInterval: cmp.Or(cfg.IdleInterval, DefaultIdleInterval), Log: cfg.Log})
	bal.SetAccess(lb.PublicAccess(cfg.PublicAccess, cfg.PublicCIDRs, cfg.Own))
	bal.SetBackends(cfg.Backends)
	if cfg.Link != "" {
		if err := bal.Pair(cfg.Link, cfg.Peer); err != nil {
			bal.Close()
			return fmt.Errorf("endpoint: link: %w", err)
		}
	}
	if err := bal.Listen(cfg.Listen); err != nil {
		bal.Close()
		return err
	}
	st := &state{listening: []string{cfg.Listen}}

	srv, err := status.Start(status.Config{Addr: cfg.Status, Controls: controls(bal)}, func() (any, error) {
		clients, last := bal.Clients()
		return Status{Healthy: bal.Healthy(), Listening: st.list(), Linked: bal.Linked(),
			Connections: bal.Active(), Held: bal.Held(), Holding: bal.Holding(),
			Clients: clients, LastClient: last, Asleep: bal.Asleep(), Waiting: bal.Waiting()}, nil
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
	key := "" // what is served: the address in one namespace (by inode)
	shown := na.String()
	for {
		cur, err := nsInode(na.Namespace)
		next := fmt.Sprintf("%s@%d", shown, cur)
		if key != "" && (err != nil || next != key) {
			log.Info("endpoint's namespace changed; listening again", "at", shown)
			bal.Unlisten(key)
			key = ""
			st.set(shown, false)
		}
		if key == "" && err == nil {
			lerr := bal.ListenKey(next, false, func() (int, error) {
				fd := -1
				err := vpcnet.In(na.Namespace, func() error {
					var err error
					fd, err = lb.ListenFD(na.Addr)
					return err
				})
				return fd, err
			})
			if lerr == nil {
				key = next
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

// Sleep tells the replica whose status server is at addr that the
// apiservers are being stopped on purpose (SleepPath).
func Sleep(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+SleepPath, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("put the endpoint at %s to sleep: %s", addr, resp.Status)
	}
	return nil
}

// Await long-polls the replica whose status server is at addr for d
// (AwaitPath): true as soon as a client's connection waits for an
// apiserver, false when d passed first.
func Await(ctx context.Context, addr string, d time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, d+2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+AwaitPath+"?for="+d.String(), nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNoContent:
		return false, nil
	}
	return false, fmt.Errorf("await a client at %s: %s", addr, resp.Status)
}
