package bundle

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func writeBundle(t *testing.T, root, version string) {
	t.Helper()
	dir := filepath.Join(root, version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	manifest := `{"kubernetesVersion":"` + version + `","etcdVersion":"v3.7.0","binary":"kube"}`
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kube"), []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestCatalog(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"v1.37.2", "v1.36.3", "v1.36.10"} {
		writeBundle(t, root, v)
	}
	c, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Versions(); len(got) != 2 || got[0] != "1.36" || got[1] != "1.37" {
		t.Fatalf("Versions() = %v", got)
	}
	tests := []struct {
		in, want string
		err      bool
	}{
		{"", "v1.37.2", false},
		{"1.37", "v1.37.2", false},
		{"1.36", "v1.36.10", false},
		{"v1.36.3", "v1.36.3", false},
		{"1.36.3", "v1.36.3", false},
		{"1.35", "", true},
		{"banana", "", true},
	}
	for _, tt := range tests {
		b, err := c.Lookup(tt.in)
		if tt.err {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("Lookup(%q) error = %v, want ErrNotFound", tt.in, err)
			}
			continue
		}
		if err != nil || b.KubernetesVersion != tt.want {
			t.Errorf("Lookup(%q) = %v, %v; want %s", tt.in, b.KubernetesVersion, err, tt.want)
		}
	}
}

func TestLoadEmpty(t *testing.T) {
	if _, err := Load(t.TempDir()); err == nil {
		t.Fatal("Load of an empty dir succeeded")
	}
}

func TestMinorOf(t *testing.T) {
	for in, want := range map[string]string{"v1.37.2": "1.37", "1.36": "1.36", "1": "", "x.y": "", "": ""} {
		if got := MinorOf(in); got != want {
			t.Errorf("MinorOf(%q) = %q, want %q", in, got, want)
		}
	}
}
