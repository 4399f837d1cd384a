package policy

import "strings"

// Evaluate evaluates identity-based policies: any matching Deny statement gives ExplicitDeny, else
// any matching Allow statement gives Allow, else ImplicitDeny. A statement matches when its Action
// (or NotAction), Resource (or NotResource) and Condition all match the request; Principal elements
// are not allowed in identity-based policies and are ignored. Result.Matched lists every statement
// behind the decision, in policy order.
func Evaluate(policies []Named, req Request) Result {
	return evaluate(policies, req, false)
}

// EvaluateResource evaluates a resource-based policy, such as a role trust policy. A statement
// applies only if its Principal matches req.Principal (or its NotPrincipal does not; a statement
// with neither applies to nobody), and then as in Evaluate its Action, Resource (a statement
// without Resource or NotResource, as in a trust policy, applies to any resource) and Condition
// must match.
func EvaluateResource(doc Named, req Request) Result {
	return evaluate([]Named{doc}, req, true)
}

// evaluate is Evaluate, or with principals EvaluateResource's principal matching first.
func evaluate(policies []Named, req Request, principals bool) Result {
	r := newEvalCtx(&req)
	var allows, denies []Match
	for _, p := range policies {
		if p.Doc == nil {
			continue
		}
		vars := p.Doc.Version == Version2012
		for i := range p.Doc.Statements {
			st := &p.Doc.Statements[i]
			c := st.c
			if c == nil {
				c = compileStatement(st, vars)
			}
			if principals && (!c.hasPrincipal || c.principals.matches(&req.Principal) == c.notPrincipal) {
				continue
			}
			if !c.matches(&r) {
				continue
			}
			m := Match{PolicyID: p.ID, Sid: st.Sid, Statement: i}
			if c.deny {
				denies = append(denies, m)
			} else {
				allows = append(allows, m)
			}
		}
	}
	switch {
	case len(denies) > 0:
		return Result{Decision: ExplicitDeny, Matched: denies}
	case len(allows) > 0:
		return Result{Decision: Allow, Matched: allows}
	}
	return Result{Decision: ImplicitDeny}
}

// matches reports whether the statement's action, resource and conditions match the request.
func (c *compiled) matches(r *evalCtx) bool {
	if !c.effectOK || r.action == "" {
		return false
	}
	if c.actions.match(r.action) == c.notAction {
		return false
	}
	if c.hasResource {
		found := false
		for i := range c.resources {
			if c.resources[i].globMatch(r.req.Resource, r) {
				found = true
				break
			}
		}
		if found == c.notResource {
			return false
		}
	}
	for i := range c.conds {
		if !c.conds[i].holds(r) {
			return false
		}
	}
	return true
}

// evalCtx is a request prepared for evaluation.
type evalCtx struct {
	req    *Request
	action string // lower-cased
}

func newEvalCtx(req *Request) evalCtx {
	return evalCtx{req: req, action: strings.ToLower(req.Action)}
}

// lookup returns the values of a context key, ignoring case, falling back to the keys derived
// from the principal (see Request).
func (r *evalCtx) lookup(key string) ([]string, bool) {
	if v, ok := r.req.Context[key]; ok {
		return v, true
	}
	for k, v := range r.req.Context {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	p := &r.req.Principal
	var v string
	switch {
	case strings.EqualFold(key, "aws:PrincipalArn"):
		v = p.RoleArn
		if v == "" {
			v = p.Arn
		}
	case strings.EqualFold(key, "aws:PrincipalAccount"):
		v = p.Account
	case strings.EqualFold(key, "aws:PrincipalServiceName"):
		v = p.Service
	case strings.EqualFold(key, "aws:username"):
		v = userName(p.Arn)
	}
	if v == "" {
		return nil, false
	}
	return []string{v}, true
}

// userName returns the name of the IAM user of arn:PARTITION:iam::ACCOUNT:user/PATH/NAME.
func userName(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[2] != "iam" || !strings.HasPrefix(parts[5], "user/") {
		return ""
	}
	res := parts[5]
	return res[strings.LastIndexByte(res, '/')+1:]
}
