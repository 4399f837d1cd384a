package clusters

import (
	"fmt"
	"slices"
	"time"

	"skiff.dev/skiff/internal/addons/catalog"
	"skiff.dev/skiff/internal/model"
)

// AddonRequest is CreateAddon's or UpdateAddon's input.
type AddonRequest struct {
	Name                  string
	Version               string // "" for the default (create) or unchanged (update)
	ConfigurationValues   *string
	ServiceAccountRoleArn string
	ResolveConflicts      string // OVERWRITE, NONE, PRESERVE
	Tags                  map[string]string
	ClientRequestToken    string
}

var resolveConflicts = []string{"", "OVERWRITE", "NONE", "PRESERVE"}

func addonNotFound(name, cluster string) error {
	return fmt.Errorf("%w: No addon: %s found in cluster: %s", ErrNotFound, name, cluster)
}

// checkAddon validates an add-on name, version and configuration for a
// cluster of version clusterVersion; it returns the version to use.
func (s *Service) checkAddon(name, version, clusterVersion string, values *string, conflicts string) (string, error) {
	if !slices.Contains(s.Addons.Names(), name) {
		return "", fmt.Errorf("%w: Addon %s specified is not supported; skiff offers %v (see `aws eks describe-addon-versions`)", ErrInvalid, name, s.Addons.Names())
	}
	if !slices.Contains(resolveConflicts, conflicts) {
		return "", fmt.Errorf("%w: resolveConflicts %q must be OVERWRITE, NONE or PRESERVE", ErrInvalid, conflicts)
	}
	if version == "" {
		version = s.Addons.Default(name, clusterVersion)
	}
	if !s.Addons.Supports(name, version, clusterVersion) {
		var versions []string
		for _, v := range s.Addons.AddonVersions(name, clusterVersion) {
			versions = append(versions, v.AddonVersion)
		}
		return "", fmt.Errorf("%w: Addon version %s of %s is not supported on Kubernetes %s; supported: %v", ErrInvalid, version, name, clusterVersion, versions)
	}
	if values != nil {
		if _, err := catalog.ParseConfig(name, *values); err != nil {
			return "", fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	return version, nil
}

// CreateAddon makes add-on req.Name a managed add-on of a cluster; it
// takes over the self-managed objects of the same add-on.
func (s *Service) CreateAddon(account, cluster string, req AddonRequest) (*model.Addon, error) {
	var out model.Addon
	_, err := s.nodegroupCluster(account, cluster, func(c *model.Cluster) error {
		if c.Status != model.StatusActive && c.Status != model.StatusUpdating {
			return fmt.Errorf("%w: Cluster %s is in %s status; wait until it is ACTIVE", ErrInvalid, cluster, c.Status)
		}
		if a := c.Addon(req.Name); a != nil {
			if req.ClientRequestToken != "" && a.Status != model.AddonDeleting {
				out = *a // an idempotent retry
				return nil
			}
			return fmt.Errorf("%w: Addon already exists.", ErrInUse)
		}
		version, err := s.checkAddon(req.Name, req.Version, c.Version, req.ConfigurationValues, req.ResolveConflicts)
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		out = model.Addon{Name: req.Name, Version: version, Status: model.AddonCreating, ServiceAccountRoleArn: req.ServiceAccountRoleArn,
			ResolveConflicts: req.ResolveConflicts, Tags: req.Tags, CreatedAt: now, ModifiedAt: now}
		if req.ConfigurationValues != nil {
			out.ConfigurationValues = *req.ConfigurationValues
		}
		c.Addons = append(c.Addons, out)
		slices.SortFunc(c.Addons, func(a, b model.Addon) int { return compare(a.Name, b.Name) })
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.changed()
	return &out, nil
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Addon returns a managed add-on of a cluster.
func (s *Service) Addon(account, cluster, name string) (*model.Addon, error) {
	c, err := s.Get(account, cluster)
	if err != nil {
		return nil, err
	}
	a := c.Addon(name)
	if a == nil {
		return nil, addonNotFound(name, cluster)
	}
	return a, nil
}

// UpdateAddon changes a managed add-on's version or configuration.
func (s *Service) UpdateAddon(account, cluster string, req AddonRequest) (*model.Update, error) {
	var out model.Update
	_, err := s.nodegroupCluster(account, cluster, func(c *model.Cluster) error {
		a := c.Addon(req.Name)
		if a == nil {
			return addonNotFound(req.Name, cluster)
		}
		if a.Status == model.AddonDeleting || a.Status == model.AddonCreating || a.Status == model.AddonUpdating {
			return fmt.Errorf("%w: Addon %s is in %s status; wait until it is ACTIVE or DEGRADED", ErrInUse, req.Name, a.Status)
		}
		version := req.Version
		if version == "" {
			version = a.Version
		}
		version, err := s.checkAddon(req.Name, version, c.Version, req.ConfigurationValues, req.ResolveConflicts)
		if err != nil {
			return err
		}
		params := []model.UpdateParam{{Type: "AddonVersion", Value: version}}
		if req.ResolveConflicts != "" {
			params = append(params, model.UpdateParam{Type: "ResolveConflicts", Value: req.ResolveConflicts})
		}
		if req.ConfigurationValues != nil {
			a.ConfigurationValues = *req.ConfigurationValues
			params = append(params, model.UpdateParam{Type: "ConfigurationValues", Value: *req.ConfigurationValues})
		}
		if req.ServiceAccountRoleArn != "" {
			a.ServiceAccountRoleArn = req.ServiceAccountRoleArn
			params = append(params, model.UpdateParam{Type: "ServiceAccountRoleArn", Value: req.ServiceAccountRoleArn})
		}
		out = model.Update{ID: newUUID(), Type: "AddonUpdate", Status: model.UpdateInProgress, Params: params,
			CreatedAt: time.Now().UTC(), ClientRequestToken: req.ClientRequestToken, Addon: req.Name}
		a.Version, a.Status, a.ModifiedAt, a.UpdateID = version, model.AddonUpdating, out.CreatedAt, out.ID
		c.AddUpdate(out)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.changed()
	return &out, nil
}

// DeleteAddon starts deleting a managed add-on; preserve keeps its
// objects in the cluster (they become self-managed).
func (s *Service) DeleteAddon(account, cluster, name string, preserve bool) (*model.Addon, error) {
	var out model.Addon
	_, err := s.nodegroupCluster(account, cluster, func(c *model.Cluster) error {
		a := c.Addon(name)
		if a == nil {
			return addonNotFound(name, cluster)
		}
		if a.Status != model.AddonDeleting {
			a.Status, a.Preserve, a.ModifiedAt = model.AddonDeleting, preserve, time.Now().UTC()
		}
		out = *a
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.changed()
	return &out, nil
}
