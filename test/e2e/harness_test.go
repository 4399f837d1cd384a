// Package e2e tests skiff end to end against the real Kubernetes bundles
// (built by `make bundles`) and the stock clients installed on the machine
// (kubectl, aws). Nothing here is faked.
package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"skiff.dev/skiff/internal/bundle"
	"skiff.dev/skiff/internal/clusters"
	"skiff.dev/skiff/internal/controlplane"
	"skiff.dev/skiff/internal/kms"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/network"
	"skiff.dev/skiff/internal/runtime/process"
	"skiff.dev/skiff/internal/store"
)

// bundlesDir is where `make bundles` puts the bundles; SKIFF_BUNDLES overrides.
func bundlesDir(t testing.TB) string {
	if d := os.Getenv("SKIFF_BUNDLES"); d != "" {
		return d
	}
	d, err := filepath.Abs("../../_output/bundles")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func catalog(t testing.TB) *bundle.Catalog {
	t.Helper()
	c, err := bundle.Load(bundlesDir(t))
	if err != nil {
		t.Fatalf("%v (the e2e tests need the real bundles: run 'make bundles')", err)
	}
	return c
}

// testLogger writes to a file in the test's temp dir (shown on failure).
func testLogger(t testing.TB, dir string) *slog.Logger {
	f, err := os.Create(filepath.Join(dir, "skiff.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if t.Failed() || os.Getenv("SKIFF_E2E_KEEP_LOGS") != "" { // kept on request too
			data, _ := os.ReadFile(f.Name())
			t.Logf("skiff log:\n%s", tail(string(data), 60))
			keep := filepath.Join(os.TempDir(), "skiff-e2e-failed", t.Name())
			os.RemoveAll(keep)
			os.MkdirAll(keep, 0o700)
			copyLogs(dir, keep)
			t.Logf("logs kept in %s", keep)
		}
	})
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// copyLogs copies every *.log file under dir to the same place under keep.
func copyLogs(dir, keep string) {
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".log") {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		data, err := os.ReadFile(path)
		if err == nil && os.MkdirAll(filepath.Join(keep, filepath.Dir(rel)), 0o700) == nil {
			os.WriteFile(filepath.Join(keep, rel), data, 0o600)
		}
		return nil
	})
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// engineEnv runs the control-plane engine in the test process.
type engineEnv struct {
	dir       string
	store     *store.Store
	svc       *clusters.Service
	engine    *controlplane.Engine
	newEngine func() *controlplane.Engine
	runtime   *process.Runtime
	cancel    context.CancelFunc
	done      chan struct{}
}

// startEngine starts a new engine on the env's store and runtime (a skiff
// started anew).
func (e *engineEnv) startEngine() {
	eng := e.newEngine()
	ctx, cancel := context.WithCancel(context.Background())
	e.engine, e.cancel, e.done = eng, cancel, make(chan struct{})
	e.svc.Changed = eng.Trigger
	done := e.done
	go func() {
		defer close(done)
		eng.Run(ctx)
	}()
}

// stopEngine stops the engine (instances keep running).
func (e *engineEnv) stopEngine() {
	e.cancel()
	<-e.done
}

func newEngineEnv(t testing.TB) *engineEnv {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	log := testLogger(t, dir)
	rt := process.New(dir, filepath.Join(dir, "logs"), log)
	cat := catalog(t)
	e := &engineEnv{dir: dir, store: st, runtime: rt,
		svc: &clusters.Service{Store: st, Bundles: cat, SlotUsable: rt.SlotFree,
			Network: &network.Service{Store: st, Region: "us-east-1"}}}
	root, err := kms.OpenRootKey(kms.RootKeyPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	e.newEngine = func() *controlplane.Engine {
		return controlplane.New(controlplane.Config{DataDir: dir, Store: st, Runtime: rt, Bundles: cat, Log: log, SkiffBin: skiffBin, Sealer: root})
	}
	e.startEngine()
	t.Cleanup(func() {
		// Delete every cluster, wait for the teardown, then stop the engine.
		names, _ := e.svc.List("")
		for _, n := range names {
			e.svc.Delete("", n)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			left, _ := st.ListClusters()
			if len(left) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		e.stopEngine()
		if list, _ := rt.List(context.Background()); len(list) > 0 {
			t.Errorf("instances left after cleanup: %v", list)
			for _, s := range list {
				rt.Stop(context.Background(), s.ID, 0)
			}
		}
		st.Close()
	})
	return e
}

// create asks for a cluster in the default VPC's subnets (account "").
func (e *engineEnv) create(t testing.TB, name string) {
	t.Helper()
	if _, err := e.svc.Network.EnsureDefault(""); err != nil {
		t.Fatal(err)
	}
	subnets, err := e.svc.Network.Subnets("", nil)
	if err != nil {
		t.Fatal(err)
	}
	req := clusters.CreateRequest{Name: name}
	for _, sn := range subnets {
		req.SubnetIDs = append(req.SubnetIDs, sn.ID)
	}
	if _, err := e.svc.Create(req); err != nil {
		t.Fatal(err)
	}
}

// waitStatus polls a cluster until it has the status (or fails the test).
func waitStatus(t testing.TB, svc *clusters.Service, name, status string, timeout time.Duration) *model.Cluster {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := svc.Get("", name)
		if err == nil && c.Status == status {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster %s: not %s after %v (now %+v, %v)", name, status, timeout, c, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// adminKubeconfig returns the path of a cluster's admin kubeconfig.
func (e *engineEnv) adminKubeconfig(c *model.Cluster) string {
	return e.engine.Layout(c).KubeconfigPath("admin")
}

// kubectl runs the machine's stock kubectl.
func kubectl(t testing.TB, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bin, pre := kubectlCommand(t)
	cmd := exec.CommandContext(ctx, bin, append(append(pre, "--kubeconfig", kubeconfig), args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// kubectlCommand is the machine's kubectl, or else the newest bundle's own
// (the same upstream kubectl).
func kubectlCommand(t testing.TB) (string, []string) {
	if p, err := exec.LookPath("kubectl"); err == nil {
		return p, nil
	}
	return catalog(t).Latest().Path(), []string{"kubectl"}
}

func mustKubectl(t testing.TB, kubeconfig string, args ...string) string {
	t.Helper()
	out, err := kubectl(t, kubeconfig, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
