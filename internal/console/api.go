package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// local is an HTTP client that hands each request to skiff's own API
// handler in this process: the console's calls are the API's requests,
// signed with the signed-in principal's key and verified and authorized
// by the router like any client's. The browser's address and TLS state go
// along, so that policy conditions (aws:SourceIp, aws:SecureTransport)
// see the person, not the console.
type local struct{ api http.Handler }

type originKey struct{}

// withOrigin marks ctx as acting for the browser request r.
func withOrigin(ctx context.Context, r *http.Request) context.Context {
	return context.WithValue(ctx, originKey{}, r)
}

// Do serves req with the API handler and returns its buffered answer.
func (l local) Do(req *http.Request) (*http.Response, error) {
	in := req.Clone(req.Context())
	if in.Body == nil {
		in.Body = http.NoBody
	}
	if in.Host == "" {
		in.Host = in.URL.Host // as a server sees it
	}
	in.RequestURI = in.URL.RequestURI()
	in.RemoteAddr = "127.0.0.1:0"
	if o, ok := req.Context().Value(originKey{}).(*http.Request); ok {
		in.RemoteAddr, in.TLS = o.RemoteAddr, o.TLS
	}
	rec := &recorder{header: http.Header{}}
	l.api.ServeHTTP(rec, in)
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", rec.code, http.StatusText(rec.code)), StatusCode: rec.code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.header, Body: io.NopCloser(&rec.body), ContentLength: int64(rec.body.Len()), Request: req,
	}, nil
}

// recorder is the response writer of an in-process API call.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

// client is one principal's view of skiff's API: the AWS SDK's clients,
// as any program would use them, plus skiff's own /skiff/v1 reads.
type client struct {
	EKS *eks.Client
	EC2 *ec2.Client
	ECR *ecr.Client
	IAM *iam.Client
	STS *sts.Client

	http     local
	creds    aws.CredentialsProvider
	region   string
	endpoint string
}

func newClient(api http.Handler, endpoint, region string, creds aws.CredentialsProvider) *client {
	l := local{api: api}
	cfg := aws.Config{Region: region, Credentials: creds, HTTPClient: l, BaseEndpoint: aws.String(endpoint),
		Retryer: func() aws.Retryer { return aws.NopRetryer{} }}
	return &client{
		EKS: eks.NewFromConfig(cfg), EC2: ec2.NewFromConfig(cfg), ECR: ecr.NewFromConfig(cfg), IAM: iam.NewFromConfig(cfg), STS: sts.NewFromConfig(cfg),
		http: l, creds: creds, region: region, endpoint: endpoint,
	}
}

// skiff GETs one of skiff's own /skiff/v1 resources into out.
func (c *client) skiff(ctx context.Context, path string, out any) error {
	return c.skiffDo(ctx, http.MethodGet, path, out)
}

// skiffDo sends a request without a body to skiff's own /skiff/v1 API,
// and decodes the answer into out (unless nil).
func (c *client) skiffDo(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint+path, nil)
	if err != nil {
		return err
	}
	creds, err := c.creds.Retrieve(ctx)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(nil)
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "eks", c.region, time.Now()); err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var e struct{ Message string }
		json.Unmarshal(data, &e)
		code := resp.Header.Get("x-amzn-ErrorType")
		return &smithy.GenericAPIError{Code: code, Message: e.Message}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// apiMessage is an API error in the API's own words: "Code: message".
func apiMessage(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if ae.ErrorMessage() == "" {
			return ae.ErrorCode()
		}
		return ae.ErrorCode() + ": " + ae.ErrorMessage()
	}
	return err.Error()
}

// signedOut tells whether err means the session's key no longer works
// (deleted, deactivated or expired): the person must sign in again.
func signedOut(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.ErrorCode() {
	case "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException", "ExpiredToken", "AuthFailure",
		"InvalidSignatureException", "SignatureDoesNotMatch":
		return true
	}
	return false
}
