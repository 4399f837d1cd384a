package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v
		}
	}
	return ""
}

// signedRequest sends a request signed for eks at time at with s's admin key.
func signedRequest(t *testing.T, s *server, method, path, body string, at time.Time) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, s.endpoint+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256([]byte(body))
	creds := aws.Credentials{AccessKeyID: envValue(s.env, "AWS_ACCESS_KEY_ID"), SecretAccessKey: envValue(s.env, "AWS_SECRET_ACCESS_KEY")}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "eks", "us-east-1", at); err != nil {
		t.Fatal(err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, string(data)
}

func wantAWSError(t *testing.T, out string, err error, code string) {
	t.Helper()
	if err == nil || !strings.Contains(out, "("+code+")") {
		t.Errorf("want %s, got err=%v out=%s", code, err, out)
	}
}

// TestIdentity: accounts, IAM users and keys, roles, STS and SigV4, with the
// stock aws CLI; and that every refused request leaves the store unchanged.
func TestIdentity(t *testing.T) {
	s := startServe(t, t.TempDir(), freePort(t))
	defer s.stop(t)

	who := mustAWS(t, s, "sts", "get-caller-identity")
	account := who["Account"].(string)
	if len(account) != 12 || who["Arn"] != "arn:aws:iam::"+account+":user/admin" {
		t.Fatalf("get-caller-identity = %v", who)
	}

	// A user with its own key signs as itself.
	mustAWS(t, s, "iam", "create-user", "--user-name", "bob")
	key := mustAWS(t, s, "iam", "create-access-key", "--user-name", "bob")["AccessKey"].(map[string]any)
	bob := []string{"AWS_ACCESS_KEY_ID=" + key["AccessKeyId"].(string), "AWS_SECRET_ACCESS_KEY=" + key["SecretAccessKey"].(string)}
	out, err := awsCLIEnv(t, s, bob, "sts", "get-caller-identity", "--query", "Arn", "--output", "text")
	if err != nil || strings.TrimSpace(out) != "arn:aws:iam::"+account+":user/bob" {
		t.Errorf("bob's identity: %s %v", out, err)
	}
	out, err = awsCLI(t, s, "iam", "delete-user", "--user-name", "bob")
	wantAWSError(t, out, err, "DeleteConflict")
	out, err = awsCLI(t, s, "iam", "get-user", "--user-name", "nobody")
	wantAWSError(t, out, err, "NoSuchEntity")

	// Roles and AssumeRole: temporary credentials with a session token.
	role := s.clusterRole(t)
	out, err = awsCLI(t, s, "iam", "create-role", "--role-name", "skiff-e2e", "--assume-role-policy-document", "{}")
	wantAWSError(t, out, err, "MalformedPolicyDocument")
	out, err = awsCLI(t, s, "iam", "create-role", "--role-name", "skiff-e2e", "--assume-role-policy-document",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"`+account+`"},"Action":"sts:AssumeRole"}]}`)
	wantAWSError(t, out, err, "EntityAlreadyExists")
	// The cluster role trusts only EKS; a role trusting the account (whose
	// root may assume anything its trust policy allows) can be assumed.
	out, err = awsCLI(t, s, "sts", "assume-role", "--role-arn", role, "--role-session-name", "ci")
	wantAWSError(t, out, err, "AccessDenied")
	runner := mustAWS(t, s, "iam", "create-role", "--role-name", "ci-runner", "--assume-role-policy-document",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::`+account+`:root"},"Action":"sts:AssumeRole"}]}`)["Role"].(map[string]any)["Arn"].(string)
	mustAWS(t, s, "iam", "attach-role-policy", "--role-name", "ci-runner", "--policy-arn", "arn:aws:iam::aws:policy/ReadOnlyAccess")
	creds := mustAWS(t, s, "sts", "assume-role", "--role-arn", runner, "--role-session-name", "ci")["Credentials"].(map[string]any)
	session := []string{"AWS_ACCESS_KEY_ID=" + creds["AccessKeyId"].(string), "AWS_SECRET_ACCESS_KEY=" + creds["SecretAccessKey"].(string),
		"AWS_SESSION_TOKEN=" + creds["SessionToken"].(string)}
	out, err = awsCLIEnv(t, s, session, "sts", "get-caller-identity", "--query", "Arn", "--output", "text")
	if err != nil || strings.TrimSpace(out) != "arn:aws:sts::"+account+":assumed-role/ci-runner/ci" {
		t.Errorf("assumed identity: %s %v", out, err)
	}
	if _, err := awsCLIEnv(t, s, session, "eks", "list-clusters"); err != nil {
		t.Errorf("session credentials on EKS: %v", err)
	}
	out, err = awsCLIEnv(t, s, session[:2], "eks", "list-clusters")
	wantAWSError(t, out, err, "InvalidSignatureException")

	// A cluster to attack.
	mustAWS(t, s, s.createArgs(t, "mine")...)

	// Bad signatures, per service style.
	out, err = awsCLIEnv(t, s, []string{"AWS_SECRET_ACCESS_KEY=wrong"}, "eks", "delete-cluster", "--name", "mine")
	wantAWSError(t, out, err, "InvalidSignatureException")
	out, err = awsCLIEnv(t, s, []string{"AWS_SECRET_ACCESS_KEY=wrong"}, "iam", "delete-role", "--role-name", "skiff-e2e")
	wantAWSError(t, out, err, "SignatureDoesNotMatch")
	out, err = awsCLIEnv(t, s, []string{"AWS_ACCESS_KEY_ID=AKIAUNKNOWN0000000000"}, "eks", "delete-cluster", "--name", "mine")
	wantAWSError(t, out, err, "UnrecognizedClientException")
	out, err = awsCLIEnv(t, s, []string{"AWS_ACCESS_KEY_ID=AKIAUNKNOWN0000000000"}, "sts", "get-caller-identity")
	wantAWSError(t, out, err, "InvalidClientTokenId")
	resp, err := s.client.Post(s.endpoint+"/clusters", "application/json", bytes.NewBufferString(`{"name":"x"}`))
	if err != nil || resp.StatusCode != 403 || resp.Header.Get("x-amzn-ErrorType") != "MissingAuthenticationTokenException" {
		t.Errorf("unsigned: %v %v", resp, err)
	}
	r, body := signedRequest(t, s, "DELETE", "/clusters/mine", "", time.Now().Add(-20*time.Minute))
	if r.StatusCode != 403 || r.Header.Get("x-amzn-ErrorType") != "InvalidSignatureException" || !strings.Contains(body, "Signature expired") {
		t.Errorf("expired: %d %s %s", r.StatusCode, r.Header.Get("x-amzn-ErrorType"), body)
	}
	r, body = signedRequest(t, s, "POST", "/clusters", `{"name": "broken"`, time.Now())
	if r.StatusCode != 400 || r.Header.Get("x-amzn-ErrorType") != "InvalidRequestException" {
		t.Errorf("malformed JSON: %d %s %s", r.StatusCode, r.Header.Get("x-amzn-ErrorType"), body)
	}
	out, err = awsCLI(t, s, s.createArgs(t, strings.Repeat("n", 101))...)
	wantAWSError(t, out, err, "InvalidParameterException")
	out, err = awsCLI(t, s, "eks", "create-cluster", "--name", "norole", "--role-arn", "arn:aws:iam::"+account+":role/none", "--resources-vpc-config", "subnetIds="+strings.Join(s.defaultSubnets(t), ","))
	wantAWSError(t, out, err, "InvalidParameterException")

	// Another account sees nothing of ours, and may use the same name.
	other := &server{dataDir: s.dataDir, endpoint: s.endpoint, client: s.client, env: skiffEnv(t, s.dataDir, "other")}
	if got := mustAWS(t, other, "sts", "get-caller-identity")["Account"]; got == account {
		t.Fatal("accounts share an ID")
	}
	out, err = awsCLI(t, other, "eks", "describe-cluster", "--name", "mine")
	wantAWSError(t, out, err, "ResourceNotFoundException")
	out, err = awsCLI(t, other, "eks", "delete-cluster", "--name", "mine")
	wantAWSError(t, out, err, "ResourceNotFoundException")
	out, err = awsCLI(t, other, "sts", "assume-role", "--role-arn", role, "--role-session-name", "steal")
	wantAWSError(t, out, err, "AccessDenied")
	if names := mustAWS(t, other, "eks", "list-clusters")["clusters"].([]any); len(names) != 0 {
		t.Errorf("other account lists %v", names)
	}
	if c := mustAWS(t, other, other.createArgs(t, "mine")...)["cluster"].(map[string]any); !strings.Contains(c["arn"].(string), ":cluster/mine") || strings.Contains(c["arn"].(string), account) {
		t.Errorf("other account's cluster: %v", c["arn"])
	}

	// Nothing refused changed the store: our one cluster, untouched.
	if names := mustAWS(t, s, "eks", "list-clusters")["clusters"].([]any); len(names) != 1 || names[0] != "mine" {
		t.Errorf("clusters after refused requests: %v", names)
	}
	for _, x := range []*server{s, other} {
		mustAWS(t, x, "eks", "delete-cluster", "--name", "mine")
		waitAWSStatus(t, x, "mine", "")
	}
}
