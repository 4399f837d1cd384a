package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkWorkload measures, in one run on a real skiff with a 3-node
// group: the rollout of the demo web app's Deployment (3 replicas, one per
// zone; the baseline) and how long until its Service answers by DNS name
// from a pod on another node (target ≤ 10 s after apply), and the
// anonymous memory of the add-ons (kube-proxy per node, CoreDNS per
// replica) against an idle node's.
func BenchmarkWorkload(b *testing.B) {
	for range b.N {
		dataDir := b.TempDir()
		s := startServe(b, dataDir, freePort(b))
		kc := clusterWithNodes(b, s, "bench-wl")
		var node string
		if err := eventually(3*time.Minute, func() error {
			out, err := kubectlEnv(b, s.env, kc, "-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=5s")
			if err != nil {
				return err
			}
			if !strings.Contains(out, "successfully") {
				return os.ErrNotExist
			}
			node, err = kubectlEnv(b, s.env, kc, "get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
			return err
		}); err != nil {
			b.Fatal(err)
		}
		if _, err := kubectlEnv(b, s.env, kc, "run", "box", "--image=busybox", "--restart=Never", "--overrides", `{"spec":{"nodeName":"`+node+`"}}`, "--", "sleep", "3600"); err != nil {
			b.Fatal(err)
		}
		if _, err := kubectlEnv(b, s.env, kc, "wait", "--for=condition=Ready", "pod/box", "--timeout=90s"); err != nil {
			b.Fatal(err)
		}

		manifest := filepath.Join(dataDir, "web.yaml")
		os.WriteFile(manifest, []byte(strings.ReplaceAll(webManifest, "IMAGE", "skiff/web:1.0")), 0o600)
		start := time.Now()
		if _, err := kubectlEnv(b, s.env, kc, "apply", "-f", manifest); err != nil {
			b.Fatal(err)
		}
		var answered, rolled time.Duration
		done := make(chan error, 1)
		go func() {
			_, err := kubectlEnv(b, s.env, kc, "rollout", "status", "deployment/web", "--timeout=120s")
			rolled = time.Since(start)
			done <- err
		}()
		for time.Since(start) < 2*time.Minute {
			if out, err := kubectlEnv(b, s.env, kc, "exec", "box", "--", "timeout", "2", "wget", "-qO-", "http://web.default.svc.cluster.local"); err == nil && strings.Contains(out, "hello from") {
				answered = time.Since(start)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := <-done; err != nil || answered == 0 {
			b.Fatalf("rollout %v; Service answered after %s", err, answered)
		}

		// Memory: kube-proxy on each node, CoreDNS replicas, an idle node's
		// own processes (containerd, shims, kubelet).
		time.Sleep(5 * time.Second)
		sum := func(pattern string) (int64, int) {
			out, _ := exec.Command("pgrep", "-f", pattern).Output()
			var total int64
			n := 0
			for _, f := range strings.Fields(string(out)) {
				pid, _ := strconv.Atoi(f)
				total += pssAnon(pid)
				n++
			}
			return total, n
		}
		proxyMem, proxies := sum("^/usr/local/bin/kube-proxy --config")
		dnsMem, dnses := sum("^/coredns -conf")
		if proxies != 3 || dnses != 2 {
			b.Fatalf("found %d kube-proxy and %d CoreDNS processes, want 3 and 2", proxies, dnses)
		}
		nodes, _ := filepath.Glob(filepath.Join(dataDir, "clusters", "*", "nodes", "i-*"))
		var nodeMem int64
		for _, n := range nodes {
			for _, pid := range nodePIDs(filepath.Base(n), false) {
				nodeMem += pssAnon(pid)
			}
		}
		perNode := nodeMem / int64(len(nodes))

		b.ReportMetric(rolled.Seconds(), "rollout-s")
		b.ReportMetric(answered.Seconds(), "service-answers-s")
		b.ReportMetric(answered.Seconds()/rolled.Seconds(), "answers/rollout")
		b.ReportMetric(answered.Seconds()/10, "answers/target-10s")
		b.ReportMetric(float64(proxyMem)/3/mib, "kube-proxy-MiB")
		b.ReportMetric(float64(dnsMem)/2/mib, "coredns-MiB")
		b.ReportMetric(float64(proxyMem/3)/float64(perNode), "kube-proxy/node-mem")

		mustAWS(b, s, "eks", "delete-nodegroup", "--cluster-name", "bench-wl", "--nodegroup-name", "ng")
		deleteAll(b, s)
		s.stop(b)
	}
}
