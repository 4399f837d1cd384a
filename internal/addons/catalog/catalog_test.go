package catalog

import (
	"strings"
	"testing"
)

var testCatalog = Catalog{CoreDNS: "v1.14.7", Versions: map[string]string{"1.36": "v1.36.3", "1.37": "v1.37.2"}}

func TestCatalog(t *testing.T) {
	for _, tc := range []struct {
		name, version, cluster string
		supported              bool
	}{
		{CoreDNS, "v1.14.7-eksbuild.1", "1.37", true},
		{CoreDNS, "v1.14.7-eksbuild.1", "1.36", true},
		{CoreDNS, "v1.14.7-eksbuild.1", "1.35", false},
		{KubeProxy, "v1.37.2-eksbuild.1", "1.37", true},
		{KubeProxy, "v1.37.2-eksbuild.1", "1.36", false}, // never newer than the cluster
		{KubeProxy, "v1.36.3-eksbuild.1", "1.36", true},
		{KubeProxy, "v1.36.3-eksbuild.1", "1.37", true}, // older, within the skew
		{"vpc-cni", "v1.0.0-eksbuild.1", "1.37", false},
	} {
		if got := testCatalog.Supports(tc.name, tc.version, tc.cluster); got != tc.supported {
			t.Errorf("Supports(%s, %s, %s) = %v", tc.name, tc.version, tc.cluster, got)
		}
	}
	if d := testCatalog.Default(KubeProxy, "1.36"); d != "v1.36.3-eksbuild.1" {
		t.Errorf("default kube-proxy on 1.36 = %s", d)
	}
	if d := testCatalog.Default(KubeProxy, "1.37"); d != "v1.37.2-eksbuild.1" {
		t.Errorf("default kube-proxy on 1.37 = %s", d)
	}
	if n := len(testCatalog.AddonVersions(KubeProxy, "")); n != 2 {
		t.Errorf("kube-proxy versions on any cluster: %d, want 2", n)
	}
	if v := testCatalog.AddonVersions(KubeProxy, "1.37"); len(v) != 2 || v[0].AddonVersion != "v1.37.2-eksbuild.1" {
		t.Errorf("kube-proxy versions on 1.37: %+v, want 1.37's first, then 1.36's", v)
	}
	wide := Catalog{Versions: map[string]string{"1.33": "v1.33.0", "1.36": "v1.36.3", "1.37": "v1.37.2"}}
	if wide.Supports(KubeProxy, "v1.33.0-eksbuild.1", "1.37") || !wide.Supports(KubeProxy, "v1.33.0-eksbuild.1", "1.36") {
		t.Errorf("kube-proxy 1.33 runs on 1.36 (3 minors) and not on 1.37 (4)")
	}
	if m := testCatalog.KubeProxyMinor("v1.36.3-eksbuild.1"); m != "1.36" {
		t.Errorf("KubeProxyMinor = %q", m)
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name, values string
		replicas     int // 0: default
		bad          bool
	}{
		{CoreDNS, "", 0, false},
		{CoreDNS, `{"replicaCount":3}`, 3, false},
		{CoreDNS, `{"replicaCount":0}`, 0, true},
		{CoreDNS, `{"replicaCount":11}`, 0, true},
		{CoreDNS, `{"replicas":3}`, 0, true}, // unknown key
		{CoreDNS, `not json`, 0, true},
		{KubeProxy, `{"replicaCount":3}`, 0, true},
		{KubeProxy, `{}`, 0, false},
	} {
		cfg, err := ParseConfig(tc.name, tc.values)
		if (err != nil) != tc.bad {
			t.Errorf("ParseConfig(%s, %q): %v", tc.name, tc.values, err)
			continue
		}
		if tc.replicas != 0 && (cfg.ReplicaCount == nil || *cfg.ReplicaCount != tc.replicas) {
			t.Errorf("ParseConfig(%s, %q) = %+v", tc.name, tc.values, cfg)
		}
		if err != nil && !strings.Contains(err.Error(), tc.name) {
			t.Errorf("error %q does not name the add-on", err)
		}
	}
}
