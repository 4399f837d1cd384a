package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/internal/runtime"
	"skiff.dev/skiff/internal/vpcnet"
)

// nodeIsReady reports n's Ready condition.
func nodeIsReady(n corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// instancePIDs maps each instance of a data dir to a live process group
// leader carrying its markers: every process to kill. A node's containerd
// shims carry its markers too, so the pid of an ID is any of them.
func instancePIDs(dataDir string) map[string]int {
	out := map[string]int{}
	scanInstances(dataDir, func(id string, pid int) { out[id] = pid })
	return out
}

// recordedPIDs maps each live instance of a data dir to the pid its
// runtime recorded when it started it (DATA/pids/CLUSTER~NAME: pid and
// start tick): an instance started again has another.
func recordedPIDs(dataDir string) map[string]int {
	out := map[string]int{}
	files, _ := os.ReadDir(filepath.Join(dataDir, "pids"))
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(dataDir, "pids", f.Name()))
		fields := strings.Fields(string(data))
		if err != nil || len(fields) != 2 {
			continue
		}
		pid, _ := strconv.Atoi(fields[0])
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		i := bytes.LastIndexByte(stat, ')')
		if err != nil || i < 0 {
			continue
		}
		if rest := strings.Fields(string(stat[i+1:])); len(rest) > 19 && rest[19] == fields[1] && rest[0] != "Z" {
			out[strings.ReplaceAll(f.Name(), "~", "/")] = pid
		}
	}
	return out
}

// TestServeDown (issue 16): the cluster's endpoint, its IAM token
// authenticator and its tunnel are instances of their own, not part of
// skiff serve. kill -9 skiff under two client loops that write and read
// through the endpoint (client-go with a certificate; kubectl with fresh
// `aws eks get-token` tokens), keep it down, start it again: the loops see
// no failure, and skiff adopts every instance (the nodes' too) without
// restarting any. Then skiff upgrades itself in place under the same loops,
// and a host reboot, simulated (see below).
func TestServeDown(t *testing.T) {
	s, dataDir := serveTest(t)
	kcUser := clusterWithNNodes(t, s, "steady", 2) // update-kubeconfig's: tokens from `aws eks get-token`
	kcs, _ := filepath.Glob(filepath.Join(dataDir, "clusters", "*", "kubeconfig", "admin.kubeconfig"))
	if len(kcs) != 1 {
		t.Fatalf("admin kubeconfigs %v", kcs)
	}
	cs := adminClient(t, kcs[0])
	waitNodegroup(t, s, "steady", "ng", "ACTIVE", 3*time.Minute)
	readyNodes(t, s, kcUser, 2)
	// ACTIVE needs one apiserver; wait for all 15 control-plane instances
	// (the door among them).
	var before map[string]int
	if err := eventually(60*time.Second, func() error {
		before = recordedPIDs(dataDir)
		cp, endpoints := 0, 0
		for id := range before {
			if !runtime.IsNodeInstance(id) {
				cp++
			}
			if strings.Contains(id, "/endpoint-") {
				endpoints++
			}
		}
		if cp != 15 || endpoints != 2 || len(before) == cp {
			return fmt.Errorf("instances %v: want 15 of the control plane, 2 of them the endpoint's replicas, and the nodes'", before)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// kubectl as EKS users run it: an update-kubeconfig kubeconfig whose
	// exec plugin mints a fresh token with `aws eks get-token` each time
	// (offline: a presigned URL), verified by the cluster's authenticators.
	env := s.env

	ctx, cancel := context.WithCancel(context.Background())
	var ok, failed, kubectlOK atomic.Int64
	var mu sync.Mutex
	var errs []string
	fail := func(err error) {
		failed.Add(1)
		mu.Lock()
		errs = append(errs, time.Now().Format(time.TimeOnly)+" "+err.Error())
		mu.Unlock()
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // kubectl: write, then read, each with a fresh token
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			_, err := kubectlEnv(t, env, kcUser, "create", "configmap", fmt.Sprintf("kubectl-%d", i), "--from-literal=i="+fmt.Sprint(i))
			if err == nil {
				_, err = kubectlEnv(t, env, kcUser, "get", "configmap", fmt.Sprintf("kubectl-%d", i))
			}
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				fail(err)
			} else {
				kubectlOK.Add(1)
			}
		}
	}()
	go func() { // the client: write a ConfigMap, read it back
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			name := fmt.Sprintf("down-%d", i)
			_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
			if err == nil {
				_, err = cs.CoreV1().ConfigMaps("default").Get(ctx, name, metav1.GetOptions{})
			}
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				fail(err)
			} else {
				ok.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	// skiff's API as the cluster's VPC reaches it: through the door.
	vpcAPI := vpcCaller(t, s, "steady")
	if out, err := vpcAPI(); err != nil || !strings.Contains(out, "arn:aws:iam::") {
		t.Errorf("skiff's API from the VPC, skiff up: %v %s", err, out)
	}
	time.Sleep(2 * time.Second)
	s.kill()
	t.Logf("killed skiff serve at %s", time.Now().Format(time.TimeOnly))
	down, kubectlDown := ok.Load(), kubectlOK.Load()
	// While skiff is down the door keeps the address and answers 503
	// ServiceUnavailable, which SDKs retry (not "connection refused").
	time.Sleep(5 * time.Second)
	if out, err := vpcAPI(); err == nil || !strings.Contains(out, "ServiceUnavailable") {
		t.Errorf("skiff's API from the VPC, skiff down: %v %s; want ServiceUnavailable", err, out)
	}
	time.Sleep(55 * time.Second) // longer than a node's 40 s grace before NotReady
	whileDown, kubectlWhileDown := ok.Load()-down, kubectlOK.Load()-kubectlDown
	if nodes, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{}); err != nil {
		t.Errorf("nodes after 60 s without skiff: %v", err)
	} else {
		for _, n := range nodes.Items {
			if !nodeIsReady(n) {
				t.Errorf("node %s not Ready after 60 s without skiff", n.Name)
			}
		}
	}
	s.restart(t)
	waitAWSStatus(t, s, "steady", "ACTIVE")
	time.Sleep(3 * time.Second)
	if out, err := vpcAPI(); err != nil || !strings.Contains(out, "arn:aws:iam::") {
		t.Errorf("skiff's API from the VPC, skiff back: %v %s", err, out)
	}
	after := recordedPIDs(dataDir)
	for id, pid := range before {
		if after[id] != pid {
			t.Errorf("instance %s: pid %d before, %d after skiff's restart", id, pid, after[id])
		}
	}

	// skiff upgrades itself in place: a new binary (a copy at another
	// path: the instances' specs name it, and with no skiff-instance next
	// to it, it is their program too) adopts every instance. etcd, the
	// apiservers, the controllers and the nodes keep running; skiff's own
	// programs (endpoint, authenticator, tunnel, door) move to the new
	// binary one at a time, with the loops still running: no failure.
	next := filepath.Join(t.TempDir(), "skiff-next")
	if data, err := os.ReadFile(skiffBin); err != nil || os.WriteFile(next, data, 0o755) != nil {
		t.Fatalf("copy skiff: %v", err)
	}
	s.upgrade(t, next)
	ownProgram := func(id string) bool {
		for _, n := range []string{"/endpoint-", "/authenticator-", "/tunnel", "/door"} {
			if strings.Contains(id, n) {
				return true
			}
		}
		return false
	}
	if err := eventually(2*time.Minute, func() error {
		for id, pid := range recordedPIDs(dataDir) {
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); ownProgram(id) && exe != next {
				return fmt.Errorf("%s runs %s, not the new binary", id, exe)
			}
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	time.Sleep(3 * time.Second)
	upgraded := recordedPIDs(dataDir)
	for id, pid := range before {
		if !ownProgram(id) && upgraded[id] != pid {
			t.Errorf("instance %s: pid %d before, %d after skiff's upgrade", id, pid, upgraded[id])
		}
	}
	cancel()
	wg.Wait()
	t.Logf("client-go: %d rounds ok (%d while skiff was down); kubectl with fresh tokens: %d rounds ok (%d while down); %d failed",
		ok.Load(), whileDown, kubectlOK.Load(), kubectlWhileDown, failed.Load())
	if failed.Load() > 0 || whileDown < 100 || kubectlWhileDown < 3 {
		t.Errorf("want no failure (through skiff's kill, 60 s down, restart and upgrade), ≥ 100 client-go and ≥ 3 kubectl rounds while skiff was down; failures: %v", errs)
	}

	// A host reboot, simulated: every process skiff and its instances
	// started is killed; the network namespaces, mounts, cgroups and /run
	// state they made are removed; the data dir stays. Then skiff starts
	// again: the cluster serves every object written before, its nodes are
	// Ready and the Deployment's pods run again.
	kc := kcUser
	if _, err := kubectlEnv(t, s.env, kc, "create", "deployment", "sleeper", "--image=busybox", "--replicas=2", "--", "sleep", "3600"); err != nil {
		t.Fatal(err)
	}
	rollout(t, s, kc, "deployment/sleeper")
	if _, err := kubectlEnv(t, s.env, kc, "create", "configmap", "before", "--from-literal=k=v"); err != nil {
		t.Fatal(err)
	}
	reboot(t, s, dataDir)
	start := time.Now()
	s.restart(t)
	if err := eventually(3*time.Minute, func() error {
		out, err := kubectlEnv(t, s.env, kc, "get", "configmap", "before", "-o", "jsonpath={.data.k}")
		if err == nil && out != "v" {
			return fmt.Errorf("configmap before: %q", out)
		}
		return err
	}); err != nil {
		t.Fatalf("the cluster's objects after the reboot: %v", err)
	}
	api := time.Since(start)
	if got := mustAWS(t, s, "eks", "describe-cluster", "--name", "steady")["cluster"].(map[string]any)["status"]; got != "ACTIVE" {
		t.Errorf("status %v after the reboot", got)
	}
	readyNodes(t, s, kc, 2)
	nodesReady := time.Since(start)
	rollout(t, s, kc, "deployment/sleeper")
	if running := pods(t, s, kc, "-l", "app=sleeper", "--field-selector=status.phase=Running"); len(running) != 2 {
		t.Errorf("sleeper pods running after the reboot: %+v", running)
	}
	t.Logf("after the reboot: the API serves the old objects in %s, 2 nodes Ready in %s, the Deployment's pods run in %s",
		api.Round(100*time.Millisecond), nodesReady.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))
}

// vpcCaller returns a call of skiff's API as cluster's VPC reaches it
// (its door on the VPC's service address), from inside the VPC's
// namespace: the stock aws CLI, signed with the account's admin
// credentials, one attempt.
func vpcCaller(t *testing.T, s *server, cluster string) func() (string, error) {
	t.Helper()
	vpc, _ := mustAWS(t, s, "eks", "describe-cluster", "--name", cluster)["cluster"].(map[string]any)["resourcesVpcConfig"].(map[string]any)["vpcId"].(string)
	var cidr netip.Prefix
	for _, v := range mustAWS(t, s, "ec2", "describe-vpcs")["Vpcs"].([]any) {
		if v := v.(map[string]any); v["VpcId"] == vpc {
			cidr, _ = netip.ParsePrefix(v["CidrBlock"].(string))
		}
	}
	if !cidr.IsValid() {
		t.Fatalf("VPC %q of cluster %s not found", vpc, cluster)
	}
	return func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", vpcnet.VPCNamespace(vpc), "aws", "sts", "get-caller-identity",
			"--endpoint-url", "http://"+net.JoinHostPort(vpcnet.ServiceAddr(cidr).String(), "80"), "--output", "json")
		cmd.Env = append(append(os.Environ(), "AWS_PAGER=", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
			"AWS_SESSION_TOKEN="), append(s.env, "AWS_MAX_ATTEMPTS=1", "AWS_ENDPOINT_URL=")...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
}

// reboot does to skiff's world what a host reboot does: kills skiff and
// every process of its instances and nodes, and removes what lives in
// memory or /run (network namespaces, mounts, cgroups, sockets). The data
// dir stays.
func reboot(t *testing.T, s *server, dataDir string) {
	t.Helper()
	s.kill()
	if err := eventually(30*time.Second, func() error {
		for _, pid := range instancePIDs(dataDir) {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
		for _, p := range nodeProcesses() {
			if pid, err := strconv.Atoi(strings.Fields(p)[0]); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if n, m := len(instancePIDs(dataDir)), len(nodeProcesses()); n+m > 0 {
			return fmt.Errorf("%d instances and %d node processes still run", n, m)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Mounts, deepest first.
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var mounts []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (strings.Contains(f[4], dataDir) || strings.HasPrefix(f[4], "/run/skiff-nodes/") ||
			strings.HasPrefix(f[4], "/run/netns/skiff-") || strings.HasPrefix(f[4], "/run/netns/cni-")) {
			mounts = append(mounts, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	for _, m := range mounts {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
	for _, dir := range []string{"/run/skiff-nodes", "/run/skiff-egress"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
	if entries, _ := os.ReadDir("/run/netns"); entries != nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "skiff-") || strings.HasPrefix(e.Name(), "cni-") {
				os.Remove(filepath.Join("/run/netns", e.Name()))
			}
		}
	}
	hierarchies, _ := os.ReadDir("/sys/fs/cgroup")
	for _, h := range hierarchies {
		removeCgroups(filepath.Join("/sys/fs/cgroup", h.Name(), "skiff"))
	}
	if left := leftovers(dataDir); len(left) > 0 {
		t.Fatalf("the simulated reboot left %v", left)
	}
}

// removeCgroups removes a cgroup and its children, deepest first.
func removeCgroups(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() {
			removeCgroups(filepath.Join(dir, e.Name()))
		}
	}
	syscall.Rmdir(dir)
}
