package e2e

import (
	"strings"
	"testing"
)

// TestEKSAPI drives skiff's EKS wire API with the stock aws CLI: the shapes
// it parses, the waiters, pagination and the AWS-shaped errors.
func TestEKSAPI(t *testing.T) {
	s := startServe(t, t.TempDir(), freePort(t))
	defer s.stop(t)

	created := mustAWS(t, s, s.createArgs(t, "web", "--kubernetes-version", "1.36", "--tags", "team=platform")...)
	c := created["cluster"].(map[string]any)
	if c["status"] != "CREATING" || c["version"] != "1.36" || !strings.HasPrefix(c["arn"].(string), "arn:aws:eks:us-east-1:") {
		t.Errorf("create-cluster = %v", c)
	}
	// The stock waiter (polls every 30 s, so the cluster is ACTIVE by its second look).
	mustAWS(t, s, "eks", "wait", "cluster-active", "--name", "web")
	d := mustAWS(t, s, "eks", "describe-cluster", "--name", "web")["cluster"].(map[string]any)
	if d["status"] != "ACTIVE" || !strings.HasPrefix(d["endpoint"].(string), "https://127.1.") {
		t.Errorf("describe-cluster = %v", d)
	}
	if ca, _ := d["certificateAuthority"].(map[string]any); ca == nil || ca["data"] == "" {
		t.Errorf("no certificateAuthority.data: %v", d)
	}

	// Errors, by name, as the CLI reports them.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"eks", "describe-cluster", "--name", "nope"}, "(ResourceNotFoundException)"},
		{[]string{"eks", "delete-cluster", "--name", "nope"}, "(ResourceNotFoundException)"},
		{s.createArgs(t, "web"), "(ResourceInUseException)"},
		{s.createArgs(t, "old", "--kubernetes-version", "1.20"), "(InvalidParameterException)"},
		{s.createArgs(t, "-bad-name"), "(InvalidParameterException)"},
		{s.createArgs(t, "few", "--tags", "skiff.dev/apiservers=1"), "(InvalidParameterException)"},
		{[]string{"eks", "list-clusters", "--max-results", "500"}, "(InvalidParameterException)"},
		{[]string{"eks", "list-clusters", "--next-token", "%%%"}, "(InvalidParameterException)"},
	} {
		out, err := awsCLI(t, s, tc.args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("aws %v: want %s, got err=%v out=%s", tc.args, tc.want, err, out)
		}
	}

	// Pagination: the CLI follows nextToken by itself; one page holds one.
	mustAWS(t, s, s.createArgs(t, "api", "--tags", "skiff.dev/apiservers=3")...)
	page := mustAWS(t, s, "eks", "list-clusters", "--max-results", "1", "--no-paginate")
	if names := page["clusters"].([]any); len(names) != 1 || names[0] != "api" || page["nextToken"] == nil {
		t.Errorf("first page = %v", page)
	}
	all := mustAWS(t, s, "eks", "list-clusters", "--page-size", "1")
	if names := all["clusters"].([]any); len(names) != 2 {
		t.Errorf("all pages = %v", all)
	}
	waitAWSStatus(t, s, "api", "ACTIVE")

	for _, n := range []string{"web", "api"} {
		if d := mustAWS(t, s, "eks", "delete-cluster", "--name", n)["cluster"].(map[string]any); d["status"] != "DELETING" {
			t.Errorf("delete-cluster %s = %v", n, d["status"])
		}
	}
	waitAWSStatus(t, s, "web", "")
	waitAWSStatus(t, s, "api", "")
	if left := instances(s.dataDir); len(left) > 0 {
		t.Errorf("instances left: %v", left)
	}
}
