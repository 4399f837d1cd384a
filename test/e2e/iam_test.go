package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// TestIAMPolicies is issue 15's acceptance for IAM policies, with the
// stock aws CLI: what a principal may do is what its policies allow, as
// AWS evaluates them, and simulate-principal-policy agrees with the API.
func TestIAMPolicies(t *testing.T) {
	s := startServe(t, t.TempDir(), freePort(t))
	defer s.stop(t)
	account := mustAWS(t, s, "sts", "get-caller-identity")["Account"].(string)
	user := func(name string, policies ...string) []string {
		t.Helper()
		mustAWS(t, s, "iam", "create-user", "--user-name", name)
		for _, p := range policies {
			mustAWS(t, s, "iam", "attach-user-policy", "--user-name", name, "--policy-arn", p)
		}
		k := mustAWS(t, s, "iam", "create-access-key", "--user-name", name)["AccessKey"].(map[string]any)
		return withKey(s.env, k["AccessKeyId"].(string), k["SecretAccessKey"].(string))
	}
	as := func(env []string, args ...string) map[string]any {
		t.Helper()
		out, err := awsCLIEnv(t, s, env, args...)
		if err != nil {
			t.Fatalf("aws %v: %v %s", args, err, out)
		}
		var v map[string]any
		if strings.TrimSpace(out) != "" {
			json.Unmarshal([]byte(out), &v)
		}
		return v
	}
	denied := func(env []string, action, resource string, args ...string) {
		t.Helper()
		out, err := awsCLIEnv(t, s, env, args...)
		code := map[string]string{"eks": "AccessDeniedException", "iam": "AccessDenied", "sts": "AccessDenied", "ec2": "UnauthorizedOperation", "ecr": "AccessDeniedException"}[args[0]]
		if err == nil || !strings.Contains(out, "("+code+")") || !strings.Contains(out, "is not authorized to perform: "+action+" on resource: "+resource) {
			t.Errorf("aws %v: want %s for %s on %s, got %v: %s", args, code, action, resource, err, out)
		}
	}
	clusterArn := func(name string) string { return "arn:aws:eks:us-east-1:" + account + ":cluster/" + name }

	// Two clusters, one tagged env=prod.
	mustAWS(t, s, s.createArgs(t, "prod", "--tags", "env=prod")...)
	mustAWS(t, s, s.createArgs(t, "dev", "--tags", "env=dev")...)

	// A reader (a customer managed policy, versioned) may describe, not delete.
	doc := `{"Version":"2012-10-17","Statement":[{"Sid":"Read","Effect":"Allow","Action":["eks:Describe*","eks:List*"],"Resource":"*"}]}`
	readArn := mustAWS(t, s, "iam", "create-policy", "--policy-name", "eks-read", "--policy-document", doc)["Policy"].(map[string]any)["Arn"].(string)
	reader := user("reader", readArn)
	if c := as(reader, "eks", "describe-cluster", "--name", "prod")["cluster"].(map[string]any); c["name"] != "prod" {
		t.Errorf("reader describe: %v", c)
	}
	denied(reader, "eks:DeleteCluster", clusterArn("prod"), "eks", "delete-cluster", "--name", "prod")
	denied(reader, "iam:CreateAccessKey", "arn:aws:iam::"+account+":user/reader", "iam", "create-access-key")
	denied(reader, "ec2:DescribeVpcs", "*", "ec2", "describe-vpcs")
	denied(reader, "ecr:CreateRepository", "arn:aws:ecr:us-east-1:"+account+":repository/web", "ecr", "create-repository", "--repository-name", "web")
	// A new default version narrows it to one cluster.
	mustAWS(t, s, "iam", "create-policy-version", "--policy-arn", readArn, "--set-as-default", "--policy-document",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"eks:DescribeCluster","Resource":"`+clusterArn("dev")+`"}]}`)
	denied(reader, "eks:DescribeCluster", clusterArn("prod"), "eks", "describe-cluster", "--name", "prod")
	as(reader, "eks", "describe-cluster", "--name", "dev")
	if v := mustAWS(t, s, "iam", "list-policy-versions", "--policy-arn", readArn)["Versions"].([]any); len(v) != 2 {
		t.Errorf("versions: %v", v)
	}
	got := mustAWS(t, s, "iam", "get-policy-version", "--policy-arn", readArn, "--version-id", "v1")["PolicyVersion"].(map[string]any)
	if d, _ := json.Marshal(got["Document"]); !strings.Contains(string(d), "eks:List*") {
		t.Errorf("get-policy-version v1: %v", got)
	}
	mustAWS(t, s, "iam", "set-default-policy-version", "--policy-arn", readArn, "--version-id", "v1")
	as(reader, "eks", "describe-cluster", "--name", "prod")

	// An operator: AdministratorAccess, but a Deny on deleting what is
	// tagged env=prod, inline.
	op := user("operator", "arn:aws:iam::aws:policy/AdministratorAccess")
	mustAWS(t, s, "iam", "put-user-policy", "--user-name", "operator", "--policy-name", "keep-prod", "--policy-document",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"eks:DeleteCluster","Resource":"*","Condition":{"StringEquals":{"aws:ResourceTag/env":"prod"}}}]}`)
	if names := mustAWS(t, s, "iam", "list-user-policies", "--user-name", "operator")["PolicyNames"].([]any); len(names) != 1 {
		t.Errorf("list-user-policies: %v", names)
	}
	// simulate-principal-policy says what the API will do.
	sim := func(policySource, action, resource string, context ...string) string {
		t.Helper()
		args := []string{"iam", "simulate-principal-policy", "--policy-source-arn", policySource, "--action-names", action, "--resource-arns", resource}
		if len(context) > 0 {
			args = append(args, "--context-entries", "ContextKeyName="+context[0]+",ContextKeyValues="+context[1]+",ContextKeyType=string")
		}
		res := mustAWS(t, s, args...)["EvaluationResults"].([]any)
		return res[0].(map[string]any)["EvalDecision"].(string)
	}
	opArn := "arn:aws:iam::" + account + ":user/operator"
	if d := sim(opArn, "eks:DeleteCluster", clusterArn("prod"), "aws:ResourceTag/env", "prod"); d != "explicitDeny" {
		t.Errorf("simulate operator delete prod: %s", d)
	}
	if d := sim(opArn, "eks:DeleteCluster", clusterArn("dev"), "aws:ResourceTag/env", "dev"); d != "allowed" {
		t.Errorf("simulate operator delete dev: %s", d)
	}
	if d := sim("arn:aws:iam::"+account+":user/reader", "eks:DeleteCluster", clusterArn("dev")); d != "implicitDeny" {
		t.Errorf("simulate reader delete: %s", d)
	}
	denied(op, "eks:DeleteCluster", clusterArn("prod"), "eks", "delete-cluster", "--name", "prod")
	as(op, "eks", "delete-cluster", "--name", "dev")
	waitAWSStatus(t, s, "dev", "")

	// iam:PassRole: a creator may pass one role only.
	other := mustAWS(t, s, "iam", "create-role", "--role-name", "other-cluster-role", "--assume-role-policy-document",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"eks.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)["Role"].(map[string]any)["Arn"].(string)
	mustAWS(t, s, "iam", "create-group", "--group-name", "creators")
	mustAWS(t, s, "iam", "put-group-policy", "--group-name", "creators", "--policy-name", "create", "--policy-document",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["eks:*","ec2:Describe*"],"Resource":"*"},`+
			`{"Effect":"Allow","Action":"iam:PassRole","Resource":"`+s.clusterRole(t)+`","Condition":{"StringEquals":{"iam:PassedToService":"eks.amazonaws.com"}}}]}`)
	creator := user("creator")
	mustAWS(t, s, "iam", "add-user-to-group", "--group-name", "creators", "--user-name", "creator")
	if g := mustAWS(t, s, "iam", "list-groups-for-user", "--user-name", "creator")["Groups"].([]any); len(g) != 1 {
		t.Errorf("list-groups-for-user: %v", g)
	}
	subnets := "subnetIds=" + strings.Join(s.defaultSubnets(t), ",")
	denied(creator, "iam:PassRole", other, "eks", "create-cluster", "--name", "stolen-role", "--role-arn", other, "--resources-vpc-config", subnets)
	// (creator has eks:* through its group: the refusal is PassRole's.)
	// The role it may pass gets past authorization to the handler's own
	// validation (no such subnet), without making another cluster.
	out, err := awsCLIEnv(t, s, creator, "eks", "create-cluster", "--name", "passed", "--role-arn", s.clusterRole(t), "--resources-vpc-config", "subnetIds=subnet-0000000000000000a,subnet-0000000000000000b")
	wantAWSError(t, out, err, "InvalidParameterException")
	mustAWS(t, s, "iam", "remove-user-from-group", "--group-name", "creators", "--user-name", "creator")
	denied(creator, "eks:DeleteCluster", clusterArn("prod"), "eks", "delete-cluster", "--name", "prod")

	// Trust policies: the reader may assume a role that names it, not one
	// that trusts only EKS; the session ends with its role.
	trustsReader := mustAWS(t, s, "iam", "create-role", "--role-name", "for-reader", "--assume-role-policy-document",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::`+account+`:user/reader"},"Action":"sts:AssumeRole"}]}`)["Role"].(map[string]any)["Arn"].(string)
	denied(reader, "sts:AssumeRole", other, "sts", "assume-role", "--role-arn", other, "--role-session-name", "nope")
	creds := as(reader, "sts", "assume-role", "--role-arn", trustsReader, "--role-session-name", "ok")["Credentials"].(map[string]any)
	session := append(append([]string{}, s.env...), "AWS_ACCESS_KEY_ID="+creds["AccessKeyId"].(string),
		"AWS_SECRET_ACCESS_KEY="+creds["SecretAccessKey"].(string), "AWS_SESSION_TOKEN="+creds["SessionToken"].(string))
	sessArn := "arn:aws:sts::" + account + ":assumed-role/for-reader/ok"
	if who := as(session, "sts", "get-caller-identity"); who["Arn"] != sessArn {
		t.Errorf("session identity: %v", who)
	}
	denied(session, "eks:ListClusters", "*", "eks", "list-clusters")
	mustAWS(t, s, "iam", "delete-role", "--role-name", "for-reader")
	out, err = awsCLIEnv(t, s, session, "sts", "get-caller-identity")
	wantAWSError(t, out, err, "InvalidClientTokenId")

	// Managed policies: AWS's are listed and cannot be deleted; an attached
	// customer policy cannot be deleted either.
	managed := mustAWS(t, s, "iam", "list-policies", "--scope", "AWS")["Policies"].([]any)
	names := map[string]bool{}
	for _, p := range managed {
		names[p.(map[string]any)["PolicyName"].(string)] = true
	}
	for _, want := range []string{"AdministratorAccess", "ReadOnlyAccess", "AmazonEKSClusterPolicy", "AmazonEKSWorkerNodePolicy",
		"AmazonEC2ContainerRegistryReadOnly", "AmazonEC2ContainerRegistryPowerUser", "AmazonEKS_CNI_Policy"} {
		if !names[want] {
			t.Errorf("list-policies --scope AWS lacks %s", want)
		}
	}
	out, err = awsCLI(t, s, "iam", "delete-policy", "--policy-arn", readArn)
	wantAWSError(t, out, err, "DeleteConflict")
	out, err = awsCLI(t, s, "iam", "create-policy", "--policy-name", "broken", "--policy-document", `{"Statement":[{"Effect":"Allow","Action":"eks:*"}]}`)
	wantAWSError(t, out, err, "MalformedPolicyDocument")

	// Nothing refused changed anything: prod is still there.
	if names := mustAWS(t, s, "eks", "list-clusters")["clusters"].([]any); len(names) < 1 || names[0] != "prod" {
		t.Errorf("clusters: %v", names)
	}
	mustAWS(t, s, "eks", "delete-cluster", "--name", "prod")
	waitAWSStatus(t, s, "prod", "")
}

// TestSigV4Replay: a captured request cannot be replayed with another
// body by claiming the old body's hash (issue 15's first hole).
func TestSigV4Replay(t *testing.T) {
	s := startServe(t, t.TempDir(), freePort(t))
	defer s.stop(t)
	creds := aws.Credentials{AccessKeyID: envValue(s.env, "AWS_ACCESS_KEY_ID"), SecretAccessKey: envValue(s.env, "AWS_SECRET_ACCESS_KEY")}
	list := "Action=ListUsers&Version=2010-05-08"
	sum := sha256.Sum256([]byte(list))
	hash := hex.EncodeToString(sum[:])
	// Sign ListUsers, then send its headers with CreateAccessKey's body.
	req, _ := http.NewRequest("POST", s.endpoint+"/", strings.NewReader(list))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hash, "iam", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if code, body := do(t, s, req); code != 200 || !strings.Contains(body, "ListUsersResponse") {
		t.Fatalf("the signed request itself: %d %s", code, body)
	}
	replay, _ := http.NewRequest("POST", s.endpoint+"/", strings.NewReader("Action=CreateAccessKey&UserName=admin&Version=2010-05-08"))
	replay.Header = req.Header.Clone()
	replay.Header.Set("X-Amz-Content-Sha256", hash)
	if code, body := do(t, s, replay); code != 403 || !strings.Contains(body, "SignatureDoesNotMatch") {
		t.Errorf("replayed with another body: %d %s", code, body)
	}
	keys := mustAWS(t, s, "iam", "list-access-keys")["AccessKeyMetadata"].([]any)
	if len(keys) != 1 {
		t.Errorf("the replay made a key: %v", keys)
	}
	// A request signed with UNSIGNED-PAYLOAD leaves its body open: refused.
	unsigned, _ := http.NewRequest("POST", s.endpoint+"/", strings.NewReader(list))
	unsigned.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	unsigned.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, unsigned, "UNSIGNED-PAYLOAD", "iam", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if code, body := do(t, s, unsigned); code != 403 || !strings.Contains(body, "SignatureDoesNotMatch") {
		t.Errorf("unsigned payload: %d %s", code, body)
	}
}

func do(t *testing.T, s *server, req *http.Request) (int, string) {
	t.Helper()
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
