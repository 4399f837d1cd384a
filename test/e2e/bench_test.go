package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"skiff.dev/skiff/internal/controlplane"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/runtime/process"
)

// pssAnon returns a process's proportional share of anonymous memory in
// bytes (the binary's file pages are shared by every instance, so RSS
// would count them many times over).
func pssAnon(pid int) int64 {
	return procKB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss_Anon:")
}

// procKB reads field ("Name:") of a /proc file that counts in kB, in
// bytes; 0 if the file or the field is missing.
func procKB(path, field string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

const mib = 1 << 20

// median returns the middle of d (sorting it).
func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// report prints a benchmark's findings as they come, to stdout: the
// testing package keeps only the first 10 lines a benchmark logs, and the
// traces and summaries below are longer.
func report(b *testing.B, format string, args ...any) {
	fmt.Printf("%s: %s\n", b.Name(), strings.TrimRight(fmt.Sprintf(format, args...), "\n"))
}

// BenchmarkControlPlane measures, in one run: the bare baseline (one etcd +
// one apiserver from the same bundle, started to /readyz), CreateCluster
// through the EKS API (skiff serve, the SDK, subnets) to ACTIVE (issue 21:
// ≤ 1.5× the baseline), the reconciler's HA control plane create→ACTIVE (3 etcd, 2 apiservers behind the endpoint, 2+2
// controller-managers/schedulers), failover (kill -9 → replaced and
// healthy) of an apiserver and of an etcd member, and idle memory.
func BenchmarkControlPlane(b *testing.B) {
	for range b.N {
		cat := catalog(b)
		bun := cat.Latest()
		ctx := context.Background()

		// Baseline: the median of three, and one kept for its memory.
		bareReady := bareFloor(b)
		dir := b.TempDir()
		rt := process.New(dir, filepath.Join(dir, "logs"), testLogger(b, dir))
		bare, err := controlplane.StartBare(ctx, rt, bun, filepath.Join(dir, "bare"), 240)
		if err != nil {
			b.Fatal(err)
		}
		if err := bare.WaitReady(ctx); err != nil {
			b.Fatal(err)
		}
		time.Sleep(10 * time.Second) // idle
		var bareMem int64
		for _, pid := range bare.PIDs(ctx) {
			bareMem += pssAnon(pid)
		}
		bare.Stop(ctx)

		// HA, as users create it: CreateCluster through the EKS API with
		// subnets (a VPC, the endpoint's address in it, add-ons) to ACTIVE.
		// Three clusters one after the other; the median counts.
		s, _ := serveTest(b)
		var apiRuns []time.Duration
		for i := range 3 {
			name := fmt.Sprintf("bench-api-%d", i)
			d, _ := createActiveSDK(b, s, name)
			apiRuns = append(apiRuns, d)
			mustAWS(b, s, "eks", "delete-cluster", "--name", name)
			waitGone(b, s, "describe-cluster", "--name", name)
		}
		b.Logf("CreateCluster → ACTIVE runs: %v", apiRuns)
		apiReady := median(apiRuns)

		// HA, the reconciler alone (no API, no VPC), for failover and memory.
		e := newEngineEnv(b)
		start := time.Now()
		e.create(b, "bench")
		c := waitStatus(b, e.svc, "bench", model.StatusActive, 2*time.Minute) // the endpoint serves
		haReady := time.Since(start)
		e.waitHealthy(b, c, time.Minute) // …and every instance is up
		haAll := time.Since(start)

		failover := func(name string) time.Duration {
			pid := e.instance(c, name).PID
			t0 := time.Now()
			syscall.Kill(pid, syscall.SIGKILL)
			for syscall.Kill(pid, 0) == nil && time.Since(t0) < 5*time.Second {
				time.Sleep(time.Millisecond)
			}
			e.waitHealthy(b, c, time.Minute)
			return time.Since(t0)
		}
		time.Sleep(5 * time.Second)
		apiFailover := failover("apiserver-1")
		time.Sleep(5 * time.Second)
		etcdFailover := failover("etcd-c")

		time.Sleep(10 * time.Second) // idle
		roles := map[string]int64{}
		var haMem int64
		for _, in := range e.engine.Snapshot(c).Instances {
			m := pssAnon(in.PID)
			roles[string(in.Role)] += m
			haMem += m
		}

		b.ReportMetric(bareReady.Seconds(), "bare-ready-s")
		b.ReportMetric(apiReady.Seconds(), "api-active-s")
		b.ReportMetric(apiReady.Seconds()/bareReady.Seconds(), "api-active/bare")
		b.ReportMetric(haReady.Seconds(), "ha-ready-s")
		b.ReportMetric(haReady.Seconds()/bareReady.Seconds(), "ha/bare-ready")
		b.ReportMetric(haAll.Seconds(), "ha-all-healthy-s")
		b.ReportMetric(apiFailover.Seconds(), "apiserver-failover-s")
		b.ReportMetric(etcdFailover.Seconds(), "etcd-failover-s")
		b.ReportMetric(float64(bareMem)/mib, "bare-MiB")
		b.ReportMetric(float64(haMem)/mib, "ha-MiB")
		b.ReportMetric(float64(haMem)/float64(bareMem), "ha/bare-mem")
		b.ReportMetric(float64(24<<30)/float64(haMem), "ha-per-24GiB")
		b.Logf("idle anonymous PSS by role (MiB): etcd ×3 %.0f, apiserver ×2 %.0f, controller-manager ×2 %.0f, scheduler ×2 %.0f",
			float64(roles["etcd"])/mib, float64(roles["apiserver"])/mib, float64(roles["controller-manager"])/mib, float64(roles["scheduler"])/mib)
	}
}

// BenchmarkEndpoint measures the latency a client sees through the
// cluster's endpoint (its load-balancer replicas) against direct
// connections to the apiservers, in the same run: GETs of one object,
// interleaved one by one (through, apiserver 0, apiserver 1), in rounds
// that each open new connections, so that the endpoint's connections land
// on both apiservers as the direct ones do; it reports the medians and
// their ratio (issue 16: target ≤ 1.05×).
func BenchmarkEndpoint(b *testing.B) {
	for range b.N {
		e := newEngineEnv(b)
		c := e.createActive(b, "bench")
		e.waitHealthy(b, c, 2*time.Minute)
		cfg, err := clientcmd.BuildConfigFromFlags("", e.adminKubeconfig(c))
		if err != nil {
			b.Fatal(err)
		}
		cfg.QPS, cfg.Burst = 10000, 10000 // no client-side rate limit
		// client makes a client with connections of its own (a config with
		// a Dial function gets a transport of its own in client-go).
		client := func(host string) kubernetes.Interface {
			cc := rest.CopyConfig(cfg)
			if host != "" {
				cc.Host = host
			}
			cc.Dial = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
			cs, err := kubernetes.NewForConfig(cc)
			if err != nil {
				b.Fatal(err)
			}
			return cs
		}
		direct := func(i int) string {
			return "https://" + net.JoinHostPort(e.engine.Layout(c).APIServerIP(i).String(), strconv.Itoa(controlplane.APIServerPort))
		}
		ctx := context.Background()
		get := func(cs kubernetes.Interface) time.Duration {
			start := time.Now()
			if _, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
				b.Fatal(err)
			}
			return time.Since(start)
		}
		var viaLB, viaDirect []time.Duration
		for range 40 {
			clients := []kubernetes.Interface{client(""), client(direct(0)), client(direct(1))}
			for range 5 { // warm the connections
				for _, cs := range clients {
					get(cs)
				}
			}
			for range 25 {
				viaLB = append(viaLB, get(clients[0]))
				viaDirect = append(viaDirect, get(clients[1]), get(clients[2]))
			}
		}
		lb, dir := median(viaLB), median(viaDirect)
		b.ReportMetric(float64(lb.Microseconds()), "endpoint-µs")
		b.ReportMetric(float64(dir.Microseconds()), "direct-µs")
		b.ReportMetric(float64(lb)/float64(dir), "endpoint/direct")
		report(b, "median GET: %v through the endpoint, %v direct: %.3f× (%d and %d requests)", lb, dir, float64(lb)/float64(dir), len(viaLB), len(viaDirect))
	}
}

// BenchmarkReboot measures the recovery after a simulated host reboot of
// control planes (no nodes): skiff and every instance killed, then skiff
// started again; the seconds until every cluster serves (its API answers
// through its endpoint, as ACTIVE promises) and until every instance is
// healthy, for 1 and for 5 clusters.
func BenchmarkReboot(b *testing.B) {
	for _, n := range []int{1, 5} {
		b.Run(fmt.Sprintf("clusters=%d", n), func(b *testing.B) {
			for range b.N {
				e := newEngineEnv(b)
				var cs []*model.Cluster
				for i := range n {
					e.create(b, fmt.Sprintf("r%d", i))
				}
				for i := range n {
					cs = append(cs, waitStatus(b, e.svc, fmt.Sprintf("r%d", i), model.StatusActive, 5*time.Minute))
				}
				for _, c := range cs {
					e.waitHealthy(b, c, 5*time.Minute)
				}
				e.stopEngine()
				for deadline := time.Now().Add(30 * time.Second); len(instancePIDs(e.dir)) > 0 && time.Now().Before(deadline); {
					for _, pid := range instancePIDs(e.dir) {
						syscall.Kill(-pid, syscall.SIGKILL)
					}
					time.Sleep(50 * time.Millisecond)
				}
				clients := make([]kubernetes.Interface, len(cs))
				for i, c := range cs {
					cfg, err := clientcmd.BuildConfigFromFlags("", e.adminKubeconfig(c))
					if err != nil {
						b.Fatal(err)
					}
					cfg.Timeout = 2 * time.Second
					if clients[i], err = kubernetes.NewForConfig(cfg); err != nil {
						b.Fatal(err)
					}
				}
				start := time.Now()
				e.startEngine()
				// Serving: each cluster's API answers through its endpoint
				// (what ACTIVE promises); then every instance is healthy.
				for i, c := range cs {
					for {
						if _, err := clients[i].CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err == nil {
							break
						}
						if time.Since(start) > 5*time.Minute {
							b.Fatalf("cluster %s does not serve 5 minutes after the reboot", c.Name)
						}
						time.Sleep(100 * time.Millisecond)
					}
				}
				serving := time.Since(start)
				for _, c := range cs {
					e.waitHealthy(b, c, 5*time.Minute)
				}
				d := time.Since(start)
				b.ReportMetric(serving.Seconds(), "serving-s")
				b.ReportMetric(d.Seconds(), "recover-s")
				b.Logf("%d clusters serve again %v after the reboot, every instance healthy after %v", n,
					serving.Round(100*time.Millisecond), d.Round(100*time.Millisecond))
			}
		})
	}
}
