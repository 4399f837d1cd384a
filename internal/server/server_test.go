package server

import (
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"skiff.dev/skiff/internal/api/router"
	"skiff.dev/skiff/internal/apitls"
	"skiff.dev/skiff/internal/clusters"
	"skiff.dev/skiff/internal/nodes"
	"skiff.dev/skiff/internal/status"
	"skiff.dev/skiff/internal/status/statustest"
)

func TestValidate(t *testing.T) {
	cfg := Config{DataDir: "rel"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(cfg.DataDir) || cfg.Listen != "127.0.0.1:7443" || cfg.Region != "us-east-1" ||
		cfg.Sandbox != nodes.SandboxUserNS || cfg.Quotas != clusters.DefaultQuotas || cfg.Log == nil {
		t.Errorf("defaults: %+v", cfg)
	}
	for name, bad := range map[string]Config{
		"no data dir":            {},
		"unknown sandbox":        {DataDir: "d", Sandbox: "vm"},
		"plain HTTP on 0.0.0.0":  {DataDir: "d", Listen: "0.0.0.0:7443", TLS: apitls.Config{Insecure: true}},
		"a key without its cert": {DataDir: "d", TLS: apitls.Config{KeyFile: "k.pem"}},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%s: valid", name)
		}
	}
}

// TestAPIServerTimeouts: the API's http.Server, over the real router,
// cuts a client that sends nothing, half a header, its body too slowly
// (the router's body deadline) or idles, and serves one that behaves;
// headers beyond 64 KiB are refused (issue 15).
func TestAPIServerTimeouts(t *testing.T) {
	to := status.Timeouts{Header: 200 * time.Millisecond, Read: time.Second, Idle: 2 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := apiServer(&router.Router{BodyTimeout: to.Read, LocalToken: "secret"}, to.Header, to.Idle)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	dial := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// Without the local token: the router's 403, on a kept connection.
	statustest.Run(t, statustest.Harness{Timeouts: to, Dial: dial,
		Request: "POST /skiff/v1/local/env HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", Status: http.StatusForbidden})

	for _, tc := range []struct {
		name   string
		header int
		status int
	}{{"small header", 1 << 10, http.StatusForbidden}, {"header over 64 KiB", 80 << 10, http.StatusRequestHeaderFieldsTooLarge}} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/skiff/v1/local/env", nil)
		req.Header.Set("X-Pad", strings.Repeat("x", tc.header))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}
	if d := apiServer(nil, apiHeaderTimeout, apiIdleTimeout); d.ReadHeaderTimeout != 10*time.Second || d.IdleTimeout != 2*time.Minute || d.ReadTimeout != 0 {
		t.Errorf("skiff serve's API server: header %v, idle %v, read %v (registry uploads need none)", d.ReadHeaderTimeout, d.IdleTimeout, d.ReadTimeout)
	}
}
