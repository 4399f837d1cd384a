package controlplane

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"strconv"

	"skiff.dev/skiff/internal/runtime"
)

// EgressDir holds the clusters' egress sockets (a unix socket's path is
// limited to 108 bytes, which a data dir may exceed).
const EgressDir = "/run/skiff-egress"

// EgressSocket is where the cluster's tunnel serves its egress proxy: the
// apiservers reach kubelets and pods (kubectl logs, exec, port-forward,
// proxy) through it, as EKS' control plane reaches nodes through its
// cross-account interfaces in the cluster's VPC. The apiservers run on the
// host; nodes and pods live in the VPC's namespace, which has no link to
// the host: the proxy dials from inside that namespace.
func (l Layout) EgressSocket() string {
	sum := sha256.Sum256([]byte(l.Dir))
	return filepath.Join(EgressDir, hex.EncodeToString(sum[:10])+".sock")
}

// ControlPlaneEgressSocket is where the cluster's tunnel serves the
// apiservers' "controlplane" egress: the token-review webhook and every webhook given
// by URL (admission, conversion, authentication, audit). Only the
// cluster's own authenticator is dialled from the host; any other URL is
// dialled inside the cluster's VPC, as the cluster's traffic is, so a
// tenant's webhook URL cannot reach the host (127.x, skiff's API) or
// another cluster.
func (l Layout) ControlPlaneEgressSocket() string {
	sum := sha256.Sum256([]byte(l.Dir))
	return filepath.Join(EgressDir, hex.EncodeToString(sum[:10])+"-cp.sock")
}

// EndpointLinkSocket is where the i-th endpoint replica listens for its
// sibling (package lb's Pair).
func (l Layout) EndpointLinkSocket(i int) string {
	sum := sha256.Sum256([]byte(l.Dir))
	return filepath.Join(EgressDir, hex.EncodeToString(sum[:10])+"-ep"+strconv.Itoa(i)+".sock")
}

// Sockets are every unix socket the cluster's instances make in
// EgressDir, for removal with the cluster.
func (l Layout) Sockets() []string {
	out := []string{l.EgressSocket(), l.ControlPlaneEgressSocket()}
	for i := range EndpointReplicas {
		out = append(out, l.EndpointLinkSocket(i))
	}
	return append(out, l.KMSSocket())
}

// DoorMaterialPath is the door's material (door.Material).
func (l Layout) DoorMaterialPath() string {
	return filepath.Join(l.Dir, "door", "material.json")
}

// DoorStatusAddr is where the cluster's door answers /healthz.
func (l Layout) DoorStatusAddr() string {
	return net.JoinHostPort(l.addr(runtime.Door, 0).String(), strconv.Itoa(EndpointStatusPort))
}

// TunnelNodesPath lists the cluster's node addresses for its tunnel.
func (l Layout) TunnelNodesPath() string { return filepath.Join(l.Dir, "tunnel", "nodes.json") }

// TunnelStatusAddr is where the cluster's tunnel answers /healthz.
func (l Layout) TunnelStatusAddr() string {
	return net.JoinHostPort(l.addr(runtime.Tunnel, 0).String(), strconv.Itoa(EndpointStatusPort))
}

// EgressConfigPath is the apiservers' EgressSelectorConfiguration.
func (l Layout) EgressConfigPath() string { return filepath.Join(l.Dir, "egress-selector.yaml") }

// egressConfig sends the apiservers' "cluster" traffic (kubelets, pods,
// services) through the egress socket with HTTP CONNECT, and their
// "controlplane" traffic (webhooks by URL, skiff's authenticator among
// them) through the control-plane socket; etcd goes direct.
func (l Layout) egressConfig() string {
	return fmt.Sprintf(`apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: %s
- name: controlplane
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: %s
- name: etcd
  connection:
    proxyProtocol: Direct
`, l.EgressSocket(), l.ControlPlaneEgressSocket())
}
