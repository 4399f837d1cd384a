package policy

import "strings"

// tmplPart is a piece of a value holding policy variables: literal text, or a ${...} reference.
type tmplPart struct {
	lit    string // literal text, or the character of ${*} ${?} ${$}
	escape bool   // lit comes from ${*}, ${?} or ${$}: a literal character, never a wildcard
	key    string // variable name, when the part is a variable
	def    string // default value of ${key, 'default'}
	hasDef bool
}

// parseTemplate splits s into literal text and policy variables. It returns nil when s holds no
// variable. "${" without a closing "}" is literal text.
func parseTemplate(s string) []tmplPart {
	if !strings.Contains(s, "${") {
		return nil
	}
	var parts []tmplPart
	lit := 0 // start of pending literal text
	for i := 0; i+1 < len(s); i++ {
		if s[i] != '$' || s[i+1] != '{' {
			continue
		}
		end, ok := closingBrace(s, i+2)
		if !ok {
			break
		}
		part, ok := parseVariable(s[i+2 : end])
		if !ok {
			continue
		}
		if lit < i {
			parts = append(parts, tmplPart{lit: s[lit:i]})
		}
		parts = append(parts, part)
		lit = end + 1
		i = end
	}
	if parts == nil {
		return nil
	}
	if lit < len(s) {
		parts = append(parts, tmplPart{lit: s[lit:]})
	}
	return parts
}

// closingBrace finds the "}" that closes a variable starting at from, skipping a quoted default.
func closingBrace(s string, from int) (int, bool) {
	quoted := false
	for j := from; j < len(s); j++ {
		switch s[j] {
		case '\'':
			quoted = !quoted
		case '}':
			if !quoted {
				return j, true
			}
		}
	}
	return 0, false
}

// parseVariable reads the inside of ${...}: "*", "?", "$", "key" or "key, 'default'".
func parseVariable(in string) (tmplPart, bool) {
	switch in {
	case "*", "?", "$":
		return tmplPart{lit: in, escape: true}, true
	}
	key, def, hasDef := strings.Cut(in, ",")
	key = strings.TrimSpace(key)
	if key == "" || strings.ContainsAny(key, " \t'") {
		return tmplPart{}, false
	}
	p := tmplPart{key: key}
	if hasDef {
		def = strings.TrimSpace(def)
		if len(def) < 2 || def[0] != '\'' || def[len(def)-1] != '\'' {
			return tmplPart{}, false
		}
		p.def, p.hasDef = def[1:len(def)-1], true
	}
	return p, true
}

// expand substitutes the variables of a template from the request. For a glob (forGlob), the
// substituted values and the ${*} ${?} ${$} characters are escaped with a backslash so that they
// match literally, and so are the backslashes of the literal text; glob must then be called with
// esc set. It reports false when a variable has no value and no default.
func expand(parts []tmplPart, r *evalCtx, forGlob bool) (string, bool) {
	var b strings.Builder
	b.Grow(64)
	for _, p := range parts {
		switch {
		case p.key == "" && !p.escape:
			if forGlob {
				writeEscaped(&b, p.lit, "\\")
			} else {
				b.WriteString(p.lit)
			}
			continue
		case p.escape:
			if forGlob {
				writeEscaped(&b, p.lit, "\\*?")
			} else {
				b.WriteString(p.lit)
			}
			continue
		}
		v := p.def
		if vals, ok := r.lookup(p.key); ok && len(vals) > 0 {
			v = vals[0]
		} else if !p.hasDef {
			return "", false
		}
		if forGlob {
			writeEscaped(&b, v, "\\*?")
		} else {
			b.WriteString(v)
		}
	}
	return b.String(), true
}

// writeEscaped writes s with a backslash before each byte listed in special.
func writeEscaped(b *strings.Builder, s, special string) {
	for {
		i := strings.IndexAny(s, special)
		if i < 0 {
			b.WriteString(s)
			return
		}
		b.WriteString(s[:i])
		b.WriteByte('\\')
		b.WriteByte(s[i])
		s = s[i+1:]
	}
}
