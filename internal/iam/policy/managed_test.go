package policy

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"strings"
	"testing"
)

func TestManagedPoliciesParse(t *testing.T) {
	list := ManagedPolicies()
	if len(list) != 12 {
		t.Errorf("%d managed policies, want 12", len(list))
	}
	seen := map[string]bool{}
	for _, m := range list {
		t.Run(m.Name, func(t *testing.T) {
			if seen[m.Arn()] {
				t.Errorf("duplicate %s", m.Arn())
			}
			seen[m.Arn()] = true
			if m.Path != "/" || m.Arn() != "arn:aws:iam::aws:policy/"+m.Name {
				t.Errorf("Arn() = %q", m.Arn())
			}
			if !strings.HasPrefix(m.VersionID, "v") || m.Description == "" {
				t.Errorf("VersionID %q, Description %q", m.VersionID, m.Description)
			}
			if !json.Valid([]byte(m.Document)) {
				t.Fatal("document is not valid JSON")
			}
			doc, err := Parse(m.Document)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if doc.Version != Version2012 {
				t.Errorf("Version = %q", doc.Version)
			}
			got, ok := ManagedPolicy(m.Arn())
			if !ok || got != m {
				t.Errorf("ManagedPolicy(%q) = %v, %v", m.Arn(), got.Name, ok)
			}
		})
	}
	// Every embedded file is listed.
	files, err := fs.Glob(managedFS, "managed/*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(f, "managed/"), ".json")
		if !seen["arn:aws:iam::aws:policy/"+name] {
			t.Errorf("%s is embedded but not listed", f)
		}
	}
}

func TestManagedPolicyLookup(t *testing.T) {
	for _, arn := range []string{
		"arn:aws:iam::aws:policy/NoSuchPolicy",
		"arn:aws:iam::aws:policy/service-role/AdministratorAccess",
		"arn:aws:iam::123456789012:policy/AdministratorAccess",
		"AdministratorAccess",
		"",
	} {
		if m, ok := ManagedPolicy(arn); ok {
			t.Errorf("ManagedPolicy(%q) = %s", arn, m.Name)
		}
	}
}

func TestManagedPolicyDecisions(t *testing.T) {
	const cluster = "arn:aws:eks:us-east-1:123456789012:cluster/prod"
	const repo = "arn:aws:ecr:us-east-1:123456789012:repository/app"
	tests := []struct {
		policy   string
		action   string
		resource string
		ctx      map[string][]string
		want     Decision
	}{
		{"AdministratorAccess", "eks:DeleteCluster", cluster, nil, Allow},
		{"AdministratorAccess", "iam:CreateUser", "arn:aws:iam::123456789012:user/x", nil, Allow},
		{"AdministratorAccess", "anything:AtAll", "*", nil, Allow},
		{"ReadOnlyAccess", "eks:DescribeCluster", cluster, nil, Allow},
		{"ReadOnlyAccess", "eks:ListClusters", "*", nil, Allow},
		{"ReadOnlyAccess", "eks:DeleteCluster", cluster, nil, ImplicitDeny},
		{"ReadOnlyAccess", "eks:CreateCluster", "*", nil, ImplicitDeny},
		{"ReadOnlyAccess", "ec2:DescribeInstances", "*", nil, Allow},
		{"ReadOnlyAccess", "ec2:TerminateInstances", "*", nil, ImplicitDeny},
		{"ReadOnlyAccess", "ecr:BatchGetImage", repo, nil, Allow},
		{"ReadOnlyAccess", "ecr:PutImage", repo, nil, ImplicitDeny},
		{"AmazonEC2ContainerRegistryReadOnly", "ecr:BatchGetImage", repo, nil, Allow},
		{"AmazonEC2ContainerRegistryReadOnly", "ecr:GetAuthorizationToken", "*", nil, Allow},
		{"AmazonEC2ContainerRegistryReadOnly", "ecr:PutImage", repo, nil, ImplicitDeny},
		{"AmazonEC2ContainerRegistryPowerUser", "ecr:PutImage", repo, nil, Allow},
		{"AmazonEC2ContainerRegistryPowerUser", "ecr:DeleteRepository", repo, nil, ImplicitDeny},
		{"AmazonEC2ContainerRegistryFullAccess", "ecr:DeleteRepository", repo, nil, Allow},
		{"AmazonEKSWorkerNodePolicy", "eks:DescribeCluster", cluster, nil, Allow},
		{"AmazonEKSWorkerNodePolicy", "eks:DeleteCluster", cluster, nil, ImplicitDeny},
		{"AmazonEKS_CNI_Policy", "ec2:AssignPrivateIpAddresses", "*", nil, Allow},
		{"AmazonEKS_CNI_Policy", "ec2:CreateTags", "arn:aws:ec2:us-east-1:123456789012:network-interface/eni-1", nil, Allow},
		{"AmazonEKS_CNI_Policy", "ec2:CreateTags", "arn:aws:ec2:us-east-1:123456789012:instance/i-1", nil, ImplicitDeny},
		{"AmazonEKSClusterPolicy", "ec2:CreateSecurityGroup", "*", nil, Allow},
		{"AmazonEKSClusterPolicy", "ec2:DeleteNetworkInterface", "*", map[string][]string{"ec2:ResourceTag/eks:eni:owner": {"amazon-vpc-cni"}}, Allow},
		{"AmazonEKSClusterPolicy", "ec2:DeleteNetworkInterface", "*", nil, ImplicitDeny},
		{"AmazonEKSServicePolicy", "logs:CreateLogStream", "arn:aws:logs:us-east-1:123456789012:log-group:/aws/eks/prod/cluster:*", nil, Allow},
		{"AmazonEKSVPCResourceController", "ec2:CreateNetworkInterfacePermission", "*", map[string][]string{"ec2:ResourceTag/eks:eni:owner": {"eks-vpc-resource-controller"}}, Allow},
		{"IAMReadOnlyAccess", "iam:GetRole", "arn:aws:iam::123456789012:role/x", nil, Allow},
		{"IAMReadOnlyAccess", "iam:CreateRole", "arn:aws:iam::123456789012:role/x", nil, ImplicitDeny},
		{"IAMFullAccess", "iam:CreateRole", "arn:aws:iam::123456789012:role/x", nil, Allow},
		{"IAMFullAccess", "eks:DescribeCluster", cluster, nil, ImplicitDeny},
	}
	docs := map[string]*Document{}
	for _, tt := range tests {
		t.Run(tt.policy+"/"+tt.action, func(t *testing.T) {
			doc := docs[tt.policy]
			if doc == nil {
				m, ok := ManagedPolicy("arn:aws:iam::aws:policy/" + tt.policy)
				if !ok {
					t.Fatalf("no managed policy %s", tt.policy)
				}
				doc = mustParse(t, m.Document)
				docs[tt.policy] = doc
			}
			req := Request{Principal: alice(), Action: tt.action, Resource: tt.resource, Context: tt.ctx}
			res := Evaluate([]Named{{ID: "arn:aws:iam::aws:policy/" + tt.policy, Doc: doc}}, req)
			if res.Decision != tt.want {
				t.Errorf("%s on %s: %v, want %v", tt.action, tt.resource, res.Decision, tt.want)
			}
		})
	}
}

// BenchmarkEvaluate evaluates a request against 20 policies, the managed ones (ReadOnlyAccess
// holds about 3,000 action patterns) and customer policies with conditions and variables.
func BenchmarkEvaluate(b *testing.B) {
	var named []Named
	for _, m := range ManagedPolicies() {
		named = append(named, Named{ID: m.Arn(), Doc: mustParse(b, m.Document)})
	}
	for i := len(named); i < 20; i++ {
		text := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
			{"Sid":"S%d","Effect":"Allow","Action":["eks:Describe*","eks:List*","s3:Get*"],"Resource":"arn:aws:eks:*:123456789012:cluster/${aws:PrincipalTag/team}-*",
			 "Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","2001:db8::/32"]},"StringEqualsIfExists":{"aws:RequestedRegion":"us-east-1"}}},
			{"Effect":"Deny","Action":"eks:Delete*","Resource":"*","Condition":{"StringNotEquals":{"aws:PrincipalTag/role":"admin"}}}]}`, i)
		named = append(named, Named{ID: fmt.Sprint("p", i), Doc: mustParse(b, text)})
	}
	req := Request{
		Principal: alice(),
		Action:    "eks:DescribeCluster",
		Resource:  "arn:aws:eks:us-east-1:123456789012:cluster/blue-prod",
		Context: map[string][]string{
			"aws:SourceIp":          {"10.1.2.3"},
			"aws:RequestedRegion":   {"us-east-1"},
			"aws:PrincipalTag/team": {"blue"},
			"aws:CurrentTime":       {"2026-05-01T12:00:00Z"},
		},
	}
	if res := Evaluate(named, req); res.Decision != Allow {
		b.Fatalf("Decision = %v", res.Decision)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Evaluate(named, req)
	}
}
