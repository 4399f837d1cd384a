package controlplane

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/pki"
)

// client is one kubeconfig with a client certificate.
type client struct {
	name   string // kubeconfig and cert file stem
	cn     string
	orgs   []string
	server string
}

func (l Layout) clients(c *model.Cluster) []client {
	out := []client{
		{name: "admin", cn: "kubernetes-admin", orgs: []string{"system:masters"}, server: l.EndpointURL()},
		// The apiservers' client of the token-review webhook.
		{name: webhookClient, cn: webhookClientCN, server: l.WebhookURL()},
	}
	// Controller-managers and schedulers talk to the apiserver of their own
	// zone (as kubeadm's do to localhost): they keep working while skiff,
	// which runs the load balancer, restarts.
	for i := range 2 {
		api := "https://" + hostPort(l.APIServerIP(i%c.APIServers), APIServerPort)
		out = append(out,
			client{name: fmt.Sprintf("controller-manager-%d", i), cn: "system:kube-controller-manager", server: api},
			client{name: fmt.Sprintf("scheduler-%d", i), cn: "system:kube-scheduler", server: api})
	}
	return out
}

// pkiSpec lists every leaf certificate of cluster c.
func (l Layout) pkiSpec(c *model.Cluster) pki.Spec {
	apiIPs := []net.IP{l.EndpointIP(), net.ParseIP(ServiceIP)}
	for i := range c.APIServers {
		apiIPs = append(apiIPs, l.APIServerIP(i))
	}
	if p, err := netip.ParsePrefix(c.EndpointAddr); err == nil {
		apiIPs = append(apiIPs, net.IP(p.Addr().AsSlice())) // the endpoint inside the VPC
	}
	// Connections between loopback addresses leave from 127.0.0.1, and etcd
	// checks a peer's certificate against its source address. Trust comes
	// from the per-cluster etcd CA, not from the address.
	etcdIPs := []net.IP{net.IPv4(127, 0, 0, 1)}
	for i := range c.Zones {
		etcdIPs = append(etcdIPs, l.EtcdIP(i))
	}
	spec := pki.Spec{Certs: []pki.Cert{
		{Name: "apiserver", CA: pki.ClusterCA, CN: "kube-apiserver", IPs: apiIPs, Server: true,
			DNS: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"}},
		{Name: "webhook", CA: pki.ClusterCA, CN: "skiff-authn-webhook", IPs: []net.IP{l.WebhookIP()}, Server: true},
		{Name: "apiserver-kubelet-client", CA: pki.ClusterCA, CN: "kube-apiserver-kubelet-client", Orgs: []string{"system:masters"}, Client: true},
		{Name: "front-proxy-client", CA: pki.FrontProxyCA, CN: "front-proxy-client", Client: true},
		{Name: "apiserver-etcd-client", CA: pki.EtcdCA, CN: "kube-apiserver-etcd-client", Client: true},
		{Name: "etcd/skiff-client", CA: pki.EtcdCA, CN: "skiff-etcd-client", Client: true},
		{Name: "etcd/server", CA: pki.EtcdCA, CN: "etcd-server", IPs: etcdIPs, Server: true, Client: true},
		{Name: "etcd/peer", CA: pki.EtcdCA, CN: "etcd-peer", IPs: etcdIPs, Server: true, Client: true},
	}}
	for _, cl := range l.clients(c) {
		spec.Certs = append(spec.Certs, pki.Cert{Name: "clients/" + cl.name, CA: pki.ClusterCA, CN: cl.cn, Orgs: cl.orgs, Client: true})
	}
	return spec
}

// EnsurePKI creates the cluster's PKI and kubeconfigs where missing.
func (l Layout) EnsurePKI(c *model.Cluster) error {
	dir := l.PKIDir()
	if err := pki.Ensure(dir, l.pkiSpec(c)); err != nil {
		return fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	ca, err := os.ReadFile(pki.Path(dir, string(pki.ClusterCA), ".crt"))
	if err != nil {
		return err
	}
	for _, cl := range l.clients(c) {
		cert, err := os.ReadFile(pki.Path(dir, "clients/"+cl.name, ".crt"))
		if err != nil {
			return err
		}
		key, err := os.ReadFile(pki.Path(dir, "clients/"+cl.name, ".key"))
		if err != nil {
			return err
		}
		cfg := Kubeconfig(c.Name, cl.server, ca, cert, key)
		path := l.KubeconfigPath(cl.name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		data, err := clientcmd.Write(*cfg)
		if err != nil {
			return err
		}
		if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
			continue
		}
		if err := os.WriteFile(path+".tmp", data, 0o600); err != nil {
			return err
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			return err
		}
	}
	if err := writeIfChanged(l.AuthnConfigPath(), []byte(authnConfig)); err != nil {
		return err
	}
	if err := os.MkdirAll(l.AuditDir(), 0o700); err != nil {
		return err
	}
	if err := writeIfChanged(l.AuditPolicyPath(), []byte(auditPolicy)); err != nil {
		return err
	}
	return writeIfChanged(l.EgressConfigPath(), []byte(l.egressConfig()))
}

// AuthnConfigPath is the apiservers' AuthenticationConfiguration.
func (l Layout) AuthnConfigPath() string { return filepath.Join(l.Dir, "authentication.yaml") }

// authnConfig lets anonymous requests reach the health and version
// endpoints only (the load balancer's and skiff's probes are anonymous);
// anything else without credentials is 401, not a request RBAC must
// refuse (issue 15: no --anonymous-auth beyond what the checks need).
const authnConfig = `apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
anonymous:
  enabled: true
  conditions:
  - path: /livez
  - path: /readyz
  - path: /healthz
  - path: /version
`

// AuditPolicyPath is the apiservers' audit policy; AuditDir holds their
// audit logs, AuditLogPath(i) apiserver i's.
func (l Layout) AuditPolicyPath() string { return filepath.Join(l.Dir, "audit-policy.yaml") }
func (l Layout) AuditDir() string        { return filepath.Join(l.Dir, "audit") }
func (l Layout) AuditLogPath(i int) string {
	return filepath.Join(l.AuditDir(), fmt.Sprintf("apiserver-%d.log", i))
}

// auditPolicy records the metadata of users' requests (who, what, which
// API version, the deprecation annotations), not the control plane's
// own, the nodes', or the chatter of leases and events: the upgrade
// insights read it for the clients of deprecated APIs.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
- level: None
  users: ["system:apiserver", "system:kube-controller-manager", "system:kube-scheduler", "system:kube-proxy", "kubernetes-admin"]
- level: None
  userGroups: ["system:nodes", "system:serviceaccounts:kube-system"]
- level: None
  resources:
  - group: coordination.k8s.io
    resources: ["leases"]
  - group: ""
    resources: ["events"]
  - group: events.k8s.io
    resources: ["events"]
- level: None
  nonResourceURLs: ["/livez*", "/readyz*", "/healthz*", "/version", "/metrics", "/openapi/*", "/api", "/api/*", "/apis", "/apis/*"]
- level: Metadata
`

// writeIfChanged replaces path's content atomically unless it is data.
func writeIfChanged(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	}
	if err := os.WriteFile(path+".tmp", data, 0o600); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// CAPEM returns the cluster CA certificate.
func (l Layout) CAPEM() ([]byte, error) {
	return os.ReadFile(pki.Path(l.PKIDir(), string(pki.ClusterCA), ".crt"))
}

// Kubeconfig builds a kubeconfig with embedded client certificate.
func Kubeconfig(cluster, server string, ca, cert, key []byte) *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[cluster] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos[cluster] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts[cluster] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: cluster}
	cfg.CurrentContext = cluster
	return cfg
}
