package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// waitNodegroup polls describe-nodegroup (every second; the stock waiter
// polls every 30 s) until the group has status.
func waitNodegroup(t testing.TB, s *server, cluster, name, status string, timeout time.Duration) map[string]any {
	t.Helper()
	var last map[string]any
	err := eventually(timeout, func() error {
		out, err := awsCLI(t, s, "eks", "describe-nodegroup", "--cluster-name", cluster, "--nodegroup-name", name)
		if err != nil {
			return err
		}
		var v struct{ Nodegroup map[string]any }
		json.Unmarshal([]byte(out), &v)
		last = v.Nodegroup
		if last["status"] != status {
			return fmt.Errorf("node group %s is %v, want %s: %v", name, last["status"], status, last["health"])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return last
}

type kubeNode struct {
	Name, Zone, IP, Version, Group string
	Ready                          bool
	AllocatableMemory, AllocCPU    string
	MaxPods                        string
}

func kubeNodes(t *testing.T, s *server, kubeconfig string) []kubeNode {
	t.Helper()
	out, err := kubectlEnv(t, s.env, kubeconfig, "get", "nodes", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Items []struct {
			Metadata struct {
				Name   string
				Labels map[string]string
			}
			Status struct {
				Addresses   []struct{ Type, Address string }
				Conditions  []struct{ Type, Status string }
				NodeInfo    struct{ KubeletVersion string }
				Allocatable map[string]string
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	var nodes []kubeNode
	for _, it := range list.Items {
		n := kubeNode{Name: it.Metadata.Name, Zone: it.Metadata.Labels["topology.kubernetes.io/zone"],
			Group: it.Metadata.Labels["eks.amazonaws.com/nodegroup"], Version: it.Status.NodeInfo.KubeletVersion,
			AllocatableMemory: it.Status.Allocatable["memory"], AllocCPU: it.Status.Allocatable["cpu"], MaxPods: it.Status.Allocatable["pods"]}
		for _, a := range it.Status.Addresses {
			if a.Type == "InternalIP" {
				n.IP = a.Address
			}
		}
		for _, c := range it.Status.Conditions {
			if c.Type == "Ready" {
				n.Ready = c.Status == "True"
			}
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// readyNodes waits until the cluster has exactly n nodes, all Ready.
func readyNodes(t *testing.T, s *server, kubeconfig string, n int) []kubeNode {
	t.Helper()
	var nodes []kubeNode
	err := eventually(3*time.Minute, func() error {
		nodes = kubeNodes(t, s, kubeconfig)
		ready := 0
		for _, x := range nodes {
			if x.Ready {
				ready++
			}
		}
		if len(nodes) != n || ready != n {
			return fmt.Errorf("%d nodes, %d Ready; want %d: %+v", len(nodes), ready, n, nodes)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return nodes
}

// leftovers lists what of skiff's clusters and nodes remains on the machine.
func leftovers(dataDir string) []string {
	var out []string
	if entries, _ := os.ReadDir("/run/netns"); entries != nil {
		for _, e := range entries {
			// cni-…: a pod's network namespace (nodes keep theirs private).
			if strings.HasPrefix(e.Name(), "skiff-") || strings.HasPrefix(e.Name(), "cni-") {
				out = append(out, "netns "+e.Name())
			}
		}
	}
	if entries, _ := os.ReadDir("/run/skiff-nodes"); len(entries) > 0 {
		out = append(out, fmt.Sprintf("%d entries in /run/skiff-nodes", len(entries)))
	}
	if entries, _ := os.ReadDir("/run/skiff-egress"); len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		out = append(out, fmt.Sprintf("%d egress sockets in /run/skiff-egress %v", len(entries), names))
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/skiff"); err == nil {
		out = append(out, "cgroup /skiff")
	}
	if data, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(data), dataDir) || strings.Contains(string(data), "/run/skiff-nodes/") {
		out = append(out, "mounts")
	}
	if ps, _ := exec.Command("pgrep", "-f", "containerd --config "+dataDir).Output(); len(ps) > 0 {
		out = append(out, "containerd processes")
	}
	if n := nodeProcesses(); len(n) > 0 {
		out = append(out, fmt.Sprintf("%d processes of node ID ranges", len(n)))
	}
	return out
}

// nodeProcesses lists the processes that run as a node's user (host uids
// from 2^28 up: the nodes' ID ranges), as "PID UID COMMAND".
func nodeProcesses() []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name(), &st) == nil && st.Uid >= 1<<28 {
			comm, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
			out = append(out, fmt.Sprintf("%s %d %s", e.Name(), st.Uid, strings.TrimSpace(string(comm))))
		}
	}
	return out
}

// noLeftovers waits until nothing of skiff's nodes remains on the machine.
func noLeftovers(t testing.TB, dataDir string) {
	t.Helper()
	if err := eventually(30*time.Second, func() error {
		if left := leftovers(dataDir); len(left) > 0 {
			return fmt.Errorf("left on the machine: %v", left)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

// nodeRole creates an IAM role EC2 instances may assume, with the policies
// EKS documents for node roles, and returns its ARN.
func nodeRole(t testing.TB, s *server, name string) string {
	t.Helper()
	arn := mustAWS(t, s, "iam", "create-role", "--role-name", name, "--assume-role-policy-document",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)["Role"].(map[string]any)["Arn"].(string)
	for _, p := range []string{"AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly", "AmazonEKS_CNI_Policy"} {
		if out, err := awsCLI(t, s, "iam", "attach-role-policy", "--role-name", name, "--policy-arn", "arn:aws:iam::aws:policy/"+p); err != nil {
			t.Fatalf("attach %s to %s: %v %s", p, name, err, out)
		}
	}
	return arn
}

// TestNodegroups is issue 6's acceptance with the stock aws CLI and
// kubectl: a managed node group of real kubelet + containerd nodes in three
// zones, scaled up and down, repaired, deleted without leftovers.
func TestNodegroups(t *testing.T) {
	s, dataDir := serveTest(t)
	mustAWS(t, s, s.createArgs(t, "nodes-e2e")...)
	waitAWSStatus(t, s, "nodes-e2e", "ACTIVE")
	kc := filepath.Join(dataDir, "n.kubeconfig")
	if _, err := awsCLI(t, s, "eks", "update-kubeconfig", "--name", "nodes-e2e", "--kubeconfig", kc); err != nil {
		t.Fatal(err)
	}
	role := nodeRole(t, s, "nodes")

	// Bad input first: clear errors.
	for _, tc := range []struct {
		code string
		args []string
	}{
		{"InvalidParameterException", []string{"--nodegroup-name", "x", "--node-role", role, "--subnets", "subnet-nope"}},
		{"InvalidParameterException", []string{"--nodegroup-name", "x", "--node-role", role + "nope", "--subnets", s.defaultSubnets(t)[0]}},
		{"InvalidParameterException", []string{"--nodegroup-name", "x", "--node-role", role, "--subnets", s.defaultSubnets(t)[0], "--scaling-config", "minSize=3,maxSize=2,desiredSize=2"}},
		{"ResourceNotFoundException", []string{"--cluster-name", "nope", "--nodegroup-name", "x", "--node-role", role, "--subnets", s.defaultSubnets(t)[0]}},
	} {
		args := append([]string{"eks", "create-nodegroup"}, tc.args...)
		if !strings.Contains(strings.Join(tc.args, " "), "--cluster-name") {
			args = append(args, "--cluster-name", "nodes-e2e")
		}
		out, err := awsCLI(t, s, args...)
		wantAWSError(t, out, err, tc.code)
	}

	t0 := time.Now()
	ng := mustAWS(t, s, append([]string{"eks", "create-nodegroup", "--cluster-name", "nodes-e2e", "--nodegroup-name", "ng", "--node-role", role,
		"--scaling-config", "minSize=1,maxSize=6,desiredSize=3", "--labels", "team=platform", "--subnets"}, s.defaultSubnets(t)...)...)["nodegroup"].(map[string]any)
	if ng["status"] != "CREATING" {
		t.Errorf("create-nodegroup = %v", ng)
	}
	waitNodegroup(t, s, "nodes-e2e", "ng", "ACTIVE", 3*time.Minute)
	nodes := readyNodes(t, s, kc, 3)
	t.Logf("3 nodes Ready %s after create-nodegroup", time.Since(t0).Round(100*time.Millisecond))
	zones := map[string]bool{}
	for _, n := range nodes {
		zones[n.Zone] = true
		if !strings.HasPrefix(n.IP, "172.31.") || n.Version != "v1.37.2" || n.Group != "ng" {
			t.Errorf("node %+v: want a VPC address, kubelet v1.37.2, node group label", n)
		}
		// A t3.medium (2 vCPU, 4 GiB) less EKS' kube-reserved and the
		// eviction threshold: 4096 - 442 - 100 MiB, 17 pods.
		mem := resource.MustParse(n.AllocatableMemory)
		if mem.Value() != (4096-442-100)<<20 || n.MaxPods != "17" || n.AllocCPU != "1930m" {
			t.Errorf("node %s allocatable memory %s, cpu %s, pods %s: want a t3.medium's 3554Mi, 1930m, 17", n.Name, n.AllocatableMemory, n.AllocCPU, n.MaxPods)
		}
	}
	if len(zones) != 3 {
		t.Errorf("nodes not spread over 3 zones: %+v", nodes)
	}
	if got := mustAWS(t, s, "eks", "list-nodegroups", "--cluster-name", "nodes-e2e")["nodegroups"].([]any); len(got) != 1 {
		t.Errorf("list-nodegroups = %v", got)
	}
	// The node role's EC2_LINUX access entry, as EKS creates it.
	if e := mustAWS(t, s, "eks", "describe-access-entry", "--cluster-name", "nodes-e2e", "--principal-arn", role)["accessEntry"].(map[string]any); e["type"] != "EC2_LINUX" {
		t.Errorf("node role's access entry = %v", e)
	}
	// Nothing leaves the machine: no route off a node or its VPC.
	entries, _ := os.ReadDir("/run/netns")
	checked := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "skiff-") {
			out, err := exec.Command("ip", "-n", e.Name(), "route", "get", "192.0.2.1").CombinedOutput()
			if err == nil {
				t.Errorf("namespace %s routes to an outside address: %s", e.Name(), out)
			}
			checked++
		}
	}
	if checked < 4 {
		t.Errorf("checked %d namespaces, want the VPC's and 3 nodes'", checked)
	}

	// Pods run: the sandbox (and this) image comes from skiff's registry,
	// registry.k8s.io is mirrored to it.
	if _, err := kubectlEnv(t, s.env, kc, "create", "deployment", "pause", "--image=registry.k8s.io/pause:3.10", "--replicas=4"); err != nil {
		t.Fatal(err)
	}
	rollout := func() {
		t.Helper()
		if out, err := kubectlEnv(t, s.env, kc, "rollout", "status", "deployment/pause", "--timeout=120s"); err != nil {
			pods, _ := kubectlEnv(t, s.env, kc, "get", "pods", "-o", "wide")
			ev, _ := kubectlEnv(t, s.env, kc, "get", "events")
			t.Errorf("rollout: %v %s\n%s\n%s", err, out, pods, ev)
			diagnoseNodes(t)
			t.FailNow()
		}
	}
	rollout()

	// Scale to 5, then to 2.
	for _, size := range []int{5, 2} {
		u := mustAWS(t, s, "eks", "update-nodegroup-config", "--cluster-name", "nodes-e2e", "--nodegroup-name", "ng",
			"--scaling-config", fmt.Sprintf("minSize=1,maxSize=6,desiredSize=%d", size))["update"].(map[string]any)
		if u["status"] != "InProgress" {
			t.Errorf("update-nodegroup-config = %v", u)
		}
		waitNodegroup(t, s, "nodes-e2e", "ng", "ACTIVE", 3*time.Minute)
		readyNodes(t, s, kc, size)
		d := mustAWS(t, s, "eks", "describe-update", "--name", "nodes-e2e", "--nodegroup-name", "ng", "--update-id", u["id"].(string))["update"].(map[string]any)
		if d["status"] != "Successful" {
			t.Errorf("describe-update = %v", d)
		}
		t.Logf("scaled to %d at %s", size, time.Since(t0).Round(100*time.Millisecond))
	}
	// The removed nodes were drained first: their pods were evicted and
	// run again on the remaining nodes.
	rollout()
	cmd := exec.Command(skiffBin, "events", "nodes-e2e")
	cmd.Env = append(os.Environ(), s.env...)
	if ev, _ := cmd.CombinedOutput(); strings.Count(string(ev), "node drained") != 3 {
		t.Errorf("want 3 drained nodes in the events:\n%s", ev)
	} else {
		t.Logf("events:\n%s", ev)
	}

	// Kill one node's kubelet: skiff restarts it and the node is Ready again.
	victim := kubeNodes(t, s, kc)[0].Name
	if err := exec.Command("pkill", "-9", "-f", "hostname-override="+victim).Run(); err != nil {
		t.Fatalf("kill the kubelet of %s: %v", victim, err)
	}
	if err := eventually(90*time.Second, func() error {
		out, _ := awsCLI(t, s, "eks", "describe-nodegroup", "--cluster-name", "nodes-e2e", "--nodegroup-name", "ng", "--query", "nodegroup.status", "--output", "text")
		cmd := exec.Command(skiffBin, "events", "nodes-e2e")
		cmd.Env = append(os.Environ(), s.env...)
		ev, _ := cmd.CombinedOutput()
		if strings.TrimSpace(out) != "ACTIVE" || !strings.Contains(string(ev), "kubelet restarted") {
			return fmt.Errorf("status %s; events:\n%s", out, ev)
		}
		return nil
	}); err != nil {
		t.Fatalf("kubelet of %s not repaired: %v", victim, err)
	}
	readyNodes(t, s, kc, 2)
	t.Logf("kubelet repaired at %s", time.Since(t0).Round(100*time.Millisecond))

	// EKS refuses to delete a cluster that has node groups.
	out, err := awsCLI(t, s, "eks", "delete-cluster", "--name", "nodes-e2e")
	wantAWSError(t, out, err, "ResourceInUseException")

	// Delete the node group, then the cluster: nothing remains.
	mustAWS(t, s, "eks", "delete-nodegroup", "--cluster-name", "nodes-e2e", "--nodegroup-name", "ng")
	if err := eventually(2*time.Minute, func() error {
		if got := mustAWS(t, s, "eks", "list-nodegroups", "--cluster-name", "nodes-e2e")["nodegroups"].([]any); len(got) > 0 {
			return fmt.Errorf("node groups left: %v", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if nodes := kubeNodes(t, s, kc); len(nodes) > 0 {
		t.Errorf("Node objects left: %+v", nodes)
	}
	deleteAll(t, s)
	noLeftovers(t, dataDir)
}

// TestCLINodegroups drives node groups with skiff's own CLI: `create
// cluster --nodes` shows the nodes joining by zone; `delete cluster` deletes
// the node groups first, as eksctl does.
func TestCLINodegroups(t *testing.T) {
	dataDir, listen := t.TempDir(), freePort(t)
	s := startServe(t, dataDir, listen)
	defer func() { s.stop(t) }()
	defer func() { deleteAll(t, s) }()
	skiff := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(skiffBin, append(args, "--endpoint", s.endpoint)...)
		cmd.Env = append(os.Environ(), s.env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("skiff %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	kc := filepath.Join(dataDir, "cli.kubeconfig")
	out := skiff("create", "cluster", "cli-nodes", "--nodes", "2", "--node-labels", "team=cli", "--kubeconfig", kc)
	t.Logf("skiff create cluster --nodes 2:\n%s", out)
	for _, want := range []string{"creating node group ng-1 in cluster cli-nodes: 2 × t3.medium", "CREATING 0/2 Ready", "ACTIVE 2/2 Ready", "node group ng-1 is ACTIVE: 2 nodes Ready"} {
		if !strings.Contains(out, want) {
			t.Errorf("create output lacks %q", want)
		}
	}
	// The control plane's instances as the store holds them (the
	// reconciler records what it observes; the API reads the record).
	if out := skiff("describe", "cluster", "cli-nodes"); !strings.Contains(out, "Instances:") || !strings.Contains(out, "etcd-a") ||
		!strings.Contains(out, "apiserver-1") || strings.Count(out, "true") < 7 {
		t.Errorf("describe cluster: no healthy instances:\n%s", out)
	}
	// The reconciler's steps, in order, each with its condition.
	if err := eventually(30*time.Second, func() error {
		out := skiff("describe", "cluster", "cli-nodes")
		at := 0
		for _, step := range []string{"Network", "PKI", "Endpoint", "Etcd", "APIServers", "Controllers", "Authenticator", "Tunnel",
			"Door", "Access", "Nodes", "Addons", "Status"} {
			loc := regexp.MustCompile(`(?m)^\s+` + step + `\s+True\s`).FindStringIndex(out)
			if loc == nil || loc[0] < at {
				return fmt.Errorf("step %s not True, or out of order:\n%s", step, out)
			}
			at = loc[0]
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	nodes := readyNodes(t, s, kc, 2)
	if nodes[0].Zone == nodes[1].Zone || nodes[0].Group != "ng-1" {
		t.Errorf("nodes %+v: want two zones, group ng-1", nodes)
	}
	if out, err := kubectlEnv(t, s.env, kc, "get", "nodes", "-l", "team=cli", "-o", "name"); err != nil || strings.Count(out, "node/") != 2 {
		t.Errorf("nodes labelled team=cli: %v %s", err, out)
	}
	// A second group with a taint, in one zone.
	out = skiff("create", "nodegroup", "tainted", "--cluster", "cli-nodes", "--nodes", "1", "--zones", "c", "--node-taints", "dedicated=db:NoSchedule")
	if !strings.Contains(out, "node group tainted is ACTIVE") {
		t.Errorf("create nodegroup output:\n%s", out)
	}
	// The node lifecycle controller lifts node.kubernetes.io/not-ready a
	// moment after the node is Ready.
	if err := eventually(30*time.Second, func() error {
		out, err := kubectlEnv(t, s.env, kc, "get", "nodes", "-l", "eks.amazonaws.com/nodegroup=tainted", "-o", "jsonpath={.items[*].spec.taints[*].key}={.items[*].metadata.labels.topology\\.kubernetes\\.io/zone}")
		if err == nil && out != "dedicated=us-east-1c" {
			err = fmt.Errorf("taints=zone %q, want dedicated=us-east-1c", out)
		}
		return err
	}); err != nil {
		t.Errorf("tainted node: %v", err)
	}
	cmd := exec.Command(skiffBin, "create", "nodegroup", "--cluster", "cli-nodes", "--node-taints", "x:Sometimes", "--endpoint", s.endpoint)
	cmd.Env = append(os.Environ(), s.env...)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "NoSchedule, NoExecute or PreferNoSchedule") {
		t.Errorf("bad taint: %v %s", err, out)
	}

	// A third group: with three, the pass that finished deleting the
	// first once indexed the fresh, shorter list by the old length (and
	// panicked).
	if out := skiff("create", "nodegroup", "spare", "--cluster", "cli-nodes", "--nodes", "1", "--zones", "a"); !strings.Contains(out, "node group spare is ACTIVE") {
		t.Errorf("create nodegroup spare:\n%s", out)
	}

	out = skiff("delete", "cluster", "cli-nodes")
	for _, want := range []string{"node group ng-1 deleted", "node group spare deleted", "node group tainted deleted", "cluster cli-nodes deleted"} {
		if !strings.Contains(out, want) {
			t.Errorf("delete output lacks %q:\n%s", want, out)
		}
	}
	noLeftovers(t, dataDir)
}

// diagnoseNodes logs each node namespace's addresses, routes and whether
// it reaches its VPC's registry, and in which namespace its processes run.
func diagnoseNodes(t *testing.T) {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "skiff-n-") {
			continue
		}
		ns := e.Name()
		addrs, _ := exec.Command("ip", "-n", ns, "-4", "-o", "addr").CombinedOutput()
		routes, _ := exec.Command("ip", "-n", ns, "route").CombinedOutput()
		neigh, _ := exec.Command("ip", "-n", ns, "neigh").CombinedOutput()
		dial := "ok"
		if err := dialFrom(ns, "172.31.0.2:5000"); err != nil {
			dial = err.Error()
		}
		var st syscall.Stat_t
		syscall.Stat("/run/netns/"+ns, &st)
		procs, _ := exec.Command("bash", "-c", "for p in $(pgrep -f "+strings.TrimPrefix(ns, "skiff-n-")+"); do echo $p $(readlink /proc/$p/ns/net) $(tr '\\0' ' ' </proc/$p/cmdline | cut -c1-80); done").CombinedOutput()
		t.Logf("%s (inode %d): dial registry: %s\n%s%s%s%s", ns, st.Ino, dial, addrs, routes, neigh, procs)
	}
}

// TestOrphanNodesSwept loses skiff's store while a cluster runs nodes (a
// crash that takes the state with it): the next skiff finds the nodes by
// their instances and removes everything they left on the machine.
func TestOrphanNodesSwept(t *testing.T) {
	dataDir, listen := t.TempDir(), freePort(t)
	s := startServe(t, dataDir, listen)
	defer func() { s.stop(t) }()
	mustAWS(t, s, s.createArgs(t, "orphans")...)
	waitAWSStatus(t, s, "orphans", "ACTIVE")
	role := nodeRole(t, s, "nodes")
	mustAWS(t, s, append([]string{"eks", "create-nodegroup", "--cluster-name", "orphans", "--nodegroup-name", "ng", "--node-role", role,
		"--scaling-config", "minSize=1,maxSize=2,desiredSize=2", "--subnets"}, s.defaultSubnets(t)...)...)
	waitNodegroup(t, s, "orphans", "ng", "ACTIVE", 3*time.Minute)
	if left := leftovers(dataDir); len(left) == 0 {
		t.Fatal("no node sandboxes found while the nodes run (the check could not fail)")
	}
	s.kill()
	if err := os.Remove(filepath.Join(dataDir, "skiff.db")); err != nil {
		t.Fatal(err)
	}
	s = startServe(t, dataDir, listen)
	if err := eventually(60*time.Second, func() error {
		if left := leftovers(dataDir); len(left) > 0 {
			return fmt.Errorf("left on the machine: %v", left)
		}
		if left := instances(dataDir); len(left) > 0 {
			return fmt.Errorf("instances left: %v", left)
		}
		return nil
	}); err != nil {
		data, _ := os.ReadFile(filepath.Join(dataDir, "serve.log"))
		t.Fatalf("%v\nserve log:\n%s", err, tail(string(data), 30))
	}
}
