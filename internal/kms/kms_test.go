package kms

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"skiff.dev/skiff/internal/store"
)

const (
	acct  = "111111111111"
	other = "222222222222"
)

// fixture is a service over a fresh store and root key, with a clock the
// test moves.
type fixture struct {
	*Service
	dir string
	now time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	root, err := OpenRootKey(filepath.Join(dir, "kms-root.key"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: dir, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	f.Service = &Service{Store: st, Root: root, Region: "us-east-1", Now: func() time.Time { return f.now },
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := f.Check(); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) key(t *testing.T, account string) *Key {
	t.Helper()
	k, err := f.CreateKey(account, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestRoundTrip: what Encrypt and GenerateDataKey encrypt, Decrypt gives
// back with the same encryption context in any order, the key named by
// any of KMS' four forms or not at all.
func TestRoundTrip(t *testing.T) {
	f := newFixture(t)
	k := f.key(t, acct)
	if err := f.CreateAlias(acct, "alias/app", k.ID); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		keyID    string // for Encrypt
		decrypt  string // KeyId for Decrypt
		enc, dec map[string]string
	}{
		{"key ID, no context", k.ID, "", nil, nil},
		{"key ARN, empty context is none", k.Arn("us-east-1"), k.ID, map[string]string{}, nil},
		{"alias name", "alias/app", "alias/app", map[string]string{"purpose": "etcd"}, map[string]string{"purpose": "etcd"}},
		{"alias ARN", "arn:aws:kms:us-east-1:" + acct + ":alias/app", "", map[string]string{"a": "1", "b": "2", "c": ""},
			map[string]string{"c": "", "b": "2", "a": "1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			plain := []byte("secret of " + tt.name)
			blob, ek, err := f.Encrypt(acct, tt.keyID, plain, tt.enc)
			if err != nil || ek.ID != k.ID {
				t.Fatalf("Encrypt: %v, %v", ek, err)
			}
			if id, ok := CiphertextKeyID(blob); !ok || id != k.ID {
				t.Errorf("CiphertextKeyID = %s, %v", id, ok)
			}
			got, dk, v, err := f.Decrypt(acct, tt.decrypt, blob, tt.dec)
			if err != nil || !bytes.Equal(got, plain) || dk.ID != k.ID || v != 1 {
				t.Fatalf("Decrypt = %q, %v, %d, %v", got, dk, v, err)
			}
			again, _, _ := f.Encrypt(acct, tt.keyID, plain, tt.enc)
			if bytes.Equal(again, blob) {
				t.Error("two encryptions of one plaintext are the same blob")
			}
			dk1, blob, _, err := f.GenerateDataKey(acct, tt.keyID, 32, tt.enc)
			if err != nil || len(dk1) != 32 {
				t.Fatalf("GenerateDataKey: %d bytes, %v", len(dk1), err)
			}
			if got, _, _, err := f.Decrypt(acct, tt.decrypt, blob, tt.dec); err != nil || !bytes.Equal(got, dk1) {
				t.Fatalf("Decrypt a data key: %v", err)
			}
		})
	}
}

// TestDecryptRefused: a blob decrypts only unchanged, with its own
// context, in its own account, with its own key named.
func TestDecryptRefused(t *testing.T) {
	f := newFixture(t)
	k := f.key(t, acct)
	k2 := f.key(t, acct)
	theirs := f.key(t, other)
	ec := map[string]string{"cluster": "prod", "ns": "default"}
	blob, _, err := f.Encrypt(acct, k.ID, []byte("attack at dawn"), ec)
	if err != nil {
		t.Fatal(err)
	}
	theirBlob, _, err := f.Encrypt(other, theirs.ID, []byte("attack at dawn"), ec)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(blob)
		b[i] ^= 0x01
		return b
	}
	for _, tt := range []struct {
		name    string
		account string
		keyID   string
		blob    []byte
		ec      map[string]string
		want    error
	}{
		{"no context", acct, "", blob, nil, ErrInvalidCiphertext},
		{"other value", acct, "", blob, map[string]string{"cluster": "dev", "ns": "default"}, ErrInvalidCiphertext},
		{"extra pair", acct, "", blob, map[string]string{"cluster": "prod", "ns": "default", "x": ""}, ErrInvalidCiphertext},
		{"pairs run together", acct, "", blob, map[string]string{"cluster": "prodns", "": "default"}, ErrInvalidCiphertext},
		{"format byte", acct, "", flip(1), ec, ErrInvalidCiphertext},
		{"key ID byte", acct, "", flip(5), ec, ErrInvalidCiphertext},
		{"key version", acct, "", flip(21), ec, ErrInvalidCiphertext},
		{"nonce", acct, "", flip(headerLen + 3), ec, ErrInvalidCiphertext},
		{"ciphertext", acct, "", flip(headerLen + nonceLen + 2), ec, ErrInvalidCiphertext},
		{"tag", acct, "", flip(len(blob) - 1), ec, ErrInvalidCiphertext},
		{"truncated", acct, "", blob[:len(blob)-1], ec, ErrInvalidCiphertext},
		{"too short", acct, "", blob[:blobMinimum-1], ec, ErrInvalidCiphertext},
		{"not a blob", acct, "", []byte("hello, world, this is not a blob at all"), ec, ErrInvalidCiphertext},
		{"empty", acct, "", nil, ec, ErrInvalid},
		{"too long", acct, "", make([]byte, MaxCiphertext+1), ec, ErrInvalid},
		{"another account's blob", acct, "", theirBlob, ec, ErrInvalidCiphertext},
		{"my blob in another account", other, "", blob, ec, ErrInvalidCiphertext},
		{"another key named", acct, k2.ID, blob, ec, ErrIncorrectKey},
		{"an unknown key named", acct, "alias/nope", blob, ec, ErrNotFound},
		{"another account's key named", acct, theirs.Arn("us-east-1"), theirBlob, ec, ErrNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, _, _, err := f.Decrypt(tt.account, tt.keyID, tt.blob, tt.ec)
			if !errors.Is(err, tt.want) || got != nil {
				t.Errorf("Decrypt = %q, %v, want %v", got, err, tt.want)
			}
		})
	}
	if got, _, _, err := f.Decrypt(acct, k.Arn("us-east-1"), blob, ec); err != nil || string(got) != "attack at dawn" {
		t.Errorf("the untouched blob: %q, %v", got, err)
	}
}

// TestKeyStates: a disabled key neither encrypts nor decrypts
// (DisabledException), nor does one pending deletion
// (KMSInvalidStateException); cancelling the deletion leaves the key
// Disabled; at its deletion date the key is gone with its aliases, and
// Tick removes its record.
func TestKeyStates(t *testing.T) {
	f := newFixture(t)
	k := f.key(t, acct)
	if err := f.CreateAlias(acct, "alias/doomed", k.ID); err != nil {
		t.Fatal(err)
	}
	blob, _, err := f.Encrypt(acct, k.ID, []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	uses := map[string]func() error{
		"Encrypt":         func() error { _, _, err := f.Encrypt(acct, k.ID, []byte("x"), nil); return err },
		"Decrypt":         func() error { _, _, _, err := f.Decrypt(acct, "", blob, nil); return err },
		"GenerateDataKey": func() error { _, _, _, err := f.GenerateDataKey(acct, k.ID, 16, nil); return err },
		"Rotate":          func() error { _, err := f.Rotate(acct, k.ID); return err },
		"SetRotation":     func() error { _, err := f.SetRotation(acct, k.ID, true, 0); return err },
	}
	check := func(state string, want error) {
		t.Helper()
		if d, err := f.Describe(acct, k.ID); err != nil || d.State != state {
			t.Fatalf("state %v, %v; want %s", d, err, state)
		}
		for name, use := range uses {
			if err := use(); !errors.Is(err, want) {
				t.Errorf("%s: %s: %v, want %v", state, name, err, want)
			}
		}
	}
	if _, err := f.SetEnabled(acct, k.ID, false); err != nil {
		t.Fatal(err)
	}
	check(StateDisabled, ErrDisabled)
	if _, err := f.SetEnabled(acct, k.ID, true); err != nil {
		t.Fatal(err)
	}
	check(StateEnabled, nil)

	for _, days := range []int{6, 31, -1} {
		if _, err := f.ScheduleDeletion(acct, k.ID, days); !errors.Is(err, ErrInvalid) {
			t.Errorf("pending window %d: %v", days, err)
		}
	}
	if _, err := f.CancelDeletion(acct, k.ID); !errors.Is(err, ErrInvalidState) {
		t.Errorf("cancel a deletion never scheduled: %v", err)
	}
	d, err := f.ScheduleDeletion(acct, k.ID, 0)
	if err != nil || d.PendingWindowInDays != 30 || !d.DeletionDate.Equal(f.now.Add(30*24*time.Hour)) {
		t.Fatalf("ScheduleDeletion: %+v, %v", d, err)
	}
	check(StatePendingDeletion, ErrInvalidState)
	for name, op := range map[string]func() error{
		"ScheduleDeletion": func() error { _, err := f.ScheduleDeletion(acct, k.ID, 7); return err },
		"SetEnabled":       func() error { _, err := f.SetEnabled(acct, k.ID, true); return err },
		"Tag":              func() error { return f.Tag(acct, k.ID, map[string]string{"a": "b"}) },
		"Untag":            func() error { return f.Untag(acct, k.ID, []string{"a"}) },
		"CreateAlias":      func() error { return f.CreateAlias(acct, "alias/late", k.ID) },
	} {
		if err := op(); !errors.Is(err, ErrInvalidState) {
			t.Errorf("pending deletion: %s: %v", name, err)
		}
	}
	if _, err := f.CancelDeletion(acct, k.ID); err != nil {
		t.Fatal(err)
	}
	check(StateDisabled, ErrDisabled)
	f.SetEnabled(acct, k.ID, true)

	if _, err := f.ScheduleDeletion(acct, k.ID, 7); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(7*24*time.Hour - time.Second)
	if _, err := f.Describe(acct, "alias/doomed"); err != nil {
		t.Fatalf("a second before the deletion date: %v", err)
	}
	f.now = f.now.Add(time.Second)
	for name, ref := range map[string]string{"key": k.ID, "alias": "alias/doomed"} {
		if _, err := f.Describe(acct, ref); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s at the deletion date: %v", name, err)
		}
	}
	if _, _, _, err := f.Decrypt(acct, "", blob, nil); !errors.Is(err, ErrInvalidCiphertext) {
		t.Errorf("Decrypt after the deletion: %v", err)
	}
	if keys, _ := f.List(acct); len(keys) != 0 {
		t.Errorf("List after the deletion: %v", keys)
	}
	if err := f.Tick(); err != nil {
		t.Fatal(err)
	}
	f.Store.KMSView(func(tx *store.Tx) error {
		for _, key := range []string{keyKey(acct, k.ID), aliasKey(acct, "alias/doomed")} {
			if tx.Has(key) {
				t.Errorf("%s still stored after Tick", key)
			}
		}
		return nil
	})
	if err := f.CreateAlias(acct, "alias/doomed", f.key(t, acct).ID); err != nil {
		t.Errorf("the deleted key's alias name again: %v", err)
	}
}

// TestRotation: a rotation adds a key version; new ciphertexts use it and
// the old ones still decrypt. Automatic rotation comes with the clock
// (Tick) for Enabled keys only; on-demand rotations are bounded.
func TestRotation(t *testing.T) {
	f := newFixture(t)
	k := f.key(t, acct)
	plain := []byte("v1 secret")
	v1, _, err := f.Encrypt(acct, k.ID, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := f.Rotate(acct, k.ID)
	if err != nil || r.Current().Number != 2 || r.Current().Rotation != RotationOnDemand {
		t.Fatalf("Rotate: %+v, %v", r, err)
	}
	if r.MaterialID(1) == r.MaterialID(2) || len(r.MaterialID(2)) != 64 {
		t.Errorf("material IDs %s, %s", r.MaterialID(1), r.MaterialID(2))
	}
	v2, _, err := f.Encrypt(acct, k.ID, []byte("v2 secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		blob    []byte
		plain   string
		version int
	}{{v1, "v1 secret", 1}, {v2, "v2 secret", 2}} {
		got, _, v, err := f.Decrypt(acct, "", tt.blob, nil)
		if err != nil || string(got) != tt.plain || v != tt.version {
			t.Errorf("version %d: %q, %d, %v", tt.version, got, v, err)
		}
	}

	// Automatic rotation.
	for _, days := range []int{89, 2561} {
		if _, err := f.SetRotation(acct, k.ID, true, days); !errors.Is(err, ErrInvalid) {
			t.Errorf("rotation period %d: %v", days, err)
		}
	}
	r, err = f.SetRotation(acct, k.ID, true, 90)
	if err != nil || !r.RotationEnabled() || !r.NextRotation.Equal(f.now.Add(90*24*time.Hour)) {
		t.Fatalf("SetRotation: %+v, %v", r, err)
	}
	f.now = f.now.Add(89 * 24 * time.Hour)
	f.Tick()
	if d, _ := f.Describe(acct, k.ID); len(d.Versions) != 2 {
		t.Errorf("rotated before its date: %d versions", len(d.Versions))
	}
	f.now = f.now.Add(2 * 24 * time.Hour) // a day late
	if err := f.Tick(); err != nil {
		t.Fatal(err)
	}
	d, _ := f.Describe(acct, k.ID)
	if len(d.Versions) != 3 || d.Current().Rotation != RotationAutomatic || !d.NextRotation.Equal(r.NextRotation.Add(90*24*time.Hour)) {
		t.Errorf("automatic rotation: %d versions, %+v, next %v", len(d.Versions), d.Current(), d.NextRotation)
	}
	f.Tick()
	if d, _ := f.Describe(acct, k.ID); len(d.Versions) != 3 {
		t.Errorf("a second Tick rotated again: %d versions", len(d.Versions))
	}
	for _, b := range [][]byte{v1, v2} {
		if _, _, _, err := f.Decrypt(acct, "", b, nil); err != nil {
			t.Errorf("an old ciphertext after the automatic rotation: %v", err)
		}
	}
	// A disabled key does not rotate; it does once enabled again.
	f.SetEnabled(acct, k.ID, false)
	f.now = f.now.Add(100 * 24 * time.Hour)
	f.Tick()
	if d, _ := f.Describe(acct, k.ID); len(d.Versions) != 3 {
		t.Errorf("a disabled key rotated: %d versions", len(d.Versions))
	}
	f.SetEnabled(acct, k.ID, true)
	f.Tick()
	if d, _ := f.Describe(acct, k.ID); len(d.Versions) != 4 || !d.NextRotation.After(f.now) {
		t.Errorf("re-enabled key: %d versions, next %v (now %v)", len(d.Versions), d.NextRotation, f.now)
	}
	if d, err := f.SetRotation(acct, k.ID, false, 0); err != nil || d.RotationEnabled() || !d.NextRotation.IsZero() {
		t.Errorf("disable rotation: %+v, %v", d, err)
	}

	// On demand, at most MaxOnDemandRotations times.
	for i := 1; i < MaxOnDemandRotations; i++ {
		if _, err := f.Rotate(acct, k.ID); err != nil {
			t.Fatalf("rotation %d: %v", i+1, err)
		}
	}
	if _, err := f.Rotate(acct, k.ID); !errors.Is(err, ErrLimit) {
		t.Errorf("rotation %d: %v", MaxOnDemandRotations+1, err)
	}
	if got, _, _, err := f.Decrypt(acct, "", v1, nil); err != nil || !bytes.Equal(got, plain) {
		t.Errorf("the first ciphertext after %d rotations: %v", MaxOnDemandRotations+1, err)
	}
}

// TestResolve: the forms of KeyId KMS takes, and what they do not find.
func TestResolve(t *testing.T) {
	f := newFixture(t)
	k := f.key(t, acct)
	theirs := f.key(t, other)
	if err := f.CreateAlias(acct, "alias/team/app_1-x", k.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.CreateAlias(other, "alias/theirs", theirs.ID); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		ref  string
		want error
	}{
		{k.ID, nil},
		{k.Arn("us-east-1"), nil},
		{"alias/team/app_1-x", nil},
		{"arn:aws:kms:us-east-1:" + acct + ":alias/team/app_1-x", nil},
		{"", ErrInvalid},
		{strings.ToUpper(k.ID), ErrNotFound},
		{"app", ErrNotFound},
		{"alias/nope", ErrNotFound},
		{"alias/theirs", ErrNotFound},
		{theirs.ID, ErrNotFound},
		{theirs.Arn("us-east-1"), ErrNotFound},
		{"arn:aws:kms:us-east-1:" + other + ":alias/theirs", ErrNotFound},
		{k.Arn("eu-west-1"), ErrNotFound},
		{"arn:aws:kms:us-east-1:" + acct + ":key/alias/team/app_1-x", ErrNotFound},
		{"arn:aws:kms:us-east-1:" + acct + ":grant/" + k.ID, ErrInvalidArn},
		{"arn:aws:s3:::bucket", ErrInvalidArn},
		{"arn:aws:kms", ErrInvalidArn},
	} {
		got, err := f.Describe(acct, tt.ref)
		switch {
		case tt.want == nil && (err != nil || got.ID != k.ID):
			t.Errorf("Describe(%q) = %v, %v", tt.ref, got, err)
		case tt.want != nil && !errors.Is(err, tt.want):
			t.Errorf("Describe(%q) = %v, %v; want %v", tt.ref, got, err, tt.want)
		}
	}
	if arn, _, ok := f.Resolve(acct, "alias/team/app_1-x"); !ok || arn != k.Arn("us-east-1") {
		t.Errorf("Resolve = %s, %v", arn, ok)
	}
}

// TestAliases: names KMS accepts, the reserved prefix, one alias per
// name, targets by key ID or ARN only.
func TestAliases(t *testing.T) {
	f := newFixture(t)
	k := f.key(t, acct)
	k2 := f.key(t, acct)
	for _, tt := range []struct {
		name, target string
		want         error
	}{
		{"alias/web", k.ID, nil},
		{"alias/web2", k.Arn("us-east-1"), nil},
		{"alias/db", k2.ID, nil},
		{"alias/web", k2.ID, ErrExists},
		{"alias/aws/ebs", k.ID, ErrInvalidAlias},
		{"web", k.ID, ErrInvalidAlias},
		{"alias/", k.ID, ErrInvalidAlias},
		{"alias/has space", k.ID, ErrInvalidAlias},
		{"alias/" + strings.Repeat("a", 251), k.ID, ErrInvalidAlias},
		{"alias/x", "alias/web", ErrInvalid},
		{"alias/x", "arn:aws:kms:us-east-1:" + acct + ":alias/web", ErrInvalid},
		{"alias/x", "", ErrInvalid},
		{"alias/x", newKeyID(), ErrNotFound},
	} {
		if err := f.CreateAlias(acct, tt.name, tt.target); !errors.Is(err, tt.want) || tt.want == nil && err != nil {
			t.Errorf("CreateAlias(%q, %q) = %v, want %v", tt.name, tt.target, err, tt.want)
		}
	}
	names := func(keyID string) string {
		t.Helper()
		as, err := f.Aliases(acct, keyID)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range as {
			out = append(out, a.Name)
		}
		return strings.Join(out, " ")
	}
	if got := names(""); got != "alias/db alias/web alias/web2" {
		t.Errorf("Aliases = %s", got)
	}
	if got := names("alias/web"); got != "alias/web alias/web2" {
		t.Errorf("Aliases of k = %s", got)
	}
	if err := f.DeleteAlias(acct, "alias/web"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alias/web", "web2", "alias/none"} {
		if err := f.DeleteAlias(acct, name); !errors.Is(err, ErrNotFound) {
			t.Errorf("DeleteAlias(%s): %v", name, err)
		}
	}
	if _, err := f.Describe(acct, k.ID); err != nil {
		t.Errorf("the key of a deleted alias: %v", err)
	}
	if as, _ := f.Aliases(other, ""); len(as) != 0 {
		t.Errorf("another account sees %v", as)
	}
	f.AliasQuota = 3
	if err := f.CreateAlias(acct, "alias/three", k.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.CreateAlias(acct, "alias/four", k.ID); !errors.Is(err, ErrLimit) {
		t.Errorf("an alias over the quota: %v", err)
	}
}

// TestTags: tags as KMS takes them.
func TestTags(t *testing.T) {
	f := newFixture(t)
	if _, err := f.CreateKey(acct, "", map[string]string{"aws:x": "y"}); !errors.Is(err, ErrTag) {
		t.Errorf("aws: tag: %v", err)
	}
	k, err := f.CreateKey(acct, "", map[string]string{"team": "a", "env": ""})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		tags map[string]string
		want error
	}{
		{map[string]string{"team": "b", "x": "1"}, nil},
		{map[string]string{"": "v"}, ErrTag},
		{map[string]string{strings.Repeat("k", 129): "v"}, ErrTag},
		{map[string]string{"k": strings.Repeat("v", 257)}, ErrTag},
		{map[string]string{"AWS:k": "v"}, ErrTag},
	} {
		if err := f.Tag(acct, k.ID, tt.tags); !errors.Is(err, tt.want) || tt.want == nil && err != nil {
			t.Errorf("Tag(%v) = %v, want %v", tt.tags, err, tt.want)
		}
	}
	if err := f.Untag(acct, k.ID, []string{"env", "absent"}); err != nil {
		t.Fatal(err)
	}
	d, _ := f.Describe(acct, k.ID)
	if len(d.Tags) != 2 || d.Tags["team"] != "b" || d.Tags["x"] != "1" {
		t.Errorf("tags = %v", d.Tags)
	}
	many := map[string]string{}
	for i := range MaxTags - 1 {
		many[strings.Repeat("t", i+1)] = ""
	}
	if err := f.Tag(acct, k.ID, many); !errors.Is(err, ErrLimit) {
		t.Errorf("%d tags: %v", MaxTags+1, err)
	}
}

// TestKeyQuota: an account holds at most its quota of keys; another
// account is not affected.
func TestKeyQuota(t *testing.T) {
	f := newFixture(t)
	f.KeyQuota = 2
	f.key(t, acct)
	k := f.key(t, acct)
	if _, err := f.CreateKey(acct, "", nil); !errors.Is(err, ErrLimit) {
		t.Fatalf("a third key: %v", err)
	}
	f.key(t, other)
	f.ScheduleDeletion(acct, k.ID, 7)
	if _, err := f.CreateKey(acct, "", nil); !errors.Is(err, ErrLimit) {
		t.Fatalf("a key pending deletion counts: %v", err)
	}
	f.now = f.now.Add(8 * 24 * time.Hour)
	if _, err := f.CreateKey(acct, "", nil); err != nil {
		t.Fatalf("after the deletion: %v", err)
	}
}

// TestSealing: the store never holds key material, data keys or
// plaintexts in the clear (nor base64-encoded, as JSON would); the root
// key is a 0600 file of the data dir, kept across opens; another root key
// fails Check and cannot unseal.
func TestSealing(t *testing.T) {
	f := newFixture(t)
	k := f.key(t, acct)
	f.Rotate(acct, k.ID)
	plain := []byte("the plaintext that must not be stored")
	f.Encrypt(acct, k.ID, plain, nil)
	dataKey, _, _, err := f.GenerateDataKey(acct, k.ID, 32, nil)
	if err != nil {
		t.Fatal(err)
	}
	var secrets [][]byte
	f.Store.KMSView(func(tx *store.Tx) error {
		r, err := f.find(tx, acct, k.ID, f.now)
		if err != nil {
			t.Fatal(err)
		}
		for v := 1; v <= len(r.Versions); v++ {
			m, err := f.material(r, v)
			if err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, m)
		}
		return nil
	})
	rootPath := filepath.Join(f.dir, "kms-root.key")
	root, err := os.ReadFile(rootPath)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, plain, dataKey, root)
	f.Store.Close()
	db, err := os.ReadFile(filepath.Join(f.dir, "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range secrets {
		for _, form := range [][]byte{s, []byte(base64.StdEncoding.EncodeToString(s)), []byte(base64.RawStdEncoding.EncodeToString(s))} {
			if bytes.Contains(db, form) {
				t.Errorf("secret %d is in the store", i)
			}
		}
	}
	if fi, err := os.Stat(rootPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("root key file: %v, %v", fi.Mode(), err)
	}
	again, err := OpenRootKey(rootPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.unseal(f.Root.seal([]byte("x"), nil), nil); err != nil {
		t.Errorf("the root key read again is another: %v", err)
	}

	// Another root key.
	st, err := store.Open(filepath.Join(f.dir, "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	wrong, err := NewRootKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{Store: st, Root: wrong, Region: "us-east-1", Log: f.Log}
	if err := s.Check(); err == nil || !strings.Contains(err.Error(), "restore it from a backup") {
		t.Errorf("Check with another root key: %v", err)
	}
	if _, _, err := s.Encrypt(acct, k.ID, []byte("x"), nil); err == nil {
		t.Error("Encrypt with another root key")
	}
}

// TestRootKeyFile: made on first use, 0600; a file of another size or
// readable by others is refused and left as it is.
func TestRootKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kms-root.key")
	if _, err := OpenRootKey(path); err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(path)
	if fi, _ := os.Stat(path); len(key) != 32 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("made: %d bytes, mode %v", len(key), fi.Mode())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
	os.Chmod(path, 0o644)
	if _, err := OpenRootKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("mode 0644: %v", err)
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, key[:16], 0o600)
	if _, err := OpenRootKey(path); err == nil || !strings.Contains(err.Error(), "16 bytes") {
		t.Errorf("16 bytes: %v", err)
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, key[:16]) {
		t.Error("a bad root key file was replaced")
	}
}

// TestCanonicalContext: pairs in any order encode alike; different
// contexts, even whose strings run together alike, do not.
func TestCanonicalContext(t *testing.T) {
	enc := func(ec map[string]string) string {
		b, err := canonicalContext(ec)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if enc(nil) != enc(map[string]string{}) {
		t.Error("no context and an empty one differ")
	}
	if enc(map[string]string{"a": "1", "b": "2"}) != enc(map[string]string{"b": "2", "a": "1"}) {
		t.Error("order matters")
	}
	seen := map[string]string{}
	for _, ec := range []map[string]string{nil, {"a": "bc"}, {"ab": "c"}, {"a": "b", "c": ""}, {"a": "b"}, {"": "ab"}, {"ab": ""}} {
		e := enc(ec)
		if prev, ok := seen[e]; ok {
			t.Errorf("%v encodes as %s", ec, prev)
		}
		seen[e] = fmt.Sprint(ec)
	}
}
