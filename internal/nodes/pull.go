package nodes

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// PullHeader carries a node's registry credentials ("NODEID.MAC") on its
// pulls from the VPC's registry: ECR serves an account's images only to
// its principals, and a node pulls as its instance. The MAC binds the
// node to its account (pullToken); the node must still be in the store.
const PullHeader = "X-Skiff-Node"

// pullToken is node nodeID's registry credential in account.
func (r *Reconciler) pullToken(account, nodeID string) string {
	m := hmac.New(sha256.New, r.cfg.PullKey)
	fmt.Fprintf(m, "pull\x00%s\x00%s", account, nodeID)
	return nodeID + "." + hex.EncodeToString(m.Sum(nil))
}

// nodePull checks that a request to the registry of account's VPCs comes
// with the credentials of one of account's current nodes.
func (r *Reconciler) nodePull(account string) func(*http.Request) error {
	return func(req *http.Request) error {
		v := req.Header.Get(PullHeader)
		id, _, ok := strings.Cut(v, ".")
		if !ok || len(r.cfg.PullKey) == 0 || !hmac.Equal([]byte(v), []byte(r.pullToken(account, id))) {
			return errors.New("no valid node credentials (" + PullHeader + ")")
		}
		clusters, err := r.cfg.Store.ListClusters()
		if err != nil {
			return err
		}
		for _, c := range clusters {
			for _, g := range c.Nodegroups {
				if c.Account == account && g.Node(id) != nil {
					return nil
				}
			}
		}
		return errors.New("node " + id + " is not an instance of this account")
	}
}
