package kmsplugin

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
	kmsapi "k8s.io/kms/apis/v2"

	"skiff.dev/skiff/internal/kms"
	"skiff.dev/skiff/internal/store"
)

const account = "111111111111"

// TestPlugin runs the plugin on a real socket and calls it as an
// apiserver does: wrap and unwrap, a rotation, a disabled key, another
// cluster's wrapped key, a blob changed in transit, and a second plugin
// started while the first runs (the replacement of an instance).
func TestPlugin(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rootPath := kms.RootKeyPath(dir)
	root, err := kms.OpenRootKey(rootPath)
	if err != nil {
		t.Fatal(err)
	}
	svc := &kms.Service{Store: st, Root: root, Region: "us-east-1", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	key, err := svc.CreateKey(account, "secrets", nil)
	if err != nil {
		t.Fatal(err)
	}
	matPath := filepath.Join(dir, "kms", "material.json")
	write := func(cluster string) {
		t.Helper()
		ring, err := svc.Keyring(account, key.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := WriteMaterial(matPath, &Material{Cluster: cluster, Key: *ring}); err != nil {
			t.Fatal(err)
		}
	}
	const clusterArn = "arn:aws:eks:us-east-1:111111111111:cluster/demo"
	write(clusterArn)

	sock := filepath.Join(dir, "kms.sock")
	start := func() context.CancelFunc {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- Run(ctx, Config{Socket: sock, Material: matPath, RootKey: rootPath, Status: "127.0.0.1:0",
				Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		}()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("plugin: %v", err)
			}
		}
	}
	stop := start()
	defer func() { stop() }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := kmsapi.NewKeyManagementServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var s *kmsapi.StatusResponse
	for { // the plugin starts in the background
		if s, err = c.Status(ctx, &kmsapi.StatusRequest{}); err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || s.Healthz != "ok" || s.Version != "v2" || s.KeyId != key.Arn("us-east-1")+"#1" {
		t.Fatalf("status = %+v, %v; want ok, v2, the key's ARN at version 1", s, err)
	}
	dek := []byte("0123456789abcdef0123456789abcdef")
	enc, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: dek, Uid: "1"})
	if err != nil || enc.KeyId != s.KeyId || strings.Contains(string(enc.Ciphertext), string(dek)) {
		t.Fatalf("encrypt = %+v, %v", enc, err)
	}
	dec, err := c.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Uid: "2"})
	if err != nil || string(dec.Plaintext) != string(dek) {
		t.Fatalf("decrypt = %+v, %v", dec, err)
	}
	// The wrapped key is a KMS ciphertext: the service decrypts it with
	// the cluster's context, and only with it.
	if out, _, _, err := svc.Decrypt(account, "", enc.Ciphertext, map[string]string{ContextKey: clusterArn}); err != nil || string(out) != string(dek) {
		t.Fatalf("the service's Decrypt = %q, %v", out, err)
	}
	tampered := append([]byte{}, enc.Ciphertext...)
	tampered[len(tampered)-1] ^= 1
	wantCode(t, "a changed blob", codes.InvalidArgument, "InvalidCiphertextException", errOf(c.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: tampered, Uid: "3"})))

	// Rotation: a new key ID; old and new wrapped keys unwrap.
	if _, err := svc.Rotate(account, key.ID); err != nil {
		t.Fatal(err)
	}
	write(clusterArn)
	if s, err = c.Status(ctx, &kmsapi.StatusRequest{}); err != nil || s.KeyId != key.Arn("us-east-1")+"#2" {
		t.Fatalf("status after rotation = %+v, %v", s, err)
	}
	enc2, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: dek, Uid: "4"})
	if err != nil || enc2.KeyId != s.KeyId {
		t.Fatalf("encrypt after rotation = %+v, %v", enc2, err)
	}
	for _, blob := range [][]byte{enc.Ciphertext, enc2.Ciphertext} {
		if dec, err := c.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: blob, Uid: "5"}); err != nil || string(dec.Plaintext) != string(dek) {
			t.Fatalf("decrypt after rotation = %+v, %v", dec, err)
		}
	}

	// Another cluster with the same key cannot unwrap this one's keys.
	write("arn:aws:eks:us-east-1:111111111111:cluster/other")
	wantCode(t, "another cluster's key", codes.InvalidArgument, "InvalidCiphertextException", errOf(c.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, Uid: "6"})))
	write(clusterArn)

	// Disabled: unhealthy, and nothing wraps or unwraps.
	if _, err := svc.SetEnabled(account, key.ID, false); err != nil {
		t.Fatal(err)
	}
	write(clusterArn)
	if s, err = c.Status(ctx, &kmsapi.StatusRequest{}); err != nil || s.Healthz == "ok" || !strings.Contains(s.Healthz, "disabled") {
		t.Fatalf("status of a disabled key = %+v, %v", s, err)
	}
	wantCode(t, "encrypt, disabled", codes.FailedPrecondition, "DisabledException", errOf(c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: dek, Uid: "7"})))
	wantCode(t, "decrypt, disabled", codes.FailedPrecondition, "DisabledException", errOf(c.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, Uid: "8"})))

	// Enabled again, by a new plugin (its predecessor's socket is replaced).
	if _, err := svc.SetEnabled(account, key.ID, true); err != nil {
		t.Fatal(err)
	}
	write(clusterArn)
	stop()
	stop = start()
	for {
		if dec, err = c.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, Uid: "9"}); err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || string(dec.Plaintext) != string(dek) {
		t.Fatalf("decrypt by a new plugin = %+v, %v", dec, err)
	}
}

func errOf[T any](_ T, err error) error { return err }

func wantCode(t *testing.T, what string, code codes.Code, name string, err error) {
	t.Helper()
	st, _ := grpcstatus.FromError(err)
	if err == nil || st.Code() != code || !strings.Contains(st.Message(), name) {
		t.Errorf("%s: got %v; want %s with %s", what, err, code, name)
	}
}
