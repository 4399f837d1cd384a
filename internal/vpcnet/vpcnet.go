// Package vpcnet realizes VPCs on this host. Each VPC is a network
// namespace ("skiff-vpc-…") holding one Linux bridge with the gateway
// address (.1) of each of its subnets and the VPC's service address
// (base + 2, where skiff serves its AWS API and the clusters' private
// endpoints). Each node is a namespace of its own ("skiff-n-…") with one
// veth on the bridge, an address of its subnet and routes to the VPC's
// range and to the pod range via its gateway, and no other route; the VPC
// namespace routes each node's pod range to the node (as a VPC route
// table with routes to instances), so pods on different nodes talk.
//
// Nothing here touches the host's own namespace: VPC ranges may overlap
// (every account has 172.31.0.0/16), no VPC has a link to the host or its
// uplink, and a VPC namespace's default route is unreachable. Deleting a
// namespace deletes its links.
package vpcnet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// NetnsDir is where iproute2 keeps named namespaces.
const NetnsDir = "/run/netns"

// Namespace name prefixes.
const (
	vpcPrefix  = "skiff-vpc-"
	nodePrefix = "skiff-n-"
	bridge     = "br0"
)

// VPC is what a VPC's namespace is made from.
type VPC struct {
	ID      string // vpc-…
	CIDR    netip.Prefix
	Subnets []netip.Prefix
	// Owner marks the namespace (its bridge's alias) with the skiff that
	// made it, so that skiff alone may sweep it as an orphan.
	Owner string
}

// VPCNamespace is the namespace of a VPC.
func VPCNamespace(vpcID string) string { return vpcPrefix + strings.TrimPrefix(vpcID, "vpc-") }

// NodeNamespace is the namespace of a node.
func NodeNamespace(nodeID string) string { return nodePrefix + nodeID }

// NamespacePath is the bind-mounted namespace file of name.
func NamespacePath(name string) string { return filepath.Join(NetnsDir, name) }

// ServiceAddr is the VPC's service address: base + 2, as AWS' resolver.
func ServiceAddr(vpc netip.Prefix) netip.Addr {
	return vpc.Masked().Addr().Next().Next()
}

// Gateway is a subnet's gateway: base + 1.
func Gateway(subnet netip.Prefix) netip.Addr { return subnet.Masked().Addr().Next() }

func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// ipOK is ip that tolerates "already exists".
func ipOK(ctx context.Context, args ...string) error {
	err := ip(ctx, args...)
	if err != nil && (strings.Contains(err.Error(), "File exists") || strings.Contains(err.Error(), "already exists") || strings.Contains(err.Error(), "already assigned")) {
		return nil
	}
	return err
}

func exists(ns string) bool {
	_, err := os.Stat(NamespacePath(ns))
	return err == nil
}

// EnsureVPC creates or completes a VPC's namespace.
func EnsureVPC(ctx context.Context, v VPC) error {
	ns := VPCNamespace(v.ID)
	if !exists(ns) {
		if err := ipOK(ctx, "netns", "add", ns); err != nil {
			return fmt.Errorf("create VPC %s: %w", v.ID, err)
		}
	}
	steps := [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "add", bridge, "type", "bridge"},
		// A bridge without a set address takes its ports' lowest MAC and
		// changes it as nodes come and go, which strands the nodes' ARP
		// entries for the gateways and the service address: fix it.
		{"-n", ns, "link", "set", bridge, "address", bridgeMAC(v.ID)},
		{"-n", ns, "link", "set", bridge, "up"},
		{"-n", ns, "route", "replace", "unreachable", "default"},
		{"-n", ns, "addr", "add", ServiceAddr(v.CIDR).String() + "/32", "dev", bridge},
	}
	if v.Owner != "" {
		steps = append(steps, []string{"-n", ns, "link", "set", bridge, "alias", ownerPrefix + v.Owner})
	}
	for _, sn := range v.Subnets {
		steps = append(steps, []string{"-n", ns, "addr", "add", netip.PrefixFrom(Gateway(sn), sn.Bits()).String(), "dev", bridge})
	}
	for _, s := range steps {
		if err := ipOK(ctx, s...); err != nil {
			return fmt.Errorf("set up VPC %s: %w", v.ID, err)
		}
	}
	// Route between the VPC's subnets (inside its namespace only).
	if err := sysctlIn(ns, "net/ipv4/ip_forward", "1"); err != nil {
		return fmt.Errorf("set up VPC %s: %w", v.ID, err)
	}
	return nil
}

const ownerPrefix = "skiff-owner:"

// bridgeMAC is a VPC bridge's fixed, locally administered address.
func bridgeMAC(vpcID string) string {
	sum := sha256.Sum256([]byte(vpcID))
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", sum[0], sum[1], sum[2], sum[3], sum[4])
}

// OwnerOf returns the owner mark of a VPC's namespace ("" if none).
func OwnerOf(ctx context.Context, vpcID string) string {
	out, err := exec.CommandContext(ctx, "ip", "-n", VPCNamespace(vpcID), "-o", "link", "show", bridge).Output()
	if err != nil {
		return ""
	}
	_, after, ok := strings.Cut(string(out), "alias "+ownerPrefix)
	if !ok {
		return ""
	}
	return strings.Fields(after)[0]
}

// DeleteVPC removes a VPC's namespace (and every link in it).
func DeleteVPC(ctx context.Context, vpcID string) error {
	return deleteNS(ctx, VPCNamespace(vpcID))
}

func deleteNS(ctx context.Context, ns string) error {
	if !exists(ns) {
		return nil
	}
	if err := ip(ctx, "netns", "del", ns); err != nil && exists(ns) {
		return err
	}
	return nil
}

// Attachment places a node in a VPC.
type Attachment struct {
	VPC    VPC
	NodeID string
	Addr   netip.Prefix // the node's address with its subnet's length
	// PodCIDR is the node's pod range: the VPC's router sends it to the
	// node. Pods is the range of every node's pods, which the node sends
	// to the VPC's router (so pods on different nodes talk, routed).
	PodCIDR, Pods netip.Prefix
}

// vethName is the VPC-side name of a node's veth (15 characters at most).
func vethName(nodeID string) string {
	sum := sha256.Sum256([]byte(nodeID))
	return "vn" + hex.EncodeToString(sum[:])[:12]
}

// NameNode makes the network namespace in file (a machine's, where the
// runtime keeps it) node nodeID's, where `ip netns` and AttachNode find
// it. It reports whether the name is new: a node whose namespace changed
// (rebuilt) must be attached again.
func NameNode(ctx context.Context, nodeID, file string) (bool, error) {
	nns := NodeNamespace(nodeID)
	named := NamespacePath(nns)
	var a, b unix.Stat_t
	if unix.Stat(file, &a) != nil {
		return false, fmt.Errorf("name node %s's network namespace: %s is missing", nodeID, file)
	}
	if unix.Stat(named, &b) == nil && a.Dev == b.Dev && a.Ino == b.Ino {
		return false, nil
	}
	if exists(nns) {
		if err := ip(ctx, "netns", "delete", nns); err != nil {
			return false, fmt.Errorf("drop node %s's stale network namespace: %w", nodeID, err)
		}
	}
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return false, err
	}
	if err := os.WriteFile(named, nil, 0o444); err != nil {
		return false, err
	}
	if err := unix.Mount(file, named, "", unix.MS_BIND, ""); err != nil {
		os.Remove(named)
		return false, fmt.Errorf("name node %s's network namespace: %w", nodeID, err)
	}
	return true, nil
}

// AttachNode creates or completes a node's namespace, attached to its
// VPC's bridge. The VPC must exist.
func AttachNode(ctx context.Context, a Attachment) error {
	vns, nns := VPCNamespace(a.VPC.ID), NodeNamespace(a.NodeID)
	if !exists(vns) {
		return fmt.Errorf("attach node %s: VPC %s has no namespace", a.NodeID, a.VPC.ID)
	}
	if !exists(nns) {
		if err := ipOK(ctx, "netns", "add", nns); err != nil {
			return fmt.Errorf("attach node %s: %w", a.NodeID, err)
		}
	}
	veth := vethName(a.NodeID)
	if err := ip(ctx, "-n", nns, "link", "show", "eth0"); err != nil {
		// A peer left from an earlier namespace of the node (rebuilt) goes.
		ip(ctx, "-n", vns, "link", "del", veth)
		if err := ip(ctx, "-n", vns, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", nns); err != nil {
			return fmt.Errorf("attach node %s: %w", a.NodeID, err)
		}
	}
	gw := Gateway(a.Addr.Masked())
	steps := [][]string{
		{"-n", vns, "link", "set", veth, "master", bridge, "up"},
		{"-n", nns, "link", "set", "lo", "up"},
		{"-n", nns, "addr", "add", a.Addr.String(), "dev", "eth0"},
		{"-n", nns, "link", "set", "eth0", "up"},
		{"-n", nns, "route", "replace", a.VPC.CIDR.Masked().String(), "via", gw.String(), "dev", "eth0"},
	}
	if a.PodCIDR.IsValid() {
		steps = append(steps,
			[]string{"-n", nns, "route", "replace", a.Pods.Masked().String(), "via", gw.String(), "dev", "eth0"},
			[]string{"-n", vns, "route", "replace", a.PodCIDR.Masked().String(), "via", a.Addr.Addr().String(), "dev", bridge})
	}
	for _, s := range steps {
		if err := ipOK(ctx, s...); err != nil {
			return fmt.Errorf("attach node %s: %w", a.NodeID, err)
		}
	}
	return nil
}

// DetachNode removes a node's namespace (its veth goes with it) and the
// routes to its pods in its VPC's namespace.
func DetachNode(ctx context.Context, nodeID string) error {
	nns := NodeNamespace(nodeID)
	if !exists(nns) {
		return nil
	}
	if addr := nodeAddr(ctx, nns); addr != "" {
		vpcs, _, err := Namespaces()
		if err != nil {
			return err
		}
		for _, vpc := range vpcs {
			vns := VPCNamespace(vpc)
			if ip(ctx, "-n", vns, "link", "show", vethName(nodeID)) != nil {
				continue
			}
			if err := dropRoutesVia(ctx, vns, addr); err != nil {
				return fmt.Errorf("detach node %s: %w", nodeID, err)
			}
		}
	}
	return deleteNS(ctx, nns)
}

// nodeAddr is the address of a node namespace's eth0 ("" if none).
func nodeAddr(ctx context.Context, nns string) string {
	out, err := exec.CommandContext(ctx, "ip", "-n", nns, "-4", "-o", "addr", "show", "dev", "eth0").Output()
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "inet" {
			a, _, _ := strings.Cut(f[i+1], "/")
			return a
		}
	}
	return ""
}

// dropRoutesVia deletes the routes of namespace ns whose next hop is addr.
func dropRoutesVia(ctx context.Context, ns, addr string) error {
	out, err := exec.CommandContext(ctx, "ip", "-n", ns, "-4", "route", "show", "via", addr).Output()
	if err != nil {
		return fmt.Errorf("list routes via %s: %w", addr, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			if err := ip(ctx, "-n", ns, "route", "del", f[0], "via", addr); err != nil {
				return err
			}
		}
	}
	return nil
}

// Namespaces lists skiff's VPC and node namespaces on this host, by ID
// (VPC IDs with their "vpc-" prefix).
func Namespaces() (vpcs, nodes []string, err error) {
	entries, err := os.ReadDir(NetnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e.Name(), vpcPrefix):
			vpcs = append(vpcs, "vpc-"+strings.TrimPrefix(e.Name(), vpcPrefix))
		case strings.HasPrefix(e.Name(), nodePrefix):
			nodes = append(nodes, strings.TrimPrefix(e.Name(), nodePrefix))
		}
	}
	return vpcs, nodes, nil
}

// In runs fn on an OS thread switched into namespace ns; sockets fn
// creates stay in ns. The thread is discarded if it cannot switch back.
func In(ns string, fn func() error) error {
	target, err := os.Open(NamespacePath(ns))
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", ns, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			goruntime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			goruntime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, err) // leave the thread locked: it dies with this goroutine
			return
		}
		goruntime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// ListenIn listens on addr inside namespace ns.
func ListenIn(ns, addr string) (net.Listener, error) {
	var ln net.Listener
	err := In(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

// DialIn connects to addr from inside namespace ns.
func DialIn(ctx context.Context, ns, addr string) (net.Conn, error) {
	var c net.Conn
	err := In(ns, func() error {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}

func sysctlIn(ns, key, value string) error {
	return In(ns, func() error {
		// /proc/sys/net is the namespace of the task (thread) that opens it.
		return os.WriteFile("/proc/sys/"+key, []byte(value), 0o644)
	})
}

// AddAddr puts an address on a VPC's bridge (a cluster's endpoint).
func AddAddr(ctx context.Context, ns string, addr netip.Prefix) error {
	return ipOK(ctx, "-n", ns, "addr", "add", addr.String(), "dev", bridge)
}
