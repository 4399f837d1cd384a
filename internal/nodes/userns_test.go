package nodes

import (
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/store"
)

// TestIDRanges: each node gets its own range, the same one again when it
// asks again, and a released range is handed out anew.
func TestIDRanges(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := New(Config{Store: st, Host: Host{MilliCPU: 1000, KiB: 1 << 20}})
	got := map[string]uint32{}
	for _, owner := range []string{"node/a", "node/b", "node/c", "node/a"} {
		base, err := r.allocateIDs(owner)
		if err != nil {
			t.Fatal(err)
		}
		if base < IDBase0 || (base-IDBase0)%IDRange != 0 {
			t.Errorf("%s: base %d is not a range boundary", owner, base)
		}
		if prev, ok := got[owner]; ok && prev != base {
			t.Errorf("%s: %d, then %d", owner, prev, base)
		}
		got[owner] = base
	}
	if got["node/a"] == got["node/b"] || got["node/b"] == got["node/c"] || got["node/a"] == got["node/c"] {
		t.Errorf("ranges overlap: %v", got)
	}
	if err := r.releaseIDs("node/b"); err != nil {
		t.Fatal(err)
	}
	if base, err := r.allocateIDs("node/d"); err != nil || base != got["node/b"] {
		t.Errorf("after releasing node/b's range: %d, %v; want %d", base, err, got["node/b"])
	}
	if last := uint64(IDBase0) + uint64(idSlots)*IDRange; last > 1<<32-1 {
		t.Errorf("the last slot ends at %d, beyond the last valid ID", last)
	}
}

// TestUserNSFiles: a system container's configuration names the paths
// the node sees, and its files live where the node's mounts put them.
func TestUserNSFiles(t *testing.T) {
	p := paths{dir: "/d", run: "/r", userns: true}
	files := containerdFiles(p, "i-1", "172.31.0.2:5000", "", "i-1.x")
	cfg, ok := files["/etc/skiff/containerd.toml"]
	if !ok {
		t.Fatalf("no /etc/skiff/containerd.toml in %v", files)
	}
	for _, want := range []string{`root = "/var/lib/containerd"`, `address = "/run/containerd/containerd.sock"`, `path = "/containerd"`,
		`config_path = "/etc/skiff/containerd/certs.d"`, "disable_apparmor = true"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("containerd.toml lacks %q:\n%s", want, cfg)
		}
	}
	k := kubeletConfig(p, "i-1", netip.MustParseAddr("172.31.0.10"), model.InstanceTypes["t3.medium"], Host{MilliCPU: 2000, KiB: 1 << 24})
	for _, want := range []string{"cgroupRoot: /\n", "clientCAFile: /var/lib/skiff-node/ca.crt", "KubeletInUserNamespace: true",
		"resolvConf: /etc/skiff/resolv.conf", "podLogsDir: /var/log/pods"} {
		if !strings.Contains(k, want) {
			t.Errorf("kubelet.yaml lacks %q:\n%s", want, k)
		}
	}
	for in, want := range map[string]string{"/etc/skiff/kubelet.yaml": "/d/config/kubelet.yaml", "/var/lib/kubelet": "/d/var/lib/kubelet", "/usr/bin/x": ""} {
		if got := p.host(in); got != want {
			t.Errorf("host(%s) = %q, want %q", in, got, want)
		}
	}
	if k := kubeletConfig(paths{dir: "/d", run: "/r"}, "i-1", netip.MustParseAddr("172.31.0.10"), model.InstanceTypes["t3.medium"], Host{MilliCPU: 2000, KiB: 1 << 24}); strings.Contains(k, "featureGates") {
		t.Errorf("a host-root node's kubelet gets feature gates:\n%s", k)
	}
}

// TestNodePull: the VPC's door serves an account's images to that
// account's current nodes only.
func TestNodePull(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c := &model.Cluster{Account: "111111111111", Name: "c", ID: "c-1",
		Nodegroups: []model.Nodegroup{{Name: "ng", Nodes: []model.Node{{ID: "i-1"}}}}}
	if err := st.CreateCluster(c, nil); err != nil {
		t.Fatal(err)
	}
	r := New(Config{Store: st, PullKey: []byte("k"), Host: Host{MilliCPU: 1000, KiB: 1 << 20}})
	other := New(Config{Store: st, PullKey: []byte("another skiff's key"), Host: Host{MilliCPU: 1000, KiB: 1 << 20}})
	for _, tc := range []struct {
		name, account, header string
		ok                    bool
	}{
		{"its node", "111111111111", r.pullToken("111111111111", "i-1"), true},
		{"no header", "111111111111", "", false},
		{"another account's registry", "222222222222", r.pullToken("111111111111", "i-1"), false},
		{"token for another account", "222222222222", r.pullToken("222222222222", "i-1"), false},
		{"a node not in the store", "111111111111", r.pullToken("111111111111", "i-2"), false},
		{"another key", "111111111111", other.pullToken("111111111111", "i-1"), false},
		{"tampered", "111111111111", r.pullToken("111111111111", "i-1")[:10] + "0", false},
	} {
		req, _ := http.NewRequest("GET", "http://x/v2/", nil)
		req.Header.Set(PullHeader, tc.header)
		pull := registry.NodePull(r.cfg.PullKey, tc.account, func(id string) (bool, error) {
			ids, err := r.accountNodes(tc.account)
			return ids[id], err
		})
		if err := pull(req); (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
