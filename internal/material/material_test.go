package material

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteAndGet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "m.json")
	f := &File[[]string]{Path: path}
	if _, err := f.Get(); err == nil {
		t.Error("a missing file read without an error")
	}
	for _, tc := range []struct {
		v     []string
		wrote bool
	}{{[]string{"a"}, true}, {[]string{"a"}, false}, {[]string{"a", "b"}, true}} {
		wrote, err := Write(path, tc.v)
		if err != nil || wrote != tc.wrote {
			t.Fatalf("Write(%v) = %v, %v; want %v", tc.v, wrote, err, tc.wrote)
		}
		got, err := f.Get()
		if err != nil || len(got) != len(tc.v) {
			t.Fatalf("Get after Write(%v) = %v, %v", tc.v, got, err)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v %v, want 0600", fi.Mode(), err)
	}
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Get(); err == nil {
		t.Error("a broken file read without an error")
	}
}
