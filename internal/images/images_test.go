package images

import (
	"context"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"

	"skiff.dev/skiff/internal/registry"
)

func TestSeedIsReproducibleAndPullable(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "pause")
	if err := os.WriteFile(src, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(ctx, filepath.Join(dir, "registry"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	imgs, err := System(dir)
	if err != nil {
		t.Fatal(err)
	}
	first, err := Push(ctx, reg, imgs[0])
	if err != nil {
		t.Fatal(err)
	}
	again, err := Push(ctx, reg, imgs[0])
	if err != nil || again != first {
		t.Fatalf("second push: %v, digest %s, want %s", err, again, first)
	}

	// A client pulls it over HTTP through the read-only handler.
	srv := httptest.NewServer(reg.ReadOnly())
	defer srv.Close()
	host := srv.Listener.Addr().String()
	digest, err := crane.Digest(host+"/"+PauseImage, crane.Insecure)
	if err != nil || digest != first.String() {
		t.Fatalf("pull digest %q (%v), want %s", digest, err, first)
	}
	img, err := crane.Pull(host+"/"+PauseImage, crane.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil || len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/pause" {
		t.Fatalf("config %+v (%v)", cfg, err)
	}
	// Pushes through the read-only handler are denied.
	if err := crane.Tag(host+"/"+PauseImage, "other", crane.Insecure); err == nil {
		t.Fatal("tagging through the read-only handler worked")
	}

	// A missing source is a clear error.
	if _, err := System(t.TempDir()); err == nil {
		t.Fatal("System without sources: no error")
	}
}
