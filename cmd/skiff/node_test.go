package main

import (
	"context"
	"crypto/x509/pkix"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/util/certificate"

	"skiff.dev/skiff/internal/pki"
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

// TestInstallClientCert: the certificate skiff issues lands where the
// kubelet's certificate store finds it (its rotation goes on from there);
// a broken or missing one is an error, none asked is nothing to do.
func TestInstallClientCert(t *testing.T) {
	pkiDir, certDir := t.TempDir(), filepath.Join(t.TempDir(), "pki")
	if err := pki.Ensure(pkiDir, pki.Spec{}); err != nil {
		t.Fatal(err)
	}
	cert, key, err := pki.Issue(pkiDir, pki.ClusterCA, pkix.Name{CommonName: "system:node:n1", Organization: []string{"system:nodes"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "kubelet-client.pem")
	os.WriteFile(src, append(cert, key...), 0o600)
	current, err := installClientCert(src, certDir)
	if err != nil || current != filepath.Join(certDir, "kubelet-client-current.pem") {
		t.Fatalf("install: %q, %v", current, err)
	}
	store, err := certificate.NewFileStore("kubelet-client", certDir, certDir, "", "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := store.Current()
	if err != nil || got.Leaf == nil || got.Leaf.Subject.CommonName != "system:node:n1" {
		t.Fatalf("the kubelet's store: %v, %v", got, err)
	}
	if current, err := installClientCert("", certDir); current != "" || err != nil {
		t.Errorf("none asked: %q, %v", current, err)
	}
	os.WriteFile(src, cert, 0o600) // no key
	if _, err := installClientCert(src, certDir); err == nil {
		t.Error("a certificate without its key was installed")
	}
	if _, err := installClientCert(filepath.Join(t.TempDir(), "missing.pem"), certDir); err == nil {
		t.Error("a missing certificate was installed")
	}
}
