package nodes

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"net/url"
	"testing"

	certv1 "k8s.io/api/certificates/v1"
)

// TestJudge: a node gets a client certificate for its own name and a
// serving certificate for its own name and address, with a kubelet's
// usages; nothing else.
func TestJudge(t *testing.T) {
	const node, other = "ip-172-31-0-10.ec2.internal", "ip-172-31-0-11.ec2.internal"
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	client, serving := certv1.KubeAPIServerClientKubeletSignerName, certv1.KubeletServingSignerName
	clientUsages := []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageClientAuth}
	servingUsages := []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth}
	// req is a CSR by requester for subject (CN system:node:cn, O org) with SANs.
	type req struct {
		requester string
		groups    []string
		cn        string
		org       []string
		signer    string
		usages    []certv1.KeyUsage
		dns       []string
		ips       []string
		emails    []string
		uris      []string
		notPEM    bool
	}
	// own is node's request for itself: client, or serving with its name and address.
	own := func(signer string, change func(*req)) req {
		r := req{requester: "system:node:" + node, groups: []string{"system:nodes", "system:authenticated"}, cn: node,
			org: []string{"system:nodes"}, signer: signer, usages: clientUsages}
		if signer == serving {
			r.usages, r.dns, r.ips = servingUsages, []string{node}, []string{"172.31.0.10"}
		}
		if change != nil {
			change(&r)
		}
		return r
	}
	for _, c := range []struct {
		name string
		req  req
		ok   bool
	}{
		{"client, own name", own(client, nil), true},
		{"client, own name, RSA usages", own(client, func(r *req) { r.usages = append(r.usages, certv1.UsageKeyEncipherment) }), true},
		{"serving, own name and IP", own(serving, nil), true},
		{"serving, own IP only", own(serving, func(r *req) { r.dns = nil }), true},
		{"serving, own name only", own(serving, func(r *req) { r.ips = nil }), true},

		{"client, another node's name", own(client, func(r *req) { r.cn = other }), false},
		{"serving, another node's name", own(serving, func(r *req) { r.cn, r.dns, r.ips = other, []string{other}, []string{"172.31.0.11"} }), false},
		{"requester is not a node", own(client, func(r *req) { r.requester, r.groups = "admin", []string{"system:masters"} }), false},
		{"node name without the group", own(client, func(r *req) { r.groups = []string{"system:authenticated"} }), false},
		{"serving, an extra IP", own(serving, func(r *req) { r.ips = append(r.ips, "172.31.0.11") }), false},
		{"serving, the host's loopback", own(serving, func(r *req) { r.ips = append(r.ips, "127.0.0.1") }), false},
		{"serving, an extra DNS name", own(serving, func(r *req) { r.dns = append(r.dns, "kubernetes.default.svc") }), false},
		{"serving, another node's DNS name", own(serving, func(r *req) { r.dns = []string{other} }), false},
		{"serving, an email SAN", own(serving, func(r *req) { r.emails = []string{"root@" + node} }), false},
		{"serving, a URI SAN", own(serving, func(r *req) { r.uris = []string{"spiffe://" + node} }), false},
		{"client, a DNS SAN", own(client, func(r *req) { r.dns = []string{node} }), false},
		{"client, its own IP", own(client, func(r *req) { r.ips = []string{"172.31.0.10"} }), false},
		{"wrong org", own(client, func(r *req) { r.org = []string{"system:masters"} }), false},
		{"extra org", own(client, func(r *req) { r.org = []string{"system:nodes", "system:masters"} }), false},
		{"no org", own(client, func(r *req) { r.org = nil }), false},
		{"client with server auth", own(client, func(r *req) { r.usages = servingUsages }), false},
		{"serving with client auth", own(serving, func(r *req) { r.usages = clientUsages }), false},
		{"client, extra usage", own(client, func(r *req) { r.usages = append(r.usages, certv1.UsageServerAuth) }), false},
		{"client, cert sign", own(client, func(r *req) { r.usages = append(r.usages, certv1.UsageCertSign) }), false},
		{"client, no usages", own(client, func(r *req) { r.usages = nil }), false},
		{"client, no digital signature", own(client, func(r *req) { r.usages = []certv1.KeyUsage{certv1.UsageClientAuth} }), false},
		{"not PEM", own(client, func(r *req) { r.notPEM = true }), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + c.req.cn, Organization: c.req.org},
				DNSNames: c.req.dns, EmailAddresses: c.req.emails}
			for _, ip := range c.req.ips {
				tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
			}
			for _, u := range c.req.uris {
				parsed, _ := url.Parse(u)
				tmpl.URIs = append(tmpl.URIs, parsed)
			}
			der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
			if err != nil {
				t.Fatal(err)
			}
			request := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
			if c.req.notPEM {
				request = der
			}
			csr := &certv1.CertificateSigningRequest{Spec: certv1.CertificateSigningRequestSpec{Request: request,
				SignerName: c.req.signer, Usages: c.req.usages, Username: c.req.requester, Groups: c.req.groups}}
			if ok, why := judge(csr); ok != c.ok {
				t.Errorf("judge = %v (%s), want %v", ok, why, c.ok)
			} else if !ok && why == "" {
				t.Error("a denial without a reason")
			}
		})
	}
}
