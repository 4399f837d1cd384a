package process

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"skiff.dev/skiff/internal/runtime"
	"skiff.dev/skiff/internal/runtime/runtimetest"
)

func newRuntime(t *testing.T) *Runtime {
	dir := t.TempDir()
	return New(dir, dir+"/logs", slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func status(t *testing.T, r *Runtime, id string) (runtime.Status, bool) {
	t.Helper()
	return runtimetest.Find(t, r, id)
}

// TestConformance: the process runtime passes the runtime conformance
// suite.
func TestConformance(t *testing.T) {
	runtimetest.Run(t, runtimetest.Harness{
		New: func(t *testing.T) runtime.Runtime { return newRuntime(t) },
		Reopen: func(t *testing.T, r runtime.Runtime) runtime.Runtime {
			p := r.(*Runtime)
			return New(p.root, p.logDir, p.log)
		},
		Kill: func(t *testing.T, st runtime.Status) {
			if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		},
		Sleeper:  []string{"sleep", "60"},
		Stubborn: []string{"sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"},
	})
}

// TestLog: an instance's output reaches its log, and a kill -9 is exit
// code -1.
func TestLog(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t)
	spec := runtime.Spec{ID: "c1/sleeper", Cluster: "c1", Command: []string{"sh", "-c", "echo hello; exec sleep 60"}}
	if err := r.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(ctx, spec.ID, time.Second) })
	st, ok := status(t, r, spec.ID)
	if !ok || st.PID == 0 {
		t.Fatalf("status = %+v, %v", st, ok)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if data, _ := os.ReadFile(r.LogPath(spec.ID)); strings.Contains(string(data), "hello") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no output in the log after 10 s")
		}
	}
	syscall.Kill(st.PID, syscall.SIGKILL)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st, ok = status(t, r, spec.ID); ok && !st.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("killed instance still reported: %+v, %v", st, ok)
		}
	}
	if st.ExitCode != -1 {
		t.Errorf("killed status = %+v, want exit code -1", st)
	}
}

// TestHostname: an instance with a Hostname sees that name as its host's,
// in a UTS namespace of its own (the host keeps its name), and is found,
// adopted and stopped like any other (the wrapper shell execs it).
func TestHostname(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	spec := runtime.Spec{ID: "c1/apiserver-0", Cluster: "c1", Hostname: "apiserver-0",
		Command: []string{"sh", "-c", "echo name=$(cat /proc/sys/kernel/hostname); exec sleep 60"}}
	other := runtime.Spec{ID: "c1/plain", Cluster: "c1", Command: []string{"sh", "-c", "echo name=$(cat /proc/sys/kernel/hostname); exec sleep 60"}}
	for _, s := range []runtime.Spec{spec, other} {
		if err := r.Start(ctx, s); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Stop(ctx, s.ID, time.Second) })
	}
	for id, want := range map[string]string{spec.ID: "name=apiserver-0\n", other.ID: "name=" + host + "\n"} {
		var log string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !strings.Contains(log, "name="); time.Sleep(20 * time.Millisecond) {
			data, _ := os.ReadFile(r.LogPath(id))
			log = string(data)
		}
		if !strings.HasSuffix(log, want) {
			t.Errorf("%s's log %q, want it to end with %q", id, log, want)
		}
	}
	if now, _ := os.Hostname(); now != host {
		t.Errorf("the host's name changed to %q", now)
	}
	st, ok := status(t, New(r.root, r.logDir, r.log), spec.ID)
	if !ok || !st.Running {
		t.Fatalf("a restarted runtime does not find the instance: %+v %v", st, ok)
	}
	if err := r.Stop(ctx, spec.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	if st, ok := status(t, r, spec.ID); ok && st.Running {
		t.Errorf("still running after Stop: %+v", st)
	}
}

// TestUserNS: an instance with UserNS is root of its own user namespace,
// an unprivileged uid on the host, and alone in its PID namespace; it is
// found again and stopped like any other.
func TestUserNS(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mapping a host ID range needs root")
	}
	ctx := context.Background()
	r := newRuntime(t)
	const base = 1<<28 + 123<<16
	spec := runtime.Spec{ID: "c1/node-x-sandbox", Cluster: "c1", UserNS: &runtime.IDMap{Base: base, Size: 65536},
		Command: []string{"sh", "-c", "id -u; cat /proc/self/uid_map; echo pid $$; exec sleep 60"}}
	if err := r.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(ctx, spec.ID, time.Second) })
	var st runtime.Status
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var ok bool
		st, ok = status(t, r, spec.ID)
		out, _ := os.ReadFile(r.LogPath(spec.ID))
		if ok && st.Running && strings.Contains(string(out), "pid ") {
			if !regexp.MustCompile(`(?m)^0\n\s*0\s+` + strconv.Itoa(base) + `\s+65536\npid 1$`).Match(out) {
				t.Fatalf("inside, want uid 0, the map 0 → %d (65536) and pid 1:\n%s", base, out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not started: %+v\n%s", st, out)
		}
	}
	var host syscall.Stat_t
	if err := syscall.Stat("/proc/"+strconv.Itoa(st.PID), &host); err != nil || host.Uid != base {
		t.Fatalf("host uid of the instance = %d (%v), want %d", host.Uid, err, base)
	}
	if err := r.Stop(ctx, spec.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, ok := status(t, r, spec.ID); ok {
		t.Fatal("still listed after Stop")
	}
}

// TestMachine: a machine (UserNS) gets a cgroup of its own, and once it
// has built itself (its init runs) the runtime reports its network
// namespace; an instance started in it (Spec.Machine) runs in the
// machine's namespaces and cgroup as its root; Stop of the machine ends
// what runs inside and frees its cgroup and pinned namespaces.
func TestMachine(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("a machine needs root")
	}
	ctx := context.Background()
	r := newRuntime(t)
	// Not the host's /run/skiff-nodes and /skiff: other tests (e2e) check
	// those for leftovers.
	r.machines, r.cgroups = filepath.Join(r.root, "machines"), fmt.Sprintf("/skiff-test-%d", os.Getpid())
	t.Cleanup(func() { syscall.Unmount(r.machines, syscall.MNT_DETACH) })
	// The machine's init: a copy of sleep named init, where the machine's
	// root (an unprivileged host ID) may run it.
	bin := filepath.Join(r.root, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	sleep, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "init"), sleep, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(r.root, 0o755)
	os.Chmod(filepath.Dir(r.root), 0o755)
	const base = 1<<28 + 124<<16
	machine := runtime.Spec{ID: "c1/node-m-sandbox", Cluster: "c1", UserNS: &runtime.IDMap{Base: base, Size: 65536},
		Command: []string{filepath.Join(bin, "init"), "60"}}
	inside := runtime.Spec{ID: "c1/node-m-work", Cluster: "c1", Machine: machine.ID, Command: []string{"sleep", "60"}}
	if err := r.Start(ctx, machine); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(ctx, inside.ID, time.Second); r.Stop(ctx, machine.ID, time.Second) })
	var st runtime.Status
	for deadline := time.Now().Add(10 * time.Second); st.NetNS == ""; time.Sleep(50 * time.Millisecond) {
		st, _ = status(t, r, machine.ID)
		if time.Now().After(deadline) {
			t.Fatalf("the machine reports no network namespace: %+v", st)
		}
	}
	sameNS := func(a, b string) bool {
		var sa, sb syscall.Stat_t
		return syscall.Stat(a, &sa) == nil && syscall.Stat(b, &sb) == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino
	}
	ns := func(pid int, kind string) string { return fmt.Sprintf("/proc/%d/ns/%s", pid, kind) }
	if !sameNS(st.NetNS, ns(st.PID, "net")) || sameNS(st.NetNS, "/proc/self/ns/net") {
		t.Fatalf("NetNS %s is not the machine's own network namespace", st.NetNS)
	}
	cgroupOf := func(pid int) string {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.SplitN(line, ":", 3); len(f) == 3 && f[1] == "memory" {
				return f[2]
			}
		}
		return ""
	}
	cg := r.cgroups + "/c1~node-m-sandbox"
	if got := cgroupOf(st.PID); got != cg {
		t.Fatalf("the machine's memory cgroup is %q, want %q", got, cg)
	}
	if err := r.Start(ctx, inside); err != nil {
		t.Fatal(err)
	}
	// The recorded process is nsenter (joined, it forks the command into
	// the machine's PID namespace): both are the machine's.
	var pids []int
	for deadline := time.Now().Add(10 * time.Second); len(pids) < 2; time.Sleep(50 * time.Millisecond) {
		in, ok := status(t, r, inside.ID)
		if ok && in.Running {
			pids = []int{in.PID}
			kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", in.PID, in.PID))
			for _, f := range strings.Fields(string(kids)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the instance inside does not run: %+v, %v", in, pids)
		}
	}
	for _, pid := range pids {
		for _, kind := range []string{"user", "mnt", "net", "ipc", "uts", "cgroup"} {
			if !sameNS(ns(pid, kind), ns(st.PID, kind)) {
				t.Errorf("pid %d is not in the machine's %s namespace", pid, kind)
			}
		}
		if got := cgroupOf(pid); got != cg {
			t.Errorf("pid %d's memory cgroup is %q, want the machine's %q", pid, got, cg)
		}
	}
	cmd := pids[len(pids)-1]
	if !sameNS(ns(cmd, "pid"), fmt.Sprintf("/proc/%d/ns/pid", st.PID)) {
		t.Errorf("the command (pid %d) is not in the machine's PID namespace", cmd)
	}
	var host syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d", cmd), &host); err != nil || host.Uid != base {
		t.Errorf("the command runs as host uid %d (%v), want the machine's root %d", host.Uid, err, base)
	}
	if err := r.Stop(ctx, machine.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if in, ok := status(t, r, inside.ID); !ok || !in.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the instance inside outlived its machine")
		}
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", cg)); !os.IsNotExist(err) {
		t.Errorf("the machine's cgroup is left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r.machines, "c1~node-m-sandbox")); !os.IsNotExist(err) {
		t.Errorf("the machine's pinned namespaces are left: %v", err)
	}
}

// TestEnvironment: an instance gets its spec's variables and a PATH, none
// of skiff's own environment (an operator's AWS keys would reach a node).
func TestEnvironment(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "operator-secret")
	spec := runtime.Spec{ID: "c1/env", Cluster: "c1", Env: []string{"MINE=yes"}, Command: []string{"sh", "-c", "env; exec sleep 60"}}
	if err := r.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(ctx, spec.ID, time.Second) })
	var env string
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(env, "MINE=yes"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the spec's variable is not in the instance's environment:\n%s", env)
		}
		data, _ := os.ReadFile(r.LogPath(spec.ID))
		env = string(data)
	}
	if strings.Contains(env, "operator-secret") || !strings.Contains(env, "PATH=/usr/local/sbin:") {
		t.Errorf("instance environment:\n%s", env)
	}
}

// TestImpostors: only the process the runtime started is the instance. A
// child that leaves the instance's process group with its environment (a
// node's containerd shims) and a process that forges the markers (root in
// a node can) are not: when the instance dies it is reported gone, so it
// is started again.
func TestImpostors(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t)
	// The instance starts a "shim": its own process group, same environment.
	spec := runtime.Spec{ID: "c1/containerd", Cluster: "c1", Command: []string{"sh", "-c", "setsid sleep 60 & exec sleep 60"}}
	if err := r.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(ctx, spec.ID, time.Second) })
	forged := exec.Command("sleep", "60")
	forged.Env = []string{envRoot + "=" + r.root, envInstance + "=c1/apiserver-0", envHash + "=x"}
	forged.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := forged.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { forged.Process.Kill(); forged.Wait() })
	var st runtime.Status
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var ok bool
		if st, ok = status(t, r, spec.ID); ok && st.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the instance is not listed")
		}
	}
	if _, ok := status(t, New(r.root, r.logDir, r.log), "c1/apiserver-0"); ok {
		t.Error("a process with forged markers is listed as an instance")
	}
	syscall.Kill(st.PID, syscall.SIGKILL)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		restarted := New(r.root, r.logDir, r.log) // skiff restarted: no children of its own
		if st, ok := status(t, restarted, spec.ID); !ok || !st.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the instance's orphaned child is listed as the instance after it died")
		}
	}
}

// TestAdoptLegacy: instances of a skiff that kept no pid files are adopted
// by their markers once, and recorded.
func TestAdoptLegacy(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t)
	spec := runtime.Spec{ID: "c1/old", Cluster: "c1", Command: []string{"sleep", "60"}}
	if err := r.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(ctx, spec.ID, time.Second) })
	time.Sleep(100 * time.Millisecond) // exec'd: markers visible
	os.RemoveAll(r.pidDir())
	upgraded := New(r.root, r.logDir, r.log)
	if st, ok := status(t, upgraded, spec.ID); !ok || !st.Running {
		t.Fatalf("not adopted: %+v %v", st, ok)
	}
	if _, err := os.Stat(filepath.Join(r.pidDir(), pidFile(spec.ID))); err != nil {
		t.Fatalf("not recorded: %v", err)
	}
}

// TestLauncherWaits: an instance whose go-ahead never comes (skiff died
// between starting it and recording its pid) never runs its command.
func TestLauncherWaits(t *testing.T) {
	for _, goAhead := range []bool{false, true} {
		mark := filepath.Join(t.TempDir(), "ran")
		argv := launcher("", []string{"/usr/bin/touch", mark})
		cmd := exec.Command(argv[0], argv[1:]...)
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.ExtraFiles = []*os.File{r}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r.Close()
		if goAhead {
			w.Write([]byte("go\n"))
		}
		w.Close()
		err = cmd.Wait()
		_, statErr := os.Stat(mark)
		if ran := statErr == nil; ran != goAhead {
			t.Errorf("go-ahead %v: command ran %v (exit %v)", goAhead, ran, err)
		}
		if !goAhead && cmd.ProcessState.ExitCode() != 97 {
			t.Errorf("without a go-ahead: exit %v, want 97", err)
		}
	}
}

// TestRecordWhileScanning: instances started while others list (a node
// group's nodes start in parallel, each polling List) are all known to a
// later skiff. A pid file caught half-written was taken for a dead
// instance's and removed, and the next skiff started that instance again.
func TestRecordWhileScanning(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t)
	stop := make(chan struct{})
	var scans sync.WaitGroup
	for range 2 {
		scans.Add(1)
		go func() {
			defer scans.Done()
			for {
				select {
				case <-stop:
					return
				default:
					r.List(ctx)
				}
			}
		}()
	}
	var ids []string
	for i := range 30 {
		spec := runtime.Spec{ID: fmt.Sprintf("c1/i%d", i), Cluster: "c1", Command: []string{"sleep", "60"}}
		if err := r.Start(ctx, spec); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Stop(ctx, spec.ID, time.Second) })
		ids = append(ids, spec.ID)
	}
	close(stop)
	scans.Wait()
	time.Sleep(100 * time.Millisecond) // exec'd: markers visible
	restarted := New(r.root, r.logDir, r.log)
	for _, id := range ids {
		if st, ok := status(t, restarted, id); !ok || !st.Running {
			t.Errorf("%s is unknown to a restarted skiff: %+v", id, st)
		}
	}
}

// TestNotifyExit: an instance that ends by itself is reported at once; one
// that is stopped is not.
func TestNotifyExit(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t)
	ended := make(chan string, 4)
	r.NotifyExit(func(id string) { ended <- id })
	quitter := runtime.Spec{ID: "c1/quitter", Cluster: "c1", Command: []string{"sh", "-c", "sleep 0.2; exit 3"}}
	stopped := runtime.Spec{ID: "c1/stopped", Cluster: "c1", Command: []string{"sleep", "60"}}
	for _, s := range []runtime.Spec{quitter, stopped} {
		if err := r.Start(ctx, s); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Stop(ctx, s.ID, time.Second) })
	}
	if err := r.Stop(ctx, stopped.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-ended:
		if id != quitter.ID {
			t.Fatalf("reported %s, want %s", id, quitter.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit reported within 10 s")
	}
	select {
	case id := <-ended:
		t.Fatalf("also reported %s", id)
	case <-time.After(300 * time.Millisecond):
	}
}
