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
	"strings"
	"syscall"

	"skiff.dev/skiff/internal/mountinfo"
	"skiff.dev/skiff/internal/sandbox"
)

// CgroupRoot is the cgroup (in every v1 hierarchy) that holds all nodes.
const CgroupRoot = sandbox.CgroupRoot

// RunDir holds each node's run state (sandbox.RunDir).
const RunDir = sandbox.RunDir

// nodeCgroup is a node's cgroup path.
func nodeCgroup(nodeID string) string { return CgroupRoot + "/" + nodeID }

// ensureCgroups creates a host-root node's cgroup in every hierarchy (the
// kubelet refuses a cgroupRoot that does not exist).
func ensureCgroups(nodeID string) error { return sandbox.MakeCgroup(nodeCgroup(nodeID)) }

// killCgroups kills every process in a host-root node's cgroups
// (containers, shims) and removes the cgroups.
func killCgroups(ctx context.Context, nodeID string) error {
	return sandbox.RemoveCgroup(ctx, nodeCgroup(nodeID))
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
	hs, _ := sandbox.Hierarchies()
	for _, h := range hs {
		os.Remove(filepath.Join(h.Dir, CgroupRoot)) // fails while a node remains
	}
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
	if err := sandbox.MakePrivate(ctx, RunDir); err != nil {
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
