// Package eksctl reads eksctl's ClusterConfig files (apiVersion
// eksctl.io/v1alpha5) for `skiff create cluster -f`. It accepts the fields
// skiff implements and names every other field in its error, so a user
// never wonders whether a setting took effect.
package eksctl

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// APIVersion and Kind of the files this package reads.
const (
	APIVersion = "eksctl.io/v1alpha5"
	Kind       = "ClusterConfig"
)

// ClusterConfig is the supported part of eksctl's ClusterConfig.
type ClusterConfig struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	// AvailabilityZones picks the default subnets of these zones.
	AvailabilityZones []string      `json:"availabilityZones,omitempty"`
	VPC               *VPC          `json:"vpc,omitempty"`
	CloudWatch        *CloudWatch   `json:"cloudWatch,omitempty"`
	AccessConfig      *AccessConfig `json:"accessConfig,omitempty"`
	// SecretsEncryption is the KMS key that envelope-encrypts Secrets.
	SecretsEncryption *struct {
		KeyARN string `json:"keyARN,omitempty"`
	} `json:"secretsEncryption,omitempty"`
}

// Metadata names the cluster.
type Metadata struct {
	Name    string            `json:"name"`
	Region  string            `json:"region,omitempty"`
	Version string            `json:"version,omitempty"`
	Tags    map[string]string `json:"tags,omitempty"`
}

// VPC places the cluster.
type VPC struct {
	ID      string `json:"id,omitempty"`
	Subnets *struct {
		Private map[string]Subnet `json:"private,omitempty"`
		Public  map[string]Subnet `json:"public,omitempty"`
	} `json:"subnets,omitempty"`
	ClusterEndpoints *struct {
		PublicAccess  *bool `json:"publicAccess,omitempty"`
		PrivateAccess *bool `json:"privateAccess,omitempty"`
	} `json:"clusterEndpoints,omitempty"`
	PublicAccessCIDRs []string `json:"publicAccessCIDRs,omitempty"`
}

// Subnet names an existing subnet by ID.
type Subnet struct {
	ID string `json:"id,omitempty"`
}

// CloudWatch holds the control-plane log types to enable.
type CloudWatch struct {
	ClusterLogging *struct {
		EnableTypes []string `json:"enableTypes,omitempty"`
	} `json:"clusterLogging,omitempty"`
}

// AccessConfig is the cluster's authentication setup.
type AccessConfig struct {
	AuthenticationMode                      string `json:"authenticationMode,omitempty"`
	BootstrapClusterCreatorAdminPermissions *bool  `json:"bootstrapClusterCreatorAdminPermissions,omitempty"`
}

// supported lists every field path skiff reads; "*" matches any map key.
var supported = []string{
	"apiVersion", "kind",
	"metadata", "metadata.name", "metadata.region", "metadata.version", "metadata.tags", "metadata.tags.*",
	"availabilityZones",
	"vpc", "vpc.id", "vpc.subnets", "vpc.subnets.private", "vpc.subnets.public",
	"vpc.subnets.private.*", "vpc.subnets.public.*", "vpc.subnets.private.*.id", "vpc.subnets.public.*.id",
	"vpc.clusterEndpoints", "vpc.clusterEndpoints.publicAccess", "vpc.clusterEndpoints.privateAccess", "vpc.publicAccessCIDRs",
	"cloudWatch", "cloudWatch.clusterLogging", "cloudWatch.clusterLogging.enableTypes",
	"accessConfig", "accessConfig.authenticationMode", "accessConfig.bootstrapClusterCreatorAdminPermissions",
	"secretsEncryption", "secretsEncryption.keyARN",
}

// Parse reads a ClusterConfig. Fields skiff does not implement are an
// error that names each of them.
func Parse(data []byte) (*ClusterConfig, error) {
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("the file is not YAML: %w", err)
	}
	if raw == nil {
		return nil, fmt.Errorf("the file is empty: write a ClusterConfig (apiVersion: %s, kind: %s)", APIVersion, Kind)
	}
	var unknown []string
	walk("", "", raw, &unknown)
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("skiff does not support these ClusterConfig fields: %s; remove them (supported: metadata, availabilityZones, vpc.subnets, vpc.clusterEndpoints, vpc.publicAccessCIDRs, cloudWatch.clusterLogging, accessConfig, secretsEncryption.keyARN)",
			strings.Join(unknown, ", "))
	}
	var cfg ClusterConfig
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return nil, fmt.Errorf("read ClusterConfig: %w", err)
	}
	switch {
	case cfg.APIVersion != APIVersion || cfg.Kind != Kind:
		return nil, fmt.Errorf("the file is %s %s; skiff reads apiVersion: %s, kind: %s", cfg.APIVersion, cfg.Kind, APIVersion, Kind)
	case cfg.Metadata.Name == "":
		return nil, fmt.Errorf("metadata.name is required: name the cluster")
	}
	return &cfg, nil
}

// walk appends the paths of fields not in supported. pattern is the path
// as supported spells it (map keys as "*"), shown the path as written.
func walk(pattern, shown string, v any, unknown *[]string) {
	m, ok := v.(map[string]any)
	if !ok {
		return
	}
	join := func(a, b string) string {
		if a == "" {
			return b
		}
		return a + "." + b
	}
	for k, child := range m {
		switch p, any := join(pattern, k), join(pattern, "*"); {
		case slices.Contains(supported, p):
			walk(p, join(shown, k), child, unknown)
		case slices.Contains(supported, any):
			walk(any, join(shown, k), child, unknown)
		default:
			*unknown = append(*unknown, join(shown, k))
		}
	}
}

// SubnetIDs lists the subnets the file names, sorted.
func (c *ClusterConfig) SubnetIDs() []string {
	var ids []string
	if c.VPC == nil || c.VPC.Subnets == nil {
		return nil
	}
	for _, group := range []map[string]Subnet{c.VPC.Subnets.Private, c.VPC.Subnets.Public} {
		for _, s := range group {
			if s.ID != "" && !slices.Contains(ids, s.ID) {
				ids = append(ids, s.ID)
			}
		}
	}
	sort.Strings(ids)
	return ids
}
