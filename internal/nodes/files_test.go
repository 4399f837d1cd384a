package nodes

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"skiff.dev/skiff/internal/model"
)

func TestReservations(t *testing.T) {
	host := Host{MilliCPU: 2000, KiB: 24 << 20}
	for _, tc := range []struct {
		typ                              string
		sysCPU, sysKiB, kubeCPU, kubeMiB int
	}{
		// t3.medium: the EKS AMI reserves 70m and 442 MiB.
		{"t3.medium", 0, (24*1024 - 4096) << 10, 70, 442},
		{"t3.micro", 0, (24*1024 - 1024) << 10, 70, 299},
		{"m5.large", 0, (24*1024 - 8192) << 10, 70, 574},
		// Larger than this host: nothing reserved for "system".
		{"m5.2xlarge", 0, 0, 60 + 10 + 5 + 5 + 2*4, 893},
	} {
		sc, sm, kc, km := reservations(model.InstanceTypes[tc.typ], host)
		if sc != tc.sysCPU || sm != tc.sysKiB || kc != tc.kubeCPU || km != tc.kubeMiB {
			t.Errorf("%s: got system %dm/%dKi kube %dm/%dMi, want %dm/%dKi %dm/%dMi", tc.typ, sc, sm, kc, km, tc.sysCPU, tc.sysKiB, tc.kubeCPU, tc.kubeMiB)
		}
	}
	cfg := kubeletConfig(paths{dir: "/d", run: "/r"}, "i-1", netip.MustParseAddr("172.31.0.4"), model.InstanceTypes["t3.medium"], host)
	for _, want := range []string{"maxPods: 17", `systemReserved: {cpu: "0m", memory: "20971520Ki"}`, `kubeReserved: {cpu: "70m", memory: "442Mi"}`} {
		if !strings.Contains(cfg, want) {
			t.Errorf("kubelet config lacks %q:\n%s", want, cfg)
		}
	}
}

func TestHostCapacity(t *testing.T) {
	h, err := HostCapacity()
	if err != nil || h.MilliCPU < 1000 || h.KiB < 256<<10 {
		t.Fatalf("HostCapacity = %+v, %v", h, err)
	}
}

// TestCNIConfig: the pod network is a bridge with the node's range and no
// masquerading, chained with portmap for hostPorts (a [Conformance] test).
func TestCNIConfig(t *testing.T) {
	var conf struct {
		Plugins []struct {
			Type         string          `json:"type"`
			IPMasq       bool            `json:"ipMasq"`
			Capabilities map[string]bool `json:"capabilities"`
		} `json:"plugins"`
	}
	raw := cniConfig(paths{dir: "/d"}, netip.MustParsePrefix("100.64.1.0/26"))
	if err := json.Unmarshal([]byte(raw), &conf); err != nil {
		t.Fatalf("%v:\n%s", err, raw)
	}
	if len(conf.Plugins) != 2 || conf.Plugins[0].Type != "bridge" || conf.Plugins[0].IPMasq ||
		conf.Plugins[1].Type != "portmap" || !conf.Plugins[1].Capabilities["portMappings"] {
		t.Errorf("plugins %+v", conf.Plugins)
	}
	if !strings.Contains(raw, `"subnet": "100.64.1.0/26"`) {
		t.Errorf("pod range missing:\n%s", raw)
	}
}

// TestContainerdFiles: every registry a pod may name, ECR's included, is
// served by the VPC's registry and by nothing else (no fallback to the
// upstream host), through hosts.toml files the configuration points at.
func TestContainerdFiles(t *testing.T) {
	p := paths{dir: "/d", run: "/r"}
	files := containerdFiles(p, "i-1", "172.31.0.2:5000", "127.0.0.1:4566", "i-1.abc")
	cfg := files["/d/containerd.toml"]
	for _, want := range []string{`config_path = "/d/containerd/certs.d"`, `sandbox_image = "172.31.0.2:5000/`, `address = "/r/containerd.sock"`,
		"[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = true\n", `temp = "/d/containerd/tmp"`} {
		if !strings.Contains(cfg, want) {
			t.Errorf("containerd.toml lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Contains(cfg, "mirrors") {
		t.Errorf("containerd.toml still has registry mirrors (deprecated in containerd 2):\n%s", cfg)
	}
	for _, host := range []string{"172.31.0.2:5000", "127.0.0.1:4566", "docker.io", "registry.k8s.io", "public.ecr.aws"} {
		got, ok := files["/d/containerd/certs.d/"+host+"/hosts.toml"]
		want := "server = \"http://172.31.0.2:5000\"\n\n[host.\"http://172.31.0.2:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n" +
			"  [host.\"http://172.31.0.2:5000\".header]\n    X-Skiff-Node = \"i-1.abc\"\n"
		if !ok || got != want {
			t.Errorf("hosts.toml for %s = %q, want %q", host, got, want)
		}
	}
	if len(files) != 6 {
		t.Errorf("%d files, want containerd.toml and 5 hosts.toml", len(files))
	}
	if _, ok := containerdFiles(p, "i-1", "172.31.0.2:5000", "", "i-1.abc")["/d/containerd/certs.d/hosts.toml"]; ok {
		t.Error("an empty ECR host gets a hosts.toml")
	}
}
