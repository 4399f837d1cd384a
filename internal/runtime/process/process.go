// Package process is the local runtime: each instance is a supervised
// process in its own process group, with one log file.
//
// Instances outlive skiff (a crash or restart of skiff does not take the
// control planes down). Each process carries SKIFF_ROOT, SKIFF_INSTANCE and
// SKIFF_HASH in its environment, and its pid and start time are recorded
// under ROOT/pids; List finds the recorded processes that still run with
// their markers, so after a restart skiff adopts what still runs and finds
// orphans (no process can pose as an instance by its environment alone).
package process

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"skiff.dev/skiff/internal/runtime"
	"skiff.dev/skiff/internal/sandbox"
)

// Environment markers of every instance process.
const (
	envRoot     = "SKIFF_ROOT"
	envInstance = "SKIFF_INSTANCE"
	envHash     = "SKIFF_HASH"
)

// Runtime runs instances as local processes. Root scopes it: two skiffs
// with different roots never see each other's instances.
type Runtime struct {
	root   string // marker value, the skiff data dir
	logDir string
	log    *slog.Logger

	// Where machines' cgroups (in every hierarchy) and pinned namespaces
	// go: sandbox.CgroupRoot and sandbox.RunDir.
	cgroups, machines string

	adopting sync.Mutex // adoptLegacy
	pinning  sync.Mutex // pin

	mu     sync.Mutex
	exited map[string]runtime.Status // children that ended and were not stopped yet
	live   map[string]*child         // children started by this skiff
	onExit func(id string)           // NotifyExit's
	// gen counts changes this runtime made or saw (a start, a stop, a
	// child's exit): a cached scan of an older generation is stale.
	gen uint64

	// List serves every cluster's worker from one scan of the instances
	// while it is fresh (scanTTL) and nothing changed since: a scan reads
	// a file or two per instance of every cluster, so a scan per worker
	// pass would cost skiff clusters² reads.
	scanning sync.Mutex
	cached   []proc
	cachedAt time.Time
	cachedOK bool
	cacheGen uint64
}

// scanTTL is how long a scan serves List. An instance that ends by
// itself (and is not this skiff's child, whose exit it sees at once) is
// seen at most this much later.
const scanTTL = 250 * time.Millisecond

// child is a process this skiff started; reaped is closed once Wait returned.
type child struct {
	cmd    *exec.Cmd
	reaped chan struct{}
}

// New returns a runtime whose instances are marked with root and log under logDir.
func New(root, logDir string, log *slog.Logger) *Runtime {
	return &Runtime{root: root, logDir: logDir, log: log, cgroups: sandbox.CgroupRoot, machines: sandbox.RunDir,
		exited: map[string]runtime.Status{}, live: map[string]*child{}}
}

// LogPath is where the output of instance id goes: LOGDIR/CLUSTER/logs/NAME.log,
// so that with LOGDIR = DATA/clusters a cluster's logs live (and go) with it.
// instancePath is an instance's PATH (Debian's root PATH).
const instancePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func (r *Runtime) LogPath(id string) string {
	return filepath.Join(r.logDir, runtime.ClusterOf(id), "logs", runtime.NameOf(id)+".log")
}

// Start implements runtime.Runtime.
func (r *Runtime) Start(ctx context.Context, spec runtime.Spec) error {
	if len(spec.Command) == 0 {
		return fmt.Errorf("start %s: empty command", spec.ID)
	}
	r.mu.Lock()
	_, live := r.live[spec.ID]
	r.mu.Unlock()
	if p, _ := r.find(spec.ID); p != nil || live {
		return fmt.Errorf("start %s: already running", spec.ID)
	}
	logPath := r.LogPath(spec.ID)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return fmt.Errorf("start %s: %w", spec.ID, err)
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("start %s: open log: %w", spec.ID, err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "---- skiff: starting %s (%s) at %s\n", spec.ID, spec.Hash(), time.Now().Format(time.RFC3339Nano))

	command, cgroup := spec.Command, ""
	switch {
	case spec.UserNS != nil:
		if cgroup, err = r.prepareMachine(spec); err != nil {
			return fmt.Errorf("start %s: %w", spec.ID, err)
		}
	case spec.Machine != "":
		if command, cgroup, err = r.inside(ctx, spec.Machine, spec.Command); err != nil {
			return fmt.Errorf("start %s: %w", spec.ID, err)
		}
	}
	argv := launcher(spec.Hostname, command)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if spec.Hostname != "" {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWUTS
	}
	goAhead, signal, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start %s: %w", spec.ID, err)
	}
	defer signal.Close()
	cmd.ExtraFiles = []*os.File{goAhead}
	if m := spec.UserNS; m != nil {
		// The maps are written from here, between clone and exec (host root
		// may map any range: no newuidmap, no /etc/subuid); Credential makes
		// the child root of its namespace, or it would lose every
		// capability at exec.
		ids := []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(m.Base), Size: int(m.Size)}}
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
			syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET
		cmd.SysProcAttr.UidMappings, cmd.SysProcAttr.GidMappings = ids, ids
		cmd.SysProcAttr.GidMappingsEnableSetgroups = true
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: false}
	}
	// Nothing of skiff's own environment (an operator's AWS keys, …)
	// reaches an instance: a node's root could read it.
	cmd.Env = append(append([]string{"PATH=" + instancePath}, spec.Env...),
		envRoot+"="+r.root, envInstance+"="+spec.ID, envHash+"="+spec.Hash())
	cmd.Stdout, cmd.Stderr = logFile, logFile
	err = cmd.Start()
	goAhead.Close()
	if err != nil {
		return fmt.Errorf("start %s: %w", spec.ID, err)
	}
	if err := r.record(spec.ID, cmd.Process.Pid); err != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		return fmt.Errorf("start %s: record its pid: %w", spec.ID, err)
	}
	if cgroup != "" { // its machine's (or its own, a machine's) before it runs
		if err := sandbox.JoinCgroup(cgroup, cmd.Process.Pid); err != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
			return fmt.Errorf("start %s: %w", spec.ID, err)
		}
	}
	if _, err := signal.Write([]byte("go\n")); err != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		return fmt.Errorf("start %s: %w", spec.ID, err)
	}
	ch := &child{cmd: cmd, reaped: make(chan struct{})}
	r.mu.Lock()
	delete(r.exited, spec.ID)
	r.live[spec.ID] = ch
	r.gen++
	r.mu.Unlock()
	started := time.Now()
	go r.reap(spec.ID, spec.Hash(), ch, started)
	r.log.Debug("started instance", "id", spec.ID, "pid", cmd.Process.Pid)
	return nil
}

// launcher is the command line that starts spec's instance: the instance
// runs only once its pid is recorded. A shell waits for a go-ahead line on
// fd 3 before it execs the command, and exits (97) if the pipe closes
// without one (skiff died in between). So no instance can run that a later
// skiff would not know as its own.
func launcher(hostname string, command []string) []string {
	script := `read -r _ <&3 || exit 97; exec 3<&-; `
	if hostname != "" {
		// A UTS namespace of its own, named before the command runs (the
		// shell execs it: same process, same environment).
		script += `hostname "$0" && `
	}
	script += `exec "$@"`
	return append([]string{"/bin/sh", "-c", script, cmp.Or(hostname, "instance")}, command...)
}

// reap waits for a child and records how it ended.
func (r *Runtime) reap(id, hash string, ch *child, started time.Time) {
	err := ch.cmd.Wait()
	close(ch.reaped)
	code := 0
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code = exitErr.ExitCode()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	if r.live[id] != ch {
		return // stopped on purpose, or replaced
	}
	if r.onExit != nil {
		go r.onExit(id)
	}
	delete(r.live, id)
	r.exited[id] = runtime.Status{ID: id, Hash: hash, Started: started, Exited: time.Now(),
		ExitCode: code, Log: r.LogPath(id)}
}

// NotifyExit implements runtime.ExitNotifier for this skiff's children (an
// instance adopted after a restart is seen by List).
func (r *Runtime) NotifyExit(fn func(id string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onExit = fn
}

// Stop implements runtime.Runtime.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	defer r.changed() // whatever happened, a cached scan may be wrong now
	if err := r.stop(ctx, id, grace); err != nil {
		return err
	}
	if err := r.forgetMachine(ctx, id); err != nil {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	if err := os.Remove(filepath.Join(r.pidDir(), pidFile(id))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	return nil
}

func (r *Runtime) stop(ctx context.Context, id string, grace time.Duration) error {
	r.mu.Lock()
	delete(r.exited, id)
	ch := r.live[id]
	delete(r.live, id) // reap must not record this exit
	r.gen++
	r.mu.Unlock()

	p, err := r.find(id)
	if err != nil {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	if p == nil && ch != nil { // a child that has not exec'd yet
		tick, _, err := readStat(ch.cmd.Process.Pid)
		if err == nil {
			p = &proc{pid: ch.cmd.Process.Pid, startTick: tick}
		}
	}
	if p == nil {
		return nil
	}
	_ = syscall.Kill(-p.pid, syscall.SIGTERM)
	if !waitGone(ctx, p, grace) {
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		if !waitGone(ctx, p, 5*time.Second) {
			return fmt.Errorf("stop %s: pid %d did not exit after SIGKILL", id, p.pid)
		}
	}
	if ch != nil { // our own child: gone only once reaped
		select {
		case <-ch.reaped:
		case <-time.After(5 * time.Second):
			return fmt.Errorf("stop %s: pid %d was not reaped", id, p.pid)
		}
	}
	return nil
}

// waitGone polls until the process group leader is gone (or a zombie).
func waitGone(ctx context.Context, p *proc, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if !p.alive() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// List implements runtime.Runtime.
func (r *Runtime) List(ctx context.Context) ([]runtime.Status, error) {
	procs, err := r.scanCached()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []runtime.Status
	for _, p := range procs {
		if seen[p.id] {
			continue // duplicates are reported once; Stop kills one at a time
		}
		seen[p.id] = true
		st := runtime.Status{ID: p.id, Hash: p.hash, Running: true, PID: p.pid, Started: p.started, Log: r.LogPath(p.id)}
		if isMachine(p.pid) {
			if dir, err := r.pin(ctx, p.id, p.pid); err != nil {
				r.log.Warn("pin a machine's namespaces", "id", p.id, "err", err)
			} else {
				st.NetNS = filepath.Join(dir, "ns", "net")
			}
		}
		out = append(out, st)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// A child between fork and exec does not show its markers yet.
	for id, ch := range r.live {
		if !seen[id] {
			seen[id] = true
			out = append(out, runtime.Status{ID: id, Hash: envValue(ch.cmd.Env, envHash), Running: true,
				PID: ch.cmd.Process.Pid, Log: r.LogPath(id)})
		}
	}
	for id, st := range r.exited {
		if !seen[id] {
			out = append(out, st)
		}
	}
	return out, nil
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == key {
			return v
		}
	}
	return ""
}

type proc struct {
	pid       int
	id, hash  string
	startTick string // field 22 of /proc/PID/stat: tells a reused pid apart
	started   time.Time
}

func (p *proc) alive() bool {
	tick, state, err := readStat(p.pid)
	return err == nil && tick == p.startTick && state != "Z"
}

func (r *Runtime) find(id string) (*proc, error) {
	procs, err := r.scan()
	if err != nil {
		return nil, err
	}
	for _, p := range procs {
		if p.id == id {
			return &p, nil
		}
	}
	return nil, nil
}

// scan finds the live instances: the processes this runtime recorded
// when it started them (pid files under ROOT/pids), still alive (same
// start time) and still carrying their markers. Processes that merely
// carry markers are not instances: a node's containerd hands its
// environment to its shims, which outlive it, and whoever is root in a
// node can forge any environment.
func (r *Runtime) scan() ([]proc, error) {
	entries, err := os.ReadDir(r.pidDir())
	if errors.Is(err, os.ErrNotExist) {
		if err := r.adoptLegacy(); err != nil {
			return nil, err
		}
		entries, err = os.ReadDir(r.pidDir())
	}
	if err != nil {
		return nil, fmt.Errorf("scan instances: %w", err)
	}
	var out []proc
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue // being written (recordIn)
		}
		path := filepath.Join(r.pidDir(), e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var pid int
		var tick string
		if _, err := fmt.Sscanf(string(data), "%d %s", &pid, &tick); err != nil {
			os.Remove(path)
			continue
		}
		if t, state, err := readStat(pid); err != nil || t != tick || state == "Z" {
			os.Remove(path) // ended (or its pid is another process's now)
			continue
		}
		p := r.marked(pid)
		if p == nil || pidFile(p.id) != e.Name() {
			continue // between fork and exec, or not what was recorded
		}
		p.startTick = tick
		out = append(out, *p)
	}
	return out, nil
}

// changed marks cached scans stale.
func (r *Runtime) changed() {
	r.mu.Lock()
	r.gen++
	r.mu.Unlock()
}

// scanCached is scan, shared by concurrent and close callers while
// fresh: one caller scans, the others wait for its result.
func (r *Runtime) scanCached() ([]proc, error) {
	r.scanning.Lock()
	defer r.scanning.Unlock()
	r.mu.Lock()
	gen := r.gen
	r.mu.Unlock()
	if r.cachedOK && r.cacheGen == gen && time.Since(r.cachedAt) < scanTTL {
		return r.cached, nil
	}
	procs, err := r.scan()
	if err != nil {
		return nil, err
	}
	r.cached, r.cachedAt, r.cachedOK, r.cacheGen = procs, time.Now(), true, gen
	return procs, nil
}

// pidDir holds one file per instance started: "PID STARTTICK".
func (r *Runtime) pidDir() string { return filepath.Join(r.root, "pids") }

func pidFile(id string) string { return strings.ReplaceAll(id, "/", "~") }

// record notes that pid is instance id.
func (r *Runtime) record(id string, pid int) error {
	if err := os.MkdirAll(r.pidDir(), 0o700); err != nil {
		return err
	}
	return recordIn(r.pidDir(), id, pid)
}

func recordIn(dir, id string, pid int) error {
	tick, _, err := readStat(pid)
	if err != nil {
		return err
	}
	// Written aside and renamed into place: a scan running meanwhile must
	// never see a partial file (it removes a file it cannot parse, and an
	// instance whose file went is unknown to the next skiff, which then
	// started it a second time).
	tmp, err := os.CreateTemp(dir, ".new-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := fmt.Fprintf(tmp, "%d %s\n", pid, tick); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, pidFile(id)))
}

// adoptLegacy records the instances a skiff without pid files started:
// the process-group leaders marked with this runtime's root. The pid
// directory appears whole (a rename), so no caller sees half of them.
func (r *Runtime) adoptLegacy() error {
	r.adopting.Lock()
	defer r.adopting.Unlock()
	if _, err := os.Stat(r.pidDir()); err == nil {
		return nil // adopted meanwhile
	}
	procs, err := r.scanMarkers()
	if err != nil {
		return err
	}
	tmp := r.pidDir() + ".new"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	// Children that left the instance's process group carry its markers
	// too (a node's containerd shims): the oldest is the instance.
	oldest := map[string]proc{}
	for _, p := range procs {
		if o, ok := oldest[p.id]; !ok || ticks(p.startTick) < ticks(o.startTick) {
			oldest[p.id] = p
		}
	}
	for _, p := range oldest {
		recordIn(tmp, p.id, p.pid)
	}
	if err := os.Rename(tmp, r.pidDir()); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("adopt instances: %w", err)
	}
	return nil
}

// marked returns pid's instance markers of this runtime (nil if it has
// none: a process in the middle of execve shows no environment for a
// moment, so look twice).
func (r *Runtime) marked(pid int) *proc {
	rootMarker := []byte(envRoot + "=" + r.root + "\x00")
	env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
	if (err != nil && !errors.Is(err, os.ErrNotExist) || len(env) == 0) && !kernelThread(pid) {
		time.Sleep(5 * time.Millisecond)
		env, err = os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
	}
	if err != nil || !bytes.Contains(env, rootMarker) {
		return nil
	}
	p := &proc{pid: pid}
	for _, kv := range strings.Split(string(env), "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case envInstance:
			p.id = v
		case envHash:
			p.hash = v
		}
	}
	if p.id == "" {
		return nil
	}
	if st, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
		p.started = st.ModTime()
	}
	return p
}

// scanMarkers finds the live process-group leaders marked with this
// runtime's root (how a skiff without pid files found its instances).
func (r *Runtime) scanMarkers() ([]proc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("scan processes: %w", err)
	}
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pgid, err := syscall.Getpgid(pid); err != nil || pgid != pid {
			continue // a child of an instance inherits its markers; only the leader counts
		}
		tick, state, err := readStat(pid)
		if err != nil || state == "Z" {
			continue
		}
		p := r.marked(pid)
		if p == nil {
			continue
		}
		p.startTick = tick
		out = append(out, *p)
	}
	return out, nil
}

// kernelThread reports whether pid is a kernel thread (PF_KTHREAD in
// /proc/PID/stat's flags), which never has an environment.
func kernelThread(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // gone
	}
	i := bytes.LastIndexByte(data, ')')
	fields := strings.Fields(string(data[i+1:]))
	if i < 0 || len(fields) < 7 {
		return true
	}
	flags, err := strconv.ParseUint(fields[6], 10, 64)
	return err != nil || flags&0x00200000 != 0
}

func ticks(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

// readStat returns the start time (in clock ticks since boot) and state of pid.
func readStat(pid int) (startTick, state string, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", "", err
	}
	// The command name (field 2) may hold spaces; fields after it follow ") ".
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return "", "", fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 20 {
		return "", "", fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return fields[19], fields[0], nil
}
