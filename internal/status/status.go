// Package status is the plain-HTTP status server that skiff's own
// instances (a cluster's endpoint replicas, authenticators and tunnel)
// answer on, on a loopback address of their own: GET /healthz answers 200
// with a JSON report when the instance serves, 503 with why when not. It
// is the reconciler's probe of those instances.
package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Timeouts bound what one client may take of an instance's HTTP server:
// its request's headers (Header), the whole request (Read) and an idle
// keep-alive connection (Idle). A zero field takes the default's value.
type Timeouts struct {
	Header, Read, Idle time.Duration
}

// DefaultTimeouts are the status servers' (a probe sends a bare GET and
// does not keep its connection).
var DefaultTimeouts = Timeouts{Header: 5 * time.Second, Read: 10 * time.Second, Idle: 30 * time.Second}

// Or returns t with def's values where t has none.
func (t Timeouts) Or(def Timeouts) Timeouts {
	if t.Header <= 0 {
		t.Header = def.Header
	}
	if t.Read <= 0 {
		t.Read = def.Read
	}
	if t.Idle <= 0 {
		t.Idle = def.Idle
	}
	return t
}

// Apply sets srv's timeouts to t (def's where t has none) and returns srv.
func (t Timeouts) Apply(srv *http.Server, def Timeouts) *http.Server {
	t = t.Or(def)
	srv.ReadHeaderTimeout, srv.ReadTimeout, srv.IdleTimeout = t.Header, t.Read, t.Idle
	return srv
}

// Config of a status server.
type Config struct {
	Addr     string // host:port
	Timeouts Timeouts
	// Controls are further POST paths the instance acts on (the
	// endpoint's /hold): what its reconciler may ask of it.
	Controls map[string]http.HandlerFunc
}

// Serve answers GET /healthz on addr with report's value (JSON), or 503
// and its error, with the default timeouts; Close the server to stop.
func Serve(addr string, report func() (any, error)) (*http.Server, error) {
	return Start(Config{Addr: addr}, report)
}

// Start serves as Serve does, on cfg.Addr with cfg.Timeouts; the server's
// Addr is the address it listens on.
func Start(cfg Config, report func() (any, error)) (*http.Server, error) {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("status server: %w", err)
	}
	srv := cfg.Timeouts.Apply(&http.Server{Addr: ln.Addr().String(), Handler: handler(report, cfg.Controls)}, DefaultTimeouts)
	go srv.Serve(ln)
	return srv, nil
}

// handler answers GET /healthz with report, and POSTs to controls.
func handler(report func() (any, error), controls map[string]http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := controls[r.URL.Path]; ok {
			if r.Method != http.MethodPost {
				w.Header().Set("Allow", http.MethodPost)
				http.Error(w, "POST only", http.StatusMethodNotAllowed)
				return
			}
			h(w, r)
			return
		}
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		v, err := report()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	})
}

// Get asks the status server at addr; a report is decoded into v (nil:
// ignored).
func Get(ctx context.Context, addr string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("status %s: %s: %s", addr, resp.Status, body)
	}
	if v == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("status %s: %w", addr, err)
	}
	return nil
}

// Post asks the instance whose status server is at addr to act: path is
// one of its Controls, query its parameters.
func Post(ctx context.Context, addr, path string, query url.Values) error {
	u := "http://" + addr + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("status %s%s: %s: %s", addr, path, resp.Status, body)
	}
	return nil
}

var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
