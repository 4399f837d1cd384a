// Package policy parses IAM policy documents and evaluates requests against them as AWS IAM does.
//
// Parse validates an identity-based policy (what CreatePolicy, PutUserPolicy, PutRolePolicy, …
// accept) and ParseTrust a role trust policy (CreateRole's AssumeRolePolicyDocument). Both refuse a
// bad document with an error that wraps ErrMalformed and whose Error() is IAM's message, ready to be
// returned as the message of a MalformedPolicyDocument error.
//
// Evaluate applies identity-based policies to a Request, EvaluateResource a resource-based policy (a
// trust policy). The evaluation follows the IAM policy evaluation logic for a single account: an
// explicit Deny in any matching statement wins, otherwise an Allow in any matching statement allows,
// otherwise the request is implicitly denied. Permission boundaries, SCPs and session policies are
// left to the caller, who can combine several Results.
//
// Matching rules:
//
//   - Action / NotAction: case-insensitive glob with * and ?.
//   - Resource / NotResource: case-sensitive glob with * and ? over the whole ARN ("*" matches
//     anything). With Version "2012-10-17", policy variables (${aws:username}, ${aws:PrincipalTag/x},
//     any ${key} of the request context, ${*} ${?} ${$}, and ${key, 'default'}) are substituted,
//     the substituted text matching literally (a key with several values gives its first one); a
//     variable that has no value and no default makes that one Resource value match nothing.
//     Without that Version (2008-10-17 or none) the text is taken as written.
//   - Principal / NotPrincipal (resource-based policies only): see EvaluateResource.
//   - Condition: see condition.go; operators are ANDed, keys within an operator are ANDed, the
//     values of one key are ORed. A key absent from the request makes a positive operator false and
//     a negated one (StringNotEquals, NotIpAddress, ArnNotLike, …) true, as the AWS documentation of
//     condition operators states; ...IfExists is true for an absent key, ForAnyValue false and
//     ForAllValues true.
package policy

import "errors"

// ErrMalformed is wrapped by every error Parse and ParseTrust return; IAM reports such errors with
// the code MalformedPolicyDocument.
var ErrMalformed = errors.New("MalformedPolicyDocument")

// Policy language versions.
const (
	Version2012 = "2012-10-17"
	Version2008 = "2008-10-17"
)

// MalformedError is the error Parse and ParseTrust return. Error() is IAM's message only (for
// instance "Syntax errors in policy."), so that it can be sent back verbatim; Detail says more for
// logs.
type MalformedError struct {
	Msg       string // IAM's message
	Statement int    // index of the offending statement, or -1 for the document itself
	Detail    string // extra context for logs, may be empty
}

func (e *MalformedError) Error() string { return e.Msg }

// Unwrap makes errors.Is(err, ErrMalformed) hold.
func (e *MalformedError) Unwrap() error { return ErrMalformed }

// Document is a parsed policy document.
type Document struct {
	Version    string // "2012-10-17", "2008-10-17", or "" when the document has none (means 2008-10-17)
	ID         string
	Statements []Statement
	Text       string // the text the document was parsed from
	Trust      bool   // parsed by ParseTrust
}

// Statement is one statement of a Document. Fields that may hold a string or a list of strings in
// the JSON hold a list here. A Principal of "*" is represented as {"AWS": ["*"]}, which IAM treats
// as the same. Condition maps an operator ("StringEquals", "ForAnyValue:StringLike", …) to the
// condition keys it constrains and their values (numbers and booleans in the JSON become their
// text).
type Statement struct {
	Sid          string
	Effect       string // "Allow" or "Deny"
	Principal    map[string][]string
	NotPrincipal map[string][]string
	Action       []string
	NotAction    []string
	Resource     []string
	NotResource  []string
	Condition    map[string]map[string][]string

	// c is the form used by evaluation, built by Parse. A Statement built by hand has none and is
	// compiled on every evaluation.
	c *compiled
}

// Principal is the caller of a request.
type Principal struct {
	Arn     string // arn:aws:iam::123456789012:user/path/name, or arn:aws:sts::123456789012:assumed-role/ROLE/SESSION
	Account string // 12 digits
	RoleArn string // for an assumed-role session: arn:aws:iam::ACCOUNT:role/PATH/ROLE (trust policies may name it)
	Service string // e.g. "eks.amazonaws.com" when an AWS service is the caller (then Arn/Account may be empty)
}

// Request is what is evaluated against policies.
//
// Context holds the condition keys of the request and their values; lookups are case-insensitive.
// When the context lacks them, the keys aws:PrincipalArn (the role ARN for an assumed-role
// session, as AWS does), aws:PrincipalAccount, aws:PrincipalServiceName and, for an IAM user,
// aws:username are derived from Principal. aws:CurrentTime and aws:EpochTime are never read from the
// clock: the caller provides them.
type Request struct {
	Principal Principal
	Action    string // "eks:DeleteCluster"; matched case-insensitively
	Resource  string // an ARN, or "*"
	Context   map[string][]string
}

// Decision is the outcome of an evaluation.
type Decision int

// Decisions, from weakest to strongest.
const (
	ImplicitDeny Decision = iota
	Allow
	ExplicitDeny
)

// String returns the EvalDecision string of iam simulate-principal-policy.
func (d Decision) String() string {
	switch d {
	case Allow:
		return "allowed"
	case ExplicitDeny:
		return "explicitDeny"
	default:
		return "implicitDeny"
	}
}

// Named is a policy with the identifier simulate-principal-policy reports as SourcePolicyId (e.g. a
// policy ARN or "user/NAME/inline/POLICY").
type Named struct {
	ID  string
	Doc *Document
}

// Match names a statement that took part in a decision. Statement is the 0-based index of the
// statement in its document.
type Match struct {
	PolicyID, Sid string
	Statement     int
}

// Result is the outcome of an evaluation and the statements that produced it: the matching Deny
// statements if denied, the matching Allow statements if allowed, none for an implicit deny.
type Result struct {
	Decision Decision
	Matched  []Match
}
