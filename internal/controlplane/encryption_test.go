package controlplane

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"skiff.dev/skiff/internal/bundle"
	"skiff.dev/skiff/internal/kms"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/runtime"
	"skiff.dev/skiff/internal/runtime/process"
)

// TestEncryptionSpecs: a cluster with a key runs a KMS plugin, and its
// apiservers name the encryption config; each revocation is a new
// apiserver spec (a roll), nothing else of the key's life is.
func TestEncryptionSpecs(t *testing.T) {
	b := bundle.Bundle{Manifest: bundle.Manifest{KubernetesVersion: "v1.37.2", Binary: "kube"}, Dir: "/b"}
	l := Layout{Slot: 7, Cluster: "c-1", Dir: "/data/clusters/c-1", Place: process.New("/data", "/data/clusters", nil), Skiff: "/bin/skiff", Lean: "/bin/skiff-instance", RootKey: "/data/kms-root.key"}
	c := testCluster()
	plain := l.Specs(c, b)
	c.Encryption = &model.Encryption{Resources: []string{"secrets"}, KeyArn: "arn:aws:kms:us-east-1:1:key/k", Rewritten: true}
	enc := l.Specs(c, b)
	if len(enc) != len(plain)+1 || enc[len(enc)-1].Role != runtime.KMSPlugin {
		t.Fatalf("with a key: %d specs, the last %s; want one more, the KMS plugin", len(enc), enc[len(enc)-1].Role)
	}
	plugin := enc[len(enc)-1]
	if plugin.Command[0] != "/bin/skiff" || plugin.Command[1] != "kms-plugin" || arg(plugin, "--socket") != l.KMSSocket() ||
		arg(plugin, "--root-key") != "/data/kms-root.key" || !slices.Contains(l.Sockets(), l.KMSSocket()) {
		t.Errorf("plugin %v", plugin.Command)
	}
	if !strings.Contains(l.encryptionConfig(), "endpoint: unix://"+l.KMSSocket()) || !strings.Contains(l.encryptionConfig(), "- identity: {}") {
		t.Errorf("encryption config:\n%s", l.encryptionConfig())
	}
	hashes := func(specs []runtime.Spec) map[string]string {
		out := map[string]string{}
		for _, s := range specs {
			out[s.Name()] = s.Hash()
		}
		return out
	}
	for i, s := range enc[:len(plain)] {
		isAPI := s.Role == runtime.APIServer
		if got := arg(s, "--encryption-provider-config"); isAPI != (got == l.EncryptionConfigPath()) {
			t.Errorf("%s: --encryption-provider-config=%q", s.Name(), got)
		}
		if (s.Hash() != plain[i].Hash()) != isAPI {
			t.Errorf("%s: changed %v with encryption", s.Name(), s.Hash() != plain[i].Hash())
		}
	}
	before := hashes(enc)
	c.Encryption.KeyIssue, c.Encryption.KeyIssueMessage = model.IssueKmsKeyDisabled, "disabled"
	if !maps(before, hashes(l.Specs(c, b))) {
		t.Error("a key issue alone changed a spec")
	}
	c.Encryption.Revocations = 1
	after := hashes(l.Specs(c, b))
	for name, h := range after {
		if (h != before[name]) != strings.HasPrefix(name, "apiserver-") {
			t.Errorf("a revocation: %s changed %v", name, h != before[name])
		}
	}
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestKeyIssue(t *testing.T) {
	ring := func(state string) *kms.Keyring { return &kms.Keyring{Arn: "arn:k", State: state} }
	for _, tc := range []struct {
		ring *kms.Keyring
		err  error
		want string
	}{
		{ring(kms.StateEnabled), nil, ""},
		{ring(kms.StateDisabled), nil, model.IssueKmsKeyDisabled},
		{ring(kms.StatePendingDeletion), nil, model.IssueKmsKeyMarkedForDeletion},
		{ring(kms.StateGone), nil, model.IssueKmsKeyNotFound},
		{nil, kms.ErrNotFound, model.IssueKmsKeyNotFound},
		{nil, errors.New("store closed"), ""}, // not the key's fault: no issue
	} {
		if got, msg := keyIssue(tc.ring, tc.err); got != tc.want || (got != "") != (msg != "") {
			t.Errorf("keyIssue(%v, %v) = %q, %q; want %q", tc.ring, tc.err, got, msg, tc.want)
		}
	}
}
