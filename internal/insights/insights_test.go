package insights

import (
	"strings"
	"testing"
	"time"

	"skiff.dev/skiff/internal/addons/catalog"
	"skiff.dev/skiff/internal/model"
)

var testCatalog = catalog.Catalog{CoreDNS: "v1.14.7", Versions: map[string]string{"1.36": "v1.36.3", "1.37": "v1.37.2"}}

func byName(ins []model.Insight, name string) *model.Insight {
	for i := range ins {
		if ins[i].Name == name {
			return &ins[i]
		}
	}
	return nil
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP apiserver_requested_deprecated_apis [STABLE] Gauge of deprecated APIs that have been requested, broken out by API group, version, resource, subresource, and removed_release.
# TYPE apiserver_requested_deprecated_apis gauge
apiserver_requested_deprecated_apis{group="",removed_release="",resource="endpoints",subresource="",version="v1"} 1
apiserver_requested_deprecated_apis{group="flowcontrol.apiserver.k8s.io",removed_release="1.38",resource="flowschemas",subresource="status",version="v1beta9"} 1
apiserver_requested_deprecated_apis{group="flowcontrol.apiserver.k8s.io",removed_release="1.38",resource="flowschemas",subresource="",version="v1beta9"} 1
apiserver_request_total{code="200"} 5
`
	uses, err := ParseMetrics(strings.NewReader(text))
	if err != nil || len(uses) != 2 {
		t.Fatalf("ParseMetrics = %+v, %v", uses, err)
	}
	if u := uses[1]; u.URI() != "/apis/flowcontrol.apiserver.k8s.io/v1beta9/flowschemas" || u.RemovedRelease != "1.38" {
		t.Errorf("second use = %+v (%s)", u, u.URI())
	}
	if uses[0].URI() != "/api/v1/endpoints" {
		t.Errorf("first use = %s", uses[0].URI())
	}
}

func TestParseAudit(t *testing.T) {
	now := time.Date(2026, 12, 1, 5, 0, 0, 0, time.UTC)
	log := `{"kind":"Event","stage":"ResponseComplete","userAgent":"kubectl/v1.37.2","user":{"username":"admin"},"objectRef":{"resource":"endpoints","apiVersion":"v1"},"requestReceivedTimestamp":"2026-12-01T04:59:00.000000Z","annotations":{"k8s.io/deprecated":"true"}}
{"kind":"Event","stage":"ResponseComplete","userAgent":"kubectl/v1.37.2","user":{"username":"admin"},"objectRef":{"resource":"endpoints","apiVersion":"v1"},"requestReceivedTimestamp":"2026-12-01T04:59:30.000000Z","annotations":{"k8s.io/deprecated":"true"}}
{"kind":"Event","stage":"ResponseComplete","userAgent":"old-tool/1.0","user":{"username":"bob"},"objectRef":{"resource":"endpoints","apiVersion":"v1"},"requestReceivedTimestamp":"2026-10-01T00:00:00.000000Z","annotations":{"k8s.io/deprecated":"true"}}
{"kind":"Event","stage":"ResponseComplete","userAgent":"kubectl/v1.37.2","user":{"username":"admin"},"objectRef":{"resource":"pods","apiVersion":"v1"},"requestReceivedTimestamp":"2026-12-01T04:59:30.000000Z"}
not json "k8s.io/deprecated":"true"
`
	into := map[string]map[string]*model.ClientStat{}
	if err := ParseAudit(strings.NewReader(log), now.Add(-AuditWindow), into); err != nil {
		t.Fatal(err)
	}
	if len(into) != 1 || len(into["/v1/endpoints"]) != 1 {
		t.Fatalf("ParseAudit = %v", into)
	}
	for _, st := range into["/v1/endpoints"] {
		if st.UserAgent != "kubectl/v1.37.2" || st.Username != "admin" || st.Requests != 2 || !st.Last.Equal(now.Add(-30*time.Second)) {
			t.Errorf("client = %+v", st)
		}
	}
}

// TestCompute covers each check's statuses.
func TestCompute(t *testing.T) {
	now := time.Date(2026, 12, 1, 5, 0, 0, 0, time.UTC)
	c := &model.Cluster{ID: "web-1", Version: "1.36"}
	clean := Compute(c, Observed{Kubelets: map[string]string{"n1": "v1.36.3"}, KubeProxy: "v1.36.3"}, testCatalog, nil, now)
	for _, in := range clean {
		if in.Status != model.InsightPassing || in.Category != model.InsightUpgradeReadiness || in.ID == "" {
			t.Errorf("a clean cluster: %s is %s (%s)", in.Name, in.Status, in.Reason)
		}
	}
	if in := byName(clean, "Deprecated APIs removed in Kubernetes v1.37"); in == nil || in.KubernetesVersion != "1.37" {
		t.Errorf("no removal insight for the next version: %+v", clean)
	}

	client := model.ClientStat{UserAgent: "old-tool/1.0", Requests: 3, Last: now}
	obs := Observed{
		Deprecated: []Use{
			{Version: "v1", Resource: "endpoints", Clients: []model.ClientStat{client}},
			{Group: "flowcontrol.apiserver.k8s.io", Version: "v1beta9", Resource: "flowschemas", RemovedRelease: "1.37", Clients: []model.ClientStat{client}},
			{Group: "x.io", Version: "v1beta1", Resource: "things", RemovedRelease: "1.39"},
		},
		Kubelets:  map[string]string{"n1": "v1.36.3", "n2": "v1.35.1"},
		KubeProxy: "v1.35.0",
	}
	c.Addons = []model.Addon{{Name: catalog.KubeProxy, Version: "v1.36.3-eksbuild.1"}, {Name: catalog.CoreDNS, Version: "v1.14.7-eksbuild.1"}}
	ins := Compute(c, obs, testCatalog, clean, now.Add(time.Hour))
	for _, tt := range []struct{ name, status string }{
		{"Deprecated APIs removed in Kubernetes v1.37", model.InsightError},
		{"Deprecated APIs removed in Kubernetes v1.39", model.InsightWarning},
		{"Deprecated APIs in use", model.InsightWarning},
		{"Kubelet version skew", model.InsightWarning},
		{"EKS add-on version compatibility", model.InsightPassing}, // kube-proxy 1.36 runs on 1.37
		{"kube-proxy version skew", model.InsightWarning},
	} {
		in := byName(ins, tt.name)
		if in == nil || in.Status != tt.status {
			t.Errorf("%s = %+v, want %s", tt.name, in, tt.status)
		}
	}
	rm := byName(ins, "Deprecated APIs removed in Kubernetes v1.37")
	if len(rm.Deprecations) != 1 || rm.Deprecations[0].Clients[0].UserAgent != "old-tool/1.0" || rm.Deprecations[0].StopServing != "1.37" {
		t.Errorf("removal insight's details: %+v", rm.Deprecations)
	}
	if ep := byName(ins, "Deprecated APIs in use"); ep.Deprecations[0].ReplacedWith != "/apis/discovery.k8s.io/v1/endpointslices" {
		t.Errorf("v1 Endpoints' replacement: %+v", ep.Deprecations)
	}
	// Transition times: kept while the status holds.
	if k := byName(ins, "Deprecated APIs removed in Kubernetes v1.37"); !k.LastTransition.Equal(now.Add(time.Hour)) {
		t.Errorf("a changed status keeps its old transition time: %v", k.LastTransition)
	}
	again := Compute(c, obs, testCatalog, ins, now.Add(2*time.Hour))
	if k := byName(again, "Kubelet version skew"); !k.LastTransition.Equal(now.Add(time.Hour)) || !k.LastRefresh.Equal(now.Add(2*time.Hour)) {
		t.Errorf("an unchanged status: transition %v, refresh %v", k.LastTransition, k.LastRefresh)
	}
	// Out of the skew: ERROR.
	far := Compute(&model.Cluster{ID: "w", Version: "1.36"}, Observed{Kubelets: map[string]string{"n": "v1.33.0"}, KubeProxy: "v1.37.0"}, testCatalog, nil, now)
	if byName(far, "Kubelet version skew").Status != model.InsightError || byName(far, "kube-proxy version skew").Status != model.InsightError {
		t.Errorf("out of the skew: %+v", far)
	}
	// An upgrade to 1.37 is blocked by the 1.37 removal, not by the 1.39 one.
	if b := Blocking(ins, "1.37"); len(b) != 1 || b[0].KubernetesVersion != "1.37" {
		t.Errorf("Blocking(1.37) = %+v", b)
	}
	if b := Blocking(clean, "1.37"); len(b) != 0 {
		t.Errorf("Blocking on a clean cluster = %+v", b)
	}
}

func TestNext(t *testing.T) {
	for v, want := range map[string]string{"1.36": "1.37", "v1.37.2": "1.38", "x": "", "2.0": ""} {
		if got := Next(v); got != want {
			t.Errorf("Next(%s) = %q, want %q", v, got, want)
		}
	}
}
