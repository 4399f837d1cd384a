package controlplane

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"skiff.dev/skiff/internal/bundle"
	"skiff.dev/skiff/internal/door"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/pki"
	"skiff.dev/skiff/internal/runtime"
	"skiff.dev/skiff/internal/vpcnet"
)

// Specs returns the desired instances of cluster c, run from bundle b. The
// result depends only on the stored cluster and the bundle, so a spec's
// hash changes exactly when its instance must be replaced.
func (l Layout) Specs(c *model.Cluster, b bundle.Bundle) []runtime.Spec {
	var out []runtime.Spec
	for i, zone := range c.Zones {
		out = append(out, l.etcdSpec(c, b, i, zone))
	}
	for i := range c.APIServers {
		out = append(out, l.apiserverSpec(c, b, i))
	}
	for i := range 2 {
		out = append(out, l.controllerManagerSpec(c, b, i), l.schedulerSpec(c, b, i))
	}
	for i := range EndpointReplicas {
		out = append(out, l.endpointSpec(c, i))
	}
	for i := range AuthenticatorReplicas {
		out = append(out, l.authenticatorSpec(c, i))
	}
	out = append(out, l.tunnelSpec(c))
	if c.Encryption != nil {
		out = append(out, l.kmsPluginSpec(c))
	}
	return out
}

// tunnelSpec is the cluster's tunnel (`skiff tunnel`): the apiservers'
// egress into the VPC and to webhooks. One instance: its unix sockets
// cannot be shared, and a replacement takes a fraction of a second.
func (l Layout) tunnelSpec(c *model.Cluster) runtime.Spec {
	args := []string{"tunnel",
		"--name=" + c.Name,
		"--cluster-socket=" + l.EgressSocket(),
		"--controlplane-socket=" + l.ControlPlaneEgressSocket(),
		"--direct=" + hostPort(l.WebhookIP(), WebhookPort),
		"--nodes=" + l.TunnelNodesPath(),
		"--pod-range=" + model.PodCIDR,
		"--status=" + l.TunnelStatusAddr(),
	}
	if c.Network.VpcID != "" {
		args = append(args, "--netns="+vpcnet.VPCNamespace(c.Network.VpcID))
	}
	return runtime.Spec{
		ID:      c.ID + "/tunnel",
		Cluster: c.ID,
		Role:    runtime.Tunnel,
		Zone:    zoneOf(c, 0),
		Command: append([]string{l.Lean}, args...),
		Files:   []string{filepath.Dir(l.TunnelNodesPath()), EgressDir},
	}
}

// doorSpec is the cluster's door in its VPC (`skiff door`): the registry
// its nodes pull from and skiff's API. One instance: pulls and API calls
// are retried by containerd and the SDKs, and a replacement takes a
// fraction of a second.
func (l Layout) doorSpec(c *model.Cluster, d door.Door) runtime.Spec {
	return runtime.Spec{
		ID:      c.ID + "/door",
		Cluster: c.ID,
		Role:    runtime.Door,
		Zone:    zoneOf(c, 0),
		Command: []string{l.Skiff, "door",
			"--name=" + c.Name,
			"--vpc=" + d.VPC,
			"--netns=" + d.Netns,
			"--listen=" + d.Listen,
			"--dir=" + d.Dir,
			"--api=" + d.API,
			"--api-socket=" + d.APISocket,
			"--material=" + l.DoorMaterialPath(),
			"--status=" + l.DoorStatusAddr(),
		},
		Files: []string{d.Dir, filepath.Dir(l.DoorMaterialPath()), filepath.Dir(d.APISocket)},
	}
}

// authenticatorSpec is the i-th replica of the cluster's IAM token
// authenticator (`skiff authenticator`), the apiservers' token-review
// webhook; like the endpoint, it does not depend on the Kubernetes version.
func (l Layout) authenticatorSpec(c *model.Cluster, i int) runtime.Spec {
	name := "authenticator-" + strconv.Itoa(i)
	return runtime.Spec{
		ID:      c.ID + "/" + name,
		Cluster: c.ID,
		Role:    runtime.Authenticator,
		Zone:    zoneOf(c, i),
		Command: []string{l.Skiff, "authenticator",
			"--listen=" + hostPort(l.WebhookIP(), WebhookPort),
			"--cert=" + l.pki("webhook.crt"),
			"--key=" + l.pki("webhook.key"),
			"--client-ca=" + l.pki("ca.crt"),
			"--client-cn=" + webhookClientCN,
			"--material=" + l.AuthnMaterialPath(),
			"--kubeconfig=" + l.KubeconfigPath("admin"),
			"--source=" + l.EndpointIP().String(),
			"--status=" + l.AuthenticatorStatusAddr(i),
		},
		Files: []string{l.PKIDir(), filepath.Dir(l.AuthnMaterialPath()), l.KubeconfigPath("admin")},
	}
}

// endpointSpec is the i-th replica of the cluster's endpoint: skiff's own
// load balancer (`skiff endpoint`), so the endpoint does not depend on the
// skiff server. It does not depend on the Kubernetes version either: an
// upgrade does not replace it.
func (l Layout) endpointSpec(c *model.Cluster, i int) runtime.Spec {
	name := "endpoint-" + strconv.Itoa(i)
	args := []string{"endpoint",
		"--name=" + c.Name,
		"--listen=" + hostPort(l.EndpointIP(), EndpointPort),
		"--ca=" + l.pki("ca.crt"),
		"--own=" + l.EndpointIP().String(),
		"--status=" + l.EndpointStatusAddr(i),
		"--public-access=" + strconv.FormatBool(c.Network.EndpointPublicAccess),
		"--link=" + l.EndpointLinkSocket(i),
		"--peer=" + l.EndpointLinkSocket((i+1)%EndpointReplicas), // the sibling
		"--client-wait=" + ClientWait.String(),
	}
	for j := range c.APIServers {
		args = append(args, "--backend="+hostPort(l.APIServerIP(j), APIServerPort))
	}
	for _, s := range c.Network.PublicAccessCidrs {
		if p, err := netip.ParsePrefix(s); err == nil {
			args = append(args, "--public-cidr="+p.Masked().String())
		}
	}
	// The endpoint inside the cluster's VPC, for its nodes (EKS' private
	// endpoint): served as soon as the VPC's namespace exists.
	if p, err := netip.ParsePrefix(c.EndpointAddr); err == nil && c.Network.VpcID != "" {
		args = append(args, "--listen-in="+vpcnet.VPCNamespace(c.Network.VpcID)+"="+
			netip.AddrPortFrom(p.Addr(), EndpointPort).String())
	}
	return runtime.Spec{
		ID:      c.ID + "/" + name,
		Cluster: c.ID,
		Role:    runtime.Endpoint,
		Zone:    zoneOf(c, i),
		Command: append([]string{l.Lean}, args...),
		Files:   []string{l.pki("ca.crt"), EgressDir},
	}
}

func (l Layout) spec(c *model.Cluster, b bundle.Bundle, role runtime.Role, name, zone string, files []string, args ...string) runtime.Spec {
	return runtime.Spec{
		ID:      c.ID + "/" + name,
		Cluster: c.ID,
		Role:    role,
		Zone:    zone,
		Version: b.KubernetesVersion,
		Command: append([]string{b.Path(), string(role)}, args...),
		Files:   append([]string{l.PKIDir()}, files...),
		// Each instance is a host of its own, as on EKS: the apiservers'
		// identity leases (named from the hostname) must not collide.
		Hostname: name,
	}
}

func (l Layout) pki(name string) string { return pki.Path(l.PKIDir(), name, "") }

// zoneOf is the zone of the i-th instance of a role spread over the zones.
func zoneOf(c *model.Cluster, i int) string { return c.Zones[i%len(c.Zones)] }

func (l Layout) etcdMemberName(c *model.Cluster, i int) string {
	zone := c.Zones[i]
	return etcdName(zone, c.Etcd.Generations["etcd-"+zone])
}

func (l Layout) etcdPeerURL(i int) string { return "https://" + hostPort(l.EtcdIP(i), EtcdPeerPort) }

func (l Layout) etcdClientURL(i int) string {
	return "https://" + hostPort(l.EtcdIP(i), EtcdClientPort)
}

// EtcdEndpoints are the client URLs of all members.
func (l Layout) EtcdEndpoints(c *model.Cluster) []string {
	var out []string
	for i := range c.Zones {
		out = append(out, l.etcdClientURL(i))
	}
	return out
}

func (l Layout) etcdSpec(c *model.Cluster, b bundle.Bundle, i int, zone string) runtime.Spec {
	name := l.etcdMemberName(c, i)
	// --initial-cluster matters only at a member's first start, and etcd
	// matches the others by peer URL, not by name: so list the others under
	// their first-generation names. A member's spec then depends on its own
	// generation only, and replacing one member restarts no other.
	var initial []string
	for j, z := range c.Zones {
		n := etcdName(z, 0)
		if j == i {
			n = name
		}
		initial = append(initial, n+"="+l.etcdPeerURL(j))
	}
	// A first-generation member bootstraps the cluster; a replacement joins
	// it (skiff added it with MemberAdd first). Once a member has data,
	// etcd ignores both flags.
	state := "new"
	if c.Etcd.Generations["etcd-"+zone] > 0 {
		state = "existing"
	}
	ip := l.EtcdIP(i)
	dataDir := l.EtcdDataDir(name)
	if l.Etcd != nil {
		b = *l.Etcd
	}
	return l.spec(c, b, runtime.Etcd, "etcd-"+zone, zone, []string{dataDir},
		"--name="+name,
		"--data-dir="+dataDir,
		"--listen-client-urls="+l.etcdClientURL(i),
		"--advertise-client-urls="+l.etcdClientURL(i),
		"--listen-peer-urls="+l.etcdPeerURL(i),
		"--initial-advertise-peer-urls="+l.etcdPeerURL(i),
		// Metrics and /health with the client TLS and client certificates
		// (skiff's prober has one), never in clear text.
		"--listen-metrics-urls=https://"+hostPort(ip, EtcdMetricsPort),
		// The client port serves gRPC alone, so that a stopping member
		// stops it gracefully (GOAWAY; the requests in flight finish):
		// served with HTTP on one TLS port, etcd cuts every RPC at once.
		"--listen-client-http-urls=https://"+hostPort(ip, EtcdHTTPPort),
		"--initial-cluster="+strings.Join(initial, ","),
		"--initial-cluster-state="+state,
		"--initial-cluster-token="+c.ID,
		"--client-cert-auth=true",
		"--trusted-ca-file="+l.pki("etcd/ca.crt"),
		"--cert-file="+l.pki("etcd/server.crt"),
		"--key-file="+l.pki("etcd/server.key"),
		"--peer-client-cert-auth=true",
		"--peer-trusted-ca-file="+l.pki("etcd/ca.crt"),
		"--peer-cert-file="+l.pki("etcd/peer.crt"),
		"--peer-key-file="+l.pki("etcd/peer.key"),
		"--snapshot-count=10000",
		"--heartbeat-interval=100",
		"--election-timeout=1000",
		"--log-level=warn",
	)
}

func (l Layout) apiserverSpec(c *model.Cluster, b bundle.Bundle, i int) runtime.Spec {
	s := l.apiserverBase(c, b, i)
	// A collection at half the heap's growth: BenchmarkDensity, side by
	// side in one run, 352 MiB against 423–443 MiB for a cluster's two
	// apiservers, and 8.1–10.3 % against 8.7–9.0 % of a core
	// (docs/performance.md).
	s.Env = append(s.Env, apiserverGOGC)
	if e := c.Encryption; e != nil {
		s.Command = append(s.Command, "--encryption-provider-config="+l.EncryptionConfigPath())
		s.Files = append(s.Files, l.EncryptionConfigPath(), EgressDir)
		if e.Revocations > 0 { // each revocation is a new apiserver
			s.Env = append(s.Env, "SKIFF_KMS_REVOCATIONS="+strconv.Itoa(e.Revocations))
		}
	}
	return s
}

// apiserverGOGC is the apiservers' garbage collection target.
const apiserverGOGC = "GOGC=50"

func (l Layout) apiserverBase(c *model.Cluster, b bundle.Bundle, i int) runtime.Spec {
	ip := l.APIServerIP(i).String()
	webhook := l.KubeconfigPath(webhookClient)
	return l.spec(c, b, runtime.APIServer, "apiserver-"+strconv.Itoa(i), zoneOf(c, i), []string{webhook, l.EgressConfigPath(), l.AuthnConfigPath(), l.AuditPolicyPath(), l.AuditDir()},
		"--advertise-address="+ip,
		"--bind-address="+ip,
		"--secure-port="+strconv.Itoa(APIServerPort),
		"--etcd-servers="+strings.Join(l.EtcdEndpoints(c), ","),
		"--etcd-cafile="+l.pki("etcd/ca.crt"),
		"--etcd-certfile="+l.pki("apiserver-etcd-client.crt"),
		"--etcd-keyfile="+l.pki("apiserver-etcd-client.key"),
		"--tls-cert-file="+l.pki("apiserver.crt"),
		"--tls-private-key-file="+l.pki("apiserver.key"),
		"--client-ca-file="+l.pki("ca.crt"),
		"--kubelet-client-certificate="+l.pki("apiserver-kubelet-client.crt"),
		"--kubelet-client-key="+l.pki("apiserver-kubelet-client.key"),
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		// Kubelets serve with certificates the cluster CA signs (their
		// CSRs approved by skiff), and are reached through skiff's egress
		// proxy into the cluster's VPC.
		"--kubelet-certificate-authority="+l.pki("ca.crt"),
		"--egress-selector-config-file="+l.EgressConfigPath(),
		// Webhooks and aggregated APIs served by a Service are called at
		// one of its endpoints (a pod address, which the egress proxy
		// dials in the VPC), not at its ClusterIP: only nodes translate
		// ClusterIPs, and the apiservers are not on a node.
		"--enable-aggregator-routing=true",
		"--proxy-client-cert-file="+l.pki("front-proxy-client.crt"),
		"--proxy-client-key-file="+l.pki("front-proxy-client.key"),
		"--requestheader-client-ca-file="+l.pki("front-proxy-ca.crt"),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		// Pods discover the issuer in the cluster (OIDC discovery with the
		// in-cluster CA): the JWKS must be named on that same host, not on
		// the apiserver's own loopback address, the default.
		"--service-account-issuer="+ServiceAccountIssuer,
		"--service-account-jwks-uri="+ServiceAccountIssuer+"/openid/v1/jwks",
		"--service-account-key-file="+l.pki("sa.pub"),
		"--service-account-signing-key-file="+l.pki("sa.key"),
		"--service-cluster-ip-range="+model.ServiceCIDR,
		// IAM identities: skiff's webhook verifies `aws eks get-token`
		// tokens and maps them through the cluster's access entries. Results
		// are cached briefly, so sessions outlive a skiff restart and a
		// deleted access entry stops working within seconds.
		"--authentication-config="+l.AuthnConfigPath(),
		"--authentication-token-webhook-config-file="+webhook,
		"--authentication-token-webhook-version=v1",
		"--authentication-token-webhook-cache-ttl=10s",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		"--profiling=false",
		// Loopback addresses cannot be advertised in the "kubernetes" Endpoints;
		// skiff owns them (as EKS points them at its in-VPC interfaces).
		"--endpoint-reconciler-type=none",
		// A stopping apiserver (replaced for a new version or spec) fails
		// /readyz at once and keeps serving for the delay, long enough for
		// the endpoint (it checks every 200 ms) to take it out of the pool;
		// then it tells its HTTP/2 clients to go elsewhere (GOAWAY: Go's
		// client sends what it had not sent on a new connection) and
		// finishes what is in flight (apiserverStopGrace). Not
		// --shutdown-send-retry-after: its 429s carry "Retry-After: 5",
		// and clients then stalled for 5 s with other apiservers serving.
		"--shutdown-delay-duration="+apiserverShutdownDelay.String(),
		// Who calls what: the upgrade insights name the clients of
		// deprecated APIs from this log (auditPolicy keeps it to users'
		// requests; two files of 20 MB at most).
		"--audit-policy-file="+l.AuditPolicyPath(),
		"--audit-log-path="+l.AuditLogPath(i),
		"--audit-log-maxsize=20",
		"--audit-log-maxbackup=1",
		"--audit-log-format=json",
	)
}

// apiserverShutdownDelay is how long a stopping apiserver keeps serving
// while the endpoint takes it out of its pool.
const apiserverShutdownDelay = time.Second

// Controller-managers and schedulers run as leader-elected pairs in two
// zones, as on EKS: a standby takes over within one lease (the leases are
// shorter than upstream's defaults), and a killed one is also restarted.
// The leader renews every retry period and a standby looks as often: 2 s
// (upstream's) rather than 1 s halves the lease writes, which every etcd
// member syncs to disk (BenchmarkDensity, 3 idle HA clusters, one run
// each: 26 % of a core per cluster against 32 %, that run with upstream's
// 15 s lease as well).
var leaderElection = []string{
	"--leader-elect=true",
	"--leader-elect-lease-duration=8s",
	"--leader-elect-renew-deadline=6s",
	"--leader-elect-retry-period=2s",
}

func (l Layout) controllerManagerSpec(c *model.Cluster, b bundle.Bundle, i int) runtime.Spec {
	kc := l.KubeconfigPath(fmt.Sprintf("controller-manager-%d", i))
	return l.spec(c, b, runtime.ControllerManager, "controller-manager-"+strconv.Itoa(i), zoneOf(c, i), []string{kc},
		append([]string{
			"--kubeconfig=" + kc,
			"--authentication-kubeconfig=" + kc,
			"--authorization-kubeconfig=" + kc,
			"--bind-address=" + l.ControllerManagerIP(i).String(),
			"--secure-port=" + strconv.Itoa(ControllerManagerPort),
			"--client-ca-file=" + l.pki("ca.crt"),
			"--requestheader-client-ca-file=" + l.pki("front-proxy-ca.crt"),
			"--cluster-name=" + c.Name,
			"--cluster-signing-cert-file=" + l.pki("ca.crt"),
			"--cluster-signing-key-file=" + l.pki("ca.key"),
			"--root-ca-file=" + l.pki("ca.crt"),
			"--service-account-private-key-file=" + l.pki("sa.key"),
			"--service-cluster-ip-range=" + model.ServiceCIDR,
			"--use-service-account-credentials=true",
			// Each controller's client is its own service account's: the
			// manager gets or creates ~40 accounts and tokens as it starts,
			// and at the default 20 requests/s (burst 30) that took 5 s
			// before the first controller ran (every pod of a new
			// cluster waited for it).
			"--kube-api-qps=100",
			"--kube-api-burst=200",
			"--controllers=*,bootstrapsigner,tokencleaner",
			"--profiling=false",
		}, leaderElection...)...)
}

func (l Layout) schedulerSpec(c *model.Cluster, b bundle.Bundle, i int) runtime.Spec {
	kc := l.KubeconfigPath(fmt.Sprintf("scheduler-%d", i))
	return l.spec(c, b, runtime.Scheduler, "scheduler-"+strconv.Itoa(i), zoneOf(c, i), []string{kc},
		append([]string{
			"--kubeconfig=" + kc,
			"--authentication-kubeconfig=" + kc,
			"--authorization-kubeconfig=" + kc,
			"--bind-address=" + l.SchedulerIP(i).String(),
			"--secure-port=" + strconv.Itoa(SchedulerPort),
			"--profiling=false",
		}, leaderElection...)...)
}
