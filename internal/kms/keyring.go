package kms

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Keyring is one key as a user of it outside skiff's server holds it: a
// cluster's KMS plugin, which must keep encrypting and decrypting Secrets'
// data keys while skiff is down. It carries the key's state and its
// material sealed by the root key exactly as the store keeps it: never in
// plaintext, so a Keyring file is no more than the store's own record.
type Keyring struct {
	Arn     string   `json:"arn"`
	Account string   `json:"account"`
	ID      string   `json:"id"`
	State   string   `json:"state"` // Enabled, Disabled, PendingDeletion, or StateGone
	Sealed  [][]byte `json:"sealed"`
}

// StateGone is a Keyring's state once its key was deleted.
const StateGone = "Deleted"

// Keyring returns the keyring of the key of account ref names (a key ID,
// key ARN, alias name or alias ARN). A key pending deletion past its date
// is not found (ErrNotFound).
func (s *Service) Keyring(account, ref string) (*Keyring, error) {
	r, err := s.view(account, ref)
	if err != nil {
		return nil, err
	}
	return &Keyring{Arn: r.Arn(s.Region), Account: r.Account, ID: r.ID, State: r.State, Sealed: r.Material}, nil
}

// KeyID is what a KMS v2 plugin reports as its key: the key's ARN and
// current version, so that a rotation is a new key ID for the apiservers
// (they then make a new data key under the new version).
func (k *Keyring) KeyID() string {
	return k.Arn + "#" + strconv.Itoa(len(k.Sealed))
}

// Usable fails unless the key may encrypt and decrypt, with the KMS error
// a caller of the key would get (DisabledException,
// KMSInvalidStateException, NotFoundException).
func (k *Keyring) Usable() error {
	switch k.State {
	case StateEnabled:
		return nil
	case StateDisabled:
		return fmt.Errorf("%w: %s is disabled.", ErrDisabled, k.Arn)
	case StatePendingDeletion:
		return fmt.Errorf("%w: %s is pending deletion.", ErrInvalidState, k.Arn)
	}
	return fmt.Errorf("%w: Key '%s' does not exist", ErrNotFound, k.Arn)
}

func (k *Keyring) material(rk *RootKey, version int) ([]byte, error) {
	if version < 1 || version > len(k.Sealed) {
		return nil, fmt.Errorf("key %s has no version %d", k.ID, version)
	}
	m, err := rk.unseal(k.Sealed[version-1], materialAAD(k.Account, k.ID, version))
	if err != nil {
		return nil, fmt.Errorf("unseal the material of key %s version %d (is the root key the one that sealed it?): %w", k.ID, version, err)
	}
	return m, nil
}

// Encrypt encrypts plaintext under the key's current version, as the KMS
// service's Encrypt does (the blob decrypts there too, with the same
// encryption context).
func (k *Keyring) Encrypt(rk *RootKey, plaintext []byte, ec map[string]string) ([]byte, error) {
	if err := k.Usable(); err != nil {
		return nil, err
	}
	if len(plaintext) == 0 || len(plaintext) > MaxPlaintext {
		return nil, fmt.Errorf("%w: the plaintext is %d bytes; 1 to %d", ErrInvalid, len(plaintext), MaxPlaintext)
	}
	context, err := canonicalContext(ec)
	if err != nil {
		return nil, err
	}
	v := len(k.Sealed)
	m, err := k.material(rk, v)
	if err != nil {
		return nil, err
	}
	defer clear(m)
	return sealBlob(m, k.Account, k.ID, v, plaintext, context)
}

// Decrypt decrypts a blob of this key (any of its versions).
func (k *Keyring) Decrypt(rk *RootKey, blob []byte, ec map[string]string) ([]byte, error) {
	if err := k.Usable(); err != nil {
		return nil, err
	}
	invalid := fmt.Errorf("%w: the ciphertext blob was not made by %s, was changed, or was encrypted with another encryption context", ErrInvalidCiphertext, k.Arn)
	h, ok := parseBlob(blob)
	if !ok || h.keyID != k.ID || h.version > len(k.Sealed) {
		return nil, invalid
	}
	context, err := canonicalContext(ec)
	if err != nil {
		return nil, err
	}
	m, err := k.material(rk, h.version)
	if err != nil {
		return nil, err
	}
	defer clear(m)
	out, err := openBlob(m, k.Account, blob, context)
	if err != nil {
		return nil, invalid
	}
	return out, nil
}

// Seal seals data under the root key for purpose (the additional data):
// skiff's own secrets, such as a cluster's volume key, kept in the store.
func (rk *RootKey) Seal(purpose string, data []byte) []byte {
	return rk.seal(data, []byte("skiff seal: "+purpose))
}

// Unseal opens what Seal sealed for the same purpose.
func (rk *RootKey) Unseal(purpose string, sealed []byte) ([]byte, error) {
	out, err := rk.unseal(sealed, []byte("skiff seal: "+purpose))
	if err != nil {
		return nil, fmt.Errorf("unseal %s (is the KMS root key the one that sealed it?): %w", purpose, err)
	}
	return out, nil
}

// RootKeyPath is where a data dir keeps the root key.
func RootKeyPath(dataDir string) string { return filepath.Join(dataDir, "kms-root.key") }

// ReadRootKey opens an existing root key file; unlike OpenRootKey it never
// makes one (a KMS plugin must not invent a root key).
func ReadRootKey(path string) (*RootKey, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("the KMS root key: %w", err)
	}
	return OpenRootKey(path)
}
