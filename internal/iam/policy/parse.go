package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// IAM's messages for malformed documents.
const (
	msgSyntax          = "Syntax errors in policy."
	msgLegacy          = "The policy failed legacy parsing"
	msgNoStatement     = "Missing required field Statement"
	msgNoEffect        = "Missing required field Effect"
	msgNoPrincipal     = "Missing required field Principal"
	msgNoActions       = "Policy statement must contain actions."
	msgNoResources     = "Policy statement must contain resources."
	msgHasPrincipal    = "Policy document should not specify a principal."
	msgVendor          = "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."
	msgColon           = "Actions/Condition can contain only one colon."
	msgTrustAction     = "AssumeRole policy may only specify STS AssumeRole actions."
	msgDuplicateSid    = "Statement IDs (SID) in a single policy must be unique."
	msgSidAlphaNumeric = "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular expression [0-9A-Za-z]*"
)

// Parse parses and validates an identity-based policy document, as IAM's CreatePolicy,
// CreatePolicyVersion and Put{User,Group,Role}Policy validate it: every statement needs Effect,
// Action or NotAction, and Resource or NotResource, and must not name a Principal. The error, if
// any, is a *MalformedError wrapping ErrMalformed.
func Parse(text string) (*Document, error) { return parse(text, false) }

// ParseTrust parses and validates a role trust policy (a resource-based policy): every statement
// needs Principal or NotPrincipal, must not have Resource or NotResource (IAM: "Has prohibited field
// Resource"), and may only name sts: actions. The error, if any, is a *MalformedError wrapping
// ErrMalformed.
func ParseTrust(text string) (*Document, error) { return parse(text, true) }

func malformed(stmt int, msg, detail string) *MalformedError {
	return &MalformedError{Msg: msg, Statement: stmt, Detail: detail}
}

func parse(text string, trust bool) (*Document, error) {
	root, err := decodeJSON(text)
	if err != nil {
		return nil, malformed(-1, msgSyntax, err.Error())
	}
	obj, ok := root.(*jsonObject)
	if !ok {
		return nil, malformed(-1, msgSyntax, "the document is not a JSON object")
	}
	doc := &Document{Text: text, Trust: trust}
	var stmts any
	for i, k := range obj.keys {
		v := obj.vals[i]
		switch k {
		case "Version":
			s, ok := v.(string)
			if !ok {
				return nil, malformed(-1, msgSyntax, "Version is not a string")
			}
			doc.Version = s
		case "Id":
			s, ok := v.(string)
			if !ok {
				return nil, malformed(-1, msgSyntax, "Id is not a string")
			}
			doc.ID = s
		case "Statement":
			stmts = v
		default:
			return nil, malformed(-1, "Unknown field "+k, "unknown top-level field")
		}
	}
	if doc.Version != "" && doc.Version != Version2012 && doc.Version != Version2008 {
		return nil, malformed(-1, msgLegacy, fmt.Sprintf("unsupported Version %q", doc.Version))
	}

	var list []any
	switch s := stmts.(type) {
	case nil:
		return nil, malformed(-1, msgNoStatement, "")
	case *jsonObject:
		list = []any{s}
	case []any:
		list = s
	default:
		return nil, malformed(-1, msgSyntax, "Statement is neither an object nor an array")
	}
	if len(list) == 0 {
		return nil, malformed(-1, msgNoStatement, "Statement is an empty array")
	}

	sids := make(map[string]bool, len(list))
	doc.Statements = make([]Statement, 0, len(list))
	for i, raw := range list {
		o, ok := raw.(*jsonObject)
		if !ok {
			return nil, malformed(i, msgSyntax, fmt.Sprintf("statement %d is not an object", i))
		}
		st, err := parseStatement(o, i, trust)
		if err != nil {
			return nil, err
		}
		if st.Sid != "" {
			if sids[st.Sid] {
				return nil, malformed(i, msgDuplicateSid, fmt.Sprintf("Sid %q repeats", st.Sid))
			}
			sids[st.Sid] = true
		}
		doc.Statements = append(doc.Statements, st)
	}
	vars := doc.Version == Version2012
	for i := range doc.Statements {
		doc.Statements[i].c = compileStatement(&doc.Statements[i], vars)
	}
	return doc, nil
}

// parseStatement reads and validates statement i.
func parseStatement(o *jsonObject, i int, trust bool) (Statement, error) {
	var st Statement
	var hasEffect, hasAction, hasNotAction, hasResource, hasNotResource bool
	syntax := func(format string, args ...any) error {
		return malformed(i, msgSyntax, fmt.Sprintf("statement %d: ", i)+fmt.Sprintf(format, args...))
	}
	for j, k := range o.keys {
		v := o.vals[j]
		var err error
		switch k {
		case "Sid":
			s, ok := v.(string)
			if !ok {
				return st, syntax("Sid is not a string")
			}
			st.Sid = s
		case "Effect":
			s, ok := v.(string)
			if !ok {
				return st, syntax("Effect is not a string")
			}
			st.Effect, hasEffect = s, true
		case "Action":
			st.Action, err = stringList(v)
			hasAction = true
		case "NotAction":
			st.NotAction, err = stringList(v)
			hasNotAction = true
		case "Resource":
			st.Resource, err = stringList(v)
			hasResource = true
		case "NotResource":
			st.NotResource, err = stringList(v)
			hasNotResource = true
		case "Principal":
			st.Principal, err = parsePrincipal(v, i)
		case "NotPrincipal":
			st.NotPrincipal, err = parsePrincipal(v, i)
		case "Condition":
			st.Condition, err = parseCondition(v, i)
		default:
			return st, malformed(i, "Unknown field "+k, fmt.Sprintf("statement %d: unknown field", i))
		}
		if err != nil {
			var me *MalformedError
			if errors.As(err, &me) {
				return st, err
			}
			return st, syntax("%s: %v", k, err)
		}
	}

	for _, r := range st.Sid {
		if !(r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z') {
			return st, malformed(i, msgSidAlphaNumeric, fmt.Sprintf("Sid %q", st.Sid))
		}
	}

	if !hasEffect {
		return st, malformed(i, msgNoEffect, "")
	}
	if st.Effect != "Allow" && st.Effect != "Deny" {
		return st, malformed(i, "Invalid effect: "+st.Effect, "Effect must be Allow or Deny")
	}

	hasPrincipal, hasNotPrincipal := st.Principal != nil, st.NotPrincipal != nil
	if trust {
		switch {
		case hasPrincipal && hasNotPrincipal:
			return st, malformed(i, "Policy statement must contain only one of Principal or NotPrincipal.", "")
		case !hasPrincipal && !hasNotPrincipal:
			return st, malformed(i, msgNoPrincipal, "")
		}
	} else if hasPrincipal || hasNotPrincipal {
		return st, malformed(i, msgHasPrincipal, "")
	}

	switch {
	case hasAction && hasNotAction:
		return st, malformed(i, "Policy statement must contain only one of Action or NotAction.", "")
	case len(st.Action) == 0 && len(st.NotAction) == 0:
		return st, malformed(i, msgNoActions, "")
	}
	for _, a := range append(st.Action[:len(st.Action):len(st.Action)], st.NotAction...) {
		if strings.Count(a, ":") > 1 {
			return st, malformed(i, msgColon, fmt.Sprintf("action %q", a))
		}
		if !validAction(a) {
			return st, malformed(i, msgVendor, fmt.Sprintf("action %q", a))
		}
	}
	if trust {
		for _, a := range st.Action {
			if a != "*" && !strings.HasPrefix(strings.ToLower(a), "sts:") {
				return st, malformed(i, msgTrustAction, fmt.Sprintf("action %q", a))
			}
		}
	}

	if trust {
		switch {
		case hasResource:
			return st, malformed(i, "Has prohibited field Resource", "")
		case hasNotResource:
			return st, malformed(i, "Has prohibited field NotResource", "")
		}
	} else {
		switch {
		case hasResource && hasNotResource:
			return st, malformed(i, "Policy statement must contain only one of Resource or NotResource.", "")
		case len(st.Resource) == 0 && len(st.NotResource) == 0:
			return st, malformed(i, msgNoResources, "")
		}
		for _, r := range append(st.Resource[:len(st.Resource):len(st.Resource)], st.NotResource...) {
			if r != "*" && !strings.HasPrefix(r, "arn:") {
				return st, malformed(i, fmt.Sprintf("Resource %s must be in ARN format or \"*\".", r), "")
			}
		}
	}
	return st, nil
}

// validAction reports whether a is "*" or "vendor:action-pattern".
func validAction(a string) bool {
	if a == "*" {
		return true
	}
	vendor, name, ok := strings.Cut(a, ":")
	if !ok || vendor == "" || name == "" {
		return false
	}
	for _, r := range vendor {
		if !(r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r == '-' || r == '_' || r == '.' || r == '*' || r == '?') {
			return false
		}
	}
	return !strings.ContainsAny(name, " \t\r\n")
}

// stringList reads a string or an array of strings.
func stringList(v any) ([]string, error) {
	switch t := v.(type) {
	case string:
		return []string{t}, nil
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%s in a list of strings", jsonKind(e))
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s where a string or a list of strings is expected", jsonKind(v))
}

// parsePrincipal reads a Principal or NotPrincipal element: "*" or an object whose keys are AWS,
// Service, Federated or CanonicalUser and whose values are strings or lists of strings.
func parsePrincipal(v any, i int) (map[string][]string, error) {
	invalid := func(what string) error {
		return malformed(i, "Invalid principal in policy: "+what, "")
	}
	switch t := v.(type) {
	case string:
		if t != "*" {
			return nil, invalid(quote(t))
		}
		return map[string][]string{"AWS": {"*"}}, nil
	case *jsonObject:
		if len(t.keys) == 0 {
			return nil, invalid("{}")
		}
		out := make(map[string][]string, len(t.keys))
		for j, k := range t.keys {
			vals, err := stringList(t.vals[j])
			if err != nil {
				return nil, err
			}
			if len(vals) == 0 {
				return nil, invalid(quote(k) + ":[]")
			}
			for _, p := range vals {
				var ok bool
				switch k {
				case "AWS":
					ok = validAWSPrincipal(p)
				case "Service", "Federated", "CanonicalUser":
					ok = p != "" && !strings.ContainsAny(p, " \t\r\n")
				}
				if !ok {
					return nil, invalid(quote(k) + ":" + quote(p))
				}
			}
			out[k] = vals
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s where a principal is expected", jsonKind(v))
}

// validAWSPrincipal accepts "*", an account ID, an IAM or STS ARN, and a unique ID (AIDA…, AROA…),
// which IAM shows in place of a principal that was deleted.
func validAWSPrincipal(p string) bool {
	switch {
	case p == "*", isAccountID(p):
		return true
	case strings.HasPrefix(p, "arn:"):
		parts := strings.SplitN(p, ":", 6)
		return len(parts) == 6 && (parts[2] == "iam" || parts[2] == "sts") && isAccountID(parts[4]) && parts[5] != ""
	case len(p) >= 16 && p[0] == 'A':
		for _, r := range p {
			if !(r >= '0' && r <= '9' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
		return true
	}
	return false
}

func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseCondition reads a Condition element: operator -> key -> value or list of values, where
// values are strings, numbers or booleans.
func parseCondition(v any, i int) (map[string]map[string][]string, error) {
	ops, ok := v.(*jsonObject)
	if !ok {
		return nil, fmt.Errorf("%s where an object is expected", jsonKind(v))
	}
	out := make(map[string]map[string][]string, len(ops.keys))
	for j, op := range ops.keys {
		keys, ok := ops.vals[j].(*jsonObject)
		if !ok {
			return nil, fmt.Errorf("operator %s: %s where an object is expected", op, jsonKind(ops.vals[j]))
		}
		if _, ok := parseOperator(op); !ok {
			return nil, malformed(i, "Invalid Condition type : "+op, "")
		}
		m := make(map[string][]string, len(keys.keys))
		for k, key := range keys.keys {
			if vendor, name, ok := strings.Cut(key, ":"); !ok || vendor == "" || name == "" {
				return nil, malformed(i, msgVendor, fmt.Sprintf("condition key %q", key))
			}
			vals, err := conditionValues(keys.vals[k])
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", op, key, err)
			}
			m[key] = vals
		}
		out[op] = m
	}
	return out, nil
}

func conditionValues(v any) ([]string, error) {
	if list, ok := v.([]any); ok {
		out := make([]string, 0, len(list))
		for _, e := range list {
			s, err := scalar(e)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	s, err := scalar(v)
	if err != nil {
		return nil, err
	}
	return []string{s}, nil
}

func scalar(v any) (string, error) {
	switch t := v.(type) {
	case string:
		return t, nil
	case json.Number:
		return t.String(), nil
	case bool:
		if t {
			return "true", nil
		}
		return "false", nil
	}
	return "", fmt.Errorf("%s where a condition value is expected", jsonKind(v))
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// jsonObject is a JSON object that keeps its keys in order.
type jsonObject struct {
	keys []string
	vals []any
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case *jsonObject:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// decodeJSON decodes one JSON value into string, json.Number, bool, nil, []any and *jsonObject
// values, refusing duplicate keys and trailing data.
func decodeJSON(text string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("data after the top-level value")
		}
		return nil, err
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, json.Number, bool or nil
	}
	switch d {
	case '{':
		o := &jsonObject{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k, _ := kt.(string)
			for _, seen := range o.keys {
				if seen == k {
					return nil, fmt.Errorf("duplicate key %q", k)
				}
			}
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			o.keys = append(o.keys, k)
			o.vals = append(o.vals, v)
		}
		if _, err := dec.Token(); err != nil { // '}'
			return nil, err
		}
		return o, nil
	case '[':
		a := []any{}
		for dec.More() {
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		if _, err := dec.Token(); err != nil { // ']'
			return nil, err
		}
		return a, nil
	}
	return nil, fmt.Errorf("unexpected %q", d)
}
