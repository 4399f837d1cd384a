package clusters

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"skiff.dev/skiff/internal/access"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/store"
)

// ErrInvalidRequest marks a request the cluster's state does not allow
// (EKS' InvalidRequestException), as opposed to a bad parameter.
var ErrInvalidRequest = errors.New("invalid request")

// MaxAccessEntries per cluster.
const MaxAccessEntries = 1000

// AccessEntryRequest creates or updates an access entry.
type AccessEntryRequest struct {
	PrincipalArn       string
	Type               string // default STANDARD
	Username           *string
	KubernetesGroups   []string // nil = unchanged on update
	Tags               map[string]string
	ClientRequestToken string
}

// entryTypes lists the access entry types, and whether skiff supports them.
var entryTypes = map[string]bool{
	model.AccessEntryStandard: true, model.AccessEntryEC2Linux: true,
	"EC2_WINDOWS": false, "FARGATE_LINUX": false, "HYBRID_LINUX": false, "EC2": false,
}

// accessCluster runs fn on an account's cluster in a store transaction,
// after checking that its authentication mode allows access entries.
func (s *Service) accessCluster(account, name string, write bool, fn func(c *model.Cluster) error) (*model.Cluster, error) {
	check := func(c *model.Cluster) error {
		if c.AuthenticationMode == AuthConfigMap {
			return fmt.Errorf("%w: The cluster's authentication mode must be set to one of [API, API_AND_CONFIG_MAP] to perform this operation; change it with 'aws eks update-cluster-config --access-config authenticationMode=API_AND_CONFIG_MAP'", ErrInvalidRequest)
		}
		if write && c.Status == model.StatusDeleting {
			return fmt.Errorf("%w: cluster %s is being deleted", ErrInUse, c.Name)
		}
		return fn(c)
	}
	if !write {
		c, err := s.Get(account, name)
		if err != nil {
			return nil, err
		}
		return c, check(c)
	}
	c, err := s.Store.UpdateCluster(model.ClusterKey(account, name), check)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: No cluster found for name: %s.", ErrNotFound, name)
	}
	if err == nil {
		s.changed()
	}
	return c, err
}

func entryNotFound(arn, cluster string) error {
	return fmt.Errorf("%w: The specified access entry resource (principal %s) could not be found on cluster %s; list them with 'aws eks list-access-entries --cluster-name %s'", ErrNotFound, arn, cluster, cluster)
}

// CreateAccessEntry adds an access entry to a cluster.
func (s *Service) CreateAccessEntry(account, name string, req AccessEntryRequest) (*model.AccessEntry, error) {
	p, err := access.ParsePrincipalArn(req.PrincipalArn)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, strings.TrimPrefix(err.Error(), access.ErrInvalid.Error()+": "))
	}
	// Only the account's own principals are checked: answering "does not
	// exist" for another account's would let one tenant probe another's
	// users and roles (EKS takes cross-account principals as they are).
	if s.PrincipalExists != nil && p.Account == account && !s.PrincipalExists(p) {
		return nil, fmt.Errorf("%w: The specified principalArn is invalid: %s does not exist; create it with 'aws iam create-%s' first", ErrInvalid, req.PrincipalArn, p.Kind)
	}
	if req.Type == "" {
		req.Type = model.AccessEntryStandard
	}
	supported, known := entryTypes[req.Type]
	switch {
	case !known:
		return nil, fmt.Errorf("%w: access entry type %q must be one of STANDARD, EC2_LINUX, EC2_WINDOWS, FARGATE_LINUX, HYBRID_LINUX, EC2", ErrInvalid, req.Type)
	case !supported:
		return nil, fmt.Errorf("%w: access entry type %s is not supported by skiff; use STANDARD for people and EC2_LINUX for nodes", ErrInvalid, req.Type)
	}
	username := ""
	if req.Username != nil {
		username = *req.Username
	}
	if req.Type != model.AccessEntryStandard {
		if username != "" || len(req.KubernetesGroups) > 0 {
			return nil, fmt.Errorf("%w: an access entry of type %s takes neither username nor kubernetesGroups; EKS sets them", ErrInvalid, req.Type)
		}
		if p.Kind != "role" {
			return nil, fmt.Errorf("%w: an access entry of type %s must name an IAM role (the node role), not %s", ErrInvalid, req.Type, req.PrincipalArn)
		}
	} else if err := access.ValidateNames(username, req.KubernetesGroups); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.TrimPrefix(err.Error(), access.ErrInvalid.Error()+": "))
	}
	if username == "" {
		username = access.DefaultUsername(p, req.Type)
	}
	if err := ValidateTags(req.Tags); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	now := time.Now().UTC()
	var out model.AccessEntry
	_, err = s.accessCluster(account, name, true, func(c *model.Cluster) error {
		if old := c.AccessEntry(req.PrincipalArn); old != nil {
			if req.ClientRequestToken != "" && old.ClientRequestToken == req.ClientRequestToken {
				out = *old
				return nil
			}
			return fmt.Errorf("%w: The specified access entry resource is already in use on this cluster (principal %s); change it with 'aws eks update-access-entry'", ErrInUse, req.PrincipalArn)
		}
		if len(c.AccessEntries) >= MaxAccessEntries {
			return fmt.Errorf("%w: a cluster has at most %d access entries; delete one first", ErrLimit, MaxAccessEntries)
		}
		out = model.AccessEntry{PrincipalArn: req.PrincipalArn, Type: req.Type, Username: username,
			KubernetesGroups: slices.Clone(req.KubernetesGroups), Tags: req.Tags, ID: newUUID(),
			CreatedAt: now, ModifiedAt: now, ClientRequestToken: req.ClientRequestToken}
		c.AccessEntries = append(c.AccessEntries, out)
		sort.Slice(c.AccessEntries, func(i, j int) bool { return c.AccessEntries[i].PrincipalArn < c.AccessEntries[j].PrincipalArn })
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// AccessEntry returns one entry and its cluster.
func (s *Service) AccessEntry(account, name, principalArn string) (*model.Cluster, *model.AccessEntry, error) {
	var out *model.AccessEntry
	c, err := s.accessCluster(account, name, false, func(c *model.Cluster) error {
		if out = c.AccessEntry(principalArn); out == nil {
			return entryNotFound(principalArn, name)
		}
		return nil
	})
	return c, out, err
}

// AccessEntries lists a cluster's entries' principal ARNs, sorted, only
// those with policyArn associated if it is not empty.
func (s *Service) AccessEntries(account, name, policyArn string) ([]string, error) {
	var out []string
	_, err := s.accessCluster(account, name, false, func(c *model.Cluster) error {
		for _, e := range c.AccessEntries {
			if policyArn == "" || slices.ContainsFunc(e.Policies, func(a model.AccessPolicyAssociation) bool { return a.PolicyArn == policyArn }) {
				out = append(out, e.PrincipalArn)
			}
		}
		return nil
	})
	return out, err
}

// UpdateAccessEntry changes an entry's username and groups.
func (s *Service) UpdateAccessEntry(account, name string, req AccessEntryRequest) (*model.AccessEntry, error) {
	var out model.AccessEntry
	_, err := s.accessCluster(account, name, true, func(c *model.Cluster) error {
		e := c.AccessEntry(req.PrincipalArn)
		if e == nil {
			return entryNotFound(req.PrincipalArn, name)
		}
		if e.Type != model.AccessEntryStandard && (req.Username != nil || req.KubernetesGroups != nil) {
			return fmt.Errorf("%w: the username and groups of an access entry of type %s cannot be changed", ErrInvalid, e.Type)
		}
		username, groups := e.Username, e.KubernetesGroups
		if req.Username != nil {
			username = *req.Username
		}
		if req.KubernetesGroups != nil {
			groups = slices.Clone(req.KubernetesGroups)
		}
		if err := access.ValidateNames(username, groups); err != nil {
			return fmt.Errorf("%w: %s", ErrInvalid, strings.TrimPrefix(err.Error(), access.ErrInvalid.Error()+": "))
		}
		if username == "" {
			p, _ := access.ParsePrincipalArn(e.PrincipalArn)
			username = access.DefaultUsername(p, e.Type)
		}
		e.Username, e.KubernetesGroups, e.ModifiedAt = username, groups, time.Now().UTC()
		out = *e
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteAccessEntry removes an entry; its RBAC bindings go with it.
func (s *Service) DeleteAccessEntry(account, name, principalArn string) error {
	_, err := s.accessCluster(account, name, true, func(c *model.Cluster) error {
		i := slices.IndexFunc(c.AccessEntries, func(e model.AccessEntry) bool { return e.PrincipalArn == principalArn })
		if i < 0 {
			return entryNotFound(principalArn, name)
		}
		c.AccessEntries = slices.Delete(c.AccessEntries, i, i+1)
		return nil
	})
	return err
}

// AssociateAccessPolicy grants an access policy to an entry in a scope,
// replacing the scope if the policy was associated already.
func (s *Service) AssociateAccessPolicy(account, name, principalArn, policyArn string, scope model.AccessScope) (*model.AccessPolicyAssociation, error) {
	if _, ok := access.PolicyByArn(policyArn); !ok {
		var names []string
		for _, p := range access.Policies {
			names = append(names, p.Name)
		}
		return nil, fmt.Errorf("%w: The policy %s is not an access policy skiff knows; use one of %s (see 'aws eks list-access-policies')",
			ErrInvalid, policyArn, access.PolicyArnPrefix+"{"+strings.Join(names, ",")+"}")
	}
	if err := access.ValidateScope(scope); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.TrimPrefix(err.Error(), access.ErrInvalid.Error()+": "))
	}
	var out model.AccessPolicyAssociation
	_, err := s.accessCluster(account, name, true, func(c *model.Cluster) error {
		e := c.AccessEntry(principalArn)
		if e == nil {
			return entryNotFound(principalArn, name)
		}
		if e.Type != model.AccessEntryStandard {
			return fmt.Errorf("%w: access policies can only be associated with access entries of type STANDARD; %s is %s", ErrInvalidRequest, principalArn, e.Type)
		}
		now := time.Now().UTC()
		for i := range e.Policies {
			if e.Policies[i].PolicyArn == policyArn {
				e.Policies[i].Scope, e.Policies[i].ModifiedAt = scope, now
				out = e.Policies[i]
				return nil
			}
		}
		out = model.AccessPolicyAssociation{PolicyArn: policyArn, Scope: scope, AssociatedAt: now, ModifiedAt: now}
		e.Policies = append(e.Policies, out)
		sort.Slice(e.Policies, func(i, j int) bool { return e.Policies[i].PolicyArn < e.Policies[j].PolicyArn })
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// DisassociateAccessPolicy revokes an access policy from an entry.
func (s *Service) DisassociateAccessPolicy(account, name, principalArn, policyArn string) error {
	_, err := s.accessCluster(account, name, true, func(c *model.Cluster) error {
		e := c.AccessEntry(principalArn)
		if e == nil {
			return entryNotFound(principalArn, name)
		}
		i := slices.IndexFunc(e.Policies, func(a model.AccessPolicyAssociation) bool { return a.PolicyArn == policyArn })
		if i < 0 {
			return fmt.Errorf("%w: The policy %s is not associated with access entry %s; see 'aws eks list-associated-access-policies'", ErrNotFound, policyArn, principalArn)
		}
		e.Policies = slices.Delete(e.Policies, i, i+1)
		return nil
	})
	return err
}

// creatorEntry is the access entry EKS makes for a cluster's creator when
// bootstrapClusterCreatorAdminPermissions is true.
func creatorEntry(creatorArn string, now time.Time) (model.AccessEntry, bool) {
	p, err := access.CreatorPrincipal(creatorArn)
	if err != nil {
		return model.AccessEntry{}, false
	}
	return model.AccessEntry{
		PrincipalArn: p.Arn(), Type: model.AccessEntryStandard, Username: access.DefaultUsername(p, model.AccessEntryStandard),
		ID: newUUID(), CreatedAt: now, ModifiedAt: now,
		Policies: []model.AccessPolicyAssociation{{PolicyArn: access.PolicyArnPrefix + "AmazonEKSClusterAdminPolicy",
			Scope: model.AccessScope{Type: "cluster"}, AssociatedAt: now, ModifiedAt: now}},
	}, true
}

// ensureCreatorEntry gives c's creator its admin entry if c asks for one
// and its mode has access entries.
func ensureCreatorEntry(c *model.Cluster) {
	if !c.BootstrapAdmin || c.AuthenticationMode == AuthConfigMap || c.CreatorArn == "" {
		return
	}
	e, ok := creatorEntry(c.CreatorArn, time.Now().UTC())
	if !ok || c.AccessEntry(e.PrincipalArn) != nil {
		return
	}
	c.AccessEntries = append(c.AccessEntries, e)
	sort.Slice(c.AccessEntries, func(i, j int) bool { return c.AccessEntries[i].PrincipalArn < c.AccessEntries[j].PrincipalArn })
}
