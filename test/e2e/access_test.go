package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// kubectlEnv runs the stock kubectl with extra environment (the exec
// plugin of an `aws eks update-kubeconfig` kubeconfig runs the aws CLI,
// which needs skiff's endpoint and credentials).
func kubectlEnv(t testing.TB, env []string, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bin, pre := kubectlCommand(t)
	cmd := exec.CommandContext(ctx, bin, append(append(pre, "--kubeconfig", kubeconfig), args...)...)
	cmd.Env = append(append(os.Environ(), "AWS_PAGER=", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_SESSION_TOKEN="), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// withKey returns env with another access key.
func withKey(env []string, id, secret string) []string {
	return append(append([]string(nil), env...), "AWS_ACCESS_KEY_ID="+id, "AWS_SECRET_ACCESS_KEY="+secret)
}

// eventually retries check for up to d, returning its last error.
func eventually(d time.Duration, check func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// unauthorizedGeneric is client-go's message for a 401 whose body it did not
// decode as a Status (for example the aggregated-discovery request kubectl
// makes first when it has no discovery cache for the server).
const unauthorizedGeneric = "the server has asked for the client to provide credentials"

// refused is nil if kubectl failed with want ("Unauthorized" or "Forbidden").
// For "Unauthorized", client-go's generic 401 message counts too: both are
// HTTP 401 from the apiserver.
func refused(want string) func(string, error) error {
	return func(out string, err error) error {
		if err != nil && (strings.Contains(out, want) || want == "Unauthorized" && strings.Contains(out, unauthorizedGeneric)) {
			return nil
		}
		return fmt.Errorf("want %s, got err=%v: %s", want, err, out)
	}
}

// TestClusterAccess is issue 5's acceptance, with the stock aws CLI and
// kubectl: `aws eks update-kubeconfig` kubeconfigs whose exec plugin runs
// `aws eks get-token`, checked by skiff's token-review webhook and mapped
// through access entries; access policies as RBAC; bad tokens refused.
func TestClusterAccess(t *testing.T) {
	s, dataDir := serveTest(t)
	mustAWS(t, s, s.createArgs(t, "a")...)
	mustAWS(t, s, s.createArgs(t, "b", "--access-config", "authenticationMode=API")...)
	waitAWSStatus(t, s, "a", "ACTIVE")
	waitAWSStatus(t, s, "b", "ACTIVE")
	account := mustAWS(t, s, "sts", "get-caller-identity")["Account"].(string)
	adminArn := "arn:aws:iam::" + account + ":user/admin"

	// The creator: update-kubeconfig, then kubectl through `aws eks get-token`.
	kcA, kcB := filepath.Join(dataDir, "a.kubeconfig"), filepath.Join(dataDir, "b.kubeconfig")
	for name, kc := range map[string]string{"a": kcA, "b": kcB} {
		if out, err := awsCLI(t, s, "eks", "update-kubeconfig", "--name", name, "--kubeconfig", kc); err != nil || !strings.Contains(out, "context") {
			t.Fatalf("update-kubeconfig: %v %s", err, out)
		}
	}
	if out, err := kubectlEnv(t, s.env, kcA, "get", "ns"); err != nil || !strings.Contains(out, "kube-system") {
		t.Fatalf("creator: kubectl get ns: %v", err)
	}
	if _, err := kubectlEnv(t, s.env, kcA, "create", "configmap", "probe", "--from-literal=k=v"); err != nil {
		t.Fatalf("creator: kubectl create configmap: %v", err)
	}
	who, err := kubectlEnv(t, s.env, kcA, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
	if err != nil || who != adminArn {
		t.Errorf("kubectl auth whoami = %q (%v), want %s", who, err, adminArn)
	}
	entries := mustAWS(t, s, "eks", "list-access-entries", "--cluster-name", "a")["accessEntries"].([]any)
	if len(entries) != 1 || entries[0] != adminArn {
		t.Errorf("the creator's bootstrap entry: %v", entries)
	}
	pols := mustAWS(t, s, "eks", "list-associated-access-policies", "--cluster-name", "a", "--principal-arn", adminArn)["associatedAccessPolicies"].([]any)
	if len(pols) != 1 || pols[0].(map[string]any)["policyArn"] != "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy" {
		t.Errorf("creator's policies: %v", pols)
	}

	// A second user with its own key and no access entry: refused.
	mustAWS(t, s, "iam", "create-user", "--user-name", "bob")
	key := mustAWS(t, s, "iam", "create-access-key", "--user-name", "bob")["AccessKey"].(map[string]any)
	bob := withKey(s.env, key["AccessKeyId"].(string), key["SecretAccessKey"].(string))
	bobArn := "arn:aws:iam::" + account + ":user/bob"
	for _, args := range [][]string{{"get", "ns"}, {"get", "pods"}, {"get", "configmap", "probe"}, {"delete", "configmap", "probe"}} {
		if err := refused("Unauthorized")(kubectlEnv(t, bob, kcA, args...)); err != nil {
			t.Errorf("bob without an entry, kubectl %v: %v", args, err)
		}
	}

	// An entry with the view policy in namespace default.
	e := mustAWS(t, s, "eks", "create-access-entry", "--cluster-name", "a", "--principal-arn", bobArn)["accessEntry"].(map[string]any)
	if e["username"] != bobArn || e["type"] != "STANDARD" || !strings.HasPrefix(e["accessEntryArn"].(string), "arn:aws:eks:us-east-1:"+account+":access-entry/a/user/") {
		t.Errorf("create-access-entry = %v", e)
	}
	mustAWS(t, s, "eks", "associate-access-policy", "--cluster-name", "a", "--principal-arn", bobArn,
		"--policy-arn", "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy", "--access-scope", "type=namespace,namespaces=default")
	if err := eventually(15*time.Second, func() error {
		_, err := kubectlEnv(t, bob, kcA, "get", "pods", "-n", "default")
		return err
	}); err != nil {
		t.Fatalf("bob with view in default cannot list pods there: %v", err)
	}
	if out, err := kubectlEnv(t, bob, kcA, "get", "configmap", "probe", "-o", "jsonpath={.data.k}"); err != nil || out != "v" {
		t.Errorf("bob reads a configmap in default: %q %v", out, err)
	}
	if err := refused("Forbidden")(kubectlEnv(t, bob, kcA, "get", "pods", "-n", "kube-system")); err != nil {
		t.Errorf("bob lists pods in kube-system: %v", err)
	}
	if err := refused("Forbidden")(kubectlEnv(t, bob, kcA, "delete", "configmap", "probe")); err != nil {
		t.Errorf("bob deletes in default: %v", err)
	}
	if err := refused("Unauthorized")(kubectlEnv(t, bob, kcB, "get", "pods")); err != nil {
		t.Errorf("bob's entry on a opens b: %v", err)
	}
	// The API around it, and its errors.
	if got := mustAWS(t, s, "eks", "list-access-entries", "--cluster-name", "a", "--associated-policy-arn",
		"arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy")["accessEntries"].([]any); len(got) != 1 || got[0] != bobArn {
		t.Errorf("list-access-entries --associated-policy-arn view = %v", got)
	}
	if got := mustAWS(t, s, "eks", "list-access-policies")["accessPolicies"].([]any); len(got) < 4 {
		t.Errorf("list-access-policies = %v", got)
	}
	upd := mustAWS(t, s, "eks", "update-access-entry", "--cluster-name", "a", "--principal-arn", bobArn, "--kubernetes-groups", "viewers")["accessEntry"].(map[string]any)
	if g := upd["kubernetesGroups"].([]any); len(g) != 1 || g[0] != "viewers" {
		t.Errorf("update-access-entry = %v", upd)
	}
	for _, tc := range []struct {
		code string
		args []string
	}{
		{"ResourceInUseException", []string{"create-access-entry", "--cluster-name", "a", "--principal-arn", bobArn}},
		{"InvalidParameterException", []string{"create-access-entry", "--cluster-name", "a", "--principal-arn", "arn:aws:sts::" + account + ":assumed-role/x/y"}},
		{"InvalidParameterException", []string{"create-access-entry", "--cluster-name", "a", "--principal-arn", "arn:aws:iam::" + account + ":user/nobody"}},
		{"InvalidParameterException", []string{"create-access-entry", "--cluster-name", "a", "--principal-arn", bobArn + "x", "--username", "system:admin"}},
		{"ResourceNotFoundException", []string{"create-access-entry", "--cluster-name", "zz", "--principal-arn", bobArn}},
		{"ResourceNotFoundException", []string{"describe-access-entry", "--cluster-name", "b", "--principal-arn", bobArn}},
		{"InvalidParameterException", []string{"associate-access-policy", "--cluster-name", "a", "--principal-arn", bobArn,
			"--policy-arn", "arn:aws:eks::aws:cluster-access-policy/AmazonEKSGodPolicy", "--access-scope", "type=cluster"}},
		{"InvalidParameterException", []string{"associate-access-policy", "--cluster-name", "a", "--principal-arn", bobArn,
			"--policy-arn", "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy", "--access-scope", "type=cluster,namespaces=default"}},
		{"ResourceNotFoundException", []string{"disassociate-access-policy", "--cluster-name", "a", "--principal-arn", bobArn,
			"--policy-arn", "arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy"}},
	} {
		out, err := awsCLI(t, s, append([]string{"eks"}, tc.args...)...)
		wantAWSError(t, out, err, tc.code)
	}

	// Delete the entry: refused again within seconds.
	mustAWS(t, s, "eks", "delete-access-entry", "--cluster-name", "a", "--principal-arn", bobArn)
	if err := eventually(15*time.Second, func() error { return refused("Unauthorized")(kubectlEnv(t, bob, kcA, "get", "pods")) }); err != nil {
		t.Errorf("after delete-access-entry: %v", err)
	}

	// Tokens: minted by the stock CLI for a, presented with kubectl --token.
	token := func(env []string, cluster string) string {
		out, err := awsCLIEnv(t, s, env, "eks", "get-token", "--cluster-name", cluster)
		if err != nil {
			t.Fatal(err)
		}
		var cred struct{ Status struct{ Token string } }
		if err := json.Unmarshal([]byte(out), &cred); err != nil {
			t.Fatal(err)
		}
		return cred.Status.Token
	}
	endpoint := func(name string) (string, string) {
		c := mustAWS(t, s, "eks", "describe-cluster", "--name", name)["cluster"].(map[string]any)
		ca, _ := base64.StdEncoding.DecodeString(c["certificateAuthority"].(map[string]any)["data"].(string))
		f := filepath.Join(dataDir, name+"-ca.crt")
		os.WriteFile(f, ca, 0o600)
		return c["endpoint"].(string), f
	}
	empty := filepath.Join(dataDir, "empty.kubeconfig")
	os.WriteFile(empty, nil, 0o600)
	withToken := func(name, tok string) (string, error) {
		server, ca := endpoint(name)
		return kubectl(t, empty, "--server", server, "--certificate-authority", ca, "--token", tok, "get", "ns")
	}
	tokA := token(nil, "a")
	if _, err := withToken("a", tokA); err != nil {
		t.Fatalf("a's own token: %v", err)
	}
	if err := refused("Unauthorized")(withToken("b", tokA)); err != nil {
		t.Errorf("a token for a used on b: %v", err)
	}
	if err := refused("Unauthorized")(withToken("a", tamper(t, tokA))); err != nil {
		t.Errorf("a token with one byte of its signature changed: %v", err)
	}
	other := skiffEnv(t, dataDir, "other") // another account's admin, same cluster name
	if err := refused("Unauthorized")(withToken("a", token(other, "a"))); err != nil {
		t.Errorf("another account's token: %v", err)
	}
	old, fresh := presignToken(t, s, "a", time.Now().Add(-16*time.Minute)), presignToken(t, s, "a", time.Now())
	if _, err := withToken("a", fresh); err != nil {
		t.Fatalf("an SDK-minted fresh token: %v", err)
	}
	if err := refused("Unauthorized")(withToken("a", old)); err != nil {
		t.Errorf("a 16-minute-old token: %v", err)
	}

	// Restart skiff: sessions recover within seconds.
	s.restart(t)
	t0 := time.Now()
	if err := eventually(20*time.Second, func() error { _, err := kubectlEnv(t, s.env, kcA, "get", "ns"); return err }); err != nil {
		t.Fatalf("after a skiff restart: %v", err)
	}
	t.Logf("kubectl through the webhook recovered %s after skiff restarted", time.Since(t0).Round(100*time.Millisecond))
}

// deleteAll deletes the default account's clusters through the API and
// waits until none of their instances runs; leftovers fail the test and are
// killed.
func deleteAll(t testing.TB, s *server) {
	out, err := awsCLI(t, s, "eks", "list-clusters")
	if err != nil {
		t.Error(err)
	}
	var list struct{ Clusters []string }
	json.Unmarshal([]byte(out), &list)
	for _, name := range list.Clusters {
		// EKS refuses to delete a cluster with node groups: delete them first.
		var ngs struct{ Nodegroups []string }
		out, _ := awsCLI(t, s, "eks", "list-nodegroups", "--cluster-name", name)
		json.Unmarshal([]byte(out), &ngs)
		for _, ng := range ngs.Nodegroups {
			awsCLI(t, s, "eks", "delete-nodegroup", "--cluster-name", name, "--nodegroup-name", ng)
		}
		eventually(2*time.Minute, func() error {
			out, _ := awsCLI(t, s, "eks", "list-nodegroups", "--cluster-name", name)
			json.Unmarshal([]byte(out), &ngs)
			if len(ngs.Nodegroups) > 0 {
				return fmt.Errorf("node groups left: %v", ngs.Nodegroups)
			}
			return nil
		})
		if out, err := awsCLI(t, s, "eks", "delete-cluster", "--name", name); err != nil {
			t.Errorf("delete-cluster %s: %v %s", name, err, out)
		}
	}
	if err := eventually(60*time.Second, func() error {
		if left := instances(s.dataDir); len(left) > 0 {
			return fmt.Errorf("instances left after deleting every cluster: %v", left)
		}
		return nil
	}); err != nil {
		t.Error(err)
		exec.Command("pkill", "-9", "-f", s.dataDir).Run()
	}
}

// tamper changes the last character of a token's X-Amz-Signature.
func tamper(t *testing.T, tok string) string {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok, "k8s-aws-v1."))
	if err != nil {
		t.Fatal(err)
	}
	u := string(raw)
	i := strings.Index(u, "X-Amz-Signature=") + len("X-Amz-Signature=") + 63
	flip := byte('0')
	if u[i] == '0' {
		flip = '1'
	}
	return "k8s-aws-v1." + base64.RawURLEncoding.EncodeToString([]byte(u[:i]+string(flip)+u[i+1:]))
}

// presignToken mints a token as aws-iam-authenticator's client does, with
// the SDK's SigV4 presigner at a chosen time (the CLI signs at now).
func presignToken(t testing.TB, s *server, cluster string, at time.Time) string {
	endpoint := envValue(s.env, "AWS_ENDPOINT_URL")
	req, _ := http.NewRequest(http.MethodGet, endpoint+"/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Expires=60", nil)
	req.Header.Set("x-k8s-aws-id", cluster)
	creds := aws.Credentials{AccessKeyID: envValue(s.env, "AWS_ACCESS_KEY_ID"), SecretAccessKey: envValue(s.env, "AWS_SECRET_ACCESS_KEY")}
	const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	u, _, err := v4.NewSigner().PresignHTTP(context.Background(), creds, req, emptySHA256, "sts", "us-east-1", at.UTC())
	if err != nil {
		t.Fatal(err)
	}
	return "k8s-aws-v1." + base64.RawURLEncoding.EncodeToString([]byte(u))
}
