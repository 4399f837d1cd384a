package nodes

import (
	"skiff.dev/skiff/internal/registry"
)

// PullHeader carries a node's registry credentials (registry.PullHeader).
const PullHeader = registry.PullHeader

// pullToken is node nodeID's registry credential in account.
func (r *Reconciler) pullToken(account, nodeID string) string {
	return registry.PullToken(r.cfg.PullKey, account, nodeID)
}

// accountNodes are the IDs of account's nodes in the store.
func (r *Reconciler) accountNodes(account string) (map[string]bool, error) {
	clusters, err := r.cfg.Store.ListClusters()
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, c := range clusters {
		if c.Account != account {
			continue
		}
		for _, g := range c.Nodegroups {
			for _, n := range g.Nodes {
				ids[n.ID] = true
			}
		}
	}
	return ids, nil
}
