package nodes

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"skiff.dev/skiff/internal/mountinfo"
)

// CgroupRoot is the cgroup (in every v1 hierarchy) that holds all nodes.
const CgroupRoot = "/skiff"

// RunDir holds each node's sockets (short paths: unix sockets allow 108
// bytes).
const RunDir = "/run/skiff-nodes"

const cgroupFS = "/sys/fs/cgroup"

// hierarchies lists the cgroup v1 hierarchies the kubelet uses.
func hierarchies() []string {
	entries, _ := os.ReadDir(cgroupFS)
	var out []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "unified" {
			out = append(out, filepath.Join(cgroupFS, e.Name()))
		}
	}
	return out
}

// nodeCgroup is a node's cgroup path.
func nodeCgroup(nodeID string) string { return CgroupRoot + "/" + nodeID }

// ensureCgroups creates a node's cgroup in every hierarchy (the kubelet
// refuses a cgroupRoot that does not exist); cpuset needs its parent's cpus
// and mems copied in.
func ensureCgroups(nodeID string) error {
	for _, h := range hierarchies() {
		for _, p := range []string{CgroupRoot, nodeCgroup(nodeID)} {
			dir := filepath.Join(h, p)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("create cgroup %s: %w", dir, err)
			}
			if filepath.Base(h) == "cpuset" {
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					cur, _ := os.ReadFile(filepath.Join(dir, f))
					if strings.TrimSpace(string(cur)) != "" {
						continue
					}
					parent, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
					if err != nil {
						return err
					}
					if err := os.WriteFile(filepath.Join(dir, f), parent, 0o644); err != nil {
						return fmt.Errorf("set %s of %s: %w", f, dir, err)
					}
				}
			}
		}
	}
	return nil
}

// killCgroups kills every process in a node's cgroups (containers, shims)
// and removes the cgroups, deepest first.
func killCgroups(ctx context.Context, nodeID string) error {
	var dirs []string
	for _, h := range hierarchies() {
		root := filepath.Join(h, nodeCgroup(nodeID))
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		alive := 0
		for _, d := range dirs {
			data, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
					alive++
				}
			}
		}
		if alive == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var errs []error
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unmountUnder unmounts every mount point below the given directories,
// deepest first (containerd's snapshots and shims' rootfs, the kubelet's
// volumes).
func unmountUnder(dirs ...string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := mountinfo.Unescape(fields[4])
		for _, d := range dirs {
			if p == d || strings.HasPrefix(p, d+"/") {
				points = append(points, p)
			}
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// removeCgroupRoot removes the nodes' parent cgroup once no node is left.
func removeCgroupRoot() {
	for _, h := range hierarchies() {
		os.Remove(filepath.Join(h, CgroupRoot)) // fails while a node remains
	}
}

// ensurePrivateRun makes RunDir a private mount: a namespace can only be
// kept on a file of one, and what nodes mount there stays on this machine's
// mount namespace.
func ensurePrivateRun(ctx context.Context) error {
	if err := os.MkdirAll(RunDir, 0o711); err != nil {
		return err
	}
	if err := os.Chmod(RunDir, 0o711); err != nil { // nodes' roots pass through to their own
		return err
	}
	out, err := exec.CommandContext(ctx, "findmnt", "-no", "PROPAGATION", "-T", RunDir).Output()
	if err != nil {
		return fmt.Errorf("findmnt %s: %w", RunDir, err)
	}
	if !strings.Contains(string(out), "shared") {
		return nil
	}
	for _, args := range [][]string{{"--bind", RunDir, RunDir}, {"--make-private", RunDir}} {
		if out, err := exec.CommandContext(ctx, "mount", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("make %s a private mount: %w: %s", RunDir, err, out)
		}
	}
	return nil
}

// nsfsMagic is the statfs type of a namespace file (NSFS_MAGIC).
const nsfsMagic = 0x6e736673

// mountNS is where a node's mount namespace is kept.
func (p paths) mountNS() string { return filepath.Join(p.run, "mnt") }

// ensureMountNS gives a node its own mount namespace (kept at
// p.mountNS()), private to it: its containerd's pod network namespaces
// (/run/netns) and its kubelet's fixed paths (/var/lib/kubelet, e.g. the
// device-plugin socket) live on tmpfs there, and every mount the node makes
// (pod volumes, netns bind mounts) goes away with the namespace instead of
// piling up on the host.
func ensureMountNS(ctx context.Context, p paths) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(p.mountNS(), &st); err == nil && st.Type == nsfsMagic {
		return nil
	}
	if err := ensurePrivateRun(ctx); err != nil {
		return err
	}
	if err := os.WriteFile(p.mountNS(), nil, 0o600); err != nil {
		return err
	}
	// The copy of the host's mounts includes namespace files (other nodes'
	// and VPCs' network namespaces, other nodes' mount namespaces): drop
	// them, or they would keep those namespaces alive after their deletion.
	setup := `findmnt -rn -t nsfs -o TARGET | while read -r m; do umount -l "$m"; done
mkdir -p /run/netns /var/lib/kubelet
mount -t tmpfs -o mode=0755 skiff-node /run/netns
mount -t tmpfs -o mode=0700 skiff-node /var/lib/kubelet`
	out, err := exec.CommandContext(ctx, "unshare", "--mount="+p.mountNS(), "--propagation", "private", "--", "sh", "-ec", setup).CombinedOutput()
	if err != nil {
		syscall.Unmount(p.mountNS(), syscall.MNT_DETACH)
		return fmt.Errorf("create the node's mount namespace: %w: %s", err, out)
	}
	return nil
}
