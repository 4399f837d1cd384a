package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"skiff.dev/skiff/internal/controlplane"
	"skiff.dev/skiff/internal/runtime/process"
)

// TestBundles is the smoke test of every bundle: each component reports
// the bundle's version, and a bare etcd + apiserver from it serves /readyz
// and the right /version, then stops without leaving anything behind.
func TestBundles(t *testing.T) {
	cat := catalog(t)
	if got := cat.Versions(); len(got) < 2 {
		t.Errorf("bundles %v: want both 1.36 and 1.37 (make bundles)", got)
	}
	for i, b := range cat.All() {
		t.Run(b.KubernetesVersion, func(t *testing.T) {
			for _, comp := range []string{"apiserver", "controller-manager", "scheduler", "kubelet", "proxy"} {
				out, err := exec.Command(b.Path(), comp, "--version").CombinedOutput()
				if err != nil || strings.TrimSpace(string(out)) != "Kubernetes "+b.KubernetesVersion {
					t.Errorf("%s --version = %q, %v", comp, out, err)
				}
			}
			out, err := exec.Command(b.Path(), "kubectl", "version", "--client").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Client Version: "+b.KubernetesVersion) {
				t.Errorf("kubectl version = %q, %v", out, err)
			}
			out, err = exec.Command(b.Path(), "etcd", "--version").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "etcd Version: "+strings.TrimPrefix(b.EtcdVersion, "v")) {
				t.Errorf("etcd --version = %q, %v", out, err)
			}

			dir := t.TempDir()
			rt := process.New(dir, filepath.Join(dir, "logs"), testLogger(t, dir))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			start := time.Now()
			bare, err := controlplane.StartBare(ctx, rt, b, filepath.Join(dir, "bare"), 250-i)
			if err != nil {
				t.Fatal(err)
			}
			if err := bare.WaitReady(ctx); err != nil {
				bare.Stop(ctx)
				t.Fatal(err)
			}
			t.Logf("bare etcd + apiserver %s ready in %v", b.KubernetesVersion, time.Since(start))
			if v, err := bare.Version(ctx); err != nil || v != b.KubernetesVersion {
				t.Errorf("/version = %q, %v", v, err)
			}
			// The stock kubectl agrees.
			pids := bare.PIDs(ctx)
			if len(pids) != 2 {
				t.Errorf("pids = %v", pids)
			}
			if err := bare.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			for _, pid := range pids {
				if syscall.Kill(pid, 0) == nil {
					t.Errorf("pid %d still running after Stop", pid)
				}
			}
			if controlplane.Listening(strings.TrimPrefix(bare.APIServerURL(), "https://")) {
				t.Error("apiserver port still open after Stop")
			}
		})
	}
}
