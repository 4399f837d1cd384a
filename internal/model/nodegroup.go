package model

import "time"

// Node group statuses, as EKS names them.
const (
	NodegroupCreating     = "CREATING"
	NodegroupActive       = "ACTIVE"
	NodegroupUpdating     = "UPDATING"
	NodegroupDeleting     = "DELETING"
	NodegroupCreateFailed = "CREATE_FAILED"
	NodegroupDegraded     = "DEGRADED"
)

// Nodegroup is a managed node group: nodes skiff starts, spreads over the
// group's subnets and keeps at the desired size.
type Nodegroup struct {
	Name          string            `json:"name"`
	ID            string            `json:"id"` // UUID that ends its ARN
	NodeRole      string            `json:"nodeRole"`
	Subnets       []string          `json:"subnets"`
	InstanceTypes []string          `json:"instanceTypes"`
	Min           int               `json:"min"`
	Max           int               `json:"max"`
	Desired       int               `json:"desired"`
	Labels        map[string]string `json:"labels,omitempty"`
	Taints        []Taint           `json:"taints,omitempty"`
	Tags          map[string]string `json:"tags,omitempty"`
	Status        string            `json:"status"`
	Issues        []Issue           `json:"issues,omitempty"`
	// Version is the Kubernetes minor the group's nodes run, or are
	// being replaced to run (UPDATING after UpdateNodegroupVersion).
	Version string `json:"version"`
	// UpdateConfig bounds how many nodes a version update takes out at
	// once (EKS' updateConfig; zero values: one node).
	UpdateConfig UpdateConfig `json:"updateConfig,omitzero"`
	// Force is the running version update's force flag: pods whose
	// disruption budget blocks their eviction are deleted anyway.
	Force      bool      `json:"force,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
	ModifiedAt time.Time `json:"modifiedAt"`
	// Nodes are the group's nodes, oldest first.
	Nodes []Node `json:"nodes,omitempty"`
	// ClientRequestToken of the create call, for idempotent retries.
	ClientRequestToken string `json:"clientRequestToken,omitempty"`
}

// UpdateConfig is EKS' node group updateConfig: at most one of the two is set.
type UpdateConfig struct {
	MaxUnavailable           int `json:"maxUnavailable,omitempty"`
	MaxUnavailablePercentage int `json:"maxUnavailablePercentage,omitempty"`
}

// Batch is how many of a group's desired nodes an update replaces at once
// (at least one).
func (u UpdateConfig) Batch(desired int) int {
	n := u.MaxUnavailable
	if u.MaxUnavailablePercentage > 0 {
		n = desired * u.MaxUnavailablePercentage / 100
	}
	return max(n, 1)
}

// Taint is a Kubernetes taint with EKS' effect names.
type Taint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"` // NO_SCHEDULE, NO_EXECUTE, PREFER_NO_SCHEDULE
}

// Issue is a node group health issue.
type Issue struct {
	Code        string   `json:"code"`
	Message     string   `json:"message"`
	ResourceIDs []string `json:"resourceIds,omitempty"`
}

// Node is one node of a group: an instance in EC2's terms.
type Node struct {
	ID       string    `json:"id"`   // i-…, names its sandbox
	Name     string    `json:"name"` // ip-172-31-0-10.ec2.internal, its Kubernetes name
	Subnet   string    `json:"subnet"`
	Zone     string    `json:"zone"` // "a", "b", "c"
	Addr     string    `json:"addr"` // 172.31.0.10/20
	Created  time.Time `json:"created"`
	Draining bool      `json:"draining,omitempty"` // chosen for removal
	// DrainStarted is when its pods' eviction began (zero: not yet).
	DrainStarted time.Time `json:"drainStarted,omitzero"`
	// Version is the Kubernetes minor its kubelet runs (empty in records
	// of a skiff that had nodes follow the cluster's version).
	Version string `json:"version,omitempty"`
	Ready   bool   `json:"ready,omitempty"` // observed: its Node is Ready
	// AccessKeyID is the key of the node role session skiff minted for
	// the instance (its instance profile's credentials, session name ID):
	// only tokens signed with it are this node.
	AccessKeyID string `json:"accessKeyId,omitempty"`
	// IDBase is the first host user/group ID of the node's range: root
	// in the node is this ID on the host (0: not yet allocated).
	IDBase uint32 `json:"idBase,omitempty"`
}

// Node returns the group's node (instance) with that ID, or nil.
func (g *Nodegroup) Node(id string) *Node {
	for i := range g.Nodes {
		if g.Nodes[i].ID == id {
			return &g.Nodes[i]
		}
	}
	return nil
}

// Nodegroup returns the node group called name, or nil.
func (c *Cluster) Nodegroup(name string) *Nodegroup {
	for i := range c.Nodegroups {
		if c.Nodegroups[i].Name == name {
			return &c.Nodegroups[i]
		}
	}
	return nil
}

// InstanceType is what a node of an EC2 instance type advertises.
type InstanceType struct {
	VCPUs   int
	MiB     int // memory
	MaxPods int // EKS' ENI-based pod limit for the type
}

// InstanceTypes skiff models (vCPUs, memory and max pods as on EC2/EKS).
var InstanceTypes = map[string]InstanceType{
	"t3.micro": {2, 1024, 4}, "t3.small": {2, 2048, 11}, "t3.medium": {2, 4096, 17}, "t3.large": {2, 8192, 35},
	"t3.xlarge": {4, 16384, 58}, "m5.large": {2, 8192, 29}, "m5.xlarge": {4, 16384, 58}, "m5.2xlarge": {8, 32768, 58},
	"c5.large": {2, 4096, 29}, "c5.xlarge": {4, 8192, 58}, "r5.large": {2, 16384, 29},
}
