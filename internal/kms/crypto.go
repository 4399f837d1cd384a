package kms

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

// RootKey seals key material at rest: AES-256-GCM under 32 bytes kept in a
// file of skiff's data dir, never in the store.
type RootKey struct {
	aead cipher.AEAD
	path string // where it is kept ("" if given)
}

// NewRootKey returns a root key of 32 bytes.
func NewRootKey(key []byte) (*RootKey, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("a KMS root key is 32 bytes, not %d", len(key))
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	return &RootKey{aead: aead}, nil
}

// OpenRootKey returns the root key kept in path (32 bytes, mode 0600),
// making it on first use. A file of another size or readable by others is
// refused, never replaced: the keys it sealed would be lost.
func OpenRootKey(path string) (*RootKey, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = makeRootKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("KMS root key: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("KMS root key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("KMS root key %s is readable by others (mode %04o): chmod 600 it", path, fi.Mode().Perm())
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("KMS root key %s has %d bytes, not 32: restore it from a backup of the data dir", path, len(key))
	}
	rk, err := NewRootKey(key)
	clear(key)
	if err != nil {
		return nil, err
	}
	rk.path = path
	return rk, nil
}

// makeRootKey writes 32 random bytes to path unless it exists (a file
// written aside and linked into place: no reader sees half a key, and two
// makers keep the first one's).
func makeRootKey(path string) ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".kms-root-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(key)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := os.Link(f.Name(), path); errors.Is(err, fs.ErrExist) {
		clear(key)
		return os.ReadFile(path)
	} else if err != nil {
		return nil, err
	}
	return key, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts data bound to aad: nonce ‖ ciphertext ‖ tag.
func (rk *RootKey) seal(data, aad []byte) []byte {
	nonce := make([]byte, rk.aead.NonceSize(), rk.aead.NonceSize()+len(data)+rk.aead.Overhead())
	rand.Read(nonce)
	return rk.aead.Seal(nonce, nonce, data, aad)
}

// unseal reverses seal.
func (rk *RootKey) unseal(sealed, aad []byte) ([]byte, error) {
	n := rk.aead.NonceSize()
	if len(sealed) < n+rk.aead.Overhead() {
		return nil, errors.New("sealed data too short")
	}
	return rk.aead.Open(nil, sealed[:n], sealed[n:], aad)
}

// materialAAD binds sealed material to its account, key and version: the
// material of one key cannot be swapped for another's in the store.
func materialAAD(account, id string, version int) []byte {
	return []byte("skiff kms key material\x00" + account + "/" + id + "/" + strconv.Itoa(version))
}

// A ciphertext blob:
//
//	's' 0x01 | key ID (16 bytes, the UUID's) | key version (uint32 BE) |
//	nonce (12) | AES-256-GCM ciphertext and tag (16)
//
// under the key version's material, with additional data the header (the
// first 22 bytes), the account and the canonical encryption context.
const (
	blobMagic   = 's'
	blobFormat  = 1
	headerLen   = 2 + 16 + 4
	nonceLen    = 12
	tagLen      = 16
	blobMinimum = headerLen + nonceLen + tagLen
)

type blobHeader struct {
	keyID   string
	version int
}

// parseBlob reads a ciphertext blob's header.
func parseBlob(blob []byte) (blobHeader, bool) {
	if len(blob) < blobMinimum || blob[0] != blobMagic || blob[1] != blobFormat {
		return blobHeader{}, false
	}
	v := binary.BigEndian.Uint32(blob[18:22])
	if v == 0 || v > 1<<20 {
		return blobHeader{}, false
	}
	return blobHeader{keyID: formatUUID(blob[2:18]), version: int(v)}, true
}

// CiphertextKeyID returns the ID of the key a ciphertext blob names (for
// authorization: Decrypt needs no KeyId), if it is a blob of this format.
func CiphertextKeyID(blob []byte) (string, bool) {
	h, ok := parseBlob(blob)
	return h.keyID, ok
}

// sealBlob encrypts plaintext under a key version's material.
func sealBlob(material []byte, account, id string, version int, plaintext []byte, context []byte) ([]byte, error) {
	raw, ok := parseUUID(id)
	if !ok {
		return nil, fmt.Errorf("key ID %q is not a UUID", id)
	}
	aead, err := newGCM(material)
	if err != nil {
		return nil, err
	}
	blob := make([]byte, headerLen+nonceLen, headerLen+nonceLen+len(plaintext)+tagLen)
	blob[0], blob[1] = blobMagic, blobFormat
	copy(blob[2:18], raw[:])
	binary.BigEndian.PutUint32(blob[18:22], uint32(version))
	if _, err := rand.Read(blob[headerLen:]); err != nil {
		return nil, err
	}
	return aead.Seal(blob, blob[headerLen:headerLen+nonceLen], plaintext, blobAAD(blob[:headerLen], account, context)), nil
}

// openBlob decrypts a blob parseBlob accepted.
func openBlob(material []byte, account string, blob, context []byte) ([]byte, error) {
	aead, err := newGCM(material)
	if err != nil {
		return nil, err
	}
	return aead.Open(nil, blob[headerLen:headerLen+nonceLen], blob[headerLen+nonceLen:], blobAAD(blob[:headerLen], account, context))
}

func blobAAD(header []byte, account string, context []byte) []byte {
	aad := make([]byte, 0, len(header)+2+len(account)+len(context))
	aad = append(aad, header...)
	aad = binary.BigEndian.AppendUint16(aad, uint16(len(account)))
	aad = append(aad, account...)
	return append(aad, context...)
}

// canonicalContext encodes an encryption context unambiguously, pairs
// sorted by key: count, then each key and value, all with uint16 lengths.
// No context and an empty one are the same.
func canonicalContext(ec map[string]string) ([]byte, error) {
	if len(ec) > 0xffff {
		return nil, fmt.Errorf("%w: the encryption context has %d pairs; at most 65535", ErrInvalid, len(ec))
	}
	keys := make([]string, 0, len(ec))
	for k, v := range ec {
		if len(k) > 0xffff || len(v) > 0xffff {
			return nil, fmt.Errorf("%w: encryption context key %.40q: keys and values are at most 65535 bytes", ErrInvalid, k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := binary.BigEndian.AppendUint16(nil, uint16(len(keys)))
	for _, k := range keys {
		out = binary.BigEndian.AppendUint16(out, uint16(len(k)))
		out = append(out, k...)
		out = binary.BigEndian.AppendUint16(out, uint16(len(ec[k])))
		out = append(out, ec[k]...)
	}
	return out, nil
}

// newKeyID returns a random (version 4) UUID, as KMS' key IDs are.
func newKeyID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b[:])
}

func formatUUID(b []byte) string {
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// parseUUID reads a UUID in the lower-case form formatUUID writes.
func parseUUID(s string) ([16]byte, bool) {
	var out [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return out, false
	}
	b, err := hex.DecodeString(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36])
	if err != nil || formatUUID(b) != s {
		return out, false
	}
	copy(out[:], b)
	return out, true
}
