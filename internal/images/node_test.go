package images

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestNodeFiles unpacks the node image and runs its programs in it
// (chroot): every library they load must be in the image.
func TestNodeFiles(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("chroot needs root")
	}
	init, err := os.Executable() // any static-enough file stands in for the init program
	if err != nil {
		t.Fatal(err)
	}
	files, err := NodeFiles(init, "")
	if err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	dir, err := Unpack(files, parent)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Unpack(files, parent)
	if err != nil || again != dir {
		t.Fatalf("second unpack: %s, %v; want %s (unchanged)", again, err, dir)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		t.Fatalf("%d entries in %s, want 1", len(entries), parent)
	}
	for _, args := range [][]string{
		{"/usr/bin/containerd", "--version"},
		{"/usr/sbin/runc", "--version"},
		{"/usr/sbin/iptables", "--version"},
		{"/usr/bin/mount", "--version"},
		{"/bin/sh", "-c", "ls /usr/lib/cni/portmap && grep -q '^root:x:0:0:' /etc/passwd"},
	} {
		out, err := exec.Command("chroot", append([]string{dir}, args...)...).CombinedOutput()
		if err != nil {
			t.Errorf("chroot %s: %v: %s", args, err, out)
		}
	}
	for _, p := range []string{NodeMounts.Kube, NodeMounts.Skiff, "/proc", "/sys", "/dev", "/var", "/etc/skiff"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("mount point %s: %v", p, err)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "tmp")); err != nil || st.Mode()&os.ModeSticky == 0 {
		t.Errorf("/tmp: %v %v, want sticky", st, err)
	}
}
