package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// nodeSandbox is what the test reads of one skiff node on this machine.
type nodeSandbox struct {
	ID, NS, Dir string // instance ID, network namespace, node dir
	Cluster     string // the cluster's ID (its dir under clusters/)
}

// nodeSandboxes lists the nodes of every cluster under dataDir.
func nodeSandboxes(t *testing.T, dataDir string) []nodeSandbox {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(dataDir, "clusters", "*", "nodes", "i-*"))
	var out []nodeSandbox
	for _, d := range dirs {
		id := filepath.Base(d)
		out = append(out, nodeSandbox{ID: id, NS: "skiff-n-" + id, Dir: d, Cluster: filepath.Base(filepath.Dir(filepath.Dir(d)))})
	}
	return out
}

// file is where on this machine a node's file is: name is "aws-credentials"
// (its configuration) or a file of its bootstrap state ("kubelet.kubeconfig",
// "pki/…"), in a system container's layout or the host-root one's.
func (n nodeSandbox) file(name string) string {
	dir := filepath.Join(n.Dir, "var", "lib", "skiff-node")
	if name == "aws-credentials" {
		dir = filepath.Join(n.Dir, "config")
	}
	if _, err := os.Stat(dir); err != nil {
		return filepath.Join(n.Dir, name)
	}
	p := filepath.Join(dir, name)
	// A link the node made points into the node's own root.
	if to, err := os.Readlink(p); err == nil && strings.HasPrefix(to, "/var/") {
		return filepath.Join(n.Dir, to)
	}
	return p
}

// dialFrom tries a TCP connection from inside a network namespace.
func dialFrom(ns, addr string) error {
	host, port, _ := strings.Cut(addr, ":")
	if i := strings.LastIndexByte(addr, ':'); i > 0 {
		host, port = strings.Trim(addr[:i], "[]"), addr[i+1:]
	}
	out, err := exec.Command("ip", "netns", "exec", ns, "timeout", "3", "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/%s/%s", host, port)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// listeners returns the TCP addresses the processes of a cluster (by its
// dir in their command line) listen on in the host's namespace.
func listeners(t *testing.T, clusterDir string) []string {
	t.Helper()
	out, err := exec.Command("ss", "-Htlnp").Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	pidRe := regexp.MustCompile(`pid=(\d+)`)
	var addrs []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			continue
		}
		for _, m := range pidRe.FindAllStringSubmatch(sc.Text(), -1) {
			cmdline, _ := os.ReadFile("/proc/" + m[1] + "/cmdline")
			if strings.Contains(string(cmdline), clusterDir+"/") {
				addrs = append(addrs, f[3])
				break
			}
		}
	}
	return addrs
}

// credentialsEnv turns a node's AWS credentials file into environment.
func credentialsEnv(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{"aws_access_key_id": "AWS_ACCESS_KEY_ID", "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY", "aws_session_token": "AWS_SESSION_TOKEN"}
	var env []string
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if name := keys[strings.TrimSpace(k)]; ok && name != "" {
			env = append(env, name+"="+strings.TrimSpace(v))
		}
	}
	if len(env) != 3 {
		t.Fatalf("credentials file %s: %d keys", path, len(env))
	}
	return env
}

// TestClusterIsolation is issue 6's two-cluster acceptance: clusters A
// (default VPC) and B (its own VPC) with nodes at once. A's node reaches its
// own endpoint but no control-plane instance of B, nor B's nodes; B's
// endpoint rejects A's node credentials (IAM token and client certificate).
func TestClusterIsolation(t *testing.T) {
	s, dataDir := serveTest(t)

	// B lives in a VPC of its own.
	vpc := mustAWS(t, s, "ec2", "create-vpc", "--cidr-block", "10.20.0.0/16")["Vpc"].(map[string]any)["VpcId"].(string)
	var subnetsB []string
	for i, zone := range []string{"us-east-1a", "us-east-1b"} {
		sn := mustAWS(t, s, "ec2", "create-subnet", "--vpc-id", vpc, "--cidr-block", fmt.Sprintf("10.20.%d.0/24", i), "--availability-zone", zone)
		subnetsB = append(subnetsB, sn["Subnet"].(map[string]any)["SubnetId"].(string))
	}
	mustAWS(t, s, s.createArgs(t, "iso-a")...)
	mustAWS(t, s, "eks", "create-cluster", "--name", "iso-b", "--role-arn", s.clusterRole(t),
		"--resources-vpc-config", "subnetIds="+strings.Join(subnetsB, ","))
	for _, c := range []struct{ cluster, role string }{{"iso-a", "nodes-a"}, {"iso-b", "nodes-b"}} {
		waitAWSStatus(t, s, c.cluster, "ACTIVE")
		arn := nodeRole(t, s, c.role)
		subnets := s.defaultSubnets(t)[:1]
		if c.cluster == "iso-b" {
			subnets = subnetsB[:1]
		}
		mustAWS(t, s, append([]string{"eks", "create-nodegroup", "--cluster-name", c.cluster, "--nodegroup-name", "ng", "--node-role", arn,
			"--scaling-config", "minSize=1,maxSize=2,desiredSize=1", "--subnets"}, subnets...)...)
	}
	kcA, kcB := filepath.Join(dataDir, "a.kubeconfig"), filepath.Join(dataDir, "b.kubeconfig")
	for _, c := range []struct{ name, kc string }{{"iso-a", kcA}, {"iso-b", kcB}} {
		waitNodegroup(t, s, c.name, "ng", "ACTIVE", 3*time.Minute)
		if _, err := awsCLI(t, s, "eks", "update-kubeconfig", "--name", c.name, "--kubeconfig", c.kc); err != nil {
			t.Fatal(err)
		}
	}
	nodeA, nodeB := readyNodes(t, s, kcA, 1)[0], readyNodes(t, s, kcB, 1)[0]
	if !strings.HasPrefix(nodeA.IP, "172.31.") || !strings.HasPrefix(nodeB.IP, "10.20.") {
		t.Fatalf("node addresses %s and %s: want one in each VPC", nodeA.IP, nodeB.IP)
	}

	// Which sandbox belongs to which cluster.
	var a, b nodeSandbox
	for _, n := range nodeSandboxes(t, dataDir) {
		if out, _ := exec.Command("ip", "-n", n.NS, "-4", "addr", "show", "eth0").Output(); strings.Contains(string(out), nodeA.IP+"/") {
			a = n
		} else if strings.Contains(string(out), nodeB.IP+"/") {
			b = n
		}
	}
	if a.ID == "" || b.ID == "" || a.Cluster == b.Cluster {
		t.Fatalf("node sandboxes of A and B not found: %+v %+v", a, b)
	}

	// A's node reaches its own endpoint inside the VPC (the check can pass)…
	kubeconfig, err := os.ReadFile(a.file("kubelet.kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`server: (\S+)`).FindSubmatch(kubeconfig)
	if m == nil {
		t.Fatalf("no server in A's kubelet kubeconfig:\n%s", kubeconfig)
	}
	epA, _ := url.Parse(string(m[1]))
	hostA := epA.Host
	if epA.Port() == "" {
		hostA += ":443"
	}
	if err := dialFrom(a.NS, hostA); err != nil {
		t.Fatalf("A's node cannot reach A's endpoint %s: %v", hostA, err)
	}
	// … but no listener of B's control plane, nor B's node or its kubelet.
	targets := listeners(t, filepath.Join(dataDir, "clusters", b.Cluster))
	if len(targets) < 5 {
		t.Fatalf("found %d listeners of B's control plane, want etcd, apiservers, …: %v", len(targets), targets)
	}
	targets = append(targets, nodeB.IP+":10250", nodeB.IP+":22")
	for _, addr := range targets {
		if err := dialFrom(a.NS, addr); err == nil {
			t.Errorf("A's node %s reaches %s of cluster B", a.ID, addr)
		}
	}
	if out, err := exec.Command("ip", "-n", a.NS, "route", "get", nodeB.IP).CombinedOutput(); err == nil {
		t.Errorf("A's node has a route to B's node: %s", out)
	}
	t.Logf("A's node reaches A's endpoint and none of %d addresses of B", len(targets))

	// B's endpoint rejects A's node credentials: its IAM session …
	nodeEnv := append(append([]string{}, s.env...), credentialsEnv(t, a.file("aws-credentials"))...)
	if _, err := kubectlEnv(t, nodeEnv, kcA, "get", "--raw", "/api"); err != nil {
		t.Fatalf("A's node credentials do not work on A (the check could not fail): %v", err)
	}
	out, err := kubectlEnv(t, nodeEnv, kcB, "get", "--raw", "/api")
	if err := refused("Unauthorized")(out, err); err != nil {
		t.Errorf("B's endpoint with A's node IAM credentials: %v", err)
	}

	// A node's identity is skiff's record of the instance: its own
	// credentials are system:node:NAME (the check can pass) …
	if who, err := kubectlEnv(t, nodeEnv, kcA, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || who != "system:node:"+nodeA.Name {
		t.Errorf("A's node credentials on A are %q (%v), want system:node:%s", who, err, nodeA.Name)
	}
	// … but the node role assumed by someone else, with the instance's ID
	// or its node name as session name, is nobody: no token, no CSR.
	roleA := mustAWS(t, s, "iam", "get-role", "--role-name", "nodes-a")["Role"].(map[string]any)["Arn"].(string)
	// (A tenant may widen its node role's trust policy to assume it.)
	account := strings.Split(roleA, ":")[4]
	mustAWS(t, s, "iam", "update-assume-role-policy", "--role-name", "nodes-a", "--policy-document",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com","AWS":"`+account+`"},"Action":"sts:AssumeRole"}]}`)
	// The CSR: a kubelet's client certificate request for A's node name
	// (CN system:node:NAME, O system:nodes) with a key of its own.
	for _, session := range []string{a.ID, nodeA.Name} {
		creds := mustAWS(t, s, "sts", "assume-role", "--role-arn", roleA, "--role-session-name", session)["Credentials"].(map[string]any)
		stolen := append(append([]string{}, s.env...), "AWS_ACCESS_KEY_ID="+creds["AccessKeyId"].(string),
			"AWS_SECRET_ACCESS_KEY="+creds["SecretAccessKey"].(string), "AWS_SESSION_TOKEN="+creds["SessionToken"].(string))
		if err := refused("Unauthorized")(kubectlEnv(t, stolen, kcA, "get", "--raw", "/api")); err != nil {
			t.Errorf("A's node role assumed with session name %s: %v", session, err)
		}
		name := "stolen-" + strings.ToLower(strings.ReplaceAll(session, ".", "-"))
		if err := refused("Unauthorized")(kubectlEnv(t, stolen, kcA, "create", "-f", kubeletCSR(t, dataDir, name, nodeA.Name))); err != nil {
			t.Errorf("a CSR for %s with A's node role assumed with session name %s: %v", nodeA.Name, session, err)
		}
		if out, err := kubectlEnv(t, s.env, kcA, "get", "csr", name); err == nil || !strings.Contains(out, "NotFound") {
			t.Errorf("CSR %s exists: %v %s", name, err, out)
		}
	}
	// The same request with A's node's own credentials is approved and
	// issued (the check can fail); for another node's name (B's) it is
	// refused (the apiserver's NodeRestriction) or else denied (skiff).
	for _, c := range []struct{ name, node, want string }{{"own", nodeA.Name, "Approved"}, {"other", nodeB.Name, "Denied"}} {
		if out, err := kubectlEnv(t, nodeEnv, kcA, "create", "-f", kubeletCSR(t, dataDir, c.name, c.node)); err != nil {
			if c.want == "Denied" && refused("Forbidden")(out, err) == nil {
				t.Logf("A's node's CSR for %s: %s", c.node, strings.TrimSpace(out))
				continue
			}
			t.Fatalf("A's node's CSR for %s: %v %s", c.node, err, out)
		}
		var got, cert string
		if err := eventually(60*time.Second, func() error {
			out, err := kubectlEnv(t, s.env, kcA, "get", "csr", c.name, "-o", "jsonpath={.status.conditions[*].type} {.status.certificate}")
			got, cert, _ = strings.Cut(out, " ")
			if err != nil || got == "" || got == "Approved" && cert == "" {
				return fmt.Errorf("CSR %s: %v %q", c.name, err, out)
			}
			return nil
		}); err != nil {
			t.Errorf("%v (want %s)", err, c.want)
			continue
		}
		if got != c.want {
			t.Errorf("A's node's CSR for %s: %s, want %s", c.node, got, c.want)
		}
		if c.want == "Denied" && cert != "" {
			t.Errorf("A's node's CSR for %s was issued", c.node)
		} else if c.want == "Approved" {
			der, _ := base64.StdEncoding.DecodeString(cert)
			block, _ := pem.Decode(der)
			if block == nil {
				t.Fatalf("CSR %s: certificate %q", c.name, cert)
			}
			x, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatalf("CSR %s: %v", c.name, err)
			}
			if x.Subject.CommonName != "system:node:"+c.node {
				t.Errorf("CSR %s: certificate for %v, want system:node:%s", c.name, x.Subject, c.node)
			}
			t.Logf("A's node's CSR for itself: approved, certificate for %s", x.Subject)
		}
	}
	// … and its kubelet client certificate (issued by A's CA).
	certA := a.file("pki/kubelet-client-current.pem")
	if _, err := os.Stat(certA); err != nil {
		t.Fatalf("A's kubelet client certificate: %v", err)
	}
	certFlags := func(cluster string) []string {
		c := mustAWS(t, s, "eks", "describe-cluster", "--name", cluster)["cluster"].(map[string]any)
		ca, _ := base64.StdEncoding.DecodeString(c["certificateAuthority"].(map[string]any)["data"].(string))
		caFile := filepath.Join(dataDir, cluster+"-ca.crt")
		if err := os.WriteFile(caFile, ca, 0o600); err != nil {
			t.Fatal(err)
		}
		return []string{"--server", c["endpoint"].(string), "--certificate-authority", caFile, "--client-certificate", certA, "--client-key", certA}
	}
	if _, err := kubectlEnv(t, nil, "/dev/null", append(certFlags("iso-a"), "get", "node", nodeA.Name)...); err != nil {
		t.Fatalf("A's node certificate does not work on A (the check could not fail): %v", err)
	}
	out, err = kubectlEnv(t, nil, "/dev/null", append(certFlags("iso-b"), "get", "node", nodeB.Name)...)
	if refused("Unauthorized")(out, err) != nil && refused("Forbidden")(out, err) != nil {
		t.Errorf("B's endpoint with A's node certificate: %v %s", err, out)
	}
	t.Logf("B's endpoint with A's node certificate: %s", strings.TrimSpace(out))

	// Pods: one in A cannot reach B's pods, node or endpoint (it reaches
	// A's own pod, so the check can fail). Pod ranges overlap between
	// VPCs, so a connection to B's pod address is judged by who answers.
	for _, c := range []struct{ kc, node string }{{kcA, nodeA.Name}, {kcB, nodeB.Name}} {
		if _, err := kubectlEnv(t, s.env, c.kc, "run", "web", "--image=skiff/web:1.0", "--port=8080",
			"--overrides", fmt.Sprintf(`{"spec":{"nodeName":%q}}`, c.node)); err != nil {
			t.Fatal(err)
		}
		if out, err := kubectlEnv(t, s.env, c.kc, "wait", "--for=condition=Ready", "pod/web", "--timeout=90s"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	toolbox(t, s, kcA, "box", nodeA.Name)
	webA, webB := pods(t, s, kcA, "--field-selector=metadata.name=web")[0], pods(t, s, kcB, "--field-selector=metadata.name=web")[0]
	get := func(url string) string {
		out, _ := kubectlEnv(t, s.env, kcA, "exec", "box", "--", "timeout", "5", "wget", "-qO-", url)
		return out
	}
	if out := get("http://" + webA.IP + ":8080"); !strings.Contains(out, "hello from web") {
		t.Fatalf("A's pod cannot reach A's pod %s (the check could not fail): %s", webA.IP, out)
	}
	kubeconfigB, err := os.ReadFile(b.file("kubelet.kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	epB, _ := url.Parse(string(regexp.MustCompile(`server: (\S+)`).FindSubmatch(kubeconfigB)[1]))
	if !strings.HasPrefix(epB.Hostname(), "10.20.") {
		t.Fatalf("B's endpoint in its VPC: %s", epB)
	}
	for _, target := range []string{"http://" + webB.IP + ":8080", "http://" + nodeB.IP + ":10250", "http://" + nodeB.IP + ":8080",
		"http://" + epB.Hostname() + ":443"} {
		out := get(target)
		// Any HTTP answer ("server returned error", a body) means connected.
		if strings.Contains(out, "server returned") || strings.Contains(out, "hello from") && !strings.Contains(out, webA.Name) {
			t.Errorf("A's pod reached %s of cluster B: %s", target, out)
		}
	}

	// A privileged pod of A's attacks its node's boundary (issue 14).
	attackNode(t, s, dataDir, kcA, kcB, a, b, nodeA, nodeB)
}

// kubeletCSR writes a CertificateSigningRequest manifest as a kubelet
// makes it for its client certificate: CN system:node:NODE, O
// system:nodes, a fresh ECDSA key; it returns the file's path.
func kubeletCSR(t *testing.T, dir, name, node string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}}, key)
	if err != nil {
		t.Fatal(err)
	}
	request := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	path := filepath.Join(dir, name+"-csr.json")
	manifest := fmt.Sprintf(`{"apiVersion":"certificates.k8s.io/v1","kind":"CertificateSigningRequest","metadata":{"name":%q},`+
		`"spec":{"request":%q,"signerName":"kubernetes.io/kube-apiserver-client-kubelet","usages":["digital signature","client auth"]}}`,
		name, base64.StdEncoding.EncodeToString(request))
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
