// Package clusters is the front of the cluster lifecycle: it validates
// requests, records desired state in the store and wakes the reconciler.
// API front ends (EKS wire API, CLI) call it; they never touch runtimes.
package clusters

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"skiff.dev/skiff/internal/addons/catalog"
	"sort"
	"strings"
	"time"

	"skiff.dev/skiff/internal/access"
	"skiff.dev/skiff/internal/bundle"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/network"
	"skiff.dev/skiff/internal/store"
)

// Error kinds, which API front ends map to their own error shapes.
var (
	ErrInvalid  = errors.New("invalid parameter")
	ErrNotFound = errors.New("not found")
	ErrInUse    = errors.New("in use")
	ErrLimit    = errors.New("limit exceeded")
)

// Service manages clusters in the store.
type Service struct {
	Store   *store.Store
	Bundles *bundle.Catalog
	// Changed is called after every change, to wake the reconciler.
	Changed func()
	// SlotUsable, if set, vetoes network slots that are busy on the host.
	SlotUsable func(slot int) bool
	// Network resolves the subnets a cluster is placed in.
	Network *network.Service
	// PrincipalExists, if set, vetoes access entries for IAM users and
	// roles that do not exist.
	PrincipalExists func(p access.Principal) bool
	// Addons is what add-ons and versions exist.
	Addons catalog.Catalog
	// Quotas bound what one account may hold (zero fields: defaults).
	Quotas Quotas
	// Keys resolves the KMS keys of encryptionConfig; nil refuses it.
	Keys Keys
}

// Quotas bound what one account may hold on this skiff, so that no tenant
// can take the machine (all cluster slots, all memory for nodes).
type Quotas struct {
	Clusters int // clusters per account
	Nodes    int // nodes (desired sizes of node groups) per account
}

// DefaultQuotas are the quotas of an account unless configured.
var DefaultQuotas = Quotas{Clusters: 10, Nodes: 30}

func (s *Service) quotas() Quotas {
	q := s.Quotas
	if q.Clusters == 0 {
		q.Clusters = DefaultQuotas.Clusters
	}
	if q.Nodes == 0 {
		q.Nodes = DefaultQuotas.Nodes
	}
	return q
}

// nodesElsewhere counts the nodes an account's node groups want in its
// clusters other than except (for the node quota).
func (s *Service) nodesElsewhere(account, except string) (int, error) {
	all, err := s.Store.ListClusters()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range all {
		if c.Account != account || c.Name == except {
			continue
		}
		for _, ng := range c.Nodegroups {
			n += ng.Desired
		}
	}
	return n, nil
}

// checkNodeQuota refuses a cluster change that would give the account
// more nodes than its quota; others is nodesElsewhere's count.
func (s *Service) checkNodeQuota(c *model.Cluster, others int) error {
	n := others
	for _, ng := range c.Nodegroups {
		n += ng.Desired
	}
	if q := s.quotas().Nodes; n > q {
		return fmt.Errorf("%w: the account's node groups would run %d nodes; this skiff allows an account %d (ask the operator to raise 'skiff serve --quota-nodes')", ErrLimit, n, q)
	}
	return nil
}

// CreateRequest is a new cluster's desired state.
type CreateRequest struct {
	Account    string
	Name       string
	Version    string // "1.37"; empty for the newest
	APIServers int    // 0 for the default
	RoleArn    string
	Tags       map[string]string

	SubnetIDs        []string
	SecurityGroupIDs []string
	// EndpointPublicAccess defaults to true, EndpointPrivateAccess to false.
	EndpointPublicAccess, EndpointPrivateAccess *bool
	PublicAccessCidrs                           []string
	Logging                                     []string // enabled log types
	AuthenticationMode                          string   // default API_AND_CONFIG_MAP
	BootstrapAdmin                              *bool    // default true
	SkipSelfManagedAddons                       bool     // bootstrapSelfManagedAddons=false
	CreatorArn                                  string
	ClientRequestToken                          string
	Encryption                                  []Encryption // encryptionConfig
}

// EKS' rule for cluster names.
var nameRE = regexp.MustCompile(`^[0-9A-Za-z][A-Za-z0-9\-_]*$`)

// Create records a new cluster in CREATING state.
func (s *Service) Create(req CreateRequest) (*model.Cluster, error) {
	if len(req.Name) < 1 || len(req.Name) > 100 || !nameRE.MatchString(req.Name) {
		return nil, fmt.Errorf("%w: cluster name %q must be 1-100 characters, start with a letter or digit and contain only letters, digits, '-' and '_'", ErrInvalid, req.Name)
	}
	b, err := s.Bundles.Lookup(req.Version)
	if err != nil {
		return nil, fmt.Errorf("%w: unsupported Kubernetes version %q; supported versions: %s", ErrInvalid, req.Version, strings.Join(s.Bundles.Versions(), ", "))
	}
	if req.APIServers == 0 {
		req.APIServers = model.DefaultAPIServers
	}
	if req.APIServers < model.MinAPIServers || req.APIServers > model.MaxAPIServers {
		return nil, fmt.Errorf("%w: apiserver count %d must be between %d and %d", ErrInvalid, req.APIServers, model.MinAPIServers, model.MaxAPIServers)
	}
	if err := ValidateTags(req.Tags); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	net, err := s.placement(req)
	if err != nil {
		return nil, err
	}
	if req.AuthenticationMode == "" {
		req.AuthenticationMode = AuthAPIAndConfigMap
	}
	if !validAuthMode(req.AuthenticationMode) {
		return nil, fmt.Errorf("%w: authenticationMode %q must be one of %s", ErrInvalid, req.AuthenticationMode, strings.Join(authModes, ", "))
	}
	logging, err := ValidateLogTypes(req.Logging)
	if err != nil {
		return nil, err
	}
	enc, err := s.encryption(req.Account, req.Encryption)
	if err != nil {
		return nil, err
	}
	if enc != nil {
		enc.Rewritten = true // nothing was stored before
	}
	c := &model.Cluster{
		Network:               net,
		Encryption:            enc,
		Logging:               logging,
		AuthenticationMode:    req.AuthenticationMode,
		BootstrapAdmin:        req.BootstrapAdmin == nil || *req.BootstrapAdmin,
		SkipSelfManagedAddons: req.SkipSelfManagedAddons,
		CreatorArn:            req.CreatorArn,
		ClientRequestToken:    req.ClientRequestToken,
		Name:                  req.Name,
		Account:               req.Account,
		ID:                    strings.ToLower(req.Name) + "-" + randomHex(3),
		Version:               b.Minor(),
		APIServers:            req.APIServers,
		RoleArn:               req.RoleArn,
		Tags:                  req.Tags,
		Zones:                 append([]string(nil), model.DefaultZones...),
		Etcd:                  model.EtcdState{EncryptedVolumes: true},
		Status:                model.StatusCreating,
		CreatedAt:             time.Now().UTC(),
	}
	ensureCreatorEntry(c)
	quota := s.quotas().Clusters
	err = s.Store.CreateClusterQuota(c, s.SlotUsable, quota)
	for try := 0; errors.Is(err, store.ErrIDTaken) && try < 10; try++ {
		c.ID = strings.ToLower(req.Name) + "-" + randomHex(3)
		err = s.Store.CreateClusterQuota(c, s.SlotUsable, quota)
	}
	switch {
	case errors.Is(err, store.ErrQuota):
		return nil, fmt.Errorf("%w: You have reached the maximum number of clusters (%d) this skiff allows an account; delete one, or ask the operator to raise 'skiff serve --quota-clusters'", ErrLimit, quota)
	case errors.Is(err, store.ErrExists):
		// A retry with the same client request token gets the cluster it made.
		if old, gerr := s.Get(req.Account, req.Name); gerr == nil && req.ClientRequestToken != "" && old.ClientRequestToken == req.ClientRequestToken {
			return old, nil
		}
		return nil, fmt.Errorf("%w: cluster already exists with name: %s", ErrInUse, req.Name)
	case errors.Is(err, store.ErrFull):
		return nil, fmt.Errorf("%w: this skiff runs its maximum of %d clusters; delete one first", ErrLimit, store.MaxSlot)
	case err != nil:
		return nil, err
	}
	s.changed()
	return c, nil
}

// Get returns a cluster of an account.
func (s *Service) Get(account, name string) (*model.Cluster, error) {
	c, err := s.Store.GetCluster(model.ClusterKey(account, name))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: no cluster found for name: %s", ErrNotFound, name)
	}
	return c, err
}

// List returns the names of an account's clusters, sorted.
func (s *Service) List(account string) ([]string, error) {
	all, err := s.Store.ListClusters()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, c := range all {
		if c.Account == account {
			names = append(names, c.Name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// Delete marks a cluster DELETING; the reconciler removes it.
func (s *Service) Delete(account, name string) (*model.Cluster, error) {
	c, err := s.updateNamed(account, name, func(c *model.Cluster) error {
		if len(c.Nodegroups) > 0 {
			names := make([]string, len(c.Nodegroups))
			for i, g := range c.Nodegroups {
				names[i] = g.Name
			}
			return fmt.Errorf("%w: Cluster has nodegroups attached (%s); delete them first with 'aws eks delete-nodegroup'", ErrInUse, strings.Join(names, ", "))
		}
		c.Status = model.StatusDeleting
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.changed()
	return c, nil
}

// Events returns the events recorded for a cluster.
func (s *Service) Events(account, name string) ([]model.Event, error) {
	c, err := s.Get(account, name)
	if err != nil {
		return nil, err
	}
	return s.Store.Events(c.ID)
}

func (s *Service) changed() {
	if s.Changed != nil {
		s.Changed()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
