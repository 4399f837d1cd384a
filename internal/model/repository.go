package model

import "time"

// Tag mutability of a repository, as ECR names it.
const (
	TagMutable   = "MUTABLE"
	TagImmutable = "IMMUTABLE"
)

// Repository is an ECR repository of an account. Its images live in the
// built-in registry's storage under ACCOUNT/NAME; this record is what ECR
// keeps about it (existence gates pushes and pulls).
type Repository struct {
	Account            string            `json:"account"`
	Name               string            `json:"name"`
	CreatedAt          time.Time         `json:"createdAt"`
	ImageTagMutability string            `json:"imageTagMutability"` // MUTABLE or IMMUTABLE
	ScanOnPush         bool              `json:"scanOnPush,omitempty"`
	EncryptionType     string            `json:"encryptionType"` // AES256
	Tags               map[string]string `json:"tags,omitempty"`
}

// Key is the repository's store key: ACCOUNT/NAME, also its name in the
// registry's storage.
func (r *Repository) Key() string { return r.Account + "/" + r.Name }
