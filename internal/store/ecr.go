package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"skiff.dev/skiff/internal/model"
)

// bucketECR holds ECR repositories under ACCOUNT/NAME.
var bucketECR = []byte("ecr")

// CreateRepository stores a new repository; ErrExists if it exists,
// ErrQuota if its account has perAccount repositories already (0: no
// limit).
func (s *Store) CreateRepository(r *model.Repository, perAccount int) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketECR)
		if b.Get([]byte(r.Key())) != nil {
			return fmt.Errorf("repository %s: %w", r.Key(), ErrExists)
		}
		if perAccount > 0 {
			n, prefix := 0, []byte(r.Account+"/")
			c := b.Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				n++
			}
			if n >= perAccount {
				return fmt.Errorf("%w: %d repositories", ErrQuota, perAccount)
			}
		}
		return put(b, r.Key(), r)
	})
}

// GetRepository returns an account's repository; ErrNotFound if absent.
func (s *Store) GetRepository(account, name string) (*model.Repository, error) {
	var r model.Repository
	err := s.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketECR).Get([]byte(account + "/" + name))
		if data == nil {
			return fmt.Errorf("repository %s/%s: %w", account, name, ErrNotFound)
		}
		return json.Unmarshal(data, &r)
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// ListRepositories returns an account's repositories ordered by name.
func (s *Store) ListRepositories(account string) ([]*model.Repository, error) {
	var out []*model.Repository
	prefix := []byte(account + "/")
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketECR).Cursor()
		for k, v := c.Seek(prefix); k != nil && strings.HasPrefix(string(k), string(prefix)); k, v = c.Next() {
			var r model.Repository
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("repository %s: %w", k, err)
			}
			out = append(out, &r)
		}
		return nil
	})
	return out, err
}

// DeleteRepository removes an account's repository record; ErrNotFound if
// absent.
func (s *Store) DeleteRepository(account, name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketECR)
		key := []byte(account + "/" + name)
		if b.Get(key) == nil {
			return fmt.Errorf("repository %s/%s: %w", account, name, ErrNotFound)
		}
		return b.Delete(key)
	})
}
