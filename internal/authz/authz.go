// Package authz decides whether a verified caller may make a request, as
// AWS IAM does: it names the IAM action(s) and resource ARN(s) each
// operation of each service needs (Describe), gathers the global and
// service condition keys, and evaluates the caller's identity-based
// policies (Authorize). The account root (the admin user `skiff env`
// prints) may do everything; sts:GetCallerIdentity needs no permission;
// sts:AssumeRole's identity decision is handed to the trust-policy check
// (IdentityDecision) instead of being enforced here.
package authz

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"skiff.dev/skiff/internal/iam"
	"skiff.dev/skiff/internal/iam/policy"
)

// Resolver finds an existing resource of an account: its ARN and tags. kind
// is "cluster" (name), "nodegroup" (cluster, name), "addon" (cluster,
// name), "access-entry" (cluster, principal ARN), "repository" (name) or
// "key" (a KMS key ID, key ARN, alias name or alias ARN).
type Resolver func(account, kind string, names ...string) (arn string, tags map[string]string, ok bool)

// Authorizer evaluates requests.
type Authorizer struct {
	IAM     *iam.Service
	Region  string
	Resolve Resolver         // optional
	Now     func() time.Time // default time.Now

	once sync.Once
	mux  *http.ServeMux
}

// Check is one permission a request needs: an action on a resource, with
// the condition keys of the request and the resource.
type Check struct {
	Action   string
	Resource string
	Context  map[string][]string
}

// Operation is a request as IAM sees it.
type Operation struct {
	Service string // eks, iam, sts, ec2, ecr, kms, skiff
	Name    string // the API operation, e.g. DescribeCluster
	Checks  []Check
}

// Denied is a refused check, with AWS's message.
type Denied struct {
	Caller   string
	Check    Check
	Explicit bool
}

func (d *Denied) Error() string {
	why := "because no identity-based policy allows the " + d.Check.Action + " action"
	if d.Explicit {
		why = "with an explicit deny in an identity-based policy"
	}
	return fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %s %s", d.Caller, d.Check.Action, d.Check.Resource, why)
}

type decisionKey struct{}

// IdentityDecision is what the caller's identity-based policies said about
// a request's first check (Allow for the account root), for handlers whose
// own logic completes the decision (sts:AssumeRole and trust policies).
func IdentityDecision(ctx context.Context) policy.Decision {
	d, _ := ctx.Value(decisionKey{}).(policy.Decision)
	return d
}

// GlobalContext returns the global condition keys of a request by caller.
func (a *Authorizer) GlobalContext(r *http.Request, caller *iam.Principal, region string) map[string][]string {
	now := time.Now()
	if a.Now != nil {
		now = a.Now()
	}
	ctx := map[string][]string{
		"aws:CurrentTime":      {now.UTC().Format(time.RFC3339)},
		"aws:EpochTime":        {strconv.FormatInt(now.Unix(), 10)},
		"aws:SecureTransport":  {strconv.FormatBool(r.TLS != nil)},
		"aws:PrincipalAccount": {caller.Account},
		"aws:userid":           {caller.UserID},
	}
	if region != "" {
		ctx["aws:RequestedRegion"] = []string{region}
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		ctx["aws:SourceIp"] = []string{host}
	}
	switch {
	case caller.Role != "":
		ctx["aws:PrincipalArn"] = []string{caller.RoleArn}
		ctx["aws:PrincipalType"] = []string{"AssumedRole"}
	case caller.Root:
		ctx["aws:PrincipalArn"] = []string{caller.Arn}
		ctx["aws:PrincipalType"] = []string{"Account"}
		ctx["aws:username"] = []string{caller.User}
	default:
		ctx["aws:PrincipalArn"] = []string{caller.Arn}
		ctx["aws:PrincipalType"] = []string{"User"}
		ctx["aws:username"] = []string{caller.User}
	}
	return ctx
}

// Authorize evaluates op's checks for caller. It returns the context to
// serve the request with (carrying the identity decision), or a *Denied.
func (a *Authorizer) Authorize(r *http.Request, caller *iam.Principal, op Operation, region string) (context.Context, error) {
	if len(op.Checks) == 0 {
		return r.Context(), nil
	}
	if caller.Root {
		return context.WithValue(r.Context(), decisionKey{}, policy.Allow), nil
	}
	policies, err := a.IAM.PoliciesOf(caller)
	if err != nil {
		return nil, fmt.Errorf("read the caller's policies: %w", err)
	}
	global := a.GlobalContext(r, caller, region)
	var first policy.Decision
	for i, c := range op.Checks {
		req := policy.Request{Principal: policy.Principal{Arn: caller.Arn, Account: caller.Account, RoleArn: caller.RoleArn},
			Action: c.Action, Resource: c.Resource, Context: merge(global, c.Context)}
		d := policy.Evaluate(policies, req).Decision
		if i == 0 {
			first = d
			if op.Service == "sts" && op.Name == "AssumeRole" {
				continue // the trust policy completes this decision
			}
		}
		if d != policy.Allow {
			return nil, &Denied{Caller: caller.Arn, Check: c, Explicit: d == policy.ExplicitDeny}
		}
	}
	return context.WithValue(r.Context(), decisionKey{}, first), nil
}

func merge(a, b map[string][]string) map[string][]string {
	if len(b) == 0 {
		return a
	}
	out := make(map[string][]string, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// tagContext returns the condition keys of tags a request sets.
func tagContext(tags map[string]string) map[string][]string {
	if len(tags) == 0 {
		return nil
	}
	ctx := map[string][]string{}
	var keys []string
	for k, v := range tags {
		ctx["aws:RequestTag/"+k] = []string{v}
		keys = append(keys, k)
	}
	ctx["aws:TagKeys"] = keys
	return ctx
}

// resourceTags returns the aws:ResourceTag/… keys of a resource's tags.
func resourceTags(tags map[string]string) map[string][]string {
	ctx := map[string][]string{}
	for k, v := range tags {
		ctx["aws:ResourceTag/"+k] = []string{v}
	}
	return ctx
}

func (a *Authorizer) resolve(account, kind string, names ...string) (string, map[string]string, bool) {
	if a.Resolve == nil {
		return "", nil, false
	}
	for _, n := range names {
		if n == "" {
			return "", nil, false
		}
	}
	return a.Resolve(account, kind, names...)
}

// Registry decides a registry request (an ECR action on a repository of
// account) for the principal of the access key its password was minted
// for: a registry.Auth Authorize function. A deleted key or an ended
// session revokes the password.
func (a *Authorizer) Registry(r *http.Request, account, accessKeyID, action, name string) error {
	p, err := a.IAM.Principal(accessKeyID)
	if err != nil || p.Account != account {
		return fmt.Errorf("the access key this password was issued to is no longer valid: get a new password with `aws ecr get-login-password`")
	}
	c := Check{Action: "ecr:" + action, Resource: "arn:aws:ecr:" + a.Region + ":" + account + ":repository/" + name}
	if _, tags, ok := a.resolve(account, "repository", name); ok {
		c.Context = resourceTags(tags)
	}
	_, err = a.Authorize(r, p, Operation{Service: "ecr", Name: action, Checks: []Check{c}}, a.Region)
	return err
}
