package eks

import (
	"net/http"

	"skiff.dev/skiff/internal/api/awserr"
	"skiff.dev/skiff/internal/clusters"
	"skiff.dev/skiff/internal/model"
)

func (h *Handler) insightRoutes() {
	h.handle("POST /clusters/{name}/insights", h.listInsights)
	h.handle("GET /clusters/{name}/insights/{id}", h.describeInsight)
	h.handle("POST /clusters/{name}/insights-refresh", h.startInsightsRefresh)
	h.handle("GET /clusters/{name}/insights-refresh", h.describeInsightsRefresh)
}

func insightStatusOut(status, reason string) map[string]any {
	return map[string]any{"status": status, "reason": reason}
}

func insightSummaryOut(in model.Insight) map[string]any {
	return map[string]any{
		"id":                 in.ID,
		"name":               in.Name,
		"category":           in.Category,
		"kubernetesVersion":  in.KubernetesVersion,
		"lastRefreshTime":    epoch(in.LastRefresh),
		"lastTransitionTime": epoch(in.LastTransition),
		"description":        in.Description,
		"insightStatus":      insightStatusOut(in.Status, in.Reason),
	}
}

func insightOut(in model.Insight) map[string]any {
	out := insightSummaryOut(in)
	out["recommendation"] = in.Recommendation
	out["additionalInfo"] = nonNilMap(in.AdditionalInfo)
	resources := []map[string]any{}
	for _, r := range in.Resources {
		x := map[string]any{"insightStatus": insightStatusOut(r.Status, r.Reason)}
		if r.URI != "" {
			x["kubernetesResourceUri"] = r.URI
		}
		if r.Arn != "" {
			x["arn"] = r.Arn
		}
		resources = append(resources, x)
	}
	out["resources"] = resources
	summary := map[string]any{}
	if len(in.Deprecations) > 0 {
		var deps []map[string]any
		for _, d := range in.Deprecations {
			clients := []map[string]any{}
			for _, c := range d.Clients {
				clients = append(clients, map[string]any{"userAgent": c.UserAgent, "numberOfRequestsLast30Days": c.Requests, "lastRequestTime": epoch(c.Last)})
			}
			deps = append(deps, map[string]any{"usage": d.Usage, "replacedWith": d.ReplacedWith, "stopServingVersion": d.StopServing,
				"startServingReplacementVersion": d.ReplacementFor, "clientStats": clients})
		}
		summary["deprecationDetails"] = deps
	}
	if len(in.Addons) > 0 {
		var addons []map[string]any
		for _, a := range in.Addons {
			addons = append(addons, map[string]any{"name": a.Name, "compatibleVersions": a.CompatibleVersions})
		}
		summary["addonCompatibilityDetails"] = addons
	}
	out["categorySpecificSummary"] = summary
	return out
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func (h *Handler) listInsights(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req struct {
		Filter *struct {
			Categories         []string `json:"categories"`
			KubernetesVersions []string `json:"kubernetesVersions"`
			Statuses           []string `json:"statuses"`
		} `json:"filter"`
		MaxResults *int   `json:"maxResults"`
		NextToken  string `json:"nextToken"`
	}
	if r.ContentLength != 0 && !decode(w, r, &req) {
		return
	}
	max := 100
	if req.MaxResults != nil {
		if *req.MaxResults < 1 || *req.MaxResults > 100 {
			awserr.WriteJSON(w, invalid("maxResults must be a number from 1 to 100"))
			return
		}
		max = *req.MaxResults
	}
	var f clusters.InsightsFilter
	if req.Filter != nil {
		f = clusters.InsightsFilter{Categories: req.Filter.Categories, KubernetesVersions: req.Filter.KubernetesVersions, Statuses: req.Filter.Statuses}
	}
	ins, err := h.Clusters.Insights(h.Account(r), name, f)
	if err != nil {
		h.fail(w, err, name)
		return
	}
	ids := make([]string, 0, len(ins))
	byID := map[string]model.Insight{}
	for _, in := range ins {
		ids = append(ids, in.ID)
		byID[in.ID] = in
	}
	page, next, err := PageOrdered(ids, req.NextToken, max)
	if err != nil {
		awserr.WriteJSON(w, invalid(err.Error()))
		return
	}
	out := []map[string]any{}
	for _, id := range page {
		out = append(out, insightSummaryOut(byID[id]))
	}
	body := map[string]any{"insights": out}
	if next != "" {
		body["nextToken"] = next
	}
	awserr.WriteOK(w, body)
}

func (h *Handler) describeInsight(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	in, err := h.Clusters.Insight(h.Account(r), name, r.PathValue("id"))
	if err != nil {
		h.fail(w, err, name)
		return
	}
	awserr.WriteOK(w, map[string]any{"insight": insightOut(*in)})
}

func refreshOut(rf model.InsightsRefresh) map[string]any {
	out := map[string]any{"status": rf.Status, "message": rf.Message}
	if !rf.Started.IsZero() {
		out["startedAt"] = epoch(rf.Started)
	}
	if !rf.Ended.IsZero() && rf.Status != model.RefreshInProgress {
		out["endedAt"] = epoch(rf.Ended)
	}
	return out
}

func (h *Handler) startInsightsRefresh(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	rf, err := h.Clusters.StartInsightsRefresh(h.Account(r), name)
	if err != nil {
		h.fail(w, err, name)
		return
	}
	out := refreshOut(rf)
	delete(out, "startedAt")
	delete(out, "endedAt")
	awserr.WriteOK(w, out)
}

func (h *Handler) describeInsightsRefresh(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	rf, err := h.Clusters.InsightsRefresh(h.Account(r), name)
	if err != nil {
		h.fail(w, err, name)
		return
	}
	awserr.WriteOK(w, refreshOut(rf))
}
