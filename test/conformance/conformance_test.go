package conformance

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"

	"skiff.dev/skiff/internal/images"
)

// realBusybox is hack/busybox.sh's busybox, built (or found up to date)
// by the script, as `make conformance-busybox` does.
func realBusybox(t *testing.T) string {
	t.Helper()
	busyboxOnce.Do(func() {
		root, err := filepath.Abs("../..")
		if err != nil {
			busyboxErr = err
			return
		}
		out, err := exec.Command("bash", filepath.Join(root, "hack", "busybox.sh"), filepath.Join(root, "_output", "conformance")).CombinedOutput()
		if err != nil {
			busyboxErr = &scriptError{err, string(out)}
			return
		}
		busyboxPath = filepath.Join(root, "_output", "conformance", "busybox")
	})
	if busyboxErr != nil {
		t.Fatalf("hack/busybox.sh: %v", busyboxErr)
	}
	return busyboxPath
}

var (
	busyboxOnce sync.Once
	busyboxPath string
	busyboxErr  error
)

type scriptError struct {
	err error
	out string
}

func (e *scriptError) Error() string { return e.err.Error() + ": " + e.out }

// fakeSources are small stand-ins for the release's programs and module
// (their content is checked, not run), with the real busybox.
func fakeSources(t *testing.T) Sources {
	t.Helper()
	dir := t.TempDir()
	write := func(p, content string) string {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, p := range []string{"agnhost", "nnp", "sample-apiserver"} {
		write(filepath.Join("bin", p), "fake "+p)
	}
	for _, name := range []string{"kitten", "nautilus"} {
		write(filepath.Join("k8s", "test", "images", name, "html", name+".jpg"), "jpeg of "+name)
		write(filepath.Join("k8s", "test", "images", name, "html", "data.json"), `{"image": "`+name+`"}`)
	}
	write("k8s/test/images/agnhost/porter/localhost.crt", "crt")
	write("k8s/test/images/agnhost/porter/localhost.key", "key")
	return Sources{
		Dir:     filepath.Join(dir, "bin"),
		Kube:    write("kube", "fake kube"),
		Pause:   write("pause", "fake pause"),
		Busybox: realBusybox(t),
		Module:  filepath.Join(dir, "k8s"),
		CoreDNS: write("coredns", "fake coredns"),
	}
}

// The recipe follows the image's name whatever the registry, account
// prefix or tag (Kubernetes 1.36's and 1.37's lists alike); repositories
// lose their registry host only; what has no recipe is reported.
func TestImagesRecipesAndNames(t *testing.T) {
	src := fakeSources(t)
	cases := []struct {
		ref, repo, tag string
		entrypoint     string // the recipe, by what it makes
		cmd            string
		key            string // a file only that recipe puts in
		missing        bool
	}{
		{ref: "registry.k8s.io/e2e-test-images/agnhost:2.66.1", repo: "e2e-test-images/agnhost", tag: "2.66.1", entrypoint: "/agnhost", cmd: "pause", key: "/agnhost-2"},
		{ref: "registry.k8s.io/e2e-test-images/agnhost:2.55", repo: "e2e-test-images/agnhost", tag: "2.55", entrypoint: "/agnhost", cmd: "pause", key: "/agnhost-2"},
		{ref: "registry.k8s.io/e2e-test-images/agnhost:2.63.0", repo: "e2e-test-images/agnhost", tag: "2.63.0", entrypoint: "/agnhost", cmd: "pause", key: "/agnhost-2"},
		{ref: "localhost:4566/123456789012/e2e-test-images/agnhost:2.66.1", repo: "123456789012/e2e-test-images/agnhost", tag: "2.66.1", entrypoint: "/agnhost", cmd: "pause", key: "/uploads"},
		{ref: "gcr.io/k8s-authenticated-test/agnhost:2.6", repo: "k8s-authenticated-test/agnhost", tag: "2.6", entrypoint: "/agnhost", cmd: "pause", key: "/agnhost-2"},
		{ref: "registry.k8s.io/e2e-test-images/kitten:1.8", repo: "e2e-test-images/kitten", tag: "1.8", entrypoint: "/agnhost", cmd: "test-webserver", key: "/kitten.jpg"},
		{ref: "registry.k8s.io/e2e-test-images/nautilus:1.8", repo: "e2e-test-images/nautilus", tag: "1.8", entrypoint: "/agnhost", cmd: "test-webserver", key: "/nautilus.jpg"},
		{ref: "registry.k8s.io/e2e-test-images/busybox:1.37.0-2", repo: "e2e-test-images/busybox", tag: "1.37.0-2", cmd: "sh", key: "/bin/wget"},
		{ref: "registry.k8s.io/e2e-test-images/busybox:1.37.0-1", repo: "e2e-test-images/busybox", tag: "1.37.0-1", cmd: "sh", key: "/bin/wget"},
		{ref: "registry.k8s.io/e2e-test-images/nonroot:1.5", repo: "e2e-test-images/nonroot", tag: "1.5", key: "/usr/bin/wget"},
		{ref: "registry.k8s.io/e2e-test-images/nonewprivs:1.4", repo: "e2e-test-images/nonewprivs", tag: "1.4", cmd: "nnp", key: "/usr/local/bin/nnp"},
		{ref: "registry.k8s.io/e2e-test-images/nginx:1.27.0-2", repo: "e2e-test-images/nginx", tag: "1.27.0-2", cmd: "nginx", key: "/etc/nginx/nginx.conf"},
		{ref: "registry.k8s.io/e2e-test-images/nginx:1.28.0-2", repo: "e2e-test-images/nginx", tag: "1.28.0-2", cmd: "nginx", key: "/etc/nginx/nginx.conf"},
		{ref: "registry.k8s.io/e2e-test-images/nginx:1.15-4", repo: "e2e-test-images/nginx", tag: "1.15-4", cmd: "nginx", key: "/etc/nginx/nginx.conf"},
		{ref: "registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1", repo: "e2e-test-images/glibc-dns-testing", tag: "2.1.1", cmd: "bash", key: "/usr/bin/getent"},
		{ref: "registry.k8s.io/e2e-test-images/glibc-dns-testing:2.0.0", repo: "e2e-test-images/glibc-dns-testing", tag: "2.0.0", cmd: "bash", key: "/usr/bin/getent"},
		{ref: "registry.k8s.io/pause:3.10.2", repo: "pause", tag: "3.10.2", entrypoint: "/pause", key: "/pause"},
		{ref: "registry.k8s.io/etcd:3.7.0-0", repo: "etcd", tag: "3.7.0-0", cmd: "/usr/local/bin/etcd", key: "/usr/local/bin/etcd"},
		{ref: "registry.k8s.io/etcd:3.6.8-0", repo: "etcd", tag: "3.6.8-0", cmd: "/usr/local/bin/etcd", key: "/usr/local/bin/etcd"},
		{ref: "10.0.0.1:8080/123456789012/etcd:3.7.0-0", repo: "123456789012/etcd", tag: "3.7.0-0", cmd: "/usr/local/bin/etcd", key: "/usr/local/bin/etcd"},
		{ref: "registry.k8s.io/e2e-test-images/sample-apiserver:1.29.2", repo: "e2e-test-images/sample-apiserver", tag: "1.29.2", entrypoint: "/sample-apiserver", key: "/sample-apiserver"},
		{ref: "busybox", repo: "busybox", tag: "latest", cmd: "sh", key: "/bin/wget"},
		{ref: "registry.k8s.io/e2e-test-images/node-perf/npb-ep:1.6.0", missing: true},
		{ref: "registry.k8s.io/e2e-test-images/volume/nfs:1.6.0", missing: true},
		{ref: "registry.k8s.io/e2e-test-images/ipc-utils:1.4", missing: true},
		{ref: "registry.k8s.io/e2e-test-images/resource-consumer:1.14", missing: true},
		{ref: "registry.k8s.io/build-image/distroless-iptables:v0.9.9", missing: true},
		{ref: "registry.k8s.io/sig-storage/nfs-provisioner:v4.0.8", missing: true},
		{ref: "invalid.registry.k8s.io/invalid/alpine:3.1", missing: true},
		{ref: "registry.k8s.io/pause@sha256:0000000000000000000000000000000000000000000000000000000000000000", missing: true},
	}
	// One list, as e2e.test prints it: images in its order, the others
	// in missing.
	var refs []string
	for _, tc := range cases {
		refs = append(refs, tc.ref)
	}
	imgs, missing, err := Images(refs, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.ref, func(t *testing.T) {
			if tc.missing {
				if len(missing) == 0 || !strings.HasPrefix(missing[0], tc.ref+": ") {
					t.Fatalf("missing %q: want %s first, with a reason", missing, tc.ref)
				}
				missing = missing[1:]
				return
			}
			if len(imgs) == 0 {
				t.Fatal("no image")
			}
			img := imgs[0]
			imgs = imgs[1:]
			if img.Repo != tc.repo || img.Tag != tc.tag {
				t.Errorf("repo:tag %s, want %s:%s", img.Ref(), tc.repo, tc.tag)
			}
			if got := strings.Join(img.Entrypoint, " "); got != tc.entrypoint {
				t.Errorf("entrypoint %q, want %q", got, tc.entrypoint)
			}
			if got := first(img.Cmd); got != tc.cmd {
				t.Errorf("cmd %q, want %q first", img.Cmd, tc.cmd)
			}
			if file(img, tc.key) == nil {
				t.Errorf("no %s", tc.key)
			}
		})
	}
	if len(imgs) != 0 || len(missing) != 0 {
		t.Fatalf("left over: %d images, missing %q", len(imgs), missing)
	}

	// A list: order kept, duplicates once, the missing ones apart.
	imgs, missing, err = Images([]string{"registry.k8s.io/pause:3.10.2", "registry.k8s.io/e2e-test-images/windows-servercore-cache:1.0-linux-amd64-ltsc2022",
		"registry.k8s.io/e2e-test-images/busybox:1.37.0-2", "registry.k8s.io/pause:3.10.2", ""}, src)
	if err != nil || len(imgs) != 2 || imgs[0].Repo != "pause" || imgs[1].Repo != "e2e-test-images/busybox" || len(missing) != 1 {
		t.Fatalf("images %v, missing %q, %v", imgs, missing, err)
	}
	// Missing sources are errors, saying what makes them.
	if _, _, err := Images([]string{"registry.k8s.io/e2e-test-images/agnhost:2.66.1"}, Sources{Dir: t.TempDir(), Busybox: src.Busybox}); err == nil || !strings.Contains(err.Error(), "conformance-build") {
		t.Fatalf("agnhost without its binary: %v", err)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func file(img images.Image, p string) *images.File {
	for i := range img.Files {
		if img.Files[i].Path == p {
			return &img.Files[i]
		}
	}
	return nil
}

// entry is one file of a built image's layer.
type entry struct {
	typ  byte
	mode int64
	link string
	data []byte
}

// layer builds img and reads its layer back.
func layer(t *testing.T, img images.Image) map[string]entry {
	t.Helper()
	built, err := img.Build()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := built.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%s: %d layers, %v", img.Ref(), len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]entry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		name := "/" + strings.TrimSuffix(h.Name, "/")
		if _, dup := out[name]; dup {
			t.Errorf("%s: %s twice in the layer", img.Ref(), name)
		}
		data, _ := io.ReadAll(tr)
		out[name] = entry{typ: h.Typeflag, mode: h.Mode, link: h.Linkname, data: data}
	}
}

var allRefs = []string{
	"registry.k8s.io/e2e-test-images/agnhost:2.66.1",
	"registry.k8s.io/e2e-test-images/kitten:1.8",
	"registry.k8s.io/e2e-test-images/busybox:1.37.0-2",
	"registry.k8s.io/e2e-test-images/nonroot:1.5",
	"registry.k8s.io/e2e-test-images/nonewprivs:1.4",
	"registry.k8s.io/e2e-test-images/nginx:1.27.0-2",
	"registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1",
	"registry.k8s.io/pause:3.10.2",
	"registry.k8s.io/etcd:3.7.0-0",
	"registry.k8s.io/e2e-test-images/sample-apiserver:1.29.2",
}

// The built images hold what upstream's Dockerfiles put in them.
func TestImageContents(t *testing.T) {
	src := fakeSources(t)
	imgs, missing, err := Images(allRefs, src)
	if err != nil || len(missing) != 0 || len(imgs) != len(allRefs) {
		t.Fatalf("%d images, missing %q, %v", len(imgs), missing, err)
	}
	loader := "/lib64/ld-linux-x86-64.so.2"
	if runtime.GOARCH != "amd64" {
		loader = ""
	}
	reg := func(content string) entry { return entry{typ: tar.TypeReg, data: []byte(content)} }
	link := func(to string) entry { return entry{typ: tar.TypeSymlink, link: to} }
	dir := func(mode int64) entry { return entry{typ: tar.TypeDir, mode: mode} }
	file := entry{typ: tar.TypeReg} // any content
	layers := map[string]map[string]entry{}
	for i, want := range []map[string]entry{
		{ // agnhost
			"/agnhost": reg("fake agnhost"), "/agnhost-2": link("agnhost"), "/bin/sh": link("/bin/busybox"),
			"/usr/bin/wget": link("/bin/busybox"), "/usr/bin/dig": file, "/usr/bin/nslookup": file, "/usr/bin/curl": file,
			"/usr/bin/nc": file, "/usr/bin/getent": file, "/sbin/ss": file, "/sbin/ip": file, "/bin/bash": file, "/usr/bin/socat": file,
			"/uploads": dir(0o755), "/tmp": dir(0o1777), "/localhost.crt": reg("crt"), "/localhost.key": reg("key"),
			"/coredns": reg("fake coredns"), "/lib/x86_64-linux-gnu/libc.so.6": file, loader: file,
		},
		// ImageVolume [Conformance] reads data.json and etc/os-release ("Alpine Linux") through an image volume of kitten.
		{"/kitten.jpg": reg("jpeg of kitten"), "/data.json": reg(`{"image": "kitten"}`), "/agnhost": reg("fake agnhost"), "/usr/bin/dig": file,
			"/etc/os-release": reg(agnhostOSRelease)},
		{"/bin/busybox": file, "/bin/sh": link("busybox"), "/bin/env": link("busybox"), "/bin/wget": link("busybox"),
			"/usr/bin/env": link("../../bin/env"), "/tmp": dir(0o1777), "/etc/passwd": file},
		{"/bin/sh": link("/bin/busybox"), "/tmp": dir(0o1777)},
		{"/usr/local/bin/nnp": {typ: tar.TypeReg, mode: 0o4755, data: []byte("fake nnp")}, "/bin/sh": link("/bin/busybox")},
		{"/usr/sbin/nginx": file, "/etc/nginx/nginx.conf": file, "/etc/nginx/conf.d/default.conf": file, "/etc/nginx/mime.types": file,
			"/usr/share/nginx/html/index.html": file, "/var/log/nginx/access.log": link("/dev/stdout"),
			"/var/log/nginx/error.log": link("/dev/stderr"), "/bin/sh": link("/bin/busybox"), loader: file},
		{"/bin/sh": link("dash"), "/bin/dash": file, "/bin/bash": file, "/usr/bin/dig": file, "/usr/bin/getent": file,
			"/usr/bin/seq": file, "/bin/sleep": file, "/bin/echo": file, "/usr/bin/test": file, "/bin/grep": file,
			"/etc/nsswitch.conf": file, "/etc/passwd": file, "/tmp": dir(0o1777), "/coredns": reg("fake coredns"), loader: file},
		{"/pause": reg("fake pause")},
		{"/usr/local/bin/etcd": reg("fake kube"), "/bin/sh": link("/bin/busybox")},
		{"/sample-apiserver": reg("fake sample-apiserver"), "/bin/sh": link("/bin/busybox")},
	} {
		img := imgs[i]
		got := layer(t, img)
		layers[img.Repo] = got
		for p, w := range want {
			if p == "" {
				continue
			}
			g, ok := got[p]
			switch {
			case !ok:
				t.Errorf("%s: no %s", img.Ref(), p)
			case g.typ != w.typ || g.link != w.link || (w.mode != 0 && g.mode != w.mode) || (w.data != nil && !bytes.Equal(g.data, w.data)):
				t.Errorf("%s: %s is %c %o %q %.40q, want %c %o %q %.40q", img.Ref(), p, g.typ, g.mode, g.link, g.data, w.typ, w.mode, w.link, w.data)
			}
		}
	}

	byName := map[string]images.Image{}
	for _, img := range imgs {
		byName[img.Repo] = img
	}
	agn := layers["e2e-test-images/agnhost"]
	for _, line := range []string{"user-defined-in-image:x:1000:1000:", "root:x:0:0:"} {
		if !bytes.Contains(agn["/etc/passwd"].data, []byte("\n"+line)) && !bytes.HasPrefix(agn["/etc/passwd"].data, []byte(line)) {
			t.Errorf("agnhost /etc/passwd lacks %q:\n%s", line, agn["/etc/passwd"].data)
		}
	}
	if !bytes.Contains(agn["/etc/group"].data, []byte("\ngroup-defined-in-image:x:50000:user-defined-in-image\n")) {
		t.Errorf("agnhost /etc/group lacks group-defined-in-image:\n%s", agn["/etc/group"].data)
	}
	// What upstream's ImageVolume test expects of kitten's etc/os-release.
	if kit := layers["e2e-test-images/kitten"]["/etc/os-release"].data; !bytes.Contains(kit, []byte("Alpine Linux")) {
		t.Errorf("kitten /etc/os-release does not name upstream's base (Alpine Linux):\n%s", kit)
	}
	ngx := layers["e2e-test-images/nginx"]
	for p, want := range map[string]string{"/etc/nginx/conf.d/default.conf": "listen       80;", "/usr/share/nginx/html/index.html": "Welcome to nginx!",
		"/etc/passwd": "\nnginx:x:101:101:", "/etc/nginx/nginx.conf": "include /etc/nginx/conf.d/*.conf;"} {
		if !bytes.Contains(ngx[p].data, []byte(want)) {
			t.Errorf("nginx %s lacks %q", p, want)
		}
	}
	if img := byName["e2e-test-images/nginx"]; strings.Join(img.Cmd, " ") != "nginx -g daemon off;" || img.StopSignal != "SIGQUIT" {
		t.Errorf("nginx cmd %q, stop signal %q", img.Cmd, img.StopSignal)
	}
	if img := byName["e2e-test-images/nonroot"]; img.User != "1234" {
		t.Errorf("nonroot user %q", img.User)
	}
	if img := byName["pause"]; img.User != "65535:65535" || len(img.Files) != 1 {
		t.Errorf("pause user %q, %d files", img.User, len(img.Files))
	}

	// Reproducible: the same sources make the same digest.
	again, _, err := Images(allRefs[4:5], src)
	if err != nil {
		t.Fatal(err)
	}
	if d1, d2 := digest(t, imgs[4]), digest(t, again[0]); d1 != d2 {
		t.Fatalf("%s digests %s and %s", imgs[4].Ref(), d1, d2)
	}
}

func digest(t *testing.T, img images.Image) string {
	t.Helper()
	built, err := img.Build()
	if err != nil {
		t.Fatal(err)
	}
	d, err := built.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// The busybox keeps environment variables whose names are not shell
// identifiers, as upstream's image does, which ConfigMap's, Secret's and
// Variable Expansion's [Conformance] tests check with `sh -c env`; Debian's
// busybox-static does not (the reason hack/busybox.sh builds one), and the
// images refuse it.
func TestBusyboxKeepsAnyEnvName(t *testing.T) {
	box := realBusybox(t)
	vars := []string{"data-1=value-1", "1-data-1=value-1", "$_-data-1=value-1", "ABC_data-1=value-1",
		"#@!data-1=value-1", "* +,-./0123456789=value-2", "a-b=1"}
	cmd := exec.Command(box, "sh", "-c", `exec "$0" env`, box)
	cmd.Env = vars
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	for _, v := range vars {
		if !slices.Contains(lines, v) {
			t.Errorf("sh -c env lost %q:\n%s", v, out)
		}
	}
	if err := checkBusybox(box); err != nil {
		t.Fatal(err)
	}
	if err := checkBusybox("/bin/busybox"); err == nil || !strings.Contains(err.Error(), "drops") {
		t.Fatalf("Debian's busybox (busybox-static): %v, want it refused", err)
	}
	if _, _, err := Images([]string{"registry.k8s.io/e2e-test-images/busybox:1.37.0-2"}, Sources{Busybox: "/bin/busybox"}); err == nil {
		t.Fatal("a busybox image from Debian's busybox")
	}
}

// rootfs unpacks img's layer into a directory, to run its programs there
// with chroot (as root, as skiff's tests run).
func rootfs(t *testing.T, img images.Image) string {
	t.Helper()
	dir := t.TempDir()
	for name, e := range layer(t, img) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch e.typ {
		case tar.TypeDir:
			if err = os.MkdirAll(p, 0o755); err == nil {
				err = os.Chmod(p, os.FileMode(e.mode&0o777))
			}
		case tar.TypeSymlink:
			err = os.Symlink(e.link, p)
		default:
			err = os.WriteFile(p, e.data, os.FileMode(e.mode&0o777))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// run runs a shell command line in root with chroot (in a network
// namespace of its own with netns), and returns its output.
func run(t *testing.T, root string, netns bool, script string) string {
	t.Helper()
	args := []string{"chroot", root, "/bin/sh", "-c", script}
	if netns {
		args = append([]string{"unshare", "--net"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

// The images' programs run: every shared library is there, the users and
// groups resolve, nginx serves its page and logs to stdout.
func TestImagesRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (chroot), as skiff's tests do")
	}
	src := fakeSources(t)
	imgs, _, err := Images([]string{
		"registry.k8s.io/e2e-test-images/agnhost:2.66.1",
		"registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1",
		"registry.k8s.io/e2e-test-images/nginx:1.27.0-2",
		"registry.k8s.io/e2e-test-images/busybox:1.37.0-2",
	}, src)
	if err != nil || len(imgs) != 4 {
		t.Fatalf("%d images, %v", len(imgs), err)
	}
	t.Run("agnhost", func(t *testing.T) {
		root := rootfs(t, imgs[0])
		run(t, root, false, "dig -v && nslookup -version && host -V && curl --version && nc -h && ip -V && ss -V && "+
			"bash -c true && socat -V && iperf -v; wget --help && timeout 5 true && test -n \"$(getent hosts localhost)\"")
		id := run(t, root, false, "id user-defined-in-image")
		if want := "uid=1000(user-defined-in-image) gid=1000(user-defined-in-image) groups=1000(user-defined-in-image),50000(group-defined-in-image)"; strings.TrimSpace(id) != want {
			t.Errorf("id: %q, want %q", id, want)
		}
	})
	t.Run("glibc-dns-testing", func(t *testing.T) {
		root := rootfs(t, imgs[1])
		if err := os.WriteFile(filepath.Join(root, "etc", "hosts"), []byte("127.0.0.1 localhost\n10.1.2.3 dns-test-service\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		// As dns_common.go's probes, with getent resolving through glibc's NSS.
		out := run(t, root, false, "mkdir /results; for i in `seq 1 2`; do test -n \"$(getent hosts dns-test-service)\" && echo OK > /results/glibc_hosts@dns-test-service; sleep 0.1; done; "+
			"cat /results/glibc_hosts@dns-test-service; dig -v 2>&1; ls / >/dev/null; id -u")
		if !strings.Contains(out, "OK\n") || !strings.Contains(out, "DiG 9") {
			t.Errorf("probe output %q", out)
		}
	})
	t.Run("nginx", func(t *testing.T) {
		root := rootfs(t, imgs[2])
		// The kubelet's container has /dev; the chroot gets files in its place.
		for _, f := range []string{"stdout", "stderr", "null"} {
			if err := os.WriteFile(filepath.Join(root, "dev", f), nil, 0o666); err != nil {
				t.Fatal(err)
			}
		}
		out := run(t, root, true, `ip link set lo up
nginx -g 'daemon off;' & pid=$!
for i in $(seq 1 100); do wget -qO- http://127.0.0.1/ 2>/dev/null && break; sleep 0.1; done
kill -QUIT $pid; wait $pid`)
		if !strings.Contains(out, "Welcome to nginx!") {
			errLog, _ := os.ReadFile(filepath.Join(root, "dev", "stderr"))
			t.Errorf("nginx served %q; its error log:\n%s", out, errLog)
		}
		if log, _ := os.ReadFile(filepath.Join(root, "dev", "stdout")); !strings.Contains(string(log), `"GET / HTTP/1.1" 200`) {
			t.Errorf("access log (stdout) %q", log)
		}
	})
	t.Run("busybox", func(t *testing.T) {
		root := rootfs(t, imgs[3])
		cmd := exec.Command("chroot", root, "/usr/bin/env", "sh", "-c", "env")
		cmd.Env = []string{"PATH=/bin", "1-data-1=value-1", "#@!data-1=value-1"}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "\n1-data-1=value-1\n") && !strings.HasPrefix(string(out), "1-data-1=value-1\n") || !strings.Contains(string(out), "#@!data-1=value-1") {
			t.Errorf("sh -c env: %v %q", err, out)
		}
	})
}

// kitten's and nautilus' files come from the k8s.io/kubernetes module the
// release's programs were built with, found in the module cache.
func TestModuleDir(t *testing.T) {
	cache := t.TempDir()
	if err := os.MkdirAll(filepath.Join(cache, "k8s.io", "kubernetes@v1.37.2"), 0o755); err != nil {
		t.Fatal(err)
	}
	cacheFn := func() (string, error) { return cache, nil }
	k8s := func(version string, replace *debug.Module) *debug.Module {
		return &debug.Module{Path: "k8s.io/kubernetes", Version: version, Replace: replace}
	}
	for _, tc := range []struct {
		name string
		info debug.BuildInfo
		want string // "" for an error
	}{
		{"dependency", debug.BuildInfo{Main: debug.Module{Path: "skiff.dev/dist/kubernetes-1.37"},
			Deps: []*debug.Module{{Path: "k8s.io/api", Version: "v0.37.2"}, k8s("v1.37.2", nil)}}, filepath.Join(cache, "k8s.io", "kubernetes@v1.37.2")},
		{"replaced by a version", debug.BuildInfo{Deps: []*debug.Module{k8s("v1.37.0", k8s("v1.37.2", nil))}}, filepath.Join(cache, "k8s.io", "kubernetes@v1.37.2")},
		{"replaced by a directory", debug.BuildInfo{Deps: []*debug.Module{k8s("v1.37.2", &debug.Module{Path: "/src/kubernetes"})}}, "/src/kubernetes"},
		{"not in the cache", debug.BuildInfo{Deps: []*debug.Module{k8s("v1.36.3", nil)}}, ""},
		{"built in its own tree", debug.BuildInfo{Main: *k8s("(devel)", nil)}, ""},
		{"not from kubernetes", debug.BuildInfo{Main: debug.Module{Path: "example.com/x"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := moduleDir(&tc.info, cacheFn)
			if got != tc.want || (err != nil) != (tc.want == "") {
				t.Fatalf("%q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if got := escapeModule("github.com/BurntSushi/toml@v1.0.0-RC1"); got != "github.com/!burnt!sushi/toml@v1.0.0-!r!c1" {
		t.Fatalf("escaped %q", got)
	}
}
