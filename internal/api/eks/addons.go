package eks

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"skiff.dev/skiff/internal/addons/catalog"
	"skiff.dev/skiff/internal/api/awserr"
	"skiff.dev/skiff/internal/clusters"
	"skiff.dev/skiff/internal/model"
)

func (h *Handler) addonRoutes() {
	h.handle("POST /clusters/{name}/addons", h.createAddon)
	h.handle("GET /clusters/{name}/addons", h.listAddons)
	h.handle("GET /clusters/{name}/addons/{addon}", h.describeAddon)
	h.handle("DELETE /clusters/{name}/addons/{addon}", h.deleteAddon)
	h.handle("POST /clusters/{name}/addons/{addon}/update", h.updateAddon)
	h.handle("GET /addons/supported-versions", h.describeAddonVersions)
	h.handle("GET /addons/configuration-schemas", h.describeAddonConfiguration)
}

// addonRequest is the part of Create/UpdateAddonRequest skiff reads.
type addonRequest struct {
	AddonName             string            `json:"addonName"`
	AddonVersion          string            `json:"addonVersion"`
	ServiceAccountRoleArn string            `json:"serviceAccountRoleArn"`
	ResolveConflicts      string            `json:"resolveConflicts"`
	ClientRequestToken    string            `json:"clientRequestToken"`
	Tags                  map[string]string `json:"tags"`
	ConfigurationValues   *string           `json:"configurationValues"`
	PodIdentity           []any             `json:"podIdentityAssociations"`
}

func (req addonRequest) service() clusters.AddonRequest {
	return clusters.AddonRequest{Name: req.AddonName, Version: req.AddonVersion, ConfigurationValues: req.ConfigurationValues,
		ServiceAccountRoleArn: req.ServiceAccountRoleArn, ResolveConflicts: req.ResolveConflicts, Tags: req.Tags,
		ClientRequestToken: req.ClientRequestToken}
}

func (h *Handler) addonOut(c *model.Cluster, a *model.Addon) map[string]any {
	issues := []map[string]any{}
	for _, is := range a.Issues {
		issues = append(issues, map[string]any{"code": is.Code, "message": is.Message, "resourceIds": nonNil(is.ResourceIDs)})
	}
	tags := a.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	out := map[string]any{
		"addonName":               a.Name,
		"clusterName":             c.Name,
		"status":                  a.Status,
		"addonVersion":            a.Version,
		"health":                  map[string]any{"issues": issues},
		"addonArn":                h.addonArn(c, a.Name),
		"createdAt":               epoch(a.CreatedAt),
		"modifiedAt":              epoch(a.ModifiedAt),
		"tags":                    tags,
		"podIdentityAssociations": []string{},
		"owner":                   "aws",
		"publisher":               "eks",
	}
	if a.ServiceAccountRoleArn != "" {
		out["serviceAccountRoleArn"] = a.ServiceAccountRoleArn
	}
	if a.ConfigurationValues != "" {
		out["configurationValues"] = a.ConfigurationValues
	}
	return out
}

func (h *Handler) createAddon(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req addonRequest
	if !decode(w, r, &req) {
		return
	}
	if req.AddonName == "" {
		awserr.WriteJSON(w, invalid("addonName is required: see `aws eks describe-addon-versions` for the add-ons"))
		return
	}
	if len(req.PodIdentity) > 0 {
		awserr.WriteJSON(w, invalid("podIdentityAssociations are not supported by skiff; create the add-on without them"))
		return
	}
	a, err := h.Clusters.CreateAddon(h.Account(r), name, req.service())
	if err != nil {
		h.fail(w, err, name)
		return
	}
	h.writeAddon(w, r, name, a)
}

func (h *Handler) writeAddon(w http.ResponseWriter, r *http.Request, cluster string, a *model.Addon) {
	c, err := h.Clusters.Get(h.Account(r), cluster)
	if err != nil {
		h.fail(w, err, cluster)
		return
	}
	awserr.WriteOK(w, map[string]any{"addon": h.addonOut(c, a)})
}

func (h *Handler) describeAddon(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	a, err := h.Clusters.Addon(h.Account(r), name, r.PathValue("addon"))
	if err != nil {
		h.fail(w, err, name)
		return
	}
	h.writeAddon(w, r, name, a)
}

func (h *Handler) listAddons(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	c, err := h.Clusters.Get(h.Account(r), name)
	if err != nil {
		h.fail(w, err, name)
		return
	}
	names := []string{}
	for _, a := range c.Addons {
		names = append(names, a.Name)
	}
	writePage(w, r, "addons", names)
}

func (h *Handler) updateAddon(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req addonRequest
	if !decode(w, r, &req) {
		return
	}
	req.AddonName = r.PathValue("addon")
	if len(req.PodIdentity) > 0 {
		awserr.WriteJSON(w, invalid("podIdentityAssociations are not supported by skiff; update the add-on without them"))
		return
	}
	u, err := h.Clusters.UpdateAddon(h.Account(r), name, req.service())
	if err != nil {
		h.fail(w, err, name)
		return
	}
	awserr.WriteOK(w, map[string]any{"update": updateOut(u)})
}

func (h *Handler) deleteAddon(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	preserve := false
	if v := r.URL.Query().Get("preserve"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			awserr.WriteJSON(w, invalid("preserve must be true or false"))
			return
		}
		preserve = b
	}
	a, err := h.Clusters.DeleteAddon(h.Account(r), name, r.PathValue("addon"), preserve)
	if err != nil {
		h.fail(w, err, name)
		return
	}
	h.writeAddon(w, r, name, a)
}

func (h *Handler) describeAddonVersions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cat := h.Clusters.Addons
	k8s := q.Get("kubernetesVersion")
	if k8s != "" && cat.Versions[k8s] == "" {
		// EKS answers an empty list for a version it has no add-ons for.
		awserr.WriteOK(w, map[string]any{"addons": []any{}})
		return
	}
	var names []string
	for _, n := range cat.Names() {
		if q.Get("addonName") == "" || q.Get("addonName") == n {
			names = append(names, n)
		}
	}
	if t := q["types"]; len(t) > 0 && !slices.Contains(t, "networking") {
		names = nil
	}
	if p := q["publishers"]; len(p) > 0 && !slices.Contains(p, "eks") {
		names = nil
	}
	if o := q["owners"]; len(o) > 0 && !slices.Contains(o, "aws") {
		names = nil
	}
	page, next, err := pageAddons(w, r, names)
	if err != nil {
		return
	}
	infos := []map[string]any{}
	for _, n := range page {
		var versions []map[string]any
		for _, v := range cat.AddonVersions(n, k8s) {
			var compat []map[string]any
			for _, cv := range v.Compatibilities {
				if k8s == "" || cv.ClusterVersion == k8s {
					compat = append(compat, map[string]any{"clusterVersion": cv.ClusterVersion, "platformVersions": []string{"*"}, "defaultVersion": cv.Default})
				}
			}
			versions = append(versions, map[string]any{"addonVersion": v.AddonVersion, "architecture": []string{"amd64"},
				"computeTypes": []string{"ec2"}, "compatibilities": compat, "requiresConfiguration": false, "requiresIamPermissions": false})
		}
		infos = append(infos, map[string]any{"addonName": n, "type": "networking", "addonVersions": versions,
			"publisher": "eks", "owner": "aws", "defaultNamespace": "kube-system"})
	}
	out := map[string]any{"addons": infos}
	if next != "" {
		out["nextToken"] = next
	}
	awserr.WriteOK(w, out)
}

// pageAddons pages add-on names by maxResults/nextToken; it answers a bad
// request itself (and returns an error).
func pageAddons(w http.ResponseWriter, r *http.Request, names []string) ([]string, string, error) {
	max, ok := maxResults(w, r)
	if !ok {
		return nil, "", fmt.Errorf("bad maxResults")
	}
	page, next, err := PageOrdered(names, r.URL.Query().Get("nextToken"), max)
	if err != nil {
		awserr.WriteJSON(w, invalid(err.Error()))
	}
	return page, next, err
}

func (h *Handler) describeAddonConfiguration(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name, version := q.Get("addonName"), q.Get("addonVersion")
	if name == "" || version == "" {
		awserr.WriteJSON(w, invalid("addonName and addonVersion are required (see `aws eks describe-addon-versions`)"))
		return
	}
	if !h.Clusters.Addons.Supports(name, version, "") {
		awserr.WriteJSON(w, awserr.New(http.StatusNotFound, "ResourceNotFoundException",
			fmt.Sprintf("Addon %s with version %s not found; see `aws eks describe-addon-versions --addon-name %s`", name, version, name)))
		return
	}
	awserr.WriteOK(w, map[string]any{"addonName": name, "addonVersion": version, "configurationSchema": catalog.Schema(name),
		"podIdentityConfiguration": []any{}})
}
