// Package store persists skiff's desired state and events in one bbolt file.
// Every write is a transaction of its own; callers never hold a transaction
// across calls, so no caller can deadlock another.
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"skiff.dev/skiff/internal/model"
)

var (
	bucketClusters = []byte("clusters")
	bucketEvents   = []byte("events")
	bucketIAM      = []byte("iam")
	bucketNetwork  = []byte("network")
	bucketKMS      = []byte("kms")
)

// ErrNotFound is returned for a missing record.
var ErrNotFound = errors.New("not found")

// Store is the persistent state of one skiff.
type Store struct {
	db *bolt.DB
	// maxEvents bounds the event log; the oldest go first.
	maxEvents int
}

// Open opens (creating if needed) the store at path. Only one process can
// hold it; a second one waits up to 2 s and then fails.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open store %s (is another skiff using this data dir?): %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketClusters, bucketEvents, bucketIAM, bucketNetwork, bucketECR, bucketKMS} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init store: %w", err)
	}
	return &Store{db: db, maxEvents: 10000}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// MaxSlot is the highest network slot: at most this many clusters (the
// process runtime places slot S in 127.(1+S/256).(S%256).0/24).
const MaxSlot = 16*256 - 1

// ErrFull is returned when every network slot is taken.
var ErrFull = errors.New("no free cluster slot")

// CreateCluster stores a new cluster, giving it the lowest network slot
// that no stored cluster holds and that usable (if not nil) accepts, in the
// same transaction; it fails if the key exists.
func (s *Store) CreateCluster(c *model.Cluster, usable func(slot int) bool) error {
	return s.CreateClusterQuota(c, usable, 0)
}

// ErrQuota is returned when an account holds its quota of clusters.
var ErrQuota = errors.New("account quota reached")

// CreateClusterQuota is CreateCluster for an account that may hold at
// most perAccount clusters (0: no limit), checked in the same transaction.
func (s *Store) CreateClusterQuota(c *model.Cluster, usable func(slot int) bool, perAccount int) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketClusters)
		if b.Get([]byte(c.Key())) != nil {
			return fmt.Errorf("cluster %s: %w", c.Name, ErrExists)
		}
		used := map[int]bool{}
		idTaken, mine := false, 0
		err := b.ForEach(func(_, v []byte) error {
			var other model.Cluster
			if err := json.Unmarshal(v, &other); err != nil {
				return err
			}
			used[other.Slot] = true
			idTaken = idTaken || other.ID == c.ID
			if other.Account == c.Account {
				mine++
			}
			return nil
		})
		if err != nil {
			return err
		}
		if perAccount > 0 && mine >= perAccount {
			return fmt.Errorf("%w: %d clusters", ErrQuota, perAccount)
		}
		if idTaken {
			// IDs name data dirs and network resources: never shared,
			// whatever the accounts.
			return fmt.Errorf("cluster ID %s: %w", c.ID, ErrIDTaken)
		}
		c.Slot = 0
		for slot := 1; slot <= MaxSlot && c.Slot == 0; slot++ {
			if !used[slot] && (usable == nil || usable(slot)) {
				c.Slot = slot
			}
		}
		if c.Slot == 0 {
			return ErrFull
		}
		return put(b, c.Key(), c)
	})
}

// ErrIDTaken is returned when a new cluster's ID is another cluster's.
var ErrIDTaken = errors.New("cluster ID taken")

// ErrExists is returned when creating a record that exists.
var ErrExists = errors.New("already exists")

// GetCluster returns the cluster stored under key.
func (s *Store) GetCluster(key string) (*model.Cluster, error) {
	var c model.Cluster
	err := s.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketClusters).Get([]byte(key))
		if data == nil {
			return fmt.Errorf("cluster %s: %w", key, ErrNotFound)
		}
		return json.Unmarshal(data, &c)
	})
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// ListClusters returns every cluster, ordered by key.
func (s *Store) ListClusters() ([]*model.Cluster, error) {
	var out []*model.Cluster
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketClusters).ForEach(func(_, v []byte) error {
			var c model.Cluster
			if err := json.Unmarshal(v, &c); err != nil {
				return err
			}
			out = append(out, &c)
			return nil
		})
	})
	return out, err
}

// UpdateCluster applies fn to the stored cluster and saves the result, in
// one transaction. fn must not call the store.
func (s *Store) UpdateCluster(key string, fn func(*model.Cluster) error) (*model.Cluster, error) {
	var c model.Cluster
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketClusters)
		data := b.Get([]byte(key))
		if data == nil {
			return fmt.Errorf("cluster %s: %w", key, ErrNotFound)
		}
		if err := json.Unmarshal(data, &c); err != nil {
			return err
		}
		if err := fn(&c); err != nil {
			return err
		}
		return put(b, key, &c)
	})
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// DeleteCluster removes a cluster record.
func (s *Store) DeleteCluster(key string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketClusters).Delete([]byte(key))
	})
}

// AddEvent appends an event.
func (s *Store) AddEvent(e model.Event) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		if err := put(b, string(seqKey(seq)), e); err != nil {
			return err
		}
		// Trim the oldest beyond the bound: keys are consecutive sequence numbers.
		if seq <= uint64(s.maxEvents) {
			return nil
		}
		oldest := seqKey(seq - uint64(s.maxEvents) + 1)
		c := b.Cursor()
		for k, _ := c.First(); k != nil && string(k) < string(oldest); k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

// Events returns the events of a cluster ID (all clusters if ""), oldest first.
func (s *Store) Events(cluster string) ([]model.Event, error) {
	var out []model.Event
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEvents).ForEach(func(_, v []byte) error {
			var e model.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if cluster == "" || e.Cluster == cluster {
				out = append(out, e)
			}
			return nil
		})
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, err
}

func seqKey(n uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, n)
	return k
}

func put(b *bolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

// Tx is a transaction over the identity records (accounts, users, keys,
// roles, sessions): JSON values under path-like keys.
type Tx struct{ b *bolt.Bucket }

// Get decodes the record at key into v; ErrNotFound if absent.
func (t *Tx) Get(key string, v any) error {
	data := t.b.Get([]byte(key))
	if data == nil {
		return fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	return json.Unmarshal(data, v)
}

// Has reports whether key exists.
func (t *Tx) Has(key string) bool { return t.b.Get([]byte(key)) != nil }

// Put stores v at key.
func (t *Tx) Put(key string, v any) error { return put(t.b, key, v) }

// Delete removes key.
func (t *Tx) Delete(key string) error { return t.b.Delete([]byte(key)) }

// Scan calls fn for every key with prefix, in key order.
func (t *Tx) Scan(prefix string, fn func(key string, data []byte) error) error {
	c := t.b.Cursor()
	for k, v := c.Seek([]byte(prefix)); k != nil && strings.HasPrefix(string(k), prefix); k, v = c.Next() {
		if err := fn(string(k), v); err != nil {
			return err
		}
	}
	return nil
}

// DeleteOwned deletes the records under prefix whose value is the JSON
// string owner (allocations: addresses, ID ranges).
func (t *Tx) DeleteOwned(prefix, owner string) error {
	var drop []string
	err := t.Scan(prefix, func(key string, data []byte) error {
		var o string
		if json.Unmarshal(data, &o) == nil && o == owner {
			drop = append(drop, key)
		}
		return nil
	})
	for _, k := range drop {
		if err := t.Delete(k); err != nil {
			return err
		}
	}
	return err
}

// Identity runs fn in a read-write transaction over the identity records;
// an error from fn changes nothing.
func (s *Store) Identity(fn func(tx *Tx) error) error {
	return s.db.Update(func(btx *bolt.Tx) error { return fn(&Tx{b: btx.Bucket(bucketIAM)}) })
}

// IdentityView runs fn in a read-only transaction.
func (s *Store) IdentityView(fn func(tx *Tx) error) error {
	return s.db.View(func(btx *bolt.Tx) error { return fn(&Tx{b: btx.Bucket(bucketIAM)}) })
}

// Network runs fn in a read-write transaction over the network records
// (VPCs, subnets); an error from fn changes nothing.
func (s *Store) Network(fn func(tx *Tx) error) error {
	return s.db.Update(func(btx *bolt.Tx) error { return fn(&Tx{b: btx.Bucket(bucketNetwork)}) })
}

// NetworkView runs fn in a read-only transaction over the network records.
func (s *Store) NetworkView(fn func(tx *Tx) error) error {
	return s.db.View(func(btx *bolt.Tx) error { return fn(&Tx{b: btx.Bucket(bucketNetwork)}) })
}

// KMS runs fn in a read-write transaction over the KMS records (keys with
// their sealed material, aliases); an error from fn changes nothing.
func (s *Store) KMS(fn func(tx *Tx) error) error {
	return s.db.Update(func(btx *bolt.Tx) error { return fn(&Tx{b: btx.Bucket(bucketKMS)}) })
}

// KMSView runs fn in a read-only transaction over the KMS records.
func (s *Store) KMSView(fn func(tx *Tx) error) error {
	return s.db.View(func(btx *bolt.Tx) error { return fn(&Tx{b: btx.Bucket(bucketKMS)}) })
}
