// Package sandbox makes a worker node a system container: its own user
// namespace (root inside is an unprivileged range of host IDs), mount, PID,
// IPC, UTS, network and cgroup namespaces, a root file system of its own
// (the node image, mounted read-only, then pivot_root), its own /dev, /proc
// and /sys, and a delegated cgroup v1 subtree
// (docs/node-isolation-design.md).
//
// The parts, each run by skiff's process runtime (which decides where a
// machine's cgroup and pinned namespaces are):
//   - MakeCgroup, Delegate and JoinCgroup give a machine its cgroup before
//     its first process runs;
//   - Init runs as the node's first process, already in its namespaces
//     (runtime.Spec.UserNS) and its cgroup: it builds the node's file
//     system and execs the image's init, which stays PID 1 of the node;
//   - Pin, on the host, keeps the node's namespaces at files under a
//     directory, so they are found again after a skiff restart;
//   - EnterArgs is the nsenter command line that runs a command inside the
//     node (containerd, the kubelet's bootstrap) through the pinned
//     namespaces.
package sandbox

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Namespaces are the namespaces a node has of its own (their names in
// /proc/PID/ns), in the order Enter joins them.
var Namespaces = []string{"user", "mnt", "pid", "net", "ipc", "uts", "cgroup"}

// Layout is where a node's parts are on the host, as Init mounts them.
type Layout struct {
	Image  string // the node image (read-only root)
	Var    string // the node's /var (owned by its root)
	Config string // its configuration, mounted read-only at /etc/skiff
	// Binds are further read-only file mounts: path in the node → host file.
	Binds    map[string]string
	Hostname string
}

// Hierarchy is a cgroup v1 hierarchy of this machine.
type Hierarchy struct {
	Dir     string // its mount point, /sys/fs/cgroup/memory
	Options string // its mount options, "memory" or "none,name=systemd"
}

// Hierarchies lists the v1 hierarchies mounted under /sys/fs/cgroup (the
// cgroup2 "unified" mount of a hybrid host is left out: nodes see pure v1).
func Hierarchies() ([]Hierarchy, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return hierarchies(f)
}

func hierarchies(mountinfo io.Reader) ([]Hierarchy, error) {
	var out []Hierarchy
	sc := bufio.NewScanner(mountinfo)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL…] - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 3 || tail[0] != "cgroup" || !strings.HasPrefix(fields[4], "/sys/fs/cgroup/") {
			continue
		}
		var opts []string
		for _, o := range strings.Split(tail[2], ",") {
			if o != "rw" && o != "ro" {
				opts = append(opts, o)
			}
		}
		if len(opts) > 0 && strings.HasPrefix(opts[0], "name=") {
			opts = append([]string{"none"}, opts...)
		}
		out = append(out, Hierarchy{Dir: fields[4], Options: strings.Join(opts, ",")})
	}
	return out, sc.Err()
}

// Init builds the node's file system and execs its init (/sbin/init of
// the image). It must run as root of the node's fresh namespaces, started
// with the host's mounts (runtime.Spec.UserNS); it never returns on
// success.
func Init(l Layout) error {
	// Namespace changes below apply to this thread; exec takes it along.
	runtime.LockOSThread()
	hs, err := Hierarchies()
	if err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	// The runtime put this process in the node's cgroup before it ran: a
	// cgroup namespace rooted there.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("cgroup namespace: %w", err)
	}
	root := l.Image
	if err := bindRO(root, root); err != nil {
		return err
	}
	at := func(p string) string { return filepath.Join(root, p) }
	const nsd = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	mounts := []struct {
		src, target, fstype string
		flags               uintptr
		data                string
	}{
		{"proc", at("/proc"), "proc", nsd, ""},
		// Read-write: a privileged container mounts /sys read-write, which
		// the kernel allows only if the node's own is. Host-wide knobs stay
		// the host root's files (nobody's in here).
		{"sysfs", at("/sys"), "sysfs", nsd, ""},
		{"cgroup", at("/sys/fs/cgroup"), "tmpfs", nsd, "mode=755"},
		{"dev", at("/dev"), "tmpfs", unix.MS_NOSUID | unix.MS_STRICTATIME, "mode=755,size=65536k"},
		{"run", at("/run"), "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=755"},
		{"tmp", at("/tmp"), "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	}
	for _, m := range mounts {
		if err := unix.Mount(m.src, m.target, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	for _, h := range hs {
		dir := at(h.Dir)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("cgroup", dir, "cgroup", nsd, h.Options); err != nil {
			return fmt.Errorf("mount cgroup %s: %w", h.Options, err)
		}
	}
	if err := makeDev(at("/dev")); err != nil {
		return err
	}
	if err := bind(l.Var, at("/var")); err != nil {
		return err
	}
	if err := bindRO(l.Config, at("/etc/skiff")); err != nil {
		return err
	}
	for in, host := range l.Binds {
		if err := bindRO(host, at(in)); err != nil {
			return err
		}
	}
	// Kernel state no node needs to read (the node's root could lift
	// these: they are not a boundary, only less to see).
	for _, p := range []string{"/proc/keys", "/proc/timer_list", "/proc/kcore", "/proc/sysrq-trigger"} {
		if _, err := os.Stat(at(p)); err == nil {
			if err := unix.Mount(at("/dev/null"), at(p), "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("mask %s: %w", p, err)
			}
		}
	}
	if l.Hostname != "" {
		if err := unix.Sethostname([]byte(l.Hostname)); err != nil {
			return fmt.Errorf("hostname: %w", err)
		}
	}
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root to %s: %w", root, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host's mounts: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	// Shared, as a host's root: the kubelet's volumes propagate.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SHARED, ""); err != nil {
		return fmt.Errorf("make / shared: %w", err)
	}
	return syscall.Exec("/sbin/init", []string{"/sbin/init"}, os.Environ())
}

// makeDev fills the node's /dev: the harmless character devices (bound
// from the host's: a user namespace may not mknod), its own pty instance,
// shm and mqueue. No block device, no /dev/kmsg.
func makeDev(dev string) error {
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		p := filepath.Join(dev, d)
		if err := os.WriteFile(p, nil, 0o666); err != nil {
			return err
		}
		if err := unix.Mount("/dev/"+d, p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /dev/%s: %w", d, err)
		}
	}
	for _, d := range []string{"pts", "shm", "mqueue"} {
		if err := os.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"); err != nil {
		return fmt.Errorf("mount devpts: %w", err)
	}
	if err := unix.Mount("shm", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
		return fmt.Errorf("mount shm: %w", err)
	}
	if err := unix.Mount("mqueue", filepath.Join(dev, "mqueue"), "mqueue", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount mqueue: %w", err)
	}
	for link, to := range map[string]string{"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(to, filepath.Join(dev, link)); err != nil {
			return err
		}
	}
	return nil
}

func bind(src, dst string) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, dst, err)
	}
	return nil
}

// bindRO binds src on dst read-only. The remount keeps the flags the
// source's mount has (a user namespace may not clear nosuid, nodev …).
func bindRO(src, dst string) error {
	if err := bind(src, dst); err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dst, &st); err != nil {
		return err
	}
	return remountRO(dst, st.Flags)
}

// remountRO makes the bind mount at dst read-only, keeping the flags
// (statfs's ST_*) its mount has.
func remountRO(dst string, stf int64) error {
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY)
	for st, ms := range map[int64]uintptr{unix.ST_NOSUID: unix.MS_NOSUID, unix.ST_NODEV: unix.MS_NODEV, unix.ST_NOEXEC: unix.MS_NOEXEC,
		unix.ST_NOATIME: unix.MS_NOATIME, unix.ST_NODIRATIME: unix.MS_NODIRATIME, unix.ST_RELATIME: unix.MS_RELATIME} {
		if stf&st != 0 {
			flags |= ms
		}
	}
	if err := unix.Mount("", dst, "", flags, ""); err != nil {
		return fmt.Errorf("make %s read-only: %w", dst, err)
	}
	return nil
}

// Pin keeps the namespaces of the node whose init is pid at files in
// dir/ns. It is idempotent; pins of an earlier init (a node rebuilt) are
// replaced. It reports whether anything changed. dir must be on a private
// mount (MakePrivate).
func Pin(pid int, dir string) (changed bool, err error) {
	if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o700); err != nil {
		return false, err
	}
	for _, ns := range Namespaces {
		src := fmt.Sprintf("/proc/%d/ns/%s", pid, ns)
		dst := filepath.Join(dir, "ns", ns)
		if same(src, dst) {
			continue
		}
		changed = true
		unix.Unmount(dst, unix.MNT_DETACH)
		if err := os.WriteFile(dst, nil, 0o600); err != nil {
			return changed, err
		}
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			return changed, fmt.Errorf("pin %s: %w", src, err)
		}
	}
	return changed, nil
}

// same reports whether two namespace files are the same namespace.
func same(a, b string) bool {
	var sa, sb unix.Stat_t
	return unix.Stat(a, &sa) == nil && unix.Stat(b, &sb) == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// Running reports whether pid is a node's init that finished Init (it
// runs the image's init, whose command name is "init").
func Running(pid int) bool {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(comm)) == "init"
}

// EnterArgs is the command line that runs a command (appended) inside the
// node whose namespaces are pinned in dir/ns, as the node's root:
// util-linux nsenter, since a Go program cannot join a user namespace
// once it runs several threads. The caller puts the process in the node's
// cgroup (JoinCgroup) before it runs.
func EnterArgs(dir string) ([]string, error) {
	args := []string{"nsenter"}
	for _, ns := range Namespaces {
		var st unix.Statfs_t
		p := filepath.Join(dir, "ns", ns)
		if err := unix.Statfs(p, &st); err != nil || st.Type != unix.NSFS_MAGIC {
			return nil, fmt.Errorf("the node's %s namespace is not pinned at %s (the node is being built)", ns, p)
		}
		opt := ns
		if ns == "mnt" {
			opt = "mount"
		}
		args = append(args, "--"+opt+"="+p)
	}
	return append(args, "--"), nil
}

// Pinned reports whether every namespace of pid is pinned in dir/ns.
func Pinned(pid int, dir string) bool {
	for _, ns := range Namespaces {
		if !same(fmt.Sprintf("/proc/%d/ns/%s", pid, ns), filepath.Join(dir, "ns", ns)) {
			return false
		}
	}
	return true
}
