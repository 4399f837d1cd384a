// Package server assembles skiff's server (`skiff serve`): the store, IAM,
// the registry, the EKS, IAM, STS, EC2, ECR and KMS APIs on one listener, and
// the reconcilers of control planes, node groups and add-ons. Config (with
// defaults and Validate) → Start → Stop, like etcd's embed: no globals.
package server

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
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"skiff.dev/skiff/internal/access"
	"skiff.dev/skiff/internal/addons"
	"skiff.dev/skiff/internal/addons/catalog"
	"skiff.dev/skiff/internal/api/ec2"
	"skiff.dev/skiff/internal/api/ecr"
	"skiff.dev/skiff/internal/api/eks"
	kmsapi "skiff.dev/skiff/internal/api/kms"
	"skiff.dev/skiff/internal/api/query"
	"skiff.dev/skiff/internal/api/router"
	"skiff.dev/skiff/internal/api/skiffapi"
	"skiff.dev/skiff/internal/apitls"
	"skiff.dev/skiff/internal/authenticator"
	"skiff.dev/skiff/internal/authz"
	"skiff.dev/skiff/internal/bundle"
	"skiff.dev/skiff/internal/clusters"
	"skiff.dev/skiff/internal/console"
	"skiff.dev/skiff/internal/controlplane"
	"skiff.dev/skiff/internal/iam"
	"skiff.dev/skiff/internal/images"
	"skiff.dev/skiff/internal/kms"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/network"
	"skiff.dev/skiff/internal/nodes"
	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/runtime/process"
	"skiff.dev/skiff/internal/store"
)

// Config of a server.
type Config struct {
	DataDir string // where state lives (made absolute)
	Listen  string // the API's address; default 127.0.0.1:7443
	Bundles string // directory of Kubernetes bundles
	Images  string // directory of the system images' sources
	Region  string // default us-east-1
	// Sandbox is how worker nodes are isolated (nodes.SandboxUserNS, the
	// default, or nodes.SandboxHost).
	Sandbox string
	Quotas  clusters.Quotas // zero: clusters.DefaultQuotas
	// DrainTimeout is how long a node group's version update waits for
	// evictions that PodDisruptionBudgets refuse (zero: 15 minutes, as EKS).
	DrainTimeout time.Duration
	TLS          apitls.Config
	Log          *slog.Logger
}

// Validate checks cfg and fills in defaults.
func (cfg *Config) Validate() error {
	if cfg.DataDir == "" {
		return errors.New("no data dir")
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	cfg.DataDir = dir
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:7443"
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Sandbox == "" {
		cfg.Sandbox = nodes.SandboxUserNS
	}
	if !slices.Contains([]string{nodes.SandboxUserNS, nodes.SandboxHost}, cfg.Sandbox) {
		return fmt.Errorf("--node-sandbox %q: want %s or %s", cfg.Sandbox, nodes.SandboxUserNS, nodes.SandboxHost)
	}
	if cfg.Quotas == (clusters.Quotas{}) {
		cfg.Quotas = clusters.DefaultQuotas
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return cfg.TLS.Validate(cfg.Listen)
}

// Server is a started skiff.
type Server struct {
	endpoint string
	ctx      context.Context
	cancel   context.CancelFunc
	srv      *http.Server
	served   chan error
	engine   chan struct{}
	closers  []func() // in the order made; run backwards
	log      *slog.Logger
}

// Start validates cfg and starts a server: when it returns, the API
// listens and serve.json names it; the reconcilers run. ctx bounds the
// start only; Stop ends the server.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{served: make(chan error, 1), engine: make(chan struct{}), log: cfg.Log}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		if err != nil {
			s.cancel()
			s.close()
		}
	}()
	dataDir, listen, bundles, imgDir, region, sandbox, quotas, tlsCfg, log :=
		cfg.DataDir, cfg.Listen, cfg.Bundles, cfg.Images, cfg.Region, cfg.Sandbox, cfg.Quotas, cfg.TLS, cfg.Log
	tlsCfg.Dir = filepath.Join(dataDir, "tls")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	cat, err := bundle.Load(bundles)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(filepath.Join(dataDir, "skiff.db"))
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { st.Close() })
	regLog, err := os.OpenFile(filepath.Join(dataDir, "registry.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { regLog.Close() })
	reg, err := registry.New(s.ctx, filepath.Join(dataDir, "registry"), regLog)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { reg.Close() })
	if err := images.Seed(ctx, reg, systemImages(imgDir, cat), filepath.Join(dataDir, "seeded.json")); err != nil {
		return nil, fmt.Errorf("seed the registry's system images: %w", err)
	}
	// Before listening: a client that reaches the listener expects the
	// serve info soon after.
	pullKey, err := secretFile(filepath.Join(dataDir, "node-pull.key"))
	if err != nil {
		return nil, err
	}
	nodeImage := ""
	if sandbox == nodes.SandboxUserNS {
		files, err := images.NodeFiles(filepath.Join(imgDir, "pause"), imgDir)
		if err != nil {
			return nil, err
		}
		if nodeImage, err = images.Unpack(files, filepath.Join(dataDir, "node-image")); err != nil {
			return nil, fmt.Errorf("node image: %w", err)
		}
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (is another skiff running? pick another --listen): %w", listen, err)
	}
	s.closers = append(s.closers, func() { ln.Close() })
	serverTLS, caBundle, err := tlsCfg.Server(ln.Addr())
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if serverTLS != nil {
		scheme = "https"
		ln = tls.NewListener(ln, serverTLS)
	}
	endpoint := scheme + "://" + ln.Addr().String()
	if err := WriteInfo(dataDir, Info{Endpoint: endpoint, Region: region, CABundle: caBundle}); err != nil {
		return nil, err
	}
	ids := &iam.Service{Store: st}
	rt := process.New(dataDir, filepath.Join(dataDir, "clusters"), log)
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	nets := &network.Service{Store: st, Region: region}
	nodeRec := nodes.New(nodes.Config{DataDir: dataDir, Store: st, Runtime: rt, Bundles: cat, Network: nets, Region: region,
		SkiffBin: self, Log: log, Credentials: nodeCredentials(ids), RegistryHost: registry.Host(ln.Addr()),
		Sandbox: sandbox, NodeImage: nodeImage, PullKey: pullKey, RegistryDir: filepath.Join(dataDir, "registry"),
		SocketDir: controlplane.EgressDir, ReplaceDrainLimit: cfg.DrainTimeout})
	s.closers = append(s.closers, func() { nodeRec.Close() })
	dnsVersion, err := images.CoreDNSVersion(imgDir)
	if err != nil {
		return nil, err
	}
	addonCat := catalog.NewCatalog(dnsVersion, cat)
	addonMgr := &addons.Manager{Store: st, Catalog: addonCat, Log: log, Params: func(c *model.Cluster) addons.Params {
		p, _ := netip.ParsePrefix(c.EndpointAddr)
		return addons.Params{Endpoint: "https://" + net.JoinHostPort(p.Addr().String(), "443"), DNSIP: nodes.ClusterDNS, PodRange: nodes.PodRange.String()}
	}}
	// KMS keys' material is sealed by a root key of the data dir; Check
	// finds a lost or replaced one before any key is used.
	kmsRoot, err := kms.OpenRootKey(kms.RootKeyPath(dataDir))
	if err != nil {
		return nil, err
	}
	keys := &kms.Service{Store: st, Root: kmsRoot, Region: region, Log: log}
	if err := keys.Check(); err != nil {
		return nil, err
	}
	eng := controlplane.New(controlplane.Config{DataDir: dataDir, Store: st, Runtime: rt, Bundles: cat, Log: log, Addons: addonMgr, AddonCatalog: addonCat,
		Credentials: credentials(ids), TokenHosts: tokenHosts(ln.Addr()), TokenVPCPort: nodes.APIPort, Nodes: nodeRec, SkiffBin: self, Keys: keys, Sealer: kmsRoot})
	svc := &clusters.Service{Store: st, Bundles: cat, Changed: eng.Trigger, SlotUsable: rt.SlotFree, Network: nets, Addons: addonCat,
		Quotas: quotas, Keys: keys}
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
		return nil, err
	}
	regTokens, err := registry.OpenTokens(filepath.Join(dataDir, "registry-token.key"))
	if err != nil {
		return nil, err
	}
	regHost := registry.Host(ln.Addr())
	ecrAPI := &ecr.Handler{Store: st, Registry: reg, Tokens: regTokens, Region: region, Host: regHost, Account: router.Account, Log: log,
		Scheme:    scheme,
		AccessKey: func(r *http.Request) string { return router.Caller(r).AccessKeyID }}
	kmsAPI := &kmsapi.Handler{KMS: keys, Account: router.Account, Log: log}
	eksAPI := eks.New(eks.Handler{Clusters: svc, IAM: ids, Region: region, Account: router.Account, Log: log,
		CallerArn: func(r *http.Request) string { return router.Caller(r).Arn }})
	az := &authz.Authorizer{IAM: ids, Region: region, Resolve: func(account, kind string, names ...string) (string, map[string]string, bool) {
		switch kind {
		case "repository":
			return ecrAPI.Resolve(account, kind, names...)
		case "key":
			return kmsAPI.Resolve(account, kind, names...)
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
		KMS:      kmsAPI,
		Registry: reg.Authenticated(registry.Auth{Tokens: regTokens, Host: regHost, Lookup: ecrAPI.Lookup, Log: log, Authorize: az.Registry}),
		Skiff: skiffapi.New(skiffapi.Handler{Clusters: svc, Account: router.Account, Region: region,
			Caller: func(r *http.Request) access.Caller { return CallerOf(router.Caller(r)) }}),
		IAMQuery:   &query.Handler{IAM: ids, Caller: router.Caller, Service: "iam", Context: globalKeys},
		STSQuery:   &query.Handler{IAM: ids, Caller: router.Caller, Service: "sts", Context: globalKeys},
		LocalToken: token,
		Region:     region,
		Endpoint:   endpoint,
	}
	nodeRec.SetAPI(handler)
	// The console is a client of the API: its calls go through handler.
	con, err := console.New(console.Config{API: handler, Endpoint: endpoint, Region: region, Lookup: ids.Lookup,
		Secure: serverTLS != nil, Log: log})
	if err != nil {
		return nil, err
	}
	srv := apiServer(withConsole(con, handler), apiHeaderTimeout, apiIdleTimeout)
	srv.RegisterOnShutdown(con.Close)
	s.closers = append(s.closers, con.Close)

	s.endpoint, s.srv = endpoint, srv
	go func() {
		defer close(s.engine)
		eng.Run(s.ctx)
	}()
	// Deletions and rotations of KMS keys that come due.
	kmsDone := make(chan struct{})
	go func() {
		defer close(kmsDone)
		keys.Run(s.ctx, kmsTick)
	}()
	s.closers = append(s.closers, func() { <-kmsDone })
	go func() { s.served <- srv.Serve(ln) }()
	log.Info("skiff serving", "endpoint", endpoint, "dataDir", dataDir, "versions", cat.Versions())
	return s, nil
}

// kmsTick is how often the KMS keys whose deletion or automatic rotation
// is due are deleted or rotated (a key is gone for the API at its deletion
// date already).
const kmsTick = 10 * time.Minute

// The API's timeouts: headers in 10 s, idle connections close after 2
// minutes. Bodies have no server-wide deadline (registry uploads may take
// long): the router bounds the API's own (router.DefaultBodyTimeout).
const (
	apiHeaderTimeout = 10 * time.Second
	apiIdleTimeout   = 2 * time.Minute
)

// apiServer is the API's http.Server over h.
// withConsole serves the console at /console/ and everything else with
// api (whose paths must reach it unchanged: no mux cleans them).
func withConsole(con, api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/console" {
			http.Redirect(w, r, "/console/", http.StatusMovedPermanently)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/console/") {
			con.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

func apiServer(h http.Handler, header, idle time.Duration) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: header, IdleTimeout: idle, MaxHeaderBytes: 64 << 10}
}

// Endpoint is the API's URL.
func (s *Server) Endpoint() string { return s.endpoint }

// Done yields the API server's error if it stops by itself.
func (s *Server) Done() <-chan error { return s.served }

// Stop ends the server: the API, then the reconcilers. Control planes and
// nodes keep running; the next start adopts them.
func (s *Server) Stop() {
	start := time.Now()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(sctx)
	api := time.Since(start)
	s.cancel()
	<-s.engine
	engine := time.Since(start)
	s.close()
	if s.log != nil {
		s.log.Info("stopped", "api", api.Round(time.Millisecond), "reconcilers", engine.Round(time.Millisecond),
			"all", time.Since(start).Round(time.Millisecond))
	}
}

func (s *Server) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
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

// CallerOf is an IAM principal as access entries see it.
func CallerOf(p *iam.Principal) access.Caller {
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
			out[id] = authenticator.Credential{Secret: cr.Secret, Expiration: cr.Expiration, Caller: CallerOf(&cr.Principal)}
		}
		return out, nil
	}
}

// Info tells local commands (skiff env) where this skiff serves: the data
// dir's serve.json.
type Info struct {
	Endpoint string `json:"endpoint"`
	Region   string `json:"region"`
	CABundle string `json:"caBundle,omitempty"` // what clients trust to reach Endpoint
}

// WriteInfo writes the data dir's serve.json.
func WriteInfo(dataDir string, info Info) error {
	data, _ := json.Marshal(info)
	return os.WriteFile(filepath.Join(dataDir, "serve.json"), data, 0o600)
}

// ReadInfo reads the data dir's serve.json.
func ReadInfo(dataDir string) (Info, error) {
	var info Info
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
