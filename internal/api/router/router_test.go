package router

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"skiff.dev/skiff/internal/authz"
	"skiff.dev/skiff/internal/iam"
	"skiff.dev/skiff/internal/store"
)

// TestRegistryRoute: /v2 and /v2/… go to the registry as they come (no
// SigV4, no body limit); other paths do not.
func TestRegistryRoute(t *testing.T) {
	var got int64
	rt := &Router{Registry: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got = n
		w.WriteHeader(http.StatusAccepted)
	})}
	big := bytes.Repeat([]byte("x"), 3*maxBody)
	for _, path := range []string{"/v2", "/v2/", "/v2/111111111111/web/blobs/uploads/abc"} {
		got = 0
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, httptest.NewRequest(http.MethodPatch, path, bytes.NewReader(big)))
		if rec.Code != http.StatusAccepted || got != int64(len(big)) {
			t.Errorf("%s: %d, registry read %d bytes", path, rec.Code, got)
		}
	}
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v2x", bytes.NewReader(big)))
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("/v2x: %d, want the API's body limit", rec.Code)
	}
}

// TestSlowBody: a client that sends headers and then trickles its body
// is cut off at the body deadline, before any authentication (issue 15).
func TestSlowBody(t *testing.T) {
	rt := &Router{BodyTimeout: 300 * time.Millisecond}
	srv := httptest.NewServer(rt)
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nAction=")
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout || time.Since(start) > 3*time.Second {
		t.Fatalf("status %d after %v", resp.StatusCode, time.Since(start))
	}
}

// TestRoutedBySignedService: a request goes to the service its
// signature's credential scope names, whatever its path, X-Amz-Target or
// Action say another service's; a scope rewritten to name another service
// breaks the signature (issue 15). The authorization is the signed
// service's too: bob, who has no policy, may call sts:GetCallerIdentity
// with an ECR target on it, and is refused an IAM action signed for STS
// and a KMS one (JSON 1.1's AccessDeniedException).
func TestRoutedBySignedService(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ids := &iam.Service{Store: st}
	acct, admin, err := ids.EnsureAccount("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ids.CreateUser(acct.ID, "bob", ""); err != nil {
		t.Fatal(err)
	}
	bob, err := ids.CreateAccessKey(acct.ID, "bob")
	if err != nil {
		t.Fatal(err)
	}
	var served []string
	handler := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			served = append(served, name)
			w.WriteHeader(http.StatusOK)
		})
	}
	rt := &Router{IAM: ids, Authz: &authz.Authorizer{IAM: ids, Region: "us-east-1"}, EKS: handler("eks"), Skiff: handler("skiff"),
		IAMQuery: handler("iam"), STSQuery: handler("sts"), EC2: handler("ec2"), ECR: handler("ecr"), KMS: handler("kms"), Region: "us-east-1"}
	ecrTarget := map[string]string{"X-Amz-Target": authz.ECRTargetPrefix + "CreateRepository", "Content-Type": "application/x-amz-json-1.1"}
	kmsTarget := map[string]string{"X-Amz-Target": authz.KMSTargetPrefix + "CreateKey", "Content-Type": "application/x-amz-json-1.1"}
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	tests := []struct {
		name    string
		key     *iam.AccessKey
		service string // signed for
		path    string
		header  map[string]string
		body    string
		scope   string // rewrites the Authorization's service after signing
		want    string // the handler served; "" none
		refusal string // when none: the error code answered
	}{
		{"sts with an ECR target", admin, "sts", "/", ecrTarget, "Action=GetCallerIdentity", "", "sts", ""},
		{"sts with an IAM action", admin, "sts", "/", form, "Action=CreateUser&UserName=eve", "", "sts", ""},
		{"iam on an EKS path with an ECR target", admin, "iam", "/clusters", ecrTarget, "Action=ListUsers", "", "iam", ""},
		{"ecr with an IAM action", admin, "ecr", "/", form, "Action=CreateUser&UserName=eve", "", "ecr", ""},
		{"eks with an ECR target", admin, "eks", "/", ecrTarget, `{"repositoryName":"web"}`, "", "eks", ""},
		{"kms", admin, "kms", "/", kmsTarget, `{}`, "", "kms", ""},
		{"kms with an ECR target", admin, "kms", "/", ecrTarget, `{"repositoryName":"web"}`, "", "kms", ""},
		{"ecr with a KMS target", admin, "ecr", "/", kmsTarget, `{}`, "", "ecr", ""},
		{"ecr scope rewritten to kms", admin, "ecr", "/", kmsTarget, `{}`, "kms", "", "InvalidSignatureException"},
		{"ec2 on the skiff path", admin, "ec2", "/skiff/v1/clusters/x/kubeconfig", form, "Action=DescribeVpcs", "", "ec2", ""},
		{"an unknown service with an ECR target", admin, "s3", "/", ecrTarget, `{"repositoryName":"web"}`, "", "", "UnknownServiceException"},
		{"sts scope rewritten to ecr", admin, "sts", "/", ecrTarget, "Action=GetCallerIdentity", "ecr", "", "InvalidSignatureException"},
		{"sts scope rewritten to iam", admin, "sts", "/", form, "Action=CreateUser&UserName=eve", "iam", "", "SignatureDoesNotMatch"},
		{"bob: sts with an ECR target", bob, "sts", "/", ecrTarget, "Action=GetCallerIdentity", "", "sts", ""},
		{"bob: sts with an IAM action", bob, "sts", "/", form, "Action=CreateUser&UserName=eve", "", "", "AccessDenied"},
		{"bob: kms", bob, "kms", "/", kmsTarget, `{}`, "", "", "AccessDeniedException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			served = nil
			r := signedRequest(t, tt.key, tt.service, tt.path, tt.header, tt.body)
			if tt.scope != "" {
				r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/us-east-1/"+tt.service+"/", "/us-east-1/"+tt.scope+"/", 1))
			}
			rec := httptest.NewRecorder()
			rt.ServeHTTP(rec, r)
			answer := rec.Header().Get("x-amzn-ErrorType") + " " + rec.Body.String()
			switch {
			case tt.want != "" && (len(served) != 1 || served[0] != tt.want):
				t.Errorf("served by %v, want %s: %d %s", served, tt.want, rec.Code, rec.Body)
			case tt.want == "" && (len(served) != 0 || rec.Code < 400 || !strings.Contains(answer, tt.refusal)):
				t.Errorf("served by %v with %d, want a refusal %s: %s", served, rec.Code, tt.refusal, answer)
			}
		})
	}
}

// signedRequest is a POST signed with key for service in us-east-1.
func signedRequest(t *testing.T, key *iam.AccessKey, service, path string, header map[string]string, body string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, "http://skiff.test"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		r.Header.Set(k, v)
	}
	sum := sha256.Sum256([]byte(body))
	err = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: key.ID, SecretAccessKey: key.Secret},
		r, hex.EncodeToString(sum[:]), service, "us-east-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return r
}
