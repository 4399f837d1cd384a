// Package images builds skiff's system images from files on this machine
// (go-containerregistry) and pushes them into the built-in registry, so that
// nodes pull the pause image (and later CoreDNS, a toolbox …) without any
// outside network. Builds are reproducible: an unchanged image has the same
// digest, so seeding again at every start is a cheap no-op.
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one file of an image: its path inside and where to read it (or
// its content), a symbolic link, or a directory.
type File struct {
	Path   string // absolute path in the image
	Source string // file on this machine
	Data   []byte // the content, if Source is empty (generated files: /etc/passwd …)
	Mode   int64  // permission bits, with setuid/setgid/sticky (04755, 01777); 0: 0755
	Link   string // if set, Path is a symbolic link to Link
	Dir    bool   // if set, Path is a directory (with Mode); parents are made anyway
}

// Image is a single-layer image built from files.
type Image struct {
	Repo, Tag  string
	Files      []File
	Entrypoint []string
	Cmd        []string // the default arguments (or command, without an entrypoint)
	User       string
	StopSignal string // e.g. SIGQUIT; empty: the runtime's default (SIGTERM)
}

// Ref is the image's reference inside the registry (REPO:TAG).
func (i Image) Ref() string { return i.Repo + ":" + i.Tag }

// Build assembles the image: one layer with the files (fixed timestamps,
// so the digest depends on the content only) and a config.
func (i Image) Build() (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// Directories are written once, before what they hold, with the mode
	// a Dir entry gives them (0755 otherwise).
	dirMode := map[string]int64{}
	for _, f := range i.Files {
		if f.Dir {
			dirMode[strings.TrimPrefix(filepath.Clean(f.Path), "/")] = f.Mode
		}
	}
	dirs := map[string]bool{}
	writeDir := func(d string) error {
		dirs[d] = true
		mode := dirMode[d]
		if mode == 0 {
			mode = 0o755
		}
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode, ModTime: time.Unix(0, 0)})
	}
	for _, f := range i.Files {
		p := strings.TrimPrefix(filepath.Clean(f.Path), "/")
		var parents []string
		for d := filepath.Dir(p); d != "." && !dirs[d]; d = filepath.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if err := writeDir(d); err != nil {
				return nil, err
			}
		}
		if f.Dir {
			if p != "." && !dirs[p] {
				if err := writeDir(p); err != nil {
					return nil, err
				}
			}
			continue
		}
		if f.Link != "" {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: p, Linkname: f.Link, Mode: 0o777, ModTime: time.Unix(0, 0)}); err != nil {
				return nil, err
			}
			continue
		}
		data := f.Data
		if f.Source == "" && data == nil {
			return nil, fmt.Errorf("image %s: %s has neither a source nor data", i.Ref(), f.Path)
		}
		if f.Source != "" {
			var err error
			if data, err = os.ReadFile(f.Source); err != nil {
				return nil, fmt.Errorf("image %s: %w", i.Ref(), err)
			}
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(data)), ModTime: time.Unix(0, 0)}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	// zstd, not gzip: a node decompresses every layer it pulls, and
	// gunzip of kube-proxy's 75 MB took 1.2 s of CPU per node (zstd: a
	// tenth), while nodes start and contend for the cores. zstd layers need
	// an OCI manifest (containerd ≥ 1.5 pulls them).
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	}, tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd))
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", goruntime.GOARCH
	cfg.Config.Entrypoint = i.Entrypoint
	cfg.Config.Cmd = i.Cmd
	cfg.Config.User = i.User
	cfg.Config.StopSignal = i.StopSignal
	cfg.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	return mutate.ConfigFile(img, cfg)
}

// Push builds img and pushes it through the registry handler h in-process
// (no listener needed); a tag already holding the same digest is left alone.
func Push(ctx context.Context, h http.Handler, img Image) (v1.Hash, error) {
	built, err := img.Build()
	if err != nil {
		return v1.Hash{}, err
	}
	digest, err := built.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	ref, err := name.NewTag(localHost+"/"+img.Ref(), name.Insecure)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("image %s: %w", img.Ref(), err)
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(inProcess{h})}
	if desc, err := remote.Head(ref, opts...); err == nil && desc.Digest == digest {
		return digest, nil
	}
	if err := remote.Write(ref, built, opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", img.Ref(), err)
	}
	return digest, nil
}

// localHost names the registry for in-process requests.
const localHost = "registry.skiff.internal"

// inProcess is a RoundTripper that serves requests with a handler.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	if req.Body == nil {
		req.Body = http.NoBody
	}
	t.h.ServeHTTP(rec, req)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}
