package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"skiff.dev/skiff/internal/images"
)

// webManifest runs IMAGE 3 times, one replica per zone, behind a Service.
const webManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
      - {name: web, image: IMAGE, ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`

type podInfo struct {
	Name, Node, IP, Phase string
}

func pods(t *testing.T, s *server, kc string, args ...string) []podInfo {
	t.Helper()
	out, err := kubectlEnv(t, s.env, kc, append([]string{"get", "pods", "-o", "json"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
			Spec     struct{ NodeName string }
			Status   struct{ PodIP, Phase string }
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	var ps []podInfo
	for _, it := range list.Items {
		ps = append(ps, podInfo{Name: it.Metadata.Name, Node: it.Spec.NodeName, IP: it.Status.PodIP, Phase: it.Status.Phase})
	}
	return ps
}

// rollout waits for a workload, with the cluster's state on failure.
func rollout(t *testing.T, s *server, kc string, args ...string) {
	t.Helper()
	if out, err := kubectlEnv(t, s.env, kc, append([]string{"rollout", "status", "--timeout=120s"}, args...)...); err != nil {
		all, _ := kubectlEnv(t, s.env, kc, "get", "pods", "-A", "-o", "wide")
		ev, _ := kubectlEnv(t, s.env, kc, "get", "events", "-A")
		t.Errorf("rollout %v: %v %s\n%s\n%s", args, err, out, all, tail(ev, 30))
		diagnoseNodes(t)
		t.FailNow()
	}
}

// toolbox starts a busybox pod on node and waits for it.
func toolbox(t *testing.T, s *server, kc, pod, node string) {
	t.Helper()
	if _, err := kubectlEnv(t, s.env, kc, "run", pod, "--image=busybox", "--restart=Never",
		"--overrides", fmt.Sprintf(`{"spec":{"nodeName":%q}}`, node), "--", "sleep", "3600"); err != nil {
		t.Fatal(err)
	}
	if out, err := kubectlEnv(t, s.env, kc, "wait", "--for=condition=Ready", "pod/"+pod, "--timeout=90s"); err != nil {
		desc, _ := kubectlEnv(t, s.env, kc, "describe", "pod", pod)
		t.Fatalf("%v %s\n%s", err, out, desc)
	}
}

// TestWorkloads is issue 7's acceptance with the stock aws CLI and
// kubectl: an image pushed to an ECR repository runs as a Deployment of 3
// replicas on 3 nodes in 3 zones; its ClusterIP Service answers a pod on
// another node by DNS name (CoreDNS and kube-proxy are installed as on
// EKS); kubectl logs, exec and port-forward reach the kubelets; the EKS
// add-on API manages CoreDNS; the registry content outlives the cluster.
func TestWorkloads(t *testing.T) {
	s, dataDir := serveTest(t)
	ctx := t.Context()

	// An ECR repository, and the demo web app pushed to it with the
	// password of `aws ecr get-login-password`.
	uri := mustAWS(t, s, "ecr", "create-repository", "--repository-name", "demo/web")["repository"].(map[string]any)["repositoryUri"].(string)
	pw, err := awsCLI(t, s, "ecr", "get-login-password")
	if err != nil {
		t.Fatal(err)
	}
	web, err := images.Image{Repo: "demo/web", Tag: "v1", Files: []images.File{{Path: "/web", Source: filepath.Join(imagesDir(t), "web")}},
		Entrypoint: []string{"/web"}, User: "65534:65534"}.Build()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(uri+":v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, web, remote.WithContext(ctx), remote.WithTransport(s.client.Transport), remote.WithAuth(&authn.Basic{Username: "AWS", Password: strings.TrimSpace(pw)})); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	// Another image, first pulled while skiff is down (skiffDown): a layer
	// of its own, so that the nodes hold none of it.
	marker := filepath.Join(t.TempDir(), "late")
	if err := os.WriteFile(marker, []byte(time.Now().String()), 0o644); err != nil {
		t.Fatal(err)
	}
	late, err := images.Image{Repo: "demo/web", Tag: "late", Files: []images.File{{Path: "/web", Source: filepath.Join(imagesDir(t), "web")},
		{Path: "/late", Source: marker}}, Entrypoint: []string{"/web"}, User: "65534:65534"}.Build()
	if err != nil {
		t.Fatal(err)
	}
	lateRef, err := name.ParseReference(uri+":late", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(lateRef, late, remote.WithContext(ctx), remote.WithTransport(s.client.Transport), remote.WithAuth(&authn.Basic{Username: "AWS", Password: strings.TrimSpace(pw)})); err != nil {
		t.Fatalf("push %s: %v", lateRef, err)
	}

	// A cluster with 3 nodes in 3 zones.
	kc := clusterWithNodes(t, s, "wl")
	waitNodegroup(t, s, "wl", "ng", "ACTIVE", 3*time.Minute)
	zoneOf := map[string]string{}
	for _, n := range readyNodes(t, s, kc, 3) {
		zoneOf[n.Name] = n.Zone
	}

	// The add-ons EKS installs: CoreDNS (2 replicas) and kube-proxy on
	// every node, self-managed (no managed add-ons listed).
	rollout(t, s, kc, "-n", "kube-system", "deployment/coredns")
	rollout(t, s, kc, "-n", "kube-system", "daemonset/kube-proxy")
	if dns := pods(t, s, kc, "-n", "kube-system", "-l", "k8s-app=kube-dns"); len(dns) != 2 {
		t.Errorf("CoreDNS pods: %+v, want 2", dns)
	}
	if got := mustAWS(t, s, "eks", "list-addons", "--cluster-name", "wl")["addons"].([]any); len(got) != 0 {
		t.Errorf("list-addons = %v, want none (self-managed)", got)
	}

	// The ECR image as a Deployment: 3 replicas on 3 nodes in 3 zones.
	manifest := filepath.Join(dataDir, "web.yaml")
	os.WriteFile(manifest, []byte(strings.ReplaceAll(webManifest, "IMAGE", uri+":v1")), 0o600)
	if _, err := kubectlEnv(t, s.env, kc, "apply", "-f", manifest); err != nil {
		t.Fatal(err)
	}
	rollout(t, s, kc, "deployment/web")
	webPods := pods(t, s, kc, "-l", "app=web")
	nodesUsed, zones := map[string]bool{}, map[string]bool{}
	for _, p := range webPods {
		nodesUsed[p.Node], zones[zoneOf[p.Node]] = true, true
	}
	if len(webPods) != 3 || len(nodesUsed) != 3 || len(zones) != 3 {
		t.Fatalf("web pods %+v: want 3 on 3 nodes in 3 zones", webPods)
	}

	// A pod on one node reaches the Service by its DNS name; the answers
	// come from the replicas on the other nodes too.
	toolbox(t, s, kc, "box", webPods[0].Node)
	out, err := kubectlEnv(t, s.env, kc, "exec", "box", "--", "nslookup", "kubernetes.default.svc.cluster.local")
	if err != nil || !strings.Contains(out, "10.100.0.1") {
		t.Errorf("nslookup kubernetes.default: %v\n%s", err, out)
	}
	answered := map[string]bool{}
	err = eventually(60*time.Second, func() error {
		out, err := kubectlEnv(t, s.env, kc, "exec", "box", "--", "timeout", "5", "wget", "-qO-", "http://web.default.svc.cluster.local")
		if err == nil {
			answered[strings.TrimSpace(strings.TrimPrefix(out, "hello from "))] = true
		}
		if len(answered) < 3 {
			return fmt.Errorf("replicas that answered: %v (last: %v %s)", answered, err, out)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	gvisorPod(t, s, kc, webPods[1].Node)

	// The VPC's registry serves the account's images to its nodes only (they
	// pulled demo/web above); a pod asking anonymously is refused, while
	// the public system images stay open to it (the check can fail).
	repo := strings.SplitN(uri, "/", 2)[1]
	if out, err := kubectlEnv(t, s.env, kc, "exec", "box", "--", "wget", "-qO-", "http://172.31.0.2:5000/v2/pause/tags/list"); err != nil || !strings.Contains(out, "3.10") {
		t.Errorf("a pod lists the system image pause's tags: %v %s", err, out)
	}
	if out, err := kubectlEnv(t, s.env, kc, "exec", "box", "--", "wget", "-qO-", "http://172.31.0.2:5000/v2/"+repo+"/tags/list"); err == nil || !strings.Contains(out, "401") {
		t.Errorf("a pod lists %s's tags anonymously: %v %s", repo, err, out)
	}
	// CoreDNS never forwards: an outside name does not resolve.
	if out, err := kubectlEnv(t, s.env, kc, "exec", "box", "--", "nslookup", "example.com"); err == nil && strings.Contains(out, "Address: ") && !strings.Contains(out, "10.100.0.10") {
		t.Errorf("example.com resolved inside the cluster:\n%s", out)
	}
	// No route off the machine from a pod: its node forwards nothing but
	// the VPC's and the pods' ranges (checked as a route lookup; nothing
	// is sent).
	for _, sb := range nodeSandboxes(t, dataDir) {
		out, err := exec.Command("ip", "-n", sb.NS, "route", "get", "192.0.2.1", "from", webPods[0].IP, "iif", "cni0").CombinedOutput()
		if err == nil {
			t.Errorf("node %s forwards pod traffic off the VPC: %s", sb.ID, out)
		}
	}

	// kubectl logs, exec and port-forward: the apiservers reach the
	// kubelets (serving certificates signed by the cluster CA) in the VPC.
	if out, err := kubectlEnv(t, s.env, kc, "logs", webPods[1].Name); err != nil || !strings.Contains(out, "listening on :8080") {
		t.Errorf("kubectl logs: %v %s", err, out)
	}
	if out, err := kubectlEnv(t, s.env, kc, "exec", "box", "--", "cat", "/etc/hostname"); err != nil || strings.TrimSpace(out) != "box" {
		t.Errorf("kubectl exec cat /etc/hostname: %v %q", err, out)
	}
	port := strings.Split(freePort(t), ":")[1]
	bin, pre := kubectlCommand(t)
	pf := exec.Command(bin, append(pre, "--kubeconfig", kc, "port-forward", "pod/"+webPods[2].Name, port+":8080")...)
	pf.Env = append(os.Environ(), s.env...)
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	err = eventually(20*time.Second, func() error {
		resp, err := http.Get("http://127.0.0.1:" + port + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), webPods[2].Name) {
			return fmt.Errorf("port-forward answered %q, want %s", body, webPods[2].Name)
		}
		return nil
	})
	pf.Process.Kill()
	pf.Wait()
	if err != nil {
		t.Errorf("kubectl port-forward: %v", err)
	}

	// kubectl attach and the apiserver's proxy to a pod
	// and to a Service.
	if _, err := kubectlEnv(t, s.env, kc, "run", "talk", "--image=busybox", "--restart=Never", "--", "sh", "-c", "while true; do echo tick; sleep 1; done"); err != nil {
		t.Fatal(err)
	}
	if out, err := kubectlEnv(t, s.env, kc, "wait", "--for=condition=Ready", "pod/talk", "--timeout=60s"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	actx, cancel := context.WithTimeout(ctx, 4*time.Second)
	attach := exec.CommandContext(actx, bin, append(pre, "--kubeconfig", kc, "attach", "talk")...)
	attach.Env = append(os.Environ(), s.env...)
	aout, _ := attach.CombinedOutput() // ended by the timeout
	cancel()
	if !strings.Contains(string(aout), "tick") {
		t.Errorf("kubectl attach: %s", aout)
	}
	for _, path := range []string{"/api/v1/namespaces/default/pods/" + webPods[1].Name + ":8080/proxy/", "/api/v1/namespaces/default/services/web:80/proxy/"} {
		if out, err := kubectlEnv(t, s.env, kc, "get", "--raw", path); err != nil || !strings.Contains(out, "hello from web-") {
			t.Errorf("kubectl get --raw %s: %v %s", path, err, out)
		}
	}

	// skiff killed and down for 20 s (issue 16), then started again: the
	// cluster serves meanwhile (skiffDown), and the restart does not
	// touch the nodes: every node process keeps
	// running (the system containers are found again by their instances
	// and pinned namespaces, nothing is rebuilt), and the workloads serve.
	var before []string // the nodes' long-lived processes: init, containerd, kubelet, shims
	for _, p := range nodeProcesses() {
		if f := strings.Fields(p); len(f) == 3 && (f[2] == "init" || f[2] == "containerd" || f[2] == "kube" || f[2] == "containerd-shim") {
			before = append(before, p)
		}
	}
	if len(before) < 9 {
		t.Fatalf("%d node processes found, want init, containerd and kubelet of 3 nodes at least (the check could not fail): %v", len(before), before)
	}
	skiffDown(t, s, kc, bin, pre, webPods[0].Node, uri+":late")
	s.restart(t)
	time.Sleep(10 * time.Second) // a few reconcile passes
	alive := map[string]bool{}
	for _, p := range nodeProcesses() {
		alive[p] = true
	}
	for _, p := range before {
		if !alive[p] {
			t.Errorf("node process %s is gone after skiff restarted", p)
		}
	}
	readyNodes(t, s, kc, 3)
	if out, err := kubectlEnv(t, s.env, kc, "exec", "box", "--", "timeout", "5", "wget", "-qO-", "http://web.default.svc.cluster.local"); err != nil || !strings.Contains(out, "hello from web-") {
		t.Errorf("the Service after skiff restarted: %v %s", err, out)
	}

	// The EKS add-on API: CoreDNS becomes a managed add-on with 3 replicas.
	for _, tc := range []struct {
		code string
		args []string
	}{
		{"InvalidParameterException", []string{"create-addon", "--cluster-name", "wl", "--addon-name", "vpc-cni"}},
		{"InvalidParameterException", []string{"create-addon", "--cluster-name", "wl", "--addon-name", "coredns", "--configuration-values", `{"replicas":3}`}},
		{"InvalidParameterException", []string{"create-addon", "--cluster-name", "wl", "--addon-name", "kube-proxy", "--addon-version", "v1.0.0-eksbuild.1"}},
		{"ResourceNotFoundException", []string{"describe-addon", "--cluster-name", "wl", "--addon-name", "coredns"}},
	} {
		out, err := awsCLI(t, s, append([]string{"eks"}, tc.args...)...)
		wantAWSError(t, out, err, tc.code)
	}
	versions := mustAWS(t, s, "eks", "describe-addon-versions", "--kubernetes-version", "1.37")["addons"].([]any)
	if len(versions) != 2 {
		t.Errorf("describe-addon-versions: %v", versions)
	}
	a := mustAWS(t, s, "eks", "create-addon", "--cluster-name", "wl", "--addon-name", "coredns", "--configuration-values", `{"replicaCount":3}`)["addon"].(map[string]any)
	if a["status"] != "CREATING" || !strings.HasSuffix(a["addonVersion"].(string), "-eksbuild.1") {
		t.Errorf("create-addon: %v", a)
	}
	if _, err := awsCLI(t, s, "eks", "wait", "addon-active", "--cluster-name", "wl", "--addon-name", "coredns"); err != nil {
		t.Fatalf("wait addon-active: %v", err)
	}
	if dns := pods(t, s, kc, "-n", "kube-system", "-l", "k8s-app=kube-dns", "--field-selector=status.phase=Running"); len(dns) != 3 {
		t.Errorf("CoreDNS pods after replicaCount 3: %+v", dns)
	}
	u := mustAWS(t, s, "eks", "update-addon", "--cluster-name", "wl", "--addon-name", "coredns", "--configuration-values", `{"replicaCount":2}`)["update"].(map[string]any)
	if u["type"] != "AddonUpdate" || u["status"] != "InProgress" {
		t.Errorf("update-addon: %v", u)
	}
	err = eventually(2*time.Minute, func() error {
		u := mustAWS(t, s, "eks", "describe-update", "--name", "wl", "--addon-name", "coredns", "--update-id", u["id"].(string))["update"].(map[string]any)
		if u["status"] != "Successful" {
			return fmt.Errorf("update %v", u)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	mustAWS(t, s, "eks", "delete-addon", "--cluster-name", "wl", "--addon-name", "coredns", "--preserve")
	if _, err := awsCLI(t, s, "eks", "wait", "addon-deleted", "--cluster-name", "wl", "--addon-name", "coredns"); err != nil {
		t.Errorf("wait addon-deleted: %v", err)
	}
	if out, err := kubectlEnv(t, s.env, kc, "-n", "kube-system", "get", "deployment", "coredns"); err != nil {
		t.Errorf("delete-addon --preserve removed CoreDNS: %v %s", err, out)
	}

	// Deleting the cluster leaves the account's registry content.
	mustAWS(t, s, "eks", "delete-nodegroup", "--cluster-name", "wl", "--nodegroup-name", "ng")
	waitNodegroupGone(t, s, "wl", "ng")
	mustAWS(t, s, "eks", "delete-cluster", "--name", "wl")
	waitGone(t, s, "describe-cluster", "--name", "wl")
	if imgs := mustAWS(t, s, "ecr", "list-images", "--repository-name", "demo/web")["imageIds"].([]any); len(imgs) != 2 { // v1 and late
		t.Errorf("list-images after the cluster's deletion: %v", imgs)
	}
	noLeftovers(t, dataDir)
}

// clusterWithNodes creates cluster name in the default VPC with node group
// "ng" of 3 nodes (one per zone), and returns its kubeconfig's path; the
// nodes may still be joining. extra are more create-cluster arguments.
func clusterWithNodes(t testing.TB, s *server, name string, extra ...string) string {
	t.Helper()
	return clusterWithNNodes(t, s, name, 3, extra...)
}

// clusterWithNNodes is clusterWithNodes with n nodes.
func clusterWithNNodes(t testing.TB, s *server, name string, n int, extra ...string) string {
	t.Helper()
	mustAWS(t, s, s.createArgs(t, name, extra...)...)
	waitAWSStatus(t, s, name, "ACTIVE")
	kc := filepath.Join(s.dataDir, name+".kubeconfig")
	if _, err := awsCLI(t, s, "eks", "update-kubeconfig", "--name", name, "--kubeconfig", kc); err != nil {
		t.Fatal(err)
	}
	mustAWS(t, s, append([]string{"eks", "create-nodegroup", "--cluster-name", name, "--nodegroup-name", "ng", "--node-role", nodeRole(t, s, name+"-nodes"),
		"--scaling-config", fmt.Sprintf("minSize=%d,maxSize=%d,desiredSize=%d", n, n, n), "--subnets"}, s.defaultSubnets(t)...)...)
	return kc
}

// waitNodegroupGone waits until describe-nodegroup says the group is gone.
func waitNodegroupGone(t *testing.T, s *server, cluster, name string) {
	t.Helper()
	waitGone(t, s, "describe-nodegroup", "--cluster-name", cluster, "--nodegroup-name", name)
}

// waitGone polls an EKS describe call (faster than the CLI's waiters,
// which poll every 30 s) until it answers ResourceNotFoundException.
func waitGone(t testing.TB, s *server, args ...string) {
	t.Helper()
	err := eventually(3*time.Minute, func() error {
		out, err := awsCLI(t, s, append([]string{"eks"}, args...)...)
		if err != nil && strings.Contains(out, "ResourceNotFoundException") {
			return nil
		}
		return fmt.Errorf("aws eks %v: %v %s", args, err, tail(out, 5))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// imagesDir is where `make images` put the system images' sources.
func imagesDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join(bundlesDir(t), "..", "images"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// gvisorPod: a pod of RuntimeClass gvisor (which skiff gives every
// cluster) runs in a gVisor sandbox inside its node: gVisor's kernel
// answers it, the runc pod "box" gets the machine's; it resolves and
// reaches the web Service; its sandbox is an unprivileged host user.
func gvisorPod(t *testing.T, s *server, kc, node string) {
	t.Helper()
	if out, err := kubectlEnv(t, s.env, kc, "get", "runtimeclass", "gvisor", "-o", "jsonpath={.handler}"); err != nil || out != "runsc" {
		t.Fatalf("RuntimeClass gvisor: %v %q, want handler runsc", err, out)
	}
	if _, err := kubectlEnv(t, s.env, kc, "run", "gv", "--image=busybox", "--restart=Never", "--overrides",
		fmt.Sprintf(`{"spec":{"nodeName":%q,"runtimeClassName":"gvisor"}}`, node), "--", "sleep", "3600"); err != nil {
		t.Fatal(err)
	}
	if out, err := kubectlEnv(t, s.env, kc, "wait", "--for=condition=Ready", "pod/gv", "--timeout=90s"); err != nil {
		desc, _ := kubectlEnv(t, s.env, kc, "describe", "pod", "gv")
		t.Fatalf("gVisor pod: %v %s\n%s", err, out, desc)
	}
	if out, err := kubectlEnv(t, s.env, kc, "exec", "gv", "--", "dmesg"); err != nil || !strings.Contains(out, "Starting gVisor") {
		t.Errorf("dmesg in the gVisor pod: %v %s", err, out)
	}
	if out, err := kubectlEnv(t, s.env, kc, "exec", "gv", "--", "uname", "-r"); err != nil || !strings.Contains(out, "gvisor") {
		t.Errorf("uname -r in the gVisor pod: %v %q", err, out)
	}
	if out, err := kubectlEnv(t, s.env, kc, "exec", "box", "--", "uname", "-r"); err != nil || strings.Contains(out, "gvisor") {
		t.Errorf("uname -r in the runc pod (the check could not fail): %v %q", err, out)
	}
	if err := eventually(30*time.Second, func() error {
		out, err := kubectlEnv(t, s.env, kc, "exec", "gv", "--", "timeout", "5", "wget", "-qO-", "http://web.default.svc.cluster.local")
		if err != nil || !strings.Contains(out, "hello from web-") {
			return fmt.Errorf("the gVisor pod GETs the web Service: %v %s", err, out)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if uid := uidOf(t, "runsc-sandbox"); uid < 1<<28 {
		t.Errorf("gVisor's sandbox runs as host uid %d, want a node's unprivileged range", uid)
	}
}

// skiffDown kills skiff and keeps it down for 20 s (issue 16's
// acceptance): an exec stream opened before the kill keeps going;
// kubectl logs and exec reach the kubelets (the tunnel); the nodes stay
// Ready (the endpoint in the VPC); a new pod starts on node from an image
// the node holds, and another from an image the node has never pulled
// (the door in the VPC).
func skiffDown(t *testing.T, s *server, kc, bin string, pre []string, node, image string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream := exec.CommandContext(ctx, bin, append(pre, "--kubeconfig", kc, "exec", "-i", "box", "--", "sh", "-c", "while read l; do echo got $l; done")...)
	stream.Env = append(os.Environ(), s.env...)
	in, err := stream.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, err := stream.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Start(); err != nil {
		t.Fatal(err)
	}
	defer stream.Wait()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	echo := func(word string) error {
		if _, err := fmt.Fprintln(in, word); err != nil {
			return err
		}
		select {
		case l, ok := <-lines:
			if !ok || l != "got "+word {
				return fmt.Errorf("exec stream answered %q (open %v)", l, ok)
			}
			return nil
		case <-time.After(15 * time.Second):
			return errors.New("no answer on the exec stream in 15 s")
		}
	}
	if err := echo("before"); err != nil {
		t.Fatalf("exec stream before the kill: %v", err)
	}

	s.kill()
	down := time.Now()
	if err := echo("during"); err != nil {
		t.Errorf("exec stream opened before skiff was killed: %v", err)
	}
	if out, err := kubectlEnv(t, s.env, kc, "logs", "talk", "--tail=1"); err != nil || !strings.Contains(out, "tick") {
		t.Errorf("kubectl logs while skiff is down: %v %s", err, out)
	}
	if out, err := kubectlEnv(t, s.env, kc, "exec", "box", "--", "timeout", "5", "wget", "-qO-", "http://web.default.svc.cluster.local"); err != nil || !strings.Contains(out, "hello from web-") {
		t.Errorf("kubectl exec while skiff is down: %v %s", err, out)
	}
	if _, err := kubectlEnv(t, s.env, kc, "run", "latecomer", "--image=busybox", "--image-pull-policy=IfNotPresent", "--restart=Never",
		"--overrides", fmt.Sprintf(`{"spec":{"nodeName":%q}}`, node), "--", "sleep", "3600"); err != nil {
		t.Errorf("kubectl run while skiff is down: %v", err)
	} else if out, err := kubectlEnv(t, s.env, kc, "wait", "--for=condition=Ready", "pod/latecomer", "--timeout=60s"); err != nil {
		t.Errorf("a new pod while skiff is down: %v %s", err, out)
	}
	if _, err := kubectlEnv(t, s.env, kc, "run", "puller", "--image="+image, "--restart=Never", "--port=8080"); err != nil {
		t.Errorf("kubectl run while skiff is down: %v", err)
	} else if out, err := kubectlEnv(t, s.env, kc, "wait", "--for=condition=Ready", "pod/puller", "--timeout=60s"); err != nil {
		out2, _ := kubectlEnv(t, s.env, kc, "describe", "pod", "puller")
		t.Errorf("a pod whose image is pulled while skiff is down: %v %s\n%s", err, out, out2)
	}
	time.Sleep(time.Until(down.Add(20 * time.Second)))
	out, err := kubectlEnv(t, s.env, kc, "get", "nodes", "-o", "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\" \"}{end}")
	if err != nil || strings.Count(out, "True") != 3 {
		t.Errorf("nodes Ready after 20 s without skiff: %q %v", out, err)
	}
	if err := echo("after"); err != nil {
		t.Errorf("exec stream 20 s after skiff was killed: %v", err)
	}
	in.Close()
	t.Logf("20 s without skiff: exec stream, logs, exec, a new pod, an image pulled and 3 Ready nodes")
}
