package clusters

import (
	"errors"
	"fmt"
	"time"

	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/store"
)

// Hibernate asks that an ACTIVE cluster without nodes hibernate: the
// reconciler stops every control-plane instance but the endpoint's and
// keeps the etcd data; the first client connection wakes it. Hibernating
// again is no change.
func (s *Service) Hibernate(account, name string) (*model.Cluster, error) {
	c, err := s.updateNamed(account, name, func(c *model.Cluster) error {
		if c.Hibernation != nil {
			return nil
		}
		if c.Status != model.StatusActive {
			return fmt.Errorf("%w: cluster %s is %s; only an ACTIVE cluster hibernates", ErrInvalidRequest, name, c.Status)
		}
		if n := c.NodeCount(); n > 0 {
			return fmt.Errorf("%w: cluster %s has %d nodes (desired); scale its node groups to 0 first", ErrInvalidRequest, name, n)
		}
		c.Hibernation = &model.Hibernation{Since: time.Now().UTC(), Reason: "asked to hibernate"}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.changed()
	return c, nil
}

// Wake asks that a hibernating cluster wake (no change for an awake one).
func (s *Service) Wake(account, name string) (*model.Cluster, error) {
	c, err := s.updateNamed(account, name, func(c *model.Cluster) error {
		c.Hibernation = nil
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.changed()
	return c, nil
}

// updateNamed applies fn to cluster name of account in the store, as
// Store.UpdateCluster does, with a missing cluster as ErrNotFound.
func (s *Service) updateNamed(account, name string, fn func(*model.Cluster) error) (*model.Cluster, error) {
	c, err := s.Store.UpdateCluster(model.ClusterKey(account, name), fn)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: no cluster found for name: %s", ErrNotFound, name)
	}
	return c, err
}
