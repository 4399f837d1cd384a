package clusters

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"skiff.dev/skiff/internal/bundle"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/store"
)

func TestMinorDiff(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{{"1.37", "1.36", 1}, {"1.36", "1.38", -2}, {"1.37", "1.37", 0}, {"2.0", "1.37", 1000}, {"x", "1.37", 1000}} {
		if got := minorDiff(tt.a, tt.b); got != tt.want {
			t.Errorf("minorDiff(%s, %s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestVersionChange covers which version moves a cluster may make: one
// minor up, back to the version it was upgraded from, never with a node
// newer than the control plane or beyond the kubelet skew.
func TestVersionChange(t *testing.T) {
	group := func(v string, nodes ...string) model.Nodegroup {
		g := model.Nodegroup{Name: "ng", Version: v}
		for _, nv := range nodes {
			g.Nodes = append(g.Nodes, model.Node{Version: nv})
		}
		return g
	}
	for _, tt := range []struct {
		name     string
		c        model.Cluster
		to       string
		want     error
		contains string
	}{
		{"upgrade", model.Cluster{Version: "1.36"}, "1.37", nil, ""},
		{"skip a minor", model.Cluster{Version: "1.36"}, "1.38", ErrInvalid, "one minor version at a time"},
		{"rollback", model.Cluster{Version: "1.37", PreviousVersion: "1.36"}, "1.36", nil, ""},
		{"rollback of a cluster created at its version", model.Cluster{Version: "1.37"}, "1.36", ErrInvalidRequest, "created at 1.37"},
		{"down by two", model.Cluster{Version: "1.37", PreviousVersion: "1.36"}, "1.35", ErrInvalidRequest, "one minor version"},
		{"rollback under newer nodes", model.Cluster{Version: "1.37", PreviousVersion: "1.36", Nodegroups: []model.Nodegroup{group("1.37", "1.37")}}, "1.36", ErrInvalidRequest, "roll it back first"},
		{"rollback under a group half rolled back", model.Cluster{Version: "1.37", PreviousVersion: "1.36", Nodegroups: []model.Nodegroup{group("1.36", "1.36", "1.37")}}, "1.36", ErrInvalidRequest, "runs Kubernetes 1.37"},
		{"rollback after the nodes", model.Cluster{Version: "1.37", PreviousVersion: "1.36", Nodegroups: []model.Nodegroup{group("1.36", "1.36")}}, "1.36", nil, ""},
		{"upgrade over old nodes within the skew", model.Cluster{Version: "1.36", Nodegroups: []model.Nodegroup{group("1.34", "1.34")}}, "1.37", nil, ""},
		{"upgrade beyond the kubelet skew", model.Cluster{Version: "1.36", Nodegroups: []model.Nodegroup{group("1.33", "1.33")}}, "1.37", ErrInvalidRequest, "more than 3 minor versions"},
		{"rollback under a newer kube-proxy add-on", model.Cluster{Version: "1.37", PreviousVersion: "1.36", Addons: []model.Addon{{Name: "kube-proxy", Version: "v1.37.2-eksbuild.1"}}}, "1.36", ErrInvalidRequest, "kube-proxy add-on runs v1.37.2-eksbuild.1"},
		{"rollback once kube-proxy moved back", model.Cluster{Version: "1.37", PreviousVersion: "1.36", Addons: []model.Addon{{Name: "kube-proxy", Version: "v1.36.3-eksbuild.1"}}}, "1.36", nil, ""},
		{"upgrade over kube-proxy", model.Cluster{Version: "1.36", Addons: []model.Addon{{Name: "kube-proxy", Version: "v1.36.3-eksbuild.1"}}}, "1.37", nil, ""},
		{"legacy nodes follow the cluster", model.Cluster{Version: "1.37", PreviousVersion: "1.36", Nodegroups: []model.Nodegroup{group("1.36", "")}}, "1.36", ErrInvalidRequest, "runs Kubernetes 1.37"},
	} {
		err := versionChange(&tt.c, tt.to)
		if tt.want == nil && err != nil || tt.want != nil && (!errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.contains)) {
			t.Errorf("%s: versionChange(%s → %s) = %v, want %v (%q)", tt.name, tt.c.Version, tt.to, err, tt.want, tt.contains)
		}
	}
}

func TestNodeSkew(t *testing.T) {
	c := &model.Cluster{Version: "1.37"}
	for v, ok := range map[string]bool{"1.37": true, "1.36": true, "1.34": true, "1.33": false, "1.38": false} {
		if err := nodeSkew(c, v); (err == nil) != ok {
			t.Errorf("nodeSkew(1.37, %s) = %v, want ok=%t", v, err, ok)
		}
	}
}

func TestValidateUpdateConfig(t *testing.T) {
	for _, tt := range []struct {
		u  *model.UpdateConfig
		ok bool
	}{
		{nil, true},
		{&model.UpdateConfig{MaxUnavailable: 2}, true},
		{&model.UpdateConfig{MaxUnavailablePercentage: 50}, true},
		{&model.UpdateConfig{}, false},
		{&model.UpdateConfig{MaxUnavailable: 1, MaxUnavailablePercentage: 10}, false},
		{&model.UpdateConfig{MaxUnavailable: 101}, false},
		{&model.UpdateConfig{MaxUnavailable: -1}, false},
		{&model.UpdateConfig{MaxUnavailablePercentage: 101}, false},
	} {
		if err := validateUpdateConfig(tt.u); (err == nil) != tt.ok || err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("validateUpdateConfig(%+v) = %v, want ok=%t", tt.u, err, tt.ok)
		}
	}
}

func TestValidateTags(t *testing.T) {
	many := map[string]string{}
	for i := range MaxTags + 1 {
		many[strings.Repeat("k", i+1)] = "v"
	}
	for _, tt := range []struct {
		tags map[string]string
		ok   bool
	}{
		{map[string]string{"team": "a"}, true},
		{map[string]string{"": "a"}, false},
		{map[string]string{strings.Repeat("k", 129): "a"}, false},
		{map[string]string{"k": strings.Repeat("v", 257)}, false},
		{map[string]string{"aws:owner": "a"}, false},
		{many, false},
	} {
		if err := ValidateTags(tt.tags); (err == nil) != tt.ok {
			t.Errorf("ValidateTags(%d tags) = %v, want ok=%t", len(tt.tags), err, tt.ok)
		}
	}
}

// TestUpdateConfig covers the rules of UpdateClusterConfig on a stored cluster.
func TestUpdateConfig(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := &Service{Store: st}
	c := &model.Cluster{Name: "web", Account: "1", Status: model.StatusCreating, AuthenticationMode: AuthAPIAndConfigMap,
		Network: model.ClusterNetwork{EndpointPublicAccess: true, PublicAccessCidrs: []string{"0.0.0.0/0"}}}
	if err := st.CreateCluster(c, nil); err != nil {
		t.Fatal(err)
	}
	yes := true
	logging := ConfigUpdate{Logging: map[string]bool{"api": true}}
	if _, err := s.UpdateConfig("1", "web", logging); !errors.Is(err, ErrInUse) {
		t.Errorf("update while CREATING = %v, want in use", err)
	}
	st.UpdateCluster(c.Key(), func(c *model.Cluster) error { c.Status = model.StatusActive; return nil })
	for _, tt := range []struct {
		name string
		req  ConfigUpdate
		want error
	}{
		{"nothing", ConfigUpdate{}, ErrInvalid},
		{"two kinds", ConfigUpdate{Logging: map[string]bool{"api": true}, EndpointPrivateAccess: &yes}, ErrInvalid},
		{"unknown log type", ConfigUpdate{Logging: map[string]bool{"kernel": true}}, ErrInvalid},
		{"no change", ConfigUpdate{EndpointPublicAccess: &yes}, ErrInvalid},
		{"bad cidr", ConfigUpdate{PublicAccessCidrs: []string{"somewhere"}}, ErrInvalid},
		{"auth backwards", ConfigUpdate{AuthenticationMode: AuthConfigMap}, ErrInvalid},
	} {
		if _, err := s.UpdateConfig("1", "web", tt.req); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	logging.ClientRequestToken = "tok"
	u, err := s.UpdateConfig("1", "web", logging)
	if err != nil || u.Type != model.UpdateLogging || u.Status != model.UpdateInProgress {
		t.Fatalf("logging update = %+v, %v", u, err)
	}
	if again, err := s.UpdateConfig("1", "web", logging); err != nil || again.ID != u.ID {
		t.Errorf("retry with the same token = %+v, %v; want the same update", again, err)
	}
	if _, err := s.UpdateConfig("1", "web", ConfigUpdate{AuthenticationMode: AuthAPI}); !errors.Is(err, ErrInUse) {
		t.Errorf("second update while one is in progress = %v, want in use", err)
	}
	got, _ := s.Get("1", "web")
	if got.Status != model.StatusUpdating || len(got.Logging) != 1 || got.Logging[0] != "api" {
		t.Errorf("cluster after the update = %s %v", got.Status, got.Logging)
	}
	if _, err := s.Update("1", "web", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown update = %v", err)
	}
	if _, err := s.UpdateConfig("1", "nope", logging); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown cluster = %v", err)
	}
}

// testBundles is a catalog of bundles of Kubernetes versions (manifests
// and empty binaries: the service only looks versions up).
func testBundles(t *testing.T, versions ...string) *bundle.Catalog {
	dir := t.TempDir()
	for _, v := range versions {
		d := filepath.Join(dir, v)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "kube"), nil, 0o755)
		os.WriteFile(filepath.Join(d, "manifest.json"), []byte(`{"kubernetesVersion":"`+v+`","binary":"kube"}`), 0o644)
	}
	cat, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// finish marks a cluster's and its node groups' updates done, as the
// reconciler would.
func finish(t *testing.T, st *store.Store, key string) {
	t.Helper()
	if _, err := st.UpdateCluster(key, func(c *model.Cluster) error {
		c.Status = model.StatusActive
		for i := range c.Updates {
			c.Updates[i].Status = model.UpdateSuccessful
		}
		for i := range c.Nodegroups {
			g := &c.Nodegroups[i]
			g.Status = model.NodegroupActive
			for j := range g.Nodes {
				g.Nodes[j].Version = g.Version
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeRollback: upgrade, node group upgrade, a rollback refused
// under the newer nodes, the node group's rollback, the cluster's, and
// the etcd version that never goes back.
func TestUpgradeRollback(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := &Service{Store: st, Bundles: testBundles(t, "v1.36.3", "v1.37.2")}
	c := &model.Cluster{Name: "web", Account: "1", Version: "1.36", Status: model.StatusActive,
		Nodegroups: []model.Nodegroup{{Name: "ng", Version: "1.36", Desired: 1, Status: model.NodegroupActive, Nodes: []model.Node{{ID: "i-1", Version: "1.36"}}}}}
	if err := st.CreateCluster(c, nil); err != nil {
		t.Fatal(err)
	}
	get := func() *model.Cluster {
		c, err := st.GetCluster(c.Key())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if _, err := s.UpdateNodegroupVersion("1", "web", "ng", NodegroupVersion{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a node group update to the version it runs = %v, want invalid", err)
	}
	// An ERROR insight of the target version blocks the upgrade, unless forced.
	st.UpdateCluster(c.Key(), func(c *model.Cluster) error {
		c.Insights = []model.Insight{{ID: "i-1", Name: "Deprecated APIs removed in Kubernetes v1.37", KubernetesVersion: "1.37", Status: model.InsightError, Reason: "in use"},
			{ID: "i-2", Name: "Deprecated APIs removed in Kubernetes v1.39", KubernetesVersion: "1.39", Status: model.InsightError}}
		return nil
	})
	if _, err := s.UpdateVersion("1", "web", "1.37", "", false); !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), "v1.37") {
		t.Errorf("an upgrade an ERROR insight blocks = %v, want invalid request", err)
	}
	if _, err := s.UpdateVersion("1", "web", "1.37", "", true); err != nil {
		t.Fatalf("a forced upgrade: %v", err)
	}
	st.UpdateCluster(c.Key(), func(c *model.Cluster) error { c.Insights = nil; return nil }) // refreshed
	if c := get(); c.Version != "1.37" || c.PreviousVersion != "1.36" || c.Etcd.Version != "" || c.Nodegroups[0].Version != "1.36" {
		t.Errorf("after the upgrade: version %s, previous %s, etcd %q, node group %s", c.Version, c.PreviousVersion, c.Etcd.Version, c.Nodegroups[0].Version)
	}
	if _, err := s.UpdateNodegroupVersion("1", "web", "ng", NodegroupVersion{}); !errors.Is(err, ErrInUse) {
		t.Errorf("a node group update while the cluster updates = %v, want in use", err)
	}
	finish(t, st, c.Key())
	for _, tt := range []struct {
		req  NodegroupVersion
		want error
	}{
		{NodegroupVersion{Version: "1.38"}, ErrInvalid},
		{NodegroupVersion{ReleaseVersion: "1.37.0-eks"}, ErrInvalid},
	} {
		if _, err := s.UpdateNodegroupVersion("1", "web", "ng", tt.req); !errors.Is(err, tt.want) {
			t.Errorf("UpdateNodegroupVersion(%+v) = %v, want %v", tt.req, err, tt.want)
		}
	}
	u, err := s.UpdateNodegroupVersion("1", "web", "ng", NodegroupVersion{ReleaseVersion: "1.37.0-skiff", Force: true})
	if err != nil || u.Nodegroup != "ng" || u.Type != model.UpdateVersion {
		t.Fatalf("UpdateNodegroupVersion = %+v, %v", u, err)
	}
	if g := get().Nodegroups[0]; g.Version != "1.37" || g.Status != model.NodegroupUpdating || !g.Force {
		t.Errorf("node group after UpdateNodegroupVersion: %+v", g)
	}
	if _, err := s.UpdateNodegroupVersion("1", "web", "ng", NodegroupVersion{}); !errors.Is(err, ErrInUse) {
		t.Errorf("a second node group update = %v, want in use", err)
	}
	finish(t, st, c.Key())
	if _, err := s.UpdateVersion("1", "web", "1.36", "", false); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("rollback under 1.37 nodes = %v, want invalid request", err)
	}
	if _, err := s.UpdateNodegroupVersion("1", "web", "ng", NodegroupVersion{Version: "1.36"}); err != nil {
		t.Fatal(err)
	}
	finish(t, st, c.Key())
	if _, err := s.UpdateVersion("1", "web", "1.36", "", false); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if c := get(); c.Version != "1.36" || c.PreviousVersion != "" || c.Etcd.Version != "1.37" {
		t.Errorf("after the rollback: version %s, previous %q, etcd %q", c.Version, c.PreviousVersion, c.Etcd.Version)
	}
	finish(t, st, c.Key())
	if _, err := s.UpdateVersion("1", "web", "1.37", "", false); err != nil {
		t.Fatal(err)
	}
	if c := get(); c.Etcd.Version != "1.37" || c.PreviousVersion != "1.36" {
		t.Errorf("upgraded again: etcd %q, previous %q", c.Etcd.Version, c.PreviousVersion)
	}
}
