package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHibernate: a cluster without nodes hibernates on request (skiff
// hibernate) and by itself after its skiff.io/hibernate-after tag; while
// it hibernates only one endpoint replica runs, DescribeCluster stays ACTIVE and
// says so in a health issue, and the first kubectl request through the
// stock `aws eks update-kubeconfig` path wakes it with no error and every
// object intact. A node group scaled to 0 lets it hibernate; scaling the
// group up wakes it and the nodes join.
func TestHibernate(t *testing.T) {
	s, dataDir := serveTest(t)
	skiff := func(args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(skiffBin, append(args, "--endpoint", s.endpoint)...)
		cmd.Env = append(os.Environ(), s.env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	mustAWS(t, s, s.createArgs(t, "sleepy")...)
	waitAWSStatus(t, s, "sleepy", "ACTIVE")
	kc := filepath.Join(dataDir, "sleepy.kubeconfig")
	if out, err := awsCLI(t, s, "eks", "update-kubeconfig", "--name", "sleepy", "--kubeconfig", kc); err != nil {
		t.Fatalf("update-kubeconfig: %v %s", err, out)
	}
	if _, err := kubectlEnv(t, s.env, kc, "create", "configmap", "keep", "--from-literal=k=v"); err != nil {
		t.Fatal(err)
	}
	// running lists the cluster's instances by role (endpoint, etcd, …).
	running := func() map[string]int {
		out := map[string]int{}
		for id := range instances(dataDir) {
			name := id[strings.LastIndexByte(id, '/')+1:]
			role := strings.TrimRight(strings.TrimRight(name, "abcdef0123456789"), "-")
			out[role]++
		}
		return out
	}
	health := func() string {
		out, _ := awsCLI(t, s, "eks", "describe-cluster", "--name", "sleepy", "--query", "[cluster.status, cluster.health.issues[].message]", "--output", "text")
		return out
	}
	asleep := func() bool {
		r := running()
		return r["endpoint"] == 1 && len(r) == 1
	}

	detected := skiffEvents(t, s, "sleepy", "Detected") // at creation, instances started after ACTIVE
	// Asked: only one endpoint replica is left.
	if out, err := skiff("hibernate", "sleepy"); err != nil {
		t.Fatalf("skiff hibernate: %v\n%s", err, out)
	}
	if !asleep() {
		t.Fatalf("hibernating, the cluster runs %v; want only one endpoint replica", running())
	}
	if h := health(); !strings.HasPrefix(h, "ACTIVE") || !strings.Contains(h, "Hibernating since") {
		t.Errorf("describe-cluster while hibernating: %q, want ACTIVE and a health issue", h)
	}
	if out, _ := skiff("get", "clusters"); !strings.Contains(out, "ACTIVE (hibernating)") {
		t.Errorf("skiff get clusters:\n%s", out)
	}

	// The first request wakes it and is answered.
	start := time.Now()
	got, err := kubectlEnv(t, s.env, kc, "get", "configmap", "keep", "-o", "jsonpath={.data.k}")
	if err != nil || got != "v" {
		t.Fatalf("kubectl through a hibernating cluster's endpoint: %q %v", got, err)
	}
	t.Logf("woken by kubectl (aws eks get-token, then the request) in %v", time.Since(start).Round(10*time.Millisecond))
	if err := eventually(time.Minute, func() error { // the second apiserver starts once the first is healthy
		if r := running(); r["etcd"] != 3 || r["apiserver"] != 2 || r["endpoint"] != 2 || r["controller-manager"] != 2 {
			return fmt.Errorf("runs %v", r)
		}
		return nil
	}); err != nil {
		t.Errorf("awake: %v", err)
	}
	if h := health(); strings.Contains(h, "Hibernating") {
		t.Errorf("describe-cluster once awake: %q", h)
	}
	if ev := skiffEvents(t, s, "sleepy", "Woken"); !strings.Contains(ev, "a client connected") {
		t.Errorf("no wake event: %q", ev)
	}
	if ev := skiffEvents(t, s, "sleepy", "Detected"); ev != detected {
		t.Errorf("the wake's starts were taken for failures:\n%s", ev)
	}

	arn := mustAWS(t, s, "eks", "describe-cluster", "--name", "sleepy")["cluster"].(map[string]any)["arn"].(string)
	// A bad tag value is refused by name.
	if out, err := awsCLI(t, s, "eks", "tag-resource", "--resource-arn", arn, "--tags", "skiff.io/hibernate-after=soon"); err == nil ||
		!strings.Contains(out, "BadRequestException") || !strings.Contains(out, "skiff.io/hibernate-after") { // EKS' TagResource error
		t.Errorf("tag skiff.io/hibernate-after=soon: %v %s", err, out)
	}
	// By itself: a node group at 0 does not keep it awake.
	mustAWS(t, s, "eks", "create-nodegroup", "--cluster-name", "sleepy", "--nodegroup-name", "zero", "--node-role", nodeRole(t, s, "sleepy-nodes"),
		"--subnets", s.defaultSubnets(t)[0], "--scaling-config", "minSize=0,maxSize=2,desiredSize=0")
	waitNodegroup(t, s, "sleepy", "zero", "ACTIVE", 2*time.Minute)
	mustAWS(t, s, "eks", "tag-resource", "--resource-arn", arn, "--tags", "skiff.io/hibernate-after=3s")
	if err := eventually(60*time.Second, func() error {
		if !asleep() {
			return fmt.Errorf("runs %v", running())
		}
		return nil
	}); err != nil {
		t.Fatalf("tagged hibernate-after=3s, idle: %v", err)
	}
	if ev := skiffEvents(t, s, "sleepy", "Hibernated"); !strings.Contains(ev, "no client and no node for 3s") {
		t.Errorf("no hibernation event: %q", ev)
	}
	if out, err := skiff("hibernate", "sleepy"); err != nil {
		t.Errorf("skiff hibernate of a hibernating cluster: %v %s", err, out)
	}

	// Scaling the group up wakes it; the node joins and runs.
	mustAWS(t, s, "eks", "update-nodegroup-config", "--cluster-name", "sleepy", "--nodegroup-name", "zero", "--scaling-config", "minSize=0,maxSize=2,desiredSize=1")
	if err := eventually(90*time.Second, func() error {
		out, err := kubectlEnv(t, s.env, kc, "get", "nodes", "--no-headers")
		if err != nil {
			return err
		}
		if strings.Count(out, " Ready ") != 1 {
			return fmt.Errorf("nodes: %s", out)
		}
		return nil
	}); err != nil {
		t.Fatalf("scaled to 1, the cluster's node: %v", err)
	}
	if got, err := kubectlEnv(t, s.env, kc, "get", "configmap", "keep", "-o", "jsonpath={.data.k}"); err != nil || got != "v" {
		t.Errorf("after two hibernations, the object: %q %v", got, err)
	}
	// With a node it may not hibernate.
	if out, err := skiff("hibernate", "sleepy"); err == nil || !strings.Contains(out, "InvalidRequestException") {
		t.Errorf("skiff hibernate with a node: %v %s", err, out)
	}
	time.Sleep(4 * time.Second) // longer than the tag: a cluster with a node stays awake
	if asleep() {
		t.Error("a cluster with a node hibernated")
	}
}
