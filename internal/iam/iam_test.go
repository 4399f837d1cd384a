package iam

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"skiff.dev/skiff/internal/iam/policy"
	"skiff.dev/skiff/internal/sigv4"
	"skiff.dev/skiff/internal/store"
)

func newService(t *testing.T) *Service {
	st, err := store.Open(filepath.Join(t.TempDir(), "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &Service{Store: st}
}

func TestAccounts(t *testing.T) {
	s := newService(t)
	a, key, err := s.EnsureAccount("team-a")
	if err != nil {
		t.Fatal(err)
	}
	a2, key2, _ := s.EnsureAccount("team-a")
	if a2.ID != a.ID || key2.ID != key.ID {
		t.Fatal("EnsureAccount is not idempotent")
	}
	b, keyB, _ := s.EnsureAccount("team-b")
	if b.ID == a.ID || len(a.ID) != 12 {
		t.Fatalf("account IDs %s, %s", a.ID, b.ID)
	}
	if _, _, err := s.EnsureAccount("Bad Name"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	p, err := s.Principal(keyB.ID)
	if err != nil || p.Account != b.ID || p.Arn != "arn:aws:iam::"+b.ID+":user/admin" {
		t.Fatalf("principal %+v, %v", p, err)
	}
	if sec, err := s.Lookup(context.Background(), key.ID); err != nil || sec.SecretAccessKey != key.Secret {
		t.Fatalf("lookup: %v", err)
	}
	if _, err := s.Lookup(context.Background(), "AKIANOPE"); !errors.Is(err, sigv4.ErrUnknownKey) {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestUsersKeysRoles(t *testing.T) {
	s := newService(t)
	a, _, _ := s.EnsureAccount("a")
	b, _, _ := s.EnsureAccount("b")
	if _, err := s.CreateUser(a.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(a.ID, "alice", ""); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate user: %v", err)
	}
	if _, err := s.GetUser(b.ID, "alice"); !errors.Is(err, ErrNoSuchEntity) {
		t.Fatalf("other account sees the user: %v", err)
	}
	k, err := s.CreateAccessKey(a.ID, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(a.ID, "alice"); !errors.Is(err, ErrDeleteConflict) {
		t.Fatalf("delete user with keys: %v", err)
	}
	if err := s.DeleteAccessKey(b.ID, "alice", k.ID); !errors.Is(err, ErrNoSuchEntity) {
		t.Fatalf("other account deleted a key: %v", err)
	}
	if err := s.DeleteAccessKey(a.ID, "alice", k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(context.Background(), k.ID); !errors.Is(err, sigv4.ErrUnknownKey) {
		t.Fatal("deleted key still verifies")
	}
	if err := s.DeleteUser(a.ID, "alice"); err != nil {
		t.Fatal(err)
	}

	role, err := s.CreateRole(a.ID, "eks-cluster", "", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::`+a.ID+`:root"},"Action":"sts:AssumeRole"}]}`, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRole(a.ID, "bad", "", `not json`, "", 0); !errors.Is(err, ErrMalformedPolicy) {
		t.Fatalf("bad policy: %v", err)
	}
	if got, err := s.RoleByArn(a.ID, role.Arn()); err != nil || got.Name != "eks-cluster" {
		t.Fatalf("RoleByArn: %v", err)
	}
	if _, err := s.RoleByArn(b.ID, role.Arn()); !errors.Is(err, ErrNoSuchEntity) {
		t.Fatalf("other account resolves the role: %v", err)
	}

	// AssumeRole: temporary credentials that verify, carry the role, expire.
	now := time.Now()
	s.Now = func() time.Time { return now }
	adminKey, _ := s.Principal(mustKey(t, s, "a"))
	sess, _, err := s.AssumeRole(adminKey, AssumeRequest{RoleArn: role.Arn(), SessionName: "ci-run", Duration: 900, Identity: policy.Allow})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Principal(sess.AccessKeyID)
	if err != nil || p.Arn != "arn:aws:sts::"+a.ID+":assumed-role/eks-cluster/ci-run" || p.Role != "eks-cluster" {
		t.Fatalf("session principal %+v, %v", p, err)
	}
	if sec, _ := s.Lookup(context.Background(), sess.AccessKeyID); sec.SessionToken != sess.Token {
		t.Fatal("session secret lacks its token")
	}
	bAdmin, _ := s.Principal(mustKey(t, s, "b"))
	if _, _, err := s.AssumeRole(bAdmin, AssumeRequest{RoleArn: role.Arn(), SessionName: "x-acct", Duration: 900, Identity: policy.Allow}); !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("cross-account assume: %v", err)
	}
	s.Now = func() time.Time { return now.Add(901 * time.Second) }
	if _, err := s.Lookup(context.Background(), sess.AccessKeyID); !errors.Is(err, sigv4.ErrUnknownKey) {
		t.Fatal("expired session still verifies")
	}
}

func mustKey(t *testing.T, s *Service, account string) string {
	_, k, err := s.EnsureAccount(account)
	if err != nil {
		t.Fatal(err)
	}
	return k.ID
}

// TestQuotas: an account's users, roles, groups and customer managed
// policies stop at its quotas (LimitExceeded), counted per account.
func TestQuotas(t *testing.T) {
	s := newService(t)
	s.Quotas = Quotas{Users: 2, Roles: 1, Groups: 1, Policies: 1}
	a, _, _ := s.EnsureAccount("a") // its admin is the first user
	b, _, _ := s.EnsureAccount("b")
	const trust = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"eks.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	for _, acct := range []string{a.ID, b.ID} {
		if _, err := s.CreateUser(acct, "bob", ""); err != nil {
			t.Fatalf("user 2 of 2: %v", err)
		}
		if _, err := s.CreateRole(acct, "r1", "", trust, "", 3600); err != nil {
			t.Fatalf("role 1 of 1: %v", err)
		}
		if _, err := s.CreateGroup(acct, "g1", ""); err != nil {
			t.Fatalf("group 1 of 1: %v", err)
		}
		if _, err := s.CreatePolicy(acct, "p1", "", allowDescribe, ""); err != nil {
			t.Fatalf("policy 1 of 1: %v", err)
		}
	}
	if _, err := s.CreateUser(a.ID, "carol", ""); !errors.Is(err, ErrLimit) || err.Error() != "limit exceeded: Cannot exceed quota for UsersPerAccount: 2" {
		t.Errorf("user 3: %v", err)
	}
	if _, err := s.CreateUser(a.ID, "bob", ""); !errors.Is(err, ErrExists) {
		t.Errorf("an existing user at the quota: %v, want EntityAlreadyExists", err)
	}
	if _, err := s.CreateRole(a.ID, "r2", "", trust, "", 3600); !errors.Is(err, ErrLimit) {
		t.Errorf("role 2: %v", err)
	}
	if _, err := s.CreateGroup(a.ID, "g2", ""); !errors.Is(err, ErrLimit) {
		t.Errorf("group 2: %v", err)
	}
	if _, err := s.CreatePolicy(a.ID, "p2", "", allowDescribe, ""); !errors.Is(err, ErrLimit) {
		t.Errorf("policy 2: %v", err)
	}
	if err := s.DeleteUser(a.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(a.ID, "carol", ""); err != nil {
		t.Errorf("a user after deleting one: %v", err)
	}
}

// TestCredentials: the usable keys of the accounts asked for, with their
// principals; a deleted key is gone at the next call (the cache follows
// every identity write).
func TestCredentials(t *testing.T) {
	s := newService(t)
	a, adminKey, _ := s.EnsureAccount("a")
	b, otherKey, _ := s.EnsureAccount("b")
	if _, err := s.CreateUser(a.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	k, err := s.CreateAccessKey(a.ID, "alice")
	if err != nil {
		t.Fatal(err)
	}
	creds, err := s.Credentials(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(creds) != 2 || creds[k.ID].Secret.SecretAccessKey != k.Secret || creds[k.ID].Principal.User != "alice" ||
		creds[adminKey.ID].Principal.Arn != "arn:aws:iam::"+a.ID+":user/admin" {
		t.Fatalf("credentials of a: %+v", creds)
	}
	if _, ok := creds[otherKey.ID]; ok {
		t.Error("another account's key is listed")
	}
	if both, _ := s.Credentials(a.ID, b.ID); len(both) != 3 {
		t.Errorf("credentials of a and b: %d, want 3", len(both))
	}
	if err := s.DeleteAccessKey(a.ID, "alice", k.ID); err != nil {
		t.Fatal(err)
	}
	if creds, _ := s.Credentials(a.ID); len(creds) != 1 {
		t.Errorf("after deleting alice's key: %+v", creds)
	}
}

// TestAccessKeyQuota: a user has at most 2 access keys (AWS's
// AccessKeysPerUser, LimitExceeded), counted per user; deleting one makes
// room again.
func TestAccessKeyQuota(t *testing.T) {
	s := newService(t)
	a, _, _ := s.EnsureAccount("a") // with the admin's first key
	for _, u := range []string{"alice", "bob"} {
		if _, err := s.CreateUser(a.ID, u, ""); err != nil {
			t.Fatal(err)
		}
	}
	var alice []string
	for _, tc := range []struct {
		name, user string
		ok         bool
	}{
		{"alice's first", "alice", true},
		{"alice's second", "alice", true},
		{"alice's third", "alice", false},
		{"bob's first", "bob", true},
		{"the admin's second", AdminUser, true},
		{"the admin's third", AdminUser, false},
	} {
		k, err := s.CreateAccessKey(a.ID, tc.user)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !tc.ok && (!errors.Is(err, ErrLimit) || err.Error() != "limit exceeded: Cannot exceed quota for AccessKeysPerUser: 2"):
			t.Errorf("%s: %v, want LimitExceeded for AccessKeysPerUser", tc.name, err)
		case tc.ok && tc.user == "alice":
			alice = append(alice, k.ID)
		}
	}
	if keys, _ := s.ListAccessKeys(a.ID, "alice"); len(keys) != 2 {
		t.Errorf("alice has %d keys after a refused third", len(keys))
	}
	if err := s.DeleteAccessKey(a.ID, "alice", alice[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateAccessKey(a.ID, "alice"); err != nil {
		t.Errorf("a key after deleting one: %v", err)
	}
}
