package controlplane

import (
	"slices"
	"strings"
	"testing"

	"skiff.dev/skiff/internal/bundle"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/runtime"
	"skiff.dev/skiff/internal/runtime/process"
)

func testCluster() *model.Cluster {
	return &model.Cluster{Name: "c", ID: "c-1", Slot: 7, APIServers: 3, Zones: []string{"a", "b", "c"}}
}

func arg(s runtime.Spec, flag string) string {
	for _, a := range s.Command {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

func TestSpecs(t *testing.T) {
	b := bundle.Bundle{Manifest: bundle.Manifest{KubernetesVersion: "v1.37.2", Binary: "kube"}, Dir: "/b"}
	c := testCluster()
	l := Layout{Slot: c.Slot, Cluster: c.ID, Dir: "/data/clusters/c-1", Place: process.New("/data", "/data/clusters", nil), Skiff: "/bin/skiff", Lean: "/bin/skiff-instance"}
	specs := l.Specs(c, b)
	var names []string
	for _, s := range specs {
		names = append(names, s.Name())
	}
	want := []string{"etcd-a", "etcd-b", "etcd-c", "apiserver-0", "apiserver-1", "apiserver-2",
		"controller-manager-0", "scheduler-0", "controller-manager-1", "scheduler-1", "endpoint-0", "endpoint-1", "authenticator-0", "authenticator-1", "tunnel"}
	if !slices.Equal(names, want) {
		t.Fatalf("instances %v, want %v", names, want)
	}
	for i, s := range specs {
		if indexOf(s) != map[string]int{"etcd-a": 0, "etcd-b": 1, "etcd-c": 2, "apiserver-0": 0, "apiserver-1": 1,
			"apiserver-2": 2, "controller-manager-0": 0, "scheduler-0": 0, "controller-manager-1": 1, "scheduler-1": 1,
			"endpoint-0": 0, "endpoint-1": 1, "authenticator-0": 0, "authenticator-1": 1, "tunnel": 0}[s.Name()] {
			t.Errorf("indexOf(%s) = %d", s.Name(), indexOf(s))
		}
		if s.Role == runtime.Endpoint || s.Role == runtime.Authenticator || s.Role == runtime.Tunnel {
			program := "/bin/skiff" // the lean instances run skiff-instance
			if s.Role != runtime.Authenticator {
				program = "/bin/skiff-instance"
			}
			if s.Command[0] != program || s.Command[1] != string(s.Role) {
				t.Errorf("%d: command %v", i, s.Command[:2])
			}
			continue
		}
		if s.Command[0] != "/b/kube" || s.Command[1] != string(s.Role) {
			t.Errorf("%d: command %v", i, s.Command[:2])
		}
	}
	// Each instance is a host of its own: the apiservers' identity leases
	// are named from the hostname.
	hosts := map[string]bool{}
	for _, s := range specs {
		if s.Role == runtime.Endpoint || s.Role == runtime.Authenticator || s.Role == runtime.Tunnel {
			continue
		}
		if s.Hostname == "" || hosts[s.Hostname] {
			t.Errorf("%s: hostname %q empty or taken", s.ID, s.Hostname)
		}
		hosts[s.Hostname] = true
	}
	if z := []string{specs[3].Zone, specs[4].Zone, specs[5].Zone}; !slices.Equal(z, []string{"a", "b", "c"}) {
		t.Errorf("apiserver zones %v", z)
	}
	// Issue 15: etcd's metrics and /health are served with TLS only.
	for _, sp := range specs[:3] {
		if got := arg(sp, "--listen-metrics-urls"); !strings.HasPrefix(got, "https://") || arg(sp, "--client-cert-auth") != "true" {
			t.Errorf("%s: metrics on %q, client-cert-auth %q", sp.Name(), got, arg(sp, "--client-cert-auth"))
		}
	}
	if got := arg(specs[3], "--etcd-servers"); got != "https://127.1.7.11:2379,https://127.1.7.12:2379,https://127.1.7.13:2379" {
		t.Errorf("etcd servers %s", got)
	}
	// Conformance: pods discover the service-account issuer in the cluster
	// (its JWKS on the same host), and the apiservers call Services'
	// webhooks and aggregated APIs at their endpoints (pods the egress
	// proxy reaches), not at ClusterIPs.
	for flag, want := range map[string]string{
		"--service-account-issuer":    "https://kubernetes.default.svc.cluster.local",
		"--service-account-jwks-uri":  "https://kubernetes.default.svc.cluster.local/openid/v1/jwks",
		"--enable-aggregator-routing": "true",
	} {
		if got := arg(specs[3], flag); got != want {
			t.Errorf("apiserver %s=%q, want %q", flag, got, want)
		}
	}
	if got := arg(specs[0], "--initial-cluster-state"); got != "new" {
		t.Errorf("first generation state %s", got)
	}

	// Replacing etcd-b changes etcd-b's spec only.
	c2 := testCluster()
	c2.Etcd.Generations = map[string]int{"etcd-b": 1}
	specs2 := l.Specs(c2, b)
	for i := range specs {
		changed := specs[i].Hash() != specs2[i].Hash()
		if changed != (specs[i].Name() == "etcd-b") {
			t.Errorf("%s changed=%v after etcd-b's replacement", specs[i].Name(), changed)
		}
	}
	eb := specs2[1]
	if arg(eb, "--name") != "etcd-b-1" || arg(eb, "--initial-cluster-state") != "existing" ||
		!strings.HasSuffix(arg(eb, "--data-dir"), "/etcd/etcd-b-1") ||
		arg(eb, "--initial-cluster") != "etcd-a=https://127.1.7.11:2380,etcd-b-1=https://127.1.7.12:2380,etcd-c=https://127.1.7.13:2380" {
		t.Errorf("replacement member args: %v", eb.Command)
	}
}

// TestEndpointSpecs: the endpoint's replicas share the address, front
// every apiserver, listen in the VPC once the cluster has an address there,
// and are not replaced by a version upgrade.
func TestEndpointSpecs(t *testing.T) {
	b := bundle.Bundle{Manifest: bundle.Manifest{KubernetesVersion: "v1.37.2", Binary: "kube"}, Dir: "/b"}
	c := testCluster()
	l := Layout{Slot: c.Slot, Cluster: c.ID, Dir: "/data/clusters/c-1", Place: process.New("/data", "/data/clusters", nil), Skiff: "/bin/skiff", Lean: "/bin/skiff-instance"}
	var eps []runtime.Spec
	for _, s := range l.Specs(c, b) {
		if s.Role == runtime.Endpoint {
			eps = append(eps, s)
		}
	}
	if len(eps) != EndpointReplicas || EndpointReplicas < 2 {
		t.Fatalf("%d endpoint replicas", len(eps))
	}
	if arg(eps[0], "--listen") != "127.1.7.1:443" || arg(eps[1], "--listen") != "127.1.7.1:443" ||
		arg(eps[0], "--status") == arg(eps[1], "--status") {
		t.Errorf("listen %s %s, status %s %s", arg(eps[0], "--listen"), arg(eps[1], "--listen"), arg(eps[0], "--status"), arg(eps[1], "--status"))
	}
	var backends []string
	for _, a := range eps[0].Command {
		if v, ok := strings.CutPrefix(a, "--backend="); ok {
			backends = append(backends, v)
		}
	}
	if !slices.Equal(backends, []string{"127.1.7.21:6443", "127.1.7.22:6443", "127.1.7.23:6443"}) {
		t.Errorf("backends %v", backends)
	}
	if got := arg(eps[0], "--listen-in"); got != "" {
		t.Errorf("listens in %q without a VPC address", got)
	}
	v := testCluster()
	v.Network.VpcID, v.EndpointAddr = "vpc-0abc", "10.0.1.5/24"
	ev := l.Specs(v, b)[10]
	if got := arg(ev, "--listen-in"); !strings.HasSuffix(got, "=10.0.1.5:443") || !strings.Contains(got, "0abc") {
		t.Errorf("--listen-in=%q", got)
	}
	up := bundle.Bundle{Manifest: bundle.Manifest{KubernetesVersion: "v1.38.0", Binary: "kube"}, Dir: "/b2"}
	if l.Specs(c, up)[10].Hash() != eps[0].Hash() {
		t.Error("a version upgrade replaces the endpoint")
	}
}
