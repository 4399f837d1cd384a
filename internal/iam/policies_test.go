package iam

import (
	"context"
	"errors"
	"strings"
	"testing"

	"skiff.dev/skiff/internal/iam/policy"
	"skiff.dev/skiff/internal/sigv4"
)

const allowDescribe = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"eks:Describe*","Resource":"*"}]}`

func decide(t *testing.T, s *Service, p *Principal, action, resource string) policy.Decision {
	t.Helper()
	pols, err := s.PoliciesOf(p)
	if err != nil {
		t.Fatal(err)
	}
	return policy.Evaluate(pols, policy.Request{Action: action, Resource: resource}).Decision
}

// TestPolicies: managed policies with versions, inline policies, groups,
// and what a principal ends up with.
func TestPolicies(t *testing.T) {
	s := newService(t)
	a, _, _ := s.EnsureAccount("a")
	b, _, _ := s.EnsureAccount("b")
	s.CreateUser(a.ID, "bob", "")
	bob := &Principal{Account: a.ID, User: "bob", Arn: "arn:aws:iam::" + a.ID + ":user/bob"}
	if d := decide(t, s, bob, "eks:DescribeCluster", "*"); d != policy.ImplicitDeny {
		t.Fatalf("bob without policies: %v", d)
	}

	// Customer managed policy: create, attach, version, detach.
	p, err := s.CreatePolicy(a.ID, "describe", "/team/", allowDescribe, "")
	if err != nil {
		t.Fatal(err)
	}
	if p.Arn() != "arn:aws:iam::"+a.ID+":policy/team/describe" {
		t.Fatalf("arn %s", p.Arn())
	}
	if _, err := s.CreatePolicy(a.ID, "describe", "", allowDescribe, ""); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	for _, bad := range []string{`{`, `{"Statement":[{"Effect":"Maybe","Action":"*","Resource":"*"}]}`, `{"Statement":[{"Effect":"Allow","Action":"*"}]}`} {
		if _, err := s.CreatePolicy(a.ID, "bad", "", bad, ""); !errors.Is(err, ErrMalformedPolicy) {
			t.Errorf("CreatePolicy(%s): %v", bad, err)
		}
	}
	if err := s.AttachPolicy(KindUser, b.ID, "bob", p.Arn()); !errors.Is(err, ErrNoSuchEntity) {
		t.Fatalf("another account attaches it: %v", err)
	}
	if err := s.AttachPolicy(KindUser, a.ID, "bob", p.Arn()); err != nil {
		t.Fatal(err)
	}
	if d := decide(t, s, bob, "eks:DescribeCluster", "*"); d != policy.Allow {
		t.Fatalf("bob with policy: %v", d)
	}
	if err := s.DeleteUser(a.ID, "bob"); !errors.Is(err, ErrDeleteConflict) {
		t.Fatalf("delete user with policies: %v", err)
	}
	if err := s.DeletePolicy(a.ID, p.Arn()); !errors.Is(err, ErrDeleteConflict) {
		t.Fatalf("delete attached policy: %v", err)
	}
	v2, err := s.CreatePolicyVersion(a.ID, p.Arn(), `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"eks:*","Resource":"*"}]}`, false)
	if err != nil || v2.ID != "v2" {
		t.Fatalf("version: %v %v", v2, err)
	}
	if d := decide(t, s, bob, "eks:DescribeCluster", "*"); d != policy.Allow {
		t.Fatalf("a non-default version is in force: %v", d)
	}
	if err := s.SetDefaultPolicyVersion(a.ID, p.Arn(), "v2"); err != nil {
		t.Fatal(err)
	}
	if d := decide(t, s, bob, "eks:DescribeCluster", "*"); d != policy.ExplicitDeny {
		t.Fatalf("v2 default: %v", d)
	}
	if err := s.DeletePolicyVersion(a.ID, p.Arn(), "v2"); !errors.Is(err, ErrDeleteConflict) {
		t.Fatalf("delete default version: %v", err)
	}
	for i := 3; i <= MaxPolicyVersions; i++ {
		if _, err := s.CreatePolicyVersion(a.ID, p.Arn(), allowDescribe, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreatePolicyVersion(a.ID, p.Arn(), allowDescribe, false); !errors.Is(err, ErrLimit) {
		t.Fatalf("sixth version: %v", err)
	}
	if err := s.DetachPolicy(KindUser, a.ID, "bob", p.Arn()); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePolicy(a.ID, p.Arn()); !errors.Is(err, ErrDeleteConflict) {
		t.Fatalf("delete policy with versions: %v", err)
	}

	// AWS managed policies attach by ARN and cannot be changed.
	ro := "arn:aws:iam::aws:policy/ReadOnlyAccess"
	if err := s.AttachPolicy(KindUser, a.ID, "bob", ro); err != nil {
		t.Fatal(err)
	}
	if d := decide(t, s, bob, "eks:DescribeCluster", "arn:aws:eks:us-east-1:"+a.ID+":cluster/x"); d != policy.Allow {
		t.Fatalf("ReadOnlyAccess describe: %v", d)
	}
	if d := decide(t, s, bob, "eks:DeleteCluster", "arn:aws:eks:us-east-1:"+a.ID+":cluster/x"); d != policy.ImplicitDeny {
		t.Fatalf("ReadOnlyAccess delete: %v", d)
	}
	if err := s.DeletePolicy(a.ID, ro); err == nil {
		t.Fatal("deleted an AWS managed policy")
	}
	if err := s.AttachPolicy(KindUser, a.ID, "bob", "arn:aws:iam::aws:policy/NoSuchPolicy"); !errors.Is(err, ErrNoSuchEntity) {
		t.Fatalf("unknown AWS policy: %v", err)
	}

	// Groups: their policies reach their users.
	if _, err := s.CreateGroup(a.ID, "ops", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.PutInlinePolicy(KindGroup, a.ID, "ops", "no-delete", `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"eks:DeleteCluster","Resource":"*"}]}`); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUserToGroup(a.ID, "ops", "bob"); err != nil {
		t.Fatal(err)
	}
	if err := s.AttachPolicy(KindUser, a.ID, "bob", "arn:aws:iam::aws:policy/AdministratorAccess"); err != nil {
		t.Fatal(err)
	}
	if d := decide(t, s, bob, "eks:DeleteCluster", "*"); d != policy.ExplicitDeny {
		t.Fatalf("group deny over admin: %v", d)
	}
	if err := s.DeleteGroup(a.ID, "ops"); !errors.Is(err, ErrDeleteConflict) {
		t.Fatalf("delete group with users: %v", err)
	}
	if err := s.RemoveUserFromGroup(a.ID, "ops", "bob"); err != nil {
		t.Fatal(err)
	}
	if d := decide(t, s, bob, "eks:DeleteCluster", "*"); d != policy.Allow {
		t.Fatalf("after leaving the group: %v", d)
	}
	if err := s.DeleteGroup(a.ID, "ops"); !errors.Is(err, ErrDeleteConflict) {
		t.Fatalf("delete group with inline policy: %v", err)
	}

	// Inline policies: size limit, names.
	big := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"eks:DescribeCluster","Resource":"arn:aws:eks:us-east-1:1:cluster/` + strings.Repeat("x", 2100) + `"}]}`
	if err := s.PutInlinePolicy(KindUser, a.ID, "bob", "big", big); !errors.Is(err, ErrLimit) {
		t.Fatalf("oversized inline: %v", err)
	}
	if err := s.PutInlinePolicy(KindUser, a.ID, "bob", "ok", allowDescribe); err != nil {
		t.Fatal(err)
	}
	if names, _ := s.InlinePolicies(KindUser, a.ID, "bob"); len(names) != 1 || names[0] != "ok" {
		t.Fatalf("inline names %v", names)
	}
	if _, err := s.InlinePolicy(KindUser, a.ID, "bob", "nope"); !errors.Is(err, ErrNoSuchEntity) {
		t.Fatalf("missing inline: %v", err)
	}
}

func roleWithTrust(t *testing.T, s *Service, account, name, trust string) *Role {
	t.Helper()
	r, err := s.CreateRole(account, name, "", trust, "", 7200)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestAssumeRoleTrust: trust policies decide who may assume a role, as
// on AWS.
func TestAssumeRoleTrust(t *testing.T) {
	s := newService(t)
	a, _, _ := s.EnsureAccount("a")
	b, _, _ := s.EnsureAccount("b")
	s.CreateUser(a.ID, "bob", "")
	s.CreateUser(a.ID, "eve", "")
	bob := &Principal{Account: a.ID, User: "bob", Arn: "arn:aws:iam::" + a.ID + ":user/bob"}
	eve := &Principal{Account: a.ID, User: "eve", Arn: "arn:aws:iam::" + a.ID + ":user/eve"}
	bAdmin := &Principal{Account: b.ID, User: AdminUser, Arn: "arn:aws:iam::" + b.ID + ":user/admin", Root: true}
	ec2 := &Principal{Account: a.ID, Service: "ec2.amazonaws.com"}
	trust := func(principal, extra string) string {
		return `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":` + principal + `,"Action":"sts:AssumeRole"` + extra + `}]}`
	}
	names := roleWithTrust(t, s, a.ID, "names-bob", trust(`{"AWS":"`+bob.Arn+`"}`, ""))
	acct := roleWithTrust(t, s, a.ID, "trusts-account", trust(`{"AWS":"`+a.ID+`"}`, ""))
	svc := roleWithTrust(t, s, a.ID, "nodes", trust(`{"Service":"ec2.amazonaws.com"}`, ""))
	ext := roleWithTrust(t, s, a.ID, "partner", trust(`{"AWS":"arn:aws:iam::`+b.ID+`:root"}`, `,"Condition":{"StringEquals":{"sts:ExternalId":"s3cret"}}`))
	tests := []struct {
		name   string
		caller *Principal
		role   *Role
		req    AssumeRequest
		ok     bool
	}{
		{"named user, no identity policy", bob, names, AssumeRequest{}, true},
		{"named user, identity deny", bob, names, AssumeRequest{Identity: policy.ExplicitDeny}, false},
		{"other user", eve, names, AssumeRequest{Identity: policy.Allow}, false},
		{"account trust, no identity policy", bob, acct, AssumeRequest{}, false},
		{"account trust, identity allow", bob, acct, AssumeRequest{Identity: policy.Allow}, true},
		{"service role, user", bob, svc, AssumeRequest{Identity: policy.Allow}, false},
		{"service role, the service", ec2, svc, AssumeRequest{}, true},
		{"cross-account without external id", bAdmin, ext, AssumeRequest{Identity: policy.Allow}, false},
		{"cross-account wrong external id", bAdmin, ext, AssumeRequest{Identity: policy.Allow, ExternalID: "guess"}, false},
		{"cross-account with external id", bAdmin, ext, AssumeRequest{Identity: policy.Allow, ExternalID: "s3cret"}, true},
		{"cross-account, no identity policy", &Principal{Account: b.ID, User: "x", Arn: "arn:aws:iam::" + b.ID + ":user/x"}, ext, AssumeRequest{ExternalID: "s3cret"}, false},
		{"unknown role", bob, &Role{Account: a.ID, Name: "ghost", Path: "/"}, AssumeRequest{Identity: policy.Allow}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.RoleArn, tt.req.SessionName = tt.role.Arn(), "s1"
			_, _, err := s.AssumeRole(tt.caller, tt.req)
			if tt.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrAccessDenied) {
				t.Fatalf("want AccessDenied, got %v", err)
			}
			if err != nil && !strings.Contains(err.Error(), "is not authorized to perform: sts:AssumeRole on resource: "+tt.req.RoleArn) {
				t.Errorf("message: %v", err)
			}
		})
	}

	// Role chaining: at most an hour.
	sess, _, err := s.AssumeRole(bob, AssumeRequest{RoleArn: names.Arn(), SessionName: "first", Duration: 7200})
	if err != nil {
		t.Fatal(err)
	}
	chained, _ := s.Principal(sess.AccessKeyID)
	roleWithTrust(t, s, a.ID, "second", trust(`{"AWS":"`+names.Arn()+`"}`, ""))
	second := "arn:aws:iam::" + a.ID + ":role/second"
	if _, _, err := s.AssumeRole(chained, AssumeRequest{RoleArn: second, SessionName: "cc", Duration: 7200}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("chained 2h session: %v", err)
	}
	if _, _, err := s.AssumeRole(chained, AssumeRequest{RoleArn: second, SessionName: "cc"}); err != nil {
		t.Fatalf("chained 1h session (trust names the role): %v", err)
	}

	// A session ends with its role, and a new role of the same name does
	// not revive it.
	if err := s.DeleteRole(a.ID, "names-bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(context.Background(), sess.AccessKeyID); !errors.Is(err, sigv4.ErrUnknownKey) {
		t.Fatalf("session of a deleted role: %v", err)
	}
	roleWithTrust(t, s, a.ID, "names-bob", trust(`{"AWS":"`+bob.Arn+`"}`, ""))
	if _, err := s.Lookup(context.Background(), sess.AccessKeyID); !errors.Is(err, sigv4.ErrUnknownKey) {
		t.Fatalf("session revived by a new role of the same name: %v", err)
	}

	// Trust policies are validated.
	for _, bad := range []string{`{}`, trust(`{"AWS":"`+bob.Arn+`"}`, `,"Resource":"*"`), `{"Statement":[{"Effect":"Allow","Action":"sts:AssumeRole"}]}`} {
		if _, err := s.CreateRole(a.ID, "bad", "", bad, "", 0); !errors.Is(err, ErrMalformedPolicy) {
			t.Errorf("trust %s: %v", bad, err)
		}
	}
	if err := s.UpdateAssumeRolePolicy(a.ID, "trusts-account", `{}`); !errors.Is(err, ErrMalformedPolicy) {
		t.Errorf("update trust: %v", err)
	}
}

// TestEntityPolicies: on a user, a role and a group alike, managed
// policies attach, are listed and detach, inline policies are put,
// replaced, read, listed and deleted, and what the principal may do
// follows; a missing entity or policy is NoSuchEntity.
func TestEntityPolicies(t *testing.T) {
	s := newService(t)
	a, _, _ := s.EnsureAccount("a")
	const trust = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"eks.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	const denyAll = `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}`
	for _, u := range []string{"bob", "carol"} {
		if _, err := s.CreateUser(a.ID, u, ""); err != nil {
			t.Fatal(err)
		}
	}
	role, err := s.CreateRole(a.ID, "web", "", trust, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateGroup(a.ID, "devs", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUserToGroup(a.ID, "devs", "carol"); err != nil {
		t.Fatal(err)
	}
	p, err := s.CreatePolicy(a.ID, "describe", "", allowDescribe, "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		kind, name string
		who        *Principal // whom the entity's policies reach
	}{
		{KindUser, "bob", &Principal{Account: a.ID, User: "bob", Arn: "arn:aws:iam::" + a.ID + ":user/bob"}},
		{KindRole, "web", &Principal{Account: a.ID, Role: "web", RoleArn: role.Arn(), Arn: "arn:aws:sts::" + a.ID + ":assumed-role/web/s"}},
		{KindGroup, "devs", &Principal{Account: a.ID, User: "carol", Arn: "arn:aws:iam::" + a.ID + ":user/carol"}},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			may := func(want policy.Decision, when string) {
				t.Helper()
				if d := decide(t, s, tt.who, "eks:DescribeCluster", "*"); d != want {
					t.Errorf("%s: %v, want %v", when, d, want)
				}
			}
			attached := func(want ...string) {
				t.Helper()
				ps, err := s.AttachedPolicies(tt.kind, a.ID, tt.name)
				var got []string
				for _, p := range ps {
					got = append(got, p.Name+" "+p.Arn())
				}
				if err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("AttachedPolicies = %v, %v; want %v", got, err, want)
				}
			}
			inline := func(want ...string) {
				t.Helper()
				if got, err := s.InlinePolicies(tt.kind, a.ID, tt.name); err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("InlinePolicies = %v, %v; want %v", got, err, want)
				}
			}
			noSuch := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, ErrNoSuchEntity) {
					t.Errorf("%s: %v, want NoSuchEntity", what, err)
				}
			}

			// Managed: attach, list, detach.
			attached()
			if err := s.AttachPolicy(tt.kind, a.ID, tt.name, p.Arn()); err != nil {
				t.Fatal(err)
			}
			attached("describe " + p.Arn())
			may(policy.Allow, "attached")
			if err := s.DetachPolicy(tt.kind, a.ID, tt.name, p.Arn()); err != nil {
				t.Fatalf("DetachPolicy: %v", err)
			}
			attached()
			may(policy.ImplicitDeny, "detached")
			noSuch("detach twice", s.DetachPolicy(tt.kind, a.ID, tt.name, p.Arn()))
			noSuch("detach from a missing entity", s.DetachPolicy(tt.kind, a.ID, "ghost", p.Arn()))
			_, err := s.AttachedPolicies(tt.kind, a.ID, "ghost")
			noSuch("list a missing entity's", err)

			// Inline: put, replace, get, list, delete.
			inline()
			if err := s.PutInlinePolicy(tt.kind, a.ID, tt.name, "inl", denyAll); err != nil {
				t.Fatal(err)
			}
			if err := s.PutInlinePolicy(tt.kind, a.ID, tt.name, "inl", allowDescribe); err != nil {
				t.Fatalf("replace: %v", err)
			}
			if doc, err := s.InlinePolicy(tt.kind, a.ID, tt.name, "inl"); err != nil || doc != allowDescribe {
				t.Errorf("InlinePolicy = %q, %v", doc, err)
			}
			inline("inl")
			may(policy.Allow, "inline")
			if err := s.DeleteInlinePolicy(tt.kind, a.ID, tt.name, "inl"); err != nil {
				t.Fatalf("DeleteInlinePolicy: %v", err)
			}
			inline()
			may(policy.ImplicitDeny, "inline deleted")
			_, err = s.InlinePolicy(tt.kind, a.ID, tt.name, "inl")
			noSuch("get a deleted inline policy", err)
			noSuch("delete twice", s.DeleteInlinePolicy(tt.kind, a.ID, tt.name, "inl"))
			_, err = s.InlinePolicy(tt.kind, a.ID, "ghost", "inl")
			noSuch("get a missing entity's", err)
			_, err = s.InlinePolicies(tt.kind, a.ID, "ghost")
			noSuch("list a missing entity's", err)
			noSuch("put on a missing entity", s.PutInlinePolicy(tt.kind, a.ID, "ghost", "inl", allowDescribe))
		})
	}
}
