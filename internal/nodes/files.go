package nodes

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"

	"skiff.dev/skiff/internal/images"
	"skiff.dev/skiff/internal/model"
)

// RegistryPort is where skiff's registry listens on a VPC's service address.
const RegistryPort = 5000

// APIPort is where skiff's AWS API listens on a VPC's service address.
const APIPort = 80

// ClusterDNS is the ClusterIP CoreDNS will have.
const ClusterDNS = "10.100.0.10"

// PodRange holds every node's pods: each node gets a /26 of it chosen by
// the low 16 bits of its address (unique within a VPC of /16 or smaller).
var PodRange = netip.MustParsePrefix(model.PodCIDR)

var podCIDRBase = PodRange.Addr()

// PodCIDR is the pod range of the node with address addr.
func PodCIDR(addr netip.Addr) netip.Prefix {
	a := addr.As4()
	low := uint32(binary.BigEndian.Uint16(a[2:]))
	b := podCIDRBase.As4()
	n := binary.BigEndian.Uint32(b[:]) + low<<6
	var out [4]byte
	binary.BigEndian.PutUint32(out[:], n)
	return netip.PrefixFrom(netip.AddrFrom4(out), 26)
}

// NodeName is the Kubernetes name of the node with address addr, as EC2's
// private DNS names in us-east-1.
func NodeName(addr netip.Addr, region string) string {
	domain := region + ".compute.internal"
	if region == "us-east-1" {
		domain = "ec2.internal"
	}
	return "ip-" + strings.ReplaceAll(addr.String(), ".", "-") + "." + domain
}

// paths of one node. A node in a system container (userns) sees its
// files at fixed paths of its own root (/etc/skiff: its configuration,
// read-only; /var, /run: its own); the methods return the paths the
// node's programs see, and host maps them to this machine's.
type paths struct {
	dir    string // DATA/clusters/ID/nodes/NODEID
	run    string // RunDir/NODEID
	userns bool
}

// etc is where the node's programs find its configuration.
func (p paths) etc() string {
	if p.userns {
		return "/etc/skiff"
	}
	return p.dir
}

// state is the node's own state directory: the kubelet's CA and
// kubeconfigs, containerd's images, pods' logs.
func (p paths) state(legacy, inNode string) string {
	if p.userns {
		return inNode
	}
	return filepath.Join(p.dir, legacy)
}

func (p paths) containerdConfig() string { return filepath.Join(p.etc(), "containerd.toml") }
func (p paths) kubeletConfig() string    { return filepath.Join(p.etc(), "kubelet.yaml") }
func (p paths) cniDir() string           { return filepath.Join(p.etc(), "cni", "net.d") }
func (p paths) credentials() string      { return filepath.Join(p.etc(), "aws-credentials") }

// clientCert is the kubelet's first client certificate and key (PEM),
// which skiff issues: `skiff node bootstrap` hands it to the kubelet.
func (p paths) clientCert() string    { return filepath.Join(p.etc(), "kubelet-client.pem") }
func (p paths) registryHosts() string { return filepath.Join(p.etc(), "containerd", "certs.d") }
func (p paths) containerdSock() string {
	if p.userns {
		return "/run/containerd/containerd.sock"
	}
	return filepath.Join(p.run, "containerd.sock")
}

// config and vardir hold a system container's /etc/skiff and /var.
func (p paths) config() string { return filepath.Join(p.dir, "config") }
func (p paths) vardir() string { return filepath.Join(p.dir, "var") }

// host is where on this machine the file the node sees at path is.
func (p paths) host(path string) string {
	if !p.userns {
		return path
	}
	if rest, ok := strings.CutPrefix(path, "/etc/skiff/"); ok {
		return filepath.Join(p.config(), rest)
	}
	if rest, ok := strings.CutPrefix(path, "/var/"); ok {
		return filepath.Join(p.vardir(), rest)
	}
	return "" // not a path the host holds
}

// cgroup is the node's cgroup as its programs see it (the root of its
// cgroup namespace in a system container).
func (p paths) cgroup(nodeID string) string {
	if p.userns {
		return "/"
	}
	return nodeCgroup(nodeID)
}

// mirroredHosts are the registries a node's containerd sends to the VPC's
// registry (besides its own name and the account's ECR host).
var mirroredHosts = []string{"docker.io", "registry.k8s.io", "public.ecr.aws"}

// containerdFiles are a node's containerd configuration (path → content):
// the VPC's registry (registry, HOST:PORT) serves the sandbox image and
// stands in for the upstream registries and the ECR repositories (ecrHost),
// one hosts.toml each (containerd's registry host configuration, read by
// 1.6 and 2.x alike), with the node's pull credentials (PullHeader): the
// account's own repositories are pulled only with them. Each names the VPC's registry as its server, so no
// pull falls back to the real upstream host: nothing leaves the machine.
//
// The configuration is containerd's version 2 format, which containerd 2.x
// migrates on load; the nodes run Debian's containerd 2.x (hack/deps.sh),
// whose CRI plugin mounts image volumes. Nothing of it is shared with the
// host or another node: NRI (on by default in 2.x, a socket at the fixed
// /var/run/nri/nri.sock) is off, and its temporary mounts' directories are
// the node's.
func containerdFiles(p paths, nodeID, registry, ecrHost, pullToken string) map[string]string {
	files := map[string]string{p.containerdConfig(): fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
temp = %[10]q

[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = ""
[metrics]
  address = ""
[cgroup]
  path = %[5]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[6]q
[plugins."io.containerd.nri.v1.nri"]
  disable = true
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[7]q
  restrict_oom_score_adj = true
  disable_apparmor = %[11]t
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
%[12]s  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[8]q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %[9]q
`, p.state("containerd/root", "/var/lib/containerd"), p.stateRun(), p.containerdSock(), p.containerdSock()+".ttrpc",
		filepath.Join(p.cgroup(nodeID), "containerd"), p.state("containerd/opt", "/var/lib/containerd/opt"), registry+"/"+images.PauseImage,
		p.cniDir(), p.registryHosts(), p.state("containerd/tmp", "/var/lib/containerd/tmp"), p.userns, gvisorRuntime(p))}
	if p.userns {
		files[p.runscConfig()] = runscConfig
	}
	for _, host := range append([]string{registry, ecrHost}, mirroredHosts...) {
		if host != "" {
			files[filepath.Join(p.registryHosts(), host, "hosts.toml")] = fmt.Sprintf(
				"server = %[1]q\n\n[host.%[1]q]\n  capabilities = [\"pull\", \"resolve\"]\n  [host.%[1]q.header]\n    %[2]s = %[3]q\n",
				"http://"+registry, PullHeader, pullToken)
		}
	}
	return files
}

// stateRun is containerd's state directory (sockets of its shims).
func (p paths) stateRun() string {
	if p.userns {
		return "/run/containerd/state"
	}
	return filepath.Join(p.run, "state")
}

// bootstrapDir is where `skiff node bootstrap` writes the cluster's CA
// and the kubelet's kubeconfigs.
func (p paths) bootstrapDir() string { return p.state("", "/var/lib/skiff-node") }

// Host is this machine's capacity, as the kubelet measures it.
type Host struct {
	MilliCPU int
	KiB      int // MemTotal
}

// reservations shape a node's allocatable resources to its instance type:
// what this host has beyond the type is reserved as "system" (the other
// nodes' share), and kube-reserved follows the EKS AMI's formula (11 MiB per
// pod + 255 MiB; 6% of the first core, 1% of the second, 0.5% of the next
// two, 0.25% of the rest). A type larger than the host gets the host.
func reservations(it model.InstanceType, h Host) (sysCPU, sysKiB, kubeCPU, kubeMiB int) {
	sysCPU = max(0, h.MilliCPU-it.VCPUs*1000)
	sysKiB = max(0, h.KiB-it.MiB*1024)
	for core := 0; core < it.VCPUs; core++ {
		switch {
		case core == 0:
			kubeCPU += 60
		case core == 1:
			kubeCPU += 10
		case core < 4:
			kubeCPU += 5
		default:
			kubeCPU += 2 // 0.25% of 1000m, rounded down
		}
	}
	return sysCPU, sysKiB, kubeCPU, 255 + 11*it.MaxPods
}

func kubeletConfig(p paths, nodeID string, addr netip.Addr, it model.InstanceType, h Host) string {
	sysCPU, sysKiB, kubeCPU, kubeMiB := reservations(it, h)
	gates := ""
	if p.userns {
		// Alpha in 1.36 (beta in 1.37): the kubelet tolerates what a user
		// namespace refuses it (/dev/kmsg, kernel tunables).
		gates = "featureGates: {KubeletInUserNamespace: true}\n"
	}
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %[1]s
cgroupsPerQOS: true
containerRuntimeEndpoint: unix://%[2]s
address: %[3]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[4]s}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [%[5]s]
resolvConf: %[6]s
rotateCertificates: true
serverTLSBootstrap: true
failSwapOn: false
podLogsDir: %[7]s
maxPods: %[8]d
systemReserved: {cpu: "%[9]dm", memory: "%[10]dKi"}
kubeReserved: {cpu: "%[11]dm", memory: "%[12]dMi"}
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxParallelImagePulls: 5
%[13]s`, p.cgroup(nodeID), p.containerdSock(), addr, filepath.Join(p.bootstrapDir(), "ca.crt"), ClusterDNS,
		filepath.Join(p.etc(), "resolv.conf"), p.state("pod-logs", "/var/log/pods"), it.MaxPods, sysCPU, sysKiB, kubeCPU, kubeMiB, gates)
}

// HostCapacity measures this machine: CPUs and MemTotal.
func HostCapacity() (Host, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return Host{}, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kib, err := strconv.Atoi(f[1])
			if err != nil {
				return Host{}, fmt.Errorf("read MemTotal: %w", err)
			}
			return Host{MilliCPU: goruntime.NumCPU() * 1000, KiB: kib}, nil
		}
	}
	return Host{}, fmt.Errorf("no MemTotal in /proc/meminfo")
}

// cniConfig is the node's pod network: a bridge with the node's pod range,
// the pods' default route through it (Service addresses are translated on
// the node; anything else has no route beyond the VPC), no masquerading;
// portmap serves the pods' hostPorts on the node's address, as the VPC CNI
// does on EKS.
func cniConfig(p paths, podCIDR netip.Prefix) string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "skiff",
  "plugins": [{
    "type": "bridge", "bridge": "cni0", "isGateway": true, "isDefaultGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "dataDir": %q}
  }, {
    "type": "portmap", "capabilities": {"portMappings": true}, "snat": true
  }]
}
`, podCIDR.String(), p.state("cni/ipam", "/var/lib/cni/ipam"))
}
