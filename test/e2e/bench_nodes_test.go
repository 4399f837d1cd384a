package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/aws-sdk-go-v2/service/eks/types"

	"skiff.dev/skiff/internal/controlplane"
	"skiff.dev/skiff/internal/runtime/process"
)

// BenchmarkNodegroup measures, in one run through the EKS API of a real
// skiff: a 1-node group's CreateNodegroup → ACTIVE (every node Ready; the
// baseline), a 3-node group's (target ≤ 30 s; nodes start in parallel),
// and the idle anonymous memory of a node (containerd, its shims and the
// kubelet) against a bare etcd + apiserver of the same bundle.
func BenchmarkNodegroup(b *testing.B) {
	for range b.N {
		ctx := context.Background()
		// Memory baseline: bare etcd + apiserver.
		dir := b.TempDir()
		rt := process.New(dir, filepath.Join(dir, "logs"), testLogger(b, dir))
		bare, err := controlplane.StartBare(ctx, rt, catalog(b).Latest(), filepath.Join(dir, "bare"), 240)
		if err != nil {
			b.Fatal(err)
		}
		if err := bare.WaitReady(ctx); err != nil {
			b.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		var bareMem int64
		for _, pid := range bare.PIDs(ctx) {
			bareMem += pssAnon(pid)
		}
		bare.Stop(ctx)

		dataDir := b.TempDir()
		s := startServe(b, dataDir, freePort(b))
		mustAWS(b, s, s.createArgs(b, "bench-nodes")...)
		waitAWSStatus(b, s, "bench-nodes", "ACTIVE")
		role := nodeRole(b, s, "nodes")
		client := eks.NewFromConfig(sdkConfig(s))
		ready := func(name string, n int32) time.Duration {
			start := time.Now()
			_, err := client.CreateNodegroup(ctx, &eks.CreateNodegroupInput{ClusterName: aws.String("bench-nodes"), NodegroupName: aws.String(name),
				NodeRole: aws.String(role), Subnets: s.defaultSubnets(b),
				ScalingConfig: &types.NodegroupScalingConfig{MinSize: aws.Int32(n), MaxSize: aws.Int32(n), DesiredSize: aws.Int32(n)}})
			if err != nil {
				b.Fatal(err)
			}
			for time.Since(start) < 3*time.Minute {
				out, err := client.DescribeNodegroup(ctx, &eks.DescribeNodegroupInput{ClusterName: aws.String("bench-nodes"), NodegroupName: aws.String(name)})
				if err != nil {
					b.Fatal(err)
				}
				if out.Nodegroup.Status == types.NodegroupStatusActive { // every desired node is Ready
					return time.Since(start)
				}
				time.Sleep(100 * time.Millisecond)
			}
			b.Fatalf("node group %s not ACTIVE after 3 minutes", name)
			return 0
		}
		kc := filepath.Join(dataDir, "kubeconfig")
		if _, err := awsCLI(b, s, "eks", "update-kubeconfig", "--name", "bench-nodes", "--kubeconfig", kc); err != nil {
			b.Fatal(err)
		}
		// ACTIVE must mean Ready: check with kubectl right away.
		readyNow := func(group string) int {
			out, err := kubectlEnv(b, s.env, kc, "get", "nodes", "-l", "eks.amazonaws.com/nodegroup="+group,
				"-o", `jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{" "}{end}`)
			if err != nil {
				b.Fatal(err)
			}
			return strings.Count(out, "True")
		}
		one := ready("one", 1)
		if n := readyNow("one"); n != 1 {
			b.Fatalf("group one ACTIVE with %d Ready nodes", n)
		}
		three := ready("three", 3)
		if n := readyNow("three"); n != 3 {
			b.Fatalf("group three ACTIVE with %d Ready nodes", n)
		}

		time.Sleep(10 * time.Second) // idle
		nodes, _ := filepath.Glob(filepath.Join(dataDir, "clusters", "*", "nodes", "i-*"))
		var nodeMem int64
		for _, n := range nodes {
			for _, pid := range nodePIDs(filepath.Base(n), false) {
				nodeMem += pssAnon(pid)
			}
		}
		if len(nodes) != 4 || nodeMem == 0 {
			b.Fatalf("found %d node sandboxes using %d bytes; want 4", len(nodes), nodeMem)
		}
		perNode := nodeMem / int64(len(nodes))

		b.ReportMetric(one.Seconds(), "1-node-ready-s")
		b.ReportMetric(three.Seconds(), "3-nodes-ready-s")
		b.ReportMetric(three.Seconds()/one.Seconds(), "3/1-nodes")
		b.ReportMetric(three.Seconds()/30, "3-nodes/target-30s")
		b.ReportMetric(float64(perNode)/mib, "node-MiB")
		b.ReportMetric(float64(perNode)/float64(bareMem), "node/bare-cp-mem")
		b.ReportMetric(float64(24<<30)/float64(perNode), "nodes-per-24GiB")

		for _, ng := range []string{"one", "three"} {
			client.DeleteNodegroup(ctx, &eks.DeleteNodegroupInput{ClusterName: aws.String("bench-nodes"), NodegroupName: aws.String(ng)})
		}
		deleteAll(b, s)
		s.stop(b)
	}
}

// BenchmarkNodeSandbox measures what making every node a system container
// costs (issue 14; target ≤ 1.3× for both): a 1-node group's
// CreateNodegroup → ACTIVE and the node's idle anonymous memory (its
// processes and pods: the same kube-proxy and CoreDNS in both), with
// --node-sandbox=host (the baseline: host root, network and mount
// namespaces only) and =userns, in one run.
func BenchmarkNodeSandbox(b *testing.B) {
	for range b.N {
		ready, mem := map[string]float64{}, map[string]float64{}
		for _, mode := range []string{"host", "userns"} {
			ctx := context.Background()
			dataDir := b.TempDir()
			s := startServe(b, dataDir, freePort(b), "--node-sandbox", mode)
			mustAWS(b, s, s.createArgs(b, "bench-"+mode)...)
			waitAWSStatus(b, s, "bench-"+mode, "ACTIVE")
			role := nodeRole(b, s, "nodes")
			client := eks.NewFromConfig(sdkConfig(s))
			start := time.Now()
			if _, err := client.CreateNodegroup(ctx, &eks.CreateNodegroupInput{ClusterName: aws.String("bench-" + mode), NodegroupName: aws.String("ng"),
				NodeRole: aws.String(role), Subnets: s.defaultSubnets(b)[:1],
				ScalingConfig: &types.NodegroupScalingConfig{MinSize: aws.Int32(1), MaxSize: aws.Int32(1), DesiredSize: aws.Int32(1)}}); err != nil {
				b.Fatal(err)
			}
			waitNodegroup(b, s, "bench-"+mode, "ng", "ACTIVE", 3*time.Minute)
			ready[mode] = time.Since(start).Seconds()
			time.Sleep(20 * time.Second) // idle: pods started, caches settled
			nodes, _ := filepath.Glob(filepath.Join(dataDir, "clusters", "*", "nodes", "i-*"))
			if len(nodes) != 1 {
				b.Fatalf("%s: %d nodes, want 1", mode, len(nodes))
			}
			for _, pid := range nodePIDs(filepath.Base(nodes[0]), true) {
				mem[mode] += float64(pssAnon(pid))
			}
			if mem[mode] == 0 {
				b.Fatalf("%s: no memory measured for node %s", mode, nodes[0])
			}
			deleteAll(b, s)
			s.stop(b)
		}
		b.ReportMetric(ready["host"], "host-ready-s")
		b.ReportMetric(ready["userns"], "userns-ready-s")
		b.ReportMetric(ready["userns"]/ready["host"], "ready-userns/host")
		b.ReportMetric(mem["host"]/mib, "host-node-MiB")
		b.ReportMetric(mem["userns"]/mib, "userns-node-MiB")
		b.ReportMetric(mem["userns"]/mem["host"], "mem-userns/host")
	}
}

// nodePIDs lists a node's processes: those naming its instance ID (the
// host-side parents, and every process of a host-root node) and those in
// its cgroup tree (a system container's, and with pods its containers').
func nodePIDs(id string, pods bool) []int {
	seen := map[int]bool{}
	out, _ := exec.Command("pgrep", "-f", id).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			seen[pid] = true
		}
	}
	// A host-root node's cgroup is /skiff/ID, a system container's the
	// runtime's machine cgroup, /skiff/CLUSTER~node-ID-sandbox.
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/memory/skiff/*" + id + "*")
	for _, cg := range cgroups {
		filepath.WalkDir(cg, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && !pods && strings.HasPrefix(d.Name(), "kubepods") {
				return filepath.SkipDir
			}
			if err == nil && d.IsDir() {
				data, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
				for _, f := range strings.Fields(string(data)) {
					if pid, err := strconv.Atoi(f); err == nil {
						seen[pid] = true
					}
				}
			}
			return nil
		})
	}
	var pids []int
	for pid := range seen {
		pids = append(pids, pid)
	}
	return pids
}
