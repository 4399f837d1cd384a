package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkDensity (issue 22) creates HA clusters through the EKS API one
// after another until SKIFF_DENSITY of them are ACTIVE (3 unless set;
// `make bench-density` sets 100), or until the machine has less than
// 3 GiB of memory available, and then, with every cluster idle, measures
// per HA control plane (every instance of the cluster: etcd ×3, apiservers,
// controller-managers, schedulers, the endpoint's replicas, authenticators,
// tunnel, door) its anonymous PSS and its CPU over 30 s in per cent of one
// core, skiff serve's own CPU and memory beside them, the create → ACTIVE
// time of the last cluster against the first, and that every cluster
// answers a client through its endpoint. Issue 22's targets per idle HA
// control plane: ≤ 200 MiB and ≤ 1.5 % of a core.
func BenchmarkDensity(b *testing.B) {
	limit := 3
	if v := os.Getenv("SKIFF_DENSITY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("SKIFF_DENSITY=%q: want a positive number of clusters", v)
		}
		limit = n
	}
	for range b.N {
		s, dataDir := serveTest(b)
		var creates []time.Duration
		var clusters []*ekstypes.Cluster
		for i := range limit {
			if avail := memAvailable(b); avail < 3<<30 {
				report(b, "stopping at %d clusters: %d MiB of memory available", len(clusters), avail/mib)
				break
			}
			d, c := createActiveSDK(b, s, fmt.Sprintf("density-%03d", i))
			creates = append(creates, d)
			clusters = append(clusters, c)
			if (i+1)%10 == 0 {
				report(b, "%d clusters ACTIVE; the last in %.2fs", i+1, d.Seconds())
			}
		}
		// Idle: standbys started, leader elections settled.
		time.Sleep(20 * time.Second)
		pids := recordedPIDs(dataDir)
		serve := s.cmd.Process.Pid
		before := map[int]int64{serve: cpuTicks(serve)}
		for _, pid := range pids {
			before[pid] = cpuTicks(pid)
		}
		start := time.Now()
		time.Sleep(30 * time.Second)
		window := time.Since(start).Seconds()
		percent := func(pid int) float64 {
			return float64(cpuTicks(pid)-before[pid]) / 100 / window * 100 // USER_HZ is 100
		}
		type usage struct {
			mem       int64
			cpu       float64
			instances int
		}
		per, roles := map[string]*usage{}, map[string]*usage{}
		add := func(m map[string]*usage, key string, mem int64, cpu float64) {
			u := m[key]
			if u == nil {
				u = &usage{}
				m[key] = u
			}
			u.mem += mem
			u.cpu += cpu
			u.instances++
		}
		for id, pid := range pids {
			cluster, name, _ := strings.Cut(id, "/")
			mem, cpu := pssAnon(pid), percent(pid)
			add(per, cluster, mem, cpu)
			add(roles, strings.TrimRight(strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "-a"), "-b"), "-c"), "-0123456789"), mem, cpu)
		}
		if len(per) != len(clusters) {
			b.Fatalf("instances of %d clusters running, want %d", len(per), len(clusters))
		}
		var mems []int64
		var cpus []float64
		for _, u := range per {
			mems = append(mems, u.mem)
			cpus = append(cpus, u.cpu)
		}
		slices.Sort(mems)
		slices.Sort(cpus)
		serveCPU, serveMem := percent(serve), pssAnon(serve)

		// Every cluster answers through its endpoint.
		for _, c := range clusters {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := sdkClient(b, s, c).CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
			cancel()
			if err != nil {
				b.Fatalf("cluster %s does not answer: %v", *c.Name, err)
			}
		}

		n := len(clusters)
		first, last := creates[0], creates[n-1]
		memMed, cpuMed := mems[n/2], cpus[n/2]
		b.ReportMetric(float64(n), "clusters")
		b.ReportMetric(float64(memMed)/mib, "cp-MiB")
		b.ReportMetric(cpuMed, "cp-cpu-%")
		b.ReportMetric(float64(memMed)/mib/200, "cp-MiB/target-200")
		b.ReportMetric(cpuMed/1.5, "cp-cpu/target-1.5%")
		b.ReportMetric(serveCPU, "serve-cpu-%")
		b.ReportMetric(float64(serveMem)/mib, "serve-MiB")
		b.ReportMetric(last.Seconds()/first.Seconds(), "last/first-create")
		report(b, "%d HA control planes idle: per control plane (median) %.0f MiB anonymous PSS (min %.0f, max %.0f) and %.2f%% of a core (min %.2f, max %.2f); skiff serve %.2f%% of a core, %.0f MiB; create → ACTIVE first %.2fs, last %.2fs (%.2f×); targets ≤ 200 MiB and ≤ 1.5%%",
			n, float64(memMed)/mib, float64(mems[0])/mib, float64(mems[n-1])/mib, cpuMed, cpus[0], cpus[n-1],
			serveCPU, float64(serveMem)/mib, first.Seconds(), last.Seconds(), last.Seconds()/first.Seconds())
		var lines []string
		for role, u := range roles {
			lines = append(lines, fmt.Sprintf("  %-20s ×%-4d %7.1f MiB %6.2f%% of a core (per cluster)", role, u.instances/n, float64(u.mem)/mib/float64(n), u.cpu/float64(n)))
		}
		slices.Sort(lines)
		report(b, "by role:\n%s", strings.Join(lines, "\n"))
		deleteAll(b, s)
	}
}

// cpuTicks is the CPU time (user and system, in USER_HZ ticks) process
// pid has used, 0 if it is gone.
func cpuTicks(pid int) int64 {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	i := bytes.LastIndexByte(stat, ')')
	if err != nil || i < 0 {
		return 0
	}
	f := strings.Fields(string(stat[i+1:])) // from field 3, state
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime
}

// memAvailable is the machine's MemAvailable in bytes.
func memAvailable(b *testing.B) int64 {
	avail := procKB("/proc/meminfo", "MemAvailable:")
	if avail == 0 {
		b.Fatal("no MemAvailable in /proc/meminfo")
	}
	return avail
}
