// Package conformance builds, on this machine, the container images that
// upstream's conformance suite (e2e.test) runs, so that it can run against
// skiff clusters without any public registry. Each image stands in for one
// of upstream's test images (test/images/<name> of k8s.io/kubernetes, whose
// Dockerfiles define the behaviour matched here) and is built like skiff's
// system images (internal/images): one reproducible layer of files from this
// machine — the release's Go programs (agnhost, nnp, sample-apiserver,
// etcd), a busybox built by hack/busybox.sh, and programs of Debian
// packages (dig, curl, nc, nginx …) with the shared libraries they load.
//
// The recipe is chosen by the image's name (the last element of its
// repository path), whatever its registry or tag, so the image lists of
// several Kubernetes releases work alike; references without a recipe are
// reported, never guessed.
package conformance

import (
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"unicode"

	"skiff.dev/skiff/internal/images"
)

// Sources says where the programs for the test images are.
type Sources struct {
	// Dir holds agnhost, sample-apiserver and nnp: static Go binaries built
	// from the release's modules (hack/conformance-build.sh).
	Dir string
	// Kube is the release's multi-call "kube" binary; installed as
	// /usr/local/bin/etcd it is etcd (it dispatches on its file name).
	Kube string
	// Pause is the pause binary (_output/images/pause).
	Pause string
	// Busybox is a busybox that behaves like upstream's busybox image
	// (hack/busybox.sh builds it: Debian's drops environment variables
	// whose names are not shell identifiers).
	Busybox string
	// Module is the source of the k8s.io/kubernetes module the programs
	// were built from, for the test images' data files (test/images/kitten/html
	// …). Empty: found in the Go module cache from agnhost's build information.
	Module string
	// CoreDNS, if set, is a coredns binary installed as /coredns in agnhost
	// and glibc-dns-testing, as upstream's are (only DNS tests that start
	// their own server use it; none is [Conformance]).
	CoreDNS string
}

// Images returns, for each reference of upstream's image list (the lines of
// `e2e.test --list-images`, e.g. "registry.k8s.io/e2e-test-images/agnhost:2.66.1"),
// the image that stands in for it, ready to Build and push, with Repo the
// reference's path without its registry host and Tag its tag, in the order
// of refs (duplicates once).
// References it has no recipe for are returned in missing, each as
// "REF: reason". An error means a recipe's sources are missing or broken.
func Images(refs []string, src Sources) (imgs []images.Image, missing []string, err error) {
	b := &builder{src: src, parts: map[string][]images.File{}}
	seen := map[string]bool{}
	for _, ref := range refs {
		ref = strings.TrimSpace(ref)
		if ref == "" || seen[ref] {
			continue
		}
		seen[ref] = true
		repo, tag, err := parseRef(ref)
		if err != nil {
			missing = append(missing, ref+": "+err.Error())
			continue
		}
		name := path.Base(repo)
		r, ok := recipes[name]
		if !ok {
			missing = append(missing, fmt.Sprintf("%s: no recipe for %q (not built here)", ref, name))
			continue
		}
		img, err := r(b)
		if err != nil {
			return nil, nil, fmt.Errorf("test image %s: %w", ref, err)
		}
		img.Repo, img.Tag = repo, tag
		img.Files = merge(img.Files)
		imgs = append(imgs, img)
	}
	return imgs, missing, nil
}

// parseRef splits REGISTRY/PATH:TAG into PATH and TAG. The first element
// is a registry host if it has a '.' or a ':' (a port) or is localhost, as
// for docker; without a tag the tag is "latest". Digest references have no
// tag to push under.
func parseRef(ref string) (repo, tag string, err error) {
	if strings.Contains(ref, "@") {
		return "", "", fmt.Errorf("a digest reference (no tag to build)")
	}
	repo = ref
	if first, rest, ok := strings.Cut(ref, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		repo = rest
	}
	tag = "latest"
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo, tag = repo[:i], repo[i+1:]
	}
	if repo == "" || tag == "" || strings.HasPrefix(repo, "/") || strings.HasSuffix(repo, "/") {
		return "", "", fmt.Errorf("not an image reference")
	}
	return repo, tag, nil
}

// recipes builds the image that stands in for upstream's image of that
// name (test/images/<name>/Dockerfile and BASEIMAGE say what it holds).
var recipes = map[string]func(*builder) (images.Image, error){
	"agnhost":           agnhost,
	"kitten":            func(b *builder) (images.Image, error) { return agnhostWebserver(b, "kitten") },
	"nautilus":          func(b *builder) (images.Image, error) { return agnhostWebserver(b, "nautilus") },
	"busybox":           busyboxImage,
	"nonroot":           nonroot,
	"nonewprivs":        nonewprivs,
	"nginx":             nginx,
	"glibc-dns-testing": glibcDNSTesting,
	"pause":             pause,
	"etcd":              etcd,
	"sample-apiserver":  sampleAPIServer,
}

// agnhost: upstream's is alpine with bind-tools, curl, netcat-openbsd,
// iproute2, iperf, bash, socat and util-linux-misc; tests run shell
// commands in it (sh -c loops, dig, nslookup, nc, curl, wget, ss …).
func agnhost(b *builder) (images.Image, error) {
	files, err := b.agnhostFiles()
	if err != nil {
		return images.Image{}, err
	}
	return images.Image{Files: files, Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}}, nil
}

// agnhostWebserver: kitten and nautilus are agnhost with a picture and a
// data file in / (COPY html/NAME.jpg NAME.jpg, COPY html/data.json data.json)
// serving them with test-webserver.
func agnhostWebserver(b *builder, name string) (images.Image, error) {
	files, err := b.agnhostFiles()
	if err != nil {
		return images.Image{}, err
	}
	mod, err := b.module()
	if err != nil {
		return images.Image{}, err
	}
	html := filepath.Join(mod, "test", "images", name, "html")
	for _, f := range []string{name + ".jpg", "data.json"} {
		if err := need(filepath.Join(html, f), "the k8s.io/kubernetes module's test images"); err != nil {
			return images.Image{}, err
		}
		files = append(files, images.File{Path: "/" + f, Source: filepath.Join(html, f), Mode: 0o644})
	}
	return images.Image{Files: files, Entrypoint: []string{"/agnhost"}, Cmd: []string{"test-webserver"}}, nil
}

// busyboxImage: upstream's is docker-library's busybox (glibc variant):
// every applet in /bin, /usr/bin/env, buildroot's /etc/passwd and group.
func busyboxImage(b *builder) (images.Image, error) {
	if err := checkBusybox(b.src.Busybox); err != nil {
		return images.Image{}, err
	}
	box, _, err := images.BusyboxFiles(b.src.Busybox)
	if err != nil {
		return images.Image{}, err
	}
	files := []images.File{{Path: "/bin/busybox", Source: b.src.Busybox}}
	for _, f := range box {
		if f.Link != "" {
			files = append(files, images.File{Path: "/bin/" + path.Base(f.Path), Link: "busybox"})
		}
	}
	files = append(files, images.File{Path: "/usr/bin/env", Link: "../../bin/env"})
	files = append(files, baseDirs()...)
	files = append(files, etcFiles(buildrootPasswd, buildrootGroup)...)
	return images.Image{Files: files, Cmd: []string{"sh"}}, nil
}

// nonroot: a userland with USER 1234 (upstream's is debian-base).
func nonroot(b *builder) (images.Image, error) {
	files, err := b.userland()
	if err != nil {
		return images.Image{}, err
	}
	return images.Image{Files: files, User: "1234"}, nil
}

// nonewprivs: alpine with /usr/local/bin/nnp, setuid root.
func nonewprivs(b *builder) (images.Image, error) {
	files, err := b.userland()
	if err != nil {
		return images.Image{}, err
	}
	nnp := filepath.Join(b.src.Dir, "nnp")
	if err := need(nnp, "hack/conformance-build.sh"); err != nil {
		return images.Image{}, err
	}
	files = append(files, images.File{Path: "/usr/local/bin/nnp", Source: nnp, Mode: 0o4755})
	return images.Image{Files: files, Cmd: []string{"nnp"}}, nil
}

// pause: /pause as upstream's registry.k8s.io/pause.
func pause(b *builder) (images.Image, error) {
	if err := need(b.src.Pause, "make images"); err != nil {
		return images.Image{}, err
	}
	return images.Image{Files: []images.File{{Path: "/pause", Source: b.src.Pause}},
		Entrypoint: []string{"/pause"}, User: "65535:65535"}, nil
}

// etcd: the release's etcd at /usr/local/bin/etcd, where the aggregator
// test runs it; a userland besides (upstream's has none in recent tags).
func etcd(b *builder) (images.Image, error) {
	if err := need(b.src.Kube, "the release's bundle"); err != nil {
		return images.Image{}, err
	}
	files, err := b.userland()
	if err != nil {
		return images.Image{}, err
	}
	files = append(files, images.File{Path: "/usr/local/bin/etcd", Source: b.src.Kube})
	return images.Image{Files: files, Cmd: []string{"/usr/local/bin/etcd"}}, nil
}

// sample-apiserver: alpine with /sample-apiserver as the entrypoint.
func sampleAPIServer(b *builder) (images.Image, error) {
	bin := filepath.Join(b.src.Dir, "sample-apiserver")
	if err := need(bin, "hack/conformance-build.sh"); err != nil {
		return images.Image{}, err
	}
	files, err := b.userland()
	if err != nil {
		return images.Image{}, err
	}
	files = append(files, images.File{Path: "/sample-apiserver", Source: bin})
	return images.Image{Files: files, Entrypoint: []string{"/sample-apiserver"}}, nil
}

// builder makes the images of one Images call, sharing the parts several
// images have in common (the userland, agnhost's files).
type builder struct {
	src    Sources
	parts  map[string][]images.File
	mod    string
	modErr error
	modSet bool
}

// part returns the files key stands for, made once.
func (b *builder) part(key string, make func() ([]images.File, error)) ([]images.File, error) {
	if files, ok := b.parts[key]; ok {
		return append([]images.File(nil), files...), nil
	}
	files, err := make()
	if err != nil {
		return nil, err
	}
	b.parts[key] = files
	return append([]images.File(nil), files...), nil
}

// module is the k8s.io/kubernetes module's source directory.
func (b *builder) module() (string, error) {
	if !b.modSet {
		b.modSet = true
		b.mod, b.modErr = b.findModule()
	}
	return b.mod, b.modErr
}

func (b *builder) findModule() (string, error) {
	if b.src.Module != "" {
		return b.src.Module, nil
	}
	bin := filepath.Join(b.src.Dir, "agnhost")
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("k8s.io/kubernetes sources: %w (or set Sources.Module)", err)
	}
	dir, err := moduleDir(info, modCache)
	if err != nil {
		return "", fmt.Errorf("k8s.io/kubernetes sources, from %s's build information: %w", bin, err)
	}
	return dir, nil
}

// moduleDir is where the module cache (cache) holds the k8s.io/kubernetes
// module a program was built with (info).
func moduleDir(info *debug.BuildInfo, cache func() (string, error)) (string, error) {
	for _, m := range append([]*debug.Module{&info.Main}, info.Deps...) {
		if m.Path != "k8s.io/kubernetes" {
			continue
		}
		if m.Replace != nil {
			m = m.Replace
		}
		if filepath.IsAbs(m.Path) {
			return m.Path, nil // replaced by a directory
		}
		if m.Version == "" || m.Version == "(devel)" {
			break
		}
		root, err := cache()
		if err != nil {
			return "", err
		}
		dir := filepath.Join(root, escapeModule(m.Path)+"@"+escapeModule(m.Version))
		if _, err := os.Stat(dir); err != nil {
			return "", fmt.Errorf("%w (go mod download %s@%s)", err, m.Path, m.Version)
		}
		return dir, nil
	}
	return "", fmt.Errorf("no released k8s.io/kubernetes in it (set Sources.Module)")
}

// modCache is the Go module cache's directory.
func modCache() (string, error) {
	if dir := os.Getenv("GOMODCACHE"); dir != "" {
		return dir, nil
	}
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMODCACHE: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// escapeModule writes a module path or version as the module cache does
// (an upper-case letter as '!' and the letter in lower case).
func escapeModule(s string) string {
	var sb strings.Builder
	for _, r := range s {
		if unicode.IsUpper(r) {
			sb.WriteByte('!')
			r = unicode.ToLower(r)
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// need reports a missing source file, saying what makes it.
func need(file, madeBy string) error {
	if file == "" {
		return fmt.Errorf("no source given (%s makes it)", madeBy)
	}
	if _, err := os.Stat(file); err != nil {
		return fmt.Errorf("%w (%s makes it)", err, madeBy)
	}
	return nil
}

// merge returns files with one entry per path, the last given winning
// (a Debian program replaces busybox's applet link of the same name, as
// apk add does), sorted by path so that the layer does not depend on the
// order the parts were put together in.
func merge(files []images.File) []images.File {
	byPath := map[string]images.File{}
	for _, f := range files {
		f.Path = path.Clean("/" + f.Path)
		byPath[f.Path] = f
	}
	out := make([]images.File, 0, len(byPath))
	for _, f := range byPath {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}
