// Package pki creates and keeps a cluster's certificate authorities, leaf
// certificates and service-account key, as files (0600 for keys) under one
// directory. Ensure is idempotent: it creates what is missing and replaces a
// leaf that is invalid, expiring or no longer has the SANs it needs.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	renewBefore  = 30 * 24 * time.Hour
)

// CA names the authorities of a cluster.
type CA string

const (
	ClusterCA    CA = "ca"             // apiserver serving, clients, kubelets
	EtcdCA       CA = "etcd/ca"        // etcd peers, etcd server, etcd clients
	FrontProxyCA CA = "front-proxy-ca" // aggregation layer
)

// Cert describes one leaf certificate. Name is the file stem under the PKI
// directory (Name.crt, Name.key).
type Cert struct {
	Name   string
	CA     CA
	CN     string
	Orgs   []string
	DNS    []string
	IPs    []net.IP
	Server bool
	Client bool
}

// Spec is everything a cluster's PKI must contain.
type Spec struct {
	Certs []Cert
}

// Ensure makes dir hold the CAs, the service-account key pair (sa.key,
// sa.pub) and every leaf in spec. It returns nothing but errors: readers use
// the file paths (see Path).
func Ensure(dir string, spec Spec) error {
	cas := map[CA]*authority{}
	for _, name := range []CA{ClusterCA, EtcdCA, FrontProxyCA} {
		a, err := ensureCA(dir, name)
		if err != nil {
			return fmt.Errorf("ensure %s: %w", name, err)
		}
		cas[name] = a
	}
	if err := ensureServiceAccountKey(dir); err != nil {
		return fmt.Errorf("ensure service-account key: %w", err)
	}
	for _, c := range spec.Certs {
		a, ok := cas[c.CA]
		if !ok {
			return fmt.Errorf("cert %s: unknown CA %q", c.Name, c.CA)
		}
		if err := ensureLeaf(dir, a, c); err != nil {
			return fmt.Errorf("ensure cert %s: %w", c.Name, err)
		}
	}
	return nil
}

// EnsureServer makes dir hold a CA of its own (ca.crt, ca.key) and one
// serving leaf signed by it, re-issued when it expires soon or lacks a SAN
// of c: skiff's API certificate.
func EnsureServer(dir string, c Cert) error {
	a, err := ensureCA(dir, ClusterCA)
	if err != nil {
		return fmt.Errorf("ensure CA: %w", err)
	}
	if c.CA != ClusterCA {
		return fmt.Errorf("cert %s: CA %q, want %q", c.Name, c.CA, ClusterCA)
	}
	if err := ensureLeaf(dir, a, c); err != nil {
		return fmt.Errorf("ensure cert %s: %w", c.Name, err)
	}
	return nil
}

// Path returns the path of a PKI file, e.g. Path(dir, "apiserver", ".crt").
func Path(dir, name, ext string) string { return filepath.Join(dir, name+ext) }

type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

// extUsage is a leaf's extended key usage: serving, client, or both.
func extUsage(server, client bool) []x509.ExtKeyUsage {
	var usage []x509.ExtKeyUsage
	if server {
		usage = append(usage, x509.ExtKeyUsageServerAuth)
	}
	if client {
		usage = append(usage, x509.ExtKeyUsageClientAuth)
	}
	return usage
}

// newSerial is a random certificate serial number.
func newSerial() (*big.Int, error) { return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62)) }

func ensureCA(dir string, name CA) (*authority, error) {
	certPath, keyPath := Path(dir, string(name), ".crt"), Path(dir, string(name), ".key")
	if cert, key, err := load(certPath, keyPath); err == nil {
		return &authority{cert: cert, key: key}, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	cert, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: "skiff-" + filepath.Base(string(name))}, key)
	if err != nil {
		return nil, err
	}
	if err := write(certPath, keyPath, cert, key); err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key}, nil
}

func ensureServiceAccountKey(dir string) error {
	keyPath, pubPath := Path(dir, "sa", ".key"), Path(dir, "sa", ".pub")
	if _, err := os.Stat(keyPath); err == nil {
		if _, err := os.Stat(pubPath); err == nil {
			return nil
		}
	}
	key, err := newKey()
	if err != nil {
		return err
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	if err := writeFile(keyPath, keyPEM); err != nil {
		return err
	}
	return writeFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))
}

func ensureLeaf(dir string, ca *authority, c Cert) error {
	certPath, keyPath := Path(dir, c.Name, ".crt"), Path(dir, c.Name, ".key")
	if cert, _, err := load(certPath, keyPath); err == nil && current(cert, ca, c) {
		return nil
	}
	key, err := newKey()
	if err != nil {
		return err
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	usage := extUsage(c.Server, c.Client)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: c.CN, Organization: c.Orgs},
		DNSNames:     c.DNS,
		IPAddresses:  c.IPs,
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  usage,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	return write(certPath, keyPath, cert, key)
}

// current reports whether an existing leaf still fits: signed by ca, not
// about to expire, same subject and at least the wanted SANs.
func current(cert *x509.Certificate, ca *authority, c Cert) bool {
	if cert.CheckSignatureFrom(ca.cert) != nil || time.Until(cert.NotAfter) < renewBefore {
		return false
	}
	if cert.Subject.CommonName != c.CN || !slices.Equal(cert.Subject.Organization, c.Orgs) {
		return false
	}
	for _, d := range c.DNS {
		if !slices.Contains(cert.DNSNames, d) {
			return false
		}
	}
	for _, ip := range c.IPs {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func load(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certs, err := certutil.CertsFromFile(certPath)
	if err != nil {
		if _, statErr := os.Stat(certPath); errors.Is(statErr, os.ErrNotExist) {
			return nil, nil, statErr
		}
		return nil, nil, err
	}
	k, err := keyutil.PrivateKeyFromFile(keyPath)
	if err != nil {
		if _, statErr := os.Stat(keyPath); errors.Is(statErr, os.ErrNotExist) {
			return nil, nil, statErr
		}
		return nil, nil, err
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s: not a signing key", keyPath)
	}
	return certs[0], signer, nil
}

func write(certPath, keyPath string, cert *x509.Certificate, key crypto.Signer) error {
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return err
	}
	if err := writeFile(keyPath, keyPEM); err != nil {
		return err
	}
	return writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
}

// writeFile writes atomically with mode 0600, creating parent directories 0700.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
