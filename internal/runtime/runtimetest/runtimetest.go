// Package runtimetest is the conformance suite every runtime.Runtime must
// pass (the process runtime today, a host Kubernetes cluster's next): the
// semantics the reconcilers rely on, whatever places the instances.
package runtimetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"skiff.dev/skiff/internal/runtime"
)

// Harness adapts a runtime to the suite.
type Harness struct {
	// New returns a runtime with fresh state of its own.
	New func(t *testing.T) runtime.Runtime
	// Reopen returns a second runtime on r's state, as a restarted skiff
	// makes: it must find what r started.
	Reopen func(t *testing.T, r runtime.Runtime) runtime.Runtime
	// Kill ends an instance from outside the runtime (a crash).
	Kill func(t *testing.T, st runtime.Status)
	// Sleeper is a command that runs until stopped; Stubborn one that
	// ignores SIGTERM (or the runtime's polite stop).
	Sleeper, Stubborn []string
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	t.Run("Lifecycle", func(t *testing.T) { lifecycle(t, h) })
	t.Run("StopEscalates", func(t *testing.T) { stopEscalates(t, h) })
	t.Run("Isolated", func(t *testing.T) { isolated(t, h) })
	t.Run("Addresses", func(t *testing.T) { addresses(t, h) })
	t.Run("Volumes", func(t *testing.T) { volumes(t, h) })
	t.Run("EncryptedVolumes", func(t *testing.T) { encryptedVolumes(t, h) })
	t.Run("MachineNotReady", func(t *testing.T) { machineNotReady(t, h) })
}

// Find returns id's status in r's list.
func Find(t *testing.T, r runtime.Runtime, id string) (runtime.Status, bool) {
	t.Helper()
	list, err := r.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.ID == id {
			return s, true
		}
	}
	return runtime.Status{}, false
}

// lifecycle: start, no second start, adoption by a restarted runtime, a
// crash reported as ended (not running, with its exit time), Stop forgets.
func lifecycle(t *testing.T, h Harness) {
	ctx := context.Background()
	r := h.New(t)
	spec := runtime.Spec{ID: "c1/sleeper", Cluster: "c1", Role: runtime.Etcd, Command: h.Sleeper}
	if err := r.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(ctx, spec.ID, time.Second) })
	if err := r.Start(ctx, spec); err == nil {
		t.Fatal("a second Start of a running instance succeeded")
	}
	st, ok := Find(t, r, spec.ID)
	if !ok || !st.Running || st.Hash != spec.Hash() {
		t.Fatalf("status = %+v, %v; want running with the spec's hash", st, ok)
	}
	again := h.Reopen(t, r)
	if st2, ok := Find(t, again, spec.ID); !ok || !st2.Running || st2.Hash != spec.Hash() {
		t.Fatalf("a restarted runtime sees %+v, %v", st2, ok)
	}
	if err := again.Start(ctx, spec); err == nil {
		t.Fatal("a restarted runtime started a second copy")
	}

	h.Kill(t, st)
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, ok = Find(t, r, spec.ID)
		if ok && !st.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("killed instance reported %+v, %v; want listed, not running", st, ok)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.Exited.IsZero() {
		t.Errorf("killed status %+v: no exit time", st)
	}
	if err := r.Stop(ctx, spec.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, ok := Find(t, r, spec.ID); ok {
		t.Fatal("a stopped instance is still listed")
	}
	if err := r.Stop(ctx, "c1/unknown", time.Second); err != nil {
		t.Errorf("Stop of an unknown instance: %v", err)
	}
	// Started again after the crash, as the reconciler does.
	if err := r.Start(ctx, spec); err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	if st, ok := Find(t, r, spec.ID); !ok || !st.Running {
		t.Fatalf("restarted instance: %+v, %v", st, ok)
	}
}

// stopEscalates: Stop ends an instance that ignores the polite request
// after its grace, and stopping twice is fine.
func stopEscalates(t *testing.T, h Harness) {
	ctx := context.Background()
	r := h.New(t)
	spec := runtime.Spec{ID: "c1/stubborn", Cluster: "c1", Command: h.Stubborn}
	if err := r.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if err := r.Stop(ctx, spec.ID, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, ok := Find(t, r, spec.ID); ok {
		t.Fatal("the instance survived Stop")
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("Stop took %v", time.Since(start))
	}
	if err := r.Stop(ctx, spec.ID, time.Second); err != nil {
		t.Fatal(err)
	}
}

// isolated: two runtimes with states of their own do not see each
// other's instances (two skiffs on one machine, or a test beside one).
func isolated(t *testing.T, h Harness) {
	ctx := context.Background()
	a, b := h.New(t), h.New(t)
	spec := runtime.Spec{ID: "c1/mine", Cluster: "c1", Command: h.Sleeper}
	if err := a.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Stop(ctx, spec.ID, time.Second) })
	if _, ok := Find(t, b, spec.ID); ok {
		t.Fatal("another runtime lists the instance")
	}
	if err := b.Stop(ctx, spec.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	if st, ok := Find(t, a, spec.ID); !ok || !st.Running {
		t.Fatalf("another runtime's Stop ended the instance: %+v, %v", st, ok)
	}
}

// machineNotReady: an instance inside a machine that does not run, or in
// an instance that is no machine, does not start (ErrMachineNotReady: the
// node reconciler tries again) and leaves nothing listed.
func machineNotReady(t *testing.T, h Harness) {
	ctx := context.Background()
	r := h.New(t)
	plain := runtime.Spec{ID: "c1/plain", Cluster: "c1", Command: h.Sleeper}
	if err := r.Start(ctx, plain); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(ctx, plain.ID, time.Second) })
	for _, machine := range []string{"c1/absent", plain.ID} {
		spec := runtime.Spec{ID: "c1/inside", Cluster: "c1", Command: h.Sleeper, Machine: machine}
		err := r.Start(ctx, spec)
		if !errors.Is(err, runtime.ErrMachineNotReady) {
			r.Stop(ctx, spec.ID, time.Second)
			t.Fatalf("start in machine %s: %v, want ErrMachineNotReady", machine, err)
		}
		if st, ok := Find(t, r, spec.ID); ok {
			t.Fatalf("listed after a failed start: %+v", st)
		}
	}
}

// Every address the control-plane reconciler asks for, with how many
// instances of each role a cluster may have.
var wanted = []struct {
	role   runtime.Role
	shared bool
	count  int
}{
	{runtime.Endpoint, true, 2}, {runtime.Authenticator, true, 2}, {runtime.Tunnel, false, 1},
	{runtime.Door, false, 1}, {runtime.Etcd, false, 5}, {runtime.APIServer, false, 5},
	{runtime.ControllerManager, false, 2}, {runtime.Scheduler, false, 2},
}

// addresses: every address a cluster needs exists and is its own (no two
// of one cluster, nor of two clusters, coincide), and a place whose
// addresses something listens on is not free.
func addresses(t *testing.T, h Harness) {
	r := h.New(t)
	seen := map[string]string{}
	for _, slot := range []int{1, 2, 254, 255, 256, 511, 4095} { // 4095: store.MaxSlot
		for _, w := range wanted {
			var addrs []runtime.Addr
			if w.shared {
				addrs = append(addrs, runtime.SharedAddr(w.role))
			}
			for i := range w.count {
				addrs = append(addrs, runtime.OwnAddr(w.role, i))
			}
			for _, a := range addrs {
				ip := r.Addr(slot, a)
				what := fmt.Sprintf("place %d %s %d", slot, a.Role, a.Index)
				if ip == nil {
					t.Fatalf("%s: no address", what)
				}
				if other, ok := seen[ip.String()]; ok {
					t.Errorf("%s and %s share %s", what, other, ip)
				}
				seen[ip.String()] = what
			}
		}
	}
	// A place nothing uses is free; one whose apiserver address something
	// listens on is not, and is free again once that listener closes.
	slot := 0
	for s := 254; s > 200 && slot == 0; s-- {
		if r.SlotFree(s) {
			slot = s
		}
	}
	if slot == 0 {
		t.Fatal("no free place among 201-254")
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(r.Addr(slot, runtime.OwnAddr(runtime.APIServer, 1)).String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	if r.SlotFree(slot) {
		t.Errorf("place %d is free while %s listens in it", slot, ln.Addr())
	}
	ln.Close()
	if !r.SlotFree(slot) {
		t.Errorf("place %d is busy after its only listener closed", slot)
	}
}

// volumes: distinct volumes are distinct paths; a new volume holds no
// data, one written to does, and a removed one none again.
func volumes(t *testing.T, h Harness) {
	r := h.New(t)
	a := runtime.Volume{Cluster: "c1", Kind: "etcd", Name: "etcd-a"}
	others := []runtime.Volume{{Cluster: "c1", Kind: "etcd", Name: "etcd-a-1"}, {Cluster: "c2", Kind: "etcd", Name: "etcd-a"}, {Cluster: "c1", Kind: "other", Name: "etcd-a"}}
	for _, o := range others {
		if r.Volume(o) == r.Volume(a) {
			t.Errorf("volumes %+v and %+v share %s", a, o, r.Volume(a))
		}
	}
	has := func(v runtime.Volume) bool {
		t.Helper()
		ok, err := r.HasData(v)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if has(a) {
		t.Fatal("a new volume holds data")
	}
	if err := os.MkdirAll(filepath.Join(r.Volume(a), "member"), 0o700); err != nil {
		t.Fatal(err)
	}
	if !has(a) {
		t.Fatal("a written volume holds no data")
	}
	if has(others[0]) || has(others[1]) {
		t.Fatal("writing one volume put data in another")
	}
	if err := r.RemoveVolume(a); err != nil {
		t.Fatal(err)
	}
	if has(a) {
		t.Fatal("a removed volume holds data")
	}
	if err := r.RemoveVolume(a); err != nil {
		t.Fatalf("removing a missing volume: %v", err)
	}
}

// encryptedVolumes: an encrypted volume must be open to tell whether it
// holds data; another key does not open it; RemoveVolumes removes every
// volume of its cluster and none of another's; a removed volume is made
// again empty.
func encryptedVolumes(t *testing.T, h Harness) {
	r := h.New(t)
	ctx := context.Background()
	v := runtime.Volume{Cluster: "c1", Kind: "etcd", Name: "etcd-a", Encrypted: true}
	w := runtime.Volume{Cluster: "c1", Kind: "etcd", Name: "etcd-b", Encrypted: true}
	t.Cleanup(func() { r.RemoveVolumes("c1") })
	key, other := bytes.Repeat([]byte{1}, 64), bytes.Repeat([]byte{2}, 64)
	if _, err := r.HasData(v); err == nil {
		t.Error("HasData of a volume never opened: no error (its member would be taken for one without data)")
	}
	for _, x := range []runtime.Volume{v, w} {
		if err := r.OpenVolume(ctx, x, key); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := r.HasData(v); err != nil || ok {
		t.Fatalf("a new encrypted volume: data %v, %v", ok, err)
	}
	if err := os.WriteFile(filepath.Join(r.Volume(v), "member"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.OpenVolume(ctx, v, key); err != nil { // again: a no-op
		t.Fatal(err)
	}
	if err := r.OpenVolume(ctx, v, other); err == nil {
		t.Error("another key opened the volume")
	}
	if ok, err := r.HasData(v); err != nil || !ok {
		t.Fatalf("a written encrypted volume: data %v, %v", ok, err)
	}
	if err := r.RemoveVolumes("c2"); err != nil { // another cluster's: nothing of c1
		t.Fatal(err)
	}
	if ok, err := r.HasData(v); err != nil || !ok {
		t.Fatalf("after removing another cluster's volumes: data %v, %v", ok, err)
	}
	if err := r.RemoveVolumes("c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.HasData(v); err == nil {
		t.Error("a removed encrypted volume still open")
	}
	if err := r.OpenVolume(ctx, v, other); err != nil {
		t.Fatal(err) // removed: a fresh one under the other key
	}
	if ok, err := r.HasData(v); err != nil || ok {
		t.Fatalf("a volume made again after removal: data %v, %v", ok, err)
	}
	if err := r.RemoveVolume(v); err != nil {
		t.Fatal(err)
	}
	if err := r.OpenVolume(ctx, v, key); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveVolume(v); err != nil {
		t.Fatal(err)
	}
}
