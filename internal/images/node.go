package images

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// NodeMounts are the files of a node's root that are mount points: the
// node mounts the cluster's Kubernetes bundle binary and skiff (its
// bootstrap) there, read-only, so that one image serves every release.
var NodeMounts = struct{ Kube, Skiff string }{"/usr/local/bin/kube", "/usr/local/bin/skiff"}

// nodeBinaries are the programs of a worker node besides busybox: the
// container runtime, the CNI plugins the node's network uses, and
// util-linux's mount (the kubelet mounts volumes with it).
var nodeBinaries = []string{
	"/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2", "/usr/sbin/runc",
	"/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/portmap", "/usr/lib/cni/loopback",
	"/usr/bin/mount", "/usr/bin/umount",
}

// NodeFiles are the root file system of a worker node, a system container
// (docs/node-isolation-design.md): Debian's containerd, runc, CNI plugins,
// iptables and util-linux mount from this machine with their libraries, a
// busybox userland, init (a reaper: the pause program), and the /etc a
// node needs. Its /etc/skiff is the node's own configuration (mounted);
// /var, /run and /tmp are the node's own too.
//
// gVisor (runsc and containerd-shim-runsc-v1, static programs built from
// gVisor's Go module by `make images`) comes from gvisor, a directory; ""
// leaves it out.
func NodeFiles(init, gvisor string) ([]File, error) {
	files := []File{
		// A merged /usr, as Debian 12's.
		{Path: "/usr/bin", Dir: true}, {Path: "/usr/sbin", Dir: true}, {Path: "/usr/lib", Dir: true}, {Path: "/usr/lib64", Dir: true},
		{Path: "/bin", Link: "usr/bin"}, {Path: "/sbin", Link: "usr/sbin"},
		{Path: "/lib", Link: "usr/lib"}, {Path: "/lib64", Link: "usr/lib64"},
	}
	box, _, err := BusyboxFiles(busybox)
	if err != nil {
		return nil, fmt.Errorf("node image: %w (install busybox-static: make deps)", err)
	}
	files = append(files, box...)
	var libs []string
	for _, b := range nodeBinaries {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("node image: %w (make deps installs it)", err)
		}
		files = append(files, File{Path: b, Source: b})
		l, err := SharedLibs(b)
		if err != nil {
			return nil, fmt.Errorf("node image: %w", err)
		}
		libs = append(libs, l...)
	}
	if gvisor != "" {
		for _, name := range []string{"runsc", "containerd-shim-runsc-v1"} {
			src := filepath.Join(gvisor, name)
			if _, err := os.Stat(src); err != nil {
				return nil, fmt.Errorf("node image: %w (make images builds it)", err)
			}
			files = append(files, File{Path: "/usr/bin/" + name, Source: src})
		}
	}
	ipt, err := iptables()
	if err != nil {
		return nil, fmt.Errorf("node image: %w", err)
	}
	files = append(files, ipt...)
	slices.Sort(libs)
	for _, l := range slices.Compact(libs) {
		files = append(files, File{Path: l, Source: l})
	}
	files = append(files,
		File{Path: "/sbin/init", Source: init},
		File{Path: NodeMounts.Kube, Data: []byte{}}, File{Path: NodeMounts.Skiff, Data: []byte{}},
		File{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), Mode: 0o644},
		File{Path: "/etc/group", Data: []byte("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"), Mode: 0o644},
		File{Path: "/etc/hosts", Data: []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"), Mode: 0o644},
		File{Path: "/etc/nsswitch.conf", Data: []byte("passwd: files\ngroup: files\nhosts: files dns\n"), Mode: 0o644},
		File{Path: "/etc/os-release", Data: []byte("PRETTY_NAME=\"skiff node (Debian GNU/Linux 12)\"\nNAME=\"skiff node\"\nID=skiff-node\nID_LIKE=debian\nVERSION_ID=\"12\"\n"), Mode: 0o644},
		File{Path: "/etc/machine-id", Link: "skiff/machine-id"},
		File{Path: "/etc/resolv.conf", Link: "skiff/resolv.conf"},
		File{Path: "/etc/skiff", Dir: true},
		File{Path: "/lib/modules", Dir: true}, // kube-proxy mounts it
	)
	for _, d := range []string{"/proc", "/sys", "/dev", "/run", "/var", "/root"} {
		files = append(files, File{Path: d, Dir: true, Mode: 0o755})
	}
	files = append(files, File{Path: "/tmp", Dir: true, Mode: 0o1777})
	return files, nil
}

// Unpack writes files into a directory under parent named by their
// content key, unless it is there already (an unchanged image is not
// written again), and returns it. Later entries replace earlier ones at
// the same path. The tree is owned by the caller (root) and world-readable;
// files of this machine are hard links where the file system allows.
func Unpack(files []File, parent string) (string, error) {
	key, err := Image{Repo: "node", Tag: "root", Files: files}.sourceKey()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(parent, key[:16])
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	b := make([]byte, 4)
	rand.Read(b)
	tmp := dir + ".tmp-" + hex.EncodeToString(b)
	defer os.RemoveAll(tmp)
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return "", err
	}
	for _, f := range files {
		if err := writeFile(tmp, f); err != nil {
			return "", fmt.Errorf("unpack %s: %w", f.Path, err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

func writeFile(root string, f File) error {
	p := filepath.Join(root, f.Path)
	mode := os.FileMode(f.Mode & 0o777)
	if f.Mode&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	if mode == 0 {
		mode = 0o755
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if f.Dir {
		if err := os.MkdirAll(p, mode); err != nil {
			return err
		}
		return os.Chmod(p, mode)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if f.Link != "" {
		return os.Symlink(f.Link, p)
	}
	if src, err := filepath.EvalSymlinks(f.Source); f.Source != "" && err == nil && os.Link(src, p) == nil {
		// The same file (inode) as the host's: no copy, one page cache. It
		// keeps its own mode (a chmod would change the host's file).
		return nil
	}
	out, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if f.Source != "" {
		in, err := os.Open(f.Source)
		if err != nil {
			out.Close()
			return err
		}
		_, err = io.Copy(out, in)
		in.Close()
		if err != nil {
			out.Close()
			return err
		}
	} else if _, err := out.Write(f.Data); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}
