package model

import "time"

// Add-on statuses, as EKS names them.
const (
	AddonCreating     = "CREATING"
	AddonActive       = "ACTIVE"
	AddonUpdating     = "UPDATING"
	AddonDeleting     = "DELETING"
	AddonDegraded     = "DEGRADED"
	AddonCreateFailed = "CREATE_FAILED"
)

// Addon is a managed EKS add-on of a cluster (coredns, kube-proxy): skiff
// applies its objects into the cluster and keeps them as configured.
type Addon struct {
	Name    string `json:"name"`
	Version string `json:"version"` // "v1.14.7-eksbuild.1"
	Status  string `json:"status"`
	// ConfigurationValues is the user's JSON configuration (validated
	// against the add-on's schema).
	ConfigurationValues   string            `json:"configurationValues,omitempty"`
	ServiceAccountRoleArn string            `json:"serviceAccountRoleArn,omitempty"`
	ResolveConflicts      string            `json:"resolveConflicts,omitempty"`
	Tags                  map[string]string `json:"tags,omitempty"`
	CreatedAt             time.Time         `json:"createdAt"`
	ModifiedAt            time.Time         `json:"modifiedAt"`
	// Preserve keeps the add-on's objects in the cluster when it is deleted.
	Preserve bool    `json:"preserve,omitempty"`
	Issues   []Issue `json:"issues,omitempty"`
	// UpdateID is the update that brought the add-on to this version or
	// configuration, finished when the add-on is ACTIVE again.
	UpdateID string `json:"updateId,omitempty"`
}

// Addon returns the managed add-on named name, or nil.
func (c *Cluster) Addon(name string) *Addon {
	for i := range c.Addons {
		if c.Addons[i].Name == name {
			return &c.Addons[i]
		}
	}
	return nil
}
