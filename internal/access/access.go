// Package access turns IAM identities into Kubernetes ones, as EKS cluster
// access management does: access entries map a verified IAM principal
// (user, role, assumed-role session) to a Kubernetes username and groups,
// and access policies become RBAC bindings that skiff owns in the cluster.
// The aws-auth ConfigMap is honoured in the API_AND_CONFIG_MAP and
// CONFIG_MAP authentication modes.
//
// The package is pure logic plus a client-go RBAC sync; the IAM store and
// the token verifier are plugged in by the caller.
package access

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"skiff.dev/skiff/internal/model"
)

// Authentication modes, as EKS names them.
const (
	ModeAPI             = "API"
	ModeAPIAndConfigMap = "API_AND_CONFIG_MAP"
	ModeConfigMap       = "CONFIG_MAP"
)

// PolicyArnPrefix starts every access policy's ARN.
const PolicyArnPrefix = "arn:aws:eks::aws:cluster-access-policy/"

// Policy is an EKS access policy and the RBAC ClusterRole it grants.
type Policy struct {
	Name        string
	ClusterRole string
}

// Arn of the policy.
func (p Policy) Arn() string { return PolicyArnPrefix + p.Name }

// AdminViewRole is the ClusterRole skiff creates for AmazonEKSAdminViewPolicy
// (read everything, Secrets included); the others are Kubernetes' own.
const AdminViewRole = "skiff:admin-view"

// Policies are the access policies skiff implements, as ListAccessPolicies
// returns them.
var Policies = []Policy{
	{"AmazonEKSAdminPolicy", "admin"},
	{"AmazonEKSAdminViewPolicy", AdminViewRole},
	{"AmazonEKSClusterAdminPolicy", "cluster-admin"},
	{"AmazonEKSEditPolicy", "edit"},
	{"AmazonEKSViewPolicy", "view"},
}

// PolicyByArn finds a policy by ARN.
func PolicyByArn(arn string) (Policy, bool) {
	for _, p := range Policies {
		if p.Arn() == arn {
			return p, true
		}
	}
	return Policy{}, false
}

// Principal names an IAM user or role by ARN.
type Principal struct {
	Account string
	Kind    string // "user" or "role"
	Path    string // "/" or "/a/b/"
	Name    string
}

// Arn of the principal.
func (p Principal) Arn() string {
	return fmt.Sprintf("arn:aws:iam::%s:%s%s%s", p.Account, p.Kind, p.Path, p.Name)
}

var principalRE = regexp.MustCompile(`^arn:aws:iam::(\d{12}):(user|role)(/|/[\x21-\x7e]*/)([\w+=,.@-]{1,64})$`)

// ErrInvalid marks invalid input.
var ErrInvalid = errors.New("invalid parameter")

// ParsePrincipalArn parses an IAM user or role ARN, the only principals an
// access entry may name.
func ParsePrincipalArn(arn string) (Principal, error) {
	if strings.HasPrefix(arn, "arn:aws:sts::") {
		return Principal{}, fmt.Errorf("%w: principalArn %q is an assumed-role session; use the role's ARN (arn:aws:iam::ACCOUNT:role/NAME)", ErrInvalid, arn)
	}
	m := principalRE.FindStringSubmatch(arn)
	if m == nil {
		return Principal{}, fmt.Errorf("%w: principalArn %q must be an IAM user or role ARN, like arn:aws:iam::111122223333:user/NAME or arn:aws:iam::111122223333:role/NAME", ErrInvalid, arn)
	}
	return Principal{Account: m[1], Kind: m[2], Path: m[3], Name: m[4]}, nil
}

// Caller is who a verified token belongs to.
type Caller struct {
	Account     string
	Arn         string // the user's ARN, or arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION
	UserID      string // AIDA…, or AROA…:SESSION
	AccessKeyID string
	Kind        string // "user" or "role"
	Name        string // the user's or the role's name
	Session     string // the session name of an assumed role
}

// CanonicalArn is the caller's user or role ARN (paths dropped, as
// aws-iam-authenticator does).
func (c Caller) CanonicalArn() string {
	return Principal{Account: c.Account, Kind: c.Kind, Path: "/", Name: c.Name}.Arn()
}

func (c Caller) matches(p Principal) bool {
	return p.Account == c.Account && p.Kind == c.Kind && p.Name == c.Name
}

// User is a Kubernetes identity, as a TokenReview returns it.
type User struct {
	Username string
	UID      string
	Groups   []string
	Extra    map[string][]string
}

// EntryGroup is the group skiff adds for an access entry; the entry's
// policies are RBAC bindings to it, so an entry whose username is a
// template ({{SessionName}}) is authorized for every session.
func EntryGroup(principalArn string) string { return "skiff:access-entry:" + principalArn }

// DefaultUsername is the username EKS gives an access entry that names none.
func DefaultUsername(p Principal, typ string) string {
	switch {
	case typ == model.AccessEntryEC2Linux:
		return "system:node:{{EC2PrivateDNSName}}"
	case p.Kind == "role":
		return fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/{{SessionName}}", p.Account, p.Name)
	default:
		return p.Arn()
	}
}

// Reserved prefixes of usernames and groups in STANDARD entries.
var reservedPrefixes = []string{"system:", "eks:", "aws:", "amazon:", "iam:", "skiff:"}

// reserved reports whether a username or group has a reserved prefix.
func reserved(name string) bool {
	for _, pre := range reservedPrefixes {
		if strings.HasPrefix(name, pre) {
			return true
		}
	}
	return false
}

// ValidateNames checks a STANDARD entry's username and groups.
func ValidateNames(username string, groups []string) error {
	if len(username) > 255 {
		return fmt.Errorf("%w: username must be at most 255 characters", ErrInvalid)
	}
	for _, pre := range reservedPrefixes {
		if strings.HasPrefix(username, pre) {
			return fmt.Errorf("%w: username %q must not start with %q; that prefix is reserved", ErrInvalid, username, pre)
		}
	}
	for _, g := range groups {
		if g == "" || len(g) > 255 {
			return fmt.Errorf("%w: kubernetesGroups entries must be 1-255 characters", ErrInvalid)
		}
		for _, pre := range reservedPrefixes {
			if strings.HasPrefix(g, pre) {
				return fmt.Errorf("%w: kubernetes group %q must not start with %q; that prefix is reserved (use an access policy for admin rights)", ErrInvalid, g, pre)
			}
		}
	}
	return nil
}

var (
	nsRE       = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	nsPrefixRE = regexp.MustCompile(`^([a-z0-9][-a-z0-9]*)?\*$`)
)

// ValidateScope checks an access scope.
func ValidateScope(s model.AccessScope) error {
	switch s.Type {
	case "cluster":
		if len(s.Namespaces) > 0 {
			return fmt.Errorf("%w: an accessScope of type cluster takes no namespaces; use type namespace to name them", ErrInvalid)
		}
	case "namespace":
		if len(s.Namespaces) == 0 {
			return fmt.Errorf("%w: an accessScope of type namespace needs at least one namespace", ErrInvalid)
		}
		for _, ns := range s.Namespaces {
			if len(ns) > 63 || !nsRE.MatchString(ns) && !nsPrefixRE.MatchString(ns) {
				return fmt.Errorf("%w: namespace %q is not a valid namespace name (a trailing '*' matches by prefix)", ErrInvalid, ns)
			}
		}
	default:
		return fmt.Errorf("%w: accessScope type %q must be cluster or namespace", ErrInvalid, s.Type)
	}
	return nil
}

// Resolve maps a verified caller to a Kubernetes user of cluster c through
// the cluster's access entries and, by its authentication mode, the
// aws-auth ConfigMap (awsAuth may be nil). ok is false when nothing maps the
// caller: the token is then not accepted for this cluster.
func Resolve(c *model.Cluster, caller Caller, awsAuth *AWSAuth) (u *User, ok bool) {
	mode := c.AuthenticationMode
	if mode == "" {
		mode = ModeAPIAndConfigMap
	}
	if mode != ModeConfigMap {
		for _, e := range c.AccessEntries {
			p, err := ParsePrincipalArn(e.PrincipalArn)
			if err != nil || !caller.matches(p) {
				continue
			}
			groups := slices.Clone(e.KubernetesGroups)
			switch e.Type {
			case model.AccessEntryEC2Linux:
				groups = append(groups, "system:nodes", "system:bootstrappers")
			default:
				if len(e.Policies) > 0 {
					groups = append(groups, EntryGroup(e.PrincipalArn))
				}
			}
			name, ok := expand(e.Username, caller, c)
			if !ok {
				return nil, false
			}
			// A template is checked when the entry is made, but what it
			// expands to depends on the caller (its session name): a
			// STANDARD entry never yields a reserved name.
			if e.Type != model.AccessEntryEC2Linux && reserved(name) {
				return nil, false
			}
			return caller.user(name, groups), true
		}
	}
	if mode != ModeAPI && awsAuth != nil {
		if m, found := awsAuth.find(caller); found {
			name := m.Username
			if name == "" {
				name = caller.Arn
			}
			name, ok := expand(name, caller, c)
			if !ok {
				return nil, false
			}
			return caller.user(name, slices.Clone(m.Groups)), true
		}
	}
	// Without access entries (CONFIG_MAP), EKS gives the creator
	// system:masters invisibly.
	if mode == ModeConfigMap && c.BootstrapAdmin && c.CreatorArn != "" && creatorMatches(c.CreatorArn, caller) {
		return caller.user(caller.Arn, []string{"system:masters"}), true
	}
	return nil, false
}

func creatorMatches(creatorArn string, caller Caller) bool {
	if creatorArn == caller.Arn {
		return true
	}
	p, err := CreatorPrincipal(creatorArn)
	return err == nil && caller.matches(p)
}

// CreatorPrincipal is the principal an access entry for a cluster's
// creator names: the user, or the role of an assumed-role session.
func CreatorPrincipal(creatorArn string) (Principal, error) {
	if rest, ok := strings.CutPrefix(creatorArn, "arn:aws:sts::"); ok {
		// ACCOUNT:assumed-role/ROLE/SESSION
		acct, res, _ := strings.Cut(rest, ":")
		parts := strings.Split(res, "/")
		if len(parts) == 3 && parts[0] == "assumed-role" {
			return Principal{Account: acct, Kind: "role", Path: "/", Name: parts[1]}, nil
		}
		return Principal{}, fmt.Errorf("%w: creator %q is not an assumed-role session", ErrInvalid, creatorArn)
	}
	return ParsePrincipalArn(creatorArn)
}

func (c Caller) user(name string, groups []string) *User {
	extra := map[string][]string{
		"arn":          {c.Arn},
		"canonicalArn": {c.CanonicalArn()},
		"accessKeyId":  {c.AccessKeyID},
		"principalId":  {c.UserID},
	}
	if c.Session != "" {
		extra["sessionName"] = []string{c.Session}
	}
	return &User{Username: name, UID: "aws-iam-authenticator:" + c.Account + ":" + c.UserID, Groups: groups, Extra: extra}
}

// expand fills a username template as aws-iam-authenticator does. ok is
// false when the template names an instance ({{EC2PrivateDNSName}}) and
// the caller is none of cluster cl's.
func expand(tmpl string, c Caller, cl *model.Cluster) (name string, ok bool) {
	if !strings.Contains(tmpl, "{{") {
		return tmpl, true
	}
	dns := ""
	if strings.Contains(tmpl, "{{EC2PrivateDNSName}}") {
		if dns, ok = instanceName(cl, c); !ok {
			return "", false
		}
	}
	return strings.NewReplacer(
		"{{AccountID}}", c.Account,
		"{{AccessKeyID}}", c.AccessKeyID,
		"{{SessionNameRaw}}", c.Session,
		"{{SessionName}}", strings.ReplaceAll(c.Session, "@", "-"),
		"{{EC2PrivateDNSName}}", dns,
	).Replace(tmpl), true
}

// instanceName is the private DNS name (the Kubernetes node name) of the
// instance whose credentials the caller used, from skiff's record of the
// cluster's nodes, never from the caller: as on EKS, where the session
// name of instance credentials is the instance ID and aws-iam-authenticator
// asks EC2 for its PrivateDnsName. The caller must be a session of the
// instance's node role named after the instance, signed with the very key
// skiff minted for it: the role assumed again under another instance's ID
// is nobody.
func instanceName(cl *model.Cluster, c Caller) (string, bool) {
	if cl == nil || c.Kind != "role" || c.AccessKeyID == "" {
		return "", false
	}
	for i := range cl.Nodegroups {
		g := &cl.Nodegroups[i]
		if role, err := ParsePrincipalArn(g.NodeRole); err != nil || !c.matches(role) {
			continue
		}
		if n := g.Node(c.Session); n != nil && n.AccessKeyID == c.AccessKeyID && n.Name != "" {
			return n.Name, true
		}
	}
	return "", false
}
