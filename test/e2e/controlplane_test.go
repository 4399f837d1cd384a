package e2e

import (
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"skiff.dev/skiff/internal/controlplane"
)

func TestControlPlaneCreate(t *testing.T) {
	e := newEngineEnv(t)
	start := time.Now()
	e.create(t, "alpha")
	c := waitStatus(t, e.svc, "alpha", "ACTIVE", 2*time.Minute)
	t.Logf("alpha ACTIVE after %v at %s", time.Since(start), c.Endpoint)
	kc := e.adminKubeconfig(c)
	anonAPI := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if out := mustKubectl(t, kc, "get", "--raw", "/readyz"); strings.TrimSpace(out) != "ok" {
		t.Errorf("/readyz = %q", out)
	}
	out := mustKubectl(t, kc, "get", "ns", "-o", "name")
	for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		if !strings.Contains(out, "namespace/"+ns+"\n") {
			t.Errorf("namespace %s missing from %q", ns, out)
		}
	}
	if out := mustKubectl(t, kc, "get", "--raw", "/version"); !strings.Contains(out, `"gitVersion": "v1.37.2"`) {
		t.Errorf("/version = %s", out)
	}

	// Issue 15: anonymous requests reach the health and version endpoints
	// only; anything else is 401 (not left to RBAC).
	for path, want := range map[string]int{"/readyz": 200, "/livez": 200, "/version": 200, "/api": 401, "/api/v1/namespaces": 401, "/openapi/v2": 401} {
		resp, err := anonAPI.Get("https://" + net.JoinHostPort(e.engine.Layout(c).APIServerIP(0).String(), strconv.Itoa(controlplane.APIServerPort)) + path)
		if err != nil || resp.StatusCode != want {
			t.Errorf("anonymous GET %s: %v %v, want %d", path, resp, err, want)
			continue
		}
		resp.Body.Close()
	}

	// Issue 15: a webhook given by URL is not dialled from the host. The
	// test listens on the host's loopback and registers itself as a
	// validating webhook (failurePolicy Ignore): a ConfigMap is created,
	// and nothing may have connected to the listener.
	hook, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hook.Close()
	var dialled atomic.Int32
	go func() {
		for {
			c, err := hook.Accept()
			if err != nil {
				return
			}
			dialled.Add(1)
			c.Close()
		}
	}()
	whc := filepath.Join(t.TempDir(), "webhook.yaml")
	os.WriteFile(whc, []byte(`apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: host-probe}
webhooks:
- name: host-probe.skiff.dev
  clientConfig: {url: "https://`+hook.Addr().String()+`/validate"}
  rules: [{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [configmaps]}]
  failurePolicy: Ignore
  sideEffects: None
  admissionReviewVersions: [v1]
  timeoutSeconds: 3
`), 0o600)
	mustKubectl(t, kc, "apply", "-f", whc)
	time.Sleep(2 * time.Second) // the webhook configuration reaches every apiserver
	for i := range 4 {
		mustKubectl(t, kc, "create", "configmap", "probe-"+strconv.Itoa(i))
	}
	if n := dialled.Load(); n > 0 {
		t.Errorf("an apiserver connected %d times to a webhook URL on the host's loopback", n)
	}
	mustKubectl(t, kc, "delete", "validatingwebhookconfiguration", "host-probe")

	// Issue 15: etcd's metrics listener speaks TLS and wants a client
	// certificate of the cluster's etcd CA (skiff's prober has one).
	l := e.engine.Layout(c)
	metrics := net.JoinHostPort(l.EtcdIP(0).String(), strconv.Itoa(controlplane.EtcdMetricsPort))
	if resp, err := http.Get("http://" + metrics + "/metrics"); err == nil {
		if resp.StatusCode == 200 {
			t.Errorf("etcd metrics in clear text: %d", resp.StatusCode)
		}
		resp.Body.Close()
	}
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if resp, err := anon.Get("https://" + metrics + "/metrics"); err == nil {
		t.Errorf("etcd metrics without a client certificate: %d", resp.StatusCode)
		resp.Body.Close()
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(l.PKIDir(), "etcd", "skiff-client.crt"), filepath.Join(l.PKIDir(), "etcd", "skiff-client.key"))
	if err != nil {
		t.Fatal(err)
	}
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{pair}}}}
	if resp, err := withCert.Get("https://" + metrics + "/health"); err != nil || resp.StatusCode != 200 {
		t.Errorf("etcd /health with skiff's client certificate: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}
