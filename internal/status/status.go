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
	"time"
)

// Serve answers GET /healthz on addr with report's value (JSON), or 503
// and its error; Close the server to stop.
func Serve(addr string, report func() (any, error)) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("status server: %w", err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	})}
	go srv.Serve(ln)
	return srv, nil
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

var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
