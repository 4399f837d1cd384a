package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

var keys = map[string]Secret{
	"AKIDEXAMPLE": {SecretAccessKey: "secret"},
	"ASIATEMP":    {SecretAccessKey: "tmpsecret", SessionToken: "tok"},
}

func lookup(_ context.Context, id string) (Secret, error) {
	if s, ok := keys[id]; ok {
		return s, nil
	}
	return Secret{}, ErrUnknownKey
}

func signed(t *testing.T, akid, secret, token string, body string, at time.Time) *http.Request {
	t.Helper()
	r, _ := http.NewRequest("POST", "http://127.0.0.1:7443/clusters?x=1", bytes.NewBufferString(body))
	r.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256([]byte(body))
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret, SessionToken: token},
		r, hex.EncodeToString(sum[:]), "eks", "us-east-1", at)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestVerifyHeader(t *testing.T) {
	now := time.Now()
	body := `{"name":"x"}`
	tests := []struct {
		name string
		req  func() *http.Request
		body string
		want error
	}{
		{"good", func() *http.Request { return signed(t, "AKIDEXAMPLE", "secret", "", body, now) }, body, nil},
		{"session", func() *http.Request { return signed(t, "ASIATEMP", "tmpsecret", "tok", body, now) }, body, nil},
		{"session token missing", func() *http.Request { return signed(t, "ASIATEMP", "tmpsecret", "", body, now) }, body, ErrSignature},
		{"wrong secret", func() *http.Request { return signed(t, "AKIDEXAMPLE", "nope", "", body, now) }, body, ErrSignature},
		{"unknown key", func() *http.Request { return signed(t, "AKIDNOBODY", "secret", "", body, now) }, body, ErrUnknownKey},
		{"tampered body", func() *http.Request { return signed(t, "AKIDEXAMPLE", "secret", "", body, now) }, `{"name":"y"}`, ErrSignature},
		{"old", func() *http.Request { return signed(t, "AKIDEXAMPLE", "secret", "", body, now.Add(-16*time.Minute)) }, body, ErrExpired},
		{"future", func() *http.Request { return signed(t, "AKIDEXAMPLE", "secret", "", body, now.Add(16*time.Minute)) }, body, ErrExpired},
		{"unsigned", func() *http.Request { r, _ := http.NewRequest("GET", "http://h/clusters", nil); return r }, "", ErrUnsigned},
		{"tampered header", func() *http.Request {
			r := signed(t, "AKIDEXAMPLE", "secret", "", body, now)
			r.Header.Set("Content-Type", "text/plain")
			return r
		}, body, ErrSignature},
		// Issue 15: a captured request replayed with another body and the
		// original body's hash in X-Amz-Content-Sha256.
		{"replayed with claimed hash", func() *http.Request {
			r := signed(t, "AKIDEXAMPLE", "secret", "", body, now)
			sum := sha256.Sum256([]byte(body))
			r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
			return r
		}, `{"name":"y"}`, ErrSignature},
		{"unsigned payload", func() *http.Request {
			r, _ := http.NewRequest("POST", "http://127.0.0.1:7443/clusters?x=1", bytes.NewBufferString(body))
			r.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
			if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret"},
				r, "UNSIGNED-PAYLOAD", "eks", "us-east-1", now); err != nil {
				t.Fatal(err)
			}
			return r
		}, body, ErrSignature},
		{"claimed hash is the real one", func() *http.Request {
			r := signed(t, "AKIDEXAMPLE", "secret", "", body, now)
			sum := sha256.Sum256([]byte(body))
			r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
			return r
		}, body, nil},
		{"garbage", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://h/", nil)
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 nonsense")
			return r
		}, "", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.req()
			got, err := Verify(context.Background(), r, []byte(tt.body), lookup, now, 0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil && (got.Service != "eks" || got.Region != "us-east-1") {
				t.Errorf("signed = %+v", got)
			}
		})
	}
}

func TestVerifyPresigned(t *testing.T) {
	now := time.Now()
	presign := func(secret string, at time.Time, expires string) *http.Request {
		r, _ := http.NewRequest("GET", "http://127.0.0.1:7443/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Expires="+expires, nil)
		r.Header.Set("x-k8s-aws-id", "prod")
		empty := sha256.Sum256(nil)
		u, _, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: secret},
			r, hex.EncodeToString(empty[:]), "sts", "us-east-1", at)
		if err != nil {
			t.Fatal(err)
		}
		pr, _ := http.NewRequest("GET", u, nil)
		pr.Header.Set("x-k8s-aws-id", "prod")
		return pr
	}
	if _, err := Verify(context.Background(), presign("secret", now, "60"), nil, lookup, now, 0); err != nil {
		t.Fatalf("good presigned URL: %v", err)
	}
	if _, err := Verify(context.Background(), presign("bad", now, "60"), nil, lookup, now, 0); !errors.Is(err, ErrSignature) {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := Verify(context.Background(), presign("secret", now.Add(-2*time.Minute), "60"), nil, lookup, now, 0); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	// A presigned URL used for a POST with a body (it signs no body).
	r := presign("secret", now, "60")
	r.Method = http.MethodPost
	if _, err := Verify(context.Background(), r, []byte("Action=CreateAccessKey"), lookup, now, 0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("presigned POST: %v", err)
	}
	// A signed header that was changed.
	r = presign("secret", now, "60")
	r.Header.Set("x-k8s-aws-id", "other")
	if _, err := Verify(context.Background(), r, nil, lookup, now, 0); !errors.Is(err, ErrSignature) {
		t.Fatalf("changed signed header: %v", err)
	}
	// A changed query parameter.
	r = presign("secret", now, "60")
	q := r.URL.Query()
	q.Set("Action", "AssumeRole")
	r.URL.RawQuery = q.Encode()
	if _, err := Verify(context.Background(), r, nil, lookup, now, 0); !errors.Is(err, ErrSignature) {
		t.Fatalf("changed query: %v", err)
	}
}

// TestScopeDateMustMatch: a credential scope whose date is not X-Amz-Date's
// day is refused even though the signature itself does not cover that text.
func TestScopeDateMustMatch(t *testing.T) {
	now := time.Now().UTC()
	r := signed(t, "AKIDEXAMPLE", "secret", "", "{}", now)
	day := now.Format("20060102")
	r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/"+day+"/", "/19990101/", 1))
	if _, err := Verify(context.Background(), r, []byte("{}"), lookup, now, 0); !errors.Is(err, ErrSignature) {
		t.Errorf("Verify = %v, want ErrSignature", err)
	}
}

// TestPresignedBody: a presigned URL signs no body, so it may only be a
// body-less GET: the same URL presigned for GET or POST, sent with or
// without a body (issue 15). A refusal is the method/body check's
// (ErrMalformed), not the signature's: each request is presigned as sent.
func TestPresignedBody(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name   string
		method string
		body   string
		want   error
	}{
		{"GET without a body", http.MethodGet, "", nil},
		{"GET with a body", http.MethodGet, "Action=CreateAccessKey", ErrMalformed},
		{"POST without a body", http.MethodPost, "", ErrMalformed},
		{"POST with a body", http.MethodPost, "Action=CreateAccessKey", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest(tt.method, "http://127.0.0.1:7443/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Expires=60", nil)
			empty := sha256.Sum256(nil)
			u, _, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret"},
				r, hex.EncodeToString(empty[:]), "sts", "us-east-1", now)
			if err != nil {
				t.Fatal(err)
			}
			pr, _ := http.NewRequest(tt.method, u, strings.NewReader(tt.body))
			got, err := Verify(context.Background(), pr, []byte(tt.body), lookup, now, 0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if err == nil && (!got.Presigned || got.Service != "sts") {
				t.Errorf("signed = %+v", got)
			}
		})
	}
}
