package authenticator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"skiff.dev/skiff/internal/access"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/pki"
	"skiff.dev/skiff/internal/status"
	"skiff.dev/skiff/internal/status/statustest"
)

// TestRunTimeouts: Run's webhook (TLS, the apiservers' client certificate)
// and its status server cut a client that never starts the handshake,
// sends half a header, sends its body too slowly or idles, with the
// Config's timeouts; a client that behaves is served (issue 15).
func TestRunTimeouts(t *testing.T) {
	to := status.Timeouts{Header: 200 * time.Millisecond, Read: time.Second, Idle: 2 * time.Second}
	cfg, client := runConfig(t, to)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitStatus(t, cfg.Status, done)

	dialTCP := func(addr string) func(t *testing.T) net.Conn {
		return func(t *testing.T) net.Conn {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}
	}
	body := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"not-an-iam-token"}}`
	t.Run("Webhook", func(t *testing.T) {
		t.Parallel()
		statustest.Run(t, statustest.Harness{
			Timeouts: to,
			Raw:      dialTCP(cfg.Listen),
			Dial: func(t *testing.T) net.Conn {
				c := dialTCP(cfg.Listen)(t)
				tc := tls.Client(c, client)
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := tc.Handshake(); err != nil {
					t.Fatalf("TLS handshake with the apiservers' certificate: %v", err)
				}
				c.SetDeadline(time.Time{})
				return tc
			},
			Request: fmt.Sprintf("POST /authenticate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body),
			Status:  http.StatusOK,
		})
	})
	t.Run("Status", func(t *testing.T) {
		t.Parallel()
		statustest.Run(t, statustest.Harness{
			Timeouts: to,
			Dial:     dialTCP(cfg.Status),
			Request:  "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
			Status:   http.StatusOK,
		})
	})
}

// runConfig writes what Run needs (certificates, material, a kubeconfig
// nothing dials) and returns its Config and the apiservers' TLS client
// configuration.
func runConfig(t *testing.T, to status.Timeouts) (Config, *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	const clientCN = "kube-apiserver-authn-client"
	err := pki.Ensure(dir, pki.Spec{Certs: []pki.Cert{
		{Name: "authn", CA: pki.ClusterCA, CN: "authn", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true},
		{Name: "client", CA: pki.ClusterCA, CN: clientCN, Client: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	material := filepath.Join(dir, "material.json")
	if _, err := WriteMaterial(material, &Material{Cluster: model.Cluster{Name: "web", AuthenticationMode: access.ModeAPI}}); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	err = os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Listen: freeAddr(t), Status: freeAddr(t), CertFile: pki.Path(dir, "authn", ".crt"), KeyFile: pki.Path(dir, "authn", ".key"),
		ClientCAFile: pki.Path(dir, "ca", ".crt"), ClientCN: clientCN, Material: material, Kubeconfig: kubeconfig,
		Timeouts: to, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	cert, err := tls.LoadX509KeyPair(pki.Path(dir, "client", ".crt"), pki.Path(dir, "client", ".key"))
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := os.ReadFile(cfg.ClientCAFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return cfg, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}}
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitStatus waits until the status server answers (Run serves).
func waitStatus(t *testing.T, addr string, done <-chan error) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("Run returned: %v", err)
		default:
		}
		if status.Get(context.Background(), addr, nil) == nil {
			return
		}
	}
	t.Fatal("the authenticator did not serve within 10 s")
}
