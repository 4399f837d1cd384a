package addons

import (
	"regexp"
	"strings"
	"testing"

	"skiff.dev/skiff/internal/addons/catalog"
)

func TestRender(t *testing.T) {
	p := Params{Endpoint: "https://172.31.0.10:443", DNSIP: "10.100.0.10", PodRange: "100.64.0.0/10"}
	three := 3
	for _, tc := range []struct {
		name, version string
		cfg           catalog.Config
		want          []string
	}{
		{catalog.CoreDNS, "v1.14.7-eksbuild.1", catalog.Config{}, []string{"registry.k8s.io/coredns/coredns:v1.14.7", "replicas: 2", "clusterIP: 10.100.0.10"}},
		{catalog.CoreDNS, "v1.14.7-eksbuild.1", catalog.Config{ReplicaCount: &three}, []string{"replicas: 3"}},
		{catalog.KubeProxy, "v1.37.2-eksbuild.1", catalog.Config{}, []string{"registry.k8s.io/kube-proxy:v1.37.2", "server: https://172.31.0.10:443", "clusterCIDR: 100.64.0.0/10"}},
	} {
		docs, err := Render(tc.name, tc.version, tc.cfg, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(docs), w) {
				t.Errorf("%s %s lacks %q", tc.name, tc.version, w)
			}
		}
		objs, err := split(docs)
		if err != nil || len(objs) < 4 {
			t.Fatalf("%s: %d objects, %v", tc.name, len(objs), err)
		}
		for _, o := range objs {
			if o.Kind == "" || o.Metadata.Name == "" {
				t.Errorf("%s: object without kind or name: %s", tc.name, o.json)
			}
		}
		if regexp.MustCompile(`(?m)^\s*forward\b`).Match(docs) {
			t.Errorf("%s: a forward plugin in the manifest", tc.name)
		}
	}
}
