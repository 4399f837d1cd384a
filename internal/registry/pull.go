package registry

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
// pulls from its VPC's registry: ECR serves an account's images only to
// its principals, and a node pulls as its instance. The MAC binds the
// node to its account (PullToken); the node must still be one of the
// account's.
const PullHeader = "X-Skiff-Node"

// PullToken is node nodeID's registry credential in account, under key.
func PullToken(key []byte, account, nodeID string) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "pull\x00%s\x00%s", account, nodeID)
	return nodeID + "." + hex.EncodeToString(m.Sum(nil))
}

// NodePull checks that a request comes with the credentials (under key)
// of a node of account that isNode knows.
func NodePull(key []byte, account string, isNode func(id string) (bool, error)) func(*http.Request) error {
	return func(req *http.Request) error {
		v := req.Header.Get(PullHeader)
		id, _, ok := strings.Cut(v, ".")
		if !ok || len(key) == 0 || !hmac.Equal([]byte(v), []byte(PullToken(key, account, id))) {
			return errors.New("no valid node credentials (" + PullHeader + ")")
		}
		known, err := isNode(id)
		if err != nil {
			return err
		}
		if !known {
			return errors.New("node " + id + " is not an instance of this account")
		}
		return nil
	}
}
