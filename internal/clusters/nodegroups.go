package clusters

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"skiff.dev/skiff/internal/access"
	"skiff.dev/skiff/internal/model"
)

// MaxNodesPerGroup bounds a node group on one machine.
const MaxNodesPerGroup = 30

// NodegroupRequest creates a managed node group.
type NodegroupRequest struct {
	Name               string
	NodeRole           string
	Subnets            []string
	InstanceTypes      []string
	Min, Max, Desired  *int
	Labels             map[string]string
	Taints             []model.Taint
	Tags               map[string]string
	ClientRequestToken string
	// Version is the Kubernetes minor of the group's nodes (empty: the
	// cluster's); it may lag the cluster's by the kubelet skew.
	Version      string
	UpdateConfig *model.UpdateConfig
}

var (
	ngNameRE     = regexp.MustCompile(`^[0-9A-Za-z][A-Za-z0-9\-_]{0,62}$`)
	taintEffects = []string{"NO_SCHEDULE", "NO_EXECUTE", "PREFER_NO_SCHEDULE"}
)

func validateScaling(min, max, desired int) error {
	switch {
	case min < 0 || max < 1 || desired < 0:
		return fmt.Errorf("%w: scalingConfig needs minSize >= 0, maxSize >= 1 and desiredSize >= 0", ErrInvalid)
	case min > max:
		return fmt.Errorf("%w: Minimum capacity %d can't be greater than maximum capacity %d", ErrInvalid, min, max)
	case desired < min || desired > max:
		return fmt.Errorf("%w: Desired capacity %d must be between minSize %d and maxSize %d", ErrInvalid, desired, min, max)
	case max > MaxNodesPerGroup:
		return fmt.Errorf("%w: maxSize %d is above skiff's limit of %d nodes per node group on one machine", ErrInvalid, max, MaxNodesPerGroup)
	}
	return nil
}

func validateLabelsTaints(labels map[string]string, taints []model.Taint) error {
	for k := range labels {
		if k == "" || len(k) > 63+254 {
			return fmt.Errorf("%w: label key %q is not a valid Kubernetes label key", ErrInvalid, k)
		}
	}
	for _, t := range taints {
		if t.Key == "" || !slices.Contains(taintEffects, t.Effect) {
			return fmt.Errorf("%w: a taint needs a key and an effect of %s", ErrInvalid, strings.Join(taintEffects, ", "))
		}
	}
	return nil
}

// MaxNodegroups is EKS's quota of managed node groups per cluster.
const MaxNodegroups = 30

// CreateNodegroup records a node group in CREATING state.
func (s *Service) CreateNodegroup(account, cluster string, req NodegroupRequest) (*model.Cluster, *model.Nodegroup, error) {
	if !ngNameRE.MatchString(req.Name) {
		return nil, nil, fmt.Errorf("%w: nodegroupName %q must be 1-63 letters, digits, '-' or '_', starting with a letter or digit", ErrInvalid, req.Name)
	}
	role, err := access.ParsePrincipalArn(req.NodeRole)
	if err != nil || role.Kind != "role" || role.Account != account {
		return nil, nil, fmt.Errorf("%w: nodeRole %q must be the ARN of an IAM role of this account (create one with 'aws iam create-role')", ErrInvalid, req.NodeRole)
	}
	if s.PrincipalExists != nil && !s.PrincipalExists(role) {
		return nil, nil, fmt.Errorf("%w: nodeRole %s does not exist; create it with 'aws iam create-role'", ErrInvalid, req.NodeRole)
	}
	min, max, desired := 1, 2, 2
	if req.Min != nil {
		min = *req.Min
	}
	if req.Max != nil {
		max = *req.Max
	}
	if req.Desired != nil {
		desired = *req.Desired
	} else if req.Min != nil {
		desired = min
	}
	if err := validateScaling(min, max, desired); err != nil {
		return nil, nil, err
	}
	if len(req.InstanceTypes) == 0 {
		req.InstanceTypes = []string{"t3.medium"}
	}
	for _, it := range req.InstanceTypes {
		if _, ok := model.InstanceTypes[it]; !ok {
			var known []string
			for k := range model.InstanceTypes {
				known = append(known, k)
			}
			sort.Strings(known)
			return nil, nil, fmt.Errorf("%w: instance type %s is not one skiff models; use one of %s", ErrInvalid, it, strings.Join(known, ", "))
		}
	}
	if err := validateLabelsTaints(req.Labels, req.Taints); err != nil {
		return nil, nil, err
	}
	if err := ValidateTags(req.Tags); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := validateUpdateConfig(req.UpdateConfig); err != nil {
		return nil, nil, err
	}
	if req.Version != "" {
		if _, err := s.Bundles.Lookup(req.Version); err != nil {
			return nil, nil, fmt.Errorf("%w: unsupported Kubernetes version %q; supported versions: %s", ErrInvalid, req.Version, strings.Join(s.Bundles.Versions(), ", "))
		}
	}
	if len(req.Subnets) == 0 {
		return nil, nil, fmt.Errorf("%w: subnets are required: the node group's nodes are spread over them", ErrInvalid)
	}
	subnets, err := s.Network.Subnets(account, req.Subnets)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	now := time.Now().UTC()
	ng := model.Nodegroup{Name: req.Name, ID: newUUID(), NodeRole: req.NodeRole, Subnets: slices.Clone(req.Subnets),
		InstanceTypes: req.InstanceTypes, Min: min, Max: max, Desired: desired, Labels: req.Labels, Taints: req.Taints,
		Tags: req.Tags, Status: model.NodegroupCreating, CreatedAt: now, ModifiedAt: now, ClientRequestToken: req.ClientRequestToken}
	others, err := s.nodesElsewhere(account, cluster)
	if err != nil {
		return nil, nil, err
	}
	var out model.Nodegroup
	c, err := s.nodegroupCluster(account, cluster, func(c *model.Cluster) error {
		if old := c.Nodegroup(req.Name); old != nil {
			if req.ClientRequestToken != "" && old.ClientRequestToken == req.ClientRequestToken {
				out = *old
				return nil
			}
			return fmt.Errorf("%w: NodeGroup already exists with name %s and cluster name %s", ErrInUse, req.Name, cluster)
		}
		if c.Status != model.StatusActive {
			return fmt.Errorf("%w: Cluster '%s' is not in ACTIVE status (it is %s); wait with 'aws eks wait cluster-active'", ErrInvalidRequest, cluster, c.Status)
		}
		if len(c.Nodegroups) >= MaxNodegroups {
			return fmt.Errorf("%w: You've reached the maximum number of managed node groups (%d) for cluster %s; delete one first", ErrLimit, MaxNodegroups, cluster)
		}
		for _, sn := range subnets {
			if sn.VpcID != c.Network.VpcID {
				return fmt.Errorf("%w: subnet %s is in %s, not in the cluster's VPC %s", ErrInvalid, sn.ID, sn.VpcID, c.Network.VpcID)
			}
		}
		ng.Version = c.Version
		if req.Version != "" {
			if err := nodeSkew(c, req.Version); err != nil {
				return err
			}
			ng.Version = req.Version
		}
		if req.UpdateConfig != nil {
			ng.UpdateConfig = *req.UpdateConfig
		}
		c.Nodegroups = append(c.Nodegroups, ng)
		if err := s.checkNodeQuota(c, others); err != nil {
			return err
		}
		out = ng
		// As EKS does for a managed node group: the node role's access entry.
		if c.AuthenticationMode != AuthConfigMap && c.AccessEntry(role.Arn()) == nil && c.AccessEntry(req.NodeRole) == nil {
			c.AccessEntries = append(c.AccessEntries, model.AccessEntry{PrincipalArn: req.NodeRole, Type: model.AccessEntryEC2Linux,
				Username: access.DefaultUsername(role, model.AccessEntryEC2Linux), ID: newUUID(), CreatedAt: now, ModifiedAt: now})
			sort.Slice(c.AccessEntries, func(i, j int) bool { return c.AccessEntries[i].PrincipalArn < c.AccessEntries[j].PrincipalArn })
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return c, &out, nil
}

func (s *Service) nodegroupCluster(account, name string, fn func(c *model.Cluster) error) (*model.Cluster, error) {
	c, err := s.Store.UpdateCluster(model.ClusterKey(account, name), fn)
	if err != nil && strings.Contains(err.Error(), "not found") && !strings.Contains(err.Error(), "odegroup") {
		return nil, fmt.Errorf("%w: No cluster found for name: %s.", ErrNotFound, name)
	}
	if err == nil {
		s.changed()
	}
	return c, err
}

func ngNotFound(name string) error {
	return fmt.Errorf("%w: No node group found for name: %s.", ErrNotFound, name)
}

// Nodegroup returns a node group and its cluster.
func (s *Service) Nodegroup(account, cluster, name string) (*model.Cluster, *model.Nodegroup, error) {
	c, err := s.Get(account, cluster)
	if err != nil {
		return nil, nil, err
	}
	ng := c.Nodegroup(name)
	if ng == nil {
		return nil, nil, ngNotFound(name)
	}
	return c, ng, nil
}

// Nodegroups lists a cluster's node group names, sorted.
func (s *Service) Nodegroups(account, cluster string) ([]string, error) {
	c, err := s.Get(account, cluster)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ng := range c.Nodegroups {
		out = append(out, ng.Name)
	}
	sort.Strings(out)
	return out, nil
}

// DeleteNodegroup marks a node group DELETING; the reconciler drains and
// removes its nodes, then the group.
func (s *Service) DeleteNodegroup(account, cluster, name string) (*model.Nodegroup, error) {
	var out model.Nodegroup
	_, err := s.nodegroupCluster(account, cluster, func(c *model.Cluster) error {
		ng := c.Nodegroup(name)
		if ng == nil {
			return ngNotFound(name)
		}
		ng.Status, ng.ModifiedAt = model.NodegroupDeleting, time.Now().UTC()
		out = *ng
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// NodegroupConfig changes a node group's size, labels or taints.
type NodegroupConfig struct {
	Min, Max, Desired  *int
	AddLabels          map[string]string
	RemoveLabels       []string
	AddTaints          []model.Taint
	RemoveTaints       []model.Taint
	UpdateConfig       *model.UpdateConfig
	ClientRequestToken string
}

// UpdateNodegroupConfig starts a config update of an ACTIVE node group.
func (s *Service) UpdateNodegroupConfig(account, cluster, name string, req NodegroupConfig) (*model.Update, error) {
	others, err := s.nodesElsewhere(account, cluster)
	if err != nil {
		return nil, err
	}
	var out model.Update
	_, err = s.nodegroupCluster(account, cluster, func(c *model.Cluster) error {
		ng := c.Nodegroup(name)
		if ng == nil {
			return ngNotFound(name)
		}
		if ng.Status != model.NodegroupActive && ng.Status != model.NodegroupDegraded {
			return fmt.Errorf("%w: Nodegroup %s is in %s status; wait until it is ACTIVE", ErrInUse, name, ng.Status)
		}
		min, max, desired := ng.Min, ng.Max, ng.Desired
		if req.Min != nil {
			min = *req.Min
		}
		if req.Max != nil {
			max = *req.Max
		}
		if req.Desired != nil {
			desired = *req.Desired
		}
		if err := validateScaling(min, max, desired); err != nil {
			return err
		}
		if err := validateLabelsTaints(req.AddLabels, req.AddTaints); err != nil {
			return err
		}
		if err := validateUpdateConfig(req.UpdateConfig); err != nil {
			return err
		}
		var params []model.UpdateParam
		if u := req.UpdateConfig; u != nil && *u != ng.UpdateConfig {
			ng.UpdateConfig = *u
			if u.MaxUnavailable > 0 {
				params = append(params, model.UpdateParam{Type: "MaxUnavailable", Value: fmt.Sprint(u.MaxUnavailable)})
			} else {
				params = append(params, model.UpdateParam{Type: "MaxUnavailablePercentage", Value: fmt.Sprint(u.MaxUnavailablePercentage)})
			}
		}
		if min != ng.Min || max != ng.Max || desired != ng.Desired {
			ng.Min, ng.Max, ng.Desired = min, max, desired
			if err := s.checkNodeQuota(c, others); err != nil {
				return err
			}
			params = append(params, model.UpdateParam{Type: "MinSize", Value: fmt.Sprint(min)},
				model.UpdateParam{Type: "MaxSize", Value: fmt.Sprint(max)}, model.UpdateParam{Type: "DesiredSize", Value: fmt.Sprint(desired)})
		}
		if len(req.AddLabels)+len(req.RemoveLabels) > 0 {
			if ng.Labels == nil {
				ng.Labels = map[string]string{}
			}
			for k, v := range req.AddLabels {
				ng.Labels[k] = v
			}
			for _, k := range req.RemoveLabels {
				delete(ng.Labels, k)
			}
			params = append(params, model.UpdateParam{Type: "LabelsToAdd", Value: fmt.Sprint(req.AddLabels)})
		}
		if len(req.AddTaints)+len(req.RemoveTaints) > 0 {
			ng.Taints = slices.DeleteFunc(ng.Taints, func(t model.Taint) bool {
				return slices.ContainsFunc(req.RemoveTaints, func(r model.Taint) bool { return r.Key == t.Key && r.Effect == t.Effect })
			})
			ng.Taints = append(ng.Taints, req.AddTaints...)
			params = append(params, model.UpdateParam{Type: "TaintsToAdd", Value: fmt.Sprint(req.AddTaints)})
		}
		if len(params) == 0 {
			return fmt.Errorf("%w: No changes needed for the node group configuration provided", ErrInvalid)
		}
		ng.Status, ng.ModifiedAt = model.NodegroupUpdating, time.Now().UTC()
		out = model.Update{ID: newUUID(), Type: "ConfigUpdate", Status: model.UpdateInProgress, Params: params,
			CreatedAt: time.Now().UTC(), ClientRequestToken: req.ClientRequestToken, Nodegroup: name}
		c.AddUpdate(out)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// MaxUnavailableLimit is EKS' bound on updateConfig.maxUnavailable.
const MaxUnavailableLimit = 100

func validateUpdateConfig(u *model.UpdateConfig) error {
	switch {
	case u == nil:
		return nil
	case u.MaxUnavailable > 0 && u.MaxUnavailablePercentage > 0:
		return fmt.Errorf("%w: updateConfig takes maxUnavailable or maxUnavailablePercentage, not both", ErrInvalid)
	case u.MaxUnavailable == 0 && u.MaxUnavailablePercentage == 0:
		return fmt.Errorf("%w: updateConfig needs maxUnavailable (1-%d) or maxUnavailablePercentage (1-100)", ErrInvalid, MaxUnavailableLimit)
	case u.MaxUnavailable < 0 || u.MaxUnavailable > MaxUnavailableLimit:
		return fmt.Errorf("%w: updateConfig.maxUnavailable must be between 1 and %d", ErrInvalid, MaxUnavailableLimit)
	case u.MaxUnavailablePercentage < 0 || u.MaxUnavailablePercentage > 100:
		return fmt.Errorf("%w: updateConfig.maxUnavailablePercentage must be between 1 and 100", ErrInvalid)
	}
	return nil
}

// nodeSkew checks that nodes of version v may join c: not newer than its
// control plane, at most MaxKubeletSkew minors older.
func nodeSkew(c *model.Cluster, v string) error {
	switch d := minorDiff(c.Version, v); {
	case d < 0:
		return fmt.Errorf("%w: Requested Nodegroup version %s is newer than the cluster's version %s (a kubelet may not be newer than its control plane)", ErrInvalid, v, c.Version)
	case d > MaxKubeletSkew:
		return fmt.Errorf("%w: Requested Nodegroup version %s is more than %d minor versions behind the cluster's version %s", ErrInvalid, v, MaxKubeletSkew, c.Version)
	}
	return nil
}

// ReleaseVersion is the release version of skiff's nodes of Kubernetes
// minor v (EKS names AMI releases so; skiff has one per minor).
func ReleaseVersion(v string) string { return v + ".0-skiff" }

// NodegroupVersion is an UpdateNodegroupVersion request.
type NodegroupVersion struct {
	Version, ReleaseVersion string
	Force                   bool
	ClientRequestToken      string
}

// UpdateNodegroupVersion starts replacing a node group's nodes by nodes of
// another Kubernetes version (the cluster's by default; an older one
// within the kubelet skew rolls the group back). The reconciler surges
// new nodes first, then drains and removes old ones, at most
// updateConfig's batch at a time, respecting PodDisruptionBudgets unless
// Force.
func (s *Service) UpdateNodegroupVersion(account, cluster, name string, req NodegroupVersion) (*model.Update, error) {
	if req.Version != "" {
		if _, err := s.Bundles.Lookup(req.Version); err != nil {
			return nil, fmt.Errorf("%w: unsupported Kubernetes version %q; supported versions: %s", ErrInvalid, req.Version, strings.Join(s.Bundles.Versions(), ", "))
		}
	}
	var out model.Update
	_, err := s.nodegroupCluster(account, cluster, func(c *model.Cluster) error {
		ng := c.Nodegroup(name)
		if ng == nil {
			return ngNotFound(name)
		}
		if req.ClientRequestToken != "" {
			for _, u := range c.Updates {
				if u.ClientRequestToken == req.ClientRequestToken && u.Nodegroup == name {
					out = u
					return nil
				}
			}
		}
		if ng.Status != model.NodegroupActive && ng.Status != model.NodegroupDegraded {
			return fmt.Errorf("%w: Nodegroup %s is in %s status; wait until it is ACTIVE", ErrInUse, name, ng.Status)
		}
		if c.Status != model.StatusActive {
			return fmt.Errorf("%w: Cluster '%s' is %s; node groups are updated while it is ACTIVE", ErrInUse, cluster, c.Status)
		}
		to := cmp.Or(req.Version, c.Version)
		if err := nodeSkew(c, to); err != nil {
			return err
		}
		if req.ReleaseVersion != "" && req.ReleaseVersion != ReleaseVersion(to) {
			return fmt.Errorf("%w: Requested release version %s is not valid for Kubernetes version %s; skiff's is %s", ErrInvalid, req.ReleaseVersion, to, ReleaseVersion(to))
		}
		current := true
		for _, v := range groupVersions(c, ng) {
			current = current && v == to
		}
		if current {
			return fmt.Errorf("%w: Nodegroup %s is already at the desired configuration with version %s and release version %s", ErrInvalid, name, to, ReleaseVersion(to))
		}
		ng.Version, ng.Force = to, req.Force
		ng.Status, ng.ModifiedAt = model.NodegroupUpdating, time.Now().UTC()
		out = model.Update{ID: newUUID(), Type: model.UpdateVersion, Status: model.UpdateInProgress, Params: []model.UpdateParam{
			{Type: "Version", Value: to}, {Type: "ReleaseVersion", Value: ReleaseVersion(to)},
		}, CreatedAt: time.Now().UTC(), ClientRequestToken: req.ClientRequestToken, Nodegroup: name}
		c.AddUpdate(out)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}
