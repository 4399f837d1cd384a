package authz

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"skiff.dev/skiff/internal/api/eks"
	"skiff.dev/skiff/internal/api/skiffapi"
	"skiff.dev/skiff/internal/botocore"
	"skiff.dev/skiff/internal/iam"
	"skiff.dev/skiff/internal/kms"
	"skiff.dev/skiff/internal/store"
)

// TestRoutesCoverHandlers: every operation the EKS and /skiff/v1/
// handlers serve has its IAM action here, and nothing else is listed.
func TestRoutesCoverHandlers(t *testing.T) {
	served := append(eks.New(eks.Handler{}).Patterns(), skiffapi.New(skiffapi.Handler{}).Patterns()...)
	var listed []string
	for _, r := range EKSRoutes {
		listed = append(listed, r.pattern)
	}
	sort.Strings(served)
	sort.Strings(listed)
	if !slices.Equal(served, listed) {
		t.Errorf("handlers serve\n%v\nauthz lists\n%v", served, listed)
	}
}

// botocoreModel reads a service model of the installed AWS CLI.
func botocoreModel(t *testing.T, service string) map[string]any {
	t.Helper()
	data, err := botocore.Model(service)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestEKSOperationsAreBotocore's: each EKS operation's name and HTTP
// binding is the one of botocore's model, so its IAM action is right.
func TestEKSOperationsAreBotocores(t *testing.T) {
	ops := botocoreModel(t, "eks")["operations"].(map[string]any)
	for _, r := range EKSRoutes {
		if strings.Contains(r.pattern, " /skiff/") { // skiff's own
			continue
		}
		op, ok := ops[r.op].(map[string]any)
		if !ok {
			t.Errorf("%s: no such EKS operation", r.op)
			continue
		}
		h := op["http"].(map[string]any)
		uri, _, _ := strings.Cut(h["requestUri"].(string), "?")
		uri = strings.ReplaceAll(uri, "{resourceArn}", "{arn...}")
		got := h["method"].(string) + " " + uri
		// Path parameter names differ; compare the shapes.
		norm := func(s string) string {
			parts := strings.Split(s, "/")
			for i, p := range parts {
				if strings.HasPrefix(p, "{") {
					parts[i] = "{}"
				}
			}
			return strings.Join(parts, "/")
		}
		if norm(got) != norm(r.pattern) {
			t.Errorf("%s: botocore binds %q, skiff %q", r.op, got, r.pattern)
		}
	}
}

func newIAM(t *testing.T) (*iam.Service, string) {
	st, err := store.Open(filepath.Join(t.TempDir(), "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := &iam.Service{Store: st}
	a, _, err := s.EnsureAccount("a")
	if err != nil {
		t.Fatal(err)
	}
	return s, a.ID
}

// TestDescribe: the action and resource of requests of each service.
func TestDescribe(t *testing.T) {
	ids, acct := newIAM(t)
	a := &Authorizer{IAM: ids, Region: "us-east-1", Resolve: func(account, kind string, names ...string) (string, map[string]string, bool) {
		if kind == "cluster" && names[0] == "prod" {
			return "arn:aws:eks:us-east-1:" + account + ":cluster/prod", map[string]string{"env": "prod"}, true
		}
		if kind == "nodegroup" && names[1] == "ng" {
			return "arn:aws:eks:us-east-1:" + account + ":nodegroup/prod/ng/1234", nil, true
		}
		return "", nil, false
	}}
	ids.CreateUser(acct, "bob", "/team/")
	caller := &iam.Principal{Account: acct, User: "bob", Arn: "arn:aws:iam::" + acct + ":user/team/bob"}
	eksArn := "arn:aws:eks:us-east-1:" + acct + ":"
	form := func(v string) func() *http.Request {
		return func() *http.Request {
			r := httptest.NewRequest("POST", "/", strings.NewReader(v))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}
	}
	tests := []struct {
		service string
		req     func() *http.Request
		body    string
		want    []string // action resource [key=value]
	}{
		{"eks", func() *http.Request { return httptest.NewRequest("GET", "/clusters/prod", nil) }, "",
			[]string{"eks:DescribeCluster " + eksArn + "cluster/prod aws:ResourceTag/env=prod"}},
		{"eks", func() *http.Request { return httptest.NewRequest("DELETE", "/clusters/dev", nil) }, "",
			[]string{"eks:DeleteCluster " + eksArn + "cluster/dev"}},
		{"eks", func() *http.Request { return httptest.NewRequest("GET", "/clusters", nil) }, "", []string{"eks:ListClusters *"}},
		{"eks", func() *http.Request { return httptest.NewRequest("POST", "/clusters", nil) },
			`{"name":"new","roleArn":"arn:aws:iam::` + acct + `:role/eks","tags":{"team":"a"}}`,
			[]string{"eks:CreateCluster " + eksArn + "cluster/new aws:RequestTag/team=a", "iam:PassRole arn:aws:iam::" + acct + ":role/eks iam:PassedToService=eks.amazonaws.com"}},
		{"eks", func() *http.Request { return httptest.NewRequest("POST", "/clusters/prod/node-groups", nil) },
			`{"nodegroupName":"ng2","nodeRole":"arn:aws:iam::` + acct + `:role/nodes"}`,
			[]string{"eks:CreateNodegroup " + eksArn + "cluster/prod aws:ResourceTag/env=prod", "iam:PassRole arn:aws:iam::" + acct + ":role/nodes iam:PassedToService=ec2.amazonaws.com"}},
		{"eks", func() *http.Request { return httptest.NewRequest("GET", "/clusters/prod/node-groups/ng", nil) }, "",
			[]string{"eks:DescribeNodegroup " + eksArn + "nodegroup/prod/ng/1234"}},
		{"eks", func() *http.Request { return httptest.NewRequest("GET", "/clusters/prod/addons/vpc-cni", nil) }, "",
			[]string{"eks:DescribeAddon " + eksArn + "addon/prod/vpc-cni/*"}},
		{"eks", func() *http.Request {
			return httptest.NewRequest("POST", "/tags/"+strings.ReplaceAll(eksArn+"cluster/prod", "/", "%2F"), nil)
		}, `{"tags":{"x":"y"}}`, []string{"eks:TagResource " + eksArn + "cluster/prod aws:RequestTag/x=y aws:ResourceTag/env=prod"}},
		{"eks", func() *http.Request { return httptest.NewRequest("GET", "/skiff/v1/clusters/prod/kubeconfig", nil) }, "",
			[]string{"eks:DescribeCluster " + eksArn + "cluster/prod aws:ResourceTag/env=prod"}},
		{"eks", func() *http.Request { return httptest.NewRequest("GET", "/no/such/thing", nil) }, "",
			[]string{"eks:UnknownOperation *"}},
		{"iam", form("Action=CreateUser&UserName=eve&Path=/ops/"), "", []string{"iam:CreateUser arn:aws:iam::" + acct + ":user/ops/eve"}},
		{"iam", form("Action=DeleteUser&UserName=bob"), "", []string{"iam:DeleteUser arn:aws:iam::" + acct + ":user/team/bob"}},
		{"iam", form("Action=CreateAccessKey"), "", []string{"iam:CreateAccessKey arn:aws:iam::" + acct + ":user/team/bob"}},
		{"iam", form("Action=ListUsers"), "", []string{"iam:ListUsers arn:aws:iam::" + acct + ":user/*"}},
		{"iam", form("Action=AttachUserPolicy&UserName=bob&PolicyArn=arn:aws:iam::aws:policy/ReadOnlyAccess"), "",
			[]string{"iam:AttachUserPolicy arn:aws:iam::" + acct + ":user/team/bob iam:PolicyARN=arn:aws:iam::aws:policy/ReadOnlyAccess"}},
		{"iam", form("Action=GetPolicy&PolicyArn=arn:aws:iam::aws:policy/ReadOnlyAccess"), "", []string{"iam:GetPolicy arn:aws:iam::aws:policy/ReadOnlyAccess"}},
		{"sts", form("Action=GetCallerIdentity"), "", nil},
		{"sts", form("Action=AssumeRole&RoleArn=arn:aws:iam::1:role/x"), "", []string{"sts:AssumeRole arn:aws:iam::1:role/x"}},
		{"ec2", form("Action=DeleteVpc&VpcId=vpc-1"), "", []string{"ec2:DeleteVpc arn:aws:ec2:us-east-1:" + acct + ":vpc/vpc-1"}},
		{"ec2", form("Action=DescribeSubnets"), "", []string{"ec2:DescribeSubnets *"}},
		{"ecr", func() *http.Request {
			r := httptest.NewRequest("POST", "/", nil)
			r.Header.Set("X-Amz-Target", ECRTargetPrefix+"DeleteRepository")
			return r
		}, `{"repositoryName":"web"}`, []string{"ecr:DeleteRepository arn:aws:ecr:us-east-1:" + acct + ":repository/web"}},
		{"ecr", func() *http.Request {
			r := httptest.NewRequest("POST", "/", nil)
			r.Header.Set("X-Amz-Target", ECRTargetPrefix+"GetAuthorizationToken")
			return r
		}, `{}`, []string{"ecr:GetAuthorizationToken *"}},
	}
	for _, tt := range tests {
		r := tt.req()
		body := []byte(tt.body)
		if tt.body == "" && r.Body != nil {
			body, _ = io.ReadAll(r.Body)
		}
		op := a.Describe(tt.service, r, body, caller, "us-east-1")
		var got []string
		for _, c := range op.Checks {
			s := c.Action + " " + c.Resource
			var keys []string
			for k, v := range c.Context {
				if k != "aws:TagKeys" {
					keys = append(keys, k+"="+strings.Join(v, ","))
				}
			}
			sort.Strings(keys)
			for _, k := range keys {
				s += " " + k
			}
			got = append(got, s)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s %s %s: got\n%q\nwant\n%q", tt.service, r.Method, r.URL, got, tt.want)
		}
	}
}

// TestAuthorize: what policies allow, deny, and the AWS message.
func TestAuthorize(t *testing.T) {
	ids, acct := newIAM(t)
	a := &Authorizer{IAM: ids, Region: "us-east-1"}
	ids.CreateUser(acct, "bob", "")
	bob := &iam.Principal{Account: acct, User: "bob", Arn: "arn:aws:iam::" + acct + ":user/bob"}
	root := &iam.Principal{Account: acct, User: "admin", Arn: "arn:aws:iam::" + acct + ":user/admin", Root: true}
	cluster := "arn:aws:eks:us-east-1:" + acct + ":cluster/prod"
	describe := Operation{Service: "eks", Name: "DescribeCluster", Checks: []Check{{Action: "eks:DescribeCluster", Resource: cluster}}}
	del := Operation{Service: "eks", Name: "DeleteCluster", Checks: []Check{{Action: "eks:DeleteCluster", Resource: cluster,
		Context: map[string][]string{"aws:ResourceTag/env": {"prod"}}}}}
	r := httptest.NewRequest("GET", "/", nil)

	var denied *Denied
	_, err := a.Authorize(r, bob, describe, "us-east-1")
	if !errors.As(err, &denied) || err.Error() != "User: "+bob.Arn+" is not authorized to perform: eks:DescribeCluster on resource: "+cluster+
		" because no identity-based policy allows the eks:DescribeCluster action" {
		t.Fatalf("no policy: %v", err)
	}
	if _, err := a.Authorize(r, root, del, "us-east-1"); err != nil {
		t.Fatalf("root: %v", err)
	}
	ids.AttachPolicy(iam.KindUser, acct, "bob", "arn:aws:iam::aws:policy/AdministratorAccess")
	ids.PutInlinePolicy(iam.KindUser, acct, "bob", "keep-prod", `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"eks:DeleteCluster","Resource":"*","Condition":{"StringEquals":{"aws:ResourceTag/env":"prod"}}}]}`)
	if _, err := a.Authorize(r, bob, describe, "us-east-1"); err != nil {
		t.Fatalf("admin describe: %v", err)
	}
	_, err = a.Authorize(r, bob, del, "us-east-1")
	if !errors.As(err, &denied) || !denied.Explicit || !strings.HasSuffix(err.Error(), "with an explicit deny in an identity-based policy") {
		t.Fatalf("tagged delete: %v", err)
	}
	del.Checks[0].Context = nil
	if _, err := a.Authorize(r, bob, del, "us-east-1"); err != nil {
		t.Fatalf("untagged delete: %v", err)
	}
	// Global keys: aws:SourceIp and aws:username come from the request.
	ids.PutInlinePolicy(iam.KindUser, acct, "bob", "from-lab", `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}`)
	r.RemoteAddr = "192.0.2.1:4000"
	if _, err := a.Authorize(r, bob, describe, "us-east-1"); !errors.As(err, &denied) {
		t.Fatalf("from outside the lab: %v", err)
	}
	r.RemoteAddr = "10.1.2.3:4000"
	if _, err := a.Authorize(r, bob, describe, "us-east-1"); err != nil {
		t.Fatalf("from the lab: %v", err)
	}
}

// TestContextKeys: the request context Describe and Authorize build
// carries the global keys (aws:RequestedRegion from the signature,
// aws:PrincipalArn, the role's for a session, aws:SourceIp) and EKS' own
// (eks:principalArn, eks:kubernetesGroups, eks:username, eks:policyArn):
// a policy allowing only under a condition on the key allows the request
// with the right value and not with a wrong one (issue 15).
func TestContextKeys(t *testing.T) {
	ids, acct := newIAM(t)
	a := &Authorizer{IAM: ids, Region: "us-east-1"}
	if _, err := ids.CreateUser(acct, "bob", ""); err != nil {
		t.Fatal(err)
	}
	const trust = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"eks.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	role, err := ids.CreateRole(acct, "ops", "", trust, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	bob := &iam.Principal{Account: acct, User: "bob", Arn: "arn:aws:iam::" + acct + ":user/bob", UserID: "AIDABOB"}
	session := &iam.Principal{Account: acct, Role: "ops", RoleArn: role.Arn(), Arn: "arn:aws:sts::" + acct + ":assumed-role/ops/s1", UserID: role.ID + ":s1"}
	dev := "arn:aws:iam::" + acct + ":role/dev"
	entry := "/clusters/prod/access-entries/" + url.PathEscape(dev)
	view := "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"
	edit := "arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy"
	tests := []struct {
		key, operator string
		caller        *iam.Principal
		op            string // the operation the request is
		method, path  string
		body          string
		region, from  string // the signature's region, the client's address
		right, wrong  string // the condition's value
	}{
		{"aws:RequestedRegion", "StringEquals", bob, "DescribeCluster", "GET", "/clusters/prod", "", "eu-west-1", "192.0.2.1", "eu-west-1", "us-east-1"},
		{"aws:PrincipalArn", "ArnEquals", bob, "DescribeCluster", "GET", "/clusters/prod", "", "us-east-1", "192.0.2.1", bob.Arn, "arn:aws:iam::" + acct + ":user/eve"},
		{"aws:PrincipalArn", "ArnEquals", session, "DescribeCluster", "GET", "/clusters/prod", "", "us-east-1", "192.0.2.1", role.Arn(), session.Arn},
		{"aws:SourceIp", "IpAddress", bob, "DescribeCluster", "GET", "/clusters/prod", "", "us-east-1", "10.1.2.3", "10.0.0.0/8", "192.0.2.0/24"},
		{"eks:principalArn", "ArnEquals", bob, "CreateAccessEntry", "POST", "/clusters/prod/access-entries", `{"principalArn":"` + dev + `"}`, "us-east-1", "192.0.2.1", dev, "arn:aws:iam::" + acct + ":role/admin"},
		{"eks:kubernetesGroups", "ForAnyValue:StringEquals", bob, "CreateAccessEntry", "POST", "/clusters/prod/access-entries", `{"principalArn":"` + dev + `","kubernetesGroups":["viewers","auditors"]}`, "us-east-1", "192.0.2.1", "viewers", "system:masters"},
		{"eks:username", "StringEquals", bob, "UpdateAccessEntry", "POST", entry, `{"username":"dev-user"}`, "us-east-1", "192.0.2.1", "dev-user", "admin"},
		{"eks:policyArn", "ArnEquals", bob, "AssociateAccessPolicy", "POST", entry + "/access-policies", `{"policyArn":"` + view + `","accessScope":{"type":"cluster"}}`, "us-east-1", "192.0.2.1", view, edit},
	}
	for _, tt := range tests {
		name := tt.key
		if tt.caller.Role != "" {
			name += "/session"
		}
		t.Run(name, func(t *testing.T) {
			kind, entity := iam.KindUser, "bob"
			if tt.caller.Role != "" {
				kind, entity = iam.KindRole, "ops"
			}
			for _, c := range []struct {
				value string
				allow bool
			}{{tt.right, true}, {tt.wrong, false}} {
				doc := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"eks:*","Resource":"*","Condition":{%q:{%q:%q}}}]}`,
					tt.operator, tt.key, c.value)
				if err := ids.PutInlinePolicy(kind, acct, entity, "cond", doc); err != nil {
					t.Fatal(err)
				}
				r := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
				r.RemoteAddr = tt.from + ":4000"
				op := a.Describe("eks", r, []byte(tt.body), tt.caller, tt.region)
				if op.Name != tt.op || len(op.Checks) == 0 {
					t.Fatalf("%s %s: %+v, want %s", tt.method, tt.path, op, tt.op)
				}
				_, err := a.Authorize(r, tt.caller, op, tt.region)
				var denied *Denied
				switch {
				case c.allow && err != nil:
					t.Errorf("%s %s = %q: %v", tt.operator, tt.key, c.value, err)
				case !c.allow && !errors.As(err, &denied):
					t.Errorf("%s %s = %q: allowed (%v), want denied", tt.operator, tt.key, c.value, err)
				}
			}
		})
	}
}

// TestDescribeKMS: the action, resource and condition keys of KMS
// requests: the key's ARN however the request names the key (by alias
// through the resolver, by the ciphertext blob for a Decrypt without
// KeyId), "*" for CreateKey, ListKeys and ListAliases, the alias and its
// key for alias operations.
func TestDescribeKMS(t *testing.T) {
	ids, acct := newIAM(t)
	st, err := store.Open(filepath.Join(t.TempDir(), "kms.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	root, err := kms.NewRootKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	keys := &kms.Service{Store: st, Root: root, Region: "us-east-1", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	k, err := keys.CreateKey(acct, "", map[string]string{"team": "a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.CreateAlias(acct, "alias/app", k.ID); err != nil {
		t.Fatal(err)
	}
	blob, _, err := keys.Encrypt(acct, k.ID, []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &Authorizer{IAM: ids, Region: "us-east-1", Resolve: func(account, kind string, names ...string) (string, map[string]string, bool) {
		if kind != "key" {
			return "", nil, false
		}
		return keys.Resolve(account, names[0])
	}}
	caller := &iam.Principal{Account: acct, User: "bob", Arn: "arn:aws:iam::" + acct + ":user/bob"}
	arn := k.Arn("us-east-1")
	base := "arn:aws:kms:us-east-1:" + acct + ":"
	b64 := base64.StdEncoding.EncodeToString
	tests := []struct {
		op, body string
		want     []string // action resource [key=value]
	}{
		{"CreateKey", `{"Tags":[{"TagKey":"env","TagValue":"prod"}]}`, []string{"kms:CreateKey * aws:RequestTag/env=prod aws:TagKeys=env"}},
		{"ListKeys", `{}`, []string{"kms:ListKeys *"}},
		{"ListAliases", `{"KeyId":"alias/app"}`, []string{"kms:ListAliases * kms:RequestAlias=alias/app"}},
		{"DescribeKey", `{"KeyId":"` + k.ID + `"}`, []string{"kms:DescribeKey " + arn + " aws:ResourceTag/team=a"}},
		{"DescribeKey", `{"KeyId":"` + arn + `"}`, []string{"kms:DescribeKey " + arn + " aws:ResourceTag/team=a"}},
		{"Encrypt", `{"KeyId":"alias/app","EncryptionContext":{"ns":"prod","app":"web"}}`,
			[]string{"kms:Encrypt " + arn + " aws:ResourceTag/team=a kms:EncryptionContext:app=web kms:EncryptionContext:ns=prod kms:EncryptionContextKeys=app,ns kms:RequestAlias=alias/app"}},
		{"Encrypt", `{"KeyId":"` + base + `alias/app"}`, []string{"kms:Encrypt " + arn + " aws:ResourceTag/team=a"}},
		{"Encrypt", `{"KeyId":"alias/none"}`, []string{"kms:Encrypt " + base + "alias/none kms:RequestAlias=alias/none"}},
		{"Encrypt", `{"KeyId":"00000000-0000-4000-8000-000000000000"}`, []string{"kms:Encrypt " + base + "key/00000000-0000-4000-8000-000000000000"}},
		{"Decrypt", `{"CiphertextBlob":"` + b64(blob) + `"}`, []string{"kms:Decrypt " + arn + " aws:ResourceTag/team=a"}},
		{"Decrypt", `{"CiphertextBlob":"` + b64([]byte("garbage")) + `"}`, []string{"kms:Decrypt *"}},
		{"GenerateDataKey", `{"KeyId":"alias/app","KeySpec":"AES_256"}`, []string{"kms:GenerateDataKey " + arn + " aws:ResourceTag/team=a kms:RequestAlias=alias/app"}},
		{"CreateAlias", `{"AliasName":"alias/new","TargetKeyId":"` + k.ID + `"}`,
			[]string{"kms:CreateAlias " + base + "alias/new", "kms:CreateAlias " + arn + " aws:ResourceTag/team=a"}},
		{"DeleteAlias", `{"AliasName":"alias/app"}`, []string{"kms:DeleteAlias " + base + "alias/app", "kms:DeleteAlias " + arn + " aws:ResourceTag/team=a"}},
		{"DeleteAlias", `{"AliasName":"alias/none"}`, []string{"kms:DeleteAlias " + base + "alias/none"}},
		{"TagResource", `{"KeyId":"` + k.ID + `","Tags":[{"TagKey":"env","TagValue":"prod"}]}`,
			[]string{"kms:TagResource " + arn + " aws:RequestTag/env=prod aws:ResourceTag/team=a aws:TagKeys=env"}},
		{"UntagResource", `{"KeyId":"` + k.ID + `","TagKeys":["team"]}`, []string{"kms:UntagResource " + arn + " aws:ResourceTag/team=a aws:TagKeys=team"}},
		{"ScheduleKeyDeletion", `{"KeyId":"` + k.ID + `"}`, []string{"kms:ScheduleKeyDeletion " + arn + " aws:ResourceTag/team=a"}},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "/", nil)
		r.Header.Set("X-Amz-Target", KMSTargetPrefix+tt.op)
		op := a.Describe("kms", r, []byte(tt.body), caller, "us-east-1")
		var got []string
		for _, c := range op.Checks {
			s := c.Action + " " + c.Resource
			var keys []string
			for k, v := range c.Context {
				keys = append(keys, k+"="+strings.Join(v, ","))
			}
			sort.Strings(keys)
			for _, k := range keys {
				s += " " + k
			}
			got = append(got, s)
		}
		if op.Service != "kms" || op.Name != tt.op || !slices.Equal(got, tt.want) {
			t.Errorf("%s %s: %s %s, got\n%q\nwant\n%q", tt.op, tt.body, op.Service, op.Name, got, tt.want)
		}
	}

	// A policy on the key's ARN allows the key by alias and by blob, and
	// nothing else.
	ids.CreateUser(acct, "bob", "")
	ids.PutInlinePolicy(iam.KindUser, acct, "bob", "one-key", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:Encrypt","kms:Decrypt"],"Resource":"`+arn+`"}]}`)
	for _, tt := range []struct {
		op, body string
		allow    bool
	}{
		{"Encrypt", `{"KeyId":"alias/app"}`, true},
		{"Decrypt", `{"CiphertextBlob":"` + b64(blob) + `"}`, true},
		{"Encrypt", `{"KeyId":"alias/none"}`, false},
		{"GenerateDataKey", `{"KeyId":"alias/app"}`, false},
		{"CreateKey", `{}`, false},
	} {
		r := httptest.NewRequest("POST", "/", nil)
		r.Header.Set("X-Amz-Target", KMSTargetPrefix+tt.op)
		_, err := a.Authorize(r, caller, a.Describe("kms", r, []byte(tt.body), caller, "us-east-1"), "us-east-1")
		if (err == nil) != tt.allow {
			t.Errorf("%s %s: %v, want allowed %v", tt.op, tt.body, err, tt.allow)
		}
	}
}
