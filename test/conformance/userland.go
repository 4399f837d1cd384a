package conformance

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"skiff.dev/skiff/internal/images"
)

// userland is what most upstream test images are built on (alpine): a
// busybox userland, its applets linked where `busybox --list-full` installs
// them (as alpine's busybox package does), alpine's base directories and
// users, and an nsswitch.conf for the glibc programs added to it.
func (b *builder) userland() ([]images.File, error) {
	return b.part("userland", func() ([]images.File, error) {
		if err := checkBusybox(b.src.Busybox); err != nil {
			return nil, err
		}
		box, _, err := images.BusyboxFiles(b.src.Busybox)
		if err != nil {
			return nil, err
		}
		var files []images.File
		for _, f := range box {
			if path.Dir(f.Path) != "/" { // not /linuxrc (defconfig's init for initrds)
				files = append(files, f)
			}
		}
		files = append(files, baseDirs()...)
		// The kubelet mounts its own /etc/hosts over it (as the runtime
		// does /etc/resolv.conf and /etc/hostname).
		files = append(files, images.File{Path: "/etc/hosts", Data: []byte(alpineHosts), Mode: 0o644})
		return append(files, etcFiles(alpinePasswd, alpineGroup)...), nil
	})
}

// agnhostFiles is the agnhost image's content: the userland with the
// programs upstream's Dockerfile adds with apk (bind-tools, curl,
// netcat-openbsd, iproute2, iperf, bash, socat) and alpine's getent,
// Debian's builds of them here, replacing busybox's applets of the same
// name as on alpine.
func (b *builder) agnhostFiles() ([]images.File, error) {
	return b.part("agnhost", func() ([]images.File, error) {
		bin := filepath.Join(b.src.Dir, "agnhost")
		if err := need(bin, "hack/conformance-build.sh"); err != nil {
			return nil, err
		}
		files, err := b.userland()
		if err != nil {
			return nil, err
		}
		deb, err := debianPrograms([]program{
			{"/usr/bin/dig", "", "bind9-dnsutils"},
			{"/usr/bin/nslookup", "", "bind9-dnsutils"},
			{"/usr/bin/host", "", "bind9-dnsutils"},
			{"/usr/bin/curl", "", "curl"},
			{"/usr/bin/nc", "/bin/nc.openbsd", "netcat-openbsd"}, // -W, -t … (busybox's nc lacks them)
			{"/sbin/ip", "/bin/ip", "iproute2"},
			{"/sbin/ss", "/bin/ss", "iproute2"},
			{"/bin/bash", "", "bash"},
			{"/usr/bin/socat", "", "socat"},
			{"/usr/bin/iperf", "", "iperf"},
			// alpine's musl-utils' getent: the DNS tests' probes run
			// `getent hosts NAME` in agnhost too (busybox has none).
			{"/usr/bin/getent", "", "libc-bin"},
		})
		if err != nil {
			return nil, err
		}
		files = append(files, deb...)
		files = append(files,
			images.File{Path: "/agnhost", Source: bin},
			images.File{Path: "/agnhost-2", Link: "agnhost"}, // entrypoint-tester tests
			images.File{Path: "/usr/local/bin/iperf", Link: "/usr/bin/iperf"},
			images.File{Path: "/uploads", Dir: true}, // netexec
		)
		// adduser -u 1000 -D user-defined-in-image; addgroup -g 50000
		// group-defined-in-image; addgroup user-defined-in-image group-defined-in-image
		files = append(files, etcFiles(
			alpinePasswd+"user-defined-in-image:x:1000:1000:Linux User,,,:/home/user-defined-in-image:/bin/sh\n",
			alpineGroup+"user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n")...)
		files = append(files, images.File{Path: "/home/user-defined-in-image", Dir: true})
		files = append(files, images.File{Path: "/etc/os-release", Data: []byte(agnhostOSRelease), Mode: 0o644})
		// porter's certificate (ADD porter/localhost.crt localhost.crt), if
		// the module's sources are at hand.
		if mod, err := b.module(); err == nil {
			for _, f := range []string{"localhost.crt", "localhost.key"} {
				src := filepath.Join(mod, "test", "images", "agnhost", "porter", f)
				if _, err := os.Stat(src); err == nil {
					files = append(files, images.File{Path: "/" + f, Source: src, Mode: 0o644})
				}
			}
		}
		return append(files, b.coreDNS()...), nil
	})
}

// coreDNS is /coredns, if a coredns binary was given.
func (b *builder) coreDNS() []images.File {
	if b.src.CoreDNS == "" {
		return nil
	}
	return []images.File{{Path: "/coredns", Source: b.src.CoreDNS}}
}

// nginx: upstream's is nginx:1.27-alpine (docker-library's nginx): port
// 80, /usr/share/nginx/html, logs to stdout/stderr, workers as user nginx,
// `nginx -g 'daemon off;'`, SIGQUIT to stop. Debian's nginx-light here.
func nginx(b *builder) (images.Image, error) {
	files, err := b.userland()
	if err != nil {
		return images.Image{}, err
	}
	deb, err := debianPrograms([]program{{"/usr/sbin/nginx", "", "nginx-light"}})
	if err != nil {
		return images.Image{}, err
	}
	files = append(files, deb...)
	for _, f := range []string{"/etc/nginx/mime.types", "/usr/share/nginx/html/index.html"} {
		if err := need(f, "make deps (Debian's nginx-common)"); err != nil {
			return images.Image{}, err
		}
		files = append(files, images.File{Path: f, Source: f, Mode: 0o644})
	}
	files = append(files,
		images.File{Path: "/etc/nginx/nginx.conf", Data: []byte(nginxConf), Mode: 0o644},
		images.File{Path: "/etc/nginx/conf.d/default.conf", Data: []byte(nginxDefaultConf), Mode: 0o644},
		images.File{Path: "/usr/share/nginx/html/50x.html", Data: []byte(nginx50x), Mode: 0o644},
		images.File{Path: "/var/log/nginx/access.log", Link: "/dev/stdout"},
		images.File{Path: "/var/log/nginx/error.log", Link: "/dev/stderr"},
		images.File{Path: "/var/cache/nginx", Dir: true},
		images.File{Path: "/var/lib/nginx", Dir: true}, // Debian's build's temp paths (body, proxy …)
	)
	files = append(files, etcFiles(alpinePasswd+"nginx:x:101:101:nginx:/var/cache/nginx:/sbin/nologin\n",
		alpineGroup+"nginx:x:101:nginx\n")...)
	return images.Image{Files: files, Cmd: []string{"nginx", "-g", "daemon off;"}, StopSignal: "SIGQUIT"}, nil
}

// glibcDNSPackages make the glibc-dns-testing image: upstream's is
// debian:bookworm-slim with dnsutils; the DNS tests' probes run
// `sh -c 'for i in $(seq 1 600); do check="$(dig …)" && test -n … &&
// echo OK > /results/…; … getent hosts …; sleep 1; done'`.
var glibcDNSPackages = []string{"dash", "bash", "coreutils", "grep", "sed", "findutils", "hostname", "libc-bin", "bind9-dnsutils"}

func glibcDNSTesting(b *builder) (images.Image, error) {
	files, err := debianPackages(glibcDNSPackages...)
	if err != nil {
		return images.Image{}, err
	}
	files = append(files, baseDirs()...)
	files = append(files, images.File{Path: "/var/tmp", Dir: true, Mode: 0o1777})
	passwd, err := basePasswd("passwd")
	if err != nil {
		return images.Image{}, err
	}
	group, err := basePasswd("group")
	if err != nil {
		return images.Image{}, err
	}
	files = append(files, etcFiles(passwd, group)...)
	files = append(files, b.coreDNS()...)
	return images.Image{Files: files, Cmd: []string{"bash"}}, nil
}

// checkBusybox makes sure bin's sh keeps environment variables whose names
// are not shell identifiers, as upstream's busybox does and a [Conformance]
// test expects (ConfigMap/Secret env names with prefixes like "1-" or "#@!").
// Debian's busybox drops them (see hack/busybox.sh).
func checkBusybox(bin string) error {
	if err := need(bin, "hack/busybox.sh"); err != nil {
		return err
	}
	cmd := exec.Command(bin, "sh", "-c", `exec "$0" env`, bin)
	cmd.Env = []string{"1-data-1=value-1", "* +,-./0123456789=value-2"}
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%s sh -c env: %w", bin, err)
	}
	for _, want := range cmd.Env {
		if !slices.Contains(strings.Split(string(out), "\n"), want) {
			return fmt.Errorf("%s's sh drops the environment variable %q (Debian's busybox does; use hack/busybox.sh's)", bin, want)
		}
	}
	return nil
}

// baseDirs are the directories every userland has: /tmp writable by
// anyone (tests write probes' files there as any user), root's home …
func baseDirs() []images.File {
	return []images.File{
		{Path: "/tmp", Dir: true, Mode: 0o1777},
		{Path: "/root", Dir: true, Mode: 0o700},
		{Path: "/home", Dir: true},
		{Path: "/etc", Dir: true},
		{Path: "/proc", Dir: true},
		{Path: "/sys", Dir: true},
		{Path: "/dev", Dir: true},
		{Path: "/mnt", Dir: true},
		{Path: "/run", Dir: true},
		{Path: "/var/run", Link: "../run"},
	}
}

// etcFiles are /etc/passwd and /etc/group with that content, and the
// nsswitch.conf glibc programs need to look in /etc/hosts before DNS (as
// musl does, and Debian's default file says).
func etcFiles(passwd, group string) []images.File {
	return []images.File{
		{Path: "/etc/passwd", Data: []byte(passwd), Mode: 0o644},
		{Path: "/etc/group", Data: []byte(group), Mode: 0o644},
		{Path: "/etc/nsswitch.conf", Data: []byte(nsswitchConf), Mode: 0o644},
	}
}

// basePasswd is Debian's default /etc/passwd or /etc/group (base-passwd's
// master file, as update-passwd installs it: password "x").
func basePasswd(name string) (string, error) {
	data, err := os.ReadFile("/usr/share/base-passwd/" + name + ".master")
	if err != nil {
		return "", fmt.Errorf("Debian's default %s: %w", name, err)
	}
	var sb strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) > 2 {
			f[1] = "x"
		}
		sb.WriteString(strings.Join(f, ":") + "\n")
	}
	return sb.String(), nil
}

// program is a Debian program put into an image at path, read from host
// (path if empty), which Debian package pkg installs.
type program struct{ path, host, pkg string }

// debianPrograms is the files of programs with the shared libraries they
// load, at the paths ldd finds them (the loader's default directories).
func debianPrograms(progs []program) ([]images.File, error) {
	var files []images.File
	var bins []string
	for _, p := range progs {
		host := p.host
		if host == "" {
			host = p.path
		}
		if err := need(host, "make deps (Debian's "+p.pkg+")"); err != nil {
			return nil, err
		}
		files = append(files, images.File{Path: p.path, Source: host})
		bins = append(bins, host)
	}
	libs, err := sharedLibs(bins)
	if err != nil {
		return nil, err
	}
	return append(files, libFiles(libs)...), nil
}

// debianPackages is the programs (in /bin, /sbin, /usr/bin, /usr/sbin) of
// installed Debian packages, with their links and shared libraries.
func debianPackages(pkgs ...string) ([]images.File, error) {
	var files []images.File
	var bins []string
	for _, pkg := range pkgs {
		out, err := exec.Command("dpkg", "-L", pkg).Output()
		if err != nil {
			return nil, fmt.Errorf("dpkg -L %s: %w (make deps installs it)", pkg, err)
		}
		for _, p := range strings.Split(string(out), "\n") {
			switch path.Dir(p) {
			case "/bin", "/sbin", "/usr/bin", "/usr/sbin":
			default:
				continue
			}
			st, err := os.Lstat(p)
			if err != nil {
				continue // diverted away (dash's /bin/sh.distrib)
			}
			switch {
			case st.Mode()&os.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return nil, err
				}
				files = append(files, images.File{Path: p, Link: target})
			case st.Mode().IsRegular() && st.Mode()&0o111 != 0:
				mode := int64(st.Mode().Perm())
				if st.Mode()&os.ModeSetuid != 0 {
					mode |= 0o4000
				}
				if st.Mode()&os.ModeSetgid != 0 {
					mode |= 0o2000
				}
				files = append(files, images.File{Path: p, Source: p, Mode: mode})
				bins = append(bins, p)
			}
		}
	}
	libs, err := sharedLibs(bins)
	if err != nil {
		return nil, err
	}
	return append(files, libFiles(libs)...), nil
}

// sharedLibs lists the shared libraries the dynamically linked programs
// among bins load (static programs and scripts load none). ldd is slow
// (~50 ms a program), so it runs once per distinct set of direct needs:
// programs that need the same libraries (and set no search path of their
// own) load the same ones.
func sharedLibs(bins []string) ([]string, error) {
	var libs []string
	seen := map[string]bool{}
	for _, bin := range bins {
		key, dynamic, err := needs(bin)
		if err != nil {
			return nil, err
		}
		if !dynamic || seen[key] {
			continue
		}
		seen[key] = true
		l, err := images.SharedLibs(bin)
		if err != nil {
			return nil, err
		}
		libs = append(libs, l...)
	}
	return libs, nil
}

// needs says whether bin is a dynamically linked ELF program and what it
// needs: its loader, its direct libraries and its own search path.
func needs(bin string) (key string, dynamic bool, err error) {
	f, err := elf.Open(bin)
	if err != nil {
		return "", false, nil // not ELF: a script
	}
	defer f.Close()
	var interp string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			data, err := io.ReadAll(p.Open())
			if err != nil {
				return "", false, fmt.Errorf("%s: %w", bin, err)
			}
			interp = string(data)
		}
	}
	if interp == "" {
		return "", false, nil
	}
	needed, err := f.ImportedLibraries()
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", bin, err)
	}
	slices.Sort(needed)
	key = interp + "|" + strings.Join(needed, " ")
	runpath, _ := f.DynString(elf.DT_RUNPATH)
	rpath, _ := f.DynString(elf.DT_RPATH)
	if len(runpath)+len(rpath) > 0 {
		key += "|" + bin // its own search path, maybe relative to it ($ORIGIN)
	}
	return key, true, nil
}

func libFiles(libs []string) []images.File {
	slices.Sort(libs)
	var files []images.File
	for _, l := range slices.Compact(libs) {
		files = append(files, images.File{Path: l, Source: l})
	}
	return files
}

// alpine's /etc/hosts, /etc/passwd and /etc/group (alpine-baselayout-data).
const alpineHosts = "127.0.0.1\tlocalhost localhost.localdomain\n::1\t\tlocalhost localhost.localdomain\n"

const alpinePasswd = `root:x:0:0:root:/root:/bin/sh
bin:x:1:1:bin:/bin:/sbin/nologin
daemon:x:2:2:daemon:/sbin:/sbin/nologin
lp:x:4:7:lp:/var/spool/lpd:/sbin/nologin
sync:x:5:0:sync:/sbin:/bin/sync
shutdown:x:6:0:shutdown:/sbin:/sbin/shutdown
halt:x:7:0:halt:/sbin:/sbin/halt
mail:x:8:12:mail:/var/mail:/sbin/nologin
news:x:9:13:news:/usr/lib/news:/sbin/nologin
uucp:x:10:14:uucp:/var/spool/uucppublic:/sbin/nologin
cron:x:16:16:cron:/var/spool/cron:/sbin/nologin
ftp:x:21:21::/var/lib/ftp:/sbin/nologin
sshd:x:22:22:sshd:/dev/null:/sbin/nologin
games:x:35:35:games:/usr/games:/sbin/nologin
ntp:x:123:123:NTP:/var/empty:/sbin/nologin
guest:x:405:100:guest:/dev/null:/sbin/nologin
nobody:x:65534:65534:nobody:/:/sbin/nologin
`

const alpineGroup = `root:x:0:root
bin:x:1:root,bin,daemon
daemon:x:2:root,bin,daemon
sys:x:3:root,bin,adm
adm:x:4:root,adm,daemon
tty:x:5:
disk:x:6:root,adm
lp:x:7:lp
kmem:x:9:
wheel:x:10:root
floppy:x:11:root
mail:x:12:mail
news:x:13:news
uucp:x:14:uucp
cron:x:16:cron
console:x:17:
audio:x:18:
cdrom:x:19:
dialout:x:20:root
ftp:x:21:
sshd:x:22:
input:x:23:
tape:x:26:root
video:x:27:root
netdev:x:28:
kvm:x:34:kvm
games:x:35:
shadow:x:42:
www-data:x:82:
users:x:100:games
ntp:x:123:
abuild:x:300:
utmp:x:406:
ping:x:999:
nogroup:x:65533:
nobody:x:65534:
`

// buildroot's skeleton /etc/passwd and /etc/group, which docker-library's
// busybox image carries.
const buildrootPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`

const buildrootGroup = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nobody:x:65534:
`

const nsswitchConf = `passwd:         files
group:          files
shadow:         files
hosts:          files dns
networks:       files
protocols:      files
services:       files
`

// The configuration of docker-library's nginx image, but for IPv6: its
// entrypoint adds "listen [::]:80" only where the pod has IPv6, and this
// image has no entrypoint script.
const nginxConf = `user  nginx;
worker_processes  auto;

error_log  /var/log/nginx/error.log notice;
pid        /run/nginx.pid;


events {
    worker_connections  1024;
}


http {
    include       /etc/nginx/mime.types;
    default_type  application/octet-stream;

    log_format  main  '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" '
                      '"$http_user_agent" "$http_x_forwarded_for"';

    access_log  /var/log/nginx/access.log  main;

    sendfile        on;
    #tcp_nopush     on;

    keepalive_timeout  65;

    #gzip  on;

    include /etc/nginx/conf.d/*.conf;
}
`

const nginxDefaultConf = `server {
    listen       80;
    server_name  localhost;

    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }

    # redirect server error pages to the static page /50x.html
    error_page   500 502 503 504  /50x.html;
    location = /50x.html {
        root   /usr/share/nginx/html;
    }
}
`

const nginx50x = `<!DOCTYPE html>
<html>
<head>
<title>Error</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>An error occurred.</h1>
<p>Sorry, the page you are looking for is currently unavailable.<br/>
Please try again later.</p>
<p>If you are the system administrator of this resource then you should check
the error log for details.</p>
<p><em>Faithfully yours, nginx.</em></p>
</body>
</html>
`

// agnhostOSRelease names what the agnhost family (agnhost, kitten,
// nautilus) is: upstream's is FROM alpine:3.21, so its /etc/os-release is
// Alpine's, and the ImageVolume [Conformance] test reads it through an image
// volume of kitten (expecting "Alpine Linux"). Ours is built here from
// Debian's programs and the k8s.io/kubernetes module, and says so.
const agnhostOSRelease = `NAME="skiff e2e test image (upstream: Alpine Linux)"
ID=skiff-e2e
ID_LIKE=alpine
VERSION_ID=3.21
PRETTY_NAME="skiff's build of an upstream e2e test image, whose base is Alpine Linux v3.21"
HOME_URL="https://github.com/kubernetes/kubernetes/tree/master/test/images"
`
