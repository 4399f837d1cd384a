package iam

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"skiff.dev/skiff/internal/iam/policy"
	"skiff.dev/skiff/internal/store"
)

// Quotas of IAM policies, as AWS's defaults (managed policies per entity
// at the raised maximum, 20).
const (
	MaxPolicyVersions      = 5
	MaxAttachedPolicies    = 20
	MaxManagedPolicySize   = 6144
	maxInlineUserPolicies  = 2048
	maxInlineRolePolicies  = 10240
	maxInlineGroupPolicies = 5120
	MaxGroupsPerUser       = 10
)

// Attachments are an entity's policies: managed ones by ARN, inline ones
// by name.
type Attachments struct {
	Policies []string          `json:"policies,omitempty"`
	Inline   map[string]string `json:"inline,omitempty"`
}

// Group is an IAM group; its users get its policies.
type Group struct {
	Account   string    `json:"account"`
	Name      string    `json:"name"`
	ID        string    `json:"id"` // AGPA…
	Path      string    `json:"path"`
	Users     []string  `json:"users,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	Attachments
}

// Arn of the group.
func (g *Group) Arn() string {
	return fmt.Sprintf("arn:aws:iam::%s:group%s%s", g.Account, g.Path, g.Name)
}

// Policy is a customer managed policy with its versions.
type Policy struct {
	Account        string          `json:"account"`
	Name           string          `json:"name"`
	ID             string          `json:"id"` // ANPA…
	Path           string          `json:"path"`
	Description    string          `json:"description,omitempty"`
	DefaultVersion string          `json:"defaultVersion"`
	Versions       []PolicyVersion `json:"versions"`
	NextVersion    int             `json:"nextVersion"`
	CreatedAt      time.Time       `json:"createdAt"`
	UpdatedAt      time.Time       `json:"updatedAt"`
	// AWS is set for AWS managed policies (never stored).
	AWS bool `json:"-"`
	// Attachments is how many users, groups and roles it is attached to
	// (filled in on reads).
	Attachments int `json:"-"`
}

// PolicyVersion is one version of a managed policy's document.
type PolicyVersion struct {
	ID        string    `json:"id"` // v1, v2, …
	Document  string    `json:"document"`
	CreatedAt time.Time `json:"createdAt"`
}

// Arn of the policy.
func (p *Policy) Arn() string {
	if p.AWS {
		return "arn:aws:iam::aws:policy" + p.Path + p.Name
	}
	return fmt.Sprintf("arn:aws:iam::%s:policy%s%s", p.Account, p.Path, p.Name)
}

// Version returns a version of the policy.
func (p *Policy) Version(id string) (*PolicyVersion, bool) {
	for i := range p.Versions {
		if p.Versions[i].ID == id {
			return &p.Versions[i], true
		}
	}
	return nil, false
}

// Document is the default version's document.
func (p *Policy) Document() string {
	v, _ := p.Version(p.DefaultVersion)
	if v == nil {
		return ""
	}
	return v.Document
}

func policyKey(account, name string) string { return "policy/" + account + "/" + name }
func groupKey(account, name string) string  { return "group/" + account + "/" + name }

var (
	policyNameRE = regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)
	pathRE       = regexp.MustCompile(`^/([\x21-\x7e]{0,510}/)?$`)
)

func checkPath(p string) error {
	if !pathRE.MatchString(normPath(p)) {
		return fmt.Errorf("%w: Path %q must begin and end with / and have at most 512 printable characters", ErrInvalid, p)
	}
	return nil
}

// parseManaged validates a managed policy document.
func parseManaged(doc string) (*policy.Document, error) {
	if doc == "" {
		return nil, fmt.Errorf("%w: PolicyDocument is required", ErrInvalid)
	}
	if nonSpace(doc) > MaxManagedPolicySize {
		return nil, fmt.Errorf("%w: Cannot exceed quota for PolicySize: %d", ErrLimit, MaxManagedPolicySize)
	}
	d, err := policy.Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedPolicy, err)
	}
	return d, nil
}

// ErrMalformedPolicy is IAM's MalformedPolicyDocument.
var ErrMalformedPolicy = errors.New("malformed policy document")

func nonSpace(s string) int {
	n := 0
	for _, r := range s {
		if !unicode.IsSpace(r) {
			n++
		}
	}
	return n
}

// CreatePolicy creates a customer managed policy (version v1).
func (s *Service) CreatePolicy(account, name, path, document, description string) (*Policy, error) {
	if !policyNameRE.MatchString(name) {
		return nil, fmt.Errorf("%w: policy name %q must be 1-128 characters of letters, digits and +=,.@_-", ErrInvalid, name)
	}
	if err := checkPath(path); err != nil {
		return nil, err
	}
	if _, err := parseManaged(document); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	p := &Policy{Account: account, Name: name, ID: "ANPA" + randomID(17), Path: normPath(path), Description: description,
		DefaultVersion: "v1", Versions: []PolicyVersion{{ID: "v1", Document: document, CreatedAt: now}}, NextVersion: 2,
		CreatedAt: now, UpdatedAt: now}
	err := s.update(func(tx *store.Tx) error {
		if tx.Has(policyKey(account, name)) {
			return fmt.Errorf("%w: A policy called %s already exists. Duplicate names are not allowed.", ErrExists, name)
		}
		if err := quota(tx, "policy/", account, s.Quotas.Policies, DefaultQuotas.Policies, "Policies"); err != nil {
			return err
		}
		return tx.Put(policyKey(account, name), p)
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// policyByArn reads a customer managed policy of account, or an AWS
// managed one.
func policyByArn(tx *store.Tx, account, arn string) (*Policy, error) {
	missing := fmt.Errorf("%w: Policy %s does not exist or is not attachable.", ErrNoSuchEntity, arn)
	if m, ok := policy.ManagedPolicy(arn); ok {
		return &Policy{Name: m.Name, Path: m.Path, Description: m.Description, DefaultVersion: m.VersionID, AWS: true,
			ID:       "ANPA" + strings.ToUpper(fmt.Sprintf("%017x", hash(m.Name)))[:17],
			Versions: []PolicyVersion{{ID: m.VersionID, Document: m.Document}}}, nil
	}
	rest, ok := strings.CutPrefix(arn, "arn:aws:iam::"+account+":policy/")
	if !ok {
		return nil, missing
	}
	var p Policy
	if err := tx.Get(policyKey(account, rest[strings.LastIndexByte(rest, '/')+1:]), &p); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, missing
		}
		return nil, err
	}
	if p.Arn() != arn {
		return nil, missing
	}
	return &p, nil
}

func hash(s string) uint64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}

// attachmentCount counts the entities of account a policy is attached to.
func attachmentCount(tx *store.Tx, account, arn string) int {
	n := 0
	for _, prefix := range []string{userKey(account, ""), roleKey(account, ""), groupKey(account, "")} {
		tx.Scan(prefix, func(_ string, data []byte) error {
			var a Attachments
			if json.Unmarshal(data, &a) == nil && contains(a.Policies, arn) {
				n++
			}
			return nil
		})
	}
	return n
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// GetPolicy returns a managed policy by ARN.
func (s *Service) GetPolicy(account, arn string) (*Policy, error) {
	var p *Policy
	err := s.Store.IdentityView(func(tx *store.Tx) (err error) {
		if p, err = policyByArn(tx, account, arn); err == nil {
			p.Attachments = attachmentCount(tx, account, arn)
		}
		return err
	})
	return p, err
}

// ListPolicies lists managed policies: scope "All" (default), "AWS" or
// "Local"; onlyAttached keeps those attached to an entity of account.
func (s *Service) ListPolicies(account, scope string, onlyAttached bool, pathPrefix string) ([]Policy, error) {
	var out []Policy
	if scope == "" {
		scope = "All"
	}
	if scope != "All" && scope != "AWS" && scope != "Local" {
		return nil, fmt.Errorf("%w: Scope must be All, AWS or Local", ErrInvalid)
	}
	err := s.Store.IdentityView(func(tx *store.Tx) error {
		var all []Policy
		if scope != "Local" {
			for _, m := range policy.ManagedPolicies() {
				p, err := policyByArn(tx, account, m.Arn())
				if err != nil {
					return err
				}
				all = append(all, *p)
			}
		}
		if scope != "AWS" {
			local, err := scanAll[Policy](tx, policyKey(account, ""), nil)
			if err != nil {
				return err
			}
			all = append(all, local...)
		}
		for _, p := range all {
			p.Attachments = attachmentCount(tx, account, p.Arn())
			if (onlyAttached && p.Attachments == 0) || !strings.HasPrefix(p.Path, normPath(pathPrefix)) {
				continue
			}
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// DeletePolicy deletes a customer managed policy that is attached to
// nothing and has no version but its default.
func (s *Service) DeletePolicy(account, arn string) error {
	return s.update(func(tx *store.Tx) error {
		p, err := policyByArn(tx, account, arn)
		if err != nil {
			return err
		}
		if p.AWS {
			return fmt.Errorf("%w: Cannot delete an AWS managed policy (%s).", ErrInvalid, arn)
		}
		if attachmentCount(tx, account, arn) > 0 {
			return fmt.Errorf("%w: Cannot delete a policy attached to entities.", ErrDeleteConflict)
		}
		if len(p.Versions) > 1 {
			return fmt.Errorf("%w: This policy has more than one version. Before you delete a policy, you must delete the policy's versions. The default version is deleted with the policy.", ErrDeleteConflict)
		}
		return tx.Delete(policyKey(account, p.Name))
	})
}

// customerPolicy changes a customer managed policy.
func (s *Service) customerPolicy(account, arn string, fn func(p *Policy) error) (*Policy, error) {
	var p *Policy
	err := s.update(func(tx *store.Tx) (err error) {
		if p, err = policyByArn(tx, account, arn); err != nil {
			return err
		}
		if p.AWS {
			return fmt.Errorf("%w: Cannot change an AWS managed policy (%s).", ErrInvalid, arn)
		}
		if err := fn(p); err != nil {
			return err
		}
		p.UpdatedAt = s.now().UTC()
		return tx.Put(policyKey(account, p.Name), p)
	})
	return p, err
}

// CreatePolicyVersion adds a version to a customer managed policy.
func (s *Service) CreatePolicyVersion(account, arn, document string, setDefault bool) (*PolicyVersion, error) {
	if _, err := parseManaged(document); err != nil {
		return nil, err
	}
	var v PolicyVersion
	_, err := s.customerPolicy(account, arn, func(p *Policy) error {
		if len(p.Versions) >= MaxPolicyVersions {
			return fmt.Errorf("%w: A managed policy can have up to %d versions. Before you create a new version, you must delete an existing version.", ErrLimit, MaxPolicyVersions)
		}
		v = PolicyVersion{ID: "v" + strconv.Itoa(p.NextVersion), Document: document, CreatedAt: s.now().UTC()}
		p.NextVersion++
		p.Versions = append(p.Versions, v)
		if setDefault {
			p.DefaultVersion = v.ID
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// PolicyVersion returns one version of a managed policy.
func (s *Service) PolicyVersion(account, arn, id string) (*Policy, *PolicyVersion, error) {
	p, err := s.GetPolicy(account, arn)
	if err != nil {
		return nil, nil, err
	}
	v, ok := p.Version(id)
	if !ok {
		return nil, nil, fmt.Errorf("%w: Policy %s version %s does not exist or is not attachable.", ErrNoSuchEntity, arn, id)
	}
	return p, v, nil
}

// DeletePolicyVersion deletes a version that is not the default.
func (s *Service) DeletePolicyVersion(account, arn, id string) error {
	_, err := s.customerPolicy(account, arn, func(p *Policy) error {
		if _, ok := p.Version(id); !ok {
			return fmt.Errorf("%w: Policy %s version %s does not exist or is not deletable.", ErrNoSuchEntity, arn, id)
		}
		if id == p.DefaultVersion {
			return fmt.Errorf("%w: Cannot delete the default version of a policy.", ErrDeleteConflict)
		}
		kept := p.Versions[:0]
		for _, v := range p.Versions {
			if v.ID != id {
				kept = append(kept, v)
			}
		}
		p.Versions = kept
		return nil
	})
	return err
}

// SetDefaultPolicyVersion makes a version the one in force.
func (s *Service) SetDefaultPolicyVersion(account, arn, id string) error {
	_, err := s.customerPolicy(account, arn, func(p *Policy) error {
		if _, ok := p.Version(id); !ok {
			return fmt.Errorf("%w: Policy %s version %s does not exist or is not attachable.", ErrNoSuchEntity, arn, id)
		}
		p.DefaultVersion = id
		return nil
	})
	return err
}

// Entity kinds that policies attach to.
const (
	KindUser  = "user"
	KindRole  = "role"
	KindGroup = "group"
)

// entityRecord is the store key and an empty record of a user, role or
// group of account.
func entityRecord(kind, account, name string) (string, interface{ attachments() *Attachments }, error) {
	switch kind {
	case KindUser:
		return userKey(account, name), &User{}, nil
	case KindRole:
		return roleKey(account, name), &Role{}, nil
	case KindGroup:
		return groupKey(account, name), &Group{}, nil
	}
	return "", nil, fmt.Errorf("%w: unknown entity kind %q", ErrInvalid, kind)
}

// getEntity reads a user, role or group of account.
func getEntity(tx *store.Tx, kind, account, name string) (string, interface{ attachments() *Attachments }, error) {
	key, rec, err := entityRecord(kind, account, name)
	if err != nil {
		return "", nil, err
	}
	if err := tx.Get(key, rec); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", nil, fmt.Errorf("%w: The %s with name %s cannot be found.", ErrNoSuchEntity, kind, name)
		}
		return "", nil, err
	}
	return key, rec, nil
}

// entity reads, changes and writes the attachments of a user, role or
// group of account.
func entity(tx *store.Tx, kind, account, name string, fn func(a *Attachments) error) error {
	key, rec, err := getEntity(tx, kind, account, name)
	if err != nil {
		return err
	}
	if err := fn(rec.attachments()); err != nil {
		return err
	}
	return tx.Put(key, rec)
}

func (u *User) attachments() *Attachments  { return &u.Attachments }
func (r *Role) attachments() *Attachments  { return &r.Attachments }
func (g *Group) attachments() *Attachments { return &g.Attachments }

// AttachPolicy attaches a managed policy to a user, role or group.
func (s *Service) AttachPolicy(kind, account, name, arn string) error {
	return s.update(func(tx *store.Tx) error {
		if _, err := policyByArn(tx, account, arn); err != nil {
			return err
		}
		return entity(tx, kind, account, name, func(a *Attachments) error {
			if contains(a.Policies, arn) {
				return nil
			}
			if len(a.Policies) >= MaxAttachedPolicies {
				return fmt.Errorf("%w: Cannot exceed quota for PoliciesPer%s: %d", ErrLimit, title(kind), MaxAttachedPolicies)
			}
			a.Policies = append(a.Policies, arn)
			return nil
		})
	})
}

func title(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

// DetachPolicy detaches a managed policy.
func (s *Service) DetachPolicy(kind, account, name, arn string) error {
	return s.update(func(tx *store.Tx) error {
		return entity(tx, kind, account, name, func(a *Attachments) error {
			if !contains(a.Policies, arn) {
				return fmt.Errorf("%w: Policy %s was not found.", ErrNoSuchEntity, arn)
			}
			kept := a.Policies[:0]
			for _, p := range a.Policies {
				if p != arn {
					kept = append(kept, p)
				}
			}
			a.Policies = kept
			return nil
		})
	})
}

// AttachedPolicies returns the managed policies attached to an entity.
func (s *Service) AttachedPolicies(kind, account, name string) ([]Policy, error) {
	var out []Policy
	err := s.Store.IdentityView(func(tx *store.Tx) error {
		var arns []string
		if err := entityView(tx, kind, account, name, func(a *Attachments) { arns = a.Policies }); err != nil {
			return err
		}
		for _, arn := range arns {
			if p, err := policyByArn(tx, account, arn); err == nil {
				out = append(out, *p)
			}
		}
		return nil
	})
	return out, err
}

// entityView reads the attachments of a user, role or group of account.
func entityView(tx *store.Tx, kind, account, name string, fn func(a *Attachments)) error {
	_, rec, err := getEntity(tx, kind, account, name)
	if err != nil {
		return err
	}
	fn(rec.attachments())
	return nil
}

// PutInlinePolicy creates or replaces an entity's inline policy.
func (s *Service) PutInlinePolicy(kind, account, name, policyName, document string) error {
	if !policyNameRE.MatchString(policyName) {
		return fmt.Errorf("%w: policy name %q must be 1-128 characters of letters, digits and +=,.@_-", ErrInvalid, policyName)
	}
	if document == "" {
		return fmt.Errorf("%w: PolicyDocument is required", ErrInvalid)
	}
	if _, err := policy.Parse(document); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformedPolicy, err)
	}
	limit := map[string]int{KindUser: maxInlineUserPolicies, KindRole: maxInlineRolePolicies, KindGroup: maxInlineGroupPolicies}[kind]
	return s.update(func(tx *store.Tx) error {
		return entity(tx, kind, account, name, func(a *Attachments) error {
			total := nonSpace(document)
			for n, d := range a.Inline {
				if n != policyName {
					total += nonSpace(d)
				}
			}
			if total > limit {
				return fmt.Errorf("%w: Maximum policy size of %d bytes exceeded for %s %s", ErrLimit, limit, kind, name)
			}
			if a.Inline == nil {
				a.Inline = map[string]string{}
			}
			a.Inline[policyName] = document
			return nil
		})
	})
}

// InlinePolicy returns an entity's inline policy document.
func (s *Service) InlinePolicy(kind, account, name, policyName string) (string, error) {
	var doc string
	var found bool
	err := s.Store.IdentityView(func(tx *store.Tx) error {
		return entityView(tx, kind, account, name, func(a *Attachments) { doc, found = a.Inline[policyName] })
	})
	if err == nil && !found {
		err = fmt.Errorf("%w: The %s policy with name %s cannot be found.", ErrNoSuchEntity, kind, policyName)
	}
	return doc, err
}

// InlinePolicies returns the names of an entity's inline policies.
func (s *Service) InlinePolicies(kind, account, name string) ([]string, error) {
	var names []string
	err := s.Store.IdentityView(func(tx *store.Tx) error {
		return entityView(tx, kind, account, name, func(a *Attachments) {
			for n := range a.Inline {
				names = append(names, n)
			}
		})
	})
	sort.Strings(names)
	return names, err
}

// DeleteInlinePolicy deletes an entity's inline policy.
func (s *Service) DeleteInlinePolicy(kind, account, name, policyName string) error {
	return s.update(func(tx *store.Tx) error {
		return entity(tx, kind, account, name, func(a *Attachments) error {
			if _, ok := a.Inline[policyName]; !ok {
				return fmt.Errorf("%w: The %s policy with name %s cannot be found.", ErrNoSuchEntity, kind, policyName)
			}
			delete(a.Inline, policyName)
			return nil
		})
	})
}

// CreateGroup creates a group.
func (s *Service) CreateGroup(account, name, path string) (*Group, error) {
	if !entityNameRE.MatchString(name) {
		return nil, fmt.Errorf("%w: group name %q must be 1-64 characters of letters, digits and +=,.@_-", ErrInvalid, name)
	}
	if err := checkPath(path); err != nil {
		return nil, err
	}
	g := &Group{Account: account, Name: name, ID: "AGPA" + randomID(17), Path: normPath(path), CreatedAt: s.now().UTC()}
	err := s.update(func(tx *store.Tx) error {
		if tx.Has(groupKey(account, name)) {
			return fmt.Errorf("%w: Group with name %s already exists.", ErrExists, name)
		}
		if err := quota(tx, "group/", account, s.Quotas.Groups, DefaultQuotas.Groups, "Groups"); err != nil {
			return err
		}
		return tx.Put(groupKey(account, name), g)
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// GetGroup returns a group and its users.
func (s *Service) GetGroup(account, name string) (*Group, []User, error) {
	var g Group
	var users []User
	err := s.Store.IdentityView(func(tx *store.Tx) error {
		if err := tx.Get(groupKey(account, name), &g); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("%w: The group with name %s cannot be found.", ErrNoSuchEntity, name)
			}
			return err
		}
		for _, n := range g.Users {
			var u User
			if tx.Get(userKey(account, n), &u) == nil {
				users = append(users, u)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return &g, users, nil
}

// ListGroups returns the groups of an account, or of one user of it.
func (s *Service) ListGroups(account, user string) ([]Group, error) {
	var out []Group
	err := s.Store.IdentityView(func(tx *store.Tx) (err error) {
		if user != "" && !tx.Has(userKey(account, user)) {
			return fmt.Errorf("%w: The user with name %s cannot be found.", ErrNoSuchEntity, user)
		}
		out, err = scanAll(tx, groupKey(account, ""), func(g Group) bool { return user == "" || contains(g.Users, user) })
		return err
	})
	return out, err
}

// DeleteGroup deletes a group with no users and no policies.
func (s *Service) DeleteGroup(account, name string) error {
	return s.update(func(tx *store.Tx) error {
		var g Group
		if err := tx.Get(groupKey(account, name), &g); err != nil {
			return fmt.Errorf("%w: The group with name %s cannot be found.", ErrNoSuchEntity, name)
		}
		if len(g.Users) > 0 {
			return fmt.Errorf("%w: Cannot delete entity, must remove users from group first.", ErrDeleteConflict)
		}
		if err := noPolicies(&g.Attachments); err != nil {
			return err
		}
		return tx.Delete(groupKey(account, name))
	})
}

func noPolicies(a *Attachments) error {
	if len(a.Policies) > 0 {
		return fmt.Errorf("%w: Cannot delete entity, must detach all policies first.", ErrDeleteConflict)
	}
	if len(a.Inline) > 0 {
		return fmt.Errorf("%w: Cannot delete entity, must delete policies first.", ErrDeleteConflict)
	}
	return nil
}

// AddUserToGroup adds a user to a group.
func (s *Service) AddUserToGroup(account, group, user string) error {
	return s.update(func(tx *store.Tx) error {
		var g Group
		if err := tx.Get(groupKey(account, group), &g); err != nil {
			return fmt.Errorf("%w: The group with name %s cannot be found.", ErrNoSuchEntity, group)
		}
		if !tx.Has(userKey(account, user)) {
			return fmt.Errorf("%w: The user with name %s cannot be found.", ErrNoSuchEntity, user)
		}
		if contains(g.Users, user) {
			return nil
		}
		groups, _ := scanAll(tx, groupKey(account, ""), func(g Group) bool { return contains(g.Users, user) })
		if len(groups) >= MaxGroupsPerUser {
			return fmt.Errorf("%w: Cannot exceed quota for GroupsPerUser: %d", ErrLimit, MaxGroupsPerUser)
		}
		g.Users = append(g.Users, user)
		return tx.Put(groupKey(account, group), &g)
	})
}

// RemoveUserFromGroup removes a user from a group.
func (s *Service) RemoveUserFromGroup(account, group, user string) error {
	return s.update(func(tx *store.Tx) error {
		var g Group
		if err := tx.Get(groupKey(account, group), &g); err != nil {
			return fmt.Errorf("%w: The group with name %s cannot be found.", ErrNoSuchEntity, group)
		}
		if !contains(g.Users, user) {
			return fmt.Errorf("%w: The user with name %s cannot be found.", ErrNoSuchEntity, user)
		}
		kept := g.Users[:0]
		for _, u := range g.Users {
			if u != user {
				kept = append(kept, u)
			}
		}
		g.Users = kept
		return tx.Put(groupKey(account, group), &g)
	})
}

// PoliciesOf returns the identity-based policies in force for a principal:
// a user's attached and inline policies and its groups', or an assumed
// role's. Each is named as simulate-principal-policy names its source.
func (s *Service) PoliciesOf(p *Principal) ([]policy.Named, error) {
	key := p.Account + "/user/" + p.User
	if p.Role != "" {
		key = p.Account + "/role/" + p.Role
	}
	gen := s.gen.Load() // read before the store: a write after it is seen next time
	if c, ok := s.policies.Load(key); ok && c.(cachedPolicies).gen == gen {
		return c.(cachedPolicies).set, nil
	}
	out, err := s.policiesOf(p)
	if err == nil {
		s.policies.Store(key, cachedPolicies{gen: gen, set: out})
	}
	return out, err
}

func (s *Service) policiesOf(p *Principal) ([]policy.Named, error) {
	var out []policy.Named
	err := s.Store.IdentityView(func(tx *store.Tx) error {
		add := func(kind, name string, a *Attachments) error {
			pols, err := s.attached(tx, p.Account, kind, name, a)
			out = append(out, pols...)
			return err
		}
		switch {
		case p.Role != "":
			var r Role
			if err := tx.Get(roleKey(p.Account, p.Role), &r); err != nil {
				return nil // a deleted role grants nothing
			}
			return add(KindRole, r.Name, &r.Attachments)
		case p.User != "":
			var u User
			if err := tx.Get(userKey(p.Account, p.User), &u); err != nil {
				return nil
			}
			if err := add(KindUser, u.Name, &u.Attachments); err != nil {
				return err
			}
			groups, err := scanAll(tx, groupKey(p.Account, ""), func(g Group) bool { return contains(g.Users, u.Name) })
			if err != nil {
				return err
			}
			for i := range groups {
				if err := add(KindGroup, groups[i].Name, &groups[i].Attachments); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return out, err
}

// attached returns the policies in force through one entity's attachments
// (managed, then inline by name); kind/name identify its inline ones.
func (s *Service) attached(tx *store.Tx, account, kind, name string, a *Attachments) ([]policy.Named, error) {
	var out []policy.Named
	for _, arn := range a.Policies {
		pol, err := policyByArn(tx, account, arn)
		if err != nil {
			continue // deleted since: no longer in force
		}
		doc, err := s.parsed(pol.Document())
		if err != nil {
			return nil, err
		}
		out = append(out, policy.Named{ID: arn, Doc: doc})
	}
	names := make([]string, 0, len(a.Inline))
	for n := range a.Inline {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		doc, err := s.parsed(a.Inline[n])
		if err != nil {
			return nil, err
		}
		out = append(out, policy.Named{ID: kind + "/" + name + "/" + n, Doc: doc})
	}
	return out, nil
}

// parsed parses a stored document once; documents are validated when
// stored, so an error here means a corrupt store.
func (s *Service) parsed(doc string) (*policy.Document, error) {
	if d, ok := s.docs.Load(doc); ok {
		return d.(*policy.Document), nil
	}
	d, err := policy.Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("stored policy document: %w", err)
	}
	if s.docsN.Add(1) > 4096 {
		s.docs.Clear()
		s.docsN.Store(0)
	}
	s.docs.Store(doc, d)
	return d, nil
}

// EncodeDocument is how IAM returns documents: URL-encoded.
func EncodeDocument(doc string) string { return url.QueryEscape(doc) }

// SimulationPolicies returns the policies simulate-principal-policy
// evaluates for a user (with its groups'), role or group ARN of account,
// and the principal they would apply to.
func (s *Service) SimulationPolicies(account, arn string) ([]policy.Named, *Principal, error) {
	missing := fmt.Errorf("%w: PolicySourceArn %s is not a user, role or group of this account.", ErrNoSuchEntity, arn)
	rest, ok := strings.CutPrefix(arn, "arn:aws:iam::"+account+":")
	if !ok {
		return nil, nil, missing
	}
	kind, path, _ := strings.Cut(rest, "/")
	name := path[strings.LastIndexByte(path, '/')+1:]
	switch kind {
	case KindUser:
		u, err := s.GetUser(account, name)
		if err != nil || u.Arn() != arn {
			return nil, nil, missing
		}
		p := &Principal{Account: account, Arn: u.Arn(), UserID: u.ID, User: u.Name, Root: u.Name == AdminUser}
		pols, err := s.PoliciesOf(p)
		return pols, p, err
	case KindRole:
		r, err := s.GetRole(account, name)
		if err != nil || r.Arn() != arn {
			return nil, nil, missing
		}
		p := &Principal{Account: account, Arn: r.Arn(), Role: r.Name, RoleArn: r.Arn()}
		pols, err := s.PoliciesOf(p)
		return pols, p, err
	case KindGroup:
		var out []policy.Named
		err := s.Store.IdentityView(func(tx *store.Tx) error {
			var g Group
			if err := tx.Get(groupKey(account, name), &g); err != nil || g.Arn() != arn {
				return missing
			}
			var err error
			out, err = s.attached(tx, account, KindGroup, g.Name, &g.Attachments)
			return err
		})
		return out, &Principal{Account: account, Arn: arn}, err
	}
	return nil, nil, missing
}
