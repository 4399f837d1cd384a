package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"skiff.dev/skiff/internal/runtime"
	"skiff.dev/skiff/internal/sandbox"
)

// Machines (runtime.Spec.UserNS) and the instances inside them
// (runtime.Spec.Machine). A machine's cgroup is CGROUPS/NAME in every
// hierarchy, delegated to its root, and its namespaces are pinned under
// RUN/NAME/ns (sandbox.CgroupRoot and sandbox.RunDir, unless a test chose
// others), NAME being its instance's file name (pidFile): both are found
// again by name after a skiff restart, and Stop of the machine frees them.

// machinePids caps the processes and threads of one machine.
const machinePids = 32768

func (r *Runtime) machineCgroup(id string) string { return r.cgroups + "/" + pidFile(id) }

func (r *Runtime) machineDir(id string) string { return filepath.Join(r.machines, pidFile(id)) }

// prepareMachine gives machine spec its cgroup before its first process
// starts.
func (r *Runtime) prepareMachine(spec runtime.Spec) (cgroup string, err error) {
	cgroup = r.machineCgroup(spec.ID)
	if err := sandbox.MakeCgroup(cgroup); err != nil {
		return "", err
	}
	if err := sandbox.Delegate(cgroup, spec.UserNS.Base, machinePids); err != nil {
		return "", err
	}
	return cgroup, nil
}

// inside returns the command line that runs command inside machine id,
// and the cgroup its process must join before it runs.
func (r *Runtime) inside(ctx context.Context, id string, command []string) ([]string, string, error) {
	p, err := r.find(id)
	if err != nil {
		return nil, "", err
	}
	if p == nil || !isMachine(p.pid) {
		return nil, "", fmt.Errorf("machine %s: %w", id, runtime.ErrMachineNotReady)
	}
	dir, err := r.pin(ctx, id, p.pid)
	if err != nil {
		return nil, "", err
	}
	enter, err := sandbox.EnterArgs(dir)
	if err != nil {
		return nil, "", fmt.Errorf("machine %s: %w: %w", id, runtime.ErrMachineNotReady, err)
	}
	return append(enter, command...), r.machineCgroup(id), nil
}

// isMachine reports whether pid is a machine that has built itself: the
// image's init in a user namespace other than the runtime's.
func isMachine(pid int) bool {
	if !sandbox.Running(pid) {
		return false
	}
	var a, b unix.Stat_t
	return unix.Stat(fmt.Sprintf("/proc/%d/ns/user", pid), &a) == nil && unix.Stat("/proc/self/ns/user", &b) == nil &&
		(a.Dev != b.Dev || a.Ino != b.Ino)
}

// pin keeps machine id's namespaces (its init is pid) at files, and
// returns their directory.
func (r *Runtime) pin(ctx context.Context, id string, pid int) (string, error) {
	dir := r.machineDir(id)
	if sandbox.Pinned(pid, dir) {
		return dir, nil
	}
	r.pinning.Lock()
	defer r.pinning.Unlock()
	if err := sandbox.MakePrivate(ctx, r.machines); err != nil {
		return "", err
	}
	if _, err := sandbox.Pin(pid, dir); err != nil {
		return "", fmt.Errorf("machine %s: %w", id, err)
	}
	return dir, nil
}

// forgetMachine frees what the runtime made for machine id, if it was
// one: every process left in its cgroup is killed, the cgroup removed,
// its pinned namespaces released.
func (r *Runtime) forgetMachine(ctx context.Context, id string) error {
	var errs []error
	dir := r.machineDir(id)
	if _, err := os.Stat(dir); err == nil {
		for _, ns := range sandbox.Namespaces {
			if err := unix.Unmount(filepath.Join(dir, "ns", ns), unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, err)
			}
		}
		errs = append(errs, os.RemoveAll(dir))
	}
	errs = append(errs, sandbox.RemoveCgroup(ctx, r.machineCgroup(id)))
	if hs, err := sandbox.Hierarchies(); err == nil {
		for _, h := range hs {
			os.Remove(filepath.Join(h.Dir, r.cgroups)) // fails while a machine remains
		}
	}
	return errors.Join(errs...)
}
