// Package router is skiff's one endpoint. It verifies every request's SigV4
// signature against the identity store, resolves the caller, and routes by
// the service in the signature's credential scope: eks (restJson1, and
// skiff's own /skiff/v1 API), iam and sts (query protocol), ec2, ecr and
// kms (JSON 1.1). Failures get the error each service's real endpoint returns. The
// registry's /v2/ API (its own authentication, unbounded uploads) is
// routed before any of that.
package router

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"skiff.dev/skiff/internal/api/awserr"
	"skiff.dev/skiff/internal/api/ec2"
	"skiff.dev/skiff/internal/api/query"
	"skiff.dev/skiff/internal/authz"
	"skiff.dev/skiff/internal/iam"
	"skiff.dev/skiff/internal/sigv4"
)

type ctxKey struct{}

// Caller returns the verified principal of a request routed by Router.
func Caller(r *http.Request) *iam.Principal {
	p, _ := r.Context().Value(ctxKey{}).(*iam.Principal)
	if p == nil {
		return &iam.Principal{}
	}
	return p
}

// Account returns the caller's account ID.
func Account(r *http.Request) string { return Caller(r).Account }

// Router routes verified requests.
type Router struct {
	IAM *iam.Service
	// Authz, if set, enforces the callers' IAM policies.
	Authz    *authz.Authorizer
	EKS      http.Handler // restJson1
	Skiff    http.Handler // /skiff/v1/
	IAMQuery http.Handler
	STSQuery http.Handler
	EC2      http.Handler
	ECR      http.Handler // JSON 1.1
	KMS      http.Handler // JSON 1.1
	// Registry serves the OCI distribution API at /v2/ with its own
	// authentication (ECR's Basic tokens), before SigV4 and the body limit.
	Registry   http.Handler
	LocalToken string // authenticates /skiff/v1/local/ (see LocalEnv)
	// BodyTimeout bounds the time to send an API request's body
	// (DefaultBodyTimeout if zero).
	BodyTimeout time.Duration
	Region      string
	Endpoint    string
}

const maxBody = 1 << 20

// DefaultBodyTimeout is the time a client has to send an API request's body.
const DefaultBodyTimeout = 30 * time.Second

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/skiff/v1/local/") {
		rt.local(w, r)
		return
	}
	if rt.Registry != nil && (r.URL.Path == "/v2" || strings.HasPrefix(r.URL.Path, "/v2/")) {
		rt.Registry.ServeHTTP(w, r)
		return
	}
	// The body is read before the signature can be checked: bounded in
	// size, and in time, so that an anonymous client cannot hold the
	// server with a slow one.
	rc := http.NewResponseController(w)
	timeout := rt.BodyTimeout
	if timeout == 0 {
		timeout = DefaultBodyTimeout
	}
	rc.SetReadDeadline(time.Now().Add(timeout))
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		// (The deadline stays: the server must not wait for the rest.)
		w.Header().Set("Connection", "close")
		awserr.WriteJSON(w, awserr.New(http.StatusRequestTimeout, "RequestTimeoutException", "the request body was not received within "+timeout.String()))
		return
	}
	if err == nil && len(body) <= maxBody {
		rc.SetReadDeadline(time.Time{})
	}
	if err != nil || len(body) > maxBody {
		awserr.WriteJSON(w, awserr.New(http.StatusRequestEntityTooLarge, "RequestEntityTooLargeException", "the request body exceeds 1 MiB"))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	// Until the signature is verified, the claimed service only picks the
	// style of the error.
	_, service, _ := sigv4.Scope(r)
	style := styleOf(service, r)
	signed, err := sigv4.Verify(r.Context(), r, body, rt.IAM.Lookup, time.Now(), 0)
	if err != nil {
		rt.deny(w, err, style)
		return
	}
	caller, err := rt.IAM.Principal(signed.AccessKeyID)
	if err != nil {
		rt.deny(w, sigv4.ErrUnknownKey, style)
		return
	}
	// From here on the service is the one the signature covers.
	service, style = signed.Service, styleOf(signed.Service, r)
	if rt.Authz != nil {
		op := rt.Authz.Describe(service, r, body, caller, signed.Region)
		ctx, err := rt.Authz.Authorize(r, caller, op, signed.Region)
		if err != nil {
			rt.refuse(w, err, style)
			return
		}
		r = r.WithContext(ctx)
	}
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, caller))
	switch {
	case service == "eks" && strings.HasPrefix(r.URL.Path, "/skiff/v1/"):
		rt.Skiff.ServeHTTP(w, r)
	case service == "eks":
		rt.EKS.ServeHTTP(w, r)
	case service == "iam":
		rt.IAMQuery.ServeHTTP(w, r)
	case service == "sts":
		rt.STSQuery.ServeHTTP(w, r)
	case service == "ec2":
		rt.EC2.ServeHTTP(w, r)
	case service == "ecr" && rt.ECR != nil:
		rt.ECR.ServeHTTP(w, r)
	case service == "kms" && rt.KMS != nil:
		rt.KMS.ServeHTTP(w, r)
	default:
		awserr.WriteJSON(w, awserr.New(http.StatusBadRequest, "UnknownServiceException",
			"skiff serves the eks, iam, sts, ec2, ecr and kms services (and the registry at /v2/); this request was signed for "+service))
	}
}

func styleOf(service string, r *http.Request) int {
	switch {
	case service == "ecr" || service == "kms":
		return styleJSON11
	case service == "ec2":
		return styleEC2
	case service == "iam" || service == "sts" ||
		(service == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded")):
		return styleQuery
	}
	return styleJSON
}

// Error styles of the services.
const (
	styleJSON  = iota // EKS
	styleQuery        // IAM, STS
	styleEC2
	styleJSON11 // ECR, KMS
)

// deny answers a request whose signature did not verify, with the codes
// each service's real endpoint uses.
func (rt *Router) deny(w http.ResponseWriter, err error, style int) {
	type codes struct{ json, query, ec2 string }
	var c codes
	var msg string
	status := http.StatusForbidden
	switch {
	case errors.Is(err, sigv4.ErrUnsigned):
		c, msg = codes{"MissingAuthenticationTokenException", "MissingAuthenticationToken", "MissingAuthenticationToken"}, "Missing Authentication Token: sign the request with SigV4 (get credentials with 'skiff env')"
	case errors.Is(err, sigv4.ErrUnknownKey):
		c, msg = codes{"UnrecognizedClientException", "InvalidClientTokenId", "AuthFailure"}, "The security token included in the request is invalid: the access key is unknown to this skiff (get credentials with 'skiff env')"
	case errors.Is(err, sigv4.ErrExpired):
		c, msg = codes{"InvalidSignatureException", "SignatureDoesNotMatch", "RequestExpired"}, "Signature expired: "+strings.TrimPrefix(err.Error(), sigv4.ErrExpired.Error()+": ")+"; check the clock of the client"
	case errors.Is(err, sigv4.ErrSignature):
		c, msg = codes{"InvalidSignatureException", "SignatureDoesNotMatch", "AuthFailure"}, "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."
	default:
		status = http.StatusBadRequest
		c, msg = codes{"IncompleteSignatureException", "IncompleteSignature", "IncompleteSignature"}, err.Error()
	}
	switch style {
	case styleQuery:
		query.WriteError(w, awserr.New(status, c.query, msg))
	case styleEC2:
		if status == http.StatusForbidden {
			status = http.StatusUnauthorized // EC2 answers auth failures with 401
		}
		ec2.WriteError(w, awserr.New(status, c.ec2, msg))
	case styleJSON11:
		awserr.WriteJSON11(w, awserr.New(status, c.json, msg))
	default:
		awserr.WriteJSON(w, awserr.New(status, c.json, msg))
	}
}

// refuse answers a request the caller's policies do not allow, as each
// service does.
func (rt *Router) refuse(w http.ResponseWriter, err error, style int) {
	var denied *authz.Denied
	if !errors.As(err, &denied) {
		slog.Error("authorize a request", "err", err)
		e := awserr.New(http.StatusInternalServerError, "InternalFailure", "skiff could not evaluate the caller's policies; see the skiff serve log")
		switch style {
		case styleQuery:
			query.WriteError(w, e)
		case styleEC2:
			ec2.WriteError(w, e)
		case styleJSON11:
			awserr.WriteJSON11(w, e)
		default:
			awserr.WriteJSON(w, e)
		}
		return
	}
	msg := denied.Error()
	switch style {
	case styleQuery:
		query.WriteError(w, awserr.New(http.StatusForbidden, "AccessDenied", msg))
	case styleEC2:
		ec2.WriteError(w, awserr.New(http.StatusForbidden, "UnauthorizedOperation", "You are not authorized to perform this operation. "+msg))
	case styleJSON11:
		awserr.WriteJSON11(w, awserr.New(http.StatusBadRequest, "AccessDeniedException", msg))
	default:
		awserr.WriteJSON(w, awserr.New(http.StatusForbidden, "AccessDeniedException", msg))
	}
}

// LocalEnv is what `skiff env` gets for an account.
type LocalEnv struct {
	Account         string `json:"account"`
	AccountID       string `json:"accountId"`
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
	Region          string `json:"region"`
	Endpoint        string `json:"endpoint"`
}

// local serves POST /skiff/v1/local/env?account=NAME to whoever can read the
// data dir's local token (root on this machine).
func (rt *Router) local(w http.ResponseWriter, r *http.Request) {
	if rt.LocalToken == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Skiff-Local-Token")), []byte(rt.LocalToken)) != 1 {
		awserr.WriteJSON(w, awserr.New(http.StatusForbidden, "AccessDeniedException", "this call needs the data dir's local token: use 'skiff env --data-dir DIR' on the skiff host"))
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/skiff/v1/local/env" {
		awserr.WriteJSON(w, awserr.New(http.StatusNotFound, "UnknownOperationException", "only POST /skiff/v1/local/env exists here"))
		return
	}
	name := r.URL.Query().Get("account")
	if name == "" {
		name = "default"
	}
	acct, key, err := rt.IAM.EnsureAccount(name)
	if err != nil {
		awserr.WriteJSON(w, awserr.New(http.StatusBadRequest, "InvalidParameterException", err.Error()))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(LocalEnv{Account: acct.Name, AccountID: acct.ID, AccessKeyID: key.ID,
		SecretAccessKey: key.Secret, Region: rt.Region, Endpoint: rt.Endpoint})
}
