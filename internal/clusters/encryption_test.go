package clusters

import (
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"skiff.dev/skiff/internal/kms"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/store"
)

// TestAssociateEncryption checks encryptionConfig as EKS does (one entry,
// secrets, a usable key of the account; an alias resolves to its key) and
// that a cluster's key is associated once and for all.
func TestAssociateEncryption(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	root, err := kms.OpenRootKey(filepath.Join(dir, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	keys := &kms.Service{Store: st, Root: root, Region: "us-east-1", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	key, err := keys.CreateKey("1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.CreateAlias("1", "alias/k", key.ID); err != nil {
		t.Fatal(err)
	}
	off, _ := keys.CreateKey("1", "", nil)
	keys.SetEnabled("1", off.ID, false)
	foreign, _ := keys.CreateKey("2", "", nil)
	s := &Service{Store: st, Keys: keys}
	c := &model.Cluster{Name: "web", Account: "1", Status: model.StatusActive}
	if err := st.CreateCluster(c, nil); err != nil {
		t.Fatal(err)
	}
	arn := key.Arn("us-east-1")
	secrets := []string{"secrets"}
	for _, tt := range []struct {
		name string
		cfg  []Encryption
		want error
	}{
		{"none", nil, ErrInvalid},
		{"two entries", []Encryption{{secrets, arn}, {secrets, arn}}, ErrInvalid},
		{"configmaps", []Encryption{{[]string{"configmaps"}, arn}}, ErrInvalid},
		{"secrets twice", []Encryption{{[]string{"secrets", "secrets"}, arn}}, ErrInvalid},
		{"no key", []Encryption{{secrets, ""}}, ErrInvalid},
		{"unknown key", []Encryption{{secrets, "alias/nope"}}, ErrInvalid},
		{"bad ARN", []Encryption{{secrets, "arn:aws:kms:x"}}, ErrInvalid},
		{"another account's key", []Encryption{{secrets, foreign.Arn("us-east-1")}}, ErrInvalid},
		{"disabled key", []Encryption{{secrets, off.ID}}, ErrInvalid},
	} {
		if _, err := s.AssociateEncryption("1", "web", "", tt.cfg); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	u, err := s.AssociateEncryption("1", "web", "tok", []Encryption{{secrets, "alias/k"}})
	if err != nil || u.Type != model.UpdateEncryption || u.Status != model.UpdateInProgress || u.Params[0].Type != "EncryptionConfig" {
		t.Fatalf("associate = %+v, %v", u, err)
	}
	got, _ := s.Get("1", "web")
	if e := got.Encryption; e == nil || e.KeyArn != arn || e.Rewritten || got.Status != model.StatusUpdating {
		t.Fatalf("stored %+v (%s); want the alias' key, not yet rewritten, UPDATING", got.Encryption, got.Status)
	}
	if again, err := s.AssociateEncryption("1", "web", "tok", []Encryption{{secrets, "alias/k"}}); err != nil || again.ID != u.ID {
		t.Errorf("a retry with the token = %+v, %v; want the same update", again, err)
	}
	st.UpdateCluster(c.Key(), func(c *model.Cluster) error { c.Status, c.Updates = model.StatusActive, nil; return nil })
	if _, err := s.AssociateEncryption("1", "web", "", []Encryption{{secrets, arn}}); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("a second association: %v, want invalid request", err)
	}
}
