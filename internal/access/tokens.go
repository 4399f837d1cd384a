package access

import (
	"context"
	"fmt"
	"time"

	"skiff.dev/skiff/internal/authn"
)

// Tokens identifies the callers of `aws eks get-token` tokens.
type Tokens struct {
	Verifier *authn.Verifier
	// Principal returns who owns an access key (user or live session).
	Principal func(accessKeyID string) (Caller, error)
	Now       func() time.Time // default time.Now
}

// Identify verifies token for the cluster named cluster and returns its caller.
func (t *Tokens) Identify(ctx context.Context, token, cluster string) (Caller, error) {
	now := time.Now()
	if t.Now != nil {
		now = t.Now()
	}
	id, err := t.Verifier.Verify(ctx, token, cluster, now)
	if err != nil {
		return Caller{}, err
	}
	c, err := t.Principal(id.AccessKeyID)
	if err != nil {
		return Caller{}, fmt.Errorf("%w: access key %s: %v", authn.ErrSignature, id.AccessKeyID, err)
	}
	c.AccessKeyID = id.AccessKeyID
	return c, nil
}
