package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// CgroupRoot is the cgroup (in every v1 hierarchy) that holds all nodes.
const CgroupRoot = "/skiff"

// RunDir holds each node's run state on the host: its pinned namespaces,
// what its first process mounts from the host, its sockets (short paths:
// unix sockets allow 108 bytes). It is a private mount (MakePrivate).
const RunDir = "/run/skiff-nodes"

// MakeCgroup creates cgroup path ("/skiff/NAME") in every hierarchy, its
// parents too; cpuset needs each one's cpus and mems copied from its
// parent.
func MakeCgroup(path string) error {
	hs, err := Hierarchies()
	if err != nil {
		return err
	}
	var levels []string
	for p := filepath.Clean(path); p != "/" && p != "."; p = filepath.Dir(p) {
		levels = append([]string{p}, levels...)
	}
	for _, h := range hs {
		for _, p := range levels {
			dir := filepath.Join(h.Dir, p)
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("create cgroup %s: %w", dir, err)
			}
			if filepath.Base(h.Dir) != "cpuset" {
				continue
			}
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
	return nil
}

// Delegate gives cgroup path to uid (a node's root) in every hierarchy:
// it may create, limit and fill child cgroups; the cgroup's own limits stay
// the host's files. pids caps the processes and threads in it (a fork bomb
// in one node stays in it).
func Delegate(path string, uid uint32, pids int) error {
	hs, err := Hierarchies()
	if err != nil {
		return err
	}
	for _, h := range hs {
		dir := filepath.Join(h.Dir, path)
		if filepath.Base(h.Dir) == "pids" {
			if err := os.WriteFile(filepath.Join(dir, "pids.max"), []byte(fmt.Sprint(pids)), 0); err != nil {
				return fmt.Errorf("limit %s's processes: %w", dir, err)
			}
		}
		for _, f := range []string{"", "cgroup.procs", "tasks", "cgroup.clone_children"} {
			if err := os.Lchown(filepath.Join(dir, f), int(uid), int(uid)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("delegate cgroup %s: %w", dir, err)
			}
		}
	}
	return nil
}

// JoinCgroup moves process pid into cgroup path in every hierarchy.
func JoinCgroup(path string, pid int) error {
	hs, err := Hierarchies()
	if err != nil {
		return err
	}
	for _, h := range hs {
		if err := os.WriteFile(filepath.Join(h.Dir, path, "cgroup.procs"), []byte(fmt.Sprint(pid)), 0); err != nil {
			return fmt.Errorf("join cgroup %s%s: %w", h.Dir, path, err)
		}
	}
	return nil
}

var private sync.Mutex

// MakePrivate makes dir a private mount (made if missing, mode 0711: nodes'
// roots pass through to their own): a namespace can only be kept on a file
// of one, and what is mounted there stays in this mount namespace.
func MakePrivate(ctx context.Context, dir string) error {
	private.Lock() // the host's mount table is one for every caller
	defer private.Unlock()
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "findmnt", "-no", "PROPAGATION", "-T", dir).Output()
	if err != nil {
		return fmt.Errorf("findmnt %s: %w", dir, err)
	}
	if !strings.Contains(string(out), "shared") {
		return nil
	}
	for _, args := range [][]string{{"--bind", dir, dir}, {"--make-private", dir}} {
		if out, err := exec.CommandContext(ctx, "mount", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("make %s a private mount: %w: %s", dir, err, out)
		}
	}
	return nil
}

// RemoveCgroup kills every process in cgroup path (and below) and removes
// it, deepest first. A missing cgroup is not an error.
func RemoveCgroup(ctx context.Context, path string) error {
	hs, err := Hierarchies()
	if err != nil {
		return err
	}
	var dirs []string
	for _, h := range hs {
		filepath.WalkDir(filepath.Join(h.Dir, path), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	if len(dirs) == 0 {
		return nil
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for deadline := time.Now().Add(10 * time.Second); ; {
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
		time.Sleep(50 * time.Millisecond)
	}
	var errs []error
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
