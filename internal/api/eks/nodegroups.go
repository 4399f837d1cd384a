package eks

import (
	"cmp"
	"fmt"
	"net/http"

	"skiff.dev/skiff/internal/api/awserr"
	"skiff.dev/skiff/internal/clusters"
	"skiff.dev/skiff/internal/model"
)

func (h *Handler) nodegroupRoutes() {
	h.handle("POST /clusters/{name}/node-groups", h.createNodegroup)
	h.handle("GET /clusters/{name}/node-groups", h.listNodegroups)
	h.handle("GET /clusters/{name}/node-groups/{ng}", h.describeNodegroup)
	h.handle("DELETE /clusters/{name}/node-groups/{ng}", h.deleteNodegroup)
	h.handle("POST /clusters/{name}/node-groups/{ng}/update-config", h.updateNodegroupConfig)
	h.handle("POST /clusters/{name}/node-groups/{ng}/update-version", h.updateNodegroupVersion)
}

// updateConfig is EKS' NodegroupUpdateConfig; updateStrategy (MINIMAL
// or DEFAULT) is refused by name: skiff has one strategy, surge first.
type updateConfig struct {
	MaxUnavailable           *int    `json:"maxUnavailable"`
	MaxUnavailablePercentage *int    `json:"maxUnavailablePercentage"`
	UpdateStrategy           *string `json:"updateStrategy"`
}

func (u *updateConfig) model() (*model.UpdateConfig, error) {
	if u == nil {
		return nil, nil
	}
	if u.UpdateStrategy != nil && *u.UpdateStrategy != "DEFAULT" {
		return nil, fmt.Errorf("updateConfig.updateStrategy %s is not supported: skiff updates node groups one way, new nodes first (DEFAULT); leave it out", *u.UpdateStrategy)
	}
	out := &model.UpdateConfig{}
	if u.MaxUnavailable != nil {
		out.MaxUnavailable = *u.MaxUnavailable
		if *u.MaxUnavailable < 1 {
			out.MaxUnavailable = -1 // refused by the service's validation
		}
	}
	if u.MaxUnavailablePercentage != nil {
		out.MaxUnavailablePercentage = *u.MaxUnavailablePercentage
		if *u.MaxUnavailablePercentage < 1 {
			out.MaxUnavailablePercentage = -1
		}
	}
	return out, nil
}

func updateConfigOut(u model.UpdateConfig) map[string]any {
	if u.MaxUnavailablePercentage > 0 {
		return map[string]any{"maxUnavailablePercentage": u.MaxUnavailablePercentage}
	}
	return map[string]any{"maxUnavailable": u.Batch(0)}
}

type scalingConfig struct {
	MinSize     *int `json:"minSize"`
	MaxSize     *int `json:"maxSize"`
	DesiredSize *int `json:"desiredSize"`
}

func (h *Handler) nodegroupOut(c *model.Cluster, ng *model.Nodegroup) map[string]any {
	issues := []map[string]any{}
	for _, is := range ng.Issues {
		issues = append(issues, map[string]any{"code": is.Code, "message": is.Message, "resourceIds": nonNil(is.ResourceIDs)})
	}
	taints := []map[string]string{}
	for _, t := range ng.Taints {
		taints = append(taints, map[string]string{"key": t.Key, "value": t.Value, "effect": t.Effect})
	}
	labels, tags := ng.Labels, ng.Tags
	if labels == nil {
		labels = map[string]string{}
	}
	if tags == nil {
		tags = map[string]string{}
	}
	return map[string]any{
		"nodegroupName":  ng.Name,
		"nodegroupArn":   h.nodegroupArn(c, ng),
		"clusterName":    c.Name,
		"version":        ng.Version,
		"releaseVersion": clusters.ReleaseVersion(ng.Version),
		"createdAt":      epoch(ng.CreatedAt),
		"modifiedAt":     epoch(ng.ModifiedAt),
		"status":         ng.Status,
		"capacityType":   "ON_DEMAND",
		"scalingConfig":  map[string]int{"minSize": ng.Min, "maxSize": ng.Max, "desiredSize": ng.Desired},
		"instanceTypes":  ng.InstanceTypes,
		"subnets":        ng.Subnets,
		"amiType":        "AL2023_x86_64_STANDARD",
		"nodeRole":       ng.NodeRole,
		"labels":         labels,
		"taints":         taints,
		"resources":      map[string]any{"autoScalingGroups": []map[string]string{{"name": "eks-" + ng.Name + "-" + ng.ID}}},
		"diskSize":       20,
		"health":         map[string]any{"issues": issues},
		"updateConfig":   updateConfigOut(ng.UpdateConfig),
		"tags":           tags,
	}
}

func taintsIn(in taintList) []model.Taint {
	var out []model.Taint
	for _, t := range in {
		out = append(out, model.Taint{Key: t.Key, Value: t.Value, Effect: t.Effect})
	}
	return out
}

type taintList = []struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Effect string `json:"effect"`
}

func (h *Handler) createNodegroup(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req struct {
		NodegroupName      string            `json:"nodegroupName"`
		ScalingConfig      *scalingConfig    `json:"scalingConfig"`
		Subnets            []string          `json:"subnets"`
		InstanceTypes      []string          `json:"instanceTypes"`
		NodeRole           string            `json:"nodeRole"`
		Labels             map[string]string `json:"labels"`
		Taints             taintList         `json:"taints"`
		Tags               map[string]string `json:"tags"`
		ClientRequestToken string            `json:"clientRequestToken"`
		Version            string            `json:"version"`
		ReleaseVersion     string            `json:"releaseVersion"`
		UpdateConfig       *updateConfig     `json:"updateConfig"`
		LaunchTemplate     any               `json:"launchTemplate"`
		RemoteAccess       any               `json:"remoteAccess"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.LaunchTemplate != nil || req.RemoteAccess != nil {
		awserr.WriteJSON(w, invalid("skiff does not support launchTemplate or remoteAccess for node groups; leave them out"))
		return
	}
	uc, err := req.UpdateConfig.model()
	if err != nil {
		awserr.WriteJSON(w, invalid(err.Error()))
		return
	}
	if req.ReleaseVersion != "" && (req.Version == "" || req.ReleaseVersion != clusters.ReleaseVersion(req.Version)) {
		awserr.WriteJSON(w, invalid(fmt.Sprintf("releaseVersion %s is not one of skiff's: pass version, and releaseVersion %s or none", req.ReleaseVersion, clusters.ReleaseVersion(cmp.Or(req.Version, "VERSION")))))
		return
	}
	sc := req.ScalingConfig
	if sc == nil {
		sc = &scalingConfig{}
	}
	c, ng, err := h.Clusters.CreateNodegroup(h.Account(r), name, clusters.NodegroupRequest{Name: req.NodegroupName, NodeRole: req.NodeRole,
		Subnets: req.Subnets, InstanceTypes: req.InstanceTypes, Min: sc.MinSize, Max: sc.MaxSize, Desired: sc.DesiredSize,
		Labels: req.Labels, Taints: taintsIn(req.Taints), Tags: req.Tags, ClientRequestToken: req.ClientRequestToken,
		Version: req.Version, UpdateConfig: uc})
	if err != nil {
		h.fail(w, err, name)
		return
	}
	awserr.WriteOK(w, map[string]any{"nodegroup": h.nodegroupOut(c, ng)})
}

func (h *Handler) describeNodegroup(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	c, ng, err := h.Clusters.Nodegroup(h.Account(r), name, r.PathValue("ng"))
	if err != nil {
		h.fail(w, err, name)
		return
	}
	awserr.WriteOK(w, map[string]any{"nodegroup": h.nodegroupOut(c, ng)})
}

func (h *Handler) listNodegroups(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	names, err := h.Clusters.Nodegroups(h.Account(r), name)
	if err != nil {
		h.fail(w, err, name)
		return
	}
	writePage(w, r, "nodegroups", names)
}

func (h *Handler) deleteNodegroup(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := h.Clusters.DeleteNodegroup(h.Account(r), name, r.PathValue("ng")); err != nil {
		h.fail(w, err, name)
		return
	}
	c, ng, err := h.Clusters.Nodegroup(h.Account(r), name, r.PathValue("ng"))
	if err != nil {
		h.fail(w, err, name)
		return
	}
	awserr.WriteOK(w, map[string]any{"nodegroup": h.nodegroupOut(c, ng)})
}

func (h *Handler) updateNodegroupConfig(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req struct {
		Labels *struct {
			AddOrUpdateLabels map[string]string `json:"addOrUpdateLabels"`
			RemoveLabels      []string          `json:"removeLabels"`
		} `json:"labels"`
		Taints *struct {
			AddOrUpdateTaints taintList `json:"addOrUpdateTaints"`
			RemoveTaints      taintList `json:"removeTaints"`
		} `json:"taints"`
		ScalingConfig      *scalingConfig `json:"scalingConfig"`
		UpdateConfig       *updateConfig  `json:"updateConfig"`
		NodeRepairConfig   any            `json:"nodeRepairConfig"`
		ClientRequestToken string         `json:"clientRequestToken"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.NodeRepairConfig != nil {
		awserr.WriteJSON(w, invalid("nodeRepairConfig is not supported: skiff always restarts what exits on its nodes; leave it out"))
		return
	}
	uc, err := req.UpdateConfig.model()
	if err != nil {
		awserr.WriteJSON(w, invalid(err.Error()))
		return
	}
	cfg := clusters.NodegroupConfig{ClientRequestToken: req.ClientRequestToken, UpdateConfig: uc}
	if sc := req.ScalingConfig; sc != nil {
		cfg.Min, cfg.Max, cfg.Desired = sc.MinSize, sc.MaxSize, sc.DesiredSize
	}
	if l := req.Labels; l != nil {
		cfg.AddLabels, cfg.RemoveLabels = l.AddOrUpdateLabels, l.RemoveLabels
	}
	if t := req.Taints; t != nil {
		cfg.AddTaints, cfg.RemoveTaints = taintsIn(t.AddOrUpdateTaints), taintsIn(t.RemoveTaints)
	}
	u, err := h.Clusters.UpdateNodegroupConfig(h.Account(r), name, r.PathValue("ng"), cfg)
	if err != nil {
		h.fail(w, err, name)
		return
	}
	awserr.WriteOK(w, map[string]any{"update": updateOut(u)})
}

func (h *Handler) updateNodegroupVersion(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req struct {
		Version            string `json:"version"`
		ReleaseVersion     string `json:"releaseVersion"`
		LaunchTemplate     any    `json:"launchTemplate"`
		Force              bool   `json:"force"`
		ClientRequestToken string `json:"clientRequestToken"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.LaunchTemplate != nil {
		awserr.WriteJSON(w, invalid("launchTemplate is not supported: skiff node groups have no launch templates; pass version (and releaseVersion) only"))
		return
	}
	u, err := h.Clusters.UpdateNodegroupVersion(h.Account(r), name, r.PathValue("ng"), clusters.NodegroupVersion{Version: req.Version,
		ReleaseVersion: req.ReleaseVersion, Force: req.Force, ClientRequestToken: req.ClientRequestToken})
	if err != nil {
		h.fail(w, err, name)
		return
	}
	awserr.WriteOK(w, map[string]any{"update": updateOut(u)})
}
