package cryptvol

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"skiff.dev/skiff/internal/mountinfo"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	id, parent int
	majMin     string // device, "7:3"
	point      string // mount point
	fsType     string
	source     string
}

// mountsAt returns the mounts whose mount point is path (absolute, without
// symlinks), in /proc/self/mountinfo's order.
func mountsAt(path string) ([]mountEntry, error) {
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("mounts: %w", err)
	}
	var at []mountEntry
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		e, err := parseMountinfo(sc.Text())
		if err != nil {
			return nil, err
		}
		if e.point == path {
			at = append(at, e)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mounts: %w", err)
	}
	return at, nil
}

// parseMountinfo parses a line of mountinfo (proc(5)): ID PARENT MAJ:MIN
// ROOT POINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPEROPTIONS.
func parseMountinfo(line string) (mountEntry, error) {
	f := strings.Fields(line)
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if len(f) < 6 || sep < 0 || sep+2 >= len(f) {
		return mountEntry{}, fmt.Errorf("mounts: malformed mountinfo line %q", line)
	}
	id, err1 := strconv.Atoi(f[0])
	parent, err2 := strconv.Atoi(f[1])
	if err := errors.Join(err1, err2); err != nil {
		return mountEntry{}, fmt.Errorf("mounts: malformed mountinfo line %q: %w", line, err)
	}
	return mountEntry{
		id:     id,
		parent: parent,
		majMin: f[2],
		point:  mountinfo.Unescape(f[4]),
		fsType: f[sep+1],
		source: mountinfo.Unescape(f[sep+2]),
	}, nil
}

// mountInfo is what is mounted at a volume's mount point.
type mountInfo struct {
	ours  bool   // the image, through a loop device
	other string // else the source of what is mounted there, if anything
}

// mountState tells whether the mount visible at mnt (the topmost of those
// stacked there) is img through a loop device.
func mountState(img, mnt string) (mountInfo, error) {
	at, err := mountsAt(mnt)
	if err != nil || len(at) == 0 {
		return mountInfo{}, err
	}
	top := at[len(at)-1]
	for _, e := range at { // the one no other mount there is stacked on
		covered := false
		for _, o := range at {
			if o.parent == e.id {
				covered = true
				break
			}
		}
		if !covered {
			top = e
			break
		}
	}
	other := mountInfo{other: top.source + " (" + top.fsType + ")"}
	// The device's sysfs directory is loopN's if it is a loop device.
	link, err := os.Readlink(filepath.Join("/sys/dev/block", top.majMin))
	if err != nil {
		return other, nil // not a block device
	}
	name := filepath.Base(link)
	if !strings.HasPrefix(name, "loop") {
		return other, nil
	}
	var st unix.Stat_t
	if err := unix.Stat(img, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return other, nil
		}
		return mountInfo{}, fmt.Errorf("stat image: %w", err)
	}
	ok, err := loopBacks(name, uint64(st.Dev), uint64(st.Ino))
	if err != nil || !ok {
		return other, err
	}
	return mountInfo{ours: true}, nil
}
