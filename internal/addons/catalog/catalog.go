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
	Compatibilities []Compatibility // the cluster versions it runs on
}

// Compatibility is a cluster version an add-on version runs on, and
// whether it is the default there.
type Compatibility struct {
	ClusterVersion string
	Default        bool
}

// KubeProxySkew is how many minors kube-proxy may be older than the
// apiservers (upstream's version skew policy); it is never newer. As on
// EKS, a kube-proxy version is offered on the newer clusters it runs on
// too, so that it can stay put across an upgrade and be moved back
// before a rollback.
const KubeProxySkew = 3

// Names lists the add-ons, sorted.
func (c Catalog) Names() []string { return []string{CoreDNS, KubeProxy} }

// AddonVersions lists an add-on's versions that run on clusterVersion
// ("" means any), newest first.
func (c Catalog) AddonVersions(name, clusterVersion string) []Version {
	minors := make([]string, 0, len(c.Versions))
	for m := range c.Versions {
		minors = append(minors, m)
	}
	sort.Slice(minors, func(i, j int) bool { return minorOf(minors[i]) > minorOf(minors[j]) })
	var out []Version
	add := func(v Version) {
		for _, cv := range v.Compatibilities {
			if clusterVersion == "" || cv.ClusterVersion == clusterVersion {
				out = append(out, v)
				return
			}
		}
	}
	switch name {
	case CoreDNS:
		if c.CoreDNS == "" {
			return nil
		}
		v := Version{AddonVersion: c.CoreDNS + eksbuild}
		for _, m := range minors {
			v.Compatibilities = append(v.Compatibilities, Compatibility{ClusterVersion: m, Default: true})
		}
		add(v)
	case KubeProxy:
		for _, m := range minors {
			v := Version{AddonVersion: c.Versions[m] + eksbuild}
			for _, cv := range minors {
				if d := minorOf(cv) - minorOf(m); d >= 0 && d <= KubeProxySkew {
					v.Compatibilities = append(v.Compatibilities, Compatibility{ClusterVersion: cv, Default: d == 0})
				}
			}
			add(v)
		}
	}
	return out
}

// minorOf is the minor of "1.37" (-1 when it is not one).
func minorOf(v string) int {
	var major, minor int
	if _, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err != nil || major != 1 {
		return -1
	}
	return minor
}

// Default is the default version of add-on name on a cluster version.
func (c Catalog) Default(name, clusterVersion string) string {
	for _, v := range c.AddonVersions(name, clusterVersion) {
		for _, cv := range v.Compatibilities {
			if cv.ClusterVersion == clusterVersion && cv.Default {
				return v.AddonVersion
			}
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

// KubeProxyMinor is the Kubernetes minor ("1.36") a kube-proxy add-on
// version runs ("" when it is none of skiff's).
func (c Catalog) KubeProxyMinor(version string) string {
	for m, v := range c.Versions {
		if v+eksbuild == version {
			return m
		}
	}
	return ""
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
