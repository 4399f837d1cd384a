package policy

import (
	"strings"
	"unicode/utf8"
)

// compiled is the form of a Statement that evaluation uses; it is built once, by Parse.
type compiled struct {
	effectOK bool // Effect is Allow or Deny
	deny     bool

	actions   actionSet
	notAction bool

	hasResource bool
	resources   []pattern
	notResource bool

	hasPrincipal bool
	principals   principalSet
	notPrincipal bool

	conds []condition
}

// compileStatement builds the evaluation form of st. vars says whether policy variables are
// substituted (Version 2012-10-17). It never fails: values that cannot match anything (a malformed
// CIDR, a number that does not parse, …) are kept and simply never match.
func compileStatement(st *Statement, vars bool) *compiled {
	c := &compiled{
		effectOK: st.Effect == "Allow" || st.Effect == "Deny",
		deny:     st.Effect == "Deny",
	}
	if st.NotAction != nil && st.Action == nil {
		c.actions, c.notAction = newActionSet(st.NotAction), true
	} else {
		c.actions = newActionSet(st.Action)
	}
	switch {
	case st.Resource != nil:
		c.hasResource, c.resources = true, compilePatterns(st.Resource, vars)
	case st.NotResource != nil:
		c.hasResource, c.resources, c.notResource = true, compilePatterns(st.NotResource, vars), true
	}
	switch {
	case st.Principal != nil:
		c.hasPrincipal, c.principals = true, newPrincipalSet(st.Principal)
	case st.NotPrincipal != nil:
		c.hasPrincipal, c.principals, c.notPrincipal = true, newPrincipalSet(st.NotPrincipal), true
	}
	c.conds = compileConditions(st.Condition, vars)
	return c
}

// actionSet matches action names case-insensitively. Patterns are kept lower-cased, wildcard-free
// ones in a set and the others grouped by their service prefix, so that a statement listing
// thousands of actions (ReadOnlyAccess) is matched with a map lookup and a handful of globs.
type actionSet struct {
	any       bool                // holds "*"
	exact     map[string]struct{} // "ec2:describeinstances"
	byService map[string][]string // "ec2" -> {"describe*", …}: patterns of the name part
	other     []string            // whole patterns whose service part has wildcards
}

func newActionSet(list []string) actionSet {
	var s actionSet
	for _, a := range list {
		a = strings.ToLower(a)
		if a == "*" {
			s.any = true
			continue
		}
		svc, name, _ := strings.Cut(a, ":")
		switch {
		case strings.ContainsAny(svc, "*?"):
			s.other = append(s.other, a)
		case !strings.ContainsAny(name, "*?"):
			if s.exact == nil {
				s.exact = make(map[string]struct{})
			}
			s.exact[a] = struct{}{}
		default:
			if s.byService == nil {
				s.byService = make(map[string][]string)
			}
			s.byService[svc] = append(s.byService[svc], name)
		}
	}
	return s
}

// match reports whether the lower-cased action matches one of the patterns.
func (s *actionSet) match(action string) bool {
	if s.any {
		return true
	}
	if _, ok := s.exact[action]; ok {
		return true
	}
	if svc, name, ok := strings.Cut(action, ":"); ok {
		for _, p := range s.byService[svc] {
			if glob(p, name, false) {
				return true
			}
		}
	}
	for _, p := range s.other {
		if glob(p, action, false) {
			return true
		}
	}
	return false
}

// pattern is a Resource, NotResource or condition value that may hold policy variables.
type pattern struct {
	text string     // the value as written; a glob pattern for resources
	tmpl []tmplPart // non-nil when the value holds policy variables to substitute
}

func compilePatterns(list []string, vars bool) []pattern {
	out := make([]pattern, len(list))
	for i, s := range list {
		out[i] = compilePattern(s, vars)
	}
	return out
}

func compilePattern(s string, vars bool) pattern {
	p := pattern{text: s}
	if vars {
		p.tmpl = parseTemplate(s)
	}
	return p
}

// globMatch reports whether value matches the pattern as a glob, after substituting its policy
// variables. A variable without a value makes the pattern match nothing.
func (p *pattern) globMatch(value string, r *evalCtx) bool {
	if p.tmpl == nil {
		return p.text == "*" || glob(p.text, value, false)
	}
	expanded, ok := expand(p.tmpl, r, true)
	return ok && glob(expanded, value, true)
}

// glob reports whether s matches the pattern p, in which * matches any run of characters
// (including none) and ? exactly one character. Matching is case-sensitive; callers lower-case
// both sides for a case-insensitive match. With esc, a backslash makes the next byte of p literal
// (see expand).
func glob(p, s string, esc bool) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			switch c := p[pi]; {
			case c == '*':
				starP, starS = pi, si
				pi++
				continue
			case c == '?':
				_, n := utf8.DecodeRuneInString(s[si:])
				pi++
				si += n
				continue
			case c == '\\' && esc && pi+1 < len(p):
				if p[pi+1] == s[si] {
					pi += 2
					si++
					continue
				}
			case c == s[si]:
				pi++
				si++
				continue
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last * absorb one more character and retry from there.
		_, n := utf8.DecodeRuneInString(s[starS:])
		starS += n
		pi, si = starP+1, starS
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
