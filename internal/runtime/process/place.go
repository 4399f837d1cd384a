package process

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"skiff.dev/skiff/internal/runtime"
)

// Placement of the process runtime: every cluster has a loopback /24 of its
// own, 127.1.SLOT.0/24, in which each instance has an address (so every
// component keeps its usual port and no two clusters share a listener),
// and its volumes are directories under DATA/clusters/ID.

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
	case slot < 1 || slot > 254:
		panic(fmt.Sprintf("process runtime: place number %d out of range", slot))
	case !ok:
		panic(fmt.Sprintf("process runtime: no addresses for role %q", a.Role))
	case a.Index == runtime.Shared && h.shared != 0:
		return net.IPv4(127, 1, byte(slot), byte(h.shared)).To4()
	case a.Index < 0 || a.Index >= h.max:
		panic(fmt.Sprintf("process runtime: no address %d for role %q", a.Index, a.Role))
	}
	return net.IPv4(127, 1, byte(slot), byte(h.first+a.Index)).To4()
}

// SlotFree implements runtime.Placer: no socket of the host's network
// namespace listens on an address of the slot's /24 (any port).
func (r *Runtime) SlotFree(slot int) bool {
	busy, err := listeningIn(net.IPv4(127, 1, byte(slot), 0).To4())
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

// Volume implements runtime.Placer: DATA/clusters/CLUSTER/KIND/NAME.
func (r *Runtime) Volume(v runtime.Volume) string {
	for _, part := range []string{v.Cluster, v.Kind, v.Name} {
		if part == "" || part == "." || part == ".." || strings.ContainsRune(part, '/') {
			panic(fmt.Sprintf("process runtime: bad volume %+v", v))
		}
	}
	return filepath.Join(r.root, "clusters", v.Cluster, v.Kind, v.Name)
}

// HasData implements runtime.Placer: the directory exists and is not empty.
func (r *Runtime) HasData(v runtime.Volume) (bool, error) {
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
	if err := os.RemoveAll(r.Volume(v)); err != nil {
		return fmt.Errorf("remove volume %s/%s: %w", v.Cluster, v.Name, err)
	}
	return nil
}
