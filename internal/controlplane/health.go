package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"k8s.io/client-go/util/cert"

	"skiff.dev/skiff/internal/runtime"
)

// prober checks whether one instance is alive. It asks each component for
// its own liveness, not for the health of its dependencies: an apiserver
// whose etcd is briefly away must not be killed for it.
type prober struct {
	apiserver *http.Client // trusts the cluster CA
	insecure  *http.Client // controller-manager and scheduler serve self-signed certs
	etcd      *http.Client // trusts the etcd CA, with skiff's etcd client certificate
}

// close drops the prober's idle connections.
func (p *prober) close() {
	if p == nil {
		return
	}
	for _, c := range []*http.Client{p.apiserver, p.insecure, p.etcd} {
		c.CloseIdleConnections()
	}
}

// newProber makes the probes of the cluster whose PKI l holds.
func newProber(l Layout) (*prober, error) {
	ca, err := l.CAPEM()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("parse cluster CA")
	}
	// etcd serves /health on its metrics listener with its client TLS
	// (client certificates required), not in clear text.
	pair, err := tls.LoadX509KeyPair(l.pki("etcd/skiff-client.crt"), l.pki("etcd/skiff-client.key"))
	if err != nil {
		return nil, err
	}
	etcdCA, err := cert.NewPool(l.pki("etcd/ca.crt"))
	if err != nil {
		return nil, err
	}
	// One kept-alive connection per instance: a TLS handshake per probe
	// was most of skiff's own idle CPU (docs/performance.md). A GET on a
	// pooled connection that the instance closed (it was replaced) is
	// retried on a new one by net/http, so a replacement costs no failed
	// probe.
	mk := func(cfg *tls.Config) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 1, IdleConnTimeout: 30 * time.Second}}
	}
	return &prober{
		apiserver: mk(&tls.Config{RootCAs: pool}),
		insecure:  mk(&tls.Config{InsecureSkipVerify: true}), // loopback liveness only; nothing is sent
		etcd:      mk(&tls.Config{RootCAs: etcdCA, Certificates: []tls.Certificate{pair}}),
	}, nil
}

func (p *prober) probe(ctx context.Context, l Layout, spec runtime.Spec, index int) error {
	switch spec.Role {
	case runtime.Etcd:
		// Serializable: answers from the member itself, with or without a leader.
		body, err := get(ctx, p.etcd, "https://"+hostPort(l.EtcdIP(index), EtcdMetricsPort)+"/health?serializable=true")
		if err != nil {
			return err
		}
		var h struct{ Health string }
		if json.Unmarshal(body, &h) != nil || h.Health != "true" {
			return fmt.Errorf("etcd health: %s", body)
		}
		return nil
	case runtime.APIServer:
		body, err := get(ctx, p.apiserver, "https://"+hostPort(l.APIServerIP(index), APIServerPort)+"/livez?exclude=etcd&verbose")
		if err != nil && onlyHooks(body) {
			return startingError{err}
		}
		return err
	case runtime.ControllerManager:
		_, err := get(ctx, p.insecure, "https://"+hostPort(l.ControllerManagerIP(index), ControllerManagerPort)+"/healthz")
		return err
	case runtime.Scheduler:
		_, err := get(ctx, p.insecure, "https://"+hostPort(l.SchedulerIP(index), SchedulerPort)+"/healthz")
		return err
	}
	return fmt.Errorf("no probe for role %s", spec.Role)
}

func get(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return body, statusError{url, resp.Status}
	}
	return body, nil
}

// startingError: the apiserver answers, and only post-start hooks fail.
type startingError struct{ error }

func (e startingError) Unwrap() error { return e.error }

// onlyHooks says whether a verbose /livez answer fails post-start hooks
// only ("[-]poststarthook/NAME failed: …" lines).
func onlyHooks(body []byte) bool {
	failed := 0
	for _, line := range strings.Split(string(body), "\n") {
		if name, ok := strings.CutPrefix(line, "[-]"); ok {
			if !strings.HasPrefix(name, "poststarthook/") {
				return false
			}
			failed++
		}
	}
	return failed > 0
}

// statusError is an HTTP answer other than 200.
type statusError struct{ url, status string }

func (e statusError) Error() string { return "GET " + e.url + ": " + e.status }
