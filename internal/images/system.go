package images

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// References of the system images in the registry. Nodes reach them under
// the upstream names too (registry.k8s.io/…, docker.io/library/busybox)
// through containerd's mirrors, so stock manifests work unchanged.
const (
	PauseImage   = "pause:3.10"
	ToolboxRepo  = "library/busybox" // docker.io/library/busybox = "busybox"
	WebImage     = "skiff/web:1.0"   // docker.io/skiff/web:1.0
	CoreDNSRepo  = "coredns/coredns" // registry.k8s.io/coredns/coredns
	KubeProxyRep = "kube-proxy"      // registry.k8s.io/kube-proxy
)

// Sources says where the system images' files are.
type Sources struct {
	// Dir holds what `make images` builds: pause, coredns, web.
	Dir string
	// KubeProxy maps a Kubernetes version ("v1.37.2") to its kube-proxy binary.
	KubeProxy map[string]string
}

// CoreDNSVersion is the CoreDNS version of the binary in dir (read from
// its Go build information, so the image tag never drifts from the module).
func CoreDNSVersion(dir string) (string, error) {
	info, err := buildinfo.ReadFile(filepath.Join(dir, "coredns"))
	if err != nil {
		return "", fmt.Errorf("read coredns build info: %w (run `make images`)", err)
	}
	for _, d := range info.Deps {
		if d.Path == "github.com/coredns/coredns" {
			return d.Version, nil
		}
	}
	return "", fmt.Errorf("coredns binary in %s does not say its CoreDNS version", dir)
}

// System lists skiff's system images from src.
func System(src Sources) ([]Image, error) {
	for _, f := range []string{"pause", "coredns", "web"} {
		if _, err := os.Stat(filepath.Join(src.Dir, f)); err != nil {
			return nil, fmt.Errorf("system image sources: %w (run `make images`, or pass --images)", err)
		}
	}
	repo, tag, _ := strings.Cut(PauseImage, ":")
	out := []Image{{Repo: repo, Tag: tag, Files: []File{{Path: "/pause", Source: filepath.Join(src.Dir, "pause")}},
		Entrypoint: []string{"/pause"}, User: "65535:65535"}}
	dnsVersion, err := CoreDNSVersion(src.Dir)
	if err != nil {
		return nil, err
	}
	out = append(out, Image{Repo: CoreDNSRepo, Tag: dnsVersion, Files: []File{{Path: "/coredns", Source: filepath.Join(src.Dir, "coredns")}},
		Entrypoint: []string{"/coredns"}})
	repo, tag, _ = strings.Cut(WebImage, ":")
	out = append(out, Image{Repo: repo, Tag: tag, Files: []File{{Path: "/web", Source: filepath.Join(src.Dir, "web")}},
		Entrypoint: []string{"/web"}, User: "65534:65534"})
	box, version, err := BusyboxFiles(busybox)
	if err != nil {
		return nil, fmt.Errorf("toolbox image: %w (install busybox-static: make deps)", err)
	}
	for _, t := range []string{version, "latest"} {
		out = append(out, Image{Repo: ToolboxRepo, Tag: t, Files: box, Cmd: []string{"sh"}})
	}
	ipt, err := iptables()
	if err != nil {
		return nil, err
	}
	versions := make([]string, 0, len(src.KubeProxy))
	for v := range src.KubeProxy {
		versions = append(versions, v)
	}
	sort.Strings(versions)
	for _, v := range versions {
		files := append([]File{{Path: "/usr/local/bin/kube-proxy", Source: src.KubeProxy[v]}}, ipt...)
		out = append(out, Image{Repo: KubeProxyRep, Tag: v, Files: files, Entrypoint: []string{"/usr/local/bin/kube-proxy"}})
	}
	return out, nil
}

// busybox is Debian's busybox-static.
const busybox = "/bin/busybox"

// BusyboxFiles is the files of a busybox userland from the (static)
// busybox binary bin: /bin/busybox and a link to it per applet, where the
// applet installs itself (`busybox --list-full`: /bin/sh, /usr/bin/wget …);
// version is busybox's. The toolbox image is Debian's busybox-static so.
func BusyboxFiles(bin string) (files []File, version string, err error) {
	out, err := exec.Command(bin, "--list-full").Output()
	if err != nil {
		return nil, "", fmt.Errorf("%s --list-full: %w", bin, err)
	}
	head, _ := exec.Command(bin).Output()
	m := regexp.MustCompile(`BusyBox v([0-9.]+)`).FindSubmatch(head)
	if m == nil {
		return nil, "", fmt.Errorf("cannot tell %s's busybox version", bin)
	}
	files = []File{{Path: "/bin/busybox", Source: bin}}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		p := "/" + strings.TrimSpace(sc.Text())
		if p == "/" || p == "/bin/busybox" {
			continue
		}
		files = append(files, File{Path: p, Link: "/bin/busybox"})
	}
	return files, string(m[1]), nil
}

// iptables is Debian's iptables (nft back end) with its libraries and
// extensions, which kube-proxy runs.
func iptables() ([]File, error) {
	const multi = "/usr/sbin/xtables-nft-multi"
	libs, err := SharedLibs(multi)
	if err != nil {
		return nil, fmt.Errorf("kube-proxy image: %w (install iptables: make deps)", err)
	}
	files := []File{{Path: multi, Source: multi}}
	exts, _ := filepath.Glob("/usr/lib/*/xtables/*.so")
	for _, e := range exts {
		files = append(files, File{Path: e, Source: e, Mode: 0o644})
		// Extensions load libraries of their own (statistic: libm).
		more, err := SharedLibs(e)
		if err != nil {
			return nil, fmt.Errorf("kube-proxy image: %w", err)
		}
		libs = append(libs, more...)
	}
	slices.Sort(libs)
	for _, l := range slices.Compact(libs) {
		files = append(files, File{Path: l, Source: l})
	}
	for _, t := range []string{"iptables", "ip6tables"} {
		for _, suffix := range []string{"", "-save", "-restore"} {
			files = append(files, File{Path: "/usr/sbin/" + t + suffix, Link: "xtables-nft-multi"},
				File{Path: "/usr/sbin/" + t + "-nft" + suffix, Link: "xtables-nft-multi"})
		}
	}
	return files, nil
}

// SharedLibs lists the shared libraries bin loads (ldd), with the loader,
// at the paths ldd resolves them to. Answers are kept for the process's
// life (ldd is slow, and the system and node images ask alike).
func SharedLibs(bin string) ([]string, error) {
	if libs, ok := lddCache.Load(bin); ok {
		return slices.Clone(libs.([]string)), nil
	}
	libs, err := sharedLibs(bin)
	if err == nil {
		lddCache.Store(bin, libs)
	}
	return slices.Clone(libs), err
}

var lddCache sync.Map // binary path → []string

func sharedLibs(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil && strings.Contains(string(out), "not a dynamic executable") {
		return nil, nil // static
	}
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w: %s", bin, err, out)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0]) // the loader, at the path the binary names
		}
	}
	return libs, nil
}

// Seed pushes every system image of src into the registry h. A record of
// what was pushed (cache: a file) skips building images whose sources did
// not change and whose tag still holds the recorded digest.
func Seed(ctx context.Context, h http.Handler, src Sources, cache string) error {
	imgs, err := System(src)
	if err != nil {
		return err
	}
	seen := map[string]string{}
	if data, err := os.ReadFile(cache); err == nil {
		json.Unmarshal(data, &seen)
	}
	next := map[string]string{}
	for _, img := range imgs {
		key, err := img.sourceKey()
		if err != nil {
			return err
		}
		if d, ok := seen[img.Ref()+" "+key]; ok && tagged(ctx, h, img.Ref(), d) {
			next[img.Ref()+" "+key] = d
			continue
		}
		digest, err := Push(ctx, h, img)
		if err != nil {
			return err
		}
		next[img.Ref()+" "+key] = digest.String()
	}
	data, _ := json.Marshal(next)
	return os.WriteFile(cache, data, 0o600)
}

// buildFormat names how Build lays an image out; a change rebuilds every
// seeded image once.
const buildFormat = "oci zstd"

// sourceKey identifies an image's content by its spec and its files'
// sizes and modification times.
func (i Image) sourceKey() (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, buildFormat)
	fmt.Fprintln(h, i.Entrypoint, i.Cmd, i.User)
	if i.StopSignal != "" { // only then: keys recorded before it existed stay valid
		fmt.Fprintln(h, "stop", i.StopSignal)
	}
	for _, f := range i.Files {
		fmt.Fprintln(h, f.Path, f.Link, f.Mode)
		if f.Link != "" {
			continue
		}
		if f.Dir {
			fmt.Fprintln(h, "dir")
			continue
		}
		if f.Source == "" {
			fmt.Fprintf(h, "%x\n", sha256.Sum256(f.Data))
			continue
		}
		st, err := os.Stat(f.Source)
		if err != nil {
			return "", fmt.Errorf("image %s: %w", i.Ref(), err)
		}
		fmt.Fprintln(h, f.Source, st.Size(), st.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// tagged reports whether ref's tag in h holds digest.
func tagged(ctx context.Context, h http.Handler, ref, digest string) bool {
	tag, err := name.NewTag(localHost+"/"+ref, name.Insecure)
	if err != nil {
		return false
	}
	desc, err := remote.Head(tag, remote.WithContext(ctx), remote.WithTransport(inProcess{h}))
	return err == nil && desc.Digest.String() == digest
}
