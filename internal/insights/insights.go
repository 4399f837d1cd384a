// Package insights computes a cluster's upgrade insights, as EKS does
// (ListInsights, category UPGRADE_READINESS): deprecated APIs still in use
// and who uses them, kubelet version skew, add-on versions and kube-proxy
// against the next Kubernetes version. Compute is pure; Collect gathers
// what it needs from the cluster (the apiservers' metrics, their audit
// logs, nodes and kube-proxy).
package insights

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"skiff.dev/skiff/internal/addons/catalog"
	"skiff.dev/skiff/internal/model"
)

// MaxKubeletSkew is how many minors a kubelet (or kube-proxy) may be
// older than its apiservers (upstream's version skew policy).
const MaxKubeletSkew = 3

// Use is a deprecated API requested since its apiserver started, with the
// clients the audit log names.
type Use struct {
	Group, Version, Resource string
	RemovedRelease           string // "1.38"; empty: no removal planned
	Clients                  []model.ClientStat
}

// Key names the API: "GROUP/VERSION/RESOURCE".
func (u Use) Key() string { return u.Group + "/" + u.Version + "/" + u.Resource }

// URI is the API's path, as EKS shows a deprecated usage.
func (u Use) URI() string {
	if u.Group == "" {
		return "/api/" + u.Version + "/" + u.Resource
	}
	return "/apis/" + u.Group + "/" + u.Version + "/" + u.Resource
}

// Observed is what Compute reads of a cluster.
type Observed struct {
	Deprecated []Use
	// Kubelets are the nodes' kubelet versions by node name ("v1.36.3").
	Kubelets map[string]string
	// KubeProxy is the kube-proxy DaemonSet's version ("v1.36.3"; empty:
	// none runs).
	KubeProxy string
}

// replacements of deprecated APIs still served with no removal planned.
var replacements = map[string]string{
	"/v1/endpoints":         "/apis/discovery.k8s.io/v1/endpointslices",
	"/v1/componentstatuses": "the apiservers' /livez and /readyz, etcd's /health",
}

// minor parses "1.37" or "v1.37.2" into its minor number (major 1).
func minor(v string) (int, bool) {
	var maj, min int
	if _, err := fmt.Sscanf(strings.TrimPrefix(v, "v"), "%d.%d", &maj, &min); err != nil || maj != 1 {
		return 0, false
	}
	return min, true
}

// Next is the minor version after v ("1.37" → "1.38").
func Next(v string) string {
	m, ok := minor(v)
	if !ok {
		return ""
	}
	return fmt.Sprintf("1.%d", m+1)
}

// id is an insight's stable ID: the same check of the same version of the
// same cluster keeps it across refreshes.
func id(clusterID, name, version string) string {
	h := sha256.Sum256([]byte(clusterID + "\x00" + name + "\x00" + version))
	x := fmt.Sprintf("%x", h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// Compute returns cluster c's insights for what obs saw at now; prev are
// the insights before, whose transition times carry over while their
// status does not change.
func Compute(c *model.Cluster, obs Observed, addons catalog.Catalog, prev []model.Insight, now time.Time) []model.Insight {
	next := Next(c.Version)
	var out []model.Insight
	out = append(out, removals(c, obs, next)...)
	out = append(out, deprecatedInUse(c, obs), kubeletSkew(c, obs, next), addonCompat(c, addons, next), kubeProxySkew(c, obs, next))
	for i := range out {
		in := &out[i]
		in.ID = id(c.ID, in.Name, in.KubernetesVersion)
		in.Category = model.InsightUpgradeReadiness
		in.LastRefresh, in.LastTransition = now, now
		for _, p := range prev {
			if p.ID == in.ID && p.Status == in.Status && !p.LastTransition.IsZero() {
				in.LastTransition = p.LastTransition
			}
		}
	}
	return out
}

// removals: one insight per Kubernetes version that removes an API in
// use, and one for the next version whatever it finds.
func removals(c *model.Cluster, obs Observed, next string) []model.Insight {
	byRelease := map[string][]Use{next: nil}
	for _, u := range obs.Deprecated {
		if u.RemovedRelease != "" {
			byRelease[u.RemovedRelease] = append(byRelease[u.RemovedRelease], u)
		}
	}
	releases := make([]string, 0, len(byRelease))
	for r := range byRelease {
		releases = append(releases, r)
	}
	sort.Slice(releases, func(i, j int) bool { a, _ := minor(releases[i]); b, _ := minor(releases[j]); return a < b })
	nextMinor, _ := minor(next)
	var out []model.Insight
	for _, r := range releases {
		uses := byRelease[r]
		in := model.Insight{Name: "Deprecated APIs removed in Kubernetes v" + r, KubernetesVersion: r,
			Description:    fmt.Sprintf("Checks for usage of deprecated APIs that are scheduled for removal in Kubernetes v%s. Upgrading your cluster before migrating to the updated APIs supported by v%s could cause application impact.", r, r),
			Recommendation: "Update manifests and API clients to use newer Kubernetes APIs if applicable before upgrading to Kubernetes v" + r + ".",
			AdditionalInfo: map[string]string{"Kubernetes API deprecation guide": "https://kubernetes.io/docs/reference/using-api/deprecation-guide/"}}
		rm, _ := minor(r)
		switch {
		case len(uses) == 0:
			in.Status, in.Reason = model.InsightPassing, "No deprecated API usage detected within the last 30 days."
		case rm <= nextMinor:
			in.Status, in.Reason = model.InsightError, fmt.Sprintf("Deprecated API usage detected: %d APIs that Kubernetes v%s no longer serves.", len(uses), r)
		default:
			in.Status, in.Reason = model.InsightWarning, fmt.Sprintf("Deprecated API usage detected: %d APIs that Kubernetes v%s no longer serves.", len(uses), r)
		}
		for _, u := range uses {
			in.Deprecations = append(in.Deprecations, model.Deprecation{Usage: u.URI(), StopServing: r, ReplacedWith: replacements[u.URI()[strings.Index(u.URI(), "/v"):]], Clients: u.Clients})
			in.Resources = append(in.Resources, model.InsightResource{Status: in.Status, URI: u.URI()})
		}
		out = append(out, in)
	}
	return out
}

// deprecatedInUse: deprecated APIs with no removal planned (v1 Endpoints,
// ComponentStatus): nothing breaks at the next upgrade, but their clients
// should move.
func deprecatedInUse(c *model.Cluster, obs Observed) model.Insight {
	in := model.Insight{Name: "Deprecated APIs in use", KubernetesVersion: c.Version,
		Description:    fmt.Sprintf("Checks for usage of APIs that Kubernetes v%s serves but marks deprecated, with no removal scheduled yet.", c.Version),
		Recommendation: "Move the clients named here to the replacement APIs."}
	for _, u := range obs.Deprecated {
		if u.RemovedRelease == "" {
			uri := u.URI()
			in.Deprecations = append(in.Deprecations, model.Deprecation{Usage: uri, ReplacedWith: replacements[uri[strings.Index(uri, "/v"):]], Clients: u.Clients})
			in.Resources = append(in.Resources, model.InsightResource{Status: model.InsightWarning, URI: uri})
		}
	}
	if len(in.Deprecations) == 0 {
		in.Status, in.Reason = model.InsightPassing, "No deprecated API usage detected."
	} else {
		var names []string
		for _, d := range in.Deprecations {
			names = append(names, d.Usage)
		}
		in.Status, in.Reason = model.InsightWarning, "Deprecated APIs in use: "+strings.Join(names, ", ")+"."
	}
	return in
}

// kubeletSkew: every kubelet within the skew of the next version, and at
// the control plane's version (update-nodegroup-version) before that.
func kubeletSkew(c *model.Cluster, obs Observed, next string) model.Insight {
	in := model.Insight{Name: "Kubelet version skew", KubernetesVersion: next,
		Description:    fmt.Sprintf("Checks the kubelet version of every node against the control plane's: a kubelet may be up to %d minor versions older than its apiservers, never newer.", MaxKubeletSkew),
		Recommendation: "Update node groups to the control plane's version (aws eks update-nodegroup-version) before upgrading the control plane further."}
	cur, _ := minor(c.Version)
	nxt, _ := minor(next)
	status := model.InsightPassing
	names := make([]string, 0, len(obs.Kubelets))
	for n := range obs.Kubelets {
		names = append(names, n)
	}
	sort.Strings(names)
	var behind, broken []string
	for _, n := range names {
		v, ok := minor(obs.Kubelets[n])
		st, reason := model.InsightPassing, ""
		switch {
		case !ok:
			st, reason = model.InsightUnknown, "kubelet version "+obs.Kubelets[n]+" not understood"
		case v > cur || nxt-v > MaxKubeletSkew:
			st, reason = model.InsightError, fmt.Sprintf("kubelet %s is out of the supported skew of Kubernetes v%s", obs.Kubelets[n], next)
			broken = append(broken, n)
		case v < cur:
			st, reason = model.InsightWarning, fmt.Sprintf("kubelet %s is older than the control plane's v%s", obs.Kubelets[n], c.Version)
			behind = append(behind, n)
		}
		if st != model.InsightPassing {
			in.Resources = append(in.Resources, model.InsightResource{Status: st, Reason: reason, URI: "/api/v1/nodes/" + n})
		}
		if rank(st) > rank(status) {
			status = st
		}
	}
	in.Status = status
	switch {
	case len(broken) > 0:
		in.Reason = fmt.Sprintf("%d nodes would be out of the kubelet version skew of Kubernetes v%s: %s.", len(broken), next, strings.Join(broken, ", "))
	case len(behind) > 0:
		in.Reason = fmt.Sprintf("%d nodes run a kubelet older than the control plane: %s.", len(behind), strings.Join(behind, ", "))
	case len(names) == 0:
		in.Reason = "No nodes."
	default:
		in.Reason = "Every kubelet runs the control plane's version."
	}
	return in
}

// addonCompat: every managed add-on has a version that runs on the next
// Kubernetes version.
func addonCompat(c *model.Cluster, cat catalog.Catalog, next string) model.Insight {
	in := model.Insight{Name: "EKS add-on version compatibility", KubernetesVersion: next,
		Description:    "Checks the version of each managed add-on against the versions that run on Kubernetes v" + next + ".",
		Recommendation: "Update the add-ons named here (aws eks update-addon --addon-version) to a version compatible with Kubernetes v" + next + " during or after the upgrade."}
	in.Status, in.Reason = model.InsightPassing, "Every managed add-on has a version that runs on Kubernetes v"+next+"."
	if len(c.Addons) == 0 {
		in.Reason = "No managed add-ons."
		return in
	}
	var names []string
	for _, a := range c.Addons {
		var compatible []string
		for _, v := range cat.AddonVersions(a.Name, next) {
			compatible = append(compatible, v.AddonVersion)
		}
		if compatible == nil {
			compatible = []string{}
		}
		in.Addons = append(in.Addons, model.AddonCompat{Name: a.Name, CompatibleVersions: compatible})
		st := model.InsightPassing
		switch {
		case len(compatible) == 0:
			st = model.InsightUnknown // skiff ships nothing for that version yet
		case slices.Contains(compatible, a.Version):
			// kube-proxy: an older one within the skew is compatible (the
			// catalog offers it); "kube-proxy version skew" still warns.
		default:
			st = model.InsightError
		}
		if st != model.InsightPassing {
			names = append(names, a.Name+" "+a.Version)
			in.Resources = append(in.Resources, model.InsightResource{Status: st, Reason: a.Name + " " + a.Version, URI: "addon/" + a.Name})
		}
		if rank(st) > rank(in.Status) {
			in.Status = st
		}
	}
	switch in.Status {
	case model.InsightUnknown:
		in.Reason = "skiff ships no add-on versions for Kubernetes v" + next + " yet."
	case model.InsightWarning, model.InsightError:
		in.Reason = "Add-ons not at a version for Kubernetes v" + next + ": " + strings.Join(names, ", ") + "."
	}
	return in
}

// kubeProxySkew: the self-managed (or managed) kube-proxy against the
// control plane, as the EKS documentation asks users to update it.
func kubeProxySkew(c *model.Cluster, obs Observed, next string) model.Insight {
	in := model.Insight{Name: "kube-proxy version skew", KubernetesVersion: next,
		Description:    "Checks the version of kube-proxy against the control plane's: it may be older, by up to " + fmt.Sprint(MaxKubeletSkew) + " minor versions, never newer.",
		Recommendation: "Update kube-proxy to the control plane's version: aws eks update-addon --addon-name kube-proxy (or create-addon --resolve-conflicts OVERWRITE if it is self-managed)."}
	if obs.KubeProxy == "" {
		in.Status, in.Reason = model.InsightPassing, "No kube-proxy runs."
		return in
	}
	v, ok := minor(obs.KubeProxy)
	cur, _ := minor(c.Version)
	nxt, _ := minor(next)
	res := model.InsightResource{URI: "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy", Reason: "kube-proxy " + obs.KubeProxy}
	switch {
	case !ok:
		in.Status, in.Reason = model.InsightUnknown, "kube-proxy version "+obs.KubeProxy+" not understood."
	case v > cur || nxt-v > MaxKubeletSkew:
		in.Status, in.Reason = model.InsightError, fmt.Sprintf("kube-proxy %s is out of the supported skew of Kubernetes v%s.", obs.KubeProxy, next)
	case v < cur:
		in.Status, in.Reason = model.InsightWarning, fmt.Sprintf("kube-proxy %s is older than the control plane's v%s.", obs.KubeProxy, c.Version)
	default:
		in.Status, in.Reason = model.InsightPassing, "kube-proxy runs the control plane's version."
	}
	if in.Status != model.InsightPassing {
		res.Status = in.Status
		in.Resources = append(in.Resources, res)
	}
	return in
}

func rank(status string) int {
	return slices.Index([]string{model.InsightPassing, model.InsightUnknown, model.InsightWarning, model.InsightError}, status)
}

// Blocking returns the ERROR insights that an upgrade to version to
// would break on (UpdateClusterVersion refuses them without force).
func Blocking(insights []model.Insight, to string) []model.Insight {
	t, _ := minor(to)
	var out []model.Insight
	for _, in := range insights {
		v, ok := minor(in.KubernetesVersion)
		if in.Status == model.InsightError && ok && v <= t {
			out = append(out, in)
		}
	}
	return out
}
