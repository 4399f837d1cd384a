package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/client-go/util/cert"
)

// TestSecretsEncryption is issue 18's envelope encryption of Secrets, with
// the stock aws CLI and kubectl: CreateCluster with encryptionConfig (an
// alias, resolved to its key), Secrets stored as KMS v2 envelopes and found
// nowhere in plaintext, a key rotated on demand (Secrets written before and
// after read back), Secrets readable while skiff is down and after it
// restarts, a disabled key (health issue KmsKeyDisabled, the apiservers
// rolled so that Secrets are unreadable, other objects still served) and
// its recovery, an etcd member replaced with its volume, and
// AssociateEncryptionConfig on a cluster with Secrets
// already stored (rewritten encrypted).
func TestSecretsEncryption(t *testing.T) {
	s, dataDir := serveTest(t)
	key := mustAWS(t, s, "kms", "create-key", "--description", "secrets")["KeyMetadata"].(map[string]any)
	keyArn := key["Arn"].(string)
	mustAWS(t, s, "kms", "create-alias", "--alias-name", "alias/secrets", "--target-key-id", key["KeyId"].(string))
	encCfg := func(ref string) string {
		return `[{"resources":["secrets"],"provider":{"keyArn":"` + ref + `"}}]`
	}
	// Refused by name: another resource, an unknown key.
	for _, cfg := range []string{`[{"resources":["configmaps"],"provider":{"keyArn":"` + keyArn + `"}}]`, encCfg("alias/nope")} {
		out, err := awsCLI(t, s, s.createArgs(t, "bad", "--encryption-config", cfg)...)
		wantAWSError(t, out, err, "InvalidParameterException")
	}
	created := mustAWS(t, s, s.createArgs(t, "enc", "--encryption-config", encCfg("alias/secrets"))...)["cluster"].(map[string]any)
	if got := fmt.Sprint(created["encryptionConfig"]); !strings.Contains(got, keyArn) || !strings.Contains(got, "secrets") {
		t.Errorf("create-cluster encryptionConfig = %s, want the alias' key %s", got, keyArn)
	}
	mustAWS(t, s, s.createArgs(t, "plain")...)
	waitAWSStatus(t, s, "enc", "ACTIVE")
	waitAWSStatus(t, s, "plain", "ACTIVE")
	out, err := awsCLI(t, s, "eks", "associate-encryption-config", "--cluster-name", "enc", "--encryption-config", encCfg(keyArn))
	wantAWSError(t, out, err, "InvalidRequestException")

	kc := filepath.Join(dataDir, "enc.kubeconfig")
	if out, err := awsCLI(t, s, "eks", "update-kubeconfig", "--name", "enc", "--kubeconfig", kc); err != nil {
		t.Fatalf("update-kubeconfig: %v %s", err, out)
	}
	k := func(args ...string) (string, error) { return kubectlEnv(t, s.env, kc, args...) }
	mustK := func(args ...string) string {
		t.Helper()
		out, err := k(args...)
		if err != nil {
			t.Fatalf("kubectl %v: %v: %s", args, err, out)
		}
		return out
	}
	const mark = "e2e-secret-plaintext-7f3a"
	mustK("create", "secret", "generic", "s1", "--from-literal=v="+mark)
	const cmMark = "e2e-configmap-plaintext-91c2"
	mustK("create", "configmap", "cm1", "--from-literal=v="+cmMark)
	readSecret := func(name string) (string, error) {
		return k("get", "secret", name, "-o", "jsonpath={.data.v}")
	}
	const markB64 = "ZTJlLXNlY3JldC1wbGFpbnRleHQtN2YzYQ==" // base64 of mark
	if got, err := readSecret("s1"); err != nil || got != markB64 {
		t.Fatalf("read s1 = %q, %v", got, err)
	}
	enc := clusterEtcd(t, s, dataDir, "enc")
	if v := enc.get(t, "/registry/secrets/default/s1"); !strings.HasPrefix(v, "k8s:enc:kms:v2:skiff-kms:") || !strings.Contains(v, keyArn+"#1") || strings.Contains(v, mark) {
		t.Errorf("s1 in etcd = %.80q…, want a KMS v2 envelope under %s#1", v, keyArn)
	}
	// A ConfigMap is not envelope-encrypted: etcd holds its value, yet no
	// file on the host's disk does (the members' volume images hold
	// ciphertext; what their mounts show is not on disk).
	if v := enc.get(t, "/registry/configmaps/default/cm1"); !strings.Contains(v, cmMark) {
		t.Errorf("a ConfigMap in etcd = %.80q, want its value", v)
	}
	images, _ := filepath.Glob(filepath.Join(dataDir, "clusters", created["id"].(string), "etcd", "*.img"))
	if len(images) != 3 {
		t.Errorf("etcd volume images: %v, want 3", images)
	}
	noPlaintext(t, dataDir, mark)
	noPlaintext(t, dataDir, cmMark)

	// Rotated on demand: the apiservers wrap new data keys under version
	// 2 (they ask the plugin's key ID every minute); both Secrets read.
	mustAWS(t, s, "kms", "rotate-key-on-demand", "--key-id", keyArn)
	if err := eventually(150*time.Second, func() error {
		k("delete", "secret", "s2", "--ignore-not-found")
		mustK("create", "secret", "generic", "s2", "--from-literal=v="+mark)
		if v := enc.get(t, "/registry/secrets/default/s2"); !strings.Contains(v, keyArn+"#2") {
			return fmt.Errorf("s2 is not yet wrapped under version 2")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"s1", "s2"} {
		if got, err := readSecret(name); err != nil || got != markB64 {
			t.Errorf("after rotation, read %s = %q, %v", name, got, err)
		}
	}

	// skiff down, then restarted: Secrets read throughout.
	s.stop(t)
	if got, err := readSecret("s1"); err != nil || got != markB64 {
		t.Errorf("with skiff down, read s1 = %q, %v", got, err)
	}
	*s = *startServeBin(t, s.bin, s.dataDir, s.host())
	if got, err := readSecret("s2"); err != nil || got != markB64 {
		t.Errorf("after a skiff restart, read s2 = %q, %v", got, err)
	}

	// An etcd member loses its volume's data: it is replaced by a member
	// of the next generation on a fresh volume, and Secrets still read.
	encDir := filepath.Join(dataDir, "clusters", created["id"].(string))
	victim := instancePIDs(dataDir)[created["id"].(string)+"/etcd-b"]
	if victim == 0 {
		t.Fatalf("no etcd-b among %v", instancePIDs(dataDir))
	}
	if err := os.RemoveAll(filepath.Join(encDir, "etcd", "etcd-b", "data")); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(victim, syscall.SIGKILL)
	if err := eventually(90*time.Second, func() error {
		if _, err := os.Stat(filepath.Join(encDir, "etcd", "etcd-b-1.img")); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(encDir, "etcd", "etcd-b.img")); err == nil {
			return fmt.Errorf("the old member's volume is still there")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	waitAWSStatus(t, s, "enc", "ACTIVE")
	for _, name := range []string{"s1", "s2"} {
		if got, err := readSecret(name); err != nil || got != markB64 {
			t.Errorf("after an etcd member replacement, read %s = %q, %v", name, got, err)
		}
	}

	// Disabled: the health issue at once; the apiservers are replaced,
	// and then no Secret reads while ConfigMaps still do.
	mustAWS(t, s, "kms", "disable-key", "--key-id", keyArn)
	if err := eventually(20*time.Second, func() error {
		h := fmt.Sprint(mustAWS(t, s, "eks", "describe-cluster", "--name", "enc")["cluster"].(map[string]any)["health"])
		if !strings.Contains(h, "KmsKeyDisabled") {
			return fmt.Errorf("health = %s", h)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if err := eventually(5*time.Minute, func() error {
		if out, err := readSecret("s1"); err == nil {
			return fmt.Errorf("s1 still reads: %s", out)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if out, err := k("get", "configmap", "cm1", "-o", "jsonpath={.data.v}"); err != nil || out != cmMark {
		t.Errorf("with the key disabled, a ConfigMap = %q, %v", out, err)
	}
	// Enabled again: the cluster recovers by itself.
	mustAWS(t, s, "kms", "enable-key", "--key-id", keyArn)
	if err := eventually(90*time.Second, func() error {
		for _, name := range []string{"s1", "s2"} {
			if got, err := readSecret(name); err != nil || got != markB64 {
				return fmt.Errorf("read %s = %q, %v", name, got, err)
			}
		}
		if h := fmt.Sprint(mustAWS(t, s, "eks", "describe-cluster", "--name", "enc")["cluster"].(map[string]any)["health"]); strings.Contains(h, "Kms") {
			return fmt.Errorf("health = %s", h)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}

	// AssociateEncryptionConfig: a Secret stored before is rewritten
	// encrypted, and the update succeeds once it is.
	kcPlain := filepath.Join(dataDir, "plain.kubeconfig")
	if out, err := awsCLI(t, s, "eks", "update-kubeconfig", "--name", "plain", "--kubeconfig", kcPlain); err != nil {
		t.Fatalf("update-kubeconfig: %v %s", err, out)
	}
	if out, err := kubectlEnv(t, s.env, kcPlain, "create", "secret", "generic", "before", "--from-literal=v="+mark); err != nil {
		t.Fatalf("create secret: %v %s", err, out)
	}
	plain := clusterEtcd(t, s, dataDir, "plain")
	if v := plain.get(t, "/registry/secrets/default/before"); !strings.Contains(v, mark) {
		t.Fatalf("before association, the Secret is stored as %.80q", v)
	}
	u := mustAWS(t, s, "eks", "associate-encryption-config", "--cluster-name", "plain", "--encryption-config", encCfg(keyArn))["update"].(map[string]any)
	if u["type"] != "AssociateEncryptionConfig" || u["status"] != "InProgress" {
		t.Errorf("associate-encryption-config = %v", u)
	}
	if err := eventually(4*time.Minute, func() error {
		got := mustAWS(t, s, "eks", "describe-update", "--name", "plain", "--update-id", u["id"].(string))["update"].(map[string]any)
		if got["status"] != "Successful" {
			return fmt.Errorf("update %v", got["status"])
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if v := plain.get(t, "/registry/secrets/default/before"); !strings.HasPrefix(v, "k8s:enc:kms:v2:skiff-kms:") || strings.Contains(v, mark) {
		t.Errorf("after association, the Secret is stored as %.80q", v)
	}
	if out, err := kubectlEnv(t, s.env, kcPlain, "get", "secret", "before", "-o", "jsonpath={.data.v}"); err != nil || out != markB64 {
		t.Errorf("after association, read = %q, %v", out, err)
	}
	if got := fmt.Sprint(mustAWS(t, s, "eks", "describe-cluster", "--name", "plain")["cluster"].(map[string]any)["encryptionConfig"]); !strings.Contains(got, keyArn) {
		t.Errorf("describe-cluster encryptionConfig = %s", got)
	}
	// (plain's etcd files may still hold the old revision's plaintext
	// until compaction and reuse of its pages: enc's only.)
	noPlaintext(t, filepath.Join(dataDir, "clusters", created["id"].(string)), mark)

	// Deleted: no mount, loop device or volume of the cluster is left.
	mustAWS(t, s, "eks", "delete-cluster", "--name", "enc")
	waitAWSStatus(t, s, "enc", "")
	if data, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(data), encDir) {
		t.Errorf("mounts of the deleted cluster are left")
	}
	backing, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, b := range backing {
		if data, _ := os.ReadFile(b); strings.Contains(string(data), encDir) {
			t.Errorf("loop device %s still backs %s", b, data)
		}
	}
	if _, err := os.Stat(encDir); !os.IsNotExist(err) {
		t.Errorf("the deleted cluster's directory: %v", err)
	}
}

// noPlaintext fails if a file under dir holds s on the disk: it reads
// every file, etcd's volume images whole, and skips what is mounted below
// dir (an open volume shows its files decrypted; the disk has its image).
func noPlaintext(t *testing.T, dir, s string) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			var sub syscall.Stat_t
			if syscall.Stat(path, &sub) == nil && sub.Dev != st.Dev {
				return filepath.SkipDir // a mount: its image is read instead
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if fileHolds(path, s) {
			t.Errorf("%s holds the plaintext %q", path, s)
		}
		return nil
	})
}

// fileHolds says whether the file at path holds s, reading only its data
// (a sparse volume image is mostly holes) in chunks.
func fileHolds(path, s string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	const seekData, seekHole = 3, 4 // SEEK_DATA, SEEK_HOLE
	buf := make([]byte, 1<<20)
	for off := int64(0); off < fi.Size(); {
		start, err := f.Seek(off, seekData)
		if err != nil {
			return false // no data after off
		}
		end, err := f.Seek(start, seekHole)
		if err != nil {
			end = fi.Size()
		}
		for pos := start; pos < end; {
			n, _ := f.ReadAt(buf[:min(int64(len(buf)), end-pos)], pos)
			if n <= 0 {
				break
			}
			if strings.Contains(string(buf[:n]), s) {
				return true
			}
			if int64(n) <= int64(len(s)) {
				break
			}
			pos += int64(n) - int64(len(s)) // overlap: s may straddle chunks
		}
		off = end
	}
	return false
}

// etcdOf reads a cluster's etcd directly, as skiff does (its client
// certificate under the data dir).
type etcdOf struct{ cli *clientv3.Client }

// clusterEtcd connects to cluster name's etcd: its members listen next
// to its endpoint (the process runtime's 127.1.SLOT.0/24: members at .11
// to .13).
func clusterEtcd(t *testing.T, s *server, dataDir, name string) etcdOf {
	t.Helper()
	c := mustAWS(t, s, "eks", "describe-cluster", "--name", name)["cluster"].(map[string]any)
	u, err := url.Parse(c["endpoint"].(string))
	if err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP(u.Hostname()).To4()
	var eps []string
	for i := range 3 {
		eps = append(eps, fmt.Sprintf("https://%d.%d.%d.%d:2379", ip[0], ip[1], ip[2], 11+i))
	}
	pki := filepath.Join(dataDir, "clusters", c["id"].(string), "pki", "etcd")
	pair, err := tls.LoadX509KeyPair(filepath.Join(pki, "skiff-client.crt"), filepath.Join(pki, "skiff-client.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := cert.NewPool(filepath.Join(pki, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		TLS: &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return etcdOf{cli}
}

func (e etcdOf) get(t *testing.T, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.cli.Get(ctx, key)
	if err != nil {
		t.Fatalf("etcd get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		t.Fatalf("etcd get %s: no such key", key)
	}
	return string(resp.Kvs[0].Value)
}
