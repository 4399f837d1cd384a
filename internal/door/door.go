// Package door is a VPC's front door, run as an instance of its own
// (`skiff door`, one per cluster with a VPC) so that nodes and pods keep
// what they need of skiff while skiff is down or being replaced:
//
//   - the registry: skiff's registry storage served read-only on the VPC's
//     service address (RegistryPort), to anyone for the system images and
//     to the account's nodes (their pull credentials) for the account's
//     own, as skiff serve did in-process;
//   - skiff's AWS API (APIPort): a proxy to the unix socket on which skiff
//     serve answers that VPC only. The socket, not anything the caller
//     sends, tells skiff the caller's VPC; the door passes the caller's
//     address in a header that skiff believes on that socket only. While
//     skiff is away the door holds a request for a moment, then answers
//     503 ServiceUnavailable, which AWS SDKs and the CLI retry.
//
// What it needs of skiff's store, the pull key and the account's node IDs,
// comes in a material file that the cluster's reconciler writes (0600) and
// that it reads again when it changes. Several clusters of one VPC each run
// one; they share the addresses with SO_REUSEPORT.
package door

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/netutil"

	"skiff.dev/skiff/internal/api/awserr"
	"skiff.dev/skiff/internal/lb"
	"skiff.dev/skiff/internal/material"
	"skiff.dev/skiff/internal/network"
	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/status"
	"skiff.dev/skiff/internal/vpcnet"
)

// Material is what the door checks node credentials with.
type Material struct {
	Account string   `json:"account"`
	Key     []byte   `json:"key"`   // the pull key (registry.PullToken)
	Nodes   []string `json:"nodes"` // the account's node IDs, sorted
}

// Door is what a cluster's door serves, as the node reconciler knows it.
type Door struct {
	VPC       string // the VPC's ID
	Netns     string // the VPC's network namespace
	Listen    string // the registry's address there (HOST:PORT)
	Dir       string // the registry's storage
	API       string // skiff's API's address there (HOST:PORT)
	APISocket string // where skiff serve answers this VPC
	Material  Material
}

// ClientHeader carries the caller's address (HOST:PORT in the VPC) from
// the door to skiff's API socket for the VPC, which takes it as the
// request's remote address (aws:SourceIp). The door sets it on every
// request it forwards, replacing what a caller sent.
const ClientHeader = "X-Skiff-Door-Client"

// WriteMaterial writes m to path (0600) unless it holds m already.
func WriteMaterial(path string, m Material) error {
	slices.Sort(m.Nodes)
	_, err := material.Write(path, m)
	return err
}

// Config of a door.
type Config struct {
	Name     string // for logs: the cluster's
	VPC      string // requests carry it in their context
	Netns    string // the namespace to listen in
	Listen   string // the registry's HOST:PORT in Netns
	Dir      string // the registry's storage
	Material string // the material file
	// API is skiff's API's HOST:PORT in Netns, forwarded to APISocket.
	API, APISocket string
	// Hold is how long a request for skiff's API waits for skiff to
	// answer its socket before the door answers 503; default 3s.
	Hold   time.Duration
	Status string // the status server's address (HOST:PORT)
	// Limits of the clients in the VPC (nodes, and pods: anything in the
	// VPC can reach the service address).
	Header, Read, Idle time.Duration // defaults 10s, 30s, 90s
	Conns              int           // served at once; default 256
	Log                *slog.Logger
}

// Validate checks cfg and fills in defaults.
func (cfg *Config) Validate() error {
	var errs []error
	for name, v := range map[string]string{"namespace": cfg.Netns, "listen address": cfg.Listen, "registry dir": cfg.Dir,
		"material file": cfg.Material, "status address": cfg.Status} {
		if v == "" {
			errs = append(errs, errors.New("no "+name))
		}
	}
	if (cfg.API == "") != (cfg.APISocket == "") {
		errs = append(errs, errors.New("the API's address and socket go together"))
	}
	if cfg.Hold == 0 {
		cfg.Hold = 3 * time.Second
	}
	if cfg.Header == 0 {
		cfg.Header = 10 * time.Second
	}
	if cfg.Read == 0 {
		cfg.Read = 30 * time.Second
	}
	if cfg.Idle == 0 {
		cfg.Idle = 90 * time.Second
	}
	if cfg.Conns == 0 {
		cfg.Conns = 256
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return errors.Join(errs...)
}

// Run serves until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("door: %w", err)
	}
	reg, err := registry.OpenShared(ctx, cfg.Dir, io.Discard)
	if err != nil {
		return err
	}
	defer reg.Close()
	mat := &material.File[Material]{Path: cfg.Material}
	if _, err := mat.Get(); err != nil {
		return fmt.Errorf("door: %w", err)
	}
	server := func(h http.Handler) *http.Server {
		return &http.Server{Handler: h, ReadHeaderTimeout: cfg.Header, ReadTimeout: cfg.Read, IdleTimeout: cfg.Idle,
			BaseContext: func(net.Listener) context.Context { return network.WithVPC(context.Background(), cfg.VPC) }}
	}
	doors := []*listener{{addr: cfg.Listen, srv: server(handler(reg, mat))}}
	if cfg.API != "" {
		doors = append(doors, &listener{addr: cfg.API, srv: server(APIProxy(cfg.APISocket, cfg.Hold, cfg.Log))})
	}
	var listening sync.Map
	st, err := status.Serve(cfg.Status, func() (any, error) {
		at := map[string]string{}
		for _, d := range doors {
			if _, ok := listening.Load(d.addr); !ok {
				return nil, errors.New("not listening on " + d.addr + " in " + cfg.Netns + " yet")
			}
			at[d.addr] = cfg.Netns
		}
		return map[string]any{"listening": at}, nil
	})
	if err != nil {
		return err
	}
	defer st.Close()
	cfg.Log.Info("door serving", "cluster", cfg.Name, "netns", cfg.Netns, "registry", cfg.Listen, "api", cfg.API)
	defer func() {
		for _, d := range doors {
			d.close()
		}
	}()
	for {
		cur, err := nsInode(cfg.Netns)
		for _, d := range doors {
			if d.ln != nil && (err != nil || cur != d.ino) { // the namespace was made anew
				d.close()
				listening.Delete(d.addr)
			}
			if d.ln == nil && err == nil {
				if lerr := vpcnet.In(cfg.Netns, func() error {
					var err error
					d.ln, err = lb.ListenShared(d.addr)
					return err
				}); lerr == nil {
					d.ino = cur
					go d.srv.Serve(netutil.LimitListener(d.ln, cfg.Conns))
					listening.Store(d.addr, true)
				} else {
					cfg.Log.Debug("listen in namespace; retrying", "addr", d.addr, "err", lerr)
				}
			}
		}
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			for _, d := range doors {
				d.srv.Shutdown(sctx)
			}
			return nil
		case <-time.After(time.Second):
		}
	}
}

// listener is one address a door serves in the VPC's namespace.
type listener struct {
	addr string
	srv  *http.Server
	ln   net.Listener // nil while not listening
	ino  uint64       // the namespace ln lives in
}

func (l *listener) close() {
	if l.ln != nil {
		l.ln.Close()
		l.ln = nil
	}
}

// APIProxy forwards requests to skiff's API on socket, with the caller's
// address in ClientHeader. A request waits up to hold for the socket to
// answer (a skiff restart takes about a second); then it gets an AWS-shaped
// 503 ServiceUnavailable, which AWS SDKs and the CLI retry.
func APIProxy(socket string, hold time.Duration, log *slog.Logger) http.Handler {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			deadline := time.Now().Add(hold)
			for {
				var d net.Dialer
				c, err := d.DialContext(ctx, "unix", socket)
				if err == nil || !time.Now().Before(deadline) {
					return c, err
				}
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(100 * time.Millisecond):
				}
			}
		},
		// A connection per request: a unix socket costs microseconds to
		// dial, and a pooled one that a restarted skiff closed would fail
		// the request sent on it (a body cannot be sent again).
		DisableKeepAlives: true,
	}
	return &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			// Out.Host stays the caller's Host: SigV4 signs it.
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "skiff"
			pr.Out.Header.Del(ClientHeader)
			pr.Out.Header.Set(ClientHeader, pr.In.RemoteAddr)
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("skiff's API is not answering", "err", err)
			e := awserr.New(http.StatusServiceUnavailable, "ServiceUnavailable",
				"skiff's API is restarting or unavailable; retry the request")
			switch ct := r.Header.Get("Content-Type"); {
			case strings.Contains(ct, "x-amz-json"):
				awserr.WriteJSON11(w, e)
			case strings.Contains(ct, "json") || strings.HasPrefix(r.URL.Path, "/clusters"):
				awserr.WriteJSON(w, e)
			default: // the query protocols (STS, IAM), and anything else
				awserr.WriteQuery(w, e)
			}
		},
	}
}

// handler serves reg read-only to the account's nodes as the material
// file says now.
func handler(reg *registry.Registry, mat *material.File[Material]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		m, err := mat.Get()
		if err != nil {
			http.Error(w, "door: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		reg.ReadOnlyFor(m.Account, registry.NodePull(m.Key, m.Account, func(id string) (bool, error) {
			return slices.Contains(m.Nodes, id), nil
		})).ServeHTTP(w, req)
	})
}

// nsInode identifies the namespace now at a name.
func nsInode(ns string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(vpcnet.NamespacePath(ns), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}
