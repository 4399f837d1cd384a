package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"

	certutil "k8s.io/client-go/util/cert"
)

func TestEnsure(t *testing.T) {
	dir := t.TempDir()
	spec := Spec{Certs: []Cert{
		{Name: "apiserver", CA: ClusterCA, CN: "kube-apiserver", DNS: []string{"kubernetes"}, IPs: []net.IP{net.ParseIP("127.1.1.1")}, Server: true},
		{Name: "admin", CA: ClusterCA, CN: "admin", Orgs: []string{"system:masters"}, Client: true},
		{Name: "etcd/server", CA: EtcdCA, CN: "etcd", IPs: []net.IP{net.ParseIP("127.1.1.11")}, Server: true, Client: true},
	}}
	if err := Ensure(dir, spec); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.key", "etcd/ca.key", "front-proxy-ca.key", "sa.key", "admin.key", "etcd/server.key"} {
		st, err := os.Stat(dir + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	if _, err := tls.LoadX509KeyPair(Path(dir, "apiserver", ".crt"), Path(dir, "apiserver", ".key")); err != nil {
		t.Fatal(err)
	}
	verify := func(name string, ca CA, usage x509.ExtKeyUsage) error {
		leaf, _ := certutil.CertsFromFile(Path(dir, name, ".crt"))
		roots, _ := certutil.NewPool(Path(dir, string(ca), ".crt"))
		_, err := leaf[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}})
		return err
	}
	if err := verify("apiserver", ClusterCA, x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("apiserver cert: %v", err)
	}
	if err := verify("etcd/server", ClusterCA, x509.ExtKeyUsageServerAuth); err == nil {
		t.Error("etcd server cert verified against the cluster CA; CAs must be distinct")
	}

	// Idempotent: a second run changes nothing.
	before, _ := os.ReadFile(Path(dir, "apiserver", ".crt"))
	if err := Ensure(dir, spec); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(Path(dir, "apiserver", ".crt"))
	if string(before) != string(after) {
		t.Error("second Ensure reissued an unchanged cert")
	}

	// A new SAN reissues the leaf, not the CA.
	caBefore, _ := os.ReadFile(Path(dir, "ca", ".crt"))
	spec.Certs[0].IPs = append(spec.Certs[0].IPs, net.ParseIP("127.1.1.22"))
	if err := Ensure(dir, spec); err != nil {
		t.Fatal(err)
	}
	caAfter, _ := os.ReadFile(Path(dir, "ca", ".crt"))
	leaf, _ := certutil.CertsFromFile(Path(dir, "apiserver", ".crt"))
	if string(caBefore) != string(caAfter) || len(leaf[0].IPAddresses) != 2 {
		t.Errorf("SAN change: CA changed=%v, IPs=%v", string(caBefore) != string(caAfter), leaf[0].IPAddresses)
	}

	// Another cluster's PKI is a different trust domain.
	other := t.TempDir()
	if err := Ensure(other, spec); err != nil {
		t.Fatal(err)
	}
	leafB, _ := certutil.CertsFromFile(Path(other, "admin", ".crt"))
	rootsA, _ := certutil.NewPool(Path(dir, "ca", ".crt"))
	if _, err := leafB[0].Verify(x509.VerifyOptions{Roots: rootsA, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("cluster B's admin cert verifies against cluster A's CA")
	}
}
