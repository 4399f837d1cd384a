package eks

import (
	"net/http"
	"strings"
	"time"

	"skiff.dev/skiff/internal/access"
	"skiff.dev/skiff/internal/api/awserr"
	"skiff.dev/skiff/internal/clusters"
	"skiff.dev/skiff/internal/model"
)

func (h *Handler) accessRoutes() {
	h.handle("POST /clusters/{name}/access-entries", h.createAccessEntry)
	h.handle("GET /clusters/{name}/access-entries", h.listAccessEntries)
	h.handle("GET /clusters/{name}/access-entries/{principalArn}", h.describeAccessEntry)
	h.handle("POST /clusters/{name}/access-entries/{principalArn}", h.updateAccessEntry)
	h.handle("DELETE /clusters/{name}/access-entries/{principalArn}", h.deleteAccessEntry)
	h.handle("POST /clusters/{name}/access-entries/{principalArn}/access-policies", h.associateAccessPolicy)
	h.handle("GET /clusters/{name}/access-entries/{principalArn}/access-policies", h.listAssociatedAccessPolicies)
	h.handle("DELETE /clusters/{name}/access-entries/{principalArn}/access-policies/{policyArn}", h.disassociateAccessPolicy)
	h.handle("GET /access-policies", h.listAccessPolicies)
}

// accessEntryOut is EKS' AccessEntry shape.
func (h *Handler) accessEntryOut(cluster, account string, e *model.AccessEntry) map[string]any {
	tags := e.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	return map[string]any{
		"clusterName":      cluster,
		"principalArn":     e.PrincipalArn,
		"kubernetesGroups": nonNil(e.KubernetesGroups),
		"accessEntryArn":   h.accessEntryArn(account, cluster, e),
		"createdAt":        epoch(e.CreatedAt),
		"modifiedAt":       epoch(e.ModifiedAt),
		"tags":             tags,
		"username":         e.Username,
		"type":             e.Type,
	}
}

func associationOut(a *model.AccessPolicyAssociation) map[string]any {
	scope := map[string]any{"type": a.Scope.Type}
	if a.Scope.Type == "namespace" {
		scope["namespaces"] = a.Scope.Namespaces
	} else {
		scope["namespaces"] = []string{}
	}
	return map[string]any{"policyArn": a.PolicyArn, "accessScope": scope,
		"associatedAt": epoch(a.AssociatedAt), "modifiedAt": epoch(a.ModifiedAt)}
}

type accessEntryRequest struct {
	PrincipalArn       *string           `json:"principalArn"`
	KubernetesGroups   []string          `json:"kubernetesGroups"`
	Tags               map[string]string `json:"tags"`
	ClientRequestToken string            `json:"clientRequestToken"`
	Username           *string           `json:"username"`
	Type               string            `json:"type"`
}

func (h *Handler) createAccessEntry(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req accessEntryRequest
	if !decode(w, r, &req) {
		return
	}
	if req.PrincipalArn == nil {
		awserr.WriteJSON(w, invalid("principalArn is required: the ARN of the IAM user or role to give access"))
		return
	}
	e, err := h.Clusters.CreateAccessEntry(h.Account(r), name, clusters.AccessEntryRequest{PrincipalArn: *req.PrincipalArn, Type: req.Type,
		Username: req.Username, KubernetesGroups: req.KubernetesGroups, Tags: req.Tags, ClientRequestToken: req.ClientRequestToken})
	if err != nil {
		h.fail(w, err, name)
		return
	}
	awserr.WriteOK(w, map[string]any{"accessEntry": h.accessEntryOut(name, h.Account(r), e)})
}

func (h *Handler) describeAccessEntry(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	_, e, err := h.Clusters.AccessEntry(h.Account(r), name, r.PathValue("principalArn"))
	if err != nil {
		h.fail(w, err, name)
		return
	}
	awserr.WriteOK(w, map[string]any{"accessEntry": h.accessEntryOut(name, h.Account(r), e)})
}

func (h *Handler) listAccessEntries(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	arns, err := h.Clusters.AccessEntries(h.Account(r), name, r.URL.Query().Get("associatedPolicyArn"))
	if err != nil {
		h.fail(w, err, name)
		return
	}
	writePage(w, r, "accessEntries", arns)
}

func (h *Handler) updateAccessEntry(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req accessEntryRequest
	if !decode(w, r, &req) {
		return
	}
	e, err := h.Clusters.UpdateAccessEntry(h.Account(r), name, clusters.AccessEntryRequest{PrincipalArn: r.PathValue("principalArn"),
		Username: req.Username, KubernetesGroups: req.KubernetesGroups})
	if err != nil {
		h.fail(w, err, name)
		return
	}
	awserr.WriteOK(w, map[string]any{"accessEntry": h.accessEntryOut(name, h.Account(r), e)})
}

func (h *Handler) deleteAccessEntry(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := h.Clusters.DeleteAccessEntry(h.Account(r), name, r.PathValue("principalArn")); err != nil {
		h.fail(w, err, name)
		return
	}
	awserr.WriteOK(w, map[string]any{})
}

func (h *Handler) associateAccessPolicy(w http.ResponseWriter, r *http.Request) {
	name, principal := r.PathValue("name"), r.PathValue("principalArn")
	var req struct {
		PolicyArn   *string `json:"policyArn"`
		AccessScope *struct {
			Type       string   `json:"type"`
			Namespaces []string `json:"namespaces"`
		} `json:"accessScope"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.PolicyArn == nil || req.AccessScope == nil {
		awserr.WriteJSON(w, invalid("policyArn and accessScope are required, e.g. --policy-arn "+access.PolicyArnPrefix+"AmazonEKSViewPolicy --access-scope type=namespace,namespaces=default"))
		return
	}
	a, err := h.Clusters.AssociateAccessPolicy(h.Account(r), name, principal, *req.PolicyArn,
		model.AccessScope{Type: req.AccessScope.Type, Namespaces: req.AccessScope.Namespaces})
	if err != nil {
		h.fail(w, err, name)
		return
	}
	awserr.WriteOK(w, map[string]any{"clusterName": name, "principalArn": principal, "associatedAccessPolicy": associationOut(a)})
}

func (h *Handler) disassociateAccessPolicy(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := h.Clusters.DisassociateAccessPolicy(h.Account(r), name, r.PathValue("principalArn"), r.PathValue("policyArn")); err != nil {
		h.fail(w, err, name)
		return
	}
	awserr.WriteOK(w, map[string]any{})
}

func (h *Handler) listAssociatedAccessPolicies(w http.ResponseWriter, r *http.Request) {
	name, principal := r.PathValue("name"), r.PathValue("principalArn")
	max, ok := maxResults(w, r)
	if !ok {
		return
	}
	_, e, err := h.Clusters.AccessEntry(h.Account(r), name, principal)
	if err != nil {
		h.fail(w, err, name)
		return
	}
	var arns []string
	for _, a := range e.Policies {
		arns = append(arns, a.PolicyArn)
	}
	page, next, err := PageOrdered(arns, r.URL.Query().Get("nextToken"), max)
	if err != nil {
		awserr.WriteJSON(w, invalid(err.Error()))
		return
	}
	list := []map[string]any{}
	for _, a := range e.Policies {
		for _, p := range page {
			if p == a.PolicyArn {
				list = append(list, associationOut(&a))
			}
		}
	}
	out := map[string]any{"clusterName": name, "principalArn": principal, "associatedAccessPolicies": list}
	if next != "" {
		out["nextToken"] = next
	}
	awserr.WriteOK(w, out)
}

func (h *Handler) listAccessPolicies(w http.ResponseWriter, r *http.Request) {
	max, ok := maxResults(w, r)
	if !ok {
		return
	}
	var arns []string
	for _, p := range access.Policies {
		arns = append(arns, p.Arn())
	}
	page, next, err := PageOrdered(arns, r.URL.Query().Get("nextToken"), max)
	if err != nil {
		awserr.WriteJSON(w, invalid(err.Error()))
		return
	}
	list := []map[string]string{}
	for _, arn := range page {
		list = append(list, map[string]string{"name": strings.TrimPrefix(arn, access.PolicyArnPrefix), "arn": arn})
	}
	out := map[string]any{"accessPolicies": list}
	if next != "" {
		out["nextToken"] = next
	}
	awserr.WriteOK(w, out)
}

// epoch is a timestamp as restJson1 sends it: seconds since the epoch.
func epoch(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

// writePage answers a list call: items paged by maxResults and nextToken,
// under key.
func writePage(w http.ResponseWriter, r *http.Request, key string, items []string) {
	max, ok := maxResults(w, r)
	if !ok {
		return
	}
	page, next, err := PageOrdered(items, r.URL.Query().Get("nextToken"), max)
	if err != nil {
		awserr.WriteJSON(w, invalid(err.Error()))
		return
	}
	out := map[string]any{key: nonNil(page)}
	if next != "" {
		out["nextToken"] = next
	}
	awserr.WriteOK(w, out)
}
