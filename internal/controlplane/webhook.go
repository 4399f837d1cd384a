package controlplane

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
	"slices"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"skiff.dev/skiff/internal/access"
	"skiff.dev/skiff/internal/authn"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/pki"
	"skiff.dev/skiff/internal/store"
)

// The apiservers' client certificate for the webhook.
const (
	webhookClient   = "authn-webhook"
	webhookClientCN = "kube-apiserver-authn-webhook"
)

// Tokens identifies the IAM caller of an `aws eks get-token` token minted
// for the cluster named cluster (access.Tokens).
type Tokens interface {
	Identify(ctx context.Context, token, cluster string) (access.Caller, error)
}

// awsAuthTTL is how long the webhook reuses the aws-auth ConfigMap it read.
const awsAuthTTL = 5 * time.Second

// webhook is a cluster's token-review webhook: the apiservers send it
// every bearer token they do not know themselves; it answers with the
// Kubernetes identity of the token's IAM caller, or not authenticated.
type webhook struct {
	key    string // cluster key
	store  *store.Store
	tokens Tokens
	admin  kubernetes.Interface // to read aws-auth
	log    *slog.Logger
	srv    *http.Server

	mu        sync.Mutex
	awsAuth   *access.AWSAuth
	awsAuthAt time.Time
}

// startWebhook serves the webhook of cluster c on its own address, with a
// serving certificate from the cluster CA, to clients holding the
// apiservers' webhook client certificate only.
func startWebhook(c *model.Cluster, l Layout, st *store.Store, tokens Tokens, admin kubernetes.Interface, logger *slog.Logger) (*webhook, error) {
	dir := l.PKIDir()
	cert, err := tls.LoadX509KeyPair(pki.Path(dir, "webhook", ".crt"), pki.Path(dir, "webhook", ".key"))
	if err != nil {
		return nil, fmt.Errorf("webhook certificate: %w", err)
	}
	ca, err := l.CAPEM()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	tlsCfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
			if len(chains) == 0 || chains[0][0].Subject.CommonName != webhookClientCN {
				return errors.New("only the cluster's apiservers may call the token-review webhook")
			}
			return nil
		},
	}
	addr := hostPort(l.WebhookIP(), WebhookPort)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: listen for the token-review webhook on %s: %w", c.Name, addr, err)
	}
	wh := &webhook{key: c.Key(), store: st, tokens: tokens, admin: admin, log: logger}
	wh.srv = &http.Server{Handler: wh, TLSConfig: tlsCfg, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)} // TLS handshake noise from probes
	go wh.srv.ServeTLS(ln, "", "")
	return wh, nil
}

func (wh *webhook) Close() {
	if wh != nil {
		wh.srv.Close()
	}
}

// ServeHTTP answers a TokenReview (authentication.k8s.io/v1).
func (wh *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
	u, err := wh.authenticate(r.Context(), review.Spec.Token)
	switch {
	case err != nil:
		out.Status.Error = err.Error()
	case u != nil:
		auds, ok := tokenAudiences(review.Spec.Audiences)
		if !ok {
			out.Status.Error = "an IAM token is valid for the cluster's API audience " + ServiceAccountIssuer + " only"
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

// tokenAudiences answers a TokenReview's audiences for a valid IAM token.
// The token is bound to its cluster (x-k8s-aws-id), so it is good for the
// cluster's own API audience only: asked about any other (a TokenReview
// for "vault"), it is not valid. No audiences asked means the apiserver's.
func tokenAudiences(asked []string) ([]string, bool) {
	if len(asked) == 0 {
		return nil, true
	}
	if !slices.Contains(asked, ServiceAccountIssuer) {
		return nil, false
	}
	return []string{ServiceAccountIssuer}, true
}

// authenticate returns the token's user, nil for a token that is not an
// IAM token (another authenticator's), or why an IAM token is refused.
func (wh *webhook) authenticate(ctx context.Context, token string) (*access.User, error) {
	if !strings.HasPrefix(token, authn.Prefix) {
		return nil, nil
	}
	c, err := wh.store.GetCluster(wh.key)
	if err != nil {
		return nil, fmt.Errorf("cluster unknown to skiff: %v", err)
	}
	if wh.tokens == nil {
		return nil, errors.New("this skiff does not verify IAM tokens")
	}
	caller, err := wh.tokens.Identify(ctx, token, c.Name)
	if err != nil {
		wh.log.Info("IAM token refused", "cluster", c.Name, "err", err)
		return nil, err
	}
	u, ok := access.Resolve(c, caller, nil)
	if !ok && c.AuthenticationMode != access.ModeAPI {
		u, ok = access.Resolve(c, caller, wh.readAWSAuth(ctx))
	}
	if !ok {
		wh.log.Info("IAM principal has no access to the cluster", "cluster", c.Name, "principal", caller.Arn)
		return nil, fmt.Errorf("%s has no access entry on cluster %s; create one with 'aws eks create-access-entry --cluster-name %s --principal-arn %s'",
			caller.Arn, c.Name, c.Name, caller.CanonicalArn())
	}
	wh.log.Debug("IAM token accepted", "cluster", c.Name, "principal", caller.Arn, "username", u.Username)
	return u, nil
}

// readAWSAuth returns the cluster's aws-auth ConfigMap, parsed, from a
// short cache; nil if it is missing or unreadable.
func (wh *webhook) readAWSAuth(ctx context.Context) *access.AWSAuth {
	wh.mu.Lock()
	defer wh.mu.Unlock()
	if time.Since(wh.awsAuthAt) < awsAuthTTL {
		return wh.awsAuth
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cm, err := wh.admin.CoreV1().ConfigMaps(access.AWSAuthNamespace).Get(ctx, access.AWSAuthName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		wh.awsAuth = nil
	case err != nil:
		wh.log.Warn("read aws-auth ConfigMap", "cluster", wh.key, "err", err)
		return wh.awsAuth // the last good one; retry at the next token
	default:
		a, err := access.ParseAWSAuth(cm.Data)
		if err != nil {
			wh.log.Warn("the aws-auth ConfigMap does not parse; fix it with kubectl edit -n kube-system configmap/aws-auth", "cluster", wh.key, "err", err)
		}
		wh.awsAuth = a
	}
	wh.awsAuthAt = time.Now()
	return wh.awsAuth
}
