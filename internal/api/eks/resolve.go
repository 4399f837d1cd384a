package eks

import (
	"fmt"

	"skiff.dev/skiff/internal/access"
	"skiff.dev/skiff/internal/model"
)

func (h *Handler) clusterArn(c *model.Cluster) string {
	return fmt.Sprintf("arn:aws:eks:%s:%s:cluster/%s", h.Region, c.Account, c.Name)
}

func (h *Handler) nodegroupArn(c *model.Cluster, ng *model.Nodegroup) string {
	return fmt.Sprintf("arn:aws:eks:%s:%s:nodegroup/%s/%s/%s", h.Region, c.Account, c.Name, ng.Name, ng.ID)
}

func (h *Handler) addonArn(c *model.Cluster, addon string) string {
	return fmt.Sprintf("arn:aws:eks:%s:%s:addon/%s/%s/%s", h.Region, c.Account, c.Name, addon, c.ID[:8])
}

func (h *Handler) accessEntryArn(account, cluster string, e *model.AccessEntry) string {
	kind, paccount, pname := "user", "", e.PrincipalArn
	if p, err := access.ParsePrincipalArn(e.PrincipalArn); err == nil {
		kind, paccount, pname = p.Kind, p.Account, p.Name
	}
	return fmt.Sprintf("arn:aws:eks:%s:%s:access-entry/%s/%s/%s/%s/%s", h.Region, account, cluster, kind, paccount, pname, e.ID)
}

// Resolve finds an EKS resource of account for IAM authorization (an
// authz.Resolver): its ARN and tags. kind is cluster (name), nodegroup
// (cluster, name), addon (cluster, name) or access-entry (cluster,
// principal ARN).
func (h *Handler) Resolve(account, kind string, names ...string) (string, map[string]string, bool) {
	if len(names) == 0 {
		return "", nil, false
	}
	c, err := h.Clusters.Get(account, names[0])
	if err != nil {
		return "", nil, false
	}
	switch {
	case kind == "cluster" && len(names) == 1:
		return h.clusterArn(c), c.Tags, true
	case kind == "nodegroup" && len(names) == 2:
		if ng := c.Nodegroup(names[1]); ng != nil {
			return h.nodegroupArn(c, ng), ng.Tags, true
		}
	case kind == "addon" && len(names) == 2:
		if a := c.Addon(names[1]); a != nil {
			return h.addonArn(c, a.Name), a.Tags, true
		}
	case kind == "access-entry" && len(names) == 2:
		if e := c.AccessEntry(names[1]); e != nil {
			return h.accessEntryArn(account, c.Name, e), e.Tags, true
		}
	}
	return "", nil, false
}
