package registry

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"
)

// TokenTTL is how long a registry password is valid, as ECR's.
const TokenTTL = 12 * time.Hour

// Token errors.
var (
	ErrTokenInvalid = errors.New("invalid authorization token")
	ErrTokenExpired = errors.New("authorization token expired")
)

// Tokens mints and verifies the registry passwords of GetAuthorizationToken:
// self-verifying (HMAC-SHA256 over the account and expiry with a key kept
// in the data dir), so skiff stores no tokens and they survive a restart.
type Tokens struct {
	key []byte
}

// tokenPrefix marks (and versions) skiff's registry passwords.
const tokenPrefix = "skiff1."

// OpenTokens loads the signing key from keyFile, creating it (0600) on
// first use.
func OpenTokens(keyFile string) (*Tokens, error) {
	key, err := os.ReadFile(keyFile)
	if err == nil && len(key) >= 32 {
		return &Tokens{key: key}, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read the registry token key: %w", err)
	}
	key = make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		return nil, fmt.Errorf("write the registry token key: %w", err)
	}
	return &Tokens{key: key}, nil
}

// NewTokens returns Tokens with a given key (tests).
func NewTokens(key []byte) *Tokens { return &Tokens{key: key} }

type tokenClaims struct {
	Account string `json:"a"`
	Key     string `json:"k,omitempty"` // the access key that asked for it
	Expires int64  `json:"e"`           // Unix seconds
}

var accountRE = regexp.MustCompile(`^[0-9]{12}$`)

// Mint returns a password for account valid until now+TokenTTL, and its
// expiry.
func (t *Tokens) Mint(account string, now time.Time) (string, time.Time) {
	return t.MintFor(account, "", now)
}

// MintFor is Mint for the principal of an access key: what the password
// may do is what that principal's IAM policies allow, for as long as the
// key (or session) lives.
func (t *Tokens) MintFor(account, accessKeyID string, now time.Time) (string, time.Time) {
	exp := now.Add(TokenTTL).Truncate(time.Second)
	payload, _ := json.Marshal(tokenClaims{Account: account, Key: accessKeyID, Expires: exp.Unix()})
	p := base64.RawURLEncoding.EncodeToString(payload)
	return tokenPrefix + p + "." + base64.RawURLEncoding.EncodeToString(t.mac(p)), exp
}

func (t *Tokens) mac(payload string) []byte {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(tokenPrefix + payload))
	return m.Sum(nil)
}

// Verify returns the account of a password minted by Mint with this key;
// ErrTokenInvalid if it is not one, ErrTokenExpired if it has expired.
func (t *Tokens) Verify(token string, now time.Time) (string, error) {
	account, _, err := t.VerifyKey(token, now)
	return account, err
}

// VerifyKey is Verify that also returns the access key the password was
// minted for ("" if none).
func (t *Tokens) VerifyKey(token string, now time.Time) (account, accessKeyID string, err error) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	p, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return "", "", ErrTokenInvalid
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, t.mac(p)) {
		return "", "", ErrTokenInvalid
	}
	payload, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return "", "", ErrTokenInvalid
	}
	var c tokenClaims
	if err := json.Unmarshal(payload, &c); err != nil || !accountRE.MatchString(c.Account) {
		return "", "", ErrTokenInvalid
	}
	if !now.Before(time.Unix(c.Expires, 0)) {
		return "", "", fmt.Errorf("%w at %s", ErrTokenExpired, time.Unix(c.Expires, 0).UTC().Format(time.RFC3339))
	}
	return c.Account, c.Key, nil
}
