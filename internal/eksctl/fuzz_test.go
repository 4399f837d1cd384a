package eksctl

import (
	"bytes"
	"encoding/json"
	"slices"
	"sort"
	"testing"

	"sigs.k8s.io/yaml"
)

// FuzzParse reads random ClusterConfig files. Properties: no panic; a file
// that parses names the right apiVersion and kind and a cluster, holds no
// field outside the supported list, and survives a round trip (written
// back as YAML it parses to the same config); SubnetIDs is sorted and has
// no duplicates or empty IDs.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\nmetadata: {name: a}\n",
		`apiVersion: eksctl.io/v1alpha5
kind: ClusterConfig
metadata: {name: a, region: us-east-1, version: "1.37", tags: {team: x}}
availabilityZones: [us-east-1a, us-east-1b]
vpc:
  id: vpc-1
  subnets:
    private:
      us-east-1a: {id: subnet-2}
      us-east-1b: {id: subnet-1}
    public:
      us-east-1c: {id: subnet-2}
  clusterEndpoints: {publicAccess: true, privateAccess: false}
  publicAccessCIDRs: [10.0.0.0/8]
cloudWatch: {clusterLogging: {enableTypes: [api, audit]}}
accessConfig: {authenticationMode: API, bootstrapClusterCreatorAdminPermissions: false}
`,
		"apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\nmetadata: {name: a, annotations: {x: y}}\nmanagedNodeGroups: [{name: ng}]\n",
		"apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\nmetadata: {name: 1e400, version: 1.30}\n",
		"apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\nmetadata: &m {name: a}\nvpc: {subnets: {private: {a: *m}}}\n",
		"a: &a [*a, *a]\n",
		"apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\nmetadata: {name: a, tags: {? [a]: b}}\n",
		"apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\nmetadata: {name: a}\nmetadata: {name: b}\n",
		"{\"apiVersion\": \"eksctl.io/v1alpha5\", \"kind\": \"ClusterConfig\", \"metadata\": {\"name\": \"\\ud800\"}}",
		"--- !!binary\n",
		"- a\n- b\n",
		"",
		"a: [",
		"\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			if cfg != nil {
				t.Fatalf("an error (%v) with a config", err)
			}
			return
		}
		if cfg.APIVersion != APIVersion || cfg.Kind != Kind || cfg.Metadata.Name == "" {
			t.Fatalf("accepted %+v", cfg)
		}
		var raw map[string]any
		if err := yaml.Unmarshal(data, &raw); err != nil {
			t.Fatal(err)
		}
		var unknown []string
		walk("", "", raw, &unknown)
		if len(unknown) > 0 {
			t.Fatalf("accepted unsupported fields %v", unknown)
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("marshal %+v: %v", cfg, err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("round trip: %v\n%s", err, out)
		}
		// Compared as JSON, so that an empty map or list equals a missing one.
		a, _ := json.Marshal(cfg)
		b, _ := json.Marshal(again)
		if !bytes.Equal(a, b) {
			t.Fatalf("round trip changed the config:\n%s\n%s", a, b)
		}
		ids := cfg.SubnetIDs()
		if !sort.StringsAreSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) || slices.Contains(ids, "") {
			t.Fatalf("SubnetIDs = %q", ids)
		}
	})
}
