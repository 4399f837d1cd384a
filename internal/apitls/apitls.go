// Package apitls gives skiff's API its TLS: a CA of skiff's own in the
// data dir with a serving certificate for every address the API listens
// on, or certificate files an operator gives; and the clients' side, an
// HTTP transport trusting that CA. Plain HTTP is an explicit choice and
// loopback only: keys, session credentials, registry passwords and
// kubeconfigs cross this API.
package apitls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"skiff.dev/skiff/internal/pki"
)

// Config says how the API listener is secured. The zero value of the file
// fields means skiff's own CA under Dir.
type Config struct {
	Dir      string // where skiff's own CA and certificate live (DATA/tls)
	CertFile string // given serving certificate (PEM, chain allowed)
	KeyFile  string // its key
	CAFile   string // given CA bundle that clients should trust (optional)
	Insecure bool   // plain HTTP (loopback listeners only)
}

// Validate checks the combination of options against the listen address.
func (c Config) Validate(listen string) error {
	given := c.CertFile != "" || c.KeyFile != ""
	switch {
	case (c.CertFile == "") != (c.KeyFile == ""):
		return errors.New("--tls-cert-file and --tls-key-file go together")
	case c.CAFile != "" && !given:
		return errors.New("--tls-ca-file needs --tls-cert-file and --tls-key-file (skiff's own CA is DATA/tls/ca.crt)")
	case c.Insecure && given:
		return errors.New("--insecure-http excludes --tls-cert-file and --tls-key-file")
	case c.Insecure && !Loopback(listen):
		return fmt.Errorf("--insecure-http: %s is not a loopback address; plain HTTP would carry secret keys and credentials over the network", listen)
	}
	return nil
}

// Loopback reports whether a listen address (host:port) accepts only
// connections from this machine.
func Loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Server returns the listener's TLS configuration for the bound address
// (nil for plain HTTP) and the CA bundle clients should trust ("" when
// the system's roots do, or for plain HTTP). With skiff's own CA it
// creates the CA once and (re-)issues the serving certificate when it
// expires soon or lacks an address of addr.
func (c Config) Server(addr net.Addr) (*tls.Config, string, error) {
	if c.Insecure {
		return nil, "", nil
	}
	bundle := c.CAFile
	certFile, keyFile := c.CertFile, c.KeyFile
	if certFile == "" {
		if c.Dir == "" {
			return nil, "", errors.New("no directory for skiff's own CA")
		}
		leaf := pki.Cert{Name: "server", CA: pki.ClusterCA, CN: "skiff", DNS: []string{"localhost"}, Server: true}
		leaf.IPs, leaf.DNS = sans(addr, leaf.DNS)
		if err := pki.EnsureServer(c.Dir, leaf); err != nil {
			return nil, "", fmt.Errorf("skiff's API certificate in %s: %w", c.Dir, err)
		}
		certFile, keyFile = pki.Path(c.Dir, "server", ".crt"), pki.Path(c.Dir, "server", ".key")
		bundle = pki.Path(c.Dir, string(pki.ClusterCA), ".crt")
		// The CA certificate is public: clients of other users read it.
		if err := os.Chmod(bundle, 0o644); err != nil {
			return nil, "", err
		}
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, "", fmt.Errorf("load the API's certificate: %w", err)
	}
	if bundle != "" {
		if bundle, err = filepath.Abs(bundle); err != nil {
			return nil, "", err
		}
		if _, err := Pool(bundle); err != nil {
			return nil, "", err
		}
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}, bundle, nil
}

// sans are the addresses a certificate for addr must name: loopback
// always, the bound address, and every interface's address and the host
// name when bound to all of them.
func sans(addr net.Addr, dns []string) ([]net.IP, []string) {
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return ips, dns
	}
	if !tcp.IP.IsUnspecified() {
		if !tcp.IP.IsLoopback() {
			ips = append(ips, tcp.IP)
		}
		return ips, dns
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
				ips = append(ips, n.IP)
			}
		}
	}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		dns = append(dns, h)
	}
	return ips, dns
}

// Pool is the system's roots plus the certificates of a PEM bundle ("" for
// the system's roots alone).
func Pool(bundle string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if bundle == "" {
		return pool, nil
	}
	data, err := os.ReadFile(bundle)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificate", bundle)
	}
	return pool, nil
}

// Transport is an HTTP transport trusting the system's roots plus bundle,
// as the AWS CLI and SDKs do with AWS_CA_BUNDLE.
func Transport(bundle string) (*http.Transport, error) {
	pool, err := Pool(bundle)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	return tr, nil
}
