package process

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"skiff.dev/skiff/internal/cryptvol"
	"skiff.dev/skiff/internal/runtime"
)

// Placement of the process runtime: every cluster has a loopback /24 of its
// own, slot S's being 127.(1+S/256).(S%256).0/24 (127.1.S.0/24 for the
// first 255), in which each instance has an address (so every component
// keeps its usual port and no two clusters share a listener), and its
// volumes are directories under DATA/clusters/ID.

// maxSlot is the highest slot the runtime places (store.MaxSlot is the
// same): 127.1.1.0/24 … 127.16.255.0/24.
const maxSlot = 16*256 - 1

// slotIP is the address host of slot's /24.
func slotIP(slot, host int) net.IP {
	return net.IPv4(127, byte(1+slot/256), byte(slot%256), byte(host)).To4()
}

// hosts is the last byte of each address in a cluster's /24.
var hosts = map[runtime.Role]struct{ shared, first, max int }{
	runtime.Endpoint:          {shared: 1, first: 3, max: 2},
	runtime.Authenticator:     {shared: 2, first: 5, max: 2},
	runtime.Tunnel:            {first: 7, max: 1},
	runtime.Door:              {first: 8, max: 1},
	runtime.KMSPlugin:         {first: 9, max: 1},
	runtime.Etcd:              {first: 11, max: 10},
	runtime.APIServer:         {first: 21, max: 20},
	runtime.ControllerManager: {first: 41, max: 10},
	runtime.Scheduler:         {first: 51, max: 10},
}

// Addr implements runtime.Placer. It panics on an address no role has:
// the reconciler asked for something that cannot exist.
func (r *Runtime) Addr(slot int, a runtime.Addr) net.IP {
	h, ok := hosts[a.Role]
	switch {
	case slot < 1 || slot > maxSlot:
		panic(fmt.Sprintf("process runtime: place number %d out of range", slot))
	case !ok:
		panic(fmt.Sprintf("process runtime: no addresses for role %q", a.Role))
	case a.Index == runtime.Shared && h.shared != 0:
		return slotIP(slot, h.shared)
	case a.Index < 0 || a.Index >= h.max:
		panic(fmt.Sprintf("process runtime: no address %d for role %q", a.Index, a.Role))
	}
	return slotIP(slot, h.first+a.Index)
}

// SlotFree implements runtime.Placer: no socket of the host's network
// namespace listens on an address of the slot's /24 (any port).
func (r *Runtime) SlotFree(slot int) bool {
	busy, err := listeningIn(slotIP(slot, 0))
	return err == nil && !busy
}

// listeningIn reports whether a TCP socket listens in prefix/24, from
// /proc/net/tcp and tcp6 (IPv4-mapped addresses).
func listeningIn(prefix net.IP) (bool, error) {
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return false, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "0A" { // TCP_LISTEN
				continue
			}
			host, _, _ := strings.Cut(fields[1], ":")
			if ip := procIP(host); ip != nil && ip.To4() != nil && ip.To4()[0] == prefix[0] && ip.To4()[1] == prefix[1] && ip.To4()[2] == prefix[2] {
				f.Close()
				return true, nil
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return false, err
		}
	}
	return false, nil
}

// procIP decodes an address of /proc/net/tcp{,6}: 32-bit words in host
// (little-endian) byte order.
func procIP(s string) net.IP {
	b, err := hex.DecodeString(s)
	if err != nil || len(b)%4 != 0 {
		return nil
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	return net.IP(b)
}

// Volume implements runtime.Placer: DATA/clusters/CLUSTER/KIND/NAME, or
// its subdirectory "data" for an encrypted volume (package cryptvol: the
// image NAME.img mounted on NAME, its data directory under an fscrypt
// policy).
func (r *Runtime) Volume(v runtime.Volume) string {
	if v.Encrypted {
		return filepath.Join(r.volumeBase(v), cryptvol.DataDir)
	}
	return r.volumeBase(v)
}

func (r *Runtime) volumeBase(v runtime.Volume) string {
	for _, part := range []string{v.Cluster, v.Kind, v.Name} {
		if part == "" || part == "." || part == ".." || strings.ContainsRune(part, '/') {
			panic(fmt.Sprintf("process runtime: bad volume %+v", v))
		}
	}
	return filepath.Join(r.root, "clusters", v.Cluster, v.Kind, v.Name)
}

// VolumeSize is the size of an encrypted volume's (sparse) image.
const VolumeSize = 8 << 30

func (r *Runtime) cryptvol(v runtime.Volume) cryptvol.Volume {
	base := r.volumeBase(v)
	return cryptvol.Volume{Image: base + ".img", Mount: base, Size: VolumeSize}
}

// OpenVolume implements runtime.Placer.
func (r *Runtime) OpenVolume(ctx context.Context, v runtime.Volume, key []byte) error {
	if !v.Encrypted {
		return nil
	}
	if _, err := cryptvol.Open(ctx, r.cryptvol(v), key); err != nil {
		return fmt.Errorf("open volume %s/%s: %w", v.Cluster, v.Name, err)
	}
	return nil
}

// HasData implements runtime.Placer: the directory exists and is not
// empty. An encrypted volume must be open: its data cannot be seen
// otherwise, and "no data" would make its member be replaced.
func (r *Runtime) HasData(v runtime.Volume) (bool, error) {
	if v.Encrypted {
		if open, err := cryptvol.Mounted(r.cryptvol(v)); err != nil || !open {
			return false, fmt.Errorf("volume %s/%s is not open (%v)", v.Cluster, v.Name, err)
		}
	}
	entries, err := os.ReadDir(r.Volume(v))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("volume %s/%s: %w", v.Cluster, v.Name, err)
	}
	return len(entries) > 0, nil
}

// RemoveVolume implements runtime.Placer.
func (r *Runtime) RemoveVolume(v runtime.Volume) error {
	if v.Encrypted {
		if err := cryptvol.Remove(r.cryptvol(v)); err != nil {
			return fmt.Errorf("remove volume %s/%s: %w", v.Cluster, v.Name, err)
		}
		return nil
	}
	if err := os.RemoveAll(r.Volume(v)); err != nil {
		return fmt.Errorf("remove volume %s/%s: %w", v.Cluster, v.Name, err)
	}
	return nil
}

// RemoveVolumes implements runtime.Placer: every image
// DATA/clusters/CLUSTER/KIND/NAME.img is locked, detached and deleted.
func (r *Runtime) RemoveVolumes(cluster string) error {
	images, err := filepath.Glob(filepath.Join(r.root, "clusters", cluster, "*", "*.img"))
	if err != nil {
		return err
	}
	var errs []error
	for _, img := range images {
		v := cryptvol.Volume{Image: img, Mount: strings.TrimSuffix(img, ".img")}
		if err := cryptvol.Remove(v); err != nil {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", img, err))
		}
	}
	return errors.Join(errs...)
}
