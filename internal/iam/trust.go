package iam

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strings"
	"time"

	"skiff.dev/skiff/internal/iam/policy"
	"skiff.dev/skiff/internal/store"
)

// ChainedSessionLimit is the longest session of a role assumed with
// another role's session, as on AWS.
const ChainedSessionLimit = 3600

var sessionNameRE = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)

func trustPolicy(doc string) (*policy.Document, error) {
	d, err := policy.ParseTrust(doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedPolicy, err)
	}
	return d, nil
}

// AssumeRequest is an sts:AssumeRole call.
type AssumeRequest struct {
	RoleArn     string
	SessionName string
	Duration    int // seconds; 0 means 3600
	ExternalID  string
	// Identity is what the caller's identity-based policies say about
	// sts:AssumeRole on the role (Allow for the account root).
	Identity policy.Decision
	// Context holds the request's global condition keys (aws:SourceIp,
	// aws:CurrentTime, …).
	Context map[string][]string
}

// AssumeRole issues temporary credentials for a role, if its trust policy
// lets the caller in. As on AWS: a trust policy that names the caller (its
// user, role or session ARN) is enough within the account, unless an
// identity policy denies; one that trusts the caller's account (its root)
// also needs an identity policy that allows sts:AssumeRole; a caller from
// another account always needs both. Services (ec2.amazonaws.com for the
// nodes) need only the trust policy.
func (s *Service) AssumeRole(caller *Principal, req AssumeRequest) (*Session, *Role, error) {
	if !sessionNameRE.MatchString(req.SessionName) {
		return nil, nil, fmt.Errorf("%w: RoleSessionName must be 2-64 characters of letters, digits and +=,.@_-", ErrInvalid)
	}
	who := caller.Arn
	if caller.Service != "" {
		who = caller.Service
	}
	denied := fmt.Errorf("%w: User: %s is not authorized to perform: sts:AssumeRole on resource: %s", ErrAccessDenied, who, req.RoleArn)
	account, ok := roleAccount(req.RoleArn)
	if !ok {
		return nil, nil, fmt.Errorf("%w: RoleArn %q is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)", ErrInvalid, req.RoleArn)
	}
	role, err := s.RoleByArn(account, req.RoleArn)
	if err != nil {
		if errors.Is(err, ErrNoSuchEntity) {
			return nil, nil, denied
		}
		return nil, nil, err
	}
	trust, err := s.parsedTrust(role.AssumeRolePolicy)
	if err != nil {
		return nil, nil, err
	}
	ctx := maps.Clone(req.Context)
	if ctx == nil {
		ctx = map[string][]string{}
	}
	ctx["sts:RoleSessionName"] = []string{req.SessionName}
	if req.ExternalID != "" {
		ctx["sts:ExternalId"] = []string{req.ExternalID}
	}
	if caller.Arn != "" {
		ctx["aws:PrincipalArn"] = []string{principalArn(caller)}
		ctx["aws:PrincipalAccount"] = []string{caller.Account}
	}
	if caller.Service != "" {
		ctx["aws:PrincipalServiceName"] = []string{caller.Service}
	}
	who2 := policy.Principal{Arn: caller.Arn, Account: caller.Account, RoleArn: caller.RoleArn, Service: caller.Service}
	ask := policy.Request{Principal: who2, Action: "sts:AssumeRole", Resource: role.Arn(), Context: ctx}
	if policy.EvaluateResource(policy.Named{ID: "trust", Doc: trust}, ask).Decision != policy.Allow {
		return nil, nil, denied
	}
	switch {
	case caller.Service != "":
	case req.Identity == policy.ExplicitDeny:
		return nil, nil, denied
	case req.Identity == policy.Allow:
	case caller.Account == account:
		// Without an identity policy, the trust policy must name the
		// caller itself rather than its account.
		ask.Principal.Account = ""
		if policy.EvaluateResource(policy.Named{ID: "trust", Doc: trust}, ask).Decision != policy.Allow {
			return nil, nil, denied
		}
	default:
		return nil, nil, denied
	}
	duration := req.Duration
	if duration == 0 {
		duration = 3600
	}
	if caller.Role != "" && duration > ChainedSessionLimit {
		return nil, nil, fmt.Errorf("%w: The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.", ErrInvalid)
	}
	if duration < 900 || duration > role.MaxSessionDuration {
		return nil, nil, fmt.Errorf("%w: The requested DurationSeconds exceeds the MaxSessionDuration set for this role (%d); it must be 900 or more.", ErrInvalid, role.MaxSessionDuration)
	}
	sess := &Session{AccessKeyID: "ASIA" + randomID(16), Secret: randomSecret(), Token: randomToken(),
		Account: role.Account, Role: role.Name, RoleID: role.ID, Name: req.SessionName, Source: who,
		Expiration: s.now().Add(time.Duration(duration) * time.Second).UTC().Truncate(time.Second)}
	err = s.update(func(tx *store.Tx) error {
		// Drop sessions that expired more than an hour ago.
		var stale []string
		tx.Scan("session/", func(k string, data []byte) error {
			var old Session
			if json.Unmarshal(data, &old) == nil && s.now().Sub(old.Expiration) > time.Hour {
				stale = append(stale, k)
			}
			return nil
		})
		for _, k := range stale {
			tx.Delete(k)
		}
		return tx.Put("session/"+sess.AccessKeyID, sess)
	})
	if err != nil {
		return nil, nil, err
	}
	return sess, role, nil
}

// principalArn is aws:PrincipalArn: a session's role ARN, else the ARN.
func principalArn(p *Principal) string {
	if p.RoleArn != "" {
		return p.RoleArn
	}
	return p.Arn
}

func roleAccount(arn string) (string, bool) {
	rest, ok := strings.CutPrefix(arn, "arn:aws:iam::")
	if !ok {
		return "", false
	}
	account, rest, ok := strings.Cut(rest, ":role/")
	return account, ok && len(account) == 12 && rest != ""
}

func (s *Service) parsedTrust(doc string) (*policy.Document, error) {
	key := "trust\x00" + doc
	if d, ok := s.docs.Load(key); ok {
		return d.(*policy.Document), nil
	}
	d, err := trustPolicy(doc)
	if err != nil {
		return nil, err
	}
	s.docs.Store(key, d)
	return d, nil
}

// UpdateAssumeRolePolicy replaces a role's trust policy.
func (s *Service) UpdateAssumeRolePolicy(account, name, doc string) error {
	if _, err := trustPolicy(doc); err != nil {
		return err
	}
	return s.update(func(tx *store.Tx) error {
		var r Role
		if err := tx.Get(roleKey(account, name), &r); err != nil {
			return fmt.Errorf("%w: The role with name %s cannot be found.", ErrNoSuchEntity, name)
		}
		r.AssumeRolePolicy = doc
		return tx.Put(roleKey(account, name), &r)
	})
}
