package clusters

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/store"
)

func TestNextMinor(t *testing.T) {
	for _, tt := range []struct {
		from, to string
		want     bool
	}{{"1.36", "1.37", true}, {"1.36", "1.38", false}, {"1.37", "1.36", false}, {"1.37", "1.37", false}, {"x", "1.37", false}} {
		if got := nextMinor(tt.from, tt.to); got != tt.want {
			t.Errorf("nextMinor(%s, %s) = %t", tt.from, tt.to, got)
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
