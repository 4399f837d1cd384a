package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// TestAPITLS is issue 15's TLS: skiff's API is HTTPS under a CA of its own
// that `skiff env` hands the stock clients as AWS_CA_BUNDLE; a client that
// does not trust it, plain HTTP and old TLS get nothing; given certificate
// files replace skiff's own; plain HTTP is served on loopback only, and
// only when asked for.
func TestAPITLS(t *testing.T) {
	dataDir := t.TempDir()
	s := startServe(t, dataDir, freePort(t))
	defer func() { s.stop(t) }()
	bundle := filepath.Join(dataDir, "tls", "ca.crt")
	if !strings.HasPrefix(s.endpoint, "https://") || envValue(s.env, "AWS_CA_BUNDLE") != bundle {
		t.Fatalf("skiff env: endpoint %s, AWS_CA_BUNDLE=%q; want https and %s", s.endpoint, envValue(s.env, "AWS_CA_BUNDLE"), bundle)
	}

	// The stock CLI and the skiff CLI trust the bundle; trusting only the
	// system's roots they refuse. (An empty AWS_CA_BUNDLE would turn the
	// aws CLI's verification off.)
	const systemRoots = "/etc/ssl/certs/ca-certificates.crt"
	mustAWS(t, s, "sts", "get-caller-identity")
	if out, err := awsCLIEnv(t, s, []string{"AWS_CA_BUNDLE=" + systemRoots}, "sts", "get-caller-identity"); err == nil ||
		!strings.Contains(out, "CERTIFICATE_VERIFY_FAILED") {
		t.Errorf("aws without skiff's CA: %v %s, want a certificate verification failure", err, out)
	}
	skiffCLI := func(extra ...string) (string, error) {
		cmd := exec.Command(skiffBin, "get", "clusters")
		cmd.Env = append(append(os.Environ(), s.env...), extra...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := skiffCLI(); err != nil {
		t.Errorf("skiff get clusters: %v %s", err, out)
	}
	if out, err := skiffCLI("AWS_CA_BUNDLE=" + systemRoots); err == nil || !strings.Contains(out, "certificate") {
		t.Errorf("skiff get clusters without skiff's CA: %v %s, want a certificate error", err, out)
	}

	// A signed request sent in clear text to the TLS port is not served.
	creds := aws.Credentials{AccessKeyID: envValue(s.env, "AWS_ACCESS_KEY_ID"), SecretAccessKey: envValue(s.env, "AWS_SECRET_ACCESS_KEY")}
	list := "Action=ListUsers&Version=2010-05-08"
	sum := sha256.Sum256([]byte(list))
	signed := func(endpoint string) *http.Request {
		req, _ := http.NewRequest("POST", endpoint+"/", strings.NewReader(list))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "iam", "us-east-1", time.Now()); err != nil {
			t.Fatal(err)
		}
		return req
	}
	if code, body := do(t, s, signed(s.endpoint)); code != 200 || !strings.Contains(body, "<UserName>admin</UserName>") {
		t.Fatalf("ListUsers over TLS (the control): %d %s", code, body)
	}
	if resp, err := http.DefaultClient.Do(signed("http://" + s.host())); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || bytes.Contains(body, []byte("admin")) {
			t.Errorf("ListUsers in clear text: %d %s, want 400 and no answer", resp.StatusCode, body)
		}
	}
	old := caClient(t, bundle)
	old.Transport.(*http.Transport).TLSClientConfig.MaxVersion = tls.VersionTLS11
	old.Transport.(*http.Transport).TLSClientConfig.MinVersion = tls.VersionTLS10
	if resp, err := old.Do(signed(s.endpoint)); err == nil {
		resp.Body.Close()
		t.Errorf("TLS 1.1 accepted: %s", resp.Status)
	}

	// ECR hands out https endpoints.
	auth := mustAWS(t, s, "ecr", "get-authorization-token")["authorizationData"].([]any)[0].(map[string]any)
	if auth["proxyEndpoint"] != "https://"+s.host() {
		t.Errorf("proxyEndpoint = %v, want https://%s", auth["proxyEndpoint"], s.host())
	}

	// A restart keeps the CA: clients holding the bundle still connect.
	s.restart(t)
	mustAWS(t, s, "sts", "get-caller-identity")
	s.stop(t)

	// Given files (here: skiff's own, copied), with the CA bundle the
	// clients need.
	given := t.TempDir()
	for _, f := range []string{"ca.crt", "server.crt", "server.key"} {
		data, err := os.ReadFile(filepath.Join(dataDir, "tls", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(given, f), data, 0o600)
	}
	os.RemoveAll(filepath.Join(dataDir, "tls"))
	*s = *startServe(t, dataDir, s.host(), "--tls-cert-file", filepath.Join(given, "server.crt"),
		"--tls-key-file", filepath.Join(given, "server.key"), "--tls-ca-file", filepath.Join(given, "ca.crt"))
	if got := envValue(s.env, "AWS_CA_BUNDLE"); got != filepath.Join(given, "ca.crt") {
		t.Errorf("with given files AWS_CA_BUNDLE=%q", got)
	}
	mustAWS(t, s, "sts", "get-caller-identity")
	if _, err := os.Stat(filepath.Join(dataDir, "tls")); err == nil {
		t.Error("skiff made its own CA although certificate files were given")
	}
	s.stop(t)

	// Plain HTTP: refused beyond loopback, served on loopback when asked.
	for _, listen := range []string{"0.0.0.0:" + port(s.host()), ":" + port(s.host())} {
		out, err := exec.Command(skiffBin, "serve", "--data-dir", t.TempDir(), "--listen", listen, "--insecure-http").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "not a loopback address") {
			t.Errorf("--insecure-http --listen %s: %v %s", listen, err, out)
		}
	}
	*s = *startServe(t, dataDir, s.host(), "--insecure-http")
	if !strings.HasPrefix(envValue(s.env, "AWS_ENDPOINT_URL"), "http://") || envValue(s.env, "AWS_CA_BUNDLE") != "" {
		t.Errorf("--insecure-http: skiff env %v", s.env)
	}
	mustAWS(t, s, "sts", "get-caller-identity")
}

func port(hostport string) string { return hostport[strings.LastIndexByte(hostport, ':')+1:] }
