package controlplane

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// EgressDir holds the clusters' egress sockets (a unix socket's path is
// limited to 108 bytes, which a data dir may exceed).
const EgressDir = "/run/skiff-egress"

// EgressSocket is where skiff serves the cluster's egress proxy: the
// apiservers reach kubelets and pods (kubectl logs, exec, port-forward,
// proxy) through it, as EKS' control plane reaches nodes through its
// cross-account interfaces in the cluster's VPC. The apiservers run on the
// host; nodes and pods live in the VPC's namespace, which has no link to
// the host: the proxy dials from inside that namespace.
func (l Layout) EgressSocket() string {
	sum := sha256.Sum256([]byte(l.Dir))
	return filepath.Join(EgressDir, hex.EncodeToString(sum[:10])+".sock")
}

// ControlPlaneEgressSocket is where skiff serves the apiservers'
// "controlplane" egress: the token-review webhook and every webhook given
// by URL (admission, conversion, authentication, audit). Only the
// cluster's own authenticator is dialled from the host; any other URL is
// dialled inside the cluster's VPC, as the cluster's traffic is, so a
// tenant's webhook URL cannot reach the host (127.x, skiff's API) or
// another cluster.
func (l Layout) ControlPlaneEgressSocket() string {
	sum := sha256.Sum256([]byte(l.Dir))
	return filepath.Join(EgressDir, hex.EncodeToString(sum[:10])+"-cp.sock")
}

// controlPlaneDialer dials the cluster's own authenticator directly and
// anything else with inVPC.
func (l Layout) controlPlaneDialer(inVPC Dialer) Dialer {
	own := hostPort(l.WebhookIP(), WebhookPort)
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if addr == own {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
		return inVPC(ctx, addr)
	}
}

// EgressConfigPath is the apiservers' EgressSelectorConfiguration.
func (l Layout) EgressConfigPath() string { return filepath.Join(l.Dir, "egress-selector.yaml") }

// egressConfig sends the apiservers' "cluster" traffic (kubelets, pods,
// services) through the egress socket with HTTP CONNECT, and their
// "controlplane" traffic (webhooks by URL, skiff's authenticator among
// them) through the control-plane socket; etcd goes direct.
func (l Layout) egressConfig() string {
	return fmt.Sprintf(`apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: %s
- name: controlplane
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: %s
- name: etcd
  connection:
    proxyProtocol: Direct
`, l.EgressSocket(), l.ControlPlaneEgressSocket())
}

// Dialer connects to an address inside a cluster's network (a node or a
// pod), or refuses an address that is not the cluster's.
type Dialer func(ctx context.Context, addr string) (net.Conn, error)

// egress is a cluster's HTTP CONNECT proxy on a unix socket that only root
// (the apiservers) can open.
type egress struct {
	path string
	srv  *http.Server
	log  *slog.Logger
	wg   sync.WaitGroup
}

func startEgress(path string, dial Dialer, log *slog.Logger) (*egress, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("egress socket dir: %w", err)
	}
	os.Remove(path) // left by a previous run
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("egress socket: %w", err)
	}
	os.Chmod(path, 0o600)
	e := &egress{path: path, log: log}
	e.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.connect(w, r, dial) }),
		ReadHeaderTimeout: 10 * time.Second}
	go e.srv.Serve(ln)
	return e, nil
}

func (e *egress) connect(w http.ResponseWriter, r *http.Request, dial Dialer) {
	if r.Method != http.MethodConnect {
		http.Error(w, "this is skiff's egress proxy for the cluster's apiservers: CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	up, err := dial(ctx, r.Host)
	cancel()
	if err != nil {
		e.log.Debug("egress refused", "target", r.Host, "err", err)
		http.Error(w, fmt.Sprintf("connect %s: %v", r.Host, err), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		http.Error(w, "cannot hijack", http.StatusInternalServerError)
		return
	}
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
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		pipe(down, io.MultiReader(buf, down), up)
	}()
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

// Close stops the proxy; open tunnels end with their connections.
func (e *egress) Close() error {
	if e == nil {
		return nil
	}
	err := e.srv.Close()
	if rerr := os.Remove(e.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}
