package apitls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		c      Config
		listen string
		err    string
	}{
		{"own CA", Config{Dir: "d"}, "0.0.0.0:7443", ""},
		{"given files", Config{CertFile: "c", KeyFile: "k", CAFile: "ca"}, "[::]:7443", ""},
		{"insecure loopback", Config{Dir: "d", Insecure: true}, "127.0.0.1:7443", ""},
		{"insecure localhost", Config{Insecure: true}, "localhost:7443", ""},
		{"insecure ::1", Config{Insecure: true}, "[::1]:7443", ""},
		{"insecure 127.2", Config{Insecure: true}, "127.2.0.1:7443", ""},
		{"insecure all addresses", Config{Insecure: true}, ":7443", "not a loopback"},
		{"insecure 0.0.0.0", Config{Insecure: true}, "0.0.0.0:7443", "not a loopback"},
		{"insecure host name", Config{Insecure: true}, "skiff.example:7443", "not a loopback"},
		{"insecure private", Config{Insecure: true}, "10.1.2.3:7443", "not a loopback"},
		{"cert without key", Config{CertFile: "c"}, "127.0.0.1:7443", "go together"},
		{"key without cert", Config{KeyFile: "k"}, "127.0.0.1:7443", "go together"},
		{"ca without cert", Config{Dir: "d", CAFile: "ca"}, "127.0.0.1:7443", "needs --tls-cert-file"},
		{"insecure and files", Config{CertFile: "c", KeyFile: "k", Insecure: true}, "127.0.0.1:7443", "excludes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate(tc.listen)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("Validate(%q) = %v, want %q", tc.listen, err, tc.err)
			}
		})
	}
}

// get serves cfg on loopback and GETs it through a client trusting
// bundle, with host (the name the client checks) dialled at the listener.
func get(t *testing.T, cfg *tls.Config, bundle, host string) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(tls.NewListener(ln, cfg))
	defer srv.Close()
	tr, err := Transport(bundle)
	if err != nil {
		t.Fatal(err)
	}
	tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	}
	resp, err := (&http.Client{Transport: tr}).Get("https://" + net.JoinHostPort(host, "7443") + "/")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func leaf(t *testing.T, cfg *tls.Config) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestOwnCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	c := Config{Dir: dir}
	loop := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7443}
	cfg, bundle, err := c.Server(loop)
	if err != nil {
		t.Fatal(err)
	}
	if bundle != filepath.Join(dir, "ca.crt") {
		t.Fatalf("bundle = %q", bundle)
	}
	for _, host := range []string{"127.0.0.1", "localhost", "::1"} {
		if err := get(t, cfg, bundle, host); err != nil {
			t.Errorf("GET via %s trusting the bundle: %v", host, err)
		}
	}
	// The attacks: a client trusting only the system's roots, a name the
	// certificate does not have.
	if err := get(t, cfg, "", "127.0.0.1"); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("GET trusting only the system roots = %v, want unknown authority", err)
	}
	if err := get(t, cfg, bundle, "192.0.2.7"); err == nil || !strings.Contains(err.Error(), "192.0.2.7") {
		t.Errorf("GET via an address not in the certificate = %v, want a name mismatch", err)
	}
	for name, mode := range map[string]os.FileMode{"ca.crt": 0o644, "ca.key": 0o600, "server.key": 0o600} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v, want %v", name, err, fi.Mode().Perm(), mode)
		}
	}

	// A restart on the same address keeps the certificate; another address
	// gets a new one from the same CA.
	again, _, err := c.Server(loop)
	if err != nil || !leaf(t, again).Equal(leaf(t, cfg)) {
		t.Fatalf("second start: %v; certificate changed", err)
	}
	moved, bundle2, err := c.Server(&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 7443})
	if err != nil || bundle2 != bundle {
		t.Fatal(err, bundle2)
	}
	if err := get(t, moved, bundle, "192.0.2.7"); err != nil {
		t.Errorf("GET via the new address: %v", err)
	}

	// Bound to all addresses: every interface's address is named.
	all, _, err := c.Server(&net.TCPAddr{IP: net.IPv6unspecified, Port: 7443})
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLinkLocalUnicast() {
			if err := leaf(t, all).VerifyHostname(n.IP.String()); err != nil {
				t.Errorf("listening on all addresses: %v", err)
			}
		}
	}
}

func TestGivenFiles(t *testing.T) {
	own := filepath.Join(t.TempDir(), "tls")
	if _, _, err := (Config{Dir: own}).Server(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	c := Config{CertFile: filepath.Join(own, "server.crt"), KeyFile: filepath.Join(own, "server.key"), CAFile: filepath.Join(own, "ca.crt")}
	cfg, bundle, err := c.Server(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil || bundle != c.CAFile {
		t.Fatal(err, bundle)
	}
	if err := get(t, cfg, bundle, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	c.CAFile = ""
	if _, bundle, err := c.Server(nil); err != nil || bundle != "" {
		t.Fatalf("without a CA file: bundle %q, %v; want the system's roots", bundle, err)
	}
	c.KeyFile = c.CertFile
	if _, _, err := c.Server(nil); err == nil {
		t.Fatal("a certificate as its own key was accepted")
	}
	if cfg, bundle, err := (Config{Insecure: true}).Server(nil); cfg != nil || bundle != "" || err != nil {
		t.Fatal("insecure gave TLS")
	}
}
