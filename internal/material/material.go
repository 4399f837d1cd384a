// Package material is how skiff hands its instances what they need of
// its store (keys, node lists) while they run without it: a JSON file the
// reconciler writes, atomically, 0600 and only when it changes, and that
// the instance reads again whenever it changed.
package material

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// Write stores v as JSON at path unless the file holds it already; it
// reports whether it wrote.
func Write(path string, v any) (bool, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return false, err
	}
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	// A temporary file of its own: two writers at once never mix their
	// bytes (the last rename wins whole).
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return false, err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return false, err
	}
	return true, nil
}

// File is a JSON file of T, read again when it changes.
type File[T any] struct {
	Path string

	mu    sync.Mutex
	stamp string // size, mtime and inode when read
	v     T
}

// Get returns the file's content, reading it again if it changed.
func (f *File[T]) Get() (T, error) {
	var zero T
	fi, err := os.Stat(f.Path)
	if err != nil {
		return zero, err
	}
	stamp := fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		stamp += fmt.Sprint(" ", st.Ino)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if stamp == f.stamp {
		return f.v, nil
	}
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return zero, err
	}
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return zero, fmt.Errorf("%s: %w", f.Path, err)
	}
	f.v, f.stamp = v, stamp
	return v, nil
}
