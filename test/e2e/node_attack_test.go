package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// attackerPod is issue 14's attacker: everything a pod spec can ask for.
// Its sleep's argument is unique, so the test finds its process on the host.
const attackerPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"attacker"},"spec":{"nodeName":%q,
 "hostPID":true,"hostNetwork":true,"hostIPC":true,"restartPolicy":"Never","terminationGracePeriodSeconds":0,
 "containers":[{"name":"a","image":"busybox","command":["sleep","3600.123"],
  "securityContext":{"privileged":true,"capabilities":{"add":["ALL"]}},"volumeMounts":[{"name":"host","mountPath":"/host"}]}],
 "volumes":[{"name":"host","hostPath":{"path":"/"}}]}}`

// attackNode is issue 14's acceptance: a privileged pod on node a (of
// cluster A, kubeconfig kcA; b is cluster B's) with the host's PID, IPC and network
// namespaces and its root at /host tries to reach the host, skiff and
// cluster B (kcB, its node b). Every probe has a control that must succeed,
// so the test can fail.
func attackNode(t *testing.T, s *server, dataDir, kcA, kcB string, a, b nodeSandbox, nodeA, nodeB kubeNode) {
	pod := filepath.Join(dataDir, "attacker.json")
	if err := os.WriteFile(pod, []byte(fmt.Sprintf(attackerPod, nodeA.Name)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := kubectlEnv(t, s.env, kcA, "apply", "-f", pod); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if out, err := kubectlEnv(t, s.env, kcA, "wait", "--for=condition=Ready", "pod/attacker", "--timeout=90s"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	sh := func(script string) (string, error) {
		return kubectlEnv(t, s.env, kcA, "exec", "attacker", "--", "sh", "-c", script)
	}

	// Files: the host's are out of reach; its node's own are there.
	marker := filepath.Join(t.TempDir(), "marker")
	if err := os.WriteFile(marker, []byte("host secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{marker, filepath.Join(dataDir, "skiff.db"), filepath.Join(dataDir, "local-token")} {
		if out, err := sh("cat /host" + p); err == nil {
			t.Errorf("the attacker reads the host's %s: %q", p, out)
		}
	}
	if out, err := sh("ls /host" + dataDir); err == nil {
		t.Errorf("the attacker lists skiff's data dir: %s", out)
	}
	want, err := os.ReadFile(filepath.Join(a.Dir, "config", "machine-id"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := sh("cat /host/etc/skiff/machine-id"); err != nil || strings.TrimSpace(out) != strings.TrimSpace(string(want)) {
		t.Errorf("the attacker cannot read its node's machine-id (the check could not fail): %q %v", out, err)
	}

	// Processes: only its node's.
	ps, err := sh("ps -o pid,args")
	if err != nil {
		t.Fatalf("ps: %v %s", err, ps)
	}
	if !strings.Contains(ps, "--hostname-override="+nodeA.Name) {
		t.Errorf("the attacker does not see its node's kubelet (the check could not fail):\n%s", ps)
	}
	for _, bad := range []string{"skiff serve", "etcd", "apiserver", "--hostname-override=" + nodeB.Name, "TestClusterIsolation"} {
		if strings.Contains(ps, bad) {
			t.Errorf("the attacker sees %q:\n%s", bad, ps)
		}
	}

	// Nothing of skiff's environment (hostEnvMarker, as an operator's
	// AWS keys would be) is in any process of its node; its kubelet's own
	// variables are.
	environ, err := sh("cat /proc/[0-9]*/environ 2>/dev/null | tr '\\000' '\\n' | sort -u")
	if err != nil || !strings.Contains(environ, "AWS_SHARED_CREDENTIALS_FILE=") {
		t.Errorf("the attacker cannot read its kubelet's environment (the check could not fail): %v %s", err, environ)
	} else if strings.Contains(environ, hostEnvMarker) {
		t.Errorf("skiff's own environment reaches the attacker's node:\n%s", environ)
	}

	// It runs as the node's root: an unprivileged uid on the host, the
	// same as its node's kubelet.
	podUID, kubeletUID := uidOf(t, "sleep\x003600.123"), uidOf(t, "--hostname-override="+nodeA.Name)
	if podUID < 1<<28 || podUID != kubeletUID {
		t.Errorf("the attacker runs as host uid %d (its node's kubelet: %d), want the node's unprivileged root", podUID, kubeletUID)
	}

	// Devices and the kernel: no host disk, no host-wide knobs.
	var st syscall.Stat_t
	if err := syscall.Stat("/dev/vda", &st); err != nil {
		if err := syscall.Stat("/dev/sda", &st); err != nil {
			t.Fatal("no disk found (/dev/vda, /dev/sda) to probe with")
		}
	}
	major, minor := st.Rdev>>8&0xfff, st.Rdev&0xff|st.Rdev>>12&0xfff00
	if out, err := sh(fmt.Sprintf("mkdir -p /tmp/m && mknod /tmp/disk b %d %d && mount /tmp/disk /tmp/m && ls /tmp/m", major, minor)); err == nil {
		t.Errorf("the attacker mounts the host's disk %d:%d: %s", major, minor, out)
	} else {
		t.Logf("the host's disk %d:%d: %s", major, minor, strings.TrimSpace(out))
	}
	if out, err := sh("mkdir -p /tmp && mknod /tmp/fifo p && ls -l /tmp/fifo"); err != nil {
		t.Errorf("the attacker cannot make a FIFO (the check could not fail): %v %s", err, out)
	}
	// kernel/core_pattern is the usermode-helper path: a pipe handler
	// there would run as the host's root at the next core dump (this
	// kernel has no modules, so no kernel/modprobe). drop_caches is
	// write-only: only the write is checked.
	for _, k := range []struct{ knob, value string }{{"kernel/panic", "3"}, {"kernel/core_pattern", "|/bin/true skiff-attacker %p"}, {"vm/drop_caches", "3"}} {
		before, err := os.ReadFile("/proc/sys/" + k.knob)
		if err != nil && k.knob != "vm/drop_caches" {
			t.Fatalf("the host's /proc/sys/%s (nothing to probe): %v", k.knob, err)
		}
		if out, err := sh(fmt.Sprintf("echo '%s' > /proc/sys/%s", k.value, k.knob)); err == nil {
			t.Errorf("the attacker writes the host's /proc/sys/%s: %s", k.knob, out)
		}
		if after, _ := os.ReadFile("/proc/sys/" + k.knob); string(after) != string(before) {
			t.Errorf("/proc/sys/%s changed: %q → %q", k.knob, before, after)
			os.WriteFile("/proc/sys/"+k.knob, before, 0)
		}
	}
	if out, err := sh("cat /proc/sys/net/ipv4/ip_forward > /proc/sys/net/ipv4/ip_forward"); err != nil {
		t.Errorf("the attacker cannot write its node's network sysctl (the check could not fail): %v %s", err, out)
	}

	// Network: no TCP listener the host has, on any of its addresses
	// (both clusters' control planes, skiff's API and registry among
	// them); with the same nc, its node's kubelet and skiff's API on the
	// VPC's service address answer.
	targets := hostTargets(t, a.NS)
	planes := [][]string{listeners(t, filepath.Join(dataDir, "clusters", a.Cluster)), listeners(t, filepath.Join(dataDir, "clusters", b.Cluster))}
	if len(planes[0]) < 5 || len(planes[1]) < 5 {
		t.Fatalf("listeners of A's and B's control planes: %v, want etcd, apiservers, … of each", planes)
	}
	for _, raw := range append(append(planes[0], planes[1]...), s.host()) {
		addr := parseListen(t, raw)
		if addr.Addr().IsUnspecified() {
			addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), addr.Port())
		}
		if !slices.Contains(targets, addr.String()) {
			t.Errorf("%s (of a control plane or skiff) is not among the host's listeners probed: %v", raw, targets)
		}
	}
	svc := regexp.MustCompile(`SKIFF_ENDPOINT=http://(\S+)`).FindStringSubmatch(environ)
	if svc == nil {
		t.Fatalf("no SKIFF_ENDPOINT in its node's environment:\n%s", environ)
	}
	controls := []string{"127.0.0.1:10248", strings.TrimSuffix(svc[1], "/")}
	results := map[string]string{}
	var script strings.Builder
	for _, addr := range append(controls, targets...) {
		host, port := splitAddr(addr)
		fmt.Fprintf(&script, "(out=$(timeout 5 nc -w 2 %s %s </dev/null 2>&1); rc=$?; printf '%%s rc=%%s %%s\\n' '%s' \"$rc\" \"$(echo \"$out\" | tr '\\n' ' ')\") &\n", host, port, addr)
	}
	out, err := sh(script.String() + "wait")
	for _, line := range strings.Split(out, "\n") {
		if addr, result, ok := strings.Cut(line, " "); ok {
			results[addr] = result
		}
	}
	for _, addr := range controls {
		if strings.TrimSpace(results[addr]) != "rc=0" {
			t.Errorf("the attacker cannot connect to %s (the check could not fail): %q %v", addr, results[addr], err)
		}
	}
	for _, addr := range targets {
		// Refused, unreachable or timed out: nc tried and did not connect.
		if r := results[addr]; !strings.Contains(r, "can't connect") && !strings.Contains(r, "timed out") {
			t.Errorf("the attacker reaches the host's %s: %q", addr, r)
		}
	}
	t.Logf("attacker: none of the host's %d listener addresses reached; its kubelet and skiff's API in its VPC (%s) reached", len(targets), svc[1])

	// kill -9 of everything it sees: its own node only. Its node's
	// containerd and kubelet (their instances on the host) restart with
	// new pids; skiff serve and every other instance (both control
	// planes, cluster B's node) keep theirs.
	servePID := s.cmd.Process.Pid
	before := instancePIDs(dataDir)
	own := a.Cluster + "/node-" + a.ID + "-"
	hit := []string{own + "containerd", own + "kubelet"}
	for _, id := range hit {
		if before[id] == 0 {
			t.Fatalf("no instance %s among %v", id, before)
		}
	}
	for _, prefix := range []string{a.Cluster + "/etcd-", a.Cluster + "/apiserver-", b.Cluster + "/etcd-", b.Cluster + "/apiserver-"} {
		found := false
		for id := range before {
			found = found || strings.HasPrefix(id, prefix)
		}
		if !found {
			t.Fatalf("no instance %s… among %v", prefix, before)
		}
	}
	sh("for p in $(ps -o pid | tail -n +2); do [ $p = 1 ] || kill -9 $p; done")
	var after map[string]int
	if err := eventually(3*time.Minute, func() error {
		after = instancePIDs(dataDir)
		for _, id := range hit {
			if after[id] == 0 || after[id] == before[id] {
				return fmt.Errorf("instance %s: pid %d before the attack, %d now (want restarted)", id, before[id], after[id])
			}
		}
		for _, n := range kubeNodes(t, s, kcA) {
			if n.Name == nodeA.Name && n.Ready {
				return nil
			}
		}
		return fmt.Errorf("node %s is not Ready again", nodeA.Name)
	}); err != nil {
		t.Error(err)
	}
	untouched := 0
	for id, pid := range before {
		if !strings.HasPrefix(id, own) {
			untouched++
			if after[id] != pid {
				t.Errorf("instance %s: pid %d before the attack, %d after", id, pid, after[id])
			}
		}
	}
	// Nobody waits for skiff serve yet: had it died, it would be a zombie.
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", servePID)); err != nil || strings.Contains(string(stat), ") Z ") {
		t.Fatalf("skiff serve (pid %d) died: %v %s", servePID, err, stat)
	}
	t.Logf("attacker's kill -9: its node's %v restarted (pids %d, %d → %d, %d); skiff serve and %d other instances untouched",
		hit, before[hit[0]], before[hit[1]], after[hit[0]], after[hit[1]], untouched)
	if _, err := awsCLI(t, s, "eks", "list-clusters"); err != nil {
		t.Errorf("skiff's API after the attack: %v", err)
	}
	for _, kc := range []string{kcA, kcB} {
		if out, err := kubectlEnv(t, s.env, kc, "get", "ns", "kube-system"); err != nil {
			t.Errorf("control plane (%s) after the attack: %v %s", kc, err, out)
		}
	}
	kubectlEnv(t, s.env, kcA, "delete", "pod", "attacker", "--grace-period=0", "--force")
}

// uidOf is the host uid of the process whose command line holds arg.
func uidOf(t *testing.T, arg string) uint32 {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if !strings.Contains(string(cmdline), arg) {
			continue
		}
		status, _ := os.ReadFile("/proc/" + e.Name() + "/status")
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "Uid:" {
				uid, _ := strconv.ParseUint(f[1], 10, 32)
				return uint32(uid)
			}
		}
	}
	t.Fatalf("no process with %q on the host", arg)
	return 0
}

// hostTargets lists where the host's TCP listeners (ss) accept
// connections: a listener on a wildcard address at each of the host's
// addresses. It leaves out, saying why, the addresses where the pod could
// not tell the host's listener from its node's own: link-local ones (only
// on the host's own links) and those where its node (network namespace
// nodeNS) listens itself.
func hostTargets(t *testing.T, nodeNS string) []string {
	t.Helper()
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var hostAddrs []netip.Addr
	for _, a := range ifaddrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				hostAddrs = append(hostAddrs, ip.Unmap())
			}
		}
	}
	own := tcpListeners(t, "ip", "netns", "exec", nodeNS, "ss", "-Hltn")
	var targets []string
	for _, l := range tcpListeners(t, "ss", "-Hltn") {
		addrs := []netip.Addr{l.Addr()}
		if l.Addr().IsUnspecified() {
			addrs = nil
			for _, h := range hostAddrs {
				if h.Is4() || l.Addr().Is6() {
					addrs = append(addrs, h)
				}
			}
		}
		for _, h := range addrs {
			target := netip.AddrPortFrom(h, l.Port())
			switch {
			case h.IsLinkLocalUnicast():
				t.Logf("not probed: %s (link-local: reachable on the host's own links only)", target)
			case slices.ContainsFunc(own, func(o netip.AddrPort) bool {
				return o.Port() == l.Port() && (o.Addr() == h || o.Addr().IsUnspecified() && h.IsLoopback())
			}):
				t.Logf("not probed: %s (its node listens there itself)", target)
			case !slices.Contains(targets, target.String()):
				targets = append(targets, target.String())
			}
		}
	}
	return targets
}

// tcpListeners runs `ss -Hltn` (cmd) and returns the local addresses.
func tcpListeners(t *testing.T, cmd ...string) []netip.AddrPort {
	t.Helper()
	out, err := exec.Command(cmd[0], cmd[1:]...).Output()
	if err != nil {
		t.Fatalf("%v: %v", cmd, err)
	}
	var addrs []netip.AddrPort
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 4 {
			addrs = append(addrs, parseListen(t, f[3]))
		}
	}
	return addrs
}

// parseListen parses ss's local address: "127.0.0.1:80", "[::1]:80",
// "*:22", "127.0.0.53%lo:53", "[::ffff:127.0.0.1]:80".
func parseListen(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	host, port := splitAddr(s)
	host, _, _ = strings.Cut(host, "%")
	if host == "*" {
		host = "::"
	}
	addr, err := netip.ParseAddr(host)
	p, perr := strconv.ParseUint(port, 10, 16)
	if err != nil || perr != nil {
		t.Fatalf("listen address %q: %v %v", s, err, perr)
	}
	return netip.AddrPortFrom(addr.Unmap(), uint16(p))
}

// splitAddr splits "host:port" or "[host]:port".
func splitAddr(addr string) (host, port string) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return addr, ""
	}
	return strings.Trim(addr[:i], "[]"), addr[i+1:]
}
