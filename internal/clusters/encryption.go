package clusters

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"skiff.dev/skiff/internal/kms"
	"skiff.dev/skiff/internal/model"
)

// Keys resolves the KMS keys clusters encrypt Secrets with (package kms).
type Keys interface {
	Keyring(account, ref string) (*kms.Keyring, error)
}

// Encryption is one entry of EKS' encryptionConfig.
type Encryption struct {
	Resources []string
	KeyArn    string // a key ID, key ARN, alias name or alias ARN
}

// encryption validates an encryptionConfig as EKS does: one entry, for
// Secrets, with an enabled symmetric key of the cluster's account (an
// alias is resolved to its key, so that moving the alias later does not
// change the cluster's key).
func (s *Service) encryption(account string, cfg []Encryption) (*model.Encryption, error) {
	switch {
	case len(cfg) == 0:
		return nil, nil
	case len(cfg) > 1:
		return nil, fmt.Errorf("%w: encryptionConfig takes one entry (resources [\"secrets\"] and a provider's keyArn); got %d", ErrInvalid, len(cfg))
	}
	e := cfg[0]
	if len(e.Resources) != 1 || e.Resources[0] != "secrets" {
		return nil, fmt.Errorf("%w: encryptionConfig resources must be [\"secrets\"], the only resource EKS encrypts; got %q", ErrInvalid, e.Resources)
	}
	if e.KeyArn == "" {
		return nil, fmt.Errorf("%w: encryptionConfig provider keyArn is required: the ARN or alias of a KMS key ('aws kms create-key')", ErrInvalid)
	}
	if s.Keys == nil {
		return nil, fmt.Errorf("%w: this skiff has no KMS service", ErrInvalid)
	}
	ring, err := s.Keys.Keyring(account, e.KeyArn)
	switch {
	case errors.Is(err, kms.ErrNotFound), errors.Is(err, kms.ErrInvalidArn):
		return nil, fmt.Errorf("%w: KMS key %s was not found in the cluster's account %s (skiff encrypts with keys of the cluster's own account): %v", ErrInvalid, e.KeyArn, account, err)
	case err != nil:
		return nil, err
	}
	if err := ring.Usable(); err != nil {
		return nil, fmt.Errorf("%w: KMS key %s cannot encrypt: %v", ErrInvalid, ring.Arn, err)
	}
	return &model.Encryption{Resources: slices.Clone(e.Resources), KeyArn: ring.Arn}, nil
}

// AssociateEncryption gives an ACTIVE cluster without encryption its key
// (EKS' AssociateEncryptionConfig): the apiservers roll onto the KMS
// plugin, then every Secret already stored is written again, encrypted;
// the update succeeds once they all are. It cannot be undone, as on EKS.
func (s *Service) AssociateEncryption(account, name, token string, cfg []Encryption) (*model.Update, error) {
	if len(cfg) == 0 {
		return nil, fmt.Errorf("%w: encryptionConfig is required: [{resources: [\"secrets\"], provider: {keyArn: ARN}}]", ErrInvalid)
	}
	e, err := s.encryption(account, cfg)
	if err != nil {
		return nil, err
	}
	return s.update(account, name, token, func(c *model.Cluster) (model.Update, error) {
		if c.Encryption != nil {
			return model.Update{}, fmt.Errorf("%w: Encryption is already enabled on the cluster (key %s); it cannot be changed", ErrInvalidRequest, c.Encryption.KeyArn)
		}
		c.Encryption = e
		return model.Update{Type: model.UpdateEncryption, Params: []model.UpdateParam{
			{Type: "EncryptionConfig", Value: EncryptionJSON(e)},
		}}, nil
	})
}

// EncryptionJSON is a cluster's encryptionConfig as EKS renders it.
func EncryptionJSON(e *model.Encryption) string {
	data, _ := json.Marshal(EncryptionOut(e))
	return string(data)
}

// EncryptionOut is a cluster's encryptionConfig in EKS' shape (nil: none).
func EncryptionOut(e *model.Encryption) []map[string]any {
	if e == nil {
		return nil
	}
	return []map[string]any{{"resources": e.Resources, "provider": map[string]string{"keyArn": e.KeyArn}}}
}
