package e2e

import (
	"strings"
	"testing"
	"time"
)

func TestControlPlaneCreate(t *testing.T) {
	e := newEngineEnv(t)
	start := time.Now()
	e.create(t, "alpha")
	c := waitStatus(t, e.svc, "alpha", "ACTIVE", 2*time.Minute)
	t.Logf("alpha ACTIVE after %v at %s", time.Since(start), c.Endpoint)
	kc := e.adminKubeconfig(c)
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
}
