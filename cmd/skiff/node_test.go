package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCRISocket: bootstrap finds the container runtime's socket in the
// kubelet's configuration, and waits for it to answer.
func TestCRISocket(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ config, want string }{
		{"kind: KubeletConfiguration\ncontainerRuntimeEndpoint: unix:///run/containerd/containerd.sock\n", "/run/containerd/containerd.sock"},
		{"kind: KubeletConfiguration\n", ""},
		{"not: [yaml", ""},
	} {
		path := filepath.Join(dir, "kubelet.yaml")
		os.WriteFile(path, []byte(tc.config), 0o600)
		if got := criSocket(path); got != tc.want {
			t.Errorf("criSocket(%q) = %q, want %q", tc.config, got, tc.want)
		}
	}
	if got := criSocket(filepath.Join(dir, "missing.yaml")); got != "" {
		t.Errorf("criSocket(missing) = %q", got)
	}

	sock := filepath.Join(dir, "cri.sock")
	go func() {
		time.Sleep(300 * time.Millisecond)
		if ln, err := net.Listen("unix", sock); err == nil {
			t.Cleanup(func() { ln.Close() })
		}
	}()
	start := time.Now()
	waitSocket(context.Background(), sock, 5*time.Second)
	if d := time.Since(start); d < 300*time.Millisecond || d > 4*time.Second {
		t.Errorf("waitSocket returned after %v; the socket listened after 300ms", d)
	}
}
