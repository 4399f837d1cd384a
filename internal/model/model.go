// Package model holds skiff's API types: the desired and reported state of
// clusters and the events recorded about them. It has no behaviour; the
// store persists these types and the reconcilers act on them.
package model

import (
	"fmt"
	"time"
)

// Cluster statuses, as EKS reports them.
const (
	StatusCreating = "CREATING"
	StatusActive   = "ACTIVE"
	StatusDeleting = "DELETING"
	StatusFailed   = "FAILED"
	StatusUpdating = "UPDATING"
)

// Defaults of a cluster's control plane.
const (
	DefaultAPIServers = 2
	MinAPIServers     = 2
	MaxAPIServers     = 5
)

// DefaultZones are the zone suffixes of a cluster's control plane: one etcd
// member in each, as EKS spreads its control plane over three zones.
var DefaultZones = []string{"a", "b", "c"}

// Cluster is one single-tenant control plane.
type Cluster struct {
	// Name is unique within an account.
	Name    string `json:"name"`
	Account string `json:"account,omitempty"`
	// ID names the cluster in the runtime and on disk; unique in one skiff.
	ID string `json:"id"`
	// Version is the Kubernetes minor version ("1.37").
	Version string `json:"version"`
	// PreviousVersion is the version the cluster was last upgraded from
	// in place: the one it may be rolled back to (empty: none).
	PreviousVersion string `json:"previousVersion,omitempty"`
	// Slot numbers the cluster's addresses (the process runtime's
	// 127.1.SLOT.0/24 for slots up to 255, then 127.2.0.0/24 and on).
	Slot       int               `json:"slot"`
	RoleArn    string            `json:"roleArn,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	APIServers int               `json:"apiServers"`
	Zones      []string          `json:"zones"`

	Status    string    `json:"status"`
	CreatedAt time.Time `json:"createdAt"`
	// Endpoint is the URL of the load-balanced API endpoint.
	Endpoint string `json:"endpoint,omitempty"`
	// CertificateAuthority is the PEM of the cluster CA.
	CertificateAuthority string `json:"certificateAuthority,omitempty"`

	// Etcd is the reconciler's record of the etcd cluster's membership.
	Etcd EtcdState `json:"etcd"`
	// Hibernation, when set, says that the cluster hibernates: its etcd
	// data is kept and every control-plane instance but its endpoint's is
	// stopped; the first client connection through the endpoint wakes it.
	Hibernation *Hibernation `json:"hibernation,omitempty"`
	// Message explains the status (why FAILED, what CREATING waits for).
	Message string `json:"message,omitempty"`

	// Network places the cluster in its account's VPC.
	Network ClusterNetwork `json:"network"`
	// Logging lists the enabled control-plane log types (api, audit, …).
	Logging []string `json:"logging,omitempty"`
	// AuthenticationMode is API, API_AND_CONFIG_MAP or CONFIG_MAP.
	AuthenticationMode string `json:"authenticationMode,omitempty"`
	// BootstrapAdmin gives the creator cluster-admin through an access entry.
	BootstrapAdmin bool `json:"bootstrapAdmin,omitempty"`
	// CreatorArn is the principal that created the cluster.
	CreatorArn string `json:"creatorArn,omitempty"`
	// ClientRequestToken of the create call, for idempotent retries.
	ClientRequestToken string `json:"clientRequestToken,omitempty"`
	// Updates are the cluster's updates, oldest first (bounded).
	Updates []Update `json:"updates,omitempty"`
	// AccessEntries map IAM principals to Kubernetes identities and
	// permissions (EKS access entries), sorted by principal ARN.
	AccessEntries []AccessEntry `json:"accessEntries,omitempty"`
	// Nodegroups are the cluster's managed node groups.
	Nodegroups []Nodegroup `json:"nodegroups,omitempty"`
	// Insights are the results of the cluster's upgrade-readiness checks
	// (EKS upgrade insights), refreshed by the reconciler; Refresh is the
	// state of the last refresh (StartInsightsRefresh asks for one).
	Insights []Insight       `json:"insights,omitempty"`
	Refresh  InsightsRefresh `json:"insightsRefresh,omitzero"`
	// Addons are the cluster's managed add-ons, by name.
	Addons []Addon `json:"addons,omitempty"`
	// SkipSelfManagedAddons is bootstrapSelfManagedAddons=false: no
	// CoreDNS and kube-proxy are installed at creation.
	SkipSelfManagedAddons bool `json:"skipSelfManagedAddons,omitempty"`
	// AddonsBootstrapped: the self-managed CoreDNS and kube-proxy were
	// installed (once; from then on they are the user's).
	AddonsBootstrapped bool `json:"addonsBootstrapped,omitempty"`
	// EndpointAddr is the endpoint's address inside the VPC (with the
	// subnet's prefix length), where the cluster's nodes reach it.
	EndpointAddr string `json:"endpointAddr,omitempty"`
	// Encryption is the envelope encryption of Secrets; nil if none.
	Encryption *Encryption `json:"encryption,omitempty"`
	// Observed is what the reconciler saw of the control plane in its
	// last pass that changed it (the API reads it here, not from the
	// reconciler).
	Observed *ControlPlaneStatus `json:"observed,omitempty"`
}

// ControlPlaneStatus is the observed state of a cluster's control plane.
type ControlPlaneStatus struct {
	At        time.Time        `json:"at"` // the pass that saw it
	Instances []InstanceStatus `json:"instances"`
	Backends  []string         `json:"backends"` // healthy apiservers behind the endpoint
	// Conditions are the outcomes of the reconciler's steps, in order.
	Conditions []Condition `json:"conditions,omitempty"`
}

// Condition is the outcome of one step of the control-plane reconciler's
// last pass, in Kubernetes' condition shape.
type Condition struct {
	Type    string    `json:"type"`   // the step: Network, PKI, Endpoint, Etcd, …
	Status  string    `json:"status"` // ConditionTrue, ConditionFalse or ConditionUnknown
	Reason  string    `json:"reason"` // one CamelCase word
	Message string    `json:"message,omitempty"`
	Since   time.Time `json:"since"` // when Status last changed
}

// Condition statuses.
const (
	ConditionTrue    = "True"
	ConditionFalse   = "False"
	ConditionUnknown = "Unknown"
)

// InstanceStatus is one control-plane instance as the reconciler saw it.
type InstanceStatus struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Zone    string `json:"zone"`
	PID     int    `json:"pid,omitempty"`
	Running bool   `json:"running"`
	Healthy bool   `json:"healthy"` // running, on its spec, and passed its last probe
	Error   string `json:"error,omitempty"`
}

// Access entry types, as EKS names them.
const (
	AccessEntryStandard = "STANDARD"
	AccessEntryEC2Linux = "EC2_LINUX"
)

// AccessEntry grants an IAM principal (user or role) access to a cluster.
type AccessEntry struct {
	PrincipalArn     string            `json:"principalArn"`
	Type             string            `json:"type"`
	Username         string            `json:"username"` // may hold {{SessionName}}-style templates
	KubernetesGroups []string          `json:"kubernetesGroups,omitempty"`
	ID               string            `json:"id"` // the UUID that ends its ARN
	Tags             map[string]string `json:"tags,omitempty"`
	CreatedAt        time.Time         `json:"createdAt"`
	ModifiedAt       time.Time         `json:"modifiedAt"`
	// Policies are the associated access policies, by policy ARN.
	Policies []AccessPolicyAssociation `json:"policies,omitempty"`
	// ClientRequestToken of the create call, for idempotent retries.
	ClientRequestToken string `json:"clientRequestToken,omitempty"`
}

// AccessPolicyAssociation is an access policy granted in a scope.
type AccessPolicyAssociation struct {
	PolicyArn    string      `json:"policyArn"`
	Scope        AccessScope `json:"scope"`
	AssociatedAt time.Time   `json:"associatedAt"`
	ModifiedAt   time.Time   `json:"modifiedAt"`
}

// AccessScope is "cluster", or "namespace" with the namespaces (a trailing
// '*' matches by prefix).
type AccessScope struct {
	Type       string   `json:"type"`
	Namespaces []string `json:"namespaces,omitempty"`
}

// AccessEntry returns the entry of a principal ARN, or nil.
func (c *Cluster) AccessEntry(principalArn string) *AccessEntry {
	for i := range c.AccessEntries {
		if c.AccessEntries[i].PrincipalArn == principalArn {
			return &c.AccessEntries[i]
		}
	}
	return nil
}

// ClusterNetwork is the cluster's resourcesVpcConfig.
type ClusterNetwork struct {
	VpcID                  string   `json:"vpcId,omitempty"`
	SubnetIDs              []string `json:"subnetIds,omitempty"`
	SecurityGroupIDs       []string `json:"securityGroupIds,omitempty"`
	ClusterSecurityGroupID string   `json:"clusterSecurityGroupId,omitempty"`
	EndpointPublicAccess   bool     `json:"endpointPublicAccess"`
	EndpointPrivateAccess  bool     `json:"endpointPrivateAccess"`
	PublicAccessCidrs      []string `json:"publicAccessCidrs,omitempty"`
}

// Update statuses and types, as EKS names them.
const (
	UpdateInProgress = "InProgress"
	UpdateFailed     = "Failed"
	UpdateSuccessful = "Successful"

	UpdateVersion        = "VersionUpdate"
	UpdateEndpointAccess = "EndpointAccessUpdate"
	UpdateLogging        = "LoggingUpdate"
	UpdateAccessConfig   = "AccessConfigUpdate"
	UpdateEncryption     = "AssociateEncryptionConfig"
)

// MaxUpdates bounds the updates kept per cluster; the oldest finished go first.
const MaxUpdates = 100

// Update is an asynchronous change of a cluster (EKS' Update shape).
type Update struct {
	ID                 string        `json:"id"`
	Type               string        `json:"type"`
	Status             string        `json:"status"`
	Params             []UpdateParam `json:"params"`
	CreatedAt          time.Time     `json:"createdAt"`
	Errors             []UpdateError `json:"errors,omitempty"`
	ClientRequestToken string        `json:"clientRequestToken,omitempty"`
	// Nodegroup names the node group of a node group update.
	Nodegroup string `json:"nodegroup,omitempty"`
	// Addon names the add-on of an add-on update.
	Addon string `json:"addon,omitempty"`
	// From is the version a version update started from (and the
	// control plane goes back to if it fails); PreviousVersion is the
	// cluster's PreviousVersion before it.
	From            string `json:"from,omitempty"`
	PreviousVersion string `json:"previousVersion,omitempty"`
}

// UpdateParam is one changed setting.
type UpdateParam struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// UpdateError says why an update failed.
type UpdateError struct {
	Code        string   `json:"errorCode"`
	Message     string   `json:"errorMessage"`
	ResourceIDs []string `json:"resourceIds,omitempty"`
}

// PendingUpdate returns the cluster update in progress, or nil.
func (c *Cluster) PendingUpdate() *Update {
	for i := range c.Updates {
		if c.Updates[i].Status == UpdateInProgress && c.Updates[i].Nodegroup == "" {
			return &c.Updates[i]
		}
	}
	return nil
}

// AddUpdate appends u, dropping the oldest finished updates beyond MaxUpdates.
func (c *Cluster) AddUpdate(u Update) {
	c.Updates = append(c.Updates, u)
	for len(c.Updates) > MaxUpdates {
		drop := 0
		for drop < len(c.Updates) && c.Updates[drop].Status == UpdateInProgress {
			drop++
		}
		if drop == len(c.Updates) {
			return
		}
		c.Updates = append(c.Updates[:drop], c.Updates[drop+1:]...)
	}
}

// EtcdState records what must survive a skiff restart about etcd.
type EtcdState struct {
	// EncryptedVolumes: the members' data is on encrypted volumes (every
	// cluster created since issue 18; older ones keep plain directories).
	EncryptedVolumes bool `json:"encryptedVolumes,omitempty"`
	// VolumeKey is the members' volume key, sealed by skiff's KMS root key
	// (made on first use).
	VolumeKey []byte `json:"volumeKey,omitempty"`
	// Bootstrapped is set once the initial members formed a cluster; from
	// then on a member without data joins as a new member.
	Bootstrapped bool `json:"bootstrapped"`
	// Generations counts replacements per member name ("etcd-a": 2); the
	// member's data dir and etcd name carry it.
	Generations map[string]int `json:"generations,omitempty"`
	// Version is the Kubernetes minor whose etcd the members run, when
	// not the cluster's: a rollback keeps the newer etcd (an etcd minor
	// downgrade needs etcd's own downgrade procedure; a Kubernetes
	// release's apiserver works with the next one's etcd).
	Version string `json:"version,omitempty"`
}

// Key is the store key of a cluster.
func (c *Cluster) Key() string { return ClusterKey(c.Account, c.Name) }

// ClusterKey is the store key of cluster name in account.
func ClusterKey(account, name string) string { return account + "/" + name }

// Event records something skiff noticed or did to a cluster's instances.
type Event struct {
	Time     time.Time `json:"time"`
	Cluster  string    `json:"cluster"` // cluster ID
	Instance string    `json:"instance,omitempty"`
	// Type is one of the Event* constants.
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

// Event types.
const (
	EventDetected = "Detected" // an instance was found dead or unhealthy
	EventReplaced = "Replaced" // an instance was restarted or replaced
	EventCreated  = "Created"
	EventDeleted  = "Deleted"
	EventUpdated  = "Updated"
	// EventProgress traces a cluster's creation: a step of the control
	// plane's reconciler became True, with the time since CreateCluster.
	EventProgress = "Progress"
	// EventHibernated and EventWoken: a cluster began or ended hibernating.
	EventHibernated = "Hibernated"
	EventWoken      = "Woken"
)

// NodeCount is how many nodes c's node groups want or have, whichever is
// more.
func (c *Cluster) NodeCount() int {
	n := 0
	for _, g := range c.Nodegroups {
		n += max(g.Desired, len(g.Nodes))
	}
	return n
}

// Hibernation is why and since when a cluster hibernates.
type Hibernation struct {
	Since  time.Time `json:"since"`
	Reason string    `json:"reason"`
}

// HibernateAfterTag is the cluster tag whose value (Go syntax: "30m",
// "1h"; "0" or "off": never) is how long a cluster without nodes and
// without client connections stays awake before it hibernates.
const HibernateAfterTag = "skiff.io/hibernate-after"

// MinHibernateAfter is the shortest HibernateAfterTag value.
const MinHibernateAfter = time.Second

// HibernateAfter is tags' HibernateAfterTag as a duration (0: never).
func HibernateAfter(tags map[string]string) (time.Duration, error) {
	v, ok := tags[HibernateAfterTag]
	if !ok || v == "0" || v == "off" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < MinHibernateAfter {
		return 0, fmt.Errorf("tag %s: %q is not a duration of at least %v (like 30m or 1h; 0 or off: never)", HibernateAfterTag, v, MinHibernateAfter)
	}
	return d, nil
}

func (e Event) String() string {
	return fmt.Sprintf("%s %s %s %s: %s", e.Time.Format(time.RFC3339), e.Cluster, e.Instance, e.Type, e.Reason)
}

// Encryption is a cluster's envelope encryption of Kubernetes resources
// with a KMS key of its account (EKS' encryptionConfig): its apiservers
// wrap the data keys of Secrets with the key, through the cluster's KMS
// plugin.
type Encryption struct {
	Resources []string `json:"resources"` // "secrets"
	KeyArn    string   `json:"keyArn"`    // the key's ARN (an alias is resolved when associated)
	// Rewritten says every Secret stored before the encryption was
	// associated was written again, encrypted; false while an
	// AssociateEncryptionConfig update runs.
	Rewritten bool `json:"rewritten,omitempty"`
	// KeyIssue is the cluster health issue the key's state makes
	// (KmsKeyDisabled, KmsKeyMarkedForDeletion, KmsKeyNotFound), "" while
	// the key is usable; KeyIssueMessage says why.
	KeyIssue        string `json:"keyIssue,omitempty"`
	KeyIssueMessage string `json:"keyIssueMessage,omitempty"`
	// Revocations counts the times the key became unusable. Each one
	// rolls the apiservers, so that none keeps an unwrapped data key in
	// memory: disabling the key makes the Secrets unreadable.
	Revocations int `json:"revocations,omitempty"`
}

// Cluster health issue codes of a cluster's encryption key.
const (
	IssueKmsKeyDisabled          = "KmsKeyDisabled"
	IssueKmsKeyMarkedForDeletion = "KmsKeyMarkedForDeletion"
	IssueKmsKeyNotFound          = "KmsKeyNotFound"
)

// ServiceCIDR is every cluster's Service IP range (EKS' default).
const ServiceCIDR = "10.100.0.0/16"

// PodCIDR holds every node's pods (each node gets a /26 of it).
const PodCIDR = "100.64.0.0/10"
