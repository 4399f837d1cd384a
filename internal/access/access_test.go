package access

import (
	"slices"
	"testing"

	"skiff.dev/skiff/internal/model"
)

const acct = "111122223333"

var (
	alice   = Caller{Account: acct, Arn: "arn:aws:iam::" + acct + ":user/alice", UserID: "AIDAALICE", AccessKeyID: "AKIAALICE", Kind: "user", Name: "alice"}
	deploy  = Caller{Account: acct, Arn: "arn:aws:sts::" + acct + ":assumed-role/deploy/ci@x", UserID: "AROADEPLOY:ci@x", AccessKeyID: "ASIADEPLOY", Kind: "role", Name: "deploy", Session: "ci@x"}
	node    = Caller{Account: acct, Arn: "arn:aws:sts::" + acct + ":assumed-role/nodes/i-0a1", UserID: "AROANODES:i-0a1", AccessKeyID: "ASIANODE1", Kind: "role", Name: "nodes", Session: "i-0a1"}
	mallory = Caller{Account: "999988887777", Arn: "arn:aws:iam::999988887777:user/alice", UserID: "AIDAM", Kind: "user", Name: "alice"}
)

func cluster(mode string, entries ...model.AccessEntry) *model.Cluster {
	return &model.Cluster{Name: "web", Account: acct, AuthenticationMode: mode, AccessEntries: entries,
		BootstrapAdmin: true, CreatorArn: "arn:aws:iam::" + acct + ":user/admin"}
}

// withNodes gives c a node group of role nodes with instances i-0a1
// (key ASIANODE1) and i-0b2 (key ASIANODE2).
func withNodes(c *model.Cluster) *model.Cluster {
	c.Nodegroups = []model.Nodegroup{{Name: "ng", NodeRole: "arn:aws:iam::" + acct + ":role/nodes", Nodes: []model.Node{
		{ID: "i-0a1", Name: "ip-172-31-0-4.ec2.internal", AccessKeyID: "ASIANODE1"},
		{ID: "i-0b2", Name: "ip-172-31-16-4.ec2.internal", AccessKeyID: "ASIANODE2"},
	}}}
	return c
}

func TestResolve(t *testing.T) {
	aliceEntry := model.AccessEntry{PrincipalArn: alice.Arn, Type: "STANDARD", Username: alice.Arn,
		Policies: []model.AccessPolicyAssociation{{PolicyArn: PolicyArnPrefix + "AmazonEKSViewPolicy", Scope: model.AccessScope{Type: "cluster"}}}}
	deployEntry := model.AccessEntry{PrincipalArn: "arn:aws:iam::" + acct + ":role/ci/deploy", Type: "STANDARD",
		Username: "deploy:{{SessionName}}", KubernetesGroups: []string{"deployers"}}
	nodeEntry := model.AccessEntry{PrincipalArn: "arn:aws:iam::" + acct + ":role/nodes", Type: "EC2_LINUX", Username: "system:node:{{EC2PrivateDNSName}}"}
	awsAuth := &AWSAuth{
		Users: []Mapping{{UserArn: alice.Arn, Username: "alice-from-cm", Groups: []string{"cm"}}},
		Roles: []Mapping{{RoleArn: "arn:aws:iam::" + acct + ":role/deploy", Username: "d-{{SessionName}}"}},
	}
	tests := []struct {
		name   string
		c      *model.Cluster
		caller Caller
		auth   *AWSAuth
		want   string // username; "" = rejected
		groups []string
	}{
		{"user entry with a policy gets its group", cluster("API", aliceEntry), alice, nil, alice.Arn, []string{EntryGroup(alice.Arn)}},
		{"role session through the role's entry (path ignored)", cluster("API", deployEntry), deploy, nil, "deploy:ci-x", []string{"deployers"}},
		{"node entry: the instance's name from skiff's record", withNodes(cluster("API", nodeEntry)), node, nil, "system:node:ip-172-31-0-4.ec2.internal", []string{"system:nodes", "system:bootstrappers"}},
		// The node role assumed again with another instance's ID as
		// session name (a pod that read its node's credentials): refused.
		{"node role, another instance's session name, its own key", withNodes(cluster("API", nodeEntry)),
			Caller{Account: acct, Arn: "arn:aws:sts::" + acct + ":assumed-role/nodes/i-0b2", AccessKeyID: "ASIASTOLEN", Kind: "role", Name: "nodes", Session: "i-0b2"}, nil, "", nil},
		{"node role, a session named like a node", withNodes(cluster("API", nodeEntry)),
			Caller{Account: acct, Arn: "arn:aws:sts::" + acct + ":assumed-role/nodes/ip-172-31-16-4.ec2.internal", AccessKeyID: "ASIANODE1", Kind: "role", Name: "nodes", Session: "ip-172-31-16-4.ec2.internal"}, nil, "", nil},
		{"node role, no such instance", cluster("API", nodeEntry), node, nil, "", nil},
		{"instance key of another role", withNodes(cluster("API", nodeEntry, model.AccessEntry{PrincipalArn: "arn:aws:iam::" + acct + ":role/other", Type: "EC2_LINUX", Username: "system:node:{{EC2PrivateDNSName}}"})),
			Caller{Account: acct, Arn: "arn:aws:sts::" + acct + ":assumed-role/other/i-0a1", AccessKeyID: "ASIANODE1", Kind: "role", Name: "other", Session: "i-0a1"}, nil, "", nil},
		{"aws-auth mapRoles node template", withNodes(cluster("API_AND_CONFIG_MAP")), node,
			&AWSAuth{Roles: []Mapping{{RoleArn: "arn:aws:iam::" + acct + ":role/nodes", Username: "system:node:{{EC2PrivateDNSName}}", Groups: []string{"system:nodes"}}}},
			"system:node:ip-172-31-0-4.ec2.internal", []string{"system:nodes"}},
		{"no entry", cluster("API", deployEntry), alice, nil, "", nil},
		// Issue 15: a template that passed validation but expands to a
		// reserved name for a session named "system".
		{"template expanding to a reserved name", cluster("API", model.AccessEntry{PrincipalArn: "arn:aws:iam::" + acct + ":role/deploy", Type: "STANDARD",
			Username: "{{SessionName}}:masters"}),
			Caller{Account: acct, Arn: "arn:aws:sts::" + acct + ":assumed-role/deploy/system", AccessKeyID: "ASIAX", Kind: "role", Name: "deploy", Session: "system"}, nil, "", nil},
		{"the same template, another session", cluster("API", model.AccessEntry{PrincipalArn: "arn:aws:iam::" + acct + ":role/deploy", Type: "STANDARD",
			Username: "{{SessionName}}:masters"}), deploy, nil, "ci-x:masters", nil},
		{"same name, other account", cluster("API", aliceEntry), mallory, nil, "", nil},
		{"API mode ignores aws-auth", cluster("API"), alice, awsAuth, "", nil},
		{"entry wins over aws-auth", cluster("API_AND_CONFIG_MAP", aliceEntry), alice, awsAuth, alice.Arn, []string{EntryGroup(alice.Arn)}},
		{"aws-auth user", cluster("API_AND_CONFIG_MAP"), alice, awsAuth, "alice-from-cm", []string{"cm"}},
		{"aws-auth role template", cluster("API_AND_CONFIG_MAP"), deploy, awsAuth, "d-ci-x", nil},
		{"CONFIG_MAP ignores entries", cluster("CONFIG_MAP", aliceEntry), alice, nil, "", nil},
		{"CONFIG_MAP creator is admin", cluster("CONFIG_MAP"), Caller{Account: acct, Arn: "arn:aws:iam::" + acct + ":user/admin", Kind: "user", Name: "admin"}, nil,
			"arn:aws:iam::" + acct + ":user/admin", []string{"system:masters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, ok := Resolve(tt.c, tt.caller, tt.auth)
			if tt.want == "" {
				if ok {
					t.Fatalf("accepted as %+v", u)
				}
				return
			}
			if !ok || u.Username != tt.want || !slices.Equal(u.Groups, tt.groups) {
				t.Fatalf("got %+v, %v; want %s %v", u, ok, tt.want, tt.groups)
			}
			if u.Extra["arn"][0] != tt.caller.Arn || u.UID == "" {
				t.Errorf("extra/uid: %+v", u)
			}
		})
	}
}

func TestParsePrincipalArn(t *testing.T) {
	for arn, ok := range map[string]bool{
		"arn:aws:iam::111122223333:user/alice":             true,
		"arn:aws:iam::111122223333:role/a/b/deploy":        true,
		"arn:aws:iam::111122223333:group/admins":           false,
		"arn:aws:sts::111122223333:assumed-role/deploy/s1": false,
		"arn:aws:iam::1111:user/alice":                     false,
		"alice":                                            false,
	} {
		if _, err := ParsePrincipalArn(arn); (err == nil) != ok {
			t.Errorf("%s: %v", arn, err)
		}
	}
	p, _ := CreatorPrincipal("arn:aws:sts::111122223333:assumed-role/deploy/s1")
	if p.Arn() != "arn:aws:iam::111122223333:role/deploy" {
		t.Errorf("creator role = %s", p.Arn())
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		s  model.AccessScope
		ok bool
	}{
		{model.AccessScope{Type: "cluster"}, true},
		{model.AccessScope{Type: "cluster", Namespaces: []string{"a"}}, false},
		{model.AccessScope{Type: "namespace", Namespaces: []string{"default", "dev-*"}}, true},
		{model.AccessScope{Type: "namespace"}, false},
		{model.AccessScope{Type: "namespace", Namespaces: []string{"Bad_NS"}}, false},
		{model.AccessScope{Type: "global"}, false},
	} {
		if err := ValidateScope(tt.s); (err == nil) != tt.ok {
			t.Errorf("%+v: %v", tt.s, err)
		}
	}
	if ValidateNames("system:admin", nil) == nil || ValidateNames("bob", []string{"system:masters"}) == nil || ValidateNames("bob", []string{"devs"}) != nil {
		t.Error("reserved prefixes")
	}
}

func TestDesired(t *testing.T) {
	c := cluster("API", model.AccessEntry{PrincipalArn: alice.Arn, Policies: []model.AccessPolicyAssociation{
		{PolicyArn: PolicyArnPrefix + "AmazonEKSClusterAdminPolicy", Scope: model.AccessScope{Type: "cluster"}},
		{PolicyArn: PolicyArnPrefix + "AmazonEKSViewPolicy", Scope: model.AccessScope{Type: "namespace", Namespaces: []string{"default", "dev-*"}}},
	}})
	crbs, rbs := Desired(c, []string{"default", "dev-a", "dev-b", "kube-system"})
	if len(crbs) != 1 || crbs[0].RoleRef.Name != "cluster-admin" || crbs[0].Subjects[0].Name != EntryGroup(alice.Arn) {
		t.Fatalf("crbs = %+v", crbs)
	}
	var got []string
	for _, rb := range rbs {
		got = append(got, rb.Namespace+":"+rb.RoleRef.Name)
	}
	if !slices.Equal(got, []string{"default:view", "dev-a:view", "dev-b:view"}) {
		t.Fatalf("rbs = %v", got)
	}
	c.AuthenticationMode = ModeConfigMap
	if crbs, rbs := Desired(c, nil); len(crbs)+len(rbs) != 0 {
		t.Error("CONFIG_MAP mode must not bind access entries")
	}
	a, err := ParseAWSAuth(map[string]string{"mapUsers": "- userarn: " + alice.Arn + "\n  username: a\n  groups: [g]\n", "mapAccounts": "- \"" + acct + "\"\n"})
	if err != nil || len(a.Users) != 1 || a.Users[0].Groups[0] != "g" || a.Accounts[0] != acct {
		t.Fatalf("aws-auth: %+v %v", a, err)
	}
	if _, err := ParseAWSAuth(map[string]string{"mapRoles": "{not a list"}); err == nil {
		t.Error("bad mapRoles accepted")
	}
}
