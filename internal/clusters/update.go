package clusters

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"skiff.dev/skiff/internal/access"
	"skiff.dev/skiff/internal/addons/catalog"
	"skiff.dev/skiff/internal/insights"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/network"
	"skiff.dev/skiff/internal/store"
)

// Authentication modes of a cluster (EKS' accessConfig.authenticationMode).
const (
	AuthAPI             = access.ModeAPI
	AuthAPIAndConfigMap = access.ModeAPIAndConfigMap
	AuthConfigMap       = access.ModeConfigMap
)

var authModes = []string{AuthAPI, AuthAPIAndConfigMap, AuthConfigMap}

func validAuthMode(m string) bool { return slices.Contains(authModes, m) }

// LogTypes are the control-plane log types EKS knows.
var LogTypes = []string{"api", "audit", "authenticator", "controllerManager", "scheduler"}

// ValidateLogTypes checks log types and returns them sorted and unique.
func ValidateLogTypes(types []string) ([]string, error) {
	var out []string
	for _, t := range types {
		if !slices.Contains(LogTypes, t) {
			return nil, fmt.Errorf("%w: unknown log type %q; the types are %s", ErrInvalid, t, strings.Join(LogTypes, ", "))
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Tag limits, as EKS enforces them.
const (
	MaxTags        = 50
	maxTagKeyLen   = 128
	maxTagValueLen = 256
)

// ValidateTags checks a tag map against EKS' rules.
func ValidateTags(tags map[string]string) error {
	if len(tags) > MaxTags {
		return fmt.Errorf("a resource has at most %d tags; this request has %d", MaxTags, len(tags))
	}
	for k, v := range tags {
		switch {
		case len(k) < 1 || len(k) > maxTagKeyLen:
			return fmt.Errorf("tag key %q must be 1-%d characters", k, maxTagKeyLen)
		case len(v) > maxTagValueLen:
			return fmt.Errorf("the value of tag %q is longer than %d characters", k, maxTagValueLen)
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return fmt.Errorf("tag key %q uses the reserved prefix aws:; choose another key", k)
		}
	}
	_, err := model.HibernateAfter(tags)
	return err
}

// placement validates the request's network settings: the subnets exist in
// the caller's account, lie in one VPC and span at least two zones.
func (s *Service) placement(req CreateRequest) (model.ClusterNetwork, error) {
	n := model.ClusterNetwork{EndpointPublicAccess: true, PublicAccessCidrs: req.PublicAccessCidrs}
	if req.EndpointPublicAccess != nil {
		n.EndpointPublicAccess = *req.EndpointPublicAccess
	}
	if req.EndpointPrivateAccess != nil {
		n.EndpointPrivateAccess = *req.EndpointPrivateAccess
	}
	if err := validateEndpointAccess(&n); err != nil {
		return n, err
	}
	if len(req.SecurityGroupIDs) > 0 {
		return n, fmt.Errorf("%w: skiff has no security groups yet; omit securityGroupIds (the cluster security group is created for you)", ErrInvalid)
	}
	if len(req.SubnetIDs) == 0 {
		return n, fmt.Errorf("%w: Subnets specified must be in at least two different AZs: pass resourcesVpcConfig subnetIds (see 'aws ec2 describe-subnets')", ErrInvalid)
	}
	if s.Network == nil {
		return n, fmt.Errorf("%w: this skiff has no network service", ErrInvalid)
	}
	if _, err := s.Network.EnsureDefault(req.Account); err != nil {
		return n, err
	}
	subnets, err := s.Network.Subnets(req.Account, req.SubnetIDs)
	if err != nil {
		if errors.Is(err, network.ErrNotFound) {
			return n, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		return n, err
	}
	zones := map[string]bool{}
	for _, sn := range subnets {
		if n.VpcID == "" {
			n.VpcID = sn.VpcID
		}
		if sn.VpcID != n.VpcID {
			return n, fmt.Errorf("%w: subnets %s and %s are in different VPCs (%s, %s); pass subnets of one VPC", ErrInvalid, subnets[0].ID, sn.ID, n.VpcID, sn.VpcID)
		}
		zones[sn.Zone] = true
	}
	if len(zones) < 2 {
		return n, fmt.Errorf("%w: Subnets specified must be in at least two different AZs; all of %s are in one zone", ErrInvalid, strings.Join(req.SubnetIDs, ", "))
	}
	for _, sn := range subnets {
		n.SubnetIDs = append(n.SubnetIDs, sn.ID)
	}
	sum := sha256.Sum256([]byte(req.Account + "/" + req.Name + "/" + time.Now().String()))
	n.ClusterSecurityGroupID = "sg-" + hex.EncodeToString(sum[:])[:17]
	return n, nil
}

func validateEndpointAccess(n *model.ClusterNetwork) error {
	if !n.EndpointPublicAccess && !n.EndpointPrivateAccess {
		return fmt.Errorf("%w: the endpoint needs public or private access: endpointPublicAccess and endpointPrivateAccess cannot both be false", ErrInvalid)
	}
	if len(n.PublicAccessCidrs) == 0 {
		n.PublicAccessCidrs = []string{"0.0.0.0/0"}
	}
	for _, c := range n.PublicAccessCidrs {
		if _, err := netip.ParsePrefix(c); err != nil {
			return fmt.Errorf("%w: publicAccessCidrs entry %q is not a CIDR block like 203.0.113.0/24", ErrInvalid, c)
		}
	}
	return nil
}

// UserOf returns the name of an account's cluster placed in the VPC or
// subnet id, or "" (for network.Service.InUse).
func (s *Service) UserOf(account, id string) string {
	all, err := s.Store.ListClusters()
	if err != nil {
		return "a cluster (the store could not be read)"
	}
	for _, c := range all {
		if c.Account == account && (c.Network.VpcID == id || slices.Contains(c.Network.SubnetIDs, id)) {
			return c.Name
		}
	}
	return ""
}

// ConfigUpdate is an UpdateClusterConfig request; nil fields stay as they are.
type ConfigUpdate struct {
	EndpointPublicAccess, EndpointPrivateAccess *bool
	PublicAccessCidrs                           []string
	// Logging maps log types to enabled or not.
	Logging            map[string]bool
	AuthenticationMode string
	ClientRequestToken string
}

// UpdateConfig starts a configuration update of an ACTIVE cluster.
func (s *Service) UpdateConfig(account, name string, req ConfigUpdate) (*model.Update, error) {
	kinds := 0
	if req.EndpointPublicAccess != nil || req.EndpointPrivateAccess != nil || req.PublicAccessCidrs != nil {
		kinds++
	}
	if req.Logging != nil {
		kinds++
	}
	if req.AuthenticationMode != "" {
		kinds++
	}
	switch {
	case kinds == 0:
		return nil, fmt.Errorf("%w: nothing to update: pass resourcesVpcConfig, logging or accessConfig", ErrInvalid)
	case kinds > 1:
		return nil, fmt.Errorf("%w: Only one type of update can be allowed: update resourcesVpcConfig, logging and accessConfig in separate calls", ErrInvalid)
	}
	for t := range req.Logging {
		if _, err := ValidateLogTypes([]string{t}); err != nil {
			return nil, err
		}
	}
	return s.update(account, name, req.ClientRequestToken, func(c *model.Cluster) (model.Update, error) {
		switch {
		case req.Logging != nil:
			enabled := map[string]bool{}
			for _, t := range c.Logging {
				enabled[t] = true
			}
			for t, on := range req.Logging {
				enabled[t] = on
			}
			var types []string
			for t, on := range enabled {
				if on {
					types = append(types, t)
				}
			}
			sort.Strings(types)
			if slices.Equal(types, c.Logging) {
				return model.Update{}, fmt.Errorf("%w: No changes needed for the logging config provided", ErrInvalid)
			}
			c.Logging = types
			return model.Update{Type: model.UpdateLogging, Params: []model.UpdateParam{{Type: "ClusterLogging", Value: loggingJSON(types)}}}, nil
		case req.AuthenticationMode != "":
			if !validAuthMode(req.AuthenticationMode) {
				return model.Update{}, fmt.Errorf("%w: authenticationMode %q must be one of %s", ErrInvalid, req.AuthenticationMode, strings.Join(authModes, ", "))
			}
			from, to := c.AuthenticationMode, req.AuthenticationMode
			if from == to {
				return model.Update{}, fmt.Errorf("%w: the cluster's authenticationMode is already %s", ErrInvalid, to)
			}
			// EKS only moves towards access entries: CONFIG_MAP → API_AND_CONFIG_MAP → API.
			if slices.Index(authModes, to) > slices.Index(authModes, from) {
				return model.Update{}, fmt.Errorf("%w: Unsupported authentication mode update from %s to %s: the mode can only move from CONFIG_MAP to API_AND_CONFIG_MAP to API", ErrInvalid, from, to)
			}
			c.AuthenticationMode = to
			ensureCreatorEntry(c)
			return model.Update{Type: model.UpdateAccessConfig, Params: []model.UpdateParam{{Type: "AuthenticationMode", Value: to}}}, nil
		default:
			n := c.Network
			if req.EndpointPublicAccess != nil {
				n.EndpointPublicAccess = *req.EndpointPublicAccess
			}
			if req.EndpointPrivateAccess != nil {
				n.EndpointPrivateAccess = *req.EndpointPrivateAccess
			}
			if req.PublicAccessCidrs != nil {
				n.PublicAccessCidrs = req.PublicAccessCidrs
			}
			if err := validateEndpointAccess(&n); err != nil {
				return model.Update{}, err
			}
			if n.EndpointPublicAccess == c.Network.EndpointPublicAccess && n.EndpointPrivateAccess == c.Network.EndpointPrivateAccess &&
				slices.Equal(n.PublicAccessCidrs, c.Network.PublicAccessCidrs) {
				return model.Update{}, fmt.Errorf("%w: Cluster is already at the desired configuration with endpointPrivateAccess: %t , endpointPublicAccess: %t, and Public Endpoint Restrictions: %v",
					ErrInvalid, n.EndpointPrivateAccess, n.EndpointPublicAccess, n.PublicAccessCidrs)
			}
			c.Network = n
			return model.Update{Type: model.UpdateEndpointAccess, Params: []model.UpdateParam{
				{Type: "EndpointPublicAccess", Value: strconv.FormatBool(n.EndpointPublicAccess)},
				{Type: "EndpointPrivateAccess", Value: strconv.FormatBool(n.EndpointPrivateAccess)},
				{Type: "PublicAccessCidrs", Value: jsonList(n.PublicAccessCidrs)},
			}}, nil
		}
	})
}

// UpdateVersion starts the upgrade of an ACTIVE cluster to the next
// minor version, or its rollback to the version it was upgraded from.
//
// A rollback is one minor back to the version the cluster was upgraded
// from in place, as on EKS; skiff allows it for as long as that is safe
// rather than for 7 days: upstream Kubernetes moves a resource's storage
// version only to one the previous minor already reads, so the older
// apiservers read everything the newer ones wrote. What makes it unsafe is
// a node newer than the target (a kubelet may not be newer than its
// apiserver): node groups are rolled back first, with
// UpdateNodegroupVersion, as on EKS.
//
// An upgrade that an ERROR upgrade insight says would break (a removed API
// still in use, a kubelet out of skew) is refused unless force, as on EKS.
func (s *Service) UpdateVersion(account, name, version, token string, force bool) (*model.Update, error) {
	b, err := s.Bundles.Lookup(version)
	if version == "" || err != nil {
		return nil, fmt.Errorf("%w: unsupported Kubernetes version %q; supported versions: %s", ErrInvalid, version, strings.Join(s.Bundles.Versions(), ", "))
	}
	return s.update(account, name, token, func(c *model.Cluster) (model.Update, error) {
		to := b.Minor()
		if c.Version == to {
			return model.Update{}, fmt.Errorf("%w: Cluster is already at the desired configuration with version: %s", ErrInvalid, c.Version)
		}
		if err := versionChange(c, to); err != nil {
			return model.Update{}, err
		}
		if b := insights.Blocking(c.Insights, to); len(b) > 0 && !force && minorDiff(to, c.Version) > 0 {
			return model.Update{}, fmt.Errorf("%w: the upgrade to %s is blocked by upgrade insight %q (%s): %s See 'aws eks describe-insight --cluster-name %s --id %s', or pass --force to upgrade anyway",
				ErrInvalidRequest, to, b[0].Name, b[0].Status, b[0].Reason, c.Name, b[0].ID)
		}
		from, previous := c.Version, c.PreviousVersion
		if minorDiff(to, c.Version) > 0 {
			c.PreviousVersion = c.Version
			if minorDiff(to, c.Etcd.Version) > 0 {
				c.Etcd.Version = "" // the new version's etcd
			}
		} else {
			c.PreviousVersion = "" // rolled back: nothing further to go back to
			c.Etcd.Version = cmp.Or(c.Etcd.Version, c.Version)
		}
		c.Version = to
		return model.Update{Type: model.UpdateVersion, From: from, PreviousVersion: previous, Params: []model.UpdateParam{
			{Type: "Version", Value: to}, {Type: "PlatformVersion", Value: PlatformVersion},
		}}, nil
	})
}

// MaxKubeletSkew is how many minors a kubelet may be older than its
// apiservers (upstream's version skew policy); it may never be newer.
const MaxKubeletSkew = 3

// versionChange checks that c may move from its version to to: one minor
// up, with every node group within the kubelet skew of the new version,
// or a rollback (see UpdateVersion).
func versionChange(c *model.Cluster, to string) error {
	d := minorDiff(to, c.Version)
	switch {
	case d > 1:
		return fmt.Errorf("%w: Unsupported Kubernetes minor version update from %s to %s: upgrade one minor version at a time", ErrInvalid, c.Version, to)
	case d < -1:
		return fmt.Errorf("%w: Unsupported Kubernetes version rollback from %s to %s: a cluster rolls back one minor version, to the version it was upgraded from", ErrInvalidRequest, c.Version, to)
	case d == -1 && c.PreviousVersion != to:
		why := "it was created at " + c.Version
		if c.PreviousVersion != "" {
			why = "it was upgraded from " + c.PreviousVersion
		}
		return fmt.Errorf("%w: cluster %s cannot roll back to %s: %s; a cluster rolls back only to the version it was upgraded from in place", ErrInvalidRequest, c.Name, to, why)
	}
	if a := c.Addon(catalog.KubeProxy); a != nil && a.Status != model.AddonDeleting {
		if v := addonMinor(a.Version); minorDiff(v, to) > 0 {
			return fmt.Errorf("%w: the kube-proxy add-on runs %s, newer than %s (kube-proxy may not be newer than its control plane): move it first with 'aws eks update-addon --cluster-name %s --addon-name kube-proxy --addon-version <a %s version>' (see 'aws eks describe-addon-versions --addon-name kube-proxy --kubernetes-version %s')",
				ErrInvalidRequest, a.Version, to, c.Name, to, c.Version)
		}
	}
	for _, g := range c.Nodegroups {
		for _, v := range groupVersions(c, &g) {
			switch {
			case minorDiff(v, to) > 0:
				return fmt.Errorf("%w: node group %s runs Kubernetes %s, newer than %s (a kubelet may not be newer than its control plane): roll it back first with 'aws eks update-nodegroup-version --cluster-name %s --nodegroup-name %s --kubernetes-version %s'",
					ErrInvalidRequest, g.Name, v, to, c.Name, g.Name, to)
			case minorDiff(to, v) > MaxKubeletSkew:
				return fmt.Errorf("%w: node group %s runs Kubernetes %s, more than %d minor versions behind %s: update it first with 'aws eks update-nodegroup-version --cluster-name %s --nodegroup-name %s'",
					ErrInvalidRequest, g.Name, v, MaxKubeletSkew, to, c.Name, g.Name)
			}
		}
	}
	return nil
}

// groupVersions are the Kubernetes minors a node group's nodes run (and
// the group's own, which its new nodes get).
func groupVersions(c *model.Cluster, g *model.Nodegroup) []string {
	out := []string{cmp.Or(g.Version, c.Version)}
	for _, n := range g.Nodes {
		if v := cmp.Or(n.Version, c.Version); !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// minorDiff is a − b in minor versions ("1.37" − "1.36" = 1); versions of
// different majors, or unparsable ones, are far apart.
// addonMinor is the Kubernetes minor of an add-on version that follows
// Kubernetes' ("v1.37.2-eksbuild.1" → "1.37"; "" otherwise).
func addonMinor(v string) string {
	var major, minor int
	if _, err := fmt.Sscanf(v, "v%d.%d.", &major, &minor); err != nil {
		return ""
	}
	return fmt.Sprintf("%d.%d", major, minor)
}

func minorDiff(a, b string) int {
	var aa, ab, ba, bb int
	if _, err := fmt.Sscanf(a, "%d.%d", &aa, &ab); err != nil {
		return 1000
	}
	if _, err := fmt.Sscanf(b, "%d.%d", &ba, &bb); err != nil {
		return 1000
	}
	if aa != ba {
		return 1000 * (aa - ba)
	}
	return ab - bb
}

// PlatformVersion is the EKS platform version skiff reports.
const PlatformVersion = "eks.1"

// update applies change to an ACTIVE cluster and records its update as
// InProgress; the reconciler finishes it. A retry with the same client
// request token returns the update it made.
func (s *Service) update(account, name, token string, change func(*model.Cluster) (model.Update, error)) (*model.Update, error) {
	var out model.Update
	_, err := s.Store.UpdateCluster(model.ClusterKey(account, name), func(c *model.Cluster) error {
		if token != "" {
			for _, u := range c.Updates {
				if u.ClientRequestToken == token {
					out = u
					return nil
				}
			}
		}
		if p := c.PendingUpdate(); p != nil {
			return fmt.Errorf("%w: an update (%s, %s) is already in progress for cluster %s; wait for it with 'aws eks describe-update'", ErrInUse, p.Type, p.ID, name)
		}
		if c.Status != model.StatusActive {
			return fmt.Errorf("%w: cluster %s is %s; it can be updated once it is ACTIVE", ErrInUse, name, c.Status)
		}
		u, err := change(c)
		if err != nil {
			return err
		}
		u.ID, u.Status, u.CreatedAt, u.ClientRequestToken = newUUID(), model.UpdateInProgress, time.Now().UTC(), token
		c.AddUpdate(u)
		c.Status = model.StatusUpdating
		out = u
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: No cluster found for name: %s.", ErrNotFound, name)
	}
	if err != nil {
		return nil, err
	}
	s.changed()
	return &out, nil
}

// Update returns one update of a cluster.
func (s *Service) Update(account, name, id string) (*model.Update, error) {
	c, err := s.Get(account, name)
	if err != nil {
		return nil, err
	}
	for _, u := range c.Updates {
		if u.ID == id {
			return &u, nil
		}
	}
	return nil, fmt.Errorf("%w: No update found for ID: %s", ErrNotFound, id)
}

// Tag adds or replaces tags of a cluster.
func (s *Service) Tag(account, name string, tags map[string]string) error {
	return s.retag(account, name, func(c *model.Cluster) error {
		merged := map[string]string{}
		for k, v := range c.Tags {
			merged[k] = v
		}
		for k, v := range tags {
			merged[k] = v
		}
		if err := ValidateTags(merged); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		c.Tags = merged
		return nil
	})
}

// Untag removes tag keys from a cluster (absent keys are ignored).
func (s *Service) Untag(account, name string, keys []string) error {
	return s.retag(account, name, func(c *model.Cluster) error {
		for _, k := range keys {
			delete(c.Tags, k)
		}
		return nil
	})
}

func (s *Service) retag(account, name string, fn func(*model.Cluster) error) error {
	_, err := s.Store.UpdateCluster(model.ClusterKey(account, name), func(c *model.Cluster) error {
		if c.Status == model.StatusDeleting {
			return fmt.Errorf("%w: cluster %s is being deleted", ErrNotFound, name)
		}
		return fn(c)
	})
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: no cluster found for name: %s", ErrNotFound, name)
	}
	return err
}

func loggingJSON(enabled []string) string {
	var off []string
	for _, t := range LogTypes {
		if !slices.Contains(enabled, t) {
			off = append(off, t)
		}
	}
	var parts []string
	if len(enabled) > 0 {
		parts = append(parts, `{"types":`+jsonList(enabled)+`,"enabled":true}`)
	}
	if len(off) > 0 {
		parts = append(parts, `{"types":`+jsonList(off)+`,"enabled":false}`)
	}
	return `{"clusterLogging":[` + strings.Join(parts, ",") + `]}`
}

func jsonList(items []string) string {
	q := make([]string, len(items))
	for i, it := range items {
		q[i] = strconv.Quote(it)
	}
	return "[" + strings.Join(q, ",") + "]"
}

// newUUID returns a random RFC 4122 version-4 UUID, as EKS update IDs are.
func newUUID() string {
	b := []byte(randomHex(16))
	raw, _ := hex.DecodeString(string(b))
	raw[6] = raw[6]&0x0f | 0x40
	raw[8] = raw[8]&0x3f | 0x80
	h := hex.EncodeToString(raw)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
