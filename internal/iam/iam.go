// Package iam is skiff's identity store: accounts, IAM users with access
// keys, roles, and the temporary sessions of assumed roles. It resolves an
// access key to its secret (for SigV4 verification) and to a principal.
// API front ends (the IAM and STS query APIs, `skiff env`) call it.
package iam

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"skiff.dev/skiff/internal/iam/policy"
	"skiff.dev/skiff/internal/sigv4"
	"skiff.dev/skiff/internal/store"
)

// Error kinds; the API front ends map them to IAM/STS error codes.
var (
	ErrNoSuchEntity   = errors.New("no such entity")
	ErrExists         = errors.New("entity already exists")
	ErrInvalid        = errors.New("invalid input")
	ErrDeleteConflict = errors.New("delete conflict")
	ErrAccessDenied   = errors.New("access denied")
)

// AdminUser is the user `skiff env` hands out for an account.
const AdminUser = "admin"

// Account is a tenant: nothing crosses from one to another.
type Account struct {
	ID        string    `json:"id"` // 12 digits
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
}

// User is an IAM user.
type User struct {
	Account   string    `json:"account"`
	Name      string    `json:"name"`
	ID        string    `json:"id"` // AIDA…
	Path      string    `json:"path"`
	CreatedAt time.Time `json:"createdAt"`
	Attachments
}

// Arn of the user.
func (u *User) Arn() string {
	return fmt.Sprintf("arn:aws:iam::%s:user%s%s", u.Account, u.Path, u.Name)
}

// AccessKey is a user's long-term credential.
type AccessKey struct {
	ID        string    `json:"id"` // AKIA…
	Secret    string    `json:"secret"`
	Account   string    `json:"account"`
	User      string    `json:"user"`
	Status    string    `json:"status"` // Active | Inactive
	CreatedAt time.Time `json:"createdAt"`
}

// Role is an IAM role.
type Role struct {
	Account            string    `json:"account"`
	Name               string    `json:"name"`
	ID                 string    `json:"id"` // AROA…
	Path               string    `json:"path"`
	AssumeRolePolicy   string    `json:"assumeRolePolicy"`
	Description        string    `json:"description,omitempty"`
	MaxSessionDuration int       `json:"maxSessionDuration"`
	CreatedAt          time.Time `json:"createdAt"`
	Attachments
}

// Arn of the role.
func (r *Role) Arn() string {
	return fmt.Sprintf("arn:aws:iam::%s:role%s%s", r.Account, r.Path, r.Name)
}

// Session is an assumed role's temporary credential.
type Session struct {
	AccessKeyID string    `json:"accessKeyId"` // ASIA…
	Secret      string    `json:"secret"`
	Token       string    `json:"token"`
	Account     string    `json:"account"`
	Role        string    `json:"role"`
	RoleID      string    `json:"roleId"`
	Name        string    `json:"name"`
	Expiration  time.Time `json:"expiration"`
	// SourceIdentity is the principal that assumed the role (its ARN).
	Source string `json:"source,omitempty"`
}

// Principal is who signed a request.
type Principal struct {
	Account string
	Arn     string // user ARN, or arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION
	UserID  string // AIDA…, or AROA…:SESSION
	User    string // the user's name, for users
	Role    string // the role's name, for assumed roles
	RoleArn string // the role's ARN, for assumed roles
	// AccessKeyID is the key the principal signed with.
	AccessKeyID string
	// Root is the account's own principal, the admin user `skiff env`
	// prints: like an AWS account's root user, no policy limits it.
	Root bool
	// Service is set (and Arn empty) when skiff acts as an AWS service
	// (ec2.amazonaws.com minting a node's credentials).
	Service string
}

// Service is the identity store.
type Service struct {
	Store  *store.Store
	Now    func() time.Time // default time.Now
	Quotas Quotas           // zero fields: DefaultQuotas
	docs   sync.Map         // policy text → *policy.Document
	docsN  atomic.Int64
	// gen counts identity writes: a principal's cached policy set is good
	// while gen has not moved.
	gen      atomic.Uint64
	policies sync.Map // account/kind/name → cachedPolicies
	creds    sync.Map // accounts → cachedCredentials
}

type cachedCredentials struct {
	gen   uint64
	creds map[string]Credential
}

type cachedPolicies struct {
	gen uint64
	set []policy.Named
}

// update is the store's identity write transaction; it invalidates every
// cached policy set.
func (s *Service) update(fn func(tx *store.Tx) error) error {
	err := s.Store.Identity(fn)
	s.gen.Add(1)
	return err
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// EnsureAccount returns the account called name, creating it (with its
// admin user and access key) on first use, and the admin's access key.
func (s *Service) EnsureAccount(name string) (*Account, *AccessKey, error) {
	if !accountNameRE.MatchString(name) {
		return nil, nil, fmt.Errorf("%w: account name %q must be 1-63 lowercase letters, digits or '-'", ErrInvalid, name)
	}
	var acct Account
	var key AccessKey
	err := s.update(func(tx *store.Tx) error {
		var id string
		if err := tx.Get("accountname/"+name, &id); err == nil {
			if err := tx.Get("account/"+id, &acct); err != nil {
				return err
			}
		} else {
			acct = Account{ID: accountID(), Name: name, CreatedAt: s.now().UTC()}
			for tx.Has("account/" + acct.ID) {
				acct.ID = accountID()
			}
			if err := tx.Put("account/"+acct.ID, acct); err != nil {
				return err
			}
			if err := tx.Put("accountname/"+name, acct.ID); err != nil {
				return err
			}
			if _, err := createUser(tx, acct.ID, AdminUser, "/", s.now()); err != nil {
				return err
			}
		}
		// The admin's first active key, or a new one.
		var found bool
		tx.Scan("key/", func(_ string, data []byte) error {
			var k AccessKey
			if json.Unmarshal(data, &k) == nil && !found && k.Account == acct.ID && k.User == AdminUser && k.Status == "Active" {
				key, found = k, true
			}
			return nil
		})
		if !found {
			k, err := createAccessKey(tx, acct.ID, AdminUser, s.now())
			if err != nil {
				return err
			}
			key = *k
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return &acct, &key, nil
}

var (
	accountNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	entityNameRE  = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
)

// Lookup implements sigv4.Lookup: long-term keys and live sessions.
func (s *Service) Lookup(_ context.Context, accessKeyID string) (sigv4.Secret, error) {
	_, secret, err := s.resolve(accessKeyID)
	return secret, err
}

// Principal returns who owns an access key (after Verify succeeded).
func (s *Service) Principal(accessKeyID string) (*Principal, error) {
	p, _, err := s.resolve(accessKeyID)
	return p, err
}

func (s *Service) resolve(accessKeyID string) (*Principal, sigv4.Secret, error) {
	var p *Principal
	var secret sigv4.Secret
	err := s.Store.IdentityView(func(tx *store.Tx) error {
		var err error
		p, secret, _, err = s.resolveTx(tx, accessKeyID)
		return err
	})
	return p, secret, err
}

// resolveTx finds the principal and secret of a usable key: an active key
// of an existing user, or a live session of an existing role. A session's
// expiry is returned too (zero for long-term keys).
func (s *Service) resolveTx(tx *store.Tx, accessKeyID string) (*Principal, sigv4.Secret, time.Time, error) {
	var k AccessKey
	if err := tx.Get("key/"+accessKeyID, &k); err == nil {
		if k.Status != "Active" {
			return nil, sigv4.Secret{}, time.Time{}, sigv4.ErrUnknownKey
		}
		var u User
		if err := tx.Get(userKey(k.Account, k.User), &u); err != nil {
			return nil, sigv4.Secret{}, time.Time{}, sigv4.ErrUnknownKey
		}
		p := &Principal{Account: k.Account, Arn: u.Arn(), UserID: u.ID, User: u.Name, Root: u.Name == AdminUser, AccessKeyID: accessKeyID}
		return p, sigv4.Secret{SecretAccessKey: k.Secret}, time.Time{}, nil
	}
	var sess Session
	if err := tx.Get("session/"+accessKeyID, &sess); err == nil && s.now().Before(sess.Expiration) {
		// A session ends with its role (a role re-created under the
		// same name is another role).
		var r Role
		if err := tx.Get(roleKey(sess.Account, sess.Role), &r); err != nil || r.ID != sess.RoleID {
			return nil, sigv4.Secret{}, time.Time{}, sigv4.ErrUnknownKey
		}
		p := &Principal{Account: sess.Account, Role: sess.Role, RoleArn: r.Arn(), AccessKeyID: accessKeyID,
			Arn:    fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", sess.Account, sess.Role, sess.Name),
			UserID: sess.RoleID + ":" + sess.Name}
		return p, sigv4.Secret{SecretAccessKey: sess.Secret, SessionToken: sess.Token}, sess.Expiration, nil
	}
	return nil, sigv4.Secret{}, time.Time{}, sigv4.ErrUnknownKey
}

// Credential is a usable key with its principal.
type Credential struct {
	Principal  Principal
	Secret     sigv4.Secret
	Expiration time.Time // of a session; zero for a long-term key
}

// Credentials returns every usable key of the accounts (long-term keys of
// existing users, live sessions of existing roles), by key ID: what a
// cluster's authenticator verifies tokens with while skiff is away.
//
// The result is cached until the next identity write (every cluster's
// reconciler asks at every pass); callers must not modify it. A session
// that expires meanwhile stays in it: its Expiration says so.
func (s *Service) Credentials(accounts ...string) (map[string]Credential, error) {
	key := strings.Join(accounts, ",")
	gen := s.gen.Load() // read before the store: a write after it is seen next time
	if c, ok := s.creds.Load(key); ok && c.(cachedCredentials).gen == gen {
		return c.(cachedCredentials).creds, nil
	}
	out := map[string]Credential{}
	err := s.Store.IdentityView(func(tx *store.Tx) error {
		var ids []string
		for _, prefix := range []string{"key/", "session/"} {
			err := tx.Scan(prefix, func(key string, data []byte) error {
				var rec struct{ Account string }
				if json.Unmarshal(data, &rec) == nil && slices.Contains(accounts, rec.Account) {
					ids = append(ids, strings.TrimPrefix(key, prefix))
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		for _, id := range ids {
			if p, secret, exp, err := s.resolveTx(tx, id); err == nil {
				out[id] = Credential{Principal: *p, Secret: secret, Expiration: exp}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.creds.Store(key, cachedCredentials{gen: gen, creds: out})
	return out, nil
}

func userKey(account, name string) string { return "user/" + account + "/" + name }
func roleKey(account, name string) string { return "role/" + account + "/" + name }

func createUser(tx *store.Tx, account, name, path string, now time.Time) (*User, error) {
	if !entityNameRE.MatchString(name) {
		return nil, fmt.Errorf("%w: user name %q must be 1-64 characters of letters, digits and +=,.@_-", ErrInvalid, name)
	}
	if tx.Has(userKey(account, name)) {
		return nil, fmt.Errorf("%w: User with name %s already exists.", ErrExists, name)
	}
	u := &User{Account: account, Name: name, ID: "AIDA" + randomID(17), Path: normPath(path), CreatedAt: now.UTC()}
	return u, tx.Put(userKey(account, name), u)
}

func createAccessKey(tx *store.Tx, account, user string, now time.Time) (*AccessKey, error) {
	k := &AccessKey{ID: "AKIA" + randomID(16), Secret: randomSecret(), Account: account, User: user,
		Status: "Active", CreatedAt: now.UTC()}
	return k, tx.Put("key/"+k.ID, k)
}

func normPath(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

// Quotas are an account's IAM quotas (AWS's names: UsersPerAccount, …).
type Quotas struct {
	Users, Roles, Groups, Policies int
}

// DefaultQuotas are AWS's default IAM quotas of an account.
var DefaultQuotas = Quotas{Users: 5000, Roles: 1000, Groups: 300, Policies: 1500}

// quota refuses one more entity under prefix ("user/", …) of account
// when the account has max already.
func quota(tx *store.Tx, prefix, account string, max, def int, name string) error {
	if max == 0 {
		max = def
	}
	n := 0
	tx.Scan(prefix+account+"/", func(string, []byte) error { n++; return nil })
	if n >= max {
		return fmt.Errorf("%w: Cannot exceed quota for %sPerAccount: %d", ErrLimit, name, max)
	}
	return nil
}

// CreateUser creates a user in account.
func (s *Service) CreateUser(account, name, path string) (*User, error) {
	var u *User
	err := s.update(func(tx *store.Tx) (err error) {
		if !tx.Has(userKey(account, name)) {
			if err := quota(tx, "user/", account, s.Quotas.Users, DefaultQuotas.Users, "Users"); err != nil {
				return err
			}
		}
		u, err = createUser(tx, account, name, path, s.now())
		return err
	})
	return u, err
}

// GetUser returns a user.
func (s *Service) GetUser(account, name string) (*User, error) {
	var u User
	err := s.Store.IdentityView(func(tx *store.Tx) error { return tx.Get(userKey(account, name), &u) })
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: The user with name %s cannot be found.", ErrNoSuchEntity, name)
	}
	return &u, err
}

// ListUsers returns the users of an account, by name.
func (s *Service) ListUsers(account string) ([]User, error) {
	var out []User
	err := s.Store.IdentityView(func(tx *store.Tx) (err error) {
		out, err = scanAll[User](tx, userKey(account, ""), nil)
		return err
	})
	return out, err
}

// DeleteUser deletes a user that has no access keys (as IAM requires).
func (s *Service) DeleteUser(account, name string) error {
	return s.update(func(tx *store.Tx) error {
		if !tx.Has(userKey(account, name)) {
			return fmt.Errorf("%w: The user with name %s cannot be found.", ErrNoSuchEntity, name)
		}
		if name == AdminUser {
			return fmt.Errorf("%w: Cannot delete the account's admin user: it is the account's root principal.", ErrDeleteConflict)
		}
		var u User
		if err := tx.Get(userKey(account, name), &u); err != nil {
			return err
		}
		if keys, _ := listKeys(tx, account, name); len(keys) > 0 {
			return fmt.Errorf("%w: Cannot delete entity, must delete access keys first.", ErrDeleteConflict)
		}
		if err := noPolicies(&u.Attachments); err != nil {
			return err
		}
		if groups, _ := scanAll(tx, groupKey(account, ""), func(g Group) bool { return contains(g.Users, name) }); len(groups) > 0 {
			return fmt.Errorf("%w: Cannot delete entity, must remove users from group first.", ErrDeleteConflict)
		}
		return tx.Delete(userKey(account, name))
	})
}

// CreateAccessKey creates a key for a user of account.
func (s *Service) CreateAccessKey(account, user string) (*AccessKey, error) {
	var k *AccessKey
	err := s.update(func(tx *store.Tx) (err error) {
		if !tx.Has(userKey(account, user)) {
			return fmt.Errorf("%w: The user with name %s cannot be found.", ErrNoSuchEntity, user)
		}
		if keys, _ := listKeys(tx, account, user); len(keys) >= 2 {
			return fmt.Errorf("%w: Cannot exceed quota for AccessKeysPerUser: 2", ErrLimit)
		}
		k, err = createAccessKey(tx, account, user, s.now())
		return err
	})
	return k, err
}

// ErrLimit is a quota error.
var ErrLimit = errors.New("limit exceeded")

func listKeys(tx *store.Tx, account, user string) ([]AccessKey, error) {
	return scanAll(tx, "key/", func(k AccessKey) bool { return k.Account == account && k.User == user })
}

// scanAll decodes every record under prefix that keep (if set) accepts.
func scanAll[T any](tx *store.Tx, prefix string, keep func(T) bool) ([]T, error) {
	var out []T
	err := tx.Scan(prefix, func(_ string, data []byte) error {
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return err
		}
		if keep == nil || keep(v) {
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

// ListAccessKeys returns a user's keys (secrets included; callers omit them).
func (s *Service) ListAccessKeys(account, user string) ([]AccessKey, error) {
	var out []AccessKey
	err := s.Store.IdentityView(func(tx *store.Tx) (err error) {
		if !tx.Has(userKey(account, user)) {
			return fmt.Errorf("%w: The user with name %s cannot be found.", ErrNoSuchEntity, user)
		}
		out, err = listKeys(tx, account, user)
		return err
	})
	return out, err
}

// DeleteAccessKey deletes a key of a user of account.
func (s *Service) DeleteAccessKey(account, user, id string) error {
	return s.update(func(tx *store.Tx) error {
		var k AccessKey
		if err := tx.Get("key/"+id, &k); err != nil || k.Account != account || k.User != user {
			return fmt.Errorf("%w: The Access Key with id %s cannot be found.", ErrNoSuchEntity, id)
		}
		return tx.Delete("key/" + id)
	})
}

// CreateRole creates a role in account.
func (s *Service) CreateRole(account, name, path, policy, description string, maxSession int) (*Role, error) {
	if !entityNameRE.MatchString(name) {
		return nil, fmt.Errorf("%w: role name %q must be 1-64 characters of letters, digits and +=,.@_-", ErrInvalid, name)
	}
	if policy == "" {
		return nil, fmt.Errorf("%w: AssumeRolePolicyDocument is required", ErrInvalid)
	}
	if _, err := trustPolicy(policy); err != nil {
		return nil, err
	}
	if err := checkPath(path); err != nil {
		return nil, err
	}
	if maxSession == 0 {
		maxSession = 3600
	}
	if maxSession < 3600 || maxSession > 43200 {
		return nil, fmt.Errorf("%w: MaxSessionDuration must be between 3600 and 43200 seconds", ErrInvalid)
	}
	r := &Role{Account: account, Name: name, ID: "AROA" + randomID(17), Path: normPath(path), AssumeRolePolicy: policy,
		Description: description, MaxSessionDuration: maxSession, CreatedAt: s.now().UTC()}
	err := s.update(func(tx *store.Tx) error {
		if tx.Has(roleKey(account, name)) {
			return fmt.Errorf("%w: Role with name %s already exists.", ErrExists, name)
		}
		if err := quota(tx, "role/", account, s.Quotas.Roles, DefaultQuotas.Roles, "Roles"); err != nil {
			return err
		}
		return tx.Put(roleKey(account, name), r)
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// GetRole returns a role.
func (s *Service) GetRole(account, name string) (*Role, error) {
	var r Role
	err := s.Store.IdentityView(func(tx *store.Tx) error { return tx.Get(roleKey(account, name), &r) })
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: The role with name %s cannot be found.", ErrNoSuchEntity, name)
	}
	return &r, err
}

// RoleByArn returns the role an ARN names, if it is in account.
func (s *Service) RoleByArn(account, arn string) (*Role, error) {
	prefix := "arn:aws:iam::" + account + ":role/"
	rest, ok := strings.CutPrefix(arn, prefix)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not a role ARN of account %s", ErrNoSuchEntity, arn, account)
	}
	name := rest[strings.LastIndexByte(rest, '/')+1:]
	r, err := s.GetRole(account, name)
	if err != nil {
		return nil, err
	}
	if r.Arn() != arn {
		return nil, fmt.Errorf("%w: role %s has ARN %s", ErrNoSuchEntity, name, r.Arn())
	}
	return r, nil
}

// ListRoles returns the roles of an account, by name.
func (s *Service) ListRoles(account string) ([]Role, error) {
	var out []Role
	err := s.Store.IdentityView(func(tx *store.Tx) (err error) {
		out, err = scanAll[Role](tx, roleKey(account, ""), nil)
		return err
	})
	return out, err
}

// DeleteRole deletes a role.
func (s *Service) DeleteRole(account, name string) error {
	return s.update(func(tx *store.Tx) error {
		var r Role
		if err := tx.Get(roleKey(account, name), &r); err != nil {
			return fmt.Errorf("%w: The role with name %s cannot be found.", ErrNoSuchEntity, name)
		}
		if err := noPolicies(&r.Attachments); err != nil {
			return err
		}
		return tx.Delete(roleKey(account, name))
	})
}

func accountID() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(9e11))
	return fmt.Sprintf("%012d", n.Int64()+1e11)
}

func randomID(n int) string {
	b := make([]byte, 16)
	rand.Read(b)
	return base32.StdEncoding.EncodeToString(b)[:n]
}

func randomSecret() string {
	b := make([]byte, 30)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)[:40]
}

func randomToken() string {
	b := make([]byte, 96)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
