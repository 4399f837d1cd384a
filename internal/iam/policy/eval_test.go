package policy

import (
	"reflect"
	"strings"
	"testing"
)

const (
	acct      = "123456789012"
	aliceArn  = "arn:aws:iam::123456789012:user/dev/alice"
	roleArn   = "arn:aws:iam::123456789012:role/ops/deployer"
	sessArn   = "arn:aws:sts::123456789012:assumed-role/deployer/ci-run-1"
	otherAcct = "210987654321"
)

func alice() Principal { return Principal{Arn: aliceArn, Account: acct} }

func session() Principal { return Principal{Arn: sessArn, Account: acct, RoleArn: roleArn} }

func mustParse(t testing.TB, text string) *Document {
	t.Helper()
	doc, err := Parse(text)
	if err != nil {
		t.Fatalf("Parse: %v (%s)", err, text)
	}
	return doc
}

func mustParseTrust(t testing.TB, text string) *Document {
	t.Helper()
	doc, err := ParseTrust(text)
	if err != nil {
		t.Fatalf("ParseTrust: %v (%s)", err, text)
	}
	return doc
}

func TestDecisionString(t *testing.T) {
	for d, want := range map[Decision]string{ImplicitDeny: "implicitDeny", Allow: "allowed", ExplicitDeny: "explicitDeny"} {
		if got := d.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", d, got, want)
		}
	}
}

func TestEvaluate(t *testing.T) {
	const eksCluster = "arn:aws:eks:us-east-1:123456789012:cluster/prod"
	tests := []struct {
		name     string
		policies []string
		req      Request
		want     Decision
		matched  []Match // when non-nil, the expected Result.Matched
	}{
		{
			name:     "no policy",
			req:      Request{Principal: alice(), Action: "eks:DescribeCluster", Resource: eksCluster},
			want:     ImplicitDeny,
			policies: nil,
		},
		{
			name:     "allow",
			policies: []string{`{"Version":"2012-10-17","Statement":{"Sid":"A","Effect":"Allow","Action":"eks:DescribeCluster","Resource":"*"}}`},
			req:      Request{Principal: alice(), Action: "eks:DescribeCluster", Resource: eksCluster},
			want:     Allow,
			matched:  []Match{{PolicyID: "p0", Sid: "A", Statement: 0}},
		},
		{
			name: "explicit deny beats allow",
			policies: []string{
				`{"Version":"2012-10-17","Statement":[{"Sid":"All","Effect":"Allow","Action":"*","Resource":"*"}]}`,
				`{"Version":"2012-10-17","Statement":[{"Sid":"Keep","Effect":"Allow","Action":"s3:*","Resource":"*"},{"Sid":"NoDelete","Effect":"Deny","Action":"eks:Delete*","Resource":"*"}]}`,
			},
			req:     Request{Principal: alice(), Action: "eks:DeleteCluster", Resource: eksCluster},
			want:    ExplicitDeny,
			matched: []Match{{PolicyID: "p1", Sid: "NoDelete", Statement: 1}},
		},
		{
			name: "all allow statements reported",
			policies: []string{
				`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"eks:*","Resource":"*"},{"Effect":"Allow","Action":"s3:*","Resource":"*"},{"Sid":"X","Effect":"Allow","Action":"eks:Describe*","Resource":"*"}]}`,
			},
			req:     Request{Principal: alice(), Action: "eks:DescribeCluster", Resource: eksCluster},
			want:    Allow,
			matched: []Match{{PolicyID: "p0", Statement: 0}, {PolicyID: "p0", Sid: "X", Statement: 2}},
		},
		{
			name:     "action is case-insensitive",
			policies: []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"EKS:describecluster","Resource":"*"}}`},
			req:      Request{Action: "eks:DescribeCluster", Resource: eksCluster},
			want:     Allow,
		},
		{
			name:     "action wildcard *",
			policies: []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"eks:Describe*","Resource":"*"}}`},
			req:      Request{Action: "eks:DescribeNodegroup", Resource: eksCluster},
			want:     Allow,
		},
		{
			name:     "action wildcard does not match another service",
			policies: []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"eks:Describe*","Resource":"*"}}`},
			req:      Request{Action: "ec2:DescribeInstances", Resource: "*"},
			want:     ImplicitDeny,
		},
		{
			name:     "action wildcard ?",
			policies: []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:?etObject","Resource":"*"}}`},
			req:      Request{Action: "s3:GetObject", Resource: "*"},
			want:     Allow,
		},
		{
			name:     "action ? needs exactly one character",
			policies: []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:?etObject","Resource":"*"}}`},
			req:      Request{Action: "s3:etObject", Resource: "*"},
			want:     ImplicitDeny,
		},
		{
			name:     "service wildcard",
			policies: []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ec*:Describe*","Resource":"*"}}`},
			req:      Request{Action: "ecr:DescribeRepositories", Resource: "*"},
			want:     Allow,
		},
		{
			name:     "NotAction allows what is not listed",
			policies: []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","NotAction":["iam:*","eks:Delete*"],"Resource":"*"}}`},
			req:      Request{Action: "eks:CreateCluster", Resource: eksCluster},
			want:     Allow,
		},
		{
			name:     "NotAction does not allow what is listed",
			policies: []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","NotAction":["iam:*","eks:Delete*"],"Resource":"*"}}`},
			req:      Request{Action: "eks:DeleteCluster", Resource: eksCluster},
			want:     ImplicitDeny,
		},
		{
			name: "Deny with NotAction denies everything else",
			policies: []string{
				`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Deny","NotAction":"eks:*","Resource":"*"}]}`,
			},
			req:  Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::b/k"},
			want: ExplicitDeny,
		},
		{
			name:     "resource glob",
			policies: []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"eks:*","Resource":"arn:aws:eks:*:123456789012:cluster/prod*"}}`},
			req:      Request{Action: "eks:DescribeCluster", Resource: "arn:aws:eks:eu-west-1:123456789012:cluster/prod-2"},
			want:     Allow,
		},
		{
			name:     "resource glob other account",
			policies: []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"eks:*","Resource":"arn:aws:eks:*:123456789012:cluster/prod*"}}`},
			req:      Request{Action: "eks:DescribeCluster", Resource: "arn:aws:eks:eu-west-1:210987654321:cluster/prod"},
			want:     ImplicitDeny,
		},
		{
			name:     "resource is case-sensitive",
			policies: []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"eks:*","Resource":"arn:aws:eks:us-east-1:123456789012:cluster/Prod"}}`},
			req:      Request{Action: "eks:DescribeCluster", Resource: eksCluster},
			want:     ImplicitDeny,
		},
		{
			name:     "resource ? wildcard",
			policies: []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::logs-202?/*"}}`},
			req:      Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::logs-2024/a/b"},
			want:     Allow,
		},
		{
			name:     "a specific resource does not match the * resource",
			policies: []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"eks:ListClusters","Resource":"arn:aws:eks:*:*:cluster/*"}}`},
			req:      Request{Action: "eks:ListClusters", Resource: "*"},
			want:     ImplicitDeny,
		},
		{
			name:     "NotResource allows other resources",
			policies: []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"eks:*","NotResource":"arn:aws:eks:*:*:cluster/prod"}}`},
			req:      Request{Action: "eks:DeleteCluster", Resource: "arn:aws:eks:us-east-1:123456789012:cluster/dev"},
			want:     Allow,
		},
		{
			name:     "NotResource excludes listed resources",
			policies: []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"eks:*","NotResource":"arn:aws:eks:*:*:cluster/prod"}}`},
			req:      Request{Action: "eks:DeleteCluster", Resource: eksCluster},
			want:     ImplicitDeny,
		},
		{
			name:     "conditions AND across operators",
			policies: []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"eks:*","Resource":"*","Condition":{"StringEquals":{"aws:RequestedRegion":"us-east-1"},"Bool":{"aws:SecureTransport":"true"}}}}`},
			req:      Request{Action: "eks:DescribeCluster", Resource: eksCluster, Context: map[string][]string{"aws:RequestedRegion": {"us-east-1"}, "aws:SecureTransport": {"false"}}},
			want:     ImplicitDeny,
		},
		{
			name:     "conditions all true",
			policies: []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"eks:*","Resource":"*","Condition":{"StringEquals":{"aws:RequestedRegion":"us-east-1"},"Bool":{"aws:SecureTransport":"true"}}}}`},
			req:      Request{Action: "eks:DescribeCluster", Resource: eksCluster, Context: map[string][]string{"aws:requestedregion": {"us-east-1"}, "AWS:SecureTransport": {"true"}}},
			want:     Allow,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var named []Named
			for i, text := range tt.policies {
				named = append(named, Named{ID: "p" + string(rune('0'+i)), Doc: mustParse(t, text)})
			}
			res := Evaluate(named, tt.req)
			if res.Decision != tt.want {
				t.Errorf("Decision = %v, want %v (matched %+v)", res.Decision, tt.want, res.Matched)
			}
			if tt.want == ImplicitDeny && len(res.Matched) != 0 {
				t.Errorf("implicit deny with matched statements %+v", res.Matched)
			}
			if tt.matched != nil && !reflect.DeepEqual(res.Matched, tt.matched) {
				t.Errorf("Matched = %+v, want %+v", res.Matched, tt.matched)
			}
		})
	}
}

func TestEvaluateHandBuilt(t *testing.T) {
	doc := &Document{Version: Version2012, Statements: []Statement{
		{Sid: "Read", Effect: "Allow", Action: []string{"s3:Get*"}, Resource: []string{"arn:aws:s3:::home/${aws:username}/*"}},
		{Effect: "Deny", Action: []string{"s3:*"}, Resource: []string{"*"}, Condition: map[string]map[string][]string{"Bool": {"aws:SecureTransport": {"false"}}}},
		{Effect: "Allow", Action: []string{"s3:*"}, Resource: []string{"*"}, Condition: map[string]map[string][]string{"NoSuchOperator": {"aws:username": {"alice"}}}},
	}}
	tests := []struct {
		req  Request
		want Decision
	}{
		{Request{Principal: alice(), Action: "s3:GetObject", Resource: "arn:aws:s3:::home/alice/x"}, Allow},
		{Request{Principal: alice(), Action: "s3:GetObject", Resource: "arn:aws:s3:::home/bob/x"}, ImplicitDeny},
		{Request{Principal: alice(), Action: "s3:GetObject", Resource: "arn:aws:s3:::home/alice/x", Context: map[string][]string{"aws:SecureTransport": {"false"}}}, ExplicitDeny},
	}
	for _, tt := range tests {
		if got := Evaluate([]Named{{ID: "hand", Doc: doc}}, tt.req).Decision; got != tt.want {
			t.Errorf("%s %s: %v, want %v", tt.req.Action, tt.req.Resource, got, tt.want)
		}
	}
}

func TestPolicyVariables(t *testing.T) {
	tests := []struct {
		name     string
		policy   string
		resource string
		ctx      map[string][]string
		p        Principal
		want     Decision
	}{
		{
			name:     "aws:username from the user ARN",
			policy:   `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::home/${aws:username}/*"}}`,
			resource: "arn:aws:s3:::home/alice/notes.txt",
			p:        alice(),
			want:     Allow,
		},
		{
			name:     "aws:username of someone else",
			policy:   `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::home/${aws:username}/*"}}`,
			resource: "arn:aws:s3:::home/bob/notes.txt",
			p:        alice(),
			want:     ImplicitDeny,
		},
		{
			name:     "context overrides, variable names are case-insensitive",
			policy:   `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::home/${AWS:UserName}/*"}}`,
			resource: "arn:aws:s3:::home/carol/x",
			ctx:      map[string][]string{"aws:username": {"carol"}},
			p:        alice(),
			want:     Allow,
		},
		{
			name:     "aws:userid",
			policy:   `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::home/${aws:userid}/*"}}`,
			resource: "arn:aws:s3:::home/AIDAEXAMPLE/x",
			ctx:      map[string][]string{"aws:userid": {"AIDAEXAMPLE"}},
			want:     Allow,
		},
		{
			name:     "principal tag",
			policy:   `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"eks:*","Resource":"arn:aws:eks:*:*:cluster/${aws:PrincipalTag/team}-*"}}`,
			resource: "arn:aws:eks:us-east-1:123456789012:cluster/blue-prod",
			ctx:      map[string][]string{"aws:PrincipalTag/team": {"blue"}},
			want:     Allow,
		},
		{
			name:     "missing variable, no default: no match",
			policy:   `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"eks:*","Resource":["arn:aws:eks:*:*:cluster/${aws:PrincipalTag/team}-*"]}}`,
			resource: "arn:aws:eks:us-east-1:123456789012:cluster/-prod",
			want:     ImplicitDeny,
		},
		{
			name:     "missing variable only disables its own value",
			policy:   `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"eks:*","Resource":["arn:aws:eks:*:*:cluster/${aws:PrincipalTag/team}-*","arn:aws:eks:*:*:cluster/shared"]}}`,
			resource: "arn:aws:eks:us-east-1:123456789012:cluster/shared",
			want:     Allow,
		},
		{
			name:     "missing variable in NotResource: the value excludes nothing",
			policy:   `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"eks:*","NotResource":"arn:aws:eks:*:*:cluster/${aws:PrincipalTag/team}"}}`,
			resource: "arn:aws:eks:us-east-1:123456789012:cluster/x",
			want:     Allow,
		},
		{
			name:     "default value",
			policy:   `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"eks:*","Resource":"arn:aws:eks:*:*:cluster/${aws:PrincipalTag/team, 'shared'}-*"}}`,
			resource: "arn:aws:eks:us-east-1:123456789012:cluster/shared-1",
			want:     Allow,
		},
		{
			name:     "default value not used when the key has a value",
			policy:   `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"eks:*","Resource":"arn:aws:eks:*:*:cluster/${aws:PrincipalTag/team, 'shared'}-*"}}`,
			resource: "arn:aws:eks:us-east-1:123456789012:cluster/shared-1",
			ctx:      map[string][]string{"aws:PrincipalTag/team": {"red"}},
			want:     ImplicitDeny,
		},
		{
			name:     "${*} is a literal asterisk",
			policy:   `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b/${*}file"}}`,
			resource: "arn:aws:s3:::b/*file",
			want:     Allow,
		},
		{
			name:     "${*} is not a wildcard",
			policy:   `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b/${*}file"}}`,
			resource: "arn:aws:s3:::b/myfile",
			want:     ImplicitDeny,
		},
		{
			name:     "${?} and ${$}",
			policy:   `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b/${?}${$}x"}}`,
			resource: "arn:aws:s3:::b/?$x",
			want:     Allow,
		},
		{
			name:     "substituted value is literal",
			policy:   `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b/${aws:PrincipalTag/dir}/x"}}`,
			resource: "arn:aws:s3:::b/anything/x",
			ctx:      map[string][]string{"aws:PrincipalTag/dir": {"*"}},
			want:     ImplicitDeny,
		},
		{
			name:     "any request context key",
			policy:   `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"eks:*","Resource":"arn:aws:eks:${aws:RequestedRegion}:*:cluster/*"}}`,
			resource: "arn:aws:eks:eu-west-1:123456789012:cluster/a",
			ctx:      map[string][]string{"aws:RequestedRegion": {"eu-west-1"}},
			want:     Allow,
		},
		{
			name:     "version 2008: no substitution",
			policy:   `{"Version":"2008-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::home/${aws:username}/*"}}`,
			resource: "arn:aws:s3:::home/alice/notes.txt",
			p:        alice(),
			want:     ImplicitDeny,
		},
		{
			name:     "no version: no substitution, the text is literal",
			policy:   `{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::home/${aws:username}/*"}}`,
			resource: "arn:aws:s3:::home/${aws:username}/x",
			p:        alice(),
			want:     Allow,
		},
		{
			name:     "variable in a condition value",
			policy:   `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::b","Condition":{"StringLike":{"s3:prefix":["home/${aws:username}/*"]}}}}`,
			resource: "arn:aws:s3:::b",
			ctx:      map[string][]string{"s3:prefix": {"home/alice/docs"}},
			p:        alice(),
			want:     Allow,
		},
		{
			name:     "variable in a condition value, other user",
			policy:   `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::b","Condition":{"StringLike":{"s3:prefix":["home/${aws:username}/*"]}}}}`,
			resource: "arn:aws:s3:::b",
			ctx:      map[string][]string{"s3:prefix": {"home/bob/docs"}},
			p:        alice(),
			want:     ImplicitDeny,
		},
		{
			name:     "StringEquals against another key",
			policy:   `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"eks:*","Resource":"*","Condition":{"StringEquals":{"aws:ResourceTag/owner":"${aws:PrincipalTag/team}"}}}}`,
			resource: "arn:aws:eks:us-east-1:123456789012:cluster/a",
			ctx:      map[string][]string{"aws:ResourceTag/owner": {"blue"}, "aws:PrincipalTag/team": {"blue"}},
			want:     Allow,
		},
		{
			name:     "StringEquals against a missing key: that value does not match",
			policy:   `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"eks:*","Resource":"*","Condition":{"StringEquals":{"aws:ResourceTag/owner":"${aws:PrincipalTag/team}"}}}}`,
			resource: "arn:aws:eks:us-east-1:123456789012:cluster/a",
			ctx:      map[string][]string{"aws:ResourceTag/owner": {""}},
			want:     ImplicitDeny,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := mustParse(t, tt.policy)
			// The action of the first statement, with a trailing * made concrete.
			action := strings.TrimSuffix(doc.Statements[0].Action[0], "*") + "Anything"
			if !strings.HasSuffix(doc.Statements[0].Action[0], "*") {
				action = doc.Statements[0].Action[0]
			}
			req := Request{Principal: tt.p, Action: action, Resource: tt.resource, Context: tt.ctx}
			if got := Evaluate([]Named{{ID: "p", Doc: doc}}, req).Decision; got != tt.want {
				t.Errorf("Decision = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEvaluateResourceTrust(t *testing.T) {
	trust := func(principal string) string {
		return `{"Version":"2012-10-17","Statement":[{"Sid":"Trust","Effect":"Allow","Principal":` + principal + `,"Action":"sts:AssumeRole"}]}`
	}
	service := Principal{Service: "eks.amazonaws.com"}
	other := Principal{Arn: "arn:aws:iam::210987654321:user/mallory", Account: otherAcct}
	tests := []struct {
		name   string
		policy string
		p      Principal
		action string
		ctx    map[string][]string
		want   Decision
	}{
		{"* matches anyone", trust(`"*"`), other, "", nil, Allow},
		{"* matches a service", trust(`"*"`), service, "", nil, Allow},
		{"AWS * matches anyone", trust(`{"AWS":"*"}`), other, "", nil, Allow},
		{"account ID matches a user of the account", trust(`{"AWS":"123456789012"}`), alice(), "", nil, Allow},
		{"account ID matches a role session of the account", trust(`{"AWS":"123456789012"}`), session(), "", nil, Allow},
		{"account ID: other account", trust(`{"AWS":"123456789012"}`), other, "", nil, ImplicitDeny},
		{"account root ARN", trust(`{"AWS":"arn:aws:iam::123456789012:root"}`), alice(), "", nil, Allow},
		{"account root ARN: other account", trust(`{"AWS":"arn:aws:iam::123456789012:root"}`), other, "", nil, ImplicitDeny},
		{"account ID does not match a service", trust(`{"AWS":"123456789012"}`), service, "", nil, ImplicitDeny},
		{"user ARN", trust(`{"AWS":"` + aliceArn + `"}`), alice(), "", nil, Allow},
		{"user ARN: other user", trust(`{"AWS":"arn:aws:iam::123456789012:user/dev/bob"}`), alice(), "", nil, ImplicitDeny},
		{"user ARN in a list", trust(`{"AWS":["arn:aws:iam::123456789012:user/dev/bob","` + aliceArn + `"]}`), alice(), "", nil, Allow},
		{"role ARN matches its sessions", trust(`{"AWS":"` + roleArn + `"}`), session(), "", nil, Allow},
		{"role ARN does not match another role's session", trust(`{"AWS":"arn:aws:iam::123456789012:role/ops/other"}`), session(), "", nil, ImplicitDeny},
		{"role ARN does not match a user", trust(`{"AWS":"` + roleArn + `"}`), alice(), "", nil, ImplicitDeny},
		{"session ARN matches that session", trust(`{"AWS":"` + sessArn + `"}`), session(), "", nil, Allow},
		{"session ARN does not match another session", trust(`{"AWS":"arn:aws:sts::123456789012:assumed-role/deployer/other"}`), session(), "", nil, ImplicitDeny},
		{"service", trust(`{"Service":"eks.amazonaws.com"}`), service, "", nil, Allow},
		{"service in a list", trust(`{"Service":["ec2.amazonaws.com","eks.amazonaws.com"]}`), service, "", nil, Allow},
		{"other service", trust(`{"Service":"ec2.amazonaws.com"}`), service, "", nil, ImplicitDeny},
		{"service does not match a user", trust(`{"Service":"eks.amazonaws.com"}`), alice(), "", nil, ImplicitDeny},
		{"federated matches nothing", trust(`{"Federated":"arn:aws:iam::123456789012:saml-provider/x"}`), alice(), "", nil, ImplicitDeny},
		{"canonical user matches nothing", trust(`{"CanonicalUser":"79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"}`), alice(), "", nil, ImplicitDeny},
		{"action must match", trust(`"*"`), alice(), "sts:TagSession", nil, ImplicitDeny},
		{
			name:   "NotPrincipal deny",
			policy: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"sts:AssumeRole"},{"Effect":"Deny","NotPrincipal":{"AWS":"` + aliceArn + `"},"Action":"sts:AssumeRole"}]}`,
			p:      session(),
			want:   ExplicitDeny,
		},
		{
			name:   "NotPrincipal deny spares the listed principal",
			policy: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"sts:AssumeRole"},{"Effect":"Deny","NotPrincipal":{"AWS":"` + aliceArn + `"},"Action":"sts:AssumeRole"}]}`,
			p:      alice(),
			want:   Allow,
		},
		{
			name:   "external ID present and right",
			policy: `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"210987654321"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"s3cr3t"}}}}`,
			p:      other,
			ctx:    map[string][]string{"sts:ExternalId": {"s3cr3t"}},
			want:   Allow,
		},
		{
			name:   "external ID wrong",
			policy: `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"210987654321"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"s3cr3t"}}}}`,
			p:      other,
			ctx:    map[string][]string{"sts:ExternalId": {"guess"}},
			want:   ImplicitDeny,
		},
		{
			name:   "external ID missing",
			policy: `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"210987654321"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"s3cr3t"}}}}`,
			p:      other,
			want:   ImplicitDeny,
		},
		{
			name:   "external ID key is case-insensitive",
			policy: `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"210987654321"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:externalid":"s3cr3t"}}}}`,
			p:      other,
			ctx:    map[string][]string{"STS:ExternalId": {"s3cr3t"}},
			want:   Allow,
		},
		{
			name:   "aws:PrincipalArn of a session is its role",
			policy: `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"sts:AssumeRole","Condition":{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::123456789012:role/ops/*"}}}}`,
			p:      session(),
			want:   Allow,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := mustParseTrust(t, tt.policy)
			action := tt.action
			if action == "" {
				action = "sts:AssumeRole"
			}
			req := Request{Principal: tt.p, Action: action, Resource: roleArn, Context: tt.ctx}
			res := EvaluateResource(Named{ID: "trust", Doc: doc}, req)
			if res.Decision != tt.want {
				t.Errorf("Decision = %v, want %v", res.Decision, tt.want)
			}
			if tt.want == Allow && (len(res.Matched) == 0 || res.Matched[0].PolicyID != "trust") {
				t.Errorf("Matched = %+v", res.Matched)
			}
		})
	}
}

func TestEvaluateIgnoresPrincipalOfIdentityPolicies(t *testing.T) {
	doc := &Document{Version: Version2012, Statements: []Statement{
		{Effect: "Allow", Principal: map[string][]string{"AWS": {"arn:aws:iam::999999999999:root"}}, Action: []string{"s3:*"}, Resource: []string{"*"}},
	}}
	if got := Evaluate([]Named{{Doc: doc}}, Request{Principal: alice(), Action: "s3:GetObject", Resource: "*"}).Decision; got != Allow {
		t.Errorf("Decision = %v, want allowed", got)
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		p, s string
		esc  bool
		want bool
	}{
		{"*", "", false, true},
		{"*", "anything:at/all", false, true},
		{"", "", false, true},
		{"", "a", false, false},
		{"abc", "abc", false, true},
		{"abc", "abd", false, false},
		{"a*c", "abbbc", false, true},
		{"a*c", "abbbd", false, false},
		{"a*b*c", "axxbyyc", false, true},
		{"a*b*c", "axxcyyb", false, false},
		{"*a", "bba", false, true},
		{"a?c", "abc", false, true},
		{"a?c", "ac", false, false},
		{"a?c", "aéc", false, true},
		{"**", "x", false, true},
		{"a*", "a", false, true},
		{`a\*`, `a\b`, false, true},
		{`a\*`, "a*", true, true},
		{`a\*`, "ab", true, false},
		{`a\\*`, `a\bc`, true, true},
		{"arn:aws:s3:::b/*", "arn:aws:s3:::b/x/y", false, true},
		{"arn:aws:s3:::b/*", "arn:aws:s3:::bb/x", false, false},
	}
	for _, tt := range tests {
		if got := glob(tt.p, tt.s, tt.esc); got != tt.want {
			t.Errorf("glob(%q, %q, %v) = %v, want %v", tt.p, tt.s, tt.esc, got, tt.want)
		}
	}
}
