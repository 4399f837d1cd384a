package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"skiff.dev/skiff/internal/sandbox"
)

func newNodeCmd() *cobra.Command {
	node := &cobra.Command{Use: "node", Short: "Commands that run on a worker node"}
	var o bootstrapOptions
	boot := &cobra.Command{
		Use:   "bootstrap --cluster NAME --node-name NAME --node-ip IP --kubelet PATH --config KUBELET.yaml",
		Short: "Join this host to a cluster and run its kubelet (EKS' bootstrap script)",
		Long: `Discovers the cluster's endpoint and CA with DescribeCluster, using the IAM
credentials of the environment (a node role: its EC2_LINUX access entry maps
it to system:node:NAME when its session name is the node name), writes a
bootstrap kubeconfig with an 'aws eks get-token'-style token, and execs the
kubelet, which obtains its client certificate through a CSR skiff approves
for the node's own name only. Run it where skiff's API (AWS_ENDPOINT_URL) and
the cluster's endpoint are reachable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return bootstrap(cmd.Context(), o) },
	}
	f := boot.Flags()
	f.StringVar(&o.cluster, "cluster", "", "the cluster's name")
	f.StringVar(&o.dir, "dir", "/var/lib/skiff-node", "the node's state directory")
	f.StringVar(&o.kubelet, "kubelet", "", "the Kubernetes bundle binary ('kube', run as 'kube kubelet')")
	f.StringVar(&o.nodeName, "node-name", "", "the node's name (the IAM session name)")
	f.StringVar(&o.nodeIP, "node-ip", "", "the node's address")
	f.StringVar(&o.config, "config", "", "the KubeletConfiguration file")
	f.StringVar(&o.rootDir, "root-dir", "", "the kubelet's root directory (default DIR/kubelet; its sockets need a path under ~80 bytes)")
	f.StringVar(&o.labels, "labels", "", "node labels, k=v,…")
	f.StringVar(&o.taints, "taints", "", "taints, k=v:Effect,…")
	f.StringVar(&o.clientCert, "client-cert", "", "the kubelet's first client certificate and key (PEM; skiff issues it): no bootstrap CSR")
	for _, req := range []string{"cluster", "kubelet", "node-name", "node-ip", "config"} {
		boot.MarkFlagRequired(req)
	}
	node.AddCommand(boot, newNodeInitCmd())
	return node
}

// newNodeInitCmd is a node sandbox's first process (skiff's node
// reconciler starts it in the node's namespaces).
func newNodeInitCmd() *cobra.Command {
	var l sandbox.Layout
	var binds []string
	cmd := &cobra.Command{
		Use:    "init --image DIR --var DIR --config DIR",
		Short:  "Build a node's file system inside its namespaces and exec its init (run by skiff)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l.Binds = map[string]string{}
			for _, b := range binds {
				in, host, ok := strings.Cut(b, "=")
				if !ok {
					return fmt.Errorf("--bind %q: want PATH-IN-NODE=HOST-FILE", b)
				}
				l.Binds[in] = host
			}
			return sandbox.Init(l)
		},
	}
	f := cmd.Flags()
	f.StringVar(&l.Image, "image", "", "the node image (its root, read-only)")
	f.StringVar(&l.Var, "var", "", "the node's /var")
	f.StringVar(&l.Config, "config", "", "the node's configuration (/etc/skiff, read-only)")
	f.StringVar(&l.Hostname, "hostname", "", "the node's host name")
	f.StringArrayVar(&binds, "bind", nil, "PATH-IN-NODE=HOST-FILE, mounted read-only (repeatable)")
	for _, req := range []string{"image", "var", "config"} {
		cmd.MarkFlagRequired(req)
	}
	return cmd
}

type bootstrapOptions struct {
	cluster, dir, kubelet, nodeName, nodeIP, config, labels, taints, rootDir, clientCert string
}

func bootstrap(ctx context.Context, o bootstrapOptions) error {
	kubeconfig := filepath.Join(o.dir, "kubelet.kubeconfig")
	boot := filepath.Join(o.dir, "bootstrap.kubeconfig")
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return err
	}
	if _, err := os.Stat(kubeconfig); err != nil {
		c := newClient(defaultEndpoint())
		cl, err := c.describe(o.cluster)
		if err != nil {
			return fmt.Errorf("describe cluster %s: %w", o.cluster, err)
		}
		if cl.Status != "ACTIVE" && cl.Status != "UPDATING" {
			return fmt.Errorf("cluster %s is %s; a node joins an ACTIVE cluster", o.cluster, cl.Status)
		}
		ca, err := base64.StdEncoding.DecodeString(cl.CA.Data)
		if err != nil {
			return fmt.Errorf("cluster %s: bad certificate authority: %w", o.cluster, err)
		}
		if err := os.WriteFile(filepath.Join(o.dir, "ca.crt"), ca, 0o600); err != nil {
			return err
		}
		token, err := c.eksToken(ctx, o.cluster)
		if err != nil {
			return err
		}
		cfg := clientcmdapi.NewConfig()
		cfg.Clusters["cluster"] = &clientcmdapi.Cluster{Server: cl.Endpoint, CertificateAuthorityData: ca}
		cfg.AuthInfos["bootstrap"] = &clientcmdapi.AuthInfo{Token: token}
		cfg.Contexts["bootstrap"] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: "bootstrap"}
		cfg.CurrentContext = "bootstrap"
		if err := clientcmd.WriteToFile(*cfg, boot); err != nil {
			return err
		}
		// With a client certificate from skiff, the kubelet starts with
		// its kubeconfig as it would write it after a bootstrap CSR (the
		// certificate where its rotation keeps it): it is known at its
		// first request.
		if current, err := installClientCert(o.clientCert, filepath.Join(o.dir, "pki")); err != nil {
			fmt.Fprintf(os.Stderr, "skiff node bootstrap: %v; the kubelet bootstraps with a CSR\n", err)
		} else if current != "" {
			cfg.AuthInfos["default-auth"] = &clientcmdapi.AuthInfo{ClientCertificate: current, ClientKey: current}
			cfg.Contexts["default-context"] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: "default-auth"}
			cfg.CurrentContext = "default-context"
			delete(cfg.AuthInfos, "bootstrap")
			delete(cfg.Contexts, "bootstrap")
			if err := clientcmd.WriteToFile(*cfg, kubeconfig); err != nil {
				return err
			}
		}
		fmt.Fprintf(os.Stderr, "skiff node bootstrap: cluster %s at %s; starting the kubelet as %s\n", o.cluster, cl.Endpoint, o.nodeName)
	}
	rootDir := o.rootDir
	if rootDir == "" {
		rootDir = filepath.Join(o.dir, "kubelet")
	}
	args := []string{o.kubelet, "kubelet",
		"--config=" + o.config,
		"--bootstrap-kubeconfig=" + boot,
		"--kubeconfig=" + kubeconfig,
		"--cert-dir=" + filepath.Join(o.dir, "pki"),
		"--root-dir=" + rootDir,
		"--volume-plugin-dir=" + filepath.Join(o.dir, "volume-plugins"),
		"--hostname-override=" + o.nodeName,
		"--node-ip=" + o.nodeIP,
	}
	if o.labels != "" {
		args = append(args, "--node-labels="+o.labels)
	}
	if o.taints != "" {
		args = append(args, "--register-with-taints="+o.taints)
	}
	// The kubelet gives up at once if its container runtime does not
	// answer yet (containerd starts beside it); wait for it a while.
	if sock := criSocket(o.config); sock != "" {
		waitSocket(ctx, sock, 30*time.Second)
	}
	return syscall.Exec(o.kubelet, args, os.Environ())
}

// installClientCert puts the certificate and key in file src (PEM) where
// the kubelet keeps its client certificate in certDir: a dated file and
// the kubelet-client-current.pem link to it. It returns the link ("" when
// src is ""), or why the certificate is not usable.
func installClientCert(src, certDir string) (string, error) {
	if src == "" {
		return "", nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	pair, err := tls.X509KeyPair(data, data)
	if err != nil {
		return "", fmt.Errorf("client certificate %s: %w", src, err)
	}
	if time.Now().After(pair.Leaf.NotAfter) {
		return "", fmt.Errorf("client certificate %s expired at %s", src, pair.Leaf.NotAfter)
	}
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return "", err
	}
	name := "kubelet-client-" + time.Now().UTC().Format("2006-01-02-15-04-05") + ".pem"
	if err := os.WriteFile(filepath.Join(certDir, name), data, 0o600); err != nil {
		return "", err
	}
	current := filepath.Join(certDir, "kubelet-client-current.pem")
	os.Remove(current)
	if err := os.Symlink(name, current); err != nil {
		return "", err
	}
	return current, nil
}

// criSocket is the container runtime's unix socket that kubelet
// configuration file config names ("" if it names none).
func criSocket(config string) string {
	data, err := os.ReadFile(config)
	if err != nil {
		return ""
	}
	var kc struct {
		ContainerRuntimeEndpoint string `json:"containerRuntimeEndpoint"`
	}
	if yaml.Unmarshal(data, &kc) != nil {
		return ""
	}
	path, _ := strings.CutPrefix(kc.ContainerRuntimeEndpoint, "unix://")
	return path
}

// waitSocket waits until unix socket path accepts a connection, for at
// most d.
func waitSocket(ctx context.Context, path string, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "skiff node bootstrap: %s does not answer after %s; starting the kubelet anyway\n", path, d)
}

// eksToken mints a token as `aws eks get-token` does: a presigned STS
// GetCallerIdentity URL for skiff's endpoint with the cluster header signed.
func (c *client) eksToken(ctx context.Context, cluster string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, c.endpoint+"/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Expires=60", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("x-k8s-aws-id", cluster)
	const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	u, _, err := v4.NewSigner().PresignHTTP(ctx, c.creds, req, emptySHA256, "sts", c.region, time.Now().UTC())
	if err != nil {
		return "", fmt.Errorf("sign the token: %w", err)
	}
	return "k8s-aws-v1." + base64.RawURLEncoding.EncodeToString([]byte(u)), nil
}
