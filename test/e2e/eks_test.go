package e2e

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEKSAPI is issue 4's acceptance: only the stock aws CLI, kubectl and
// `skiff write-kubeconfig` against a fresh skiff: find the default subnets,
// create clusters, wait with the stock waiters, describe, reach the API,
// tag, paginate, update (config and version), delete; and the errors.
func TestEKSAPI(t *testing.T) {
	s := startServe(t, t.TempDir(), freePort(t))
	defer s.stop(t)

	// The account's network, as EC2 shows it.
	zones := mustAWS(t, s, "ec2", "describe-availability-zones")["AvailabilityZones"].([]any)
	if len(zones) != 3 || zones[0].(map[string]any)["ZoneName"] != "us-east-1a" {
		t.Errorf("describe-availability-zones = %v", zones)
	}
	vpcs := mustAWS(t, s, "ec2", "describe-vpcs", "--filters", "Name=is-default,Values=true")["Vpcs"].([]any)
	if len(vpcs) != 1 {
		t.Fatalf("default VPCs = %v", vpcs)
	}
	vpcID := vpcs[0].(map[string]any)["VpcId"].(string)
	subnets := s.defaultSubnets(t)
	versions := mustAWS(t, s, "eks", "describe-cluster-versions")["clusterVersions"].([]any)
	if len(versions) != 2 || versions[0].(map[string]any)["clusterVersion"] != "1.37" || versions[0].(map[string]any)["defaultVersion"] != true {
		t.Errorf("describe-cluster-versions = %v", versions)
	}

	created := mustAWS(t, s, "eks", "create-cluster", "--name", "web", "--role-arn", s.clusterRole(t), "--kubernetes-version", "1.36",
		"--resources-vpc-config", "subnetIds="+subnets[0]+","+subnets[1], "--tags", "team=platform")
	c := created["cluster"].(map[string]any)
	if c["status"] != "CREATING" || c["version"] != "1.36" || !strings.HasPrefix(c["arn"].(string), "arn:aws:eks:us-east-1:") {
		t.Errorf("create-cluster = %v", c)
	}
	mustAWS(t, s, s.createArgs(t, "api", "--tags", "skiff.dev/apiservers=3")...)
	// The stock waiter (polls every 30 s, so the cluster is ACTIVE by its second look).
	mustAWS(t, s, "eks", "wait", "cluster-active", "--name", "web")
	d := mustAWS(t, s, "eks", "describe-cluster", "--name", "web")["cluster"].(map[string]any)
	account := strings.Split(d["arn"].(string), ":")[4]
	vpc := d["resourcesVpcConfig"].(map[string]any)
	for field, ok := range map[string]bool{
		"status ACTIVE":    d["status"] == "ACTIVE",
		"arn":              d["arn"] == "arn:aws:eks:us-east-1:"+account+":cluster/web",
		"endpoint":         strings.HasPrefix(d["endpoint"].(string), "https://127.1."),
		"platformVersion":  d["platformVersion"] == "eks.1",
		"version":          d["version"] == "1.36",
		"vpcId":            vpc["vpcId"] == vpcID,
		"subnetIds":        len(vpc["subnetIds"].([]any)) == 2,
		"cluster SG":       strings.HasPrefix(vpc["clusterSecurityGroupId"].(string), "sg-"),
		"health.issues":    len(d["health"].(map[string]any)["issues"].([]any)) == 0,
		"tags":             d["tags"].(map[string]any)["team"] == "platform",
		"authentication":   d["accessConfig"].(map[string]any)["authenticationMode"] == "API_AND_CONFIG_MAP",
		"service CIDR":     d["kubernetesNetworkConfig"].(map[string]any)["serviceIpv4Cidr"] == "10.100.0.0/16",
		"createdAt":        d["createdAt"] != nil,
		"role":             d["roleArn"] == s.clusterRole(t),
		"certificate data": d["certificateAuthority"].(map[string]any)["data"] != nil,
	} {
		if !ok {
			t.Errorf("describe-cluster: %s wrong in %v", field, d)
		}
	}
	if ca, err := base64.StdEncoding.DecodeString(d["certificateAuthority"].(map[string]any)["data"].(string)); err != nil || !strings.Contains(string(ca), "BEGIN CERTIFICATE") {
		t.Errorf("certificateAuthority.data is not a base64 PEM: %v", err)
	}

	// kubectl through a kubeconfig written by skiff write-kubeconfig.
	kc := filepath.Join(t.TempDir(), "config")
	wk := exec.Command(skiffBin, "write-kubeconfig", "web", "--kubeconfig", kc)
	wk.Env = append(os.Environ(), s.env...)
	if out, err := wk.CombinedOutput(); err != nil {
		t.Fatalf("skiff write-kubeconfig: %v: %s", err, out)
	}
	if out, err := kubectlEnv(t, s.env, kc, "get", "ns", "-o", "name"); err != nil || !strings.Contains(out, "namespace/kube-system") {
		t.Errorf("kubectl get ns = %s %v", out, err)
	}
	// Issue 15: the kubeconfig holds no credential, only the caller's IAM
	// identity (exec aws eks get-token); without an access entry a
	// principal gets none, and a deleted user's kubeconfig stops working.
	if data, _ := os.ReadFile(kc); strings.Contains(string(data), "client-key-data") || !strings.Contains(string(data), "get-token") {
		t.Errorf("kubeconfig carries a credential or no exec:\n%s", data)
	}
	mustAWS(t, s, "iam", "create-user", "--user-name", "kc-user")
	mustAWS(t, s, "iam", "attach-user-policy", "--user-name", "kc-user", "--policy-arn", "arn:aws:iam::aws:policy/AdministratorAccess")
	uk := mustAWS(t, s, "iam", "create-access-key", "--user-name", "kc-user")["AccessKey"].(map[string]any)
	user := withKey(s.env, uk["AccessKeyId"].(string), uk["SecretAccessKey"].(string))
	ukc := filepath.Join(t.TempDir(), "user")
	wk = exec.Command(skiffBin, "write-kubeconfig", "web", "--kubeconfig", ukc)
	wk.Env = append(os.Environ(), user...)
	if out, err := wk.CombinedOutput(); err == nil || !strings.Contains(string(out), "AccessDeniedException") || !strings.Contains(string(out), "no access entry") {
		t.Errorf("write-kubeconfig without an access entry: %v %s", err, out)
	}
	userArn := "arn:aws:iam::" + strings.Split(d["arn"].(string), ":")[4] + ":user/kc-user"
	mustAWS(t, s, "eks", "create-access-entry", "--cluster-name", "web", "--principal-arn", userArn)
	mustAWS(t, s, "eks", "associate-access-policy", "--cluster-name", "web", "--principal-arn", userArn,
		"--policy-arn", "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy", "--access-scope", "type=cluster")
	wk = exec.Command(skiffBin, "write-kubeconfig", "web", "--kubeconfig", ukc)
	wk.Env = append(os.Environ(), user...)
	if out, err := wk.CombinedOutput(); err != nil {
		t.Fatalf("write-kubeconfig with an access entry: %v %s", err, out)
	}
	if err := eventually(30*time.Second, func() error {
		_, err := kubectlEnv(t, user, ukc, "get", "ns", "kube-system")
		return err
	}); err != nil {
		t.Errorf("the user's kubeconfig: %v", err)
	}
	mustAWS(t, s, "iam", "delete-access-key", "--user-name", "kc-user", "--access-key-id", uk["AccessKeyId"].(string))
	if err := eventually(30*time.Second, func() error {
		if _, err := kubectlEnv(t, user, ukc, "get", "ns", "kube-system"); err == nil {
			return errors.New("still works")
		}
		return nil
	}); err != nil {
		t.Errorf("the user's kubeconfig after its key was deleted: %v", err)
	}

	// Tags.
	arn := d["arn"].(string)
	mustAWS(t, s, "eks", "tag-resource", "--resource-arn", arn, "--tags", "env=test,owner=me")
	mustAWS(t, s, "eks", "untag-resource", "--resource-arn", arn, "--tag-keys", "owner")
	if tags := mustAWS(t, s, "eks", "list-tags-for-resource", "--resource-arn", arn)["tags"].(map[string]any); len(tags) != 2 || tags["env"] != "test" || tags["team"] != "platform" {
		t.Errorf("list-tags-for-resource = %v", tags)
	}

	// Pagination: --max-items 1 gives one cluster and a token for the next.
	page := mustAWS(t, s, "eks", "list-clusters", "--max-items", "1")
	if names := page["clusters"].([]any); len(names) != 1 || names[0] != "api" || page["NextToken"] == nil {
		t.Errorf("first page = %v", page)
	}
	next := mustAWS(t, s, "eks", "list-clusters", "--max-items", "1", "--starting-token", page["NextToken"].(string))
	if names := next["clusters"].([]any); len(names) != 1 || names[0] != "web" {
		t.Errorf("second page = %v", next)
	}
	if all := mustAWS(t, s, "eks", "list-clusters", "--page-size", "1")["clusters"].([]any); len(all) != 2 {
		t.Errorf("all pages = %v", all)
	}

	// Errors, by name, as the CLI reports them; none changes anything.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"eks", "describe-cluster", "--name", "nope"}, "(ResourceNotFoundException)"},
		{[]string{"eks", "delete-cluster", "--name", "nope"}, "(ResourceNotFoundException)"},
		{s.createArgs(t, "web"), "(ResourceInUseException)"},
		{s.createArgs(t, "old", "--kubernetes-version", "1.20"), "(InvalidParameterException)"},
		{s.createArgs(t, "-bad-name"), "(InvalidParameterException)"},
		{s.createArgs(t, strings.Repeat("x", 101)), "(InvalidParameterException)"},
		{s.createArgs(t, "few", "--tags", "skiff.dev/apiservers=1"), "(InvalidParameterException)"},
		{[]string{"eks", "create-cluster", "--name", "onezone", "--role-arn", s.clusterRole(t), "--resources-vpc-config", "subnetIds=" + subnets[0]}, "(InvalidParameterException)"},
		{[]string{"eks", "create-cluster", "--name", "nosubnet", "--role-arn", s.clusterRole(t), "--resources-vpc-config", "subnetIds=subnet-0123456789abcdef0," + subnets[0]}, "(InvalidParameterException)"},
		{[]string{"eks", "list-clusters", "--max-results", "500"}, "(InvalidParameterException)"},
		{[]string{"eks", "list-clusters", "--next-token", "%%%"}, "(InvalidParameterException)"},
		{[]string{"eks", "tag-resource", "--resource-arn", "arn:aws:eks:us-east-1:" + account + ":cluster/nope", "--tags", "a=b"}, "(NotFoundException)"},
		{[]string{"eks", "tag-resource", "--resource-arn", "not-an-arn", "--tags", "a=b"}, "(BadRequestException)"},
		{[]string{"eks", "update-cluster-version", "--name", "web", "--kubernetes-version", "1.35"}, "(InvalidParameterException)"},
		{[]string{"eks", "describe-update", "--name", "web", "--update-id", "00000000-0000-4000-8000-000000000000"}, "(ResourceNotFoundException)"},
		{[]string{"ec2", "delete-subnet", "--subnet-id", subnets[0]}, "(DependencyViolation)"},
		{[]string{"ec2", "describe-vpcs", "--vpc-ids", "vpc-00000000000000000"}, "(InvalidVpcID.NotFound)"},
	} {
		out, err := awsCLI(t, s, tc.args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("aws %v: want %s, got err=%v out=%s", tc.args, tc.want, err, out)
		}
	}

	// A configuration update, then the upgrade 1.36 → 1.37: the instances
	// are replaced one at a time and the cluster is ACTIVE again.
	up := mustAWS(t, s, "eks", "update-cluster-config", "--name", "web", "--logging", `{"clusterLogging":[{"types":["api","audit"],"enabled":true}]}`)["update"].(map[string]any)
	waitAWSUpdate(t, s, "web", up["id"].(string))
	up = mustAWS(t, s, "eks", "update-cluster-version", "--name", "web", "--kubernetes-version", "1.37")["update"].(map[string]any)
	if up["type"] != "VersionUpdate" || up["status"] != "InProgress" {
		t.Errorf("update-cluster-version = %v", up)
	}
	if st := mustAWS(t, s, "eks", "describe-cluster", "--name", "web")["cluster"].(map[string]any)["status"]; st != "UPDATING" {
		t.Errorf("status during the upgrade = %v, want UPDATING", st)
	}
	if out, err := awsCLI(t, s, "eks", "update-cluster-config", "--name", "web", "--resources-vpc-config", "endpointPrivateAccess=true"); err == nil || !strings.Contains(out, "(ResourceInUseException)") {
		t.Errorf("a second update during the upgrade: err=%v out=%s", err, out)
	}
	waitAWSUpdate(t, s, "web", up["id"].(string))
	ids := mustAWS(t, s, "eks", "list-updates", "--name", "web")["updateIds"].([]any)
	if len(ids) != 2 {
		t.Errorf("list-updates = %v", ids)
	}
	d = mustAWS(t, s, "eks", "describe-cluster", "--name", "web")["cluster"].(map[string]any)
	if d["status"] != "ACTIVE" || d["version"] != "1.37" {
		t.Errorf("after the upgrade: %v %v", d["status"], d["version"])
	}
	if out, err := kubectlEnv(t, s.env, kc, "version", "-o", "json"); err != nil || !strings.Contains(out, `"gitVersion": "v1.37.2"`) {
		t.Errorf("kubectl version after the upgrade: %s %v", out, err)
	}

	// Issue 15: publicAccessCidrs and endpointPublicAccess hold on the
	// endpoint's host-facing address, as on EKS, while skiff keeps
	// managing the cluster.
	ep := strings.TrimPrefix(d["endpoint"].(string), "https://")
	if _, _, err := net.SplitHostPort(ep); err != nil {
		ep = net.JoinHostPort(ep, "443")
	}
	readyz := func(src string) error {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
			DialContext: (&net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + ep + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	access := func(cfg string, from string, want bool) {
		t.Helper()
		up := mustAWS(t, s, "eks", "update-cluster-config", "--name", "web", "--resources-vpc-config", cfg)["update"].(map[string]any)
		waitAWSUpdate(t, s, "web", up["id"].(string))
		if err := eventually(20*time.Second, func() error {
			if err := readyz(from); (err == nil) != want {
				return fmt.Errorf("from %s: %v, want reachable=%v", from, err, want)
			}
			return nil
		}); err != nil {
			t.Errorf("after %s: %v", cfg, err)
		}
	}
	access("publicAccessCidrs=127.0.0.2/32", "127.0.0.1", false)
	if err := readyz("127.0.0.2"); err != nil {
		t.Errorf("from an allowed CIDR: %v", err)
	}
	access("endpointPublicAccess=false,endpointPrivateAccess=true", "127.0.0.2", false)
	if st := mustAWS(t, s, "eks", "describe-cluster", "--name", "web")["cluster"].(map[string]any)["status"]; st != "ACTIVE" {
		t.Errorf("status with a private endpoint only: %v", st)
	}
	access("endpointPublicAccess=true,publicAccessCidrs=0.0.0.0/0", "127.0.0.1", true)

	for _, n := range []string{"web", "api"} {
		if d := mustAWS(t, s, "eks", "delete-cluster", "--name", n)["cluster"].(map[string]any); d["status"] != "DELETING" {
			t.Errorf("delete-cluster %s = %v", n, d["status"])
		}
	}
	mustAWS(t, s, "eks", "wait", "cluster-deleted", "--name", "web")
	waitAWSStatus(t, s, "api", "")
	if left := instances(s.dataDir); len(left) > 0 {
		t.Errorf("instances left: %v", left)
	}
}

// waitAWSUpdate polls describe-update until the update is Successful.
func waitAWSUpdate(t *testing.T, s *server, name, id string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		u := mustAWS(t, s, "eks", "describe-update", "--name", name, "--update-id", id)["update"].(map[string]any)
		switch u["status"] {
		case "Successful":
			return
		case "Failed", "Cancelled":
			t.Fatalf("update %s: %v", id, u)
		}
		if time.Now().After(deadline) {
			t.Fatalf("update %s is still %v", id, u["status"])
		}
		time.Sleep(500 * time.Millisecond)
	}
}
