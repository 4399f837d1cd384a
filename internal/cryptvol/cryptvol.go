// Package cryptvol makes encrypted volumes for etcd members, what EBS
// volumes are to EKS's control plane: a sparse ext4 image file, mounted
// through a loop device, whose data directory carries an fscrypt v2 policy
// (contents AES-256-XTS, names AES-256-CTS, names padded to 32 bytes).
//
// The key is 64 raw bytes from the caller (a data key of skiff's KMS); this
// package never stores it. It lives in the kernel's keyring of the mounted
// filesystem from Open to Close. Without it the image holds only
// ciphertext: file contents and names in Mount/data are encrypted; sizes,
// timestamps and the directory tree's shape are not (fscrypt encrypts
// contents and names, not metadata).
//
// Everything goes through ioctls of the kernel (loop devices, mount,
// fscrypt) except mkfs.ext4 of e2fsprogs, run once per image. Open, Close
// and Remove are idempotent and can be called again after a crash or a host
// reboot at any point. Calls for one Volume must not overlap (the caller
// serializes them, as the control plane's one worker per cluster does);
// calls for different Volumes may.
package cryptvol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	// KeySize is the size of a volume key: AES-256-XTS takes 64 bytes.
	KeySize = 64

	// DefaultSize is the size of a new image when Volume.Size is 0. The
	// image is sparse: a fresh one takes about 4 MiB on disk.
	DefaultSize = 8 << 30

	// DataDir is the encrypted directory inside the mounted filesystem.
	DataDir = "data"

	// ErrWrongKey is returned by Open when the volume's data directory is
	// encrypted under another key.
	ErrWrongKey Error = "key does not match the volume's encryption policy"
)

// Error is an error of this package that callers test with errors.Is.
type Error string

// Error returns e's text.
func (e Error) Error() string { return string(e) }

// Volume is one encrypted volume: Image is the image file, Mount where it is
// mounted.
type Volume struct {
	Image string // e.g. DATA/clusters/ID/etcd/etcd-a.img
	Mount string // e.g. DATA/clusters/ID/etcd/etcd-a (created if missing)
	Size  int64  // bytes of the sparse image when created; default 8 GiB
}

// paths returns v's image and mount paths made absolute, and checks v.
func (v Volume) paths() (img, mnt string, err error) {
	if v.Image == "" || v.Mount == "" {
		return "", "", fmt.Errorf("volume needs both an image and a mount path (image %q, mount %q)", v.Image, v.Mount)
	}
	if img, err = filepath.Abs(v.Image); err != nil {
		return "", "", fmt.Errorf("image path %s: %w", v.Image, err)
	}
	if mnt, err = filepath.Abs(v.Mount); err != nil {
		return "", "", fmt.Errorf("mount path %s: %w", v.Mount, err)
	}
	if img == mnt {
		return "", "", fmt.Errorf("volume image and mount are the same path %s", img)
	}
	if v.Size < 0 {
		return "", "", fmt.Errorf("volume %s: negative size %d", img, v.Size)
	}
	return img, mnt, nil
}

// Open makes v usable with key and returns its data directory (Mount/data),
// in which everything is encrypted. Idempotent and safe after a crash or
// host reboot at any point: it creates the image if missing (sparse,
// formatted under a temporary name and renamed into place, so a crash never
// leaves a half-made image), mounts it if Mount is not already a mount of
// that image (reusing a loop device left bound to the image by a crash,
// never mounting the image twice), adds the key, and sets the policy on an
// empty Mount/data or checks that the existing policy is for key. A wrong
// key is ErrWrongKey, never a new directory; an Open that fails unmounts
// what it mounted. The size of an existing image is left as it is.
func Open(ctx context.Context, v Volume, key []byte) (string, error) {
	if len(key) != KeySize {
		return "", fmt.Errorf("volume key must be %d bytes (AES-256-XTS), not %d", KeySize, len(key))
	}
	img, mnt, err := v.paths()
	if err != nil {
		return "", err
	}
	id, err := KeyIdentifier(key)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		return "", fmt.Errorf("volume %s: mount dir: %w", img, err)
	}
	data := filepath.Join(mnt, DataDir) // as the caller named it
	if mnt, err = filepath.EvalSymlinks(mnt); err != nil {
		return "", fmt.Errorf("volume %s: mount dir: %w", img, err)
	}
	if err := os.MkdirAll(filepath.Dir(img), 0o700); err != nil {
		return "", fmt.Errorf("volume %s: image dir: %w", img, err)
	}

	st, err := mountState(img, mnt)
	if err != nil {
		return "", fmt.Errorf("volume %s: %w", img, err)
	}
	mounted := false
	switch {
	case st.ours:
	case st.other != "":
		return "", fmt.Errorf("volume %s: %s is already a mount of %s, not of the image", img, mnt, st.other)
	default:
		if err := ensureImage(ctx, img, v.Size); err != nil {
			return "", fmt.Errorf("volume %s: %w", img, err)
		}
		if err := mountImage(ctx, img, mnt); err != nil {
			return "", fmt.Errorf("volume %s: %w", img, err)
		}
		mounted = true
	}

	if err := unlock(mnt, key, id); err != nil {
		if mounted {
			// Leave things as they were: the volume closed.
			_ = closeMount(mnt)
		}
		return "", fmt.Errorf("volume %s: %w", img, err)
	}
	return data, nil
}

// unlock adds key to the filesystem mounted at mnt and readies its data
// directory, encrypted under key: made and given the policy if missing or
// empty and unencrypted, checked against id if it has a policy.
func unlock(mnt string, key []byte, id [keyIDSize]byte) error {
	data := filepath.Join(mnt, DataDir)
	pol, err := getPolicy(data)
	exists := true
	switch {
	case errors.Is(err, fs.ErrNotExist):
		exists = false
	case err != nil:
		return err
	case pol != nil:
		if err := checkPolicy(pol); err != nil {
			return fmt.Errorf("%s: %w", data, err)
		}
		if pol.Master_key_identifier != id {
			return fmt.Errorf("%s is encrypted under key %x, not %x: %w", data, pol.Master_key_identifier, id, ErrWrongKey)
		}
	default: // exists, not encrypted: only a crash before the policy was set leaves that
		empty, err := emptyDir(data)
		if err != nil {
			return err
		}
		if !empty {
			return fmt.Errorf("%s exists unencrypted and is not empty: refusing to encrypt on top of plaintext", data)
		}
	}

	got, err := addKey(mnt, key)
	if err != nil {
		return err
	}
	if got != id {
		// Cannot happen unless KeyIdentifier disagrees with the kernel.
		_, _ = removeKey(mnt, got)
		return fmt.Errorf("kernel computed key identifier %x, expected %x", got, id)
	}
	if pol != nil {
		return nil
	}
	if !exists {
		if err := os.Mkdir(data, 0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	if err := setPolicy(data, id); err != nil {
		return err
	}
	if err := syncDir(data); err != nil {
		return err
	}
	return syncDir(mnt)
}

// Close removes the key (so the data is unreadable even to root until Open
// again) and unmounts; the loop device goes with it. Closing a closed or
// missing volume is not an error. If files are still open in the volume,
// the key is removed only partly (open files stay usable, no file can be
// opened anew) and the mount is detached lazily: the filesystem and its
// loop device go when the last of those files is closed.
func Close(v Volume) error {
	img, mnt, err := v.paths()
	if err != nil {
		return err
	}
	if resolved, err := filepath.EvalSymlinks(mnt); err == nil {
		mnt = resolved
		// Mounts of the image may be stacked (an Open racing a crash):
		// unmount them all, a bounded number of times.
		for range 8 {
			st, err := mountState(img, mnt)
			if err != nil {
				return fmt.Errorf("volume %s: %w", img, err)
			}
			if !st.ours {
				break
			}
			if err := closeMount(mnt); err != nil {
				return fmt.Errorf("volume %s: %w", img, err)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("volume %s: mount dir: %w", img, err)
	}
	if err := detachLoops(img); err != nil {
		return fmt.Errorf("volume %s: %w", img, err)
	}
	return nil
}

// closeMount removes the key of the volume mounted at mnt and unmounts it,
// lazily if a normal unmount finds it busy.
func closeMount(mnt string) error {
	data := filepath.Join(mnt, DataDir)
	pol, err := getPolicy(data)
	switch {
	case err == nil && pol != nil && pol.Version == unix.FSCRYPT_POLICY_V2:
		// Files still open (FILES_BUSY) keep the key partly present until
		// closed; the unmount below ends the filesystem's keyring anyway.
		if _, err := removeKey(mnt, pol.Master_key_identifier); err != nil {
			return err
		}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}
	err = unix.Unmount(mnt, 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(mnt, unix.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, unix.EINVAL) { // EINVAL: not a mount (any more)
		return fmt.Errorf("unmount %s: %w", mnt, err)
	}
	return nil
}

// Remove closes v and deletes its image and mount directory. Removing a
// missing volume is not an error. The mount directory must be empty once
// unmounted (it is unless something wrote into it while v was closed).
func Remove(v Volume) error {
	if err := Close(v); err != nil {
		return err
	}
	img, mnt, err := v.paths()
	if err != nil {
		return err
	}
	for _, p := range []string{img, tmpImage(img), mnt} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove volume %s: %w", img, err)
		}
	}
	return nil
}

// Mounted reports whether v is mounted now (at v.Mount, from v.Image).
func Mounted(v Volume) (bool, error) {
	img, mnt, err := v.paths()
	if err != nil {
		return false, err
	}
	mnt, err = filepath.EvalSymlinks(mnt)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("volume %s: mount dir: %w", img, err)
	}
	st, err := mountState(img, mnt)
	if err != nil {
		return false, fmt.Errorf("volume %s: %w", img, err)
	}
	return st.ours, nil
}

// tmpImage is where a new image is made before it is renamed to img.
func tmpImage(img string) string { return img + ".tmp" }

// ensureImage makes the image img of size bytes (DefaultSize if 0) unless
// it exists: a sparse file formatted as ext4 with the encrypt feature under
// a temporary name, then renamed into place.
func ensureImage(ctx context.Context, img string, size int64) error {
	if _, err := os.Stat(img); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("image: %w", err)
	}
	if size == 0 {
		size = DefaultSize
	}
	tmp := tmpImage(img)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create image: %w", err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("size image: %w", err)
	}
	if err := mkfs(ctx, tmp); err != nil {
		return err
	}
	if f, err = os.OpenFile(tmp, os.O_RDWR, 0); err != nil {
		return fmt.Errorf("sync image: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync image: %w", err)
	}
	if err := os.Rename(tmp, img); err != nil {
		return fmt.Errorf("install image: %w", err)
	}
	return syncDir(filepath.Dir(img))
}

// mkfsPaths are where mkfs.ext4 is looked for when PATH lacks it (as
// PATHs without sbin do).
const mkfsPaths = "/usr/sbin/mkfs.ext4:/sbin/mkfs.ext4"

// mkfs formats the file path as ext4 with encryption support. Only a few
// MiB are written: inode tables and journal are left to the sparse file's
// zeros (assume_storage_prezeroed, e2fsprogs ≥ 1.47; older ones get
// lazy_itable_init, which the kernel finishes in the background). Blocks
// are 4 KiB (mkfs would pick 1 KiB for small images), an inode per 64 KiB
// (etcd keeps few, large files) and no blocks reserved for root.
func mkfs(ctx context.Context, path string) error {
	bin, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		for p := range strings.SplitSeq(mkfsPaths, ":") {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
				break
			}
		}
		if err != nil {
			return fmt.Errorf("mkfs.ext4 (e2fsprogs) not found: %w", err)
		}
	}
	run := func(ext string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, bin, "-q", "-F", "-b", "4096", "-m", "0", "-i", "65536",
			"-O", "encrypt", "-E", ext, path)
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		return cmd.CombinedOutput()
	}
	const lazy = "lazy_itable_init=1,lazy_journal_init=1"
	out, err := run(lazy + ",assume_storage_prezeroed=1")
	if err != nil && strings.Contains(string(out), "assume_storage_prezeroed") {
		out, err = run(lazy)
	}
	if err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %w: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// syncDir fsyncs the directory dir, making renames and creations in it
// durable.
func syncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// emptyDir reports whether the directory dir has no entries.
func emptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if len(names) > 0 {
		return false, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read %s: %w", dir, err)
	}
	return true, nil
}
