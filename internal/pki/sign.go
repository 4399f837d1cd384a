package pki

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// Request is a certificate signing request already judged: the subject
// and names come from req (checked by the caller), the purpose from
// Server/Client.
type Request struct {
	CSR    *x509.CertificateRequest
	Server bool
	Client bool
	// Validity is how long the certificate lasts (0: a year, as
	// kube-controller-manager's --cluster-signing-duration).
	Validity time.Duration
}

// Sign issues, with authority ca of the PKI in dir, a certificate for an
// approved request, as kube-controller-manager's CSR signer does (backdated
// 5 minutes, no longer than the authority): a PEM block.
func Sign(dir string, ca CA, r Request) ([]byte, error) {
	auth, key, err := load(Path(dir, string(ca), ".crt"), Path(dir, string(ca), ".key"))
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", ca, err)
	}
	if r.CSR == nil {
		return nil, errors.New("no request")
	}
	if err := r.CSR.CheckSignature(); err != nil {
		return nil, fmt.Errorf("the request's signature: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	validity := r.Validity
	if validity <= 0 {
		validity = leafValidity
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(auth.NotAfter) {
		notAfter = auth.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      r.CSR.Subject,
		DNSNames:     r.CSR.DNSNames,
		IPAddresses:  r.CSR.IPAddresses,
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  extUsage(r.Server, r.Client),
	}
	if _, ok := r.CSR.PublicKey.(*rsa.PublicKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, auth, r.CSR.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// Issue makes a key and, with authority ca of the PKI in dir, a client
// certificate for subject (as Sign would for its request): the
// certificate and the key as PEM blocks. skiff gives a node's kubelet its
// client certificate so: the kubelet needs no bootstrap round trip.
func Issue(dir string, ca CA, subject pkix.Name, validity time.Duration) (cert, key []byte, err error) {
	k, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, k)
	if err != nil {
		return nil, nil, fmt.Errorf("request: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, nil, err
	}
	cert, err = Sign(dir, ca, Request{CSR: csr, Client: true, Validity: validity})
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, nil, err
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}
