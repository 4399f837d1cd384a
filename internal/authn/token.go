// Package authn verifies the bearer tokens `aws eks get-token` mints (the
// aws-iam-authenticator form): "k8s-aws-v1." + base64url of a presigned STS
// GetCallerIdentity URL whose signed header x-k8s-aws-id names the cluster.
// skiff checks the signature itself against its IAM store (no call to STS),
// the cluster and the token's age (15 minutes from X-Amz-Date, as
// aws-iam-authenticator does, whatever X-Amz-Expires says).
package authn

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"skiff.dev/skiff/internal/sigv4"
)

// Token format constants.
const (
	Prefix         = "k8s-aws-v1."
	ClusterHeader  = "x-k8s-aws-id"
	MaxAge         = 15 * time.Minute
	maxFutureSkew  = 5 * time.Minute
	maxTokenLength = 8 << 10
)

// Errors; every one means "not authenticated".
var (
	ErrMalformed = errors.New("malformed token")
	ErrExpired   = errors.New("token expired")
	ErrCluster   = errors.New("token is for another cluster")
	ErrSignature = errors.New("token signature does not verify")
)

// Verifier checks tokens.
type Verifier struct {
	// Lookup finds an access key's secret (iam.Service.Lookup).
	Lookup sigv4.Lookup
	// Hosts are the host:port values a token's URL may name: skiff's own
	// STS endpoint(s). Empty accepts any host.
	Hosts []string
	// AllowHost, if set, accepts further hosts (skiff's API inside VPCs).
	AllowHost func(host string) bool
}

// Identity is a verified token's caller.
type Identity struct {
	AccessKeyID string
	Region      string
	IssuedAt    time.Time
}

// Verify checks token for cluster (the name in x-k8s-aws-id) at now.
func (v *Verifier) Verify(ctx context.Context, token, cluster string, now time.Time) (*Identity, error) {
	if !strings.HasPrefix(token, Prefix) || len(token) > maxTokenLength {
		return nil, fmt.Errorf("%w: not a %s token", ErrMalformed, Prefix)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(strings.TrimPrefix(token, Prefix), "="))
	if err != nil {
		return nil, fmt.Errorf("%w: the token is not base64url", ErrMalformed)
	}
	u, err := url.Parse(string(raw))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("%w: the token is not a URL", ErrMalformed)
	}
	if len(v.Hosts) > 0 && !slices.Contains(v.Hosts, u.Host) && (v.AllowHost == nil || !v.AllowHost(u.Host)) {
		return nil, fmt.Errorf("%w: the token was signed for %s, not for this skiff's STS endpoint", ErrMalformed, u.Host)
	}
	q := u.Query()
	if u.Path != "/" && u.Path != "" {
		return nil, fmt.Errorf("%w: unexpected path %q", ErrMalformed, u.Path)
	}
	if q.Get("Action") != "GetCallerIdentity" || q.Get("Version") != "2011-06-15" {
		return nil, fmt.Errorf("%w: the token must presign sts:GetCallerIdentity", ErrMalformed)
	}
	for k := range q {
		if k != "Action" && k != "Version" && !strings.HasPrefix(k, "X-Amz-") {
			return nil, fmt.Errorf("%w: unexpected parameter %q", ErrMalformed, k)
		}
	}
	signed := strings.Split(strings.ToLower(q.Get("X-Amz-SignedHeaders")), ";")
	if !slices.Contains(signed, ClusterHeader) {
		return nil, fmt.Errorf("%w: %s is not signed", ErrMalformed, ClusterHeader)
	}
	scope := strings.Split(q.Get("X-Amz-Credential"), "/")
	if len(scope) != 5 || scope[3] != "sts" {
		return nil, fmt.Errorf("%w: the credential scope is not sts", ErrMalformed)
	}
	issued, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil {
		return nil, fmt.Errorf("%w: bad X-Amz-Date", ErrMalformed)
	}
	if now.Sub(issued) > MaxAge || issued.Sub(now) > maxFutureSkew {
		return nil, fmt.Errorf("%w: issued at %s; get a new one with 'aws eks get-token'", ErrExpired, issued.Format(time.RFC3339))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	req.Host = u.Host
	req.Header.Set(ClusterHeader, cluster)
	// Verify as of the issue time: the age rule above replaces X-Amz-Expires.
	res, err := sigv4.Verify(ctx, req, nil, v.Lookup, issued, 0)
	switch {
	case errors.Is(err, sigv4.ErrSignature):
		// A token for another cluster fails here too: the header is signed.
		return nil, fmt.Errorf("%w (or it is for another cluster than %s)", ErrSignature, cluster)
	case errors.Is(err, sigv4.ErrUnknownKey):
		return nil, fmt.Errorf("%w: unknown access key", ErrSignature)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return &Identity{AccessKeyID: res.AccessKeyID, Region: res.Region, IssuedAt: issued}, nil
}
