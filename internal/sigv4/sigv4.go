// Package sigv4 verifies AWS Signature Version 4 requests, in the header
// form (Authorization: AWS4-HMAC-SHA256 …) and the presigned-query form
// (X-Amz-Signature=…). It re-signs exactly the headers the client signed
// with aws-sdk-go-v2's own signer and compares the signatures in constant
// time, so canonicalization is never written twice.
package sigv4

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// MaxSkew is how far a request's time may be from the server's.
const MaxSkew = 15 * time.Minute

// Errors of verification; callers map them to their service's error names.
var (
	ErrUnsigned   = errors.New("request is not signed")
	ErrMalformed  = errors.New("malformed signature")
	ErrUnknownKey = errors.New("unknown access key")
	ErrSignature  = errors.New("signature does not match")
	ErrExpired    = errors.New("signature expired")
)

// Secret is what a lookup returns for an access key.
type Secret struct {
	SecretAccessKey string
	SessionToken    string // required on the request if set
}

// Lookup finds the secret of an access key; it returns ErrUnknownKey (wrapped
// or not) for a key it does not know.
type Lookup func(ctx context.Context, accessKeyID string) (Secret, error)

// Signed describes a verified request.
type Signed struct {
	AccessKeyID string
	Service     string
	Region      string
	Time        time.Time
	Presigned   bool
}

// Scope parses the credential scope of a request without verifying it: the
// access key and service it claims (for routing). ok is false if unsigned.
func Scope(r *http.Request) (accessKeyID, service string, ok bool) {
	cred := r.URL.Query().Get("X-Amz-Credential")
	if auth := r.Header.Get("Authorization"); auth != "" {
		cred = authField(auth, "Credential")
	}
	parts := strings.Split(cred, "/")
	if len(parts) != 5 {
		return "", "", false
	}
	return parts[0], parts[3], true
}

func authField(auth, name string) string {
	_, rest, _ := strings.Cut(auth, " ")
	for _, f := range strings.Split(rest, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(f), name+"="); ok {
			return v
		}
	}
	return ""
}

// Verify checks r's signature; body is the request body already read.
// For presigned requests the URL must still be valid at now (X-Amz-Date +
// X-Amz-Expires), with maxAge (if not zero) bounding X-Amz-Date's age too.
func Verify(ctx context.Context, r *http.Request, body []byte, lookup Lookup, now time.Time, maxAge time.Duration) (*Signed, error) {
	auth := r.Header.Get("Authorization")
	if r.URL.Query().Get("X-Amz-Signature") != "" {
		// A presigned URL signs no body: it may only read.
		if r.Method != http.MethodGet || len(body) > 0 || auth != "" {
			return nil, fmt.Errorf("%w: a presigned request must be a GET with no body and no Authorization header", ErrMalformed)
		}
		return verifyPresigned(ctx, r, lookup, now, maxAge)
	}
	if auth == "" {
		return nil, ErrUnsigned
	}
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 ") {
		return nil, fmt.Errorf("%w: only AWS4-HMAC-SHA256 is supported", ErrMalformed)
	}
	cred, signedHeaders, sig := authField(auth, "Credential"), authField(auth, "SignedHeaders"), authField(auth, "Signature")
	scope := strings.Split(cred, "/")
	if len(scope) != 5 || scope[4] != "aws4_request" || signedHeaders == "" || sig == "" {
		return nil, fmt.Errorf("%w: Authorization header lacks Credential, SignedHeaders or Signature", ErrMalformed)
	}
	t, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return nil, fmt.Errorf("%w: missing or bad X-Amz-Date header", ErrMalformed)
	}
	if scope[1] != t.Format("20060102") {
		return nil, fmt.Errorf("%w: the credential scope's date %s is not the day of X-Amz-Date", ErrSignature, scope[1])
	}
	if d := now.Sub(t); d > MaxSkew || d < -MaxSkew {
		return nil, fmt.Errorf("%w: request time %s is more than %v from the server's %s", ErrExpired,
			t.Format(time.RFC3339), MaxSkew, now.UTC().Format(time.RFC3339))
	}
	secret, err := lookup(ctx, scope[0])
	if err != nil {
		return nil, err
	}
	if secret.SessionToken != "" && r.Header.Get("X-Amz-Security-Token") != secret.SessionToken {
		return nil, fmt.Errorf("%w: the security token is missing or does not match", ErrSignature)
	}
	clone, err := signable(r, strings.Split(signedHeaders, ";"), nil)
	if err != nil {
		return nil, err
	}
	// The signature covers the hash of the body actually received: a
	// client's X-Amz-Content-Sha256 (UNSIGNED-PAYLOAD included) must equal it.
	sum := sha256.Sum256(body)
	payload := hex.EncodeToString(sum[:])
	if claimed := r.Header.Get("X-Amz-Content-Sha256"); claimed != "" && claimed != payload {
		return nil, fmt.Errorf("%w: X-Amz-Content-Sha256 %q is not the SHA-256 of the request body", ErrSignature, claimed)
	}
	creds := aws.Credentials{AccessKeyID: scope[0], SecretAccessKey: secret.SecretAccessKey, SessionToken: secret.SessionToken}
	if err := v4.NewSigner().SignHTTP(ctx, creds, clone, payload, scope[3], scope[2], t); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !hmac.Equal([]byte(authField(clone.Header.Get("Authorization"), "Signature")), []byte(sig)) {
		return nil, ErrSignature
	}
	return &Signed{AccessKeyID: scope[0], Service: scope[3], Region: scope[2], Time: t}, nil
}

func verifyPresigned(ctx context.Context, r *http.Request, lookup Lookup, now time.Time, maxAge time.Duration) (*Signed, error) {
	q := r.URL.Query()
	if q.Get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" {
		return nil, fmt.Errorf("%w: X-Amz-Algorithm must be AWS4-HMAC-SHA256", ErrMalformed)
	}
	scope := strings.Split(q.Get("X-Amz-Credential"), "/")
	if len(scope) != 5 || scope[4] != "aws4_request" {
		return nil, fmt.Errorf("%w: bad X-Amz-Credential", ErrMalformed)
	}
	t, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil {
		return nil, fmt.Errorf("%w: bad X-Amz-Date", ErrMalformed)
	}
	if scope[1] != t.Format("20060102") {
		return nil, fmt.Errorf("%w: the credential scope's date %s is not the day of X-Amz-Date", ErrSignature, scope[1])
	}
	expires, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || expires < 1 || expires > 7*24*3600 {
		return nil, fmt.Errorf("%w: bad X-Amz-Expires", ErrMalformed)
	}
	if now.After(t.Add(time.Duration(expires)*time.Second)) || (maxAge > 0 && now.Sub(t) > maxAge) || t.Sub(now) > MaxSkew {
		return nil, fmt.Errorf("%w: the presigned URL of %s has expired", ErrExpired, t.Format(time.RFC3339))
	}
	secret, err := lookup(ctx, scope[0])
	if err != nil {
		return nil, err
	}
	if secret.SessionToken != "" && q.Get("X-Amz-Security-Token") != secret.SessionToken {
		return nil, fmt.Errorf("%w: the security token is missing or does not match", ErrSignature)
	}
	// The signer adds the X-Amz-* parameters itself, except X-Amz-Expires.
	keep := url.Values{}
	for k, v := range q {
		switch k {
		case "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token":
		default:
			keep[k] = v
		}
	}
	clone, err := signable(r, strings.Split(q.Get("X-Amz-SignedHeaders"), ";"), keep)
	if err != nil {
		return nil, err
	}
	creds := aws.Credentials{AccessKeyID: scope[0], SecretAccessKey: secret.SecretAccessKey, SessionToken: secret.SessionToken}
	empty := sha256.Sum256(nil) // non-S3 presigned URLs sign the empty payload
	signedURL, _, err := v4.NewSigner().PresignHTTP(ctx, creds, clone, hex.EncodeToString(empty[:]), scope[3], scope[2], t)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	u, err := url.Parse(signedURL)
	if err != nil {
		return nil, err
	}
	if !hmac.Equal([]byte(u.Query().Get("X-Amz-Signature")), []byte(q.Get("X-Amz-Signature"))) {
		return nil, ErrSignature
	}
	return &Signed{AccessKeyID: scope[0], Service: scope[3], Region: scope[2], Time: t, Presigned: true}, nil
}

// signable copies r with only the signed headers (and, for presigned
// requests, the query without the signature).
func signable(r *http.Request, signed []string, query url.Values) (*http.Request, error) {
	u := *r.URL
	if query != nil {
		u.RawQuery = query.Encode()
	}
	u.Scheme, u.Host = "http", r.Host
	clone, err := http.NewRequest(r.Method, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	clone.Host = r.Host
	hasHost := false
	for _, h := range signed {
		switch h = strings.ToLower(h); h {
		case "host":
			hasHost = true
		case "content-length":
			clone.ContentLength = r.ContentLength
		default:
			for _, v := range r.Header.Values(h) {
				clone.Header.Add(h, v)
			}
		}
	}
	if !hasHost {
		return nil, fmt.Errorf("%w: the host header must be signed", ErrMalformed)
	}
	return clone, nil
}
