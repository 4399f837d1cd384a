package eks

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"skiff.dev/skiff/internal/api/awserr"
	"skiff.dev/skiff/internal/clusters"
	"skiff.dev/skiff/internal/model"
)

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// loggingOut renders enabled log types as EKS' Logging shape: one entry for
// the enabled types and one for the disabled ones.
func loggingOut(enabled []string) map[string]any {
	var on, off []string
	for _, t := range clusters.LogTypes {
		if slices.Contains(enabled, t) {
			on = append(on, t)
		} else {
			off = append(off, t)
		}
	}
	var setups []map[string]any
	if len(on) > 0 {
		setups = append(setups, map[string]any{"types": on, "enabled": true})
	}
	if len(off) > 0 {
		setups = append(setups, map[string]any{"types": off, "enabled": false})
	}
	return map[string]any{"clusterLogging": setups}
}

// health reports a cluster's issues in EKS' ClusterIssue shape.
func health(c *model.Cluster) []map[string]any {
	out := []map[string]any{}
	if c.Status == model.StatusFailed {
		out = append(out, map[string]any{"code": "Other", "message": c.Message, "resourceIds": []string{c.Name}})
	}
	if e := c.Encryption; e != nil && e.KeyIssue != "" {
		out = append(out, map[string]any{"code": e.KeyIssue, "message": e.KeyIssueMessage, "resourceIds": []string{e.KeyArn}})
	}
	// Hibernation is no status EKS knows: the cluster stays ACTIVE, and
	// says so here.
	if h := c.Hibernation; h != nil {
		out = append(out, map[string]any{"code": "Other", "resourceIds": []string{c.Name},
			"message": fmt.Sprintf("Hibernating since %s (%s): the control plane is stopped and its data kept; the first request through the endpoint wakes it (skiff wake does too)",
				h.Since.UTC().Format(time.RFC3339), h.Reason)})
	}
	return out
}

// encryptionConfig is one entry of EKS' encryptionConfig.
type encryptionConfig struct {
	Resources []string `json:"resources"`
	Provider  *struct {
		KeyArn string `json:"keyArn"`
	} `json:"provider"`
}

func encryptionIn(in []encryptionConfig) []clusters.Encryption {
	var out []clusters.Encryption
	for _, e := range in {
		ce := clusters.Encryption{Resources: e.Resources}
		if e.Provider != nil {
			ce.KeyArn = e.Provider.KeyArn
		}
		out = append(out, ce)
	}
	return out
}

func (h *Handler) associateEncryptionConfig(w http.ResponseWriter, r *http.Request) {
	var req struct {
		EncryptionConfig   []encryptionConfig `json:"encryptionConfig"`
		ClientRequestToken string             `json:"clientRequestToken"`
	}
	if !decode(w, r, &req) {
		return
	}
	name := r.PathValue("name")
	u, err := h.Clusters.AssociateEncryption(h.Account(r), name, req.ClientRequestToken, encryptionIn(req.EncryptionConfig))
	if err != nil {
		h.fail(w, err, name)
		return
	}
	awserr.WriteOK(w, map[string]any{"update": updateOut(u)})
}

func (h *Handler) updateClusterConfig(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ResourcesVpcConfig *vpcConfig `json:"resourcesVpcConfig"`
		Logging            *logging   `json:"logging"`
		AccessConfig       *struct {
			AuthenticationMode string `json:"authenticationMode"`
		} `json:"accessConfig"`
		ClientRequestToken string `json:"clientRequestToken"`
	}
	if !decode(w, r, &req) {
		return
	}
	name := r.PathValue("name")
	up := clusters.ConfigUpdate{ClientRequestToken: req.ClientRequestToken}
	if v := req.ResourcesVpcConfig; v != nil {
		if len(v.SubnetIDs) > 0 || len(v.SecurityGroupIDs) > 0 {
			awserr.WriteJSON(w, invalid("subnetIds and securityGroupIds cannot be changed by skiff yet; update the endpoint access only"))
			return
		}
		up.EndpointPublicAccess, up.EndpointPrivateAccess, up.PublicAccessCidrs = v.EndpointPublicAccess, v.EndpointPrivateAccess, v.PublicAccessCidrs
	}
	if req.Logging != nil {
		up.Logging = req.Logging.settings()
	}
	if req.AccessConfig != nil {
		up.AuthenticationMode = req.AccessConfig.AuthenticationMode
	}
	u, err := h.Clusters.UpdateConfig(h.Account(r), name, up)
	if err != nil {
		h.fail(w, err, name)
		return
	}
	awserr.WriteOK(w, map[string]any{"update": updateOut(u)})
}

func (h *Handler) updateClusterVersion(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Version            string `json:"version"`
		ClientRequestToken string `json:"clientRequestToken"`
		Force              bool   `json:"force"`
	}
	if !decode(w, r, &req) {
		return
	}
	name := r.PathValue("name")
	if _, err := h.Clusters.Get(h.Account(r), name); err != nil {
		h.fail(w, err, name)
		return
	}
	u, err := h.Clusters.UpdateVersion(h.Account(r), name, req.Version, req.ClientRequestToken, req.Force)
	if err != nil {
		h.fail(w, err, name)
		return
	}
	awserr.WriteOK(w, map[string]any{"update": updateOut(u)})
}

func (h *Handler) describeUpdate(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	u, err := h.Clusters.Update(h.Account(r), name, r.PathValue("id"))
	if err != nil {
		h.fail(w, err, name)
		return
	}
	if q := r.URL.Query(); u.Nodegroup != q.Get("nodegroupName") || u.Addon != q.Get("addonName") {
		h.fail(w, fmt.Errorf("%w: No update found for ID: %s", clusters.ErrNotFound, r.PathValue("id")), name)
		return
	}
	awserr.WriteOK(w, map[string]any{"update": updateOut(u)})
}

func (h *Handler) listUpdates(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	c, err := h.Clusters.Get(h.Account(r), name)
	if err != nil {
		h.fail(w, err, name)
		return
	}
	ids := []string{}
	q := r.URL.Query()
	for _, u := range c.Updates {
		if u.Nodegroup == q.Get("nodegroupName") && u.Addon == q.Get("addonName") {
			ids = append(ids, u.ID)
		}
	}
	writePage(w, r, "updateIds", ids)
}

// maxResults reads the maxResults query parameter (1-100, default 100).
func maxResults(w http.ResponseWriter, r *http.Request) (int, bool) {
	v := r.URL.Query().Get("maxResults")
	if v == "" {
		return 100, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 100 {
		awserr.WriteJSON(w, invalid("maxResults must be a number from 1 to 100"))
		return 0, false
	}
	return n, true
}

// PageOrdered pages through items in their given order; the token names the
// last item returned.
func PageOrdered(items []string, token string, max int) ([]string, string, error) {
	start := 0
	if token != "" {
		after, err := base64.RawURLEncoding.DecodeString(token)
		i := slices.Index(items, string(after))
		if err != nil || i < 0 {
			return nil, "", fmt.Errorf("nextToken %q is not a token from a previous response; start again without it", token)
		}
		start = i + 1
	}
	end := min(start+max, len(items))
	page := append([]string{}, items[start:end]...)
	next := ""
	if end < len(items) {
		next = base64.RawURLEncoding.EncodeToString([]byte(items[end-1]))
	}
	return page, next, nil
}

func updateOut(u *model.Update) map[string]any {
	params := []map[string]string{}
	for _, p := range u.Params {
		params = append(params, map[string]string{"type": p.Type, "value": p.Value})
	}
	errs := []map[string]any{}
	for _, e := range u.Errors {
		errs = append(errs, map[string]any{"errorCode": e.Code, "errorMessage": e.Message, "resourceIds": nonNil(e.ResourceIDs)})
	}
	return map[string]any{"id": u.ID, "status": u.Status, "type": u.Type, "params": params,
		"createdAt": float64(u.CreatedAt.UnixMilli()) / 1000, "errors": errs}
}

func (h *Handler) describeClusterVersions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	max, ok := maxResults(w, r)
	if !ok {
		return
	}
	if t := q.Get("clusterType"); t != "" && t != "eks" {
		awserr.WriteJSON(w, invalid(fmt.Sprintf("clusterType %q is not supported; skiff has eks clusters", t)))
		return
	}
	for _, p := range []string{"status", "versionStatus"} {
		if v := q.Get(p); v != "" && !strings.EqualFold(strings.ReplaceAll(v, "-", "_"), "STANDARD_SUPPORT") {
			awserr.WriteOK(w, map[string]any{"clusterVersions": []any{}})
			return
		}
	}
	want := q["clusterVersions"]
	all := h.Clusters.Bundles.All()
	latest := h.Clusters.Bundles.Latest().Minor()
	var minors []string
	info := map[string]map[string]any{}
	for i := len(all) - 1; i >= 0; i-- { // newest first, as EKS lists them
		b := all[i]
		m := b.Minor()
		if len(want) > 0 && !slices.Contains(want, m) || q.Get("defaultOnly") == "true" && m != latest {
			continue
		}
		minors = append(minors, m)
		info[m] = map[string]any{"clusterVersion": m, "clusterType": "eks", "defaultPlatformVersion": clusters.PlatformVersion,
			"defaultVersion": m == latest, "status": "standard-support", "versionStatus": "STANDARD_SUPPORT",
			"kubernetesPatchVersion": strings.TrimPrefix(b.KubernetesVersion, "v")}
	}
	page, next, err := PageOrdered(minors, q.Get("nextToken"), max)
	if err != nil {
		awserr.WriteJSON(w, invalid(err.Error()))
		return
	}
	out := []map[string]any{}
	for _, m := range page {
		out = append(out, info[m])
	}
	resp := map[string]any{"clusterVersions": out}
	if next != "" {
		resp["nextToken"] = next
	}
	awserr.WriteOK(w, resp)
}

// resource resolves an EKS ARN of the caller's account to a cluster name.
func (h *Handler) resource(w http.ResponseWriter, r *http.Request) (string, bool) {
	arn := r.PathValue("arn")
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "eks" || !strings.Contains(parts[5], "/") {
		awserr.WriteJSON(w, awserr.New(http.StatusBadRequest, "BadRequestException",
			fmt.Sprintf("%q is not an EKS resource ARN; pass one like arn:aws:eks:%s:ACCOUNT:cluster/NAME (see 'aws eks describe-cluster')", arn, h.Region)))
		return "", false
	}
	kind, name, _ := strings.Cut(parts[5], "/")
	if parts[3] != h.Region || parts[4] != h.Account(r) || kind != "cluster" || strings.Contains(name, "/") {
		awserr.WriteJSON(w, awserr.New(http.StatusNotFound, "NotFoundException", "Resource not found: "+arn))
		return "", false
	}
	if _, err := h.Clusters.Get(h.Account(r), name); err != nil {
		awserr.WriteJSON(w, awserr.New(http.StatusNotFound, "NotFoundException", "Resource not found: "+arn))
		return "", false
	}
	return name, true
}

func (h *Handler) tagResource(w http.ResponseWriter, r *http.Request) {
	name, ok := h.resource(w, r)
	if !ok {
		return
	}
	var req struct {
		Tags map[string]string `json:"tags"`
	}
	if !decode(w, r, &req) {
		return
	}
	if len(req.Tags) == 0 {
		awserr.WriteJSON(w, awserr.New(http.StatusBadRequest, "BadRequestException", "tags is required: pass at least one tag"))
		return
	}
	h.tagResult(w, h.Clusters.Tag(h.Account(r), name, req.Tags))
}

func (h *Handler) untagResource(w http.ResponseWriter, r *http.Request) {
	name, ok := h.resource(w, r)
	if !ok {
		return
	}
	keys := r.URL.Query()["tagKeys"]
	if len(keys) == 0 {
		awserr.WriteJSON(w, awserr.New(http.StatusBadRequest, "BadRequestException", "tagKeys is required: pass the keys of the tags to remove"))
		return
	}
	h.tagResult(w, h.Clusters.Untag(h.Account(r), name, keys))
}

func (h *Handler) tagResult(w http.ResponseWriter, err error) {
	switch {
	case err == nil:
		awserr.WriteOK(w, map[string]any{})
	case errors.Is(err, clusters.ErrInvalid):
		awserr.WriteJSON(w, awserr.New(http.StatusBadRequest, "BadRequestException", strings.TrimPrefix(err.Error(), clusters.ErrInvalid.Error()+": ")))
	case errors.Is(err, clusters.ErrNotFound):
		awserr.WriteJSON(w, awserr.New(http.StatusNotFound, "NotFoundException", strings.TrimPrefix(err.Error(), clusters.ErrNotFound.Error()+": ")))
	default:
		h.fail(w, err, "")
	}
}

func (h *Handler) listTags(w http.ResponseWriter, r *http.Request) {
	name, ok := h.resource(w, r)
	if !ok {
		return
	}
	c, err := h.Clusters.Get(h.Account(r), name)
	if err != nil {
		h.tagResult(w, err)
		return
	}
	tags := c.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	awserr.WriteOK(w, map[string]any{"tags": tags})
}
