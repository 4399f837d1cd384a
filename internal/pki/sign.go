package pki

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
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
