package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/access"
	"skiff.dev/skiff/internal/addons"
	"skiff.dev/skiff/internal/addons/catalog"
	"skiff.dev/skiff/internal/api/ec2"
	"skiff.dev/skiff/internal/api/ecr"
	"skiff.dev/skiff/internal/api/eks"
	"skiff.dev/skiff/internal/api/query"
	"skiff.dev/skiff/internal/api/router"
	"skiff.dev/skiff/internal/api/skiffapi"
	"skiff.dev/skiff/internal/apitls"
	"skiff.dev/skiff/internal/authenticator"
	"skiff.dev/skiff/internal/authz"
	"skiff.dev/skiff/internal/bundle"
	"skiff.dev/skiff/internal/clusters"
	"skiff.dev/skiff/internal/controlplane"
	"skiff.dev/skiff/internal/iam"
	"skiff.dev/skiff/internal/images"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/network"
	"skiff.dev/skiff/internal/nodes"
	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/runtime/process"
	"skiff.dev/skiff/internal/store"
)

func defaultDataDir() string {
	if d := os.Getenv("SKIFF_DATA_DIR"); d != "" {
		return d
	}
	return ".data"
}

func newServeCmd() *cobra.Command {
	var (
		dataDir = defaultDataDir()
		listen  = "127.0.0.1:7443"
		bundles = defaultBundles()
		imgDir  = defaultImages()
		region  = "us-east-1"
		verbose bool
		sandbox = nodes.SandboxUserNS
		quotas  = clusters.DefaultQuotas
		tlsCfg  apitls.Config
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run skiff: the EKS API and the control-plane reconciler",
		Long: `Run skiff: the EKS wire API on --listen and the reconciler that keeps every
cluster's control plane running. State lives in --data-dir and survives restarts;
control-plane instances keep running while skiff restarts and are adopted again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if sandbox != nodes.SandboxUserNS && sandbox != nodes.SandboxHost {
				return fmt.Errorf("--node-sandbox %q: want %s or %s", sandbox, nodes.SandboxUserNS, nodes.SandboxHost)
			}
			if err := tlsCfg.Validate(listen); err != nil {
				return err
			}
			return serve(ctx, log, dataDir, listen, bundles, imgDir, region, sandbox, quotas, tlsCfg)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", dataDir, "where skiff keeps its state (env SKIFF_DATA_DIR)")
	cmd.Flags().StringVar(&listen, "listen", listen, "address of the API")
	cmd.Flags().StringVar(&bundles, "bundles", bundles, "directory of Kubernetes bundles (env SKIFF_BUNDLES)")
	cmd.Flags().StringVar(&imgDir, "images", imgDir, "directory of the system images' sources, built by `make images` (env SKIFF_IMAGES)")
	cmd.Flags().StringVar(&region, "region", region, "the region skiff presents itself as")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "debug logging")
	cmd.Flags().StringVar(&sandbox, "node-sandbox", sandbox, "how worker nodes are isolated: "+nodes.SandboxUserNS+
		" (each a system container in its own user namespace) or "+nodes.SandboxHost+" (host root; no boundary against a privileged pod)")
	cmd.Flags().IntVar(&quotas.Clusters, "quota-clusters", quotas.Clusters, "clusters an account may have")
	cmd.Flags().IntVar(&quotas.Nodes, "quota-nodes", quotas.Nodes, "worker nodes an account's node groups may run in all")
	cmd.Flags().StringVar(&tlsCfg.CertFile, "tls-cert-file", "", "the API's serving certificate (PEM); default: one of skiff's own CA, DATA/tls/ca.crt")
	cmd.Flags().StringVar(&tlsCfg.KeyFile, "tls-key-file", "", "the key of --tls-cert-file")
	cmd.Flags().StringVar(&tlsCfg.CAFile, "tls-ca-file", "", "CA bundle that clients need to trust --tls-cert-file (skiff env prints it as AWS_CA_BUNDLE)")
	cmd.Flags().BoolVar(&tlsCfg.Insecure, "insecure-http", false, "serve plain HTTP (only on a loopback --listen address)")
	return cmd
}

func serve(ctx context.Context, log *slog.Logger, dataDir, listen, bundles, imgDir, region, sandbox string, quotas clusters.Quotas,
	tlsCfg apitls.Config) error {
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	tlsCfg.Dir = filepath.Join(dataDir, "tls")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	cat, err := bundle.Load(bundles)
	if err != nil {
		return err
	}
	st, err := store.Open(filepath.Join(dataDir, "skiff.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	regLog, err := os.OpenFile(filepath.Join(dataDir, "registry.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer regLog.Close()
	reg, err := registry.New(ctx, filepath.Join(dataDir, "registry"), regLog)
	if err != nil {
		return err
	}
	defer reg.Close()
	if err := images.Seed(ctx, reg, systemImages(imgDir, cat), filepath.Join(dataDir, "seeded.json")); err != nil {
		return fmt.Errorf("seed the registry's system images: %w", err)
	}
	// Before listening: a client that reaches the listener expects the
	// serve info soon after.
	pullKey, err := secretFile(filepath.Join(dataDir, "node-pull.key"))
	if err != nil {
		return err
	}
	nodeImage := ""
	if sandbox == nodes.SandboxUserNS {
		files, err := images.NodeFiles(filepath.Join(imgDir, "pause"), imgDir)
		if err != nil {
			return err
		}
		if nodeImage, err = images.Unpack(files, filepath.Join(dataDir, "node-image")); err != nil {
			return fmt.Errorf("node image: %w", err)
		}
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s (is another skiff running? pick another --listen): %w", listen, err)
	}
	serverTLS, caBundle, err := tlsCfg.Server(ln.Addr())
	if err != nil {
		ln.Close()
		return err
	}
	scheme := "http"
	if serverTLS != nil {
		scheme = "https"
		ln = tls.NewListener(ln, serverTLS)
	}
	endpoint := scheme + "://" + ln.Addr().String()
	if err := writeServeInfo(dataDir, serveInfo{Endpoint: endpoint, Region: region, CABundle: caBundle}); err != nil {
		ln.Close()
		return err
	}
	ids := &iam.Service{Store: st}
	rt := process.New(dataDir, filepath.Join(dataDir, "clusters"), log)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	nets := &network.Service{Store: st, Region: region}
	nodeRec := nodes.New(nodes.Config{DataDir: dataDir, Store: st, Runtime: rt, Bundles: cat, Network: nets, Region: region,
		SkiffBin: self, Log: log, Credentials: nodeCredentials(ids), Registry: reg.ReadOnlyFor, RegistryHost: registry.Host(ln.Addr()),
		Sandbox: sandbox, NodeImage: nodeImage, PullKey: pullKey})
	defer nodeRec.Close()
	dnsVersion, err := images.CoreDNSVersion(imgDir)
	if err != nil {
		return err
	}
	addonCat := catalog.NewCatalog(dnsVersion, cat)
	addonMgr := &addons.Manager{Store: st, Catalog: addonCat, Log: log, Params: func(c *model.Cluster) addons.Params {
		p, _ := netip.ParsePrefix(c.EndpointAddr)
		return addons.Params{Endpoint: "https://" + net.JoinHostPort(p.Addr().String(), "443"), DNSIP: nodes.ClusterDNS, PodRange: nodes.PodRange.String()}
	}}
	eng := controlplane.New(controlplane.Config{DataDir: dataDir, Store: st, Runtime: rt, Bundles: cat, Log: log, Addons: addonMgr,
		Credentials: credentials(ids), TokenHosts: tokenHosts(ln.Addr()), TokenVPCPort: nodes.APIPort, Nodes: nodeRec, SkiffBin: self})
	svc := &clusters.Service{Store: st, Bundles: cat, Changed: eng.Trigger, SlotUsable: controlplane.SlotUsable, Network: nets, Addons: addonCat,
		Quotas: quotas}
	nets.InUse = svc.UserOf
	svc.PrincipalExists = func(p access.Principal) bool {
		if p.Kind == "role" {
			_, err := ids.GetRole(p.Account, p.Name)
			return err == nil
		}
		_, err := ids.GetUser(p.Account, p.Name)
		return err == nil
	}
	token, err := localToken(dataDir)
	if err != nil {
		return err
	}
	regTokens, err := registry.OpenTokens(filepath.Join(dataDir, "registry-token.key"))
	if err != nil {
		return err
	}
	regHost := registry.Host(ln.Addr())
	ecrAPI := &ecr.Handler{Store: st, Registry: reg, Tokens: regTokens, Region: region, Host: regHost, Account: router.Account, Log: log,
		Scheme:    scheme,
		AccessKey: func(r *http.Request) string { return router.Caller(r).AccessKeyID }}
	eksAPI := eks.New(eks.Handler{Clusters: svc, IAM: ids, Region: region, Account: router.Account, Log: log,
		CallerArn: func(r *http.Request) string { return router.Caller(r).Arn }})
	az := &authz.Authorizer{IAM: ids, Region: region, Resolve: func(account, kind string, names ...string) (string, map[string]string, bool) {
		if kind == "repository" {
			return ecrAPI.Resolve(account, kind, names...)
		}
		return eksAPI.Resolve(account, kind, names...)
	}}
	globalKeys := func(r *http.Request, caller *iam.Principal) map[string][]string {
		return az.GlobalContext(r, caller, region)
	}
	handler := &router.Router{
		IAM:      ids,
		Authz:    az,
		EKS:      eksAPI,
		EC2:      &ec2.Handler{Network: nets, Account: router.Account, Region: region},
		ECR:      ecrAPI,
		Registry: reg.Authenticated(registry.Auth{Tokens: regTokens, Host: regHost, Lookup: ecrAPI.Lookup, Log: log, Authorize: az.Registry}),
		Skiff: skiffapi.New(skiffapi.Handler{Clusters: svc, Account: router.Account, Region: region,
			Caller: func(r *http.Request) access.Caller { return callerOf(router.Caller(r)) }}),
		IAMQuery:   &query.Handler{IAM: ids, Caller: router.Caller, Service: "iam", Context: globalKeys},
		STSQuery:   &query.Handler{IAM: ids, Caller: router.Caller, Service: "sts", Context: globalKeys},
		LocalToken: token,
		Region:     region,
		Endpoint:   endpoint,
	}
	nodeRec.SetAPI(handler)
	// Headers in 10 s, the API's bodies in 30 s (the router's own read
	// deadline; registry uploads may take longer), idle connections close.
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}

	engineDone := make(chan struct{})
	go func() {
		defer close(engineDone)
		eng.Run(ctx)
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("skiff serving", "endpoint", endpoint, "dataDir", dataDir, "versions", cat.Versions())
	fmt.Fprintf(os.Stderr, "skiff is serving the EKS, IAM, STS, EC2 and ECR APIs and the registry (/v2/) on %s (data in %s)\nget credentials: eval \"$(skiff env --data-dir %s)\"\n", endpoint, dataDir, dataDir)

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	log.Info("shutting down; control planes keep running and are adopted at the next start")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	<-engineDone
	return nil
}

// systemImages says where the system images' sources are: `make images`'
// output and each bundle's kube-proxy.
func systemImages(dir string, cat *bundle.Catalog) images.Sources {
	src := images.Sources{Dir: dir, KubeProxy: map[string]string{}}
	for _, b := range cat.All() {
		if b.ProxyBinary != "" {
			src.KubeProxy[b.KubernetesVersion] = filepath.Join(b.Dir, b.ProxyBinary)
		}
	}
	return src
}

// nodeCredentials mints a managed node's credentials: its node role
// assumed by EC2 (which the role must trust, as on EKS) with the node's
// name as session name, for the longest session the role allows.
func nodeCredentials(ids *iam.Service) func(account, roleArn, session string) (string, string, string, error) {
	return func(account, roleArn, session string) (string, string, string, error) {
		ec2 := &iam.Principal{Account: account, Service: "ec2.amazonaws.com"}
		role, err := ids.RoleByArn(account, roleArn)
		if err != nil {
			return "", "", "", err
		}
		sess, _, err := ids.AssumeRole(ec2, iam.AssumeRequest{RoleArn: roleArn, SessionName: session, Duration: role.MaxSessionDuration})
		if err != nil {
			return "", "", "", err
		}
		return sess.AccessKeyID, sess.Secret, sess.Token, nil
	}
}

// callerOf is an IAM principal as access entries see it.
func callerOf(p *iam.Principal) access.Caller {
	c := access.Caller{Account: p.Account, Arn: p.Arn, UserID: p.UserID, AccessKeyID: p.AccessKeyID, Kind: "user", Name: p.User}
	if p.Role != "" {
		c.Kind, c.Name = "role", p.Role
		c.Session = p.Arn[strings.LastIndexByte(p.Arn, '/')+1:]
	}
	return c
}

// tokenHosts are the hosts an `aws eks get-token` token may be presigned
// for: this skiff's STS endpoint (any host if skiff listens on all
// addresses).
func tokenHosts(addr net.Addr) []string {
	var hosts []string
	if tcp, ok := addr.(*net.TCPAddr); ok && !tcp.IP.IsUnspecified() {
		hosts = []string{addr.String()}
		if tcp.IP.IsLoopback() {
			hosts = append(hosts, net.JoinHostPort("localhost", strconv.Itoa(tcp.Port)))
		}
	}
	return hosts
}

// credentials gives the clusters' authenticators the usable keys of
// accounts, with their callers.
func credentials(ids *iam.Service) controlplane.Credentials {
	return func(accounts []string) (map[string]authenticator.Credential, error) {
		creds, err := ids.Credentials(accounts...)
		if err != nil {
			return nil, err
		}
		out := make(map[string]authenticator.Credential, len(creds))
		for id, cr := range creds {
			out[id] = authenticator.Credential{Secret: cr.Secret, Expiration: cr.Expiration, Caller: callerOf(&cr.Principal)}
		}
		return out, nil
	}
}

// serveInfo tells local commands (skiff env) where this skiff serves.
type serveInfo struct {
	Endpoint string `json:"endpoint"`
	Region   string `json:"region"`
	CABundle string `json:"caBundle,omitempty"` // what clients trust to reach Endpoint
}

func writeServeInfo(dataDir string, info serveInfo) error {
	data, _ := json.Marshal(info)
	return os.WriteFile(filepath.Join(dataDir, "serve.json"), data, 0o600)
}

func readServeInfo(dataDir string) (serveInfo, error) {
	var info serveInfo
	data, err := os.ReadFile(filepath.Join(dataDir, "serve.json"))
	if err != nil {
		return info, err
	}
	return info, json.Unmarshal(data, &info)
}

// localToken returns the data dir's local token, creating it once: whoever
// can read the data dir (root on this host) may mint account credentials.
func localToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "local-token")
	if data, err := os.ReadFile(path); err == nil && len(data) > 0 {
		return string(data), nil
	}
	b := make([]byte, 32)
	rand.Read(b)
	token := hex.EncodeToString(b)
	return token, os.WriteFile(path, []byte(token), 0o600)
}

// secretFile returns the 32 random bytes kept in path, made on first use.
func secretFile(path string) ([]byte, error) {
	if key, err := os.ReadFile(path); err == nil && len(key) == 32 {
		return key, nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return key, nil
}
