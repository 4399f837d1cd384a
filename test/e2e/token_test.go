package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"skiff.dev/skiff/internal/authn"
	"skiff.dev/skiff/internal/sigv4"
)

// TestGetTokenFormat: the stock `aws eks get-token`, pointed at skiff by the
// variables of `skiff env`, mints tokens skiff's verifier accepts for that
// cluster only, with the admin key's secret and no other.
func TestGetTokenFormat(t *testing.T) {
	s := startServe(t, t.TempDir(), freePort(t))
	defer s.stop(t)
	out, err := awsCLI(t, s, "eks", "get-token", "--cluster-name", "web")
	if err != nil {
		t.Fatal(err)
	}
	var cred struct {
		Kind   string
		Status struct {
			Token               string
			ExpirationTimestamp string
		}
	}
	if err := json.Unmarshal([]byte(out), &cred); err != nil || cred.Kind != "ExecCredential" {
		t.Fatalf("get-token = %s (%v)", out, err)
	}
	env := map[string]string{}
	for _, kv := range s.env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	lookup := func(_ context.Context, id string) (sigv4.Secret, error) {
		if id == env["AWS_ACCESS_KEY_ID"] {
			return sigv4.Secret{SecretAccessKey: env["AWS_SECRET_ACCESS_KEY"]}, nil
		}
		return sigv4.Secret{}, sigv4.ErrUnknownKey
	}
	host := strings.TrimPrefix(env["AWS_ENDPOINT_URL"], "https://")
	v := &authn.Verifier{Lookup: lookup, Hosts: []string{host}}
	now := time.Now()
	if id, err := v.Verify(context.Background(), cred.Status.Token, "web", now); err != nil || id.AccessKeyID != env["AWS_ACCESS_KEY_ID"] {
		t.Fatalf("the stock token does not verify: %v, %v", id, err)
	}
	if _, err := v.Verify(context.Background(), cred.Status.Token, "api", now); !errors.Is(err, authn.ErrSignature) {
		t.Errorf("token for web accepted for api: %v", err)
	}
	if _, err := v.Verify(context.Background(), cred.Status.Token, "web", now.Add(16*time.Minute)); !errors.Is(err, authn.ErrExpired) {
		t.Errorf("16-minute-old token: %v", err)
	}
}
