// Package controlplane turns a cluster's desired state (model.Cluster) into
// running instances and keeps them healthy: the reconciler of skiff's
// single-tenant, highly available control planes.
//
// A cluster is 3 etcd members (one per zone), N ≥ 2 apiservers behind one
// load-balanced endpoint, and leader-elected pairs of controller-managers
// and schedulers. Each cluster has its own PKI and its own addresses.
package controlplane

import (
	"fmt"
	"net"
	"path/filepath"
	"skiff.dev/skiff/internal/bundle"
	"strconv"

	"skiff.dev/skiff/internal/kms"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/runtime"
)

// Ports of the components on their instance address.
const (
	EndpointPort          = 443
	EndpointStatusPort    = 7080
	WebhookPort           = 443
	APIServerPort         = 6443
	EtcdClientPort        = 2379
	EtcdPeerPort          = 2380
	EtcdMetricsPort       = 2381
	EtcdHTTPPort          = 2382 // the client port's HTTP endpoints (the client port serves gRPC only)
	ControllerManagerPort = 10257
	SchedulerPort         = 10259
)

// ServiceAccountIssuer is the issuer of the cluster's service-account
// tokens: the "kubernetes" Service's name, which pods resolve and whose
// certificate they trust (the cluster CA in every service account's
// ca.crt), so OIDC discovery works from inside the cluster.
const ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

// ServiceIP is the ClusterIP of the "kubernetes" Service.
const ServiceIP = "10.100.0.1"

// Layout is where a cluster's pieces live: the addresses and volumes its
// runtime gives it (Place: every instance has an address of its own, so
// components keep their usual ports and no two clusters share a
// listener), and its configuration files under the data dir.
type Layout struct {
	Slot    int    // the cluster's place number
	Cluster string // its ID
	Dir     string // DATA/clusters/ID
	Place   runtime.Placer
	// Skiff is the skiff binary, the program of the authenticator, door
	// and kms-plugin; Lean is the program of the endpoint's replicas and
	// the tunnel (Config.InstanceBin).
	Skiff, Lean string
	// Etcd is the bundle whose etcd the members run when it is not the
	// cluster version's: etcd never moves back a minor (a cluster rolled
	// back keeps the etcd of the version it was upgraded to).
	Etcd *bundle.Bundle
	// RootKey is skiff's KMS root key file (the KMS plugin unseals the
	// cluster's key with it).
	RootKey string
	// EncryptedEtcd: the etcd members' volumes are encrypted.
	EncryptedEtcd bool
}

// NewLayout returns the layout of cluster c under dataDir, placed by p.
func NewLayout(dataDir string, c *model.Cluster, p runtime.Placer) Layout {
	return Layout{Slot: c.Slot, Cluster: c.ID, Dir: filepath.Join(dataDir, "clusters", c.ID), Place: p,
		RootKey: kms.RootKeyPath(dataDir), EncryptedEtcd: c.Etcd.EncryptedVolumes}
}

func (l Layout) addr(role runtime.Role, i int) net.IP {
	return l.Place.Addr(l.Slot, runtime.OwnAddr(role, i))
}

// EndpointIP is the address of the load balancer.
func (l Layout) EndpointIP() net.IP {
	return l.Place.Addr(l.Slot, runtime.SharedAddr(runtime.Endpoint))
}

// EndpointURL is the cluster's API endpoint.
func (l Layout) EndpointURL() string {
	return "https://" + net.JoinHostPort(l.EndpointIP().String(), strconv.Itoa(EndpointPort))
}

// EndpointReplicas is how many load balancers serve a cluster's endpoint
// (sharing its address): one may be replaced while the other serves.
const EndpointReplicas = 2

// EndpointStatusAddr is where the i-th endpoint replica reports its pool.
func (l Layout) EndpointStatusAddr(i int) string {
	return net.JoinHostPort(l.addr(runtime.Endpoint, i).String(), strconv.Itoa(EndpointStatusPort))
}

// AuthenticatorReplicas is how many authenticators serve a cluster's
// token-review webhook (sharing its address).
const AuthenticatorReplicas = 2

// AuthenticatorStatusAddr is where the i-th authenticator answers /healthz.
func (l Layout) AuthenticatorStatusAddr(i int) string {
	return net.JoinHostPort(l.addr(runtime.Authenticator, i).String(), strconv.Itoa(EndpointStatusPort))
}

// AuthnMaterialPath is the authenticator's material (keys: mode 0600).
func (l Layout) AuthnMaterialPath() string { return filepath.Join(l.Dir, "authn", "material.json") }

// WebhookIP is the address of the token-review webhook (the cluster's
// authenticators) for the cluster's apiservers.
func (l Layout) WebhookIP() net.IP {
	return l.Place.Addr(l.Slot, runtime.SharedAddr(runtime.Authenticator))
}

// WebhookURL is the token-review webhook's URL.
func (l Layout) WebhookURL() string {
	return "https://" + net.JoinHostPort(l.WebhookIP().String(), strconv.Itoa(WebhookPort)) + "/authenticate"
}

// EtcdIP is the address of the etcd member with index i (zone i).
func (l Layout) EtcdIP(i int) net.IP { return l.addr(runtime.Etcd, i) }

// APIServerIP is the address of apiserver i.
func (l Layout) APIServerIP(i int) net.IP { return l.addr(runtime.APIServer, i) }

// ControllerManagerIP is the address of controller-manager i.
func (l Layout) ControllerManagerIP(i int) net.IP { return l.addr(runtime.ControllerManager, i) }

// SchedulerIP is the address of scheduler i.
func (l Layout) SchedulerIP(i int) net.IP { return l.addr(runtime.Scheduler, i) }

// PKIDir holds the cluster's certificates and keys.
func (l Layout) PKIDir() string { return filepath.Join(l.Dir, "pki") }

// KubeconfigPath is the kubeconfig of a client ("admin", "controller-manager-0", …).
func (l Layout) KubeconfigPath(name string) string {
	return filepath.Join(l.Dir, "kubeconfig", name+".kubeconfig")
}

// EtcdVolume is the volume of an etcd member of a generation.
func (l Layout) EtcdVolume(member string) runtime.Volume {
	return runtime.Volume{Cluster: l.Cluster, Kind: "etcd", Name: member, Encrypted: l.EncryptedEtcd}
}

// EtcdDataDir is the data dir of an etcd member of a generation.
func (l Layout) EtcdDataDir(member string) string { return l.Place.Volume(l.EtcdVolume(member)) }

// etcdName is the member name of zone index i at generation gen: "etcd-a",
// then "etcd-a-1", "etcd-a-2" for its replacements.
func etcdName(zone string, gen int) string {
	if gen == 0 {
		return "etcd-" + zone
	}
	return fmt.Sprintf("etcd-%s-%d", zone, gen)
}

func hostPort(ip net.IP, port int) string { return net.JoinHostPort(ip.String(), strconv.Itoa(port)) }
