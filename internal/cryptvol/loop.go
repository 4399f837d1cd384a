package cryptvol

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// mountFlags are the flags of a volume's mount: data only.
	mountFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME
	// mountData are ext4's options: stop writing on the first error.
	mountData = "errors=remount-ro"

	// loopAttempts bounds the retries when another process takes the free
	// loop device first.
	loopAttempts = 100
)

// mountImage mounts img at mnt through a loop device: one already bound to
// img if a crash left one (mounting img through two devices would corrupt
// it), a new one otherwise. The device clears itself when unmounted.
func mountImage(ctx context.Context, img, mnt string) error {
	dev, fd, err := attach(ctx, img)
	if err != nil {
		return err
	}
	// Holding the device open keeps it bound until mounted (AUTOCLEAR).
	defer unix.Close(fd)
	if err := unix.Mount(dev, mnt, "ext4", mountFlags, mountData); err != nil {
		return fmt.Errorf("mount %s (%s) at %s: %w", dev, img, mnt, err)
	}
	return nil
}

// attach returns a loop device bound to img with LO_FLAGS_AUTOCLEAR and an
// open descriptor of it, which the caller closes once the device is in use.
func attach(ctx context.Context, img string) (string, int, error) {
	if dev, fd, ok, err := reuseLoop(img); err != nil || ok {
		return dev, fd, err
	}
	file, err := unix.Open(img, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", -1, fmt.Errorf("open image: %w", err)
	}
	defer unix.Close(file)
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", -1, fmt.Errorf("loop devices: %w", err)
	}
	defer unix.Close(ctl)

	for range loopAttempts {
		if err := ctx.Err(); err != nil {
			return "", -1, fmt.Errorf("attach loop device: %w", err)
		}
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", -1, fmt.Errorf("free loop device: %w", err)
		}
		dev := "/dev/loop" + strconv.Itoa(n)
		fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO) {
			time.Sleep(time.Millisecond) // node not there yet, or being removed
			continue
		}
		if err != nil {
			return "", -1, fmt.Errorf("open %s: %w", dev, err)
		}
		err = bindLoop(fd, file, img)
		if err == nil {
			return dev, fd, nil
		}
		unix.Close(fd)
		if !errors.Is(err, unix.EBUSY) {
			return "", -1, fmt.Errorf("bind %s to image: %w", dev, err)
		}
		// Another process bound it between GET_FREE and now: next one.
	}
	return "", -1, fmt.Errorf("attach loop device: all of %d free devices were taken by others", loopAttempts)
}

// bindLoop binds the loop device fd to the file fd file with
// LO_FLAGS_AUTOCLEAR: with LOOP_CONFIGURE, or on kernels without it (before
// 5.8) with LOOP_SET_FD and LOOP_SET_STATUS64. EBUSY means the device was
// taken.
func bindLoop(fd, file int, img string) error {
	var cfg unix.LoopConfig
	cfg.Fd = uint32(file)
	cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
	copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], img)
	err := unix.IoctlLoopConfigure(fd, &cfg)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
		return err
	}
	return bindLoopLegacy(fd, file, &cfg.Info)
}

// bindLoopLegacy binds the loop device fd to the file fd file with
// LOOP_SET_FD, then sets info with LOOP_SET_STATUS64.
func bindLoopLegacy(fd, file int, info *unix.LoopInfo64) error {
	if err := unix.IoctlSetInt(fd, unix.LOOP_SET_FD, file); err != nil {
		return err
	}
	// A crash here leaves the device bound without AUTOCLEAR: reuseLoop
	// finds it next time, and Close clears it.
	if err := unix.IoctlLoopSetStatus64(fd, info); err != nil {
		_ = unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
		return fmt.Errorf("LOOP_SET_STATUS64: %w", err)
	}
	return nil
}

// reuseLoop opens a loop device already bound to img, if any, and sets
// LO_FLAGS_AUTOCLEAR on it.
func reuseLoop(img string) (string, int, bool, error) {
	devs, err := loopsOf(img)
	if err != nil || len(devs) == 0 {
		return "", -1, false, err
	}
	// Read-only opens suffice for root's loop ioctls, and are allowed on a
	// device mounted elsewhere even where writing to mounted block devices
	// is not (CONFIG_BLK_DEV_WRITE_MOUNTED=n).
	dev := "/dev/" + devs[0]
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", -1, false, fmt.Errorf("open %s, left bound to the image: %w", dev, err)
	}
	info, err := unix.IoctlLoopGetStatus64(fd)
	if err == nil && info.Flags&unix.LO_FLAGS_READ_ONLY != 0 {
		err = fmt.Errorf("bound read-only")
	}
	if err == nil && info.Flags&unix.LO_FLAGS_AUTOCLEAR == 0 {
		info.Flags |= unix.LO_FLAGS_AUTOCLEAR
		err = unix.IoctlLoopSetStatus64(fd, info)
	}
	if err != nil {
		unix.Close(fd)
		return "", -1, false, fmt.Errorf("%s, left bound to the image: %w", dev, err)
	}
	return dev, fd, true, nil
}

// loopsOf returns the names (loopN) of the loop devices bound to the file
// img, none if img does not exist.
func loopsOf(img string) ([]string, error) {
	var st unix.Stat_t
	if err := unix.Stat(img, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("stat image: %w", err)
	}
	entries, err := os.ReadDir("/sys/block")
	if err != nil {
		return nil, fmt.Errorf("loop devices: %w", err)
	}
	var devs []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "loop") {
			continue
		}
		ok, err := loopBacks(name, uint64(st.Dev), uint64(st.Ino))
		if err != nil {
			return nil, err
		}
		if ok {
			devs = append(devs, name)
		}
	}
	return devs, nil
}

// loopBacks reports whether the loop device name (loopN) is bound to the
// file of device dev and inode ino.
func loopBacks(name string, dev, ino uint64) (bool, error) {
	// The loop directory is there only while the device is bound.
	if _, err := os.Stat(filepath.Join("/sys/block", name, "loop")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("loop device %s: %w", name, err)
	}
	fd, err := unix.Open("/dev/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("loop device %s: %w", name, err)
	}
	defer unix.Close(fd)
	info, err := unix.IoctlLoopGetStatus64(fd)
	if errors.Is(err, unix.ENXIO) { // unbound meanwhile
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("loop device %s: %w", name, err)
	}
	return info.Device == dev && info.Inode == ino, nil
}

// detachLoops unbinds the loop devices still bound to img (left by a crash,
// or by another tool). One still in use is only marked to clear itself when
// its last user goes.
func detachLoops(img string) error {
	devs, err := loopsOf(img)
	if err != nil {
		return err
	}
	for _, name := range devs {
		fd, err := unix.Open("/dev/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0) // as in reuseLoop
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO) {
			continue
		}
		if err != nil {
			return fmt.Errorf("detach /dev/%s: %w", name, err)
		}
		err = unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
		if errors.Is(err, unix.EBUSY) { // kernels before 5.x: in use
			var info *unix.LoopInfo64
			if info, err = unix.IoctlLoopGetStatus64(fd); err == nil {
				info.Flags |= unix.LO_FLAGS_AUTOCLEAR
				err = unix.IoctlLoopSetStatus64(fd, info)
			}
		}
		unix.Close(fd) // the last close of a cleared device unbinds it
		if err != nil && !errors.Is(err, unix.ENXIO) {
			return fmt.Errorf("detach /dev/%s: %w", name, err)
		}
	}
	return nil
}
