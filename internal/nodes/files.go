package nodes

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"skiff.dev/skiff/internal/images"
)

// RegistryPort is where skiff's registry listens on a VPC's service address.
const RegistryPort = 5000

// APIPort is where skiff's AWS API listens on a VPC's service address.
const APIPort = 80

// ClusterDNS is the ClusterIP CoreDNS will have.
const ClusterDNS = "10.100.0.10"

// podCIDRBase: each node gets a /26 of 100.64.0.0/10 chosen by the low 16
// bits of its address (unique within a VPC of /16 or smaller).
var podCIDRBase = netip.MustParseAddr("100.64.0.0")

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

// paths of one node.
type paths struct {
	dir string // DATA/clusters/ID/nodes/NODEID
	run string // RunDir/NODEID
}

func (p paths) containerdConfig() string { return filepath.Join(p.dir, "containerd.toml") }
func (p paths) containerdSock() string   { return filepath.Join(p.run, "containerd.sock") }
func (p paths) kubeletConfig() string    { return filepath.Join(p.dir, "kubelet.yaml") }
func (p paths) cniDir() string           { return filepath.Join(p.dir, "cni", "net.d") }
func (p paths) credentials() string      { return filepath.Join(p.dir, "aws-credentials") }

func containerdConfig(p paths, nodeID string, registry string) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q

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
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[7]q
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[8]q
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."%[9]s"]
    endpoint = ["http://%[9]s"]
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
    endpoint = ["http://%[9]s"]
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."registry.k8s.io"]
    endpoint = ["http://%[9]s"]
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."public.ecr.aws"]
    endpoint = ["http://%[9]s"]
`, filepath.Join(p.dir, "containerd", "root"), filepath.Join(p.run, "state"), p.containerdSock(), p.containerdSock()+".ttrpc",
		nodeCgroup(nodeID)+"/containerd", filepath.Join(p.dir, "containerd", "opt"), registry+"/"+images.PauseImage, p.cniDir(), registry)
}

func kubeletConfig(p paths, nodeID string, addr netip.Addr) string {
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
maxPods: 29
evictionHard: {memory.available: "50Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`, nodeCgroup(nodeID), p.containerdSock(), addr, filepath.Join(p.dir, "ca.crt"), ClusterDNS,
		filepath.Join(p.dir, "resolv.conf"), filepath.Join(p.dir, "pod-logs"))
}

// cniConfig is the node's pod network: a bridge with the node's pod range,
// no masquerading (pod traffic never leaves the VPC).
func cniConfig(p paths, podCIDR netip.Prefix) string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "skiff",
  "plugins": [{
    "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "dataDir": %q}
  }]
}
`, podCIDR.String(), filepath.Join(p.dir, "cni", "ipam"))
}
