package eksctl

import (
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, yaml string
		wantErr    string   // substring; "" for success
		subnets    []string // expected SubnetIDs on success
	}{
		{name: "minimal", yaml: "apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\nmetadata: {name: a}\n"},
		{name: "full", yaml: `
apiVersion: eksctl.io/v1alpha5
kind: ClusterConfig
metadata: {name: a, region: us-east-1, version: "1.37", tags: {team: x}}
availabilityZones: [us-east-1a, us-east-1b]
vpc:
  subnets:
    private:
      us-east-1a: {id: subnet-2}
      us-east-1b: {id: subnet-1}
  clusterEndpoints: {publicAccess: true, privateAccess: true}
  publicAccessCIDRs: [10.0.0.0/8]
cloudWatch: {clusterLogging: {enableTypes: [api, audit]}}
accessConfig: {authenticationMode: API, bootstrapClusterCreatorAdminPermissions: false}
secretsEncryption: {keyARN: "arn:aws:kms:us-east-1:111111111111:key/0d6a3c8e-2b1f-4c7a-9e5d-1a2b3c4d5e6f"}
`, subnets: []string{"subnet-1", "subnet-2"}},
		{name: "unsupported fields named", yaml: `
apiVersion: eksctl.io/v1alpha5
kind: ClusterConfig
metadata: {name: a, annotations: {x: y}}
managedNodeGroups: [{name: ng}]
vpc: {nat: {gateway: Single}, subnets: {private: {us-east-1a: {id: s, cidr: 10.0.0.0/24}}}}
`, wantErr: "managedNodeGroups, metadata.annotations, vpc.nat, vpc.subnets.private.us-east-1a.cidr"},
		{name: "wrong kind", yaml: "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n", wantErr: "skiff reads apiVersion: eksctl.io/v1alpha5"},
		{name: "no name", yaml: "apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\nmetadata: {}\n", wantErr: "metadata.name is required"},
		{name: "not yaml", yaml: "a: [", wantErr: "not YAML"},
		{name: "empty", yaml: "", wantErr: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.SubnetIDs(); !slices.Equal(got, tt.subnets) {
				t.Errorf("SubnetIDs = %v, want %v", got, tt.subnets)
			}
			if tt.name == "full" && (cfg.SecretsEncryption == nil || !strings.HasSuffix(cfg.SecretsEncryption.KeyARN, ":key/0d6a3c8e-2b1f-4c7a-9e5d-1a2b3c4d5e6f")) {
				t.Errorf("secretsEncryption = %+v", cfg.SecretsEncryption)
			}
		})
	}
}
