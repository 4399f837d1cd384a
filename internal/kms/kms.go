// Package kms keeps each account's KMS keys as AWS KMS models them:
// symmetric encryption keys (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT) with
// versions of 256-bit key material, aliases, tags, key states (Enabled,
// Disabled, PendingDeletion) and rotation; and it encrypts and decrypts
// with them. A ciphertext blob names its key and key version and is
// AES-256-GCM with the encryption context as additional data, so a blob
// decrypts only with its own context, in its own account, and every
// version of its key stays usable after a rotation. Key material is sealed
// at rest by a root key kept in a file of the data dir (RootKey): the store
// never holds it in plaintext. The KMS API front end (internal/api/kms)
// maps the error kinds below to KMS' exceptions.
package kms

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"skiff.dev/skiff/internal/store"
)

// Error kinds; the KMS front end maps them to KMS' exceptions.
var (
	ErrNotFound          = errors.New("not found")          // NotFoundException
	ErrInvalid           = errors.New("invalid parameter")  // ValidationException
	ErrInvalidArn        = errors.New("invalid ARN")        // InvalidArnException
	ErrDisabled          = errors.New("key disabled")       // DisabledException
	ErrInvalidState      = errors.New("invalid key state")  // KMSInvalidStateException
	ErrInvalidCiphertext = errors.New("invalid ciphertext") // InvalidCiphertextException
	ErrIncorrectKey      = errors.New("incorrect key")      // IncorrectKeyException
	ErrExists            = errors.New("already exists")     // AlreadyExistsException
	ErrInvalidAlias      = errors.New("invalid alias name") // InvalidAliasNameException
	ErrTag               = errors.New("invalid tag")        // TagException
	ErrLimit             = errors.New("limit exceeded")     // LimitExceededException
)

// Key states, as KMS names them.
const (
	StateEnabled         = "Enabled"
	StateDisabled        = "Disabled"
	StatePendingDeletion = "PendingDeletion"
)

// Rotation kinds of a key version after the first.
const (
	RotationAutomatic = "AUTOMATIC"
	RotationOnDemand  = "ON_DEMAND"
)

// Limits, as KMS' (keys and aliases per account: skiff's own).
const (
	MaxKeys              = 1000 // keys per account, pending deletion included
	MaxAliases           = 1000 // aliases per account
	MaxTags              = 50   // tags per key
	MaxOnDemandRotations = 25   // per key
	MaxDescription       = 8192
	MaxPlaintext         = 4096 // bytes Encrypt takes
	MaxCiphertext        = 6144 // bytes Decrypt takes
	MaxDataKey           = 1024 // bytes GenerateDataKey makes

	DefaultPendingWindow  = 30 // days
	MinPendingWindow      = 7
	MaxPendingWindow      = 30
	DefaultRotationPeriod = 365 // days
	MinRotationPeriod     = 90
	MaxRotationPeriod     = 2560
)

// Key is a KMS key's metadata.
type Key struct {
	Account     string            `json:"account"`
	ID          string            `json:"id"` // a UUID
	Description string            `json:"description,omitempty"`
	CreatedAt   time.Time         `json:"createdAt"`
	State       string            `json:"state"`
	Tags        map[string]string `json:"tags,omitempty"`
	// DeletionDate and PendingWindowInDays are set while the key is
	// PendingDeletion; at DeletionDate it is gone.
	DeletionDate        time.Time `json:"deletionDate,omitzero"`
	PendingWindowInDays int       `json:"pendingWindowInDays,omitempty"`
	// RotationPeriodInDays is set while automatic rotation is enabled,
	// with the date of the next rotation.
	RotationPeriodInDays int       `json:"rotationPeriodInDays,omitempty"`
	NextRotation         time.Time `json:"nextRotation,omitzero"`
	// Versions of the key material, oldest first: the last one encrypts,
	// all of them decrypt.
	Versions []Version `json:"versions"`
}

// Version is one version of a key's material.
type Version struct {
	Number    int       `json:"number"` // 1, 2, …
	CreatedAt time.Time `json:"createdAt"`
	Rotation  string    `json:"rotation,omitempty"` // RotationAutomatic, RotationOnDemand; "" for the first
}

// record is a key as stored: its metadata and, per version, its material
// sealed by the root key.
type record struct {
	Key
	Material [][]byte `json:"material"`
}

// Arn is the key's ARN in region.
func (k *Key) Arn(region string) string { return KeyArn(region, k.Account, k.ID) }

// Current is the version that encrypts.
func (k *Key) Current() Version { return k.Versions[len(k.Versions)-1] }

// RotationEnabled tells whether the key rotates automatically.
func (k *Key) RotationEnabled() bool { return k.RotationPeriodInDays > 0 }

// MaterialID names a version's material as KMS' KeyMaterialId does (64
// hex digits); it is derived from the key and version, not the material.
func (k *Key) MaterialID(version int) string {
	sum := sha256.Sum256([]byte(k.Account + "/" + k.ID + "/" + strconv.Itoa(version)))
	return hex.EncodeToString(sum[:])
}

// gone tells whether a key pending deletion has reached its deletion date.
func (k *Key) gone(now time.Time) bool {
	return k.State == StatePendingDeletion && !now.Before(k.DeletionDate)
}

// KeyArn is the ARN of a key.
func KeyArn(region, account, id string) string {
	return "arn:aws:kms:" + region + ":" + account + ":key/" + id
}

// AliasArn is the ARN of an alias (name: alias/…).
func AliasArn(region, account, name string) string {
	return "arn:aws:kms:" + region + ":" + account + ":" + name
}

// Alias is a friendly name of a key.
type Alias struct {
	Account   string    `json:"account"`
	Name      string    `json:"name"` // alias/…
	KeyID     string    `json:"keyId"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Arn is the alias' ARN in region.
func (a *Alias) Arn(region string) string { return AliasArn(region, a.Account, a.Name) }

// Service keeps the keys of accounts.
type Service struct {
	Store  *store.Store
	Root   *RootKey
	Region string
	// KeyQuota and AliasQuota bound what an account holds (zero:
	// MaxKeys, MaxAliases).
	KeyQuota, AliasQuota int
	Now                  func() time.Time // default time.Now
	Log                  *slog.Logger     // default slog.Default()
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) log() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}

func keyKey(account, id string) string { return "key/" + account + "/" + id }
func aliasKey(account, name string) string {
	return "alias/" + account + "/" + strings.TrimPrefix(name, "alias/")
}

const checkKey = "root-check"

var checkAAD = []byte("skiff kms root key check")

// Check verifies that the root key is the one that sealed the store's key
// material (a value it sealed on first use), so that a lost or replaced
// root key file is found at start, not at the first Decrypt.
func (s *Service) Check() error {
	var sealed []byte
	err := s.Store.KMSView(func(tx *store.Tx) error { return tx.Get(checkKey, &sealed) })
	if errors.Is(err, store.ErrNotFound) {
		return s.Store.KMS(func(tx *store.Tx) error {
			if tx.Has(checkKey) {
				return nil
			}
			return tx.Put(checkKey, s.Root.seal(checkAAD, checkAAD))
		})
	}
	if err != nil {
		return err
	}
	if _, err := s.Root.unseal(sealed, checkAAD); err != nil {
		return fmt.Errorf("the KMS root key %s is not the one that sealed the keys in the store: restore it from a backup of the data dir "+
			"(without it no KMS key can decrypt)", s.Root.path)
	}
	return nil
}

// newMaterial makes a version's material and seals it.
func (s *Service) newMaterial(account, id string, version int) ([]byte, error) {
	material := make([]byte, 32)
	if _, err := rand.Read(material); err != nil {
		return nil, err
	}
	defer clear(material)
	return s.Root.seal(material, materialAAD(account, id, version)), nil
}

// material unseals a version's material; the caller clears it.
func (s *Service) material(r *record, version int) ([]byte, error) {
	if version < 1 || version > len(r.Material) {
		return nil, fmt.Errorf("key %s has no version %d", r.ID, version)
	}
	m, err := s.Root.unseal(r.Material[version-1], materialAAD(r.Account, r.ID, version))
	if err != nil {
		return nil, fmt.Errorf("unseal the material of key %s version %d (is the root key the one that sealed it?): %w", r.ID, version, err)
	}
	return m, nil
}

// validateTags checks tags as KMS does.
func validateTags(tags map[string]string) error {
	for k, v := range tags {
		switch {
		case k == "" || len(k) > 128:
			return fmt.Errorf("%w: tag key %q: tag keys are 1 to 128 characters", ErrTag, k)
		case len(v) > 256:
			return fmt.Errorf("%w: the value of tag %q is longer than 256 characters", ErrTag, k)
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return fmt.Errorf("%w: tag key %q: the aws: prefix is reserved for AWS", ErrTag, k)
		}
	}
	if len(tags) > MaxTags {
		return fmt.Errorf("%w: a key has at most %d tags; this would be %d", ErrLimit, MaxTags, len(tags))
	}
	return nil
}

// CreateKey makes a symmetric encryption key of account with fresh
// material; it is Enabled.
func (s *Service) CreateKey(account, description string, tags map[string]string) (*Key, error) {
	if len(description) > MaxDescription {
		return nil, fmt.Errorf("%w: 1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to %d", ErrInvalid, MaxDescription)
	}
	if err := validateTags(tags); err != nil {
		return nil, err
	}
	now := s.now()
	r := &record{Key: Key{Account: account, ID: newKeyID(), Description: description, CreatedAt: now, State: StateEnabled,
		Versions: []Version{{Number: 1, CreatedAt: now}}}}
	if len(tags) > 0 {
		r.Tags = map[string]string{}
		for k, v := range tags {
			r.Tags[k] = v
		}
	}
	sealed, err := s.newMaterial(account, r.ID, 1)
	if err != nil {
		return nil, err
	}
	r.Material = [][]byte{sealed}
	quota := s.KeyQuota
	if quota == 0 {
		quota = MaxKeys
	}
	err = s.Store.KMS(func(tx *store.Tx) error {
		if err := s.purge(tx, account, now); err != nil {
			return err
		}
		n := 0
		tx.Scan("key/"+account+"/", func(string, []byte) error { n++; return nil })
		if n >= quota {
			return fmt.Errorf("%w: an account has at most %d keys here (those pending deletion count); schedule the deletion of unused ones", ErrLimit, quota)
		}
		return tx.Put(keyKey(account, r.ID), r)
	})
	if err != nil {
		return nil, err
	}
	s.log().Info("kms: key created", "account", account, "key", r.ID)
	return &r.Key, nil
}

// purge deletes account's keys whose deletion date has come ("" account:
// every account's), with their aliases.
func (s *Service) purge(tx *store.Tx, account string, now time.Time) error {
	prefix := "key/"
	if account != "" {
		prefix += account + "/"
	}
	var gone []Key
	err := tx.Scan(prefix, func(_ string, data []byte) error {
		var k Key
		if err := json.Unmarshal(data, &k); err != nil {
			return err
		}
		if k.gone(now) {
			gone = append(gone, k)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range gone {
		var aliases []string
		tx.Scan("alias/"+k.Account+"/", func(key string, data []byte) error {
			var a Alias
			if json.Unmarshal(data, &a) == nil && a.KeyID == k.ID {
				aliases = append(aliases, key)
			}
			return nil
		})
		for _, a := range append(aliases, keyKey(k.Account, k.ID)) {
			if err := tx.Delete(a); err != nil {
				return err
			}
		}
		s.log().Info("kms: key deleted at its deletion date", "account", k.Account, "key", k.ID, "aliases", len(aliases))
	}
	return nil
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// keyIDOf returns the ID of the key of account a KeyId argument names: a
// key ID, key ARN, alias name or alias ARN, as KMS takes them.
func (s *Service) keyIDOf(tx *store.Tx, account, ref string, now time.Time) (string, error) {
	switch {
	case ref == "":
		return "", fmt.Errorf("%w: 1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null", ErrInvalid)
	case strings.HasPrefix(ref, "arn:"):
		parts := strings.SplitN(ref, ":", 6)
		if len(parts) != 6 || parts[1] != "aws" || parts[2] != "kms" || parts[3] == "" || parts[4] == "" {
			return "", fmt.Errorf("%w: Invalid arn %s: a KMS key ARN is arn:aws:kms:REGION:ACCOUNT:key/ID, an alias ARN arn:aws:kms:REGION:ACCOUNT:alias/NAME", ErrInvalidArn, ref)
		}
		region, acct, res := parts[3], parts[4], parts[5]
		switch {
		case strings.HasPrefix(res, "key/"):
			id := strings.TrimPrefix(res, "key/")
			if region != s.Region || acct != account || !uuidRE.MatchString(id) {
				return "", fmt.Errorf("%w: Key '%s' does not exist", ErrNotFound, ref)
			}
			return id, nil
		case strings.HasPrefix(res, "alias/"):
			if region != s.Region || acct != account {
				return "", fmt.Errorf("%w: Alias %s is not found.", ErrNotFound, ref)
			}
			return s.keyIDOf(tx, account, res, now)
		}
		return "", fmt.Errorf("%w: Invalid arn %s: the resource of a KMS ARN is key/ID or alias/NAME", ErrInvalidArn, ref)
	case strings.HasPrefix(ref, "alias/"):
		var a Alias
		var k Key
		if tx.Get(aliasKey(account, ref), &a) != nil || tx.Get(keyKey(account, a.KeyID), &k) != nil || k.gone(now) {
			return "", fmt.Errorf("%w: Alias %s is not found.", ErrNotFound, AliasArn(s.Region, account, ref))
		}
		return a.KeyID, nil
	case !uuidRE.MatchString(ref):
		return "", fmt.Errorf("%w: Invalid keyId '%s': give a key ID, key ARN, alias name (alias/…) or alias ARN", ErrNotFound, ref)
	}
	return ref, nil
}

// find returns the key of account ref names.
func (s *Service) find(tx *store.Tx, account, ref string, now time.Time) (*record, error) {
	id, err := s.keyIDOf(tx, account, ref, now)
	if err != nil {
		return nil, err
	}
	var r record
	err = tx.Get(keyKey(account, id), &r)
	if errors.Is(err, store.ErrNotFound) || err == nil && r.gone(now) {
		return nil, fmt.Errorf("%w: Key '%s' does not exist", ErrNotFound, KeyArn(s.Region, account, id))
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// usable fails unless the key may encrypt and decrypt: Enabled.
func (s *Service) usable(k *Key) error {
	switch k.State {
	case StateDisabled:
		return fmt.Errorf("%w: %s is disabled.", ErrDisabled, k.Arn(s.Region))
	case StatePendingDeletion:
		return s.notPending(k)
	}
	return nil
}

// notPending fails for a key pending deletion.
func (s *Service) notPending(k *Key) error {
	if k.State == StatePendingDeletion {
		return fmt.Errorf("%w: %s is pending deletion.", ErrInvalidState, k.Arn(s.Region))
	}
	return nil
}

// view reads the key ref names.
func (s *Service) view(account, ref string) (*record, error) {
	var r *record
	err := s.Store.KMSView(func(tx *store.Tx) error {
		var err error
		r, err = s.find(tx, account, ref, s.now())
		return err
	})
	return r, err
}

// update applies fn to the key ref names and stores it, in one
// transaction.
func (s *Service) update(account, ref string, fn func(r *record, now time.Time) error) (*Key, error) {
	var out *Key
	err := s.Store.KMS(func(tx *store.Tx) error {
		now := s.now()
		r, err := s.find(tx, account, ref, now)
		if err != nil {
			return err
		}
		if err := fn(r, now); err != nil {
			return err
		}
		out = &r.Key
		return tx.Put(keyKey(account, r.ID), r)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Describe returns the key of account keyID names (a key ID, key ARN,
// alias name or alias ARN).
func (s *Service) Describe(account, keyID string) (*Key, error) {
	r, err := s.view(account, keyID)
	if err != nil {
		return nil, err
	}
	return &r.Key, nil
}

// List returns the keys of account, pending deletion included, by ID.
func (s *Service) List(account string) ([]*Key, error) {
	var out []*Key
	now := s.now()
	err := s.Store.KMSView(func(tx *store.Tx) error {
		return tx.Scan("key/"+account+"/", func(_ string, data []byte) error {
			var k Key
			if err := json.Unmarshal(data, &k); err != nil {
				return err
			}
			if !k.gone(now) {
				out = append(out, &k)
			}
			return nil
		})
	})
	return out, err
}

// SetEnabled enables or disables a key; a key pending deletion is neither.
func (s *Service) SetEnabled(account, keyID string, enabled bool) (*Key, error) {
	return s.update(account, keyID, func(r *record, _ time.Time) error {
		if err := s.notPending(&r.Key); err != nil {
			return err
		}
		r.State = StateDisabled
		if enabled {
			r.State = StateEnabled
		}
		return nil
	})
}

// ScheduleDeletion makes a key PendingDeletion for days (0: 30); at the
// end of them it is deleted with its material and aliases, and what it
// encrypted can no longer be decrypted.
func (s *Service) ScheduleDeletion(account, keyID string, days int) (*Key, error) {
	if days == 0 {
		days = DefaultPendingWindow
	}
	if days < MinPendingWindow || days > MaxPendingWindow {
		return nil, fmt.Errorf("%w: 1 validation error detected: Value '%d' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value between %d and %d",
			ErrInvalid, days, MinPendingWindow, MaxPendingWindow)
	}
	k, err := s.update(account, keyID, func(r *record, now time.Time) error {
		if err := s.notPending(&r.Key); err != nil {
			return err
		}
		r.State, r.DeletionDate, r.PendingWindowInDays = StatePendingDeletion, now.Add(time.Duration(days)*24*time.Hour), days
		return nil
	})
	if err == nil {
		s.log().Info("kms: key deletion scheduled", "account", account, "key", k.ID, "deletionDate", k.DeletionDate)
	}
	return k, err
}

// CancelDeletion takes a key out of PendingDeletion; it is Disabled, as in
// KMS.
func (s *Service) CancelDeletion(account, keyID string) (*Key, error) {
	return s.update(account, keyID, func(r *record, _ time.Time) error {
		if r.State != StatePendingDeletion {
			return fmt.Errorf("%w: %s is not pending deletion.", ErrInvalidState, r.Arn(s.Region))
		}
		r.State, r.DeletionDate, r.PendingWindowInDays = StateDisabled, time.Time{}, 0
		return nil
	})
}

// Tag adds or replaces tags of a key.
func (s *Service) Tag(account, keyID string, tags map[string]string) error {
	if err := validateTags(tags); err != nil {
		return err
	}
	_, err := s.update(account, keyID, func(r *record, _ time.Time) error {
		if err := s.notPending(&r.Key); err != nil {
			return err
		}
		merged := map[string]string{}
		for k, v := range r.Tags {
			merged[k] = v
		}
		for k, v := range tags {
			merged[k] = v
		}
		if err := validateTags(merged); err != nil {
			return err
		}
		r.Tags = merged
		return nil
	})
	return err
}

// Untag removes tags of a key by key.
func (s *Service) Untag(account, keyID string, keys []string) error {
	for _, k := range keys {
		if k == "" || len(k) > 128 {
			return fmt.Errorf("%w: tag key %q: tag keys are 1 to 128 characters", ErrTag, k)
		}
	}
	_, err := s.update(account, keyID, func(r *record, _ time.Time) error {
		if err := s.notPending(&r.Key); err != nil {
			return err
		}
		for _, k := range keys {
			delete(r.Tags, k)
		}
		if len(r.Tags) == 0 {
			r.Tags = nil
		}
		return nil
	})
	return err
}

// SetRotation enables automatic rotation every days (0: 365), or disables
// it. A new period keeps the schedule's anchor: the next rotation moves by
// the difference.
func (s *Service) SetRotation(account, keyID string, enabled bool, days int) (*Key, error) {
	if enabled && days == 0 {
		days = DefaultRotationPeriod
	}
	if enabled && (days < MinRotationPeriod || days > MaxRotationPeriod) {
		return nil, fmt.Errorf("%w: 1 validation error detected: Value '%d' at 'rotationPeriodInDays' failed to satisfy constraint: Member must have value between %d and %d",
			ErrInvalid, days, MinRotationPeriod, MaxRotationPeriod)
	}
	return s.update(account, keyID, func(r *record, now time.Time) error {
		if err := s.usable(&r.Key); err != nil {
			return err
		}
		switch {
		case !enabled:
			r.RotationPeriodInDays, r.NextRotation = 0, time.Time{}
		case r.RotationEnabled():
			r.NextRotation = r.NextRotation.Add(time.Duration(days-r.RotationPeriodInDays) * 24 * time.Hour)
			r.RotationPeriodInDays = days
		default:
			r.RotationPeriodInDays, r.NextRotation = days, now.Add(time.Duration(days)*24*time.Hour)
		}
		return nil
	})
}

// Rotate gives a key a new version of material at once (on demand): new
// ciphertexts use it, old ones still decrypt. The automatic schedule is
// unchanged.
func (s *Service) Rotate(account, keyID string) (*Key, error) {
	k, err := s.update(account, keyID, func(r *record, now time.Time) error {
		if err := s.usable(&r.Key); err != nil {
			return err
		}
		n := 0
		for _, v := range r.Versions {
			if v.Rotation == RotationOnDemand {
				n++
			}
		}
		if n >= MaxOnDemandRotations {
			return fmt.Errorf("%w: %s has been rotated on demand %d times, the most a key may be", ErrLimit, r.Arn(s.Region), n)
		}
		return s.addVersion(r, RotationOnDemand, now)
	})
	if err == nil {
		s.log().Info("kms: key rotated on demand", "account", account, "key", k.ID, "version", k.Current().Number)
	}
	return k, err
}

// addVersion gives r a new version of material.
func (s *Service) addVersion(r *record, rotation string, now time.Time) error {
	v := len(r.Versions) + 1
	sealed, err := s.newMaterial(r.Account, r.ID, v)
	if err != nil {
		return err
	}
	r.Versions = append(r.Versions, Version{Number: v, CreatedAt: now, Rotation: rotation})
	r.Material = append(r.Material, sealed)
	return nil
}

// Tick does what is due by the clock: it deletes the keys whose deletion
// date has come, with their aliases, and rotates the Enabled keys whose
// next automatic rotation has come. Only reads unless something is due.
func (s *Service) Tick() error {
	now := s.now()
	due := false
	err := s.Store.KMSView(func(tx *store.Tx) error {
		return tx.Scan("key/", func(_ string, data []byte) error {
			var k Key
			if err := json.Unmarshal(data, &k); err != nil {
				return err
			}
			due = due || k.gone(now) || rotationDue(&k, now)
			return nil
		})
	})
	if err != nil || !due {
		return err
	}
	return s.Store.KMS(func(tx *store.Tx) error {
		if err := s.purge(tx, "", now); err != nil {
			return err
		}
		var rotate []string
		tx.Scan("key/", func(key string, data []byte) error {
			var k Key
			if json.Unmarshal(data, &k) == nil && rotationDue(&k, now) {
				rotate = append(rotate, key)
			}
			return nil
		})
		for _, key := range rotate {
			var r record
			if err := tx.Get(key, &r); err != nil {
				return err
			}
			if err := s.addVersion(&r, RotationAutomatic, now); err != nil {
				return err
			}
			// The next date from this one's, not from now: a skiff that was
			// down rotates once, then keeps the schedule.
			for !r.NextRotation.After(now) {
				r.NextRotation = r.NextRotation.Add(time.Duration(r.RotationPeriodInDays) * 24 * time.Hour)
			}
			if err := tx.Put(key, &r); err != nil {
				return err
			}
			s.log().Info("kms: key rotated", "account", r.Account, "key", r.ID, "version", r.Current().Number, "next", r.NextRotation)
		}
		return nil
	})
}

func rotationDue(k *Key, now time.Time) bool {
	return k.State == StateEnabled && k.RotationEnabled() && !now.Before(k.NextRotation)
}

// Resolve returns the ARN and tags of the key of account keyID names, for
// IAM authorization.
func (s *Service) Resolve(account, keyID string) (string, map[string]string, bool) {
	r, err := s.view(account, keyID)
	if err != nil {
		return "", nil, false
	}
	return r.Arn(s.Region), r.Tags, true
}

var aliasRE = regexp.MustCompile(`^alias/[a-zA-Z0-9/_-]+$`)

// validateAlias checks an alias name as KMS does for CreateAlias.
func validateAlias(name string) error {
	switch {
	case !aliasRE.MatchString(name) || len(name) > 256:
		return fmt.Errorf("%w: Alias %q must begin with alias/ followed by a name of letters, digits, '/', '_' and '-', at most 256 characters in all", ErrInvalidAlias, name)
	case strings.HasPrefix(name, "alias/aws/"):
		return fmt.Errorf("%w: Alias %s cannot begin with alias/aws/: that prefix is reserved for AWS managed keys", ErrInvalidAlias, name)
	}
	return nil
}

// CreateAlias names a key (by key ID or key ARN) of account.
func (s *Service) CreateAlias(account, name, target string) error {
	if err := validateAlias(name); err != nil {
		return err
	}
	if target == "" {
		return fmt.Errorf("%w: 1 validation error detected: Value null at 'targetKeyId' failed to satisfy constraint: Member must not be null", ErrInvalid)
	}
	if strings.HasPrefix(target, "alias/") || strings.HasPrefix(target, "arn:") && strings.Contains(target, ":alias/") {
		return fmt.Errorf("%w: TargetKeyId %s is an alias: give the key ID or key ARN of the key the alias is to name", ErrInvalid, target)
	}
	quota := s.AliasQuota
	if quota == 0 {
		quota = MaxAliases
	}
	err := s.Store.KMS(func(tx *store.Tx) error {
		now := s.now()
		if err := s.purge(tx, account, now); err != nil {
			return err
		}
		r, err := s.find(tx, account, target, now)
		if err != nil {
			return err
		}
		if err := s.notPending(&r.Key); err != nil {
			return err
		}
		if tx.Has(aliasKey(account, name)) {
			return fmt.Errorf("%w: An alias with the name %s already exists", ErrExists, AliasArn(s.Region, account, name))
		}
		n := 0
		tx.Scan("alias/"+account+"/", func(string, []byte) error { n++; return nil })
		if n >= quota {
			return fmt.Errorf("%w: an account has at most %d aliases here", ErrLimit, quota)
		}
		return tx.Put(aliasKey(account, name), &Alias{Account: account, Name: name, KeyID: r.ID, CreatedAt: now, UpdatedAt: now})
	})
	if err == nil {
		s.log().Info("kms: alias created", "account", account, "alias", name)
	}
	return err
}

// Aliases returns the aliases of account (only those of the key keyID
// names, if not ""), by name.
func (s *Service) Aliases(account, keyID string) ([]*Alias, error) {
	var out []*Alias
	err := s.Store.KMSView(func(tx *store.Tx) error {
		now := s.now()
		only := ""
		if keyID != "" {
			r, err := s.find(tx, account, keyID, now)
			if err != nil {
				return err
			}
			only = r.ID
		}
		return tx.Scan("alias/"+account+"/", func(_ string, data []byte) error {
			var a Alias
			if err := json.Unmarshal(data, &a); err != nil {
				return err
			}
			var k Key
			if only != "" && a.KeyID != only || tx.Get(keyKey(account, a.KeyID), &k) != nil || k.gone(now) {
				return nil
			}
			out = append(out, &a)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// DeleteAlias removes an alias of account; its key stays.
func (s *Service) DeleteAlias(account, name string) error {
	err := s.Store.KMS(func(tx *store.Tx) error {
		if !strings.HasPrefix(name, "alias/") || !tx.Has(aliasKey(account, name)) {
			return fmt.Errorf("%w: Alias %s is not found.", ErrNotFound, AliasArn(s.Region, account, name))
		}
		return tx.Delete(aliasKey(account, name))
	})
	if err == nil {
		s.log().Info("kms: alias deleted", "account", account, "alias", name)
	}
	return err
}

// Encrypt encrypts plaintext (1 to 4096 bytes) under the current version
// of the key of account keyID names, bound to the encryption context. It
// returns the ciphertext blob and the key.
func (s *Service) Encrypt(account, keyID string, plaintext []byte, ec map[string]string) ([]byte, *Key, error) {
	if len(plaintext) == 0 || len(plaintext) > MaxPlaintext {
		return nil, nil, fmt.Errorf("%w: 1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length between 1 and %d (got %d bytes)",
			ErrInvalid, MaxPlaintext, len(plaintext))
	}
	return s.encrypt(account, keyID, plaintext, ec)
}

func (s *Service) encrypt(account, keyID string, plaintext []byte, ec map[string]string) ([]byte, *Key, error) {
	context, err := canonicalContext(ec)
	if err != nil {
		return nil, nil, err
	}
	r, err := s.view(account, keyID)
	if err != nil {
		return nil, nil, err
	}
	if err := s.usable(&r.Key); err != nil {
		return nil, nil, err
	}
	v := r.Current().Number
	material, err := s.material(r, v)
	if err != nil {
		return nil, nil, err
	}
	defer clear(material)
	blob, err := sealBlob(material, account, r.ID, v, plaintext, context)
	if err != nil {
		return nil, nil, err
	}
	return blob, &r.Key, nil
}

// Decrypt decrypts a ciphertext blob of account with the encryption
// context it was encrypted with. The blob names its key; keyID, if not
// "", must name the same key. It returns the plaintext, the key and the
// key version that encrypted it.
func (s *Service) Decrypt(account, keyID string, blob []byte, ec map[string]string) ([]byte, *Key, int, error) {
	if len(blob) == 0 || len(blob) > MaxCiphertext {
		return nil, nil, 0, fmt.Errorf("%w: 1 validation error detected: Value at 'ciphertextBlob' failed to satisfy constraint: Member must have length between 1 and %d (got %d bytes)",
			ErrInvalid, MaxCiphertext, len(blob))
	}
	context, err := canonicalContext(ec)
	if err != nil {
		return nil, nil, 0, err
	}
	invalid := fmt.Errorf("%w: the ciphertext blob was not made by a KMS key of this account, was changed, or was encrypted with another encryption context", ErrInvalidCiphertext)
	h, ok := parseBlob(blob)
	var r *record
	err = s.Store.KMSView(func(tx *store.Tx) error {
		now := s.now()
		if keyID != "" {
			named, err := s.find(tx, account, keyID, now)
			if err != nil {
				return err
			}
			if ok && named.ID != h.keyID {
				return fmt.Errorf("%w: The key ID in the request (%s) does not identify the KMS key that encrypted the ciphertext", ErrIncorrectKey, named.Arn(s.Region))
			}
		}
		if !ok {
			return invalid
		}
		var err error
		if r, err = s.find(tx, account, h.keyID, now); errors.Is(err, ErrNotFound) {
			return invalid
		}
		return err
	})
	if err != nil {
		return nil, nil, 0, err
	}
	if err := s.usable(&r.Key); err != nil {
		return nil, nil, 0, err
	}
	if h.version > len(r.Versions) {
		return nil, nil, 0, invalid
	}
	material, err := s.material(r, h.version)
	if err != nil {
		return nil, nil, 0, err
	}
	defer clear(material)
	plaintext, err := openBlob(material, account, blob, context)
	if err != nil {
		return nil, nil, 0, invalid
	}
	return plaintext, &r.Key, h.version, nil
}

// GenerateDataKey makes n random bytes (1 to 1024) and encrypts them as
// Encrypt does. It returns the plaintext, the ciphertext blob and the key.
func (s *Service) GenerateDataKey(account, keyID string, n int, ec map[string]string) ([]byte, []byte, *Key, error) {
	if n < 1 || n > MaxDataKey {
		return nil, nil, nil, fmt.Errorf("%w: 1 validation error detected: Value '%d' at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and %d",
			ErrInvalid, n, MaxDataKey)
	}
	plaintext := make([]byte, n)
	if _, err := rand.Read(plaintext); err != nil {
		return nil, nil, nil, err
	}
	blob, k, err := s.encrypt(account, keyID, plaintext, ec)
	if err != nil {
		return nil, nil, nil, err
	}
	return plaintext, blob, k, nil
}

// Run calls Tick at once and then every interval until ctx ends; failures
// are logged.
func (s *Service) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.Tick(); err != nil {
			s.log().Error("kms: deletions and rotations due", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
