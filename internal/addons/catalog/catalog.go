// Package catalog is the add-ons skiff offers as pure data: their names,
// versions (which cluster versions each supports, which is the default)
// and configuration schema. The EKS API and the cluster lifecycle read it;
// package addons, the reconciler, renders and applies what it describes.
package catalog

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"skiff.dev/skiff/internal/bundle"
)

// Names of the add-ons skiff offers.
const (
	CoreDNS   = "coredns"
	KubeProxy = "kube-proxy"
)

// Catalog is what add-on versions exist: CoreDNS's (one, built here) and
// kube-proxy's (one per Kubernetes bundle).
type Catalog struct {
	CoreDNS  string            // "v1.14.7"
	Versions map[string]string // cluster version "1.37" → Kubernetes "v1.37.2"
}

// NewCatalog describes the add-ons for the bundles of cat.
func NewCatalog(coredns string, cat *bundle.Catalog) Catalog {
	c := Catalog{CoreDNS: coredns, Versions: map[string]string{}}
	for _, b := range cat.All() {
		c.Versions[b.Minor()] = b.KubernetesVersion
	}
	return c
}

// eksbuild turns an upstream version into an add-on version.
const eksbuild = "-eksbuild.1"

// Version is one version of an add-on.
type Version struct {
	AddonVersion    string
	ClusterVersions []string // the cluster versions it supports
	Default         bool
}

// Names lists the add-ons, sorted.
func (c Catalog) Names() []string { return []string{CoreDNS, KubeProxy} }

// Versions lists an add-on's versions; clusterVersion "" means all.
func (c Catalog) AddonVersions(name, clusterVersion string) []Version {
	var minors []string
	for m := range c.Versions {
		if clusterVersion == "" || m == clusterVersion {
			minors = append(minors, m)
		}
	}
	sort.Strings(minors)
	if len(minors) == 0 {
		return nil
	}
	switch name {
	case CoreDNS:
		if c.CoreDNS == "" {
			return nil
		}
		return []Version{{AddonVersion: c.CoreDNS + eksbuild, ClusterVersions: minors, Default: true}}
	case KubeProxy:
		var out []Version
		for _, m := range minors {
			out = append(out, Version{AddonVersion: c.Versions[m] + eksbuild, ClusterVersions: []string{m}, Default: true})
		}
		return out
	}
	return nil
}

// Default is the default version of add-on name on a cluster version.
func (c Catalog) Default(name, clusterVersion string) string {
	for _, v := range c.AddonVersions(name, clusterVersion) {
		if v.Default {
			return v.AddonVersion
		}
	}
	return ""
}

// Supports reports whether version of add-on name runs on clusterVersion.
func (c Catalog) Supports(name, version, clusterVersion string) bool {
	for _, v := range c.AddonVersions(name, clusterVersion) {
		if v.AddonVersion == version {
			return true
		}
	}
	return false
}

// Config is an add-on's configurationValues, as its schema allows.
type Config struct {
	ReplicaCount *int `json:"replicaCount,omitempty"` // coredns only
}

// Schema is the JSON schema of an add-on's configuration
// (DescribeAddonConfiguration).
func Schema(name string) string {
	if name == CoreDNS {
		return `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","additionalProperties":false,"properties":{"replicaCount":{"type":"integer","minimum":1,"maximum":10,"description":"Number of CoreDNS replicas (default 2)"}}}`
	}
	return `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","additionalProperties":false,"properties":{}}`
}

// ParseConfig validates configurationValues (JSON; "" is the default)
// against the add-on's schema.
func ParseConfig(name, values string) (Config, error) {
	var cfg Config
	if strings.TrimSpace(values) == "" {
		return cfg, nil
	}
	dec := json.NewDecoder(strings.NewReader(values))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("configurationValues of %s is not valid: %v (see `aws eks describe-addon-configuration --addon-name %s --addon-version …`)", name, err, name)
	}
	if cfg.ReplicaCount != nil {
		if name != CoreDNS {
			return cfg, fmt.Errorf("configurationValues of %s: replicaCount is a coredns setting", name)
		}
		if *cfg.ReplicaCount < 1 || *cfg.ReplicaCount > 10 {
			return cfg, fmt.Errorf("configurationValues of %s: replicaCount must be between 1 and 10, not %d", name, *cfg.ReplicaCount)
		}
	}
	return cfg, nil
}
