package authenticator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	authenticationv1 "k8s.io/api/authentication/v1"

	"skiff.dev/skiff/internal/access"
	"skiff.dev/skiff/internal/authn"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/sigv4"
)

const host = "127.0.0.1:7443"

func mint(t *testing.T, akid, secret, session, cluster, host string) string {
	t.Helper()
	r, _ := http.NewRequest("GET", "https://"+host+"/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Expires=60", nil)
	r.Header.Set(authn.ClusterHeader, cluster)
	empty := sha256.Sum256(nil)
	u, _, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret, SessionToken: session},
		r, hex.EncodeToString(empty[:]), "sts", "us-east-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return authn.Prefix + base64.RawURLEncoding.EncodeToString([]byte(u))
}

// TestHandler: tokens verify against the material alone; the caller maps
// through the access entries; a key gone from the material, an expired
// session, another cluster's token and a foreign host are refused.
func TestHandler(t *testing.T) {
	const account = "111122223333"
	userArn := "arn:aws:iam::" + account + ":user/alice"
	m := &Material{
		Cluster: model.Cluster{Name: "web", Account: account, AuthenticationMode: access.ModeAPI,
			AccessEntries: []model.AccessEntry{{PrincipalArn: userArn, Type: "STANDARD", Username: userArn, KubernetesGroups: []string{"devs"}},
				{PrincipalArn: "arn:aws:iam::" + account + ":role/ops", Type: "STANDARD", Username: "ops:{{SessionName}}"}}},
		Hosts: []string{host},
		Credentials: map[string]Credential{
			"AKIAALICE": {Secret: sigv4.Secret{SecretAccessKey: "alice-secret"},
				Caller: access.Caller{Account: account, Arn: userArn, UserID: "AIDAALICE", Kind: "user", Name: "alice"}},
			"ASIAOPS": {Secret: sigv4.Secret{SecretAccessKey: "ops-secret", SessionToken: "tok"}, Expiration: time.Now().Add(time.Hour),
				Caller: access.Caller{Account: account, Arn: "arn:aws:sts::" + account + ":assumed-role/ops/bob", UserID: "AROAOPS:bob", Kind: "role", Name: "ops", Session: "bob"}},
			"ASIAOLD": {Secret: sigv4.Secret{SecretAccessKey: "old-secret", SessionToken: "tok"}, Expiration: time.Now().Add(-time.Minute),
				Caller: access.Caller{Account: account, Arn: "arn:aws:sts::" + account + ":assumed-role/ops/old", UserID: "AROAOPS:old", Kind: "role", Name: "ops", Session: "old"}},
		},
	}
	path := filepath.Join(t.TempDir(), "authn", "material.json")
	if wrote, err := WriteMaterial(path, m); err != nil || !wrote {
		t.Fatalf("WriteMaterial: %v %v", wrote, err)
	}
	if wrote, _ := WriteMaterial(path, m); wrote {
		t.Error("the same material written twice")
	}
	h := &Handler{Material: path, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv := httptest.NewServer(h)
	defer srv.Close()
	review := func(token string, audiences ...string) authenticationv1.TokenReviewStatus {
		t.Helper()
		body, _ := json.Marshal(authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: audiences}})
		resp, err := http.Post(srv.URL+"/authenticate", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out authenticationv1.TokenReview
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return out.Status
	}
	alice := mint(t, "AKIAALICE", "alice-secret", "", "web", host)
	if st := review(alice); !st.Authenticated || st.User.Username != userArn || len(st.User.Groups) != 1 || st.User.Groups[0] != "devs" {
		t.Errorf("alice: %+v", st)
	}
	if st := review(alice, "vault"); st.Authenticated {
		t.Errorf("alice for another audience: %+v", st)
	}
	if st := review(mint(t, "ASIAOPS", "ops-secret", "tok", "web", host)); !st.Authenticated || st.User.Username != "ops:bob" {
		t.Errorf("ops session: %+v", st)
	}
	for name, tok := range map[string]string{
		"expired session":   mint(t, "ASIAOLD", "old-secret", "tok", "web", host),
		"wrong secret":      mint(t, "AKIAALICE", "guess", "", "web", host),
		"another cluster":   mint(t, "AKIAALICE", "alice-secret", "", "db", host),
		"another host":      mint(t, "AKIAALICE", "alice-secret", "", "web", "evil.example:443"),
		"unknown key":       mint(t, "AKIANOBODY", "x", "", "web", host),
		"not an IAM token!": "k8s-aws-v1.bm90IGEgdXJs",
	} {
		if st := review(tok); st.Authenticated || st.Error == "" {
			t.Errorf("%s: %+v", name, st)
		}
	}
	if st := review("some-other-token"); st.Authenticated || st.Error != "" {
		t.Errorf("another authenticator's token: %+v", st)
	}

	// The key is deleted: the new material drops it, and the handler reads
	// the file again.
	time.Sleep(10 * time.Millisecond) // a new mtime
	delete(m.Credentials, "AKIAALICE")
	if _, err := WriteMaterial(path, m); err != nil {
		t.Fatal(err)
	}
	if st := review(alice); st.Authenticated {
		t.Errorf("alice after her key was deleted: %+v", st)
	}
}

func TestVPCHost(t *testing.T) {
	for host, want := range map[string]bool{"10.0.0.2:8080": true, "100.64.1.1:8080": true, "10.0.0.2:443": false,
		"8.8.8.8:8080": false, "127.0.0.1:8080": false, "10.0.0.2": false, "x:8080": false} {
		if got := VPCHost(host, 8080); got != want {
			t.Errorf("VPCHost(%q) = %v", host, got)
		}
	}
}
