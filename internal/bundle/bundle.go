// Package bundle finds the Kubernetes release bundles that skiff can run.
//
// A bundle is a directory DIR/vX.Y.Z holding the multi-call binary "kube"
// (built from dist/kubernetes-X.Y) and a manifest.json written by
// hack/bundle.sh. skiff supports exactly the versions whose bundles exist.
package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Manifest describes one bundle, as written next to its binary.
type Manifest struct {
	KubernetesVersion string   `json:"kubernetesVersion"` // "v1.37.2"
	EtcdVersion       string   `json:"etcdVersion"`       // "v3.7.0"
	Binary            string   `json:"binary"`            // file name in the bundle dir
	ProxyBinary       string   `json:"proxyBinary"`       // kube-proxy alone, for its image
	SHA256            string   `json:"sha256"`
	Components        []string `json:"components"`
}

// Bundle is a manifest together with where it lives.
type Bundle struct {
	Manifest
	Dir string
}

// Path returns the absolute path of the bundle's multi-call binary.
func (b Bundle) Path() string { return filepath.Join(b.Dir, b.Binary) }

// Minor returns the "1.37" form of the bundle's Kubernetes version, which is
// what EKS calls a cluster version.
func (b Bundle) Minor() string { return MinorOf(b.KubernetesVersion) }

// MinorOf turns "v1.37.2" or "1.37" into "1.37"; it returns "" for anything else.
func MinorOf(v string) string {
	parts := strings.Split(strings.TrimPrefix(v, "v"), ".")
	if len(parts) < 2 {
		return ""
	}
	for _, p := range parts[:2] {
		if _, err := strconv.Atoi(p); err != nil {
			return ""
		}
	}
	return parts[0] + "." + parts[1]
}

// ErrNotFound is returned when no bundle matches a requested version.
var ErrNotFound = errors.New("no bundle for that Kubernetes version")

// Catalog is the set of bundles under one directory.
type Catalog struct {
	bundles []Bundle // sorted oldest first
}

// Load reads every DIR/*/manifest.json. A directory without bundles is an
// error that says how to build them.
func Load(dir string) (*Catalog, error) {
	matches, err := filepath.Glob(filepath.Join(dir, "*", "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("list bundles in %s: %w", dir, err)
	}
	c := &Catalog{}
	for _, m := range matches {
		b, err := read(m)
		if err != nil {
			return nil, err
		}
		c.bundles = append(c.bundles, b)
	}
	if len(c.bundles) == 0 {
		return nil, fmt.Errorf("no Kubernetes bundles in %s: run 'make bundles' (or pass --bundles DIR)", dir)
	}
	sort.Slice(c.bundles, func(i, j int) bool {
		return less(c.bundles[i].KubernetesVersion, c.bundles[j].KubernetesVersion)
	})
	return c, nil
}

func read(path string) (Bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Bundle{}, fmt.Errorf("read bundle manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Bundle{}, fmt.Errorf("parse bundle manifest %s: %w", path, err)
	}
	if MinorOf(m.KubernetesVersion) == "" || m.Binary == "" {
		return Bundle{}, fmt.Errorf("bundle manifest %s: missing kubernetesVersion or binary", path)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return Bundle{}, err
	}
	b := Bundle{Manifest: m, Dir: dir}
	if _, err := os.Stat(b.Path()); err != nil {
		return Bundle{}, fmt.Errorf("bundle %s: binary missing: %w", m.KubernetesVersion, err)
	}
	return b, nil
}

// All returns the bundles, oldest first.
func (c *Catalog) All() []Bundle { return append([]Bundle(nil), c.bundles...) }

// Latest returns the newest bundle.
func (c *Catalog) Latest() Bundle { return c.bundles[len(c.bundles)-1] }

// Versions returns the supported minor versions ("1.36", "1.37"), oldest first.
func (c *Catalog) Versions() []string {
	var out []string
	for _, b := range c.bundles {
		if m := b.Minor(); len(out) == 0 || out[len(out)-1] != m {
			out = append(out, m)
		}
	}
	return out
}

// Lookup finds the bundle for a version given as "1.37" (the newest patch
// of that minor) or as an exact "v1.37.2". An empty version means the latest.
func (c *Catalog) Lookup(version string) (Bundle, error) {
	if version == "" {
		return c.Latest(), nil
	}
	exact := strings.Count(strings.TrimPrefix(version, "v"), ".") == 2
	for i := len(c.bundles) - 1; i >= 0; i-- {
		b := c.bundles[i]
		if exact && strings.TrimPrefix(b.KubernetesVersion, "v") == strings.TrimPrefix(version, "v") {
			return b, nil
		}
		if !exact && b.Minor() == MinorOf(version) {
			return b, nil
		}
	}
	return Bundle{}, fmt.Errorf("%w %q: supported versions are %s", ErrNotFound, version, strings.Join(c.Versions(), ", "))
}

// less orders versions "vA.B.C" numerically.
func less(a, b string) bool {
	pa, pb := nums(a), nums(b)
	for i := range pa {
		if pa[i] != pb[i] {
			return pa[i] < pb[i]
		}
	}
	return false
}

func nums(v string) [3]int {
	var out [3]int
	for i, p := range strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3) {
		out[i], _ = strconv.Atoi(p)
	}
	return out
}
