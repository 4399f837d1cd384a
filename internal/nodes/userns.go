package nodes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"skiff.dev/skiff/internal/images"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/runtime"
	"skiff.dev/skiff/internal/sandbox"
	"skiff.dev/skiff/internal/store"
	"skiff.dev/skiff/internal/vpcnet"
)

// Sandbox modes (Config.Sandbox).
const (
	// SandboxUserNS makes every node a system container of its own user
	// namespace (package sandbox).
	SandboxUserNS = "userns"
	// SandboxHost runs nodes as host root with their own network and mount
	// namespaces only: no boundary against a privileged pod.
	SandboxHost = "host"
)

// Sandbox is the role of a system container's first process.
const Sandbox runtime.Role = "sandbox"

// ID ranges: node slot k maps its IDs 0…IDRange-1 to the host's
// IDBase0 + k·IDRange…, so host IDs below 2^28 stay free for the host. A
// range is wide enough for any image's uids and for the node's kubelet to
// give user-namespaced pods ranges of their own.
const (
	IDBase0  = 1 << 28
	IDRange  = 1 << 23
	idSlots  = (1<<32-IDBase0)/IDRange - 1 // the last would reach ID 2^32-1 (-1)
	idPrefix = "idrange/"
)

// allocateIDs reserves an ID range for owner ("node/ID") and returns its
// base; an owner that holds one gets it again.
func (r *Reconciler) allocateIDs(owner string) (uint32, error) {
	var base uint32
	err := r.cfg.Store.Network(func(tx *store.Tx) error {
		used := map[int]bool{}
		err := tx.Scan(idPrefix, func(key string, data []byte) error {
			var o string
			if err := json.Unmarshal(data, &o); err != nil {
				return err
			}
			slot, err := strconv.Atoi(strings.TrimPrefix(key, idPrefix))
			if err != nil {
				return fmt.Errorf("ID range record %s: %w", key, err)
			}
			if o == owner && base == 0 {
				base = uint32(IDBase0 + slot*IDRange)
			}
			used[slot] = true
			return nil
		})
		if err != nil || base != 0 {
			return err
		}
		for slot := 0; slot < idSlots; slot++ {
			if !used[slot] && !idsInUse(uint32(IDBase0+slot*IDRange)) {
				base = uint32(IDBase0 + slot*IDRange)
				return tx.Put(fmt.Sprintf("%s%04d", idPrefix, slot), owner)
			}
		}
		return fmt.Errorf("no free ID range for %s: %d nodes run on this machine", owner, idSlots)
	})
	return base, err
}

// releaseIDs frees owner's ID range.
func (r *Reconciler) releaseIDs(owner string) error {
	return r.cfg.Store.Network(func(tx *store.Tx) error { return tx.DeleteOwned(idPrefix, owner) })
}

// idsInUse reports whether a process runs with a uid of the range at
// base (a node left by a lost store, until the orphan sweep removes it).
func idsInUse(base uint32) bool {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name(), &st) == nil && st.Uid >= base && st.Uid-base < IDRange {
			return true
		}
	}
	return false
}

// stageDir is where the host mounts what a system container's Init binds
// into it (the node's first process runs as the node's root and could not
// reach them under the data directory).
func (p paths) stageDir() string { return filepath.Join(p.run, "fs") }

// stage mounts, under the node's run directory, what Init needs: the node
// image, the bundle's kube binary, skiff (the node's bootstrap), its /var
// and its configuration. The directory is the node's group's only.
func stage(p paths, gid uint32, mounts map[string]string) error {
	if err := os.MkdirAll(p.stageDir(), 0o750); err != nil {
		return err
	}
	for _, d := range []string{p.run, p.stageDir()} {
		if err := os.Chown(d, 0, int(gid)); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o750); err != nil {
			return err
		}
	}
	for name, src := range mounts {
		dst := filepath.Join(p.stageDir(), name)
		var a, b unix.Stat_t
		if unix.Stat(src, &a) != nil {
			return fmt.Errorf("stage %s: %s is missing", name, src)
		}
		if unix.Stat(dst, &b) == nil && a.Dev == b.Dev && a.Ino == b.Ino {
			continue // mounted already
		}
		unix.Unmount(dst, unix.MNT_DETACH) // a changed source (a new bundle)
		if a.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		} else if err := os.WriteFile(dst, nil, 0o644); err != nil {
			return err
		}
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("stage %s: %w", name, err)
		}
	}
	return nil
}

// prepareSandbox makes what a system container needs before it starts
// (ID range, cgroups, directories, staged mounts) and returns the spec of
// its first process.
func (r *Reconciler) prepareSandbox(ctx context.Context, c *model.Cluster, g *model.Nodegroup, n *model.Node, kube string, p paths) (runtime.Spec, error) {
	if r.cfg.NodeImage == "" {
		return runtime.Spec{}, errors.New("no node image (skiff serve builds it at start)")
	}
	if n.IDBase == 0 {
		base, err := r.allocateIDs("node/" + n.ID)
		if err != nil {
			return runtime.Spec{}, err
		}
		if err := r.recordNode(c, g.Name, n.ID, func(x *model.Node) { x.IDBase = base }); err != nil {
			r.releaseIDs("node/" + n.ID)
			return runtime.Spec{}, err
		}
		n.IDBase = base
	}
	// Its cgroup and pinned namespaces are the runtime's (Spec.UserNS);
	// what Init mounts is staged here.
	if err := sandbox.MakePrivate(ctx, RunDir); err != nil {
		return runtime.Spec{}, err
	}
	// The node's /var is its root's; its configuration is the host's,
	// readable by the node's group (its root) and nobody else.
	for _, d := range []struct {
		path     string
		uid, gid uint32
		mode     os.FileMode
	}{{p.dir, 0, 0, 0o700}, {p.config(), 0, n.IDBase, 0o750}, {p.vardir(), n.IDBase, n.IDBase, 0o755}, {p.run, 0, n.IDBase, 0o750}} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return runtime.Spec{}, err
		}
		if err := os.Lchown(d.path, int(d.uid), int(d.gid)); err != nil {
			return runtime.Spec{}, err
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			return runtime.Spec{}, err
		}
	}
	if err := stage(p, n.IDBase, map[string]string{"image": r.cfg.NodeImage, "kube": kube, "skiff": r.cfg.SkiffBin,
		"var": p.vardir(), "config": p.config()}); err != nil {
		return runtime.Spec{}, err
	}
	fs := func(name string) string { return filepath.Join(p.stageDir(), name) }
	return runtime.Spec{ID: instanceID(c, n, Sandbox), Cluster: c.ID, Role: Sandbox, Zone: n.Zone,
		Command: []string{fs("skiff"), "node", "init", "--image", fs("image"), "--var", fs("var"), "--config", fs("config"),
			"--hostname", n.Name,
			"--bind", images.NodeMounts.Kube + "=" + fs("kube"), "--bind", images.NodeMounts.Skiff + "=" + fs("skiff")},
		Files:  []string{p.dir, p.run},
		UserNS: &runtime.IDMap{Base: n.IDBase, Size: IDRange}}, nil
}

// settle waits until a started system container has built itself (the
// runtime then says where its network namespace is) and attaches that
// namespace to the node's VPC.
func (r *Reconciler) settle(ctx context.Context, id string, att vpcnet.Attachment) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		netns := ""
		if all, err := r.cfg.Runtime.List(ctx); err == nil {
			for _, st := range all {
				if st.ID == id && st.Running {
					netns = st.NetNS
				}
			}
		}
		if netns != "" {
			changed, err := vpcnet.NameNode(ctx, att.NodeID, netns)
			if err != nil {
				return err
			}
			r.mu.Lock()
			attached := r.sandboxes[att.NodeID]
			r.mu.Unlock()
			if changed || !attached {
				if err := vpcnet.AttachNode(ctx, att); err != nil {
					return err
				}
				r.mu.Lock()
				r.sandboxes[att.NodeID] = true
				r.mu.Unlock()
			}
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("node sandbox %s is not up (see its log)", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
