package runtime

import (
	"context"
	"net"
)

// Placer decides where a cluster's instances live: the addresses they
// listen on and the volumes that keep their data. The reconciler names
// what it needs (the cluster's place number, "apiserver 1's address",
// "etcd-a's volume") and never computes a host address or path itself; the
// process runtime answers with loopback addresses and host directories, a
// runtime on a host cluster would answer with pod addresses and persistent
// volumes.
type Placer interface {
	// Addr is the IP address a of the cluster whose place number is slot.
	// Distinct addresses of one cluster, and the addresses of distinct
	// places, never coincide.
	Addr(slot int, a Addr) net.IP
	// SlotFree reports whether a new cluster may take place number slot:
	// nothing on the host listens on its addresses (another skiff, or an
	// orphan of a deleted data dir). The store hands out place numbers;
	// the runtime vetoes the busy ones.
	SlotFree(slot int) bool
	// Volume is the path under which volume v is mounted for the instances
	// that name it.
	Volume(v Volume) string
	// HasData reports whether volume v holds anything: a member whose
	// data survived restarts in place, one whose data is gone must rejoin.
	HasData(v Volume) (bool, error)
	// OpenVolume makes encrypted volume v usable with key (64 bytes):
	// made if missing (empty), attached and unlocked if not. A volume
	// that is not Encrypted needs nothing. Idempotent, also after a crash
	// or a host reboot.
	OpenVolume(ctx context.Context, v Volume, key []byte) error
	// RemoveVolume deletes volume v and its data (locked first, if
	// encrypted). Removing a missing volume is not an error.
	RemoveVolume(v Volume) error
	// RemoveVolumes removes every volume of cluster, open or not: before
	// its files go.
	RemoveVolumes(cluster string) error
}

// Addr names an address of a cluster: the one its replicas of Role share
// (Index Shared: the endpoint, the token-review webhook), or instance
// Index's own.
type Addr struct {
	Role  Role
	Index int
}

// Shared is the Index of an address a role's replicas share.
const Shared = -1

// SharedAddr is the address role's replicas share.
func SharedAddr(role Role) Addr { return Addr{Role: role, Index: Shared} }

// OwnAddr is the address of role's instance i.
func OwnAddr(role Role, i int) Addr { return Addr{Role: role, Index: i} }

// Volume names a cluster's persistent volume: Kind groups the volumes of
// one component ("etcd"), Name is one of them ("etcd-a", "etcd-a-1").
type Volume struct {
	Cluster string
	Kind    string
	Name    string
	// Encrypted volumes keep their data encrypted at rest (EKS' encrypted
	// EBS volumes): readable only between OpenVolume with their key and
	// their removal.
	Encrypted bool
}
