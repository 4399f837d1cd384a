package endpoint

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"skiff.dev/skiff/internal/status"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestReplicas: two replicas share one address; the pool is reported;
// when one stops, every new connection goes to the other; with public
// access off, only the owner's address gets in.
func TestReplicas(t *testing.T) {
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok "+r.URL.Path)
	}))
	defer api.Close()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := freeAddr(t)
	start := func(cfg Config) (string, context.CancelFunc, chan error) {
		cfg.Listen, cfg.Backends, cfg.CAFile, cfg.PublicAccess = listen, []string{api.Listener.Addr().String()}, ca, true
		if cfg.Status == "" {
			cfg.Status = freeAddr(t)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, cfg) }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := Get(context.Background(), cfg.Status)
			if err == nil && len(st.Healthy) == 1 && st.Listening[0] == listen {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica not serving: %+v %v", st, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		return cfg.Status, cancel, done
	}
	statusA, stopA, doneA := start(Config{Name: "a"})
	_, stopB, doneB := start(Config{Name: "b"})
	defer stopB()

	pool := x509.NewCertPool()
	pool.AddCert(api.Certificate())
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	ask := func() error {
		resp, err := client.Get("https://" + listen + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "ok /readyz" {
			return fmt.Errorf("answer %q", body)
		}
		return nil
	}
	for i := range 20 {
		if err := ask(); err != nil {
			t.Fatalf("request %d through both replicas: %v", i, err)
		}
	}
	// The hold control: POST only, a positive duration; the report says
	// it holds until released.
	bg := context.Background()
	for _, q := range []url.Values{nil, {"for": {"-1s"}}, {"for": {"soon"}}} {
		if err := status.Post(bg, statusA, HoldPath, q); err == nil || !strings.Contains(err.Error(), "400") {
			t.Errorf("hold %v: %v, want 400", q, err)
		}
	}
	if resp, err := http.Get("http://" + statusA + HoldPath + "?for=1s"); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: %v %v, want 405", HoldPath, resp, err)
	}
	if err := status.Post(bg, statusA, HoldPath, url.Values{"for": {"10s"}}); err != nil {
		t.Fatal(err)
	}
	if st, err := Get(bg, statusA); err != nil || !st.Holding {
		t.Errorf("after a hold: %+v %v", st, err)
	}
	if err := status.Post(bg, statusA, ReleasePath, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := Get(bg, statusA); err != nil || st.Holding {
		t.Errorf("after the release: %+v %v", st, err)
	}
	stopA()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	if _, err := Get(context.Background(), statusA); err == nil {
		t.Error("a stopped replica still answers its status")
	}
	for i := range 50 {
		if err := ask(); err != nil {
			t.Fatalf("request %d after one replica stopped: %v", i, err)
		}
	}
	stopB()
	<-doneB

	// Public access off: a client that is not the owner is refused; the
	// owner gets in.
	_, stopC, doneC := start(Config{Name: "c"})
	stopC()
	<-doneC
	cfg := Config{Name: "private", Listen: listen, Backends: []string{api.Listener.Addr().String()}, CAFile: ca,
		Status: freeAddr(t)}
	cfg.PublicAccess = false
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Run(ctx, cfg)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, err := Get(context.Background(), cfg.Status); err == nil && len(st.Healthy) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("private replica not up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := ask(); err == nil || !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
		t.Errorf("public access off: got %v, want the connection closed", err)
	}
}

func TestParseNamespaceAddr(t *testing.T) {
	for in, ok := range map[string]bool{"vpc-1=10.0.0.5:443": true, "=10.0.0.5:443": false, "vpc-1": false, "vpc-1=10.0.0.5": false, "a=b=c": false} {
		na, err := ParseNamespaceAddr(in)
		if (err == nil) != ok {
			t.Errorf("%q: %+v, %v", in, na, err)
		}
		if ok && na.String() != in {
			t.Errorf("%q round trips to %q", in, na.String())
		}
	}
}
