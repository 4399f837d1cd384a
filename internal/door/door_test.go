package door

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"skiff.dev/skiff/internal/material"
	"skiff.dev/skiff/internal/registry"
)

// TestHandler: the door serves the storage skiff's registry writes, the
// system images to anyone and the account's to its nodes only, as the
// material file says at each request; it never writes.
func TestHandler(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	main, err := registry.New(ctx, dir, io.Discard) // skiff serve's
	if err != nil {
		t.Fatal(err)
	}
	defer main.Close()
	up := httptest.NewServer(main)
	defer up.Close()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	push := func(repo string) {
		ref, err := name.ParseReference(strings.TrimPrefix(up.URL, "http://")+"/"+repo, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	const acct, other = "111111111111", "222222222222"
	push("pause:3.10")
	push(acct + "/web:v1")
	push(other + "/db:v1")

	reg, err := registry.OpenShared(ctx, dir, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	path := filepath.Join(t.TempDir(), "material.json")
	key := []byte("0123456789abcdef0123456789abcdef")
	if err := WriteMaterial(path, Material{Account: acct, Key: key, Nodes: []string{"i-1", "i-2"}}); err != nil {
		t.Fatal(err)
	}
	door := httptest.NewServer(handler(reg, &material.File[Material]{Path: path}))
	defer door.Close()
	get := func(method, p, node string) int {
		req, _ := http.NewRequest(method, door.URL+p, nil)
		if node != "" {
			req.Header.Set(registry.PullHeader, registry.PullToken(key, acct, node))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	tests := []struct {
		name, method, path, node string
		want                     int
	}{
		{"base", "GET", "/v2/", "", 200},
		{"a system image, anonymous", "GET", "/v2/pause/manifests/3.10", "", 200},
		{"the account's image, anonymous", "GET", "/v2/" + acct + "/web/manifests/v1", "", 401},
		{"the account's image, its node", "GET", "/v2/" + acct + "/web/manifests/v1", "i-1", 200},
		{"the account's image, an unknown node", "GET", "/v2/" + acct + "/web/manifests/v1", "i-9", 401},
		{"another account's image, a node", "GET", "/v2/" + other + "/db/manifests/v1", "i-1", 404},
		{"a push", "POST", "/v2/" + acct + "/web/blobs/uploads/", "i-1", 403},
		{"a delete", "DELETE", "/v2/" + acct + "/web/manifests/v1", "i-1", 403},
	}
	for _, tt := range tests {
		if got := get(tt.method, tt.path, tt.node); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
	// A node leaves: the file changes, and the door follows.
	if err := WriteMaterial(path, Material{Account: acct, Key: key, Nodes: []string{"i-2"}}); err != nil {
		t.Fatal(err)
	}
	if got := get("GET", "/v2/"+acct+"/web/manifests/v1", "i-1"); got != 401 {
		t.Errorf("a node removed from the material: %d, want 401", got)
	}
	if got := get("GET", "/v2/"+acct+"/web/manifests/v1", "i-2"); got != 200 {
		t.Errorf("a node still in the material: %d, want 200", got)
	}
}
