package images

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

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
	pause := Image{Repo: "pause", Tag: "3.10", Files: []File{{Path: "/pause", Source: src}, {Path: "/bin/pause", Link: "/pause"}},
		Entrypoint: []string{"/pause"}}
	first, err := Push(ctx, reg, pause)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Push(ctx, reg, pause)
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
	// An OCI image with a zstd layer (nodes decompress it fast), whose
	// files read back.
	manifest, err := img.Manifest()
	if err != nil || manifest.MediaType != types.OCIManifestSchema1 || len(manifest.Layers) != 1 || manifest.Layers[0].MediaType != types.OCILayerZStd {
		t.Fatalf("manifest %+v (%v): want an OCI manifest with one zstd layer", manifest, err)
	}
	tr := tar.NewReader(mutate.Extract(img))
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	if !slices.Contains(names, "pause") || !slices.Contains(names, "bin/pause") {
		t.Fatalf("layer holds %v, want pause and bin/pause", names)
	}
	// Pushes through the read-only handler are denied.
	if err := crane.Tag(host+"/"+PauseImage, "other", crane.Insecure); err == nil {
		t.Fatal("tagging through the read-only handler worked")
	}

	// A missing source is a clear error.
	if _, err := System(Sources{Dir: t.TempDir()}); err == nil {
		t.Fatal("System without sources: no error")
	}
}

// The toolbox and kube-proxy images carry what they run: busybox with its
// applets as links, iptables with its libraries and extensions.
func TestHostFileImages(t *testing.T) {
	box, version, err := BusyboxFiles(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if version == "" || !hasFile(box, "/bin/sh", "/bin/busybox") || !hasFile(box, "/usr/bin/wget", "/bin/busybox") || !hasFile(box, "/bin/busybox", "") {
		t.Fatalf("toolbox %s: %d files, no sh/wget links to busybox", version, len(box))
	}
	ipt, err := iptables()
	if err != nil {
		t.Fatal(err)
	}
	var libc, libm, ext bool
	for _, f := range ipt {
		libc = libc || filepath.Base(f.Path) == "libc.so.6"
		libm = libm || filepath.Base(f.Path) == "libm.so.6" // libxt_statistic's, which kube-proxy's rules use
		ext = ext || filepath.Base(f.Path) == "libxt_statistic.so"
	}
	if !libc || !libm || !ext || !hasFile(ipt, "/usr/sbin/iptables-restore", "xtables-nft-multi") {
		t.Fatalf("iptables files lack libc (%v), libm (%v), extensions (%v) or iptables-restore: %+v", libc, libm, ext, ipt)
	}
}

func hasFile(files []File, path, link string) bool {
	for _, f := range files {
		if f.Path == path && f.Link == link {
			return true
		}
	}
	return false
}

// Generated files, directories with their modes (sticky /tmp, setuid
// programs) and the stop signal land in the image as given.
func TestBuildDataDirsModes(t *testing.T) {
	src := filepath.Join(t.TempDir(), "nnp")
	if err := os.WriteFile(src, []byte("nnp"), 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := Image{Repo: "x", Tag: "1", StopSignal: "SIGQUIT", Files: []File{
		{Path: "/tmp/a/b", Data: []byte("hi"), Mode: 0o644},
		{Path: "/tmp", Dir: true, Mode: 0o1777},
		{Path: "/usr/local/bin/nnp", Source: src, Mode: 0o4755},
		{Path: "/uploads", Dir: true},
	}}.Build()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil || cfg.Config.StopSignal != "SIGQUIT" {
		t.Fatalf("stop signal %q (%v)", cfg.Config.StopSignal, err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d (%v)", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, seen := got[h.Name]; seen {
			t.Errorf("%s twice in the layer", h.Name)
		}
		data, _ := io.ReadAll(tr)
		got[h.Name] = fmt.Sprintf("%c %o %s", h.Typeflag, h.Mode, data)
	}
	want := map[string]string{
		"tmp/":              "5 1777 ",
		"tmp/a/":            "5 755 ",
		"tmp/a/b":           "0 644 hi",
		"usr/":              "5 755 ",
		"usr/local/":        "5 755 ",
		"usr/local/bin/":    "5 755 ",
		"usr/local/bin/nnp": "0 4755 nnp",
		"uploads/":          "5 755 ",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("layer:\n%q\nwant\n%q", got, want)
	}
	if _, err := (Image{Repo: "x", Tag: "1", Files: []File{{Path: "/empty"}}}).Build(); err == nil {
		t.Fatal("a file without source or data built")
	}
}
