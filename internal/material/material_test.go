package material

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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

// TestConcurrentWrites: writers at once never leave a mixed file; it
// holds one writer's value whole, mode 0600, and no temporary file stays.
func TestConcurrentWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.json")
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := Write(path, map[string]string{"writer": strings.Repeat(strconv.Itoa(i), 1000+i)}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	var got map[string]string
	data, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(data, &got) != nil || len(got["writer"]) < 1000 {
		t.Fatalf("file after concurrent writes: %v, %q…", err, data[:min(len(data), 40)])
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
