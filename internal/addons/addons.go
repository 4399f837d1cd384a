// Package addons installs and manages a cluster's add-ons, as EKS does:
// CoreDNS (2 replicas, the cluster's zones only) and kube-proxy (a
// DaemonSet) at versions that match the cluster. At creation they are
// installed once as "self-managed" (bootstrapSelfManagedAddons); the EKS
// add-on API turns them into managed add-ons, which skiff applies with
// server-side apply (field manager "eks") and keeps as configured.
//
// The package also owns the "kubernetes" Service's endpoints: the
// cluster's endpoint address inside its VPC, where pods reach the API.
package addons

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"

	"skiff.dev/skiff/internal/addons/catalog"
)

// Params are what an add-on's objects depend on besides its version.
type Params struct {
	Endpoint string // the API endpoint inside the VPC, https://ADDR:443
	DNSIP    string // kube-dns' ClusterIP
	PodRange string // every node's pods
}

// Render returns add-on name's objects (YAML documents) at version with
// configuration cfg.
func Render(name, version string, cfg catalog.Config, p Params) ([]byte, error) {
	image, _, _ := strings.Cut(version, "-eksbuild")
	data := map[string]any{"Image": image, "Endpoint": p.Endpoint, "DNSIP": p.DNSIP, "PodRange": p.PodRange, "Replicas": 2}
	if cfg.ReplicaCount != nil {
		data["Replicas"] = *cfg.ReplicaCount
	}
	var text string
	switch name {
	case catalog.CoreDNS:
		text = corednsManifest
	case catalog.KubeProxy:
		text = kubeProxyManifest
	default:
		return nil, fmt.Errorf("no add-on %q", name)
	}
	var buf bytes.Buffer
	if err := template.Must(template.New(name).Option("missingkey=error").Parse(text)).Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("render add-on %s: %w", name, err)
	}
	return buf.Bytes(), nil
}
