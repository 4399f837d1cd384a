package controlplane

import (
	"context"
	"fmt"

	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/runtime"
)

// updateCrashLimit is how many times an instance started by a version
// update may exit without ever becoming healthy before the update fails.
const updateCrashLimit = 3

// updating reports whether c's version update is under way.
func updating(c *model.Cluster) bool {
	p := c.PendingUpdate()
	return p != nil && p.Type == model.UpdateVersion && p.From != ""
}

// failUpdate ends c's version update as Failed because instance s of the
// new version cannot run (why), and sends the control plane back to the
// version it came from: the next passes replace what runs the new
// version's specs by the old ones, one at a time, as the upgrade did. The
// cluster is ACTIVE again (its old instances serve throughout). etcd stays
// on the new version when every member already runs it: etcd does not
// move back a minor without its own downgrade procedure.
func (w *worker) failUpdate(ctx context.Context, c *model.Cluster, s runtime.Spec, why string) (*model.Cluster, error) {
	etcdMoved, err := w.etcdOnSpecs(ctx, c)
	if err != nil {
		return c, err
	}
	var failed *model.Update
	fresh, err := w.cfg.Store.UpdateCluster(c.Key(), func(c *model.Cluster) error {
		p := c.PendingUpdate()
		if p == nil || p.Type != model.UpdateVersion || p.From == "" {
			return nil
		}
		p.Status = model.UpdateFailed
		p.Errors = append(p.Errors, model.UpdateError{Code: "Unknown",
			Message:     fmt.Sprintf("the control plane could not move to Kubernetes %s: %s; it went back to %s", c.Version, why, p.From),
			ResourceIDs: []string{c.Name}})
		u := *p
		failed = &u
		if etcdMoved && minorOf(c.Version) > minorOf(c.Etcd.Version) {
			c.Etcd.Version = c.Version
		}
		c.Version, c.PreviousVersion = p.From, p.PreviousVersion
		c.Status = model.StatusActive
		return nil
	})
	if err != nil {
		return c, err
	}
	if failed != nil {
		w.event(fresh, s.Name(), model.EventDetected, fmt.Sprintf("%s %s failed: %s; going back to %s", failed.Type, failed.ID, why, fresh.Version))
	}
	return fresh, nil
}

// etcdOnSpecs reports whether every etcd member runs its current spec
// (the new version's, during an upgrade).
func (w *worker) etcdOnSpecs(ctx context.Context, c *model.Cluster) (bool, error) {
	b, err := w.cfg.Bundles.Lookup(c.Version)
	if err != nil {
		return false, err
	}
	all, err := w.cfg.Runtime.List(ctx)
	if err != nil {
		return false, err
	}
	hashes := map[string]string{}
	for _, st := range all {
		if st.Running {
			hashes[st.ID] = st.Hash
		}
	}
	for _, s := range w.layout(c).Specs(c, b) {
		if s.Role == runtime.Etcd && hashes[s.ID] != s.Hash() {
			return false, nil
		}
	}
	return true, nil
}

// minorOf is the minor number of "1.37" (-1 for "" or garbage).
func minorOf(v string) int {
	var maj, min int
	if _, err := fmt.Sscanf(v, "%d.%d", &maj, &min); err != nil {
		return -1
	}
	return min
}
