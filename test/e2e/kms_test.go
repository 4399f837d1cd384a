package e2e

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKMS is issue 18's KMS acceptance with the stock aws CLI: create-key,
// encrypt/decrypt and generate-data-key round trips (with an encryption
// context), a tampered blob refused, another account's key and ciphertext
// refused, a disabled key refused and enabled again, an alias; and no key
// material in plaintext under the data dir.
func TestKMS(t *testing.T) {
	s := startServe(t, t.TempDir(), freePort(t))
	defer s.stop(t)
	key := mustAWS(t, s, "kms", "create-key", "--description", "e2e")["KeyMetadata"].(map[string]any)
	id := key["KeyId"].(string)
	if key["KeyState"] != "Enabled" || !strings.HasPrefix(key["Arn"].(string), "arn:aws:kms:") {
		t.Errorf("create-key = %v", key)
	}
	mustAWS(t, s, "kms", "create-alias", "--alias-name", "alias/e2e", "--target-key-id", id)
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("the secret of e2e"), 0o600)
	enc := mustAWS(t, s, "kms", "encrypt", "--key-id", "alias/e2e", "--plaintext", "fileb://"+plain,
		"--encryption-context", "cluster=e2e")["CiphertextBlob"].(string)
	blob, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	blobFile := filepath.Join(dir, "blob")
	os.WriteFile(blobFile, blob, 0o600)
	dec := mustAWS(t, s, "kms", "decrypt", "--ciphertext-blob", "fileb://"+blobFile, "--encryption-context", "cluster=e2e")
	if got, _ := base64.StdEncoding.DecodeString(dec["Plaintext"].(string)); string(got) != "the secret of e2e" || dec["KeyId"] != key["Arn"] {
		t.Errorf("decrypt = %q (key %v)", got, dec["KeyId"])
	}
	// Another context, a tampered blob: InvalidCiphertextException.
	out, err := awsCLI(t, s, "kms", "decrypt", "--ciphertext-blob", "fileb://"+blobFile, "--encryption-context", "cluster=other")
	wantAWSError(t, out, err, "InvalidCiphertextException")
	tampered := append([]byte(nil), blob...)
	tampered[len(tampered)-1] ^= 1
	os.WriteFile(blobFile+".bad", tampered, 0o600)
	out, err = awsCLI(t, s, "kms", "decrypt", "--ciphertext-blob", "fileb://"+blobFile+".bad", "--encryption-context", "cluster=e2e")
	wantAWSError(t, out, err, "InvalidCiphertextException")
	// A data key: its plaintext and its blob, which decrypts to it.
	dk := mustAWS(t, s, "kms", "generate-data-key", "--key-id", id, "--key-spec", "AES_256")
	dkPlain, _ := base64.StdEncoding.DecodeString(dk["Plaintext"].(string))
	dkBlob, _ := base64.StdEncoding.DecodeString(dk["CiphertextBlob"].(string))
	os.WriteFile(filepath.Join(dir, "dk"), dkBlob, 0o600)
	back, _ := base64.StdEncoding.DecodeString(mustAWS(t, s, "kms", "decrypt", "--ciphertext-blob", "fileb://"+filepath.Join(dir, "dk"))["Plaintext"].(string))
	if len(dkPlain) != 32 || string(back) != string(dkPlain) {
		t.Errorf("generate-data-key: %d bytes, decrypts back %v", len(dkPlain), string(back) == string(dkPlain))
	}
	// Another account sees neither the key nor what it encrypted.
	other := skiffEnv(t, s.dataDir, "kms-other")
	out, err = awsCLIEnv(t, s, other, "kms", "describe-key", "--key-id", id)
	wantAWSError(t, out, err, "NotFoundException")
	out, err = awsCLIEnv(t, s, other, "kms", "decrypt", "--ciphertext-blob", "fileb://"+blobFile, "--encryption-context", "cluster=e2e")
	if err == nil {
		t.Errorf("another account decrypted the blob: %s", out)
	}
	// Disabled: refused; enabled: back.
	mustAWS(t, s, "kms", "disable-key", "--key-id", id)
	out, err = awsCLI(t, s, "kms", "encrypt", "--key-id", id, "--plaintext", "fileb://"+plain)
	wantAWSError(t, out, err, "DisabledException")
	mustAWS(t, s, "kms", "enable-key", "--key-id", id)
	mustAWS(t, s, "kms", "encrypt", "--key-id", id, "--plaintext", "fileb://"+plain)
	// Nothing of the data key or the plaintext under the data dir.
	filepath.WalkDir(s.dataDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		data, _ := os.ReadFile(path)
		if strings.Contains(string(data), "the secret of e2e") || strings.Contains(string(data), string(dkPlain)) {
			t.Errorf("%s holds a plaintext", path)
		}
		return nil
	})
}
