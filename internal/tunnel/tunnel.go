// Package tunnel is a cluster's egress from its apiservers (the role of
// EKS' cross-account interfaces in the cluster's VPC, or konnectivity's),
// run as an instance of its own (`skiff tunnel`) so that `kubectl logs`,
// `exec`, `port-forward` and webhooks keep working while skiff is down.
//
// It serves two HTTP CONNECT proxies on unix sockets that only root (the
// apiservers) can open, named by the apiservers' EgressSelectorConfiguration:
//   - "cluster": kubelets, pods and services, dialled inside the cluster's
//     VPC (a network namespace with no link to the host);
//   - "controlplane": every webhook given by URL (admission, conversion,
//     authentication). Only the cluster's own authenticator is dialled from
//     the host; any other URL is dialled inside the VPC, as the cluster's
//     traffic is, so a tenant's webhook URL cannot reach the host (127.x,
//     skiff's API) or another cluster.
//
// Inside the VPC only the cluster's nodes (listed in a file the reconciler
// keeps up to date) and the pod range may be dialled.
package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"skiff.dev/skiff/internal/material"
	"skiff.dev/skiff/internal/status"
	"skiff.dev/skiff/internal/vpcnet"
)

// Dialer connects to an address, or refuses it.
type Dialer func(ctx context.Context, addr string) (net.Conn, error)

// Config of a cluster's tunnel.
type Config struct {
	Name string // the cluster's, for errors and logs
	// ClusterSocket and ControlPlaneSocket are the two proxies' sockets.
	ClusterSocket, ControlPlaneSocket string
	// Namespace is the cluster's VPC namespace ("" : none yet, every dial
	// into the VPC is refused).
	Namespace string
	// Direct are the addresses the control-plane proxy dials from the host
	// (the cluster's authenticator).
	Direct []string
	// Nodes is the file listing the cluster's node addresses (a JSON array),
	// read again when it changes; PodRange holds every pod address.
	Nodes    string
	PodRange netip.Prefix
	// Status is where GET /healthz answers (host:port).
	Status string
	// Timeouts bound a CONNECT request (not the stream it opens) and an
	// idle connection of the proxies and the status server (zero fields:
	// proxyTimeouts and status.DefaultTimeouts).
	Timeouts status.Timeouts
	Log      *slog.Logger
}

// dialTimeout bounds the dial of a CONNECT.
const dialTimeout = 10 * time.Second

// proxyTimeouts are the proxies': Read bounds the CONNECT request and its
// dial (its context ends with Read), so it must exceed dialTimeout.
var proxyTimeouts = status.Timeouts{Header: 10 * time.Second, Read: 30 * time.Second, Idle: time.Minute}

// Validate checks cfg and fills in defaults.
func (cfg *Config) Validate() error {
	var errs []error
	if cfg.ClusterSocket == "" || cfg.ControlPlaneSocket == "" {
		errs = append(errs, errors.New("both sockets are needed"))
	}
	if cfg.Nodes == "" {
		errs = append(errs, errors.New("no nodes file"))
	}
	if !cfg.PodRange.IsValid() {
		errs = append(errs, errors.New("no pod range"))
	}
	if cfg.Status == "" {
		errs = append(errs, errors.New("no status address"))
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return errors.Join(errs...)
}

// Run serves until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("tunnel: %w", err)
	}
	nodes := &nodeList{f: material.File[[]netip.Addr]{Path: cfg.Nodes}}
	inVPC := InVPC(cfg.Name, cfg.Namespace, func(a netip.Addr) bool { return cfg.PodRange.Contains(a) || nodes.has(a) })
	cluster, err := Serve(cfg.ClusterSocket, inVPC, cfg.Timeouts, cfg.Log)
	if err != nil {
		return err
	}
	defer cluster.Close()
	cp, err := Serve(cfg.ControlPlaneSocket, ControlPlane(cfg.Direct, inVPC), cfg.Timeouts, cfg.Log)
	if err != nil {
		return err
	}
	defer cp.Close()
	st, err := status.Start(status.Config{Addr: cfg.Status, Timeouts: cfg.Timeouts}, func() (any, error) {
		addrs, err := nodes.f.Get()
		return map[string]int{"nodes": len(addrs)}, err
	})
	if err != nil {
		return err
	}
	defer st.Close()
	cfg.Log.Info("tunnel serving", "cluster", cfg.Name, "namespace", cfg.Namespace)
	<-ctx.Done()
	return nil
}

// InVPC dials inside namespace ns the addresses allowed says are the
// cluster's (its nodes and pods), and refuses any other.
func InVPC(cluster, ns string, allowed func(netip.Addr) bool) Dialer {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("egress to %q: %w", addr, err)
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return nil, fmt.Errorf("egress to %q: an IP address is required", addr)
		}
		if !allowed(ip.Unmap()) {
			return nil, fmt.Errorf("egress to %s: not a node or pod of cluster %s", addr, cluster)
		}
		if ns == "" {
			return nil, fmt.Errorf("egress to %s: cluster %s has no VPC network yet", addr, cluster)
		}
		return vpcnet.DialIn(ctx, ns, addr)
	}
}

// ControlPlane dials the direct addresses from the host and anything else
// with inVPC.
func ControlPlane(direct []string, inVPC Dialer) Dialer {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if slices.Contains(direct, addr) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
		return inVPC(ctx, addr)
	}
}

// WriteNodes writes the node addresses to path (atomically) unless it
// holds them already.
func WriteNodes(path string, addrs []netip.Addr) error {
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	_, err := material.Write(path, addrs)
	return err
}

// nodeList is the node file, read again when it changes.
type nodeList struct{ f material.File[[]netip.Addr] }

func (n *nodeList) has(a netip.Addr) bool {
	addrs, err := n.f.Get()
	return err == nil && slices.Contains(addrs, a)
}

// Proxy is an HTTP CONNECT proxy on a unix socket.
type Proxy struct {
	path string
	srv  *http.Server
	log  *slog.Logger
}

// Serve starts a proxy on a unix socket at path (mode 0600; a socket left
// there by an earlier run is replaced) that tunnels to what dial allows
// and answers 502 for what it refuses. t bounds the CONNECT request and
// idle connections (proxyTimeouts where t has none); an established
// tunnel has no deadline (kubectl exec, logs -f).
func Serve(path string, dial Dialer, t status.Timeouts, log *slog.Logger) (*Proxy, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("egress socket dir: %w", err)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("egress socket: %w", err)
	}
	os.Chmod(path, 0o600)
	p := &Proxy{path: path, log: log}
	p.srv = t.Apply(&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.connect(w, r, dial) })},
		proxyTimeouts)
	go p.srv.Serve(ln)
	return p, nil
}

func (p *Proxy) connect(w http.ResponseWriter, r *http.Request, dial Dialer) {
	if r.Method != http.MethodConnect {
		http.Error(w, "this is skiff's egress proxy for the cluster's apiservers: CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), dialTimeout)
	up, err := dial(ctx, r.Host)
	cancel()
	if err != nil {
		p.log.Debug("egress refused", "target", r.Host, "err", err)
		http.Error(w, fmt.Sprintf("connect %s: %v", r.Host, err), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		http.Error(w, "cannot hijack", http.StatusInternalServerError)
		return
	}
	// Hijack clears the server's deadlines (the request's): the stream
	// has none.
	down, buf, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	if _, err := down.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		up.Close()
		down.Close()
		return
	}
	go pipe(down, io.MultiReader(buf, down), up)
}

// pipe copies both ways until either side ends, then closes both.
func pipe(down net.Conn, downR io.Reader, up net.Conn) {
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(up, downR)
		if c, ok := up.(interface{ CloseWrite() error }); ok {
			c.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() {
		io.Copy(down, up)
		if c, ok := down.(interface{ CloseWrite() error }); ok {
			c.CloseWrite()
		}
		done <- struct{}{}
	}()
	<-done
	<-done
	up.Close()
	down.Close()
}

// Close stops the proxy and removes its socket; open tunnels end with
// their connections.
func (p *Proxy) Close() error {
	err := p.srv.Close()
	if rerr := os.Remove(p.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}
