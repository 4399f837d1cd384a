package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"testing"
	"time"

	certutil "k8s.io/client-go/util/cert"
)

// TestSign: a signed request verifies under the cluster CA for its
// purpose only, keeps the request's subject and names, lasts as asked (a
// year by default), and a request whose signature is broken is refused.
func TestSign(t *testing.T) {
	dir := t.TempDir()
	if err := Ensure(dir, Spec{}); err != nil {
		t.Fatal(err)
	}
	roots, err := certutil.NewPool(Path(dir, string(ClusterCA), ".crt"))
	if err != nil {
		t.Fatal(err)
	}
	request := func(cn string, ips ...net.IP) *x509.CertificateRequest {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: cn, Organization: []string{"system:nodes"}}, IPAddresses: ips}, key)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := x509.ParseCertificateRequest(der)
		return req
	}
	for _, tc := range []struct {
		name     string
		req      Request
		purpose  x509.ExtKeyUsage
		other    x509.ExtKeyUsage
		validity time.Duration
	}{
		{"client", Request{CSR: request("system:node:n1"), Client: true}, x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth, 365 * 24 * time.Hour},
		{"serving", Request{CSR: request("system:node:n1", net.ParseIP("172.31.0.10")), Server: true, Validity: time.Hour},
			x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Sign(dir, ClusterCA, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode(out)
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{tc.purpose}}); err != nil {
				t.Errorf("verify for its purpose: %v", err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{tc.other}}); err == nil {
				t.Error("verifies for another purpose")
			}
			if cert.Subject.CommonName != "system:node:n1" || len(cert.Subject.Organization) != 1 || len(cert.IPAddresses) != len(tc.req.CSR.IPAddresses) {
				t.Errorf("subject %v, IPs %v", cert.Subject, cert.IPAddresses)
			}
			if d := cert.NotAfter.Sub(time.Now()) - tc.validity; d > time.Minute || d < -time.Minute {
				t.Errorf("lasts until %v, want about %v from now", cert.NotAfter, tc.validity)
			}
		})
	}
	bad := request("system:node:n1")
	bad.Signature[len(bad.Signature)-1] ^= 0xff
	if _, err := Sign(dir, ClusterCA, Request{CSR: bad, Client: true}); err == nil {
		t.Error("a request with a broken signature was signed")
	}
}

// TestIssue: an issued client certificate and its key make a TLS pair
// that verifies under the cluster CA for client auth, with the subject
// asked.
func TestIssue(t *testing.T) {
	dir := t.TempDir()
	if err := Ensure(dir, Spec{}); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := Issue(dir, ClusterCA, pkix.Name{CommonName: "system:node:n1", Organization: []string{"system:nodes"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("certificate and key: %v", err)
	}
	roots, err := certutil.NewPool(Path(dir, string(ClusterCA), ".crt"))
	if err != nil {
		t.Fatal(err)
	}
	cert := pair.Leaf
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a client certificate verifies for serving")
	}
	if cert.Subject.CommonName != "system:node:n1" || len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != "system:nodes" {
		t.Errorf("subject %v", cert.Subject)
	}
	if _, _, err := Issue(t.TempDir(), ClusterCA, pkix.Name{CommonName: "x"}, 0); err == nil {
		t.Error("issued without an authority")
	}
}
