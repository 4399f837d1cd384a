package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkHibernate (issue 22) creates SKIFF_AWAKE HA clusters that stay
// awake (1 unless set) and SKIFF_HIBERNATED more (3 unless set; `make
// bench-hibernate` sets 1000), each hibernated (`skiff hibernate`) as soon
// as it is ACTIVE. At rest it measures, per hibernated cluster, the
// anonymous PSS of what is left of it (its endpoint), against an awake
// cluster's, and skiff serve's CPU; then it wakes the first hibernated
// cluster with a Kubernetes request through its endpoint, as kubectl
// would, and times the answer against the first cluster's create →
// ACTIVE of the same run. Issue 22's target: a wake ≤ 3 s.
func BenchmarkHibernate(b *testing.B) {
	count := func(name string, def int) int {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			b.Fatalf("%s=%q: want a number of clusters", name, v)
		}
		return n
	}
	awake, asleep := count("SKIFF_AWAKE", 1), count("SKIFF_HIBERNATED", 3)
	if asleep < 1 {
		b.Fatal("SKIFF_HIBERNATED must be at least 1")
	}
	for range b.N {
		s, dataDir := serveTest(b, "--quota-clusters", strconv.Itoa(awake+asleep))
		var creates []time.Duration
		var up, down []*ekstypes.Cluster
		for i := 0; i < awake+asleep; i++ {
			// Awake clusters while 4 GiB are left; then hibernated ones
			// (each needs its control plane until it hibernates) while 2.
			avail := memAvailable(b)
			if i < awake && avail < 4<<30 {
				report(b, "%d clusters awake, not %d: %d MiB of memory available", i, awake, avail/mib)
				awake = i
			}
			if avail < 2<<30 {
				report(b, "stopping at %d clusters: %d MiB of memory available", i, avail/mib)
				break
			}
			name := fmt.Sprintf("hib-%04d", i)
			d, c := createActiveSDK(b, s, name)
			creates = append(creates, d)
			if i < awake {
				up = append(up, c)
				continue
			}
			cmd := exec.Command(skiffBin, "hibernate", name, "--endpoint", s.endpoint)
			cmd.Env = append(os.Environ(), s.env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("skiff hibernate %s: %v\n%s", name, err, out)
			}
			down = append(down, c)
			if len(down)%50 == 0 {
				report(b, "%d clusters hibernating; the last created in %.2fs", len(down), d.Seconds())
			}
		}
		if len(down) == 0 {
			b.Fatal("no cluster hibernates")
		}
		time.Sleep(10 * time.Second) // at rest
		pids := recordedPIDs(dataDir)
		serve := s.cmd.Process.Pid
		before := cpuTicks(serve)
		start := time.Now()
		time.Sleep(20 * time.Second)
		serveCPU := float64(cpuTicks(serve)-before) / 100 / time.Since(start).Seconds() * 100 // USER_HZ is 100
		mem := map[string]int64{}
		instances := map[string]int{}
		for id, pid := range pids {
			cluster, _, _ := strings.Cut(id, "/")
			mem[cluster] += pssAnon(pid)
			instances[cluster]++
		}
		median := func(cs []*ekstypes.Cluster) (int64, int) {
			var ms []int64
			n := 0
			for _, c := range cs {
				var m int64
				k := 0
				for id := range mem { // IDs are NAME-HEX
					if strings.HasPrefix(id, *c.Name+"-") {
						m, k = mem[id], instances[id]
					}
				}
				ms = append(ms, m)
				n = max(n, k)
			}
			slices.Sort(ms)
			return ms[len(ms)/2], n
		}
		downMem, downInst := median(down)
		var upMem int64
		if len(up) > 0 {
			upMem, _ = median(up)
		}

		// The wake: a request through the endpoint, answered.
		c := down[0]
		client := sdkClient(b, s, c)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		t0 := time.Now()
		_, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		wake := time.Since(t0)
		cancel()
		if err != nil {
			b.Fatalf("waking %s: %v", *c.Name, err)
		}
		first := creates[0]
		b.ReportMetric(float64(len(down)), "hibernated")
		b.ReportMetric(float64(downMem)/mib, "hibernated-MiB")
		if upMem > 0 {
			b.ReportMetric(float64(downMem)/float64(upMem), "hibernated/awake-mem")
		}
		b.ReportMetric(serveCPU, "serve-cpu-%")
		b.ReportMetric(wake.Seconds(), "wake-s")
		b.ReportMetric(wake.Seconds()/3, "wake/target-3s")
		b.ReportMetric(wake.Seconds()/first.Seconds(), "wake/create")
		report(b, "%d hibernated clusters beside %d awake: per hibernated cluster %.1f MiB anonymous PSS in %d instances (awake %.0f MiB: %.3f×); skiff serve %.2f%% of a core; a request woke one in %.2fs (%.2f× the 3 s target; first create → ACTIVE %.2fs: %.2f×)",
			len(down), len(up), float64(downMem)/mib, downInst, float64(upMem)/mib, float64(downMem)/float64(max(upMem, 1)),
			serveCPU, wake.Seconds(), wake.Seconds()/3, first.Seconds(), wake.Seconds()/first.Seconds())
		deleteAll(b, s)
	}
}
