// Package authenticator is a cluster's IAM token authenticator (what EKS
// runs as aws-iam-authenticator on its control-plane instances), run as
// instances of their own (`skiff authenticator`): the apiservers' token
// review webhook. It verifies `aws eks get-token` tokens and maps their
// callers through the cluster's access entries (and the aws-auth
// ConfigMap), from material the reconciler writes for it: the cluster's
// access configuration and the usable keys of the accounts concerned. So
// it keeps working, tokens minted meanwhile included, while skiff is down.
//
// Two replicas share the webhook's address with SO_REUSEPORT; each
// answers GET /healthz on a status address of its own.
package authenticator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"skiff.dev/skiff/internal/access"
	"skiff.dev/skiff/internal/authn"
	"skiff.dev/skiff/internal/lb"
	"skiff.dev/skiff/internal/material"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/sigv4"
	"skiff.dev/skiff/internal/status"
)

// Material is what an authenticator verifies tokens with.
type Material struct {
	// Cluster is the cluster's record (its access configuration).
	Cluster model.Cluster `json:"cluster"`
	// Hosts are the host:port values a token's URL may name (skiff's STS
	// endpoints); empty accepts any. VPCPort also accepts any private
	// address on that port (skiff's API inside VPCs, where nodes mint).
	Hosts   []string `json:"hosts,omitempty"`
	VPCPort int      `json:"vpcPort,omitempty"`
	// Credentials are the usable keys, by access key ID.
	Credentials map[string]Credential `json:"credentials"`
}

// Credential is a usable key and its caller.
type Credential struct {
	Secret     sigv4.Secret  `json:"secret"`
	Expiration time.Time     `json:"expiration,omitzero"` // of a session
	Caller     access.Caller `json:"caller"`
}

// WriteMaterial writes m to path (mode 0600, atomically) unless the file
// already holds it; it reports whether it wrote.
func WriteMaterial(path string, m *Material) (bool, error) {
	return material.Write(path, m)
}

// Config of one authenticator replica.
type Config struct {
	// Listen is the webhook's address, shared with the other replicas.
	Listen string
	// CertFile and KeyFile are the serving certificate; ClientCAFile and
	// ClientCN the only client allowed (the apiservers' certificate).
	CertFile, KeyFile, ClientCAFile, ClientCN string
	// Material is the file the reconciler keeps up to date.
	Material string
	// Kubeconfig reads the aws-auth ConfigMap, dialing from Source (the
	// endpoint always lets that address in).
	Kubeconfig string
	Source     netip.Addr
	// Status is where GET /healthz answers (host:port).
	Status string
	// Timeouts bound a client of the webhook and of the status server
	// (zero fields: webhookTimeouts and status.DefaultTimeouts).
	Timeouts status.Timeouts
	Log      *slog.Logger
}

// webhookTimeouts are the webhook's: a TokenReview is small and answered
// within seconds (an aws-auth read takes at most 2 s); the apiservers keep
// idle connections 90 s, so the webhook keeps them longer.
var webhookTimeouts = status.Timeouts{Header: 5 * time.Second, Read: 10 * time.Second, Idle: 2 * time.Minute}

// Validate checks cfg and fills in defaults.
func (cfg *Config) Validate() error {
	var errs []error
	for name, v := range map[string]string{"listen address": cfg.Listen, "certificate": cfg.CertFile, "key": cfg.KeyFile,
		"client CA": cfg.ClientCAFile, "client name": cfg.ClientCN, "material": cfg.Material, "kubeconfig": cfg.Kubeconfig,
		"status address": cfg.Status} {
		if v == "" {
			errs = append(errs, fmt.Errorf("no %s", name))
		}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return errors.Join(errs...)
}

// Run serves until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("authenticator: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("authenticator certificate: %w", err)
	}
	ca, err := os.ReadFile(cfg.ClientCAFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("authenticator: no certificate in %s", cfg.ClientCAFile)
	}
	tlsCfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
			if len(chains) == 0 || chains[0][0].Subject.CommonName != cfg.ClientCN {
				return errors.New("only the cluster's apiservers may call the token-review webhook")
			}
			return nil
		},
	}
	rest, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return err
	}
	rest.Timeout = 2 * time.Second
	if cfg.Source.IsValid() {
		rest.Dial = (&net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: cfg.Source.AsSlice()}}).DialContext
	}
	admin, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return err
	}
	h := &Handler{Material: cfg.Material, Admin: admin, Log: cfg.Log}
	if _, err := h.material(); err != nil {
		return err
	}
	ln, err := lb.ListenShared(cfg.Listen)
	if err != nil {
		return fmt.Errorf("authenticator: %w", err)
	}
	srv := webhookServer(h, tlsCfg, cfg.Timeouts)
	go srv.ServeTLS(ln, "", "")
	st, err := status.Start(status.Config{Addr: cfg.Status, Timeouts: cfg.Timeouts}, func() (any, error) {
		m, err := h.material()
		if err != nil {
			return nil, err
		}
		return map[string]int{"credentials": len(m.Credentials)}, nil
	})
	if err != nil {
		srv.Close()
		return err
	}
	cfg.Log.Info("authenticator serving", "listen", cfg.Listen)
	<-ctx.Done()
	// Stop accepting first (the other replica takes new connections), then
	// let the reviews in flight finish.
	st.Close()
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// webhookServer is the webhook's server: t bounds the TLS handshake, the
// request's header and body, and idle connections (webhookTimeouts where
// t has none).
func webhookServer(h http.Handler, tlsCfg *tls.Config, t status.Timeouts) *http.Server {
	srv := &http.Server{Handler: h, TLSConfig: tlsCfg,
		ErrorLog: log.New(io.Discard, "", 0)} // TLS handshake noise from probes
	return t.Apply(srv, webhookTimeouts)
}

// awsAuthTTL is how long the handler reuses the aws-auth ConfigMap it read.
const awsAuthTTL = 5 * time.Second

// Handler answers TokenReviews (authentication.k8s.io/v1) at /authenticate.
type Handler struct {
	Material string               // the material file
	Admin    kubernetes.Interface // to read aws-auth
	Log      *slog.Logger

	mu        sync.Mutex
	mat       *material.File[Material]
	awsAuth   *access.AWSAuth
	awsAuthAt time.Time
}

// material returns the material, read again when the file changed.
func (h *Handler) material() (*Material, error) {
	h.mu.Lock()
	if h.mat == nil || h.mat.Path != h.Material {
		h.mat = &material.File[Material]{Path: h.Material}
	}
	f := h.mat
	h.mu.Unlock()
	m, err := f.Get()
	if err != nil {
		return nil, fmt.Errorf("authenticator material: %w", err)
	}
	return &m, nil
}

// ServeHTTP answers a TokenReview.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/authenticate" {
		http.Error(w, "POST a TokenReview to /authenticate", http.StatusNotFound)
		return
	}
	var review authenticationv1.TokenReview
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&review); err != nil {
		http.Error(w, "the body is not a TokenReview: "+err.Error(), http.StatusBadRequest)
		return
	}
	out := authenticationv1.TokenReview{TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"}}
	u, err := h.authenticate(r.Context(), review.Spec.Token)
	switch {
	case err != nil:
		out.Status.Error = err.Error()
	case u != nil:
		auds, ok := Audiences(review.Spec.Audiences)
		if !ok {
			out.Status.Error = "an IAM token is valid for the cluster's API audience " + APIAudience + " only"
			break
		}
		out.Status.Audiences = auds
		out.Status.Authenticated = true
		out.Status.User = authenticationv1.UserInfo{Username: u.Username, UID: u.UID, Groups: u.Groups, Extra: map[string]authenticationv1.ExtraValue{}}
		for k, v := range u.Extra {
			out.Status.User.Extra[k] = v
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// APIAudience is the cluster API's audience (its service-account issuer).
const APIAudience = "https://kubernetes.default.svc.cluster.local"

// Audiences answers a TokenReview's audiences for a valid IAM token. The
// token is bound to its cluster (x-k8s-aws-id), so it is good for the
// cluster's own API audience only: asked about any other (a TokenReview
// for "vault"), it is not valid. No audiences asked means the apiserver's.
func Audiences(asked []string) ([]string, bool) {
	if len(asked) == 0 {
		return nil, true
	}
	if !slices.Contains(asked, APIAudience) {
		return nil, false
	}
	return []string{APIAudience}, true
}

// authenticate returns the token's user, nil for a token that is not an
// IAM token (another authenticator's), or why an IAM token is refused.
func (h *Handler) authenticate(ctx context.Context, token string) (*access.User, error) {
	if !strings.HasPrefix(token, authn.Prefix) {
		return nil, nil
	}
	m, err := h.material()
	if err != nil {
		return nil, err
	}
	c := &m.Cluster
	caller, err := m.tokens().Identify(ctx, token, c.Name)
	if err != nil {
		h.Log.Info("IAM token refused", "cluster", c.Name, "err", err)
		return nil, err
	}
	u, ok := access.Resolve(c, caller, nil)
	if !ok && c.AuthenticationMode != access.ModeAPI {
		u, ok = access.Resolve(c, caller, h.readAWSAuth(ctx))
	}
	if !ok {
		h.Log.Info("IAM principal has no access to the cluster", "cluster", c.Name, "principal", caller.Arn)
		return nil, fmt.Errorf("%s has no access entry on cluster %s; create one with 'aws eks create-access-entry --cluster-name %s --principal-arn %s'",
			caller.Arn, c.Name, c.Name, caller.CanonicalArn())
	}
	h.Log.Debug("IAM token accepted", "cluster", c.Name, "principal", caller.Arn, "username", u.Username)
	return u, nil
}

// tokens verifies tokens against the material's keys.
func (m *Material) tokens() *access.Tokens {
	find := func(id string) (Credential, bool) {
		cr, ok := m.Credentials[id]
		if !ok || !cr.Expiration.IsZero() && !time.Now().Before(cr.Expiration) {
			return Credential{}, false
		}
		return cr, true
	}
	return &access.Tokens{
		Verifier: &authn.Verifier{
			Hosts:     m.Hosts,
			AllowHost: func(host string) bool { return m.VPCPort != 0 && VPCHost(host, m.VPCPort) },
			Lookup: func(_ context.Context, id string) (sigv4.Secret, error) {
				cr, ok := find(id)
				if !ok {
					return sigv4.Secret{}, sigv4.ErrUnknownKey
				}
				return cr.Secret, nil
			},
		},
		Principal: func(id string) (access.Caller, error) {
			cr, ok := find(id)
			if !ok {
				return access.Caller{}, sigv4.ErrUnknownKey
			}
			return cr.Caller, nil
		},
	}
}

// VPCHost accepts skiff's API address inside a VPC (nodes mint their tokens
// against it): a private address on port.
func VPCHost(host string, port int) bool {
	ap, err := netip.ParseAddrPort(host)
	if err != nil {
		a, err2 := netip.ParseAddr(host)
		if err2 != nil {
			return false
		}
		ap = netip.AddrPortFrom(a, 80)
	}
	return int(ap.Port()) == port && (ap.Addr().IsPrivate() || netip.MustParsePrefix("100.64.0.0/10").Contains(ap.Addr()))
}

// readAWSAuth returns the cluster's aws-auth ConfigMap, parsed, from a
// short cache; nil if it is missing or unreadable.
func (h *Handler) readAWSAuth(ctx context.Context) *access.AWSAuth {
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.awsAuthAt) < awsAuthTTL {
		return h.awsAuth
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cm, err := h.Admin.CoreV1().ConfigMaps(access.AWSAuthNamespace).Get(ctx, access.AWSAuthName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		h.awsAuth = nil
	case err != nil:
		h.Log.Warn("read aws-auth ConfigMap", "err", err)
		return h.awsAuth // the last good one; retry at the next token
	default:
		a, err := access.ParseAWSAuth(cm.Data)
		if err != nil {
			h.Log.Warn("the aws-auth ConfigMap does not parse; fix it with kubectl edit -n kube-system configmap/aws-auth", "err", err)
		}
		h.awsAuth = a
	}
	h.awsAuthAt = time.Now()
	return h.awsAuth
}
