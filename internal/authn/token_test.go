package authn

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"skiff.dev/skiff/internal/sigv4"
)

func lookup(_ context.Context, id string) (sigv4.Secret, error) {
	if id == "AKIAEXAMPLE" {
		return sigv4.Secret{SecretAccessKey: "secret"}, nil
	}
	return sigv4.Secret{}, sigv4.ErrUnknownKey
}

// mint makes a token the way `aws eks get-token` does: a presigned STS
// GetCallerIdentity URL (X-Amz-Expires=60) with x-k8s-aws-id signed.
func mint(t *testing.T, akid, secret, cluster, host string, at time.Time) string {
	t.Helper()
	r, _ := http.NewRequest("GET", "http://"+host+"/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Expires=60", nil)
	r.Header.Set(ClusterHeader, cluster)
	empty := sha256.Sum256(nil)
	u, _, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret},
		r, hex.EncodeToString(empty[:]), "sts", "us-east-1", at)
	if err != nil {
		t.Fatal(err)
	}
	return Prefix + base64.RawURLEncoding.EncodeToString([]byte(u))
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestVerify(t *testing.T) {
	now := time.Now().UTC()
	v := &Verifier{Lookup: lookup, Hosts: []string{"127.0.0.1:7443"}}
	good := mint(t, "AKIAEXAMPLE", "secret", "web", "127.0.0.1:7443", now)
	// One digit of the signature changed: decode, edit, encode again.
	raw, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(good, Prefix))
	last := raw[len(raw)-1]
	raw[len(raw)-1] = "01"[boolIndex(last == '0')] // '0' → '1', anything else → '0'
	if raw[len(raw)-1] == last {
		t.Fatal("the tampered token equals the good one")
	}
	tampered := Prefix + base64.RawURLEncoding.EncodeToString(raw)
	for _, tt := range []struct {
		name, token, cluster string
		at                   time.Time
		want                 error
	}{
		{"valid", good, "web", now, nil},
		{"valid after X-Amz-Expires, within 15 min", good, "web", now.Add(14 * time.Minute), nil},
		{"older than 15 min", good, "web", now.Add(16 * time.Minute), ErrExpired},
		{"other cluster", good, "api", now, ErrSignature},
		{"wrong secret", mint(t, "AKIAEXAMPLE", "nope", "web", "127.0.0.1:7443", now), "web", now, ErrSignature},
		{"unknown key", mint(t, "AKIAOTHER", "secret", "web", "127.0.0.1:7443", now), "web", now, ErrSignature},
		{"other host", mint(t, "AKIAEXAMPLE", "secret", "web", "sts.amazonaws.com", now), "web", now, ErrMalformed},
		{"one signature digit changed", tampered, "web", now, ErrSignature},
		{"no prefix", strings.TrimPrefix(good, Prefix), "web", now, ErrMalformed},
		{"not base64", Prefix + "%%%", "web", now, ErrMalformed},
		{"not sts", Prefix + base64.RawURLEncoding.EncodeToString([]byte("http://127.0.0.1:7443/?Action=ListUsers&Version=2010-05-08")), "web", now, ErrMalformed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id, err := v.Verify(context.Background(), tt.token, tt.cluster, tt.at)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (id != nil) {
				t.Fatalf("Verify = %v, %v; want %v", id, err, tt.want)
			}
			if id != nil && id.AccessKeyID != "AKIAEXAMPLE" {
				t.Errorf("access key = %s", id.AccessKeyID)
			}
		})
	}
}

// TestVerifyAnyByteChanged: changing any single byte of a token makes it fail.
func TestVerifyAnyByteChanged(t *testing.T) {
	now := time.Now().UTC()
	v := &Verifier{Lookup: lookup, Hosts: []string{"127.0.0.1:7443"}}
	good := mint(t, "AKIAEXAMPLE", "secret", "web", "127.0.0.1:7443", now)
	for i := range len(good) {
		b := []byte(good)
		b[i] ^= 1
		if id, err := v.Verify(context.Background(), string(b), "web", now); err == nil {
			t.Fatalf("byte %d changed (%q): accepted as %v", i, b[i], id)
		}
	}
}
