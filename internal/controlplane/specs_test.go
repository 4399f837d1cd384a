package controlplane

import (
	"slices"
	"strings"
	"testing"
	"time"

	"skiff.dev/skiff/internal/bundle"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/runtime"
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
	l := Layout{Slot: c.Slot, Dir: "/data/clusters/c-1"}
	specs := l.Specs(c, b)
	var names []string
	for _, s := range specs {
		names = append(names, s.Name())
	}
	want := []string{"etcd-a", "etcd-b", "etcd-c", "apiserver-0", "apiserver-1", "apiserver-2",
		"controller-manager-0", "scheduler-0", "controller-manager-1", "scheduler-1"}
	if !slices.Equal(names, want) {
		t.Fatalf("instances %v, want %v", names, want)
	}
	for i, s := range specs {
		if indexOf(s) != map[string]int{"etcd-a": 0, "etcd-b": 1, "etcd-c": 2, "apiserver-0": 0, "apiserver-1": 1,
			"apiserver-2": 2, "controller-manager-0": 0, "scheduler-0": 0, "controller-manager-1": 1, "scheduler-1": 1}[s.Name()] {
			t.Errorf("indexOf(%s) = %d", s.Name(), indexOf(s))
		}
		if s.Command[0] != "/b/kube" || s.Command[1] != string(s.Role) {
			t.Errorf("%d: command %v", i, s.Command[:2])
		}
	}
	// Each instance is a host of its own: the apiservers' identity leases
	// are named from the hostname.
	hosts := map[string]bool{}
	for _, s := range specs {
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

func TestBackoff(t *testing.T) {
	for crashes, want := range map[int]time.Duration{0: 0, 1: 500 * time.Millisecond, 2: time.Second, 4: 4 * time.Second, 20: maxBackoff} {
		if got := backoff(crashes); got != want {
			t.Errorf("backoff(%d) = %v, want %v", crashes, got, want)
		}
	}
}
