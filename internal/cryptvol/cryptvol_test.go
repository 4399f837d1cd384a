package cryptvol

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testSize is the size of the tests' images.
const testSize = 64 << 20

// requirePrereqs fails t (never skips it) if the machine cannot run the
// tests: they need root, loop devices, mkfs.ext4, and ext4 with fscrypt.
func requirePrereqs(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("cryptvol tests must run as root (loop devices, mount, fscrypt ioctls)")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Fatalf("no loop devices: %v", err)
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		found := false
		for p := range strings.SplitSeq(mkfsPaths, ":") {
			if _, err := os.Stat(p); err == nil {
				found = true
			}
		}
		if !found {
			t.Fatal("mkfs.ext4 (e2fsprogs) is not installed")
		}
	}
	fss, err := os.ReadFile("/proc/filesystems")
	if err != nil || !bytes.Contains(fss, []byte("\text4\n")) {
		t.Fatalf("kernel without ext4 (/proc/filesystems: %v)", err)
	}
}

// newVolume returns a volume named name under a temporary directory,
// removed when t ends.
func newVolume(t testing.TB, name string) Volume {
	t.Helper()
	requirePrereqs(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v := Volume{Image: filepath.Join(dir, name+".img"), Mount: filepath.Join(dir, name), Size: testSize}
	// Registered after TempDir's cleanup, so it runs before it.
	t.Cleanup(func() {
		if err := Remove(v); err != nil {
			t.Errorf("Remove: %v", err)
			// Leave no mount or loop device behind a failed test.
			_ = unix.Unmount(v.Mount, unix.MNT_DETACH)
			_ = detachLoops(v.Image)
		}
	})
	return v
}

func newKey(t testing.TB) []byte {
	t.Helper()
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return key
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func open(t testing.TB, v Volume, key []byte) string {
	t.Helper()
	dir, err := Open(t.Context(), v, key)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if want := filepath.Join(v.Mount, DataDir); dir != want {
		t.Fatalf("Open returned %s, want %s", dir, want)
	}
	return dir
}

func closeVolume(t testing.TB, v Volume) {
	t.Helper()
	if err := Close(v); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// writeSync writes data to path and fsyncs it.
func writeSync(t testing.TB, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readBack(t testing.TB, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read back %s: %d bytes differing from the %d written", path, len(got), len(want))
	}
}

// mountCount counts the lines of /proc/self/mountinfo whose mount point is
// path (read here independently of the package's parser).
func mountCount(t testing.TB, path string) int {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.SplitSeq(string(raw), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == strings.ReplaceAll(path, " ", `\040`) {
			n++
		}
	}
	return n
}

// loopsFor returns the loop devices whose backing file is img, by
// /sys/block/loop*/loop/backing_file.
func loopsFor(t testing.TB, img string) []string {
	t.Helper()
	files, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		t.Fatal(err)
	}
	var devs []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue // unbound meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSuffix(string(b), "\n") == img {
			devs = append(devs, strings.Split(f, "/")[3])
		}
	}
	return devs
}

func mounted(t testing.TB, v Volume) bool {
	t.Helper()
	ok, err := Mounted(v)
	if err != nil {
		t.Fatalf("Mounted: %v", err)
	}
	return ok
}

// assertClosed checks that v is neither mounted nor bound to a loop device.
func assertClosed(t testing.TB, v Volume) {
	t.Helper()
	if mounted(t, v) {
		t.Error("Mounted reports true after Close")
	}
	if n := mountCount(t, v.Mount); n != 0 {
		t.Errorf("%d mounts at %s after Close", n, v.Mount)
	}
	if devs := loopsFor(t, v.Image); len(devs) != 0 {
		t.Errorf("loop devices still bound to the image after Close: %v", devs)
	}
	if _, err := os.Stat(filepath.Join(v.Mount, DataDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("data dir visible after Close: %v", err)
	}
}

// TestRoundTrip writes through an open volume and checks that the closed
// image holds neither the plaintext nor the file name, and that they come
// back with the key.
func TestRoundTrip(t *testing.T) {
	v := newVolume(t, "etcd-a")
	key := newKey(t)
	dir := open(t, v, key)

	marker := "skiff-cryptvol-plaintext-" + randomHex(t, 8) + "\n"
	content := bytes.Repeat([]byte(marker), 4096/len(marker)+1)[:4096]
	name := "member-snapshot-" + randomHex(t, 8) + ".db"
	file := filepath.Join(dir, name)
	writeSync(t, file, content)

	// A control outside data, unencrypted: proves the scan below finds
	// plaintext when there is some.
	ctlName := "control-" + randomHex(t, 8)
	ctlContent := []byte("control-plaintext-" + randomHex(t, 8))
	writeSync(t, filepath.Join(v.Mount, ctlName), ctlContent)

	pol, err := getPolicy(dir)
	if err != nil || pol == nil {
		t.Fatalf("policy of %s: %+v, %v", dir, pol, err)
	}
	id, err := KeyIdentifier(key)
	if err != nil {
		t.Fatal(err)
	}
	want := policy{Version: unix.FSCRYPT_POLICY_V2, Contents_encryption_mode: unix.FSCRYPT_MODE_AES_256_XTS,
		Filenames_encryption_mode: unix.FSCRYPT_MODE_AES_256_CTS, Flags: unix.FSCRYPT_POLICY_FLAGS_PAD_32,
		Master_key_identifier: id}
	if *pol != want {
		t.Fatalf("policy of %s is %+v, want %+v", dir, *pol, want)
	}

	closeVolume(t, v)
	raw, err := os.ReadFile(v.Image)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what  string
		bytes []byte
		found bool
	}{
		{"control file name", []byte(ctlName), true},
		{"control plaintext", ctlContent, true},
		{"file name", []byte(name), false},
		{"plaintext marker", []byte(marker), false},
		{"first 16 bytes of the marker", []byte(marker[:16]), false},
		{"key", key, false},
	} {
		if got := bytes.Contains(raw, c.bytes); got != c.found {
			t.Errorf("image contains %s: %v, want %v", c.what, got, c.found)
		}
	}

	open(t, v, key)
	readBack(t, file, content)
}

// TestWrongKey opens a volume with another key than its own.
func TestWrongKey(t *testing.T) {
	for _, c := range []struct {
		name string
		open bool // with the right key before the wrong Open
	}{
		{"closed", false},
		{"open", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := newVolume(t, "etcd-b")
			key := newKey(t)
			dir := open(t, v, key)
			content := []byte("etcd data " + randomHex(t, 8))
			writeSync(t, filepath.Join(dir, "db"), content)
			if !c.open {
				closeVolume(t, v)
			}

			_, err := Open(t.Context(), v, newKey(t))
			if !errors.Is(err, ErrWrongKey) {
				t.Fatalf("Open with another key: %v, want ErrWrongKey", err)
			}
			if got := mounted(t, v); got != c.open {
				t.Fatalf("Mounted after wrong Open: %v, want %v", got, c.open)
			}
			if !c.open {
				assertClosed(t, v)
			}

			open(t, v, key)
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Name() != "db" {
				t.Fatalf("data holds %v after wrong Open, want just db", entries)
			}
			readBack(t, filepath.Join(dir, "db"), content)
		})
	}
}

// TestKeySize refuses keys of other sizes than 64 bytes, creating nothing.
func TestKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 32, 63, 65, 128} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			v := newVolume(t, "etcd-c")
			if _, err := Open(t.Context(), v, make([]byte, n)); err == nil || !strings.Contains(err.Error(), "64 bytes") {
				t.Fatalf("Open with a key of %d bytes: %v, want an error about 64 bytes", n, err)
			}
			if _, err := KeyIdentifier(make([]byte, n)); err == nil {
				t.Fatalf("KeyIdentifier of %d bytes: no error", n)
			}
			for _, p := range []string{v.Image, v.Mount} {
				if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("%s after a refused Open: %v", p, err)
				}
			}
		})
	}
}

// TestKeyIdentifier checks KeyIdentifier against the kernel's computation.
func TestKeyIdentifier(t *testing.T) {
	v := newVolume(t, "etcd-a")
	key := newKey(t)
	open(t, v, key)
	for range 3 {
		key := newKey(t)
		want, err := addKey(v.Mount, key) // the kernel's HKDF
		if err != nil {
			t.Fatal(err)
		}
		got, err := KeyIdentifier(key)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("KeyIdentifier = %x, kernel computed %x", got, want)
		}
		if _, err := removeKey(v.Mount, want); err != nil {
			t.Fatal(err)
		}
	}
}

// TestClosedUnreadable checks that Close leaves neither a mount nor a loop
// device, also with a file still open.
func TestClosedUnreadable(t *testing.T) {
	for _, c := range []struct {
		name string
		busy bool // a file stays open across Close
	}{
		{"idle", false},
		{"busy", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := newVolume(t, "etcd-a")
			dir := open(t, v, newKey(t))
			content := []byte("wal " + randomHex(t, 8))
			writeSync(t, filepath.Join(dir, "wal"), content)
			if !mounted(t, v) || mountCount(t, v.Mount) != 1 || len(loopsFor(t, v.Image)) != 1 {
				t.Fatalf("open volume: Mounted %v, %d mounts, loop devices %v",
					mounted(t, v), mountCount(t, v.Mount), loopsFor(t, v.Image))
			}
			writeSync(t, filepath.Join(dir, "snap"), content)
			var held, heldDir *os.File
			if c.busy {
				f, err := os.Open(filepath.Join(dir, "wal"))
				if err != nil {
					t.Fatal(err)
				}
				held = f
				if heldDir, err = os.Open(dir); err != nil {
					t.Fatal(err)
				}
			}
			closeVolume(t, v)
			if held != nil {
				// Lazily detached: gone from the tree, alive until closed.
				if mounted(t, v) || mountCount(t, v.Mount) != 0 {
					t.Fatal("busy volume still mounted after Close")
				}
				// The filesystem lives on for the open file, and so does
				// its loop device, until the file is closed.
				if devs := loopsFor(t, v.Image); len(devs) != 1 {
					t.Fatalf("loop devices of a lazily detached volume: %v, want one", devs)
				}
				got := make([]byte, len(content)+1)
				if n, err := held.ReadAt(got, 0); n != len(content) || !bytes.Equal(got[:n], content) {
					t.Fatalf("open file after Close read %q, %v; want %q", got[:n], err, content)
				}
				// The key is gone: no file that was not open opens again.
				if fd, err := unix.Openat(int(heldDir.Fd()), "snap", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
					unix.Close(fd)
					t.Fatal("a file not open at Close opens after Close")
				} else if !errors.Is(err, unix.ENOKEY) {
					t.Fatalf("opening a file after Close: %v, want ENOKEY", err)
				}
				if err := errors.Join(held.Close(), heldDir.Close()); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(10 * time.Second)
				for len(loopsFor(t, v.Image)) != 0 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
			}
			assertClosed(t, v)
			closeVolume(t, v) // closing a closed volume
		})
	}
}

// TestIdempotent opens an open volume again, also where mountinfo escapes
// the mount point.
func TestIdempotent(t *testing.T) {
	for _, name := range []string{"etcd-a", "etcd a"} {
		t.Run(name, func(t *testing.T) {
			v := newVolume(t, name)
			key := newKey(t)
			d1 := open(t, v, key)
			writeSync(t, filepath.Join(d1, "x"), []byte("x"))
			d2 := open(t, v, key)
			if d1 != d2 {
				t.Fatalf("second Open returned %s, first %s", d2, d1)
			}
			if n := mountCount(t, v.Mount); n != 1 {
				t.Fatalf("%d mounts at %s after two Opens, want 1", n, v.Mount)
			}
			if devs := loopsFor(t, v.Image); len(devs) != 1 {
				t.Fatalf("loop devices after two Opens: %v, want one", devs)
			}
			if !mounted(t, v) {
				t.Fatal("Mounted false for an open volume")
			}
			readBack(t, filepath.Join(d2, "x"), []byte("x"))
			closeVolume(t, v) // one Close undoes both
			assertClosed(t, v)
		})
	}
}

// TestParseMountinfo parses mountinfo lines, escapes and optional fields.
func TestParseMountinfo(t *testing.T) {
	for _, c := range []struct {
		line string
		want mountEntry
		bad  bool
	}{
		{line: `44 27 7:0 / /tmp/x/etcd-a rw,noatime - ext4 /dev/loop0 rw,errors=remount-ro`,
			want: mountEntry{id: 44, parent: 27, majMin: "7:0", point: "/tmp/x/etcd-a", fsType: "ext4", source: "/dev/loop0"}},
		{line: `45 27 7:1 / /tmp/x/etcd\040a\134b rw shared:1 master:2 - ext4 /dev/loop1 rw`,
			want: mountEntry{id: 45, parent: 27, majMin: "7:1", point: `/tmp/x/etcd a\b`, fsType: "ext4", source: "/dev/loop1"}},
		{line: `46 27 0:5 / /x rw - tmpfs`, bad: true},
		{line: `garbage`, bad: true},
	} {
		got, err := parseMountinfo(c.line)
		if c.bad {
			if err == nil {
				t.Errorf("parseMountinfo(%q) = %+v, want an error", c.line, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("parseMountinfo(%q) = %+v, %v; want %+v", c.line, got, err, c.want)
		}
	}
}

// attachStale binds a loop device to img without LO_FLAGS_AUTOCLEAR, as a
// crash of another tool (or of LOOP_SET_FD's fallback) leaves it.
func attachStale(t testing.TB, img string) string {
	t.Helper()
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ctl)
	file, err := unix.Open(img, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(file)
	for range 100 {
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			t.Fatal(err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		err = unix.IoctlSetInt(fd, unix.LOOP_SET_FD, file)
		unix.Close(fd)
		if err == nil {
			t.Cleanup(func() { // in case the test fails before Close
				var st unix.Stat_t
				if unix.Stat(img, &st) != nil {
					return
				}
				fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
				if err != nil {
					return
				}
				defer unix.Close(fd)
				info, err := unix.IoctlLoopGetStatus64(fd)
				if err == nil && info.Device == uint64(st.Dev) && info.Inode == st.Ino { // still ours
					_ = unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
				}
			})
			return dev
		}
		if !errors.Is(err, unix.EBUSY) {
			t.Fatalf("LOOP_SET_FD %s: %v", dev, err)
		}
	}
	t.Fatal("no free loop device")
	return ""
}

// TestCrashRecovery opens volumes again after what crashes leave behind.
func TestCrashRecovery(t *testing.T) {
	for _, c := range []struct {
		name  string
		fresh bool // the crash hit the volume's creation: no data yet
		crash func(t *testing.T, v Volume, key []byte)
		loops int // loop devices bound to the image after the crash
	}{{
		name: "lost mount",
		crash: func(t *testing.T, v Volume, key []byte) {
			if err := unix.Unmount(v.Mount, 0); err != nil {
				t.Fatal(err)
			}
		},
	}, {
		name: "stale loop device",
		crash: func(t *testing.T, v Volume, key []byte) {
			if err := unix.Unmount(v.Mount, 0); err != nil {
				t.Fatal(err)
			}
			attachStale(t, v.Image)
		},
		loops: 1,
	}, {
		name: "key removed while mounted",
		crash: func(t *testing.T, v Volume, key []byte) {
			id, err := KeyIdentifier(key)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := removeKey(v.Mount, id); err != nil {
				t.Fatal(err)
			}
			// The kernel no longer lets anyone open the file.
			if _, err := os.ReadFile(filepath.Join(v.Mount, DataDir, "f")); err == nil {
				t.Fatal("file readable after its key was removed")
			}
		},
		loops: 1,
	}, {
		name:  "half-made image",
		fresh: true,
		crash: func(t *testing.T, v Volume, key []byte) {
			writeSync(t, tmpImage(v.Image), []byte("not an ext4 image"))
		},
	}, {
		name:  "data dir without policy",
		fresh: true,
		crash: func(t *testing.T, v Volume, key []byte) {
			if err := ensureImage(t.Context(), v.Image, v.Size); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(v.Mount, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := mountImage(t.Context(), v.Image, v.Mount); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(v.Mount, DataDir), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := unix.Unmount(v.Mount, 0); err != nil {
				t.Fatal(err)
			}
		},
	}} {
		t.Run(c.name, func(t *testing.T) {
			v := newVolume(t, "etcd-a")
			key := newKey(t)
			content := []byte("member data " + randomHex(t, 8))
			if !c.fresh {
				dir := open(t, v, key)
				writeSync(t, filepath.Join(dir, "f"), content)
			}
			c.crash(t, v, key)
			if devs := loopsFor(t, v.Image); len(devs) != c.loops {
				t.Fatalf("after the crash: loop devices %v, want %d", devs, c.loops)
			}

			dir := open(t, v, key)
			if n := mountCount(t, v.Mount); n != 1 {
				t.Fatalf("%d mounts after Open, want 1", n)
			}
			if devs := loopsFor(t, v.Image); len(devs) != 1 {
				t.Fatalf("loop devices after Open: %v, want one", devs)
			}
			if c.fresh {
				writeSync(t, filepath.Join(dir, "f"), content)
				if pol, err := getPolicy(dir); err != nil || pol == nil || checkPolicy(pol) != nil {
					t.Fatalf("policy of %s: %+v, %v", dir, pol, err)
				}
			}
			readBack(t, filepath.Join(dir, "f"), content)
			closeVolume(t, v)
			assertClosed(t, v)
		})
	}
}

// TestRemove removes a volume, twice, and one that never existed.
func TestRemove(t *testing.T) {
	v := newVolume(t, "etcd-a")
	dir := open(t, v, newKey(t))
	writeSync(t, filepath.Join(dir, "f"), []byte("f"))
	for i := range 2 {
		if err := Remove(v); err != nil {
			t.Fatalf("Remove #%d: %v", i+1, err)
		}
		for _, p := range []string{v.Image, tmpImage(v.Image), v.Mount} {
			if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("after Remove #%d, %s: %v", i+1, p, err)
			}
		}
		if devs := loopsFor(t, v.Image); len(devs) != 0 {
			t.Fatalf("loop devices after Remove: %v", devs)
		}
		if mounted(t, v) {
			t.Fatal("Mounted after Remove")
		}
	}
	never := newVolume(t, "never")
	if err := Close(never); err != nil {
		t.Fatalf("Close of a volume never made: %v", err)
	}
	if err := Remove(never); err != nil {
		t.Fatalf("Remove of a volume never made: %v", err)
	}
}

// TestConcurrent opens the three volumes of a cluster's etcd at once.
func TestConcurrent(t *testing.T) {
	type member struct {
		v       Volume
		key     []byte
		dir     string
		content []byte
	}
	var ms []*member
	for _, name := range []string{"etcd-a", "etcd-b", "etcd-c"} {
		ms = append(ms, &member{v: newVolume(t, name), key: newKey(t), content: []byte(name + " " + randomHex(t, 8))})
	}
	run := func(f func(m *member) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, len(ms))
		for i, m := range ms {
			wg.Go(func() { errs[i] = f(m) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	run(func(m *member) error {
		dir, err := Open(t.Context(), m.v, m.key)
		if err != nil {
			return err
		}
		m.dir = dir
		return os.WriteFile(filepath.Join(dir, "db"), m.content, 0o600)
	})
	seen := map[string]string{}
	for _, m := range ms {
		devs := loopsFor(t, m.v.Image)
		if len(devs) != 1 {
			t.Fatalf("%s: loop devices %v, want one", m.v.Image, devs)
		}
		if other, ok := seen[devs[0]]; ok {
			t.Fatalf("%s and %s share %s", other, m.v.Image, devs[0])
		}
		seen[devs[0]] = m.v.Image
		readBack(t, filepath.Join(m.dir, "db"), m.content)
	}
	run(func(m *member) error { return Close(m.v) })
	for _, m := range ms {
		assertClosed(t, m.v)
	}
	run(func(m *member) error { _, err := Open(t.Context(), m.v, m.key); return err })
	for _, m := range ms {
		readBack(t, filepath.Join(m.dir, "db"), m.content)
	}
}

// BenchmarkOpen measures what a cluster create pays per etcd member:
// making, formatting, mounting and keying a fresh volume.
func BenchmarkOpen(b *testing.B) {
	for _, size := range []int64{testSize, DefaultSize} {
		b.Run(fmt.Sprintf("size=%dMiB", size>>20), func(b *testing.B) {
			requirePrereqs(b)
			dir := b.TempDir()
			key := newKey(b)
			var total time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				v := Volume{Image: filepath.Join(dir, fmt.Sprintf("v%d.img", i)), Mount: filepath.Join(dir, fmt.Sprintf("v%d", i)), Size: size}
				b.StartTimer()
				start := time.Now()
				if _, err := Open(b.Context(), v, key); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				b.StopTimer()
				if err := Remove(v); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/op")
		})
	}
}

// TestAttachRace binds loop devices to many files at once: allocations
// race (LOOP_CTL_GET_FREE hands the same device to several), and each must
// end with a device of its own.
func TestAttachRace(t *testing.T) {
	requirePrereqs(t)
	dir := t.TempDir()
	const n = 8
	imgs := make([]string, n)
	for i := range imgs {
		imgs[i] = filepath.Join(dir, fmt.Sprintf("f%d.img", i))
		if err := os.WriteFile(imgs[i], make([]byte, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	devs, fds, errs := make([]string, n), make([]int, n), make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range imgs {
		wg.Go(func() {
			<-start
			devs[i], fds[i], errs[i] = attach(t.Context(), imgs[i])
		})
	}
	close(start)
	wg.Wait()
	seen := map[string]bool{}
	for i, err := range errs {
		if err != nil {
			t.Errorf("attach %s: %v", imgs[i], err)
			continue
		}
		if seen[devs[i]] {
			t.Errorf("%s given twice", devs[i])
		}
		seen[devs[i]] = true
		if got := loopsFor(t, imgs[i]); len(got) != 1 || "/dev/"+got[0] != devs[i] {
			t.Errorf("%s: bound to %v, attach said %s", imgs[i], got, devs[i])
		}
		unix.Close(fds[i]) // AUTOCLEAR: the last close unbinds
	}
	for _, img := range imgs {
		if got := loopsFor(t, img); len(got) != 0 {
			t.Errorf("%s still bound to %v after its last close", img, got)
		}
	}
}

// TestBindLoopLegacy binds a loop device the way kernels without
// LOOP_CONFIGURE (before 5.8) need, which this kernel never asks for.
func TestBindLoopLegacy(t *testing.T) {
	requirePrereqs(t)
	img := filepath.Join(t.TempDir(), "f.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := unix.Open(img, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(file)
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ctl)
	for range 100 {
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Open(fmt.Sprintf("/dev/loop%d", n), unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		err = bindLoopLegacy(fd, file, &unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR})
		if errors.Is(err, unix.EBUSY) {
			unix.Close(fd)
			continue
		}
		if err != nil {
			unix.Close(fd)
			t.Fatal(err)
		}
		info, err := unix.IoctlLoopGetStatus64(fd)
		if err != nil || info.Flags&unix.LO_FLAGS_AUTOCLEAR == 0 {
			_ = unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
			unix.Close(fd)
			t.Fatalf("after bindLoopLegacy: %+v, %v; want AUTOCLEAR", info, err)
		}
		if got := loopsFor(t, img); len(got) != 1 || got[0] != fmt.Sprintf("loop%d", n) {
			t.Errorf("bound to %v, want loop%d", got, n)
		}
		unix.Close(fd)
		if got := loopsFor(t, img); len(got) != 0 {
			t.Fatalf("still bound to %v after the last close", got)
		}
		return
	}
	t.Fatal("no free loop device")
}
