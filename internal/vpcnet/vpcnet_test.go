package vpcnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func id(t *testing.T) string {
	b := make([]byte, 4)
	rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

// TestVPCs builds two VPCs with the same range and nodes in them, in
// namespaces only: nodes of one VPC reach each other across subnets, not
// the other VPC's nodes, and have no route off the machine.
func TestVPCs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("vpcnet needs root (network namespaces); run the tests as root, as the README says")
	}
	ctx := context.Background()
	cidr := netip.MustParsePrefix("172.31.0.0/16")
	subA, subB := netip.MustParsePrefix("172.31.0.0/20"), netip.MustParsePrefix("172.31.16.0/20")
	v1 := VPC{ID: "vpc-" + id(t), CIDR: cidr, Subnets: []netip.Prefix{subA, subB}}
	v2 := VPC{ID: "vpc-" + id(t), CIDR: cidr, Subnets: []netip.Prefix{subA, subB}}
	n1, n2, n3 := id(t), id(t), id(t)
	t.Cleanup(func() {
		for _, n := range []string{n1, n2, n3} {
			DetachNode(ctx, n)
		}
		DeleteVPC(ctx, v1.ID)
		DeleteVPC(ctx, v2.ID)
		vpcs, nodes, _ := Namespaces()
		for _, x := range append(vpcs, nodes...) {
			if slices.Contains([]string{v1.ID, v2.ID, n1, n2, n3}, x) {
				t.Errorf("namespace of %s left", x)
			}
		}
	})
	for range 2 { // idempotent
		for _, v := range []VPC{v1, v2} {
			if err := EnsureVPC(ctx, v); err != nil {
				t.Fatal(err)
			}
		}
		for _, a := range []Attachment{
			{VPC: v1, NodeID: n1, Addr: netip.MustParsePrefix("172.31.0.10/20")},
			{VPC: v1, NodeID: n2, Addr: netip.MustParsePrefix("172.31.16.10/20")},
			{VPC: v2, NodeID: n3, Addr: netip.MustParsePrefix("172.31.16.11/20")},
		} {
			if err := AttachNode(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The bridge keeps its own address whatever ports join (nodes' ARP
	// entries for the gateway and service address stay valid).
	if out, err := exec.Command("ip", "-n", VPCNamespace(v1.ID), "-o", "link", "show", "br0").Output(); err != nil || !strings.Contains(string(out), bridgeMAC(v1.ID)) {
		t.Errorf("bridge of %s: %v %s; want address %s", v1.ID, err, out, bridgeMAC(v1.ID))
	}
	ln, err := ListenIn(NodeNamespace(n1), "172.31.0.10:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	dial := func(from string) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		c, err := DialIn(ctx, NodeNamespace(from), "172.31.0.10:7000")
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(n2); err != nil {
		t.Errorf("node in subnet b cannot reach node in subnet a of the same VPC: %v", err)
	}
	if err := dial(n3); err == nil {
		t.Errorf("node of another VPC reached it")
	}
	// Routes only: never a packet to an outside address.
	for _, ns := range []string{NodeNamespace(n1), VPCNamespace(v1.ID)} {
		out, err := exec.Command("ip", "-n", ns, "route", "get", "192.0.2.1").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "unreachable") && !strings.Contains(string(out), "No route to host") {
			t.Errorf("%s has a route out: %s %v", ns, out, err)
		}
	}
	if out, err := exec.Command("ip", "-n", NodeNamespace(n1), "route", "get", "172.31.16.10").CombinedOutput(); err != nil || !strings.Contains(string(out), "via 172.31.0.1") {
		t.Errorf("route to the other subnet: %s %v", out, err)
	}
}
