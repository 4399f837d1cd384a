package e2e

import (
	"fmt"
	"os"
	"path/filepath"
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
	if out, err := sh("cat /proc/[0-9]*/environ 2>/dev/null | tr '\\000' '\\n' | sort -u"); err != nil || !strings.Contains(out, "AWS_SHARED_CREDENTIALS_FILE=") {
		t.Errorf("the attacker cannot read its kubelet's environment (the check could not fail): %v %s", err, out)
	} else if strings.Contains(out, hostEnvMarker) {
		t.Errorf("skiff's own environment reaches the attacker's node:\n%s", out)
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
	for _, knob := range []string{"kernel/panic", "kernel/modprobe", "vm/drop_caches"} {
		before, _ := os.ReadFile("/proc/sys/" + knob)
		if out, err := sh("echo 3 > /proc/sys/" + knob); err == nil {
			t.Errorf("the attacker writes the host's /proc/sys/%s: %s", knob, out)
		}
		if after, _ := os.ReadFile("/proc/sys/" + knob); string(after) != string(before) {
			t.Errorf("/proc/sys/%s changed: %q → %q", knob, before, after)
		}
	}
	if out, err := sh("cat /proc/sys/net/ipv4/ip_forward > /proc/sys/net/ipv4/ip_forward"); err != nil {
		t.Errorf("the attacker cannot write its node's network sysctl (the check could not fail): %v %s", err, out)
	}

	// Network: no listener of the host's or of cluster B's control plane;
	// its node's kubelet answers.
	if out, err := sh("wget -qO- http://127.0.0.1:10248/healthz"); err != nil || !strings.Contains(out, "ok") {
		t.Errorf("the attacker cannot reach its node's kubelet (the check could not fail): %v %s", err, out)
	}
	targets := append(listeners(t, filepath.Join(dataDir, "clusters", b.Cluster)), s.host())
	for _, addr := range targets {
		host, port, _ := strings.Cut(addr, ":")
		if i := strings.LastIndexByte(addr, ':'); i > 0 {
			host, port = strings.Trim(addr[:i], "[]"), addr[i+1:]
		}
		if out, err := sh(fmt.Sprintf("nc -w 2 %s %s </dev/null && echo connected", host, port)); err == nil || strings.Contains(out, "connected") {
			t.Errorf("the attacker reaches %s: %s", addr, out)
		}
	}
	t.Logf("attacker: %d listeners of the host and cluster B out of reach", len(targets))

	// kill -9 of everything it sees: its own node only.
	servePID := s.cmd.Process.Pid
	sh("for p in $(ps -o pid | tail -n +2); do [ $p = 1 ] || kill -9 $p; done")
	if syscall.Kill(servePID, 0) != nil {
		t.Fatal("skiff serve died")
	}
	if _, err := awsCLI(t, s, "eks", "list-clusters"); err != nil {
		t.Errorf("skiff's API after the attack: %v", err)
	}
	for _, kc := range []string{kcA, kcB} {
		if out, err := kubectlEnv(t, s.env, kc, "get", "ns", "kube-system"); err != nil {
			t.Errorf("control plane (%s) after the attack: %v %s", kc, err, out)
		}
	}
	if err := eventually(3*time.Minute, func() error {
		for _, n := range kubeNodes(t, s, kcA) {
			if n.Name == nodeA.Name && n.Ready {
				return nil
			}
		}
		return fmt.Errorf("node %s is not Ready again", nodeA.Name)
	}); err != nil {
		t.Error(err)
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
