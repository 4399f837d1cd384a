package policy

import (
	"bytes"
	"encoding/base64"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Condition evaluation, as described in the IAM JSON policy reference ("Condition operators" and
// "Set operators for multivalued context keys"):
//
//   - The operators of a statement are ANDed, the keys of one operator are ANDed, the values listed
//     for one key are ORed.
//   - Condition keys are case-insensitive; String values are case-sensitive except with IgnoreCase.
//   - A key absent from the request (or present with no value) makes a positive operator false and
//     a negated one (StringNotEquals, StringNotEqualsIgnoreCase, StringNotLike, NumericNotEquals,
//     DateNotEquals, NotIpAddress, ArnNotEquals, ArnNotLike) true: the AWS documentation says "If
//     the key that you specify in a policy condition is not present in the request context, the
//     values do not match and the condition is false. If the policy condition requires that the key
//     is not matched, such as StringNotLike or ArnNotLike, and the right key is not present, the
//     condition is true." The ...IfExists forms are true for an absent key; Null tests presence.
//   - Without a set qualifier, a positive operator holds when some request value matches some
//     policy value, and a negated operator when no request value matches any policy value.
//     ForAnyValue holds when some request value satisfies the operator (false for an absent key),
//     ForAllValues when every request value does (true for an absent key).
//   - Policy variables are substituted (Version 2012-10-17) in String, Arn and Bool values; Numeric,
//     Date, Binary and IpAddress values are taken literally, as AWS does.
//   - StringLike patterns use * and ?; ArnEquals and ArnLike both compare the six colon-separated
//     parts of the ARN separately, each part being a glob.
//   - Dates are ISO 8601 (2006-01-02, 2006-01-02T15:04:05Z, with an offset or fractional seconds,
//     or the basic 20060102T150405Z) or epoch seconds (digits, possibly with a fraction).
//   - Bool compares "true"/"false" ignoring case. BinaryEquals compares the bytes of base64 values
//     (a request value that is not base64 is compared as raw bytes). IpAddress takes CIDR blocks
//     or single addresses, IPv4 or IPv6; an IPv4-mapped IPv6 request address counts as IPv4.
//   - A policy value that does not parse for its operator (a number, date, address or base64
//     value) matches nothing; IAM accepts such documents too.

type opKind uint8

const (
	kindString opKind = iota
	kindStringIgnoreCase
	kindStringLike
	kindNumeric
	kindDate
	kindBool
	kindBinary
	kindIP
	kindArn
	kindNull
)

type cmpKind uint8

const (
	cmpEq cmpKind = iota
	cmpLt
	cmpLe
	cmpGt
	cmpGe
)

type setKind uint8

const (
	setNone setKind = iota
	setAnyValue
	setAllValues
)

// operator is a parsed condition operator name such as "ForAllValues:StringNotLikeIfExists".
type operator struct {
	kind     opKind
	cmp      cmpKind
	negate   bool
	ifExists bool
	set      setKind
}

// parseOperator parses a condition operator name; names are case-sensitive, as in IAM.
func parseOperator(name string) (operator, bool) {
	var op operator
	base := name
	switch {
	case strings.HasPrefix(base, "ForAnyValue:"):
		op.set, base = setAnyValue, strings.TrimPrefix(base, "ForAnyValue:")
	case strings.HasPrefix(base, "ForAllValues:"):
		op.set, base = setAllValues, strings.TrimPrefix(base, "ForAllValues:")
	}
	if b, ok := strings.CutSuffix(base, "IfExists"); ok {
		op.ifExists, base = true, b
	}
	switch base {
	case "StringEquals":
		op.kind = kindString
	case "StringNotEquals":
		op.kind, op.negate = kindString, true
	case "StringEqualsIgnoreCase":
		op.kind = kindStringIgnoreCase
	case "StringNotEqualsIgnoreCase":
		op.kind, op.negate = kindStringIgnoreCase, true
	case "StringLike":
		op.kind = kindStringLike
	case "StringNotLike":
		op.kind, op.negate = kindStringLike, true
	case "NumericEquals":
		op.kind = kindNumeric
	case "NumericNotEquals":
		op.kind, op.negate = kindNumeric, true
	case "NumericLessThan":
		op.kind, op.cmp = kindNumeric, cmpLt
	case "NumericLessThanEquals":
		op.kind, op.cmp = kindNumeric, cmpLe
	case "NumericGreaterThan":
		op.kind, op.cmp = kindNumeric, cmpGt
	case "NumericGreaterThanEquals":
		op.kind, op.cmp = kindNumeric, cmpGe
	case "DateEquals":
		op.kind = kindDate
	case "DateNotEquals":
		op.kind, op.negate = kindDate, true
	case "DateLessThan":
		op.kind, op.cmp = kindDate, cmpLt
	case "DateLessThanEquals":
		op.kind, op.cmp = kindDate, cmpLe
	case "DateGreaterThan":
		op.kind, op.cmp = kindDate, cmpGt
	case "DateGreaterThanEquals":
		op.kind, op.cmp = kindDate, cmpGe
	case "Bool":
		op.kind = kindBool
	case "BinaryEquals":
		op.kind = kindBinary
	case "IpAddress":
		op.kind = kindIP
	case "NotIpAddress":
		op.kind, op.negate = kindIP, true
	case "ArnEquals", "ArnLike":
		op.kind = kindArn
	case "ArnNotEquals", "ArnNotLike":
		op.kind, op.negate = kindArn, true
	case "Null":
		if op.ifExists {
			return op, false
		}
		op.kind = kindNull
	default:
		return op, false
	}
	return op, true
}

// condition is one (operator, key) pair of a Condition element with its precompiled values.
type condition struct {
	operator
	key    string
	values []condValue
}

// condValue is a policy value, parsed once for its operator.
type condValue struct {
	pattern              // text, and template when it holds policy variables
	ok      bool         // parsed (numbers, dates, addresses, base64)
	num     float64      // kindNumeric
	t       time.Time    // kindDate
	prefix  netip.Prefix // kindIP
	bin     []byte       // kindBinary
	null    bool         // kindNull: true means "the key is absent"
}

// compileConditions flattens a Condition element into (operator, key) conditions. Unknown
// operators (possible only in a Statement built by hand) give a condition that never holds.
func compileConditions(m map[string]map[string][]string, vars bool) []condition {
	if len(m) == 0 {
		return nil
	}
	ops := make([]string, 0, len(m))
	for op := range m {
		ops = append(ops, op)
	}
	sort.Strings(ops) // deterministic order; the result does not depend on it
	var out []condition
	for _, name := range ops {
		op, known := parseOperator(name)
		keys := make([]string, 0, len(m[name]))
		for k := range m[name] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			c := condition{operator: op, key: k}
			if !known {
				// A condition that can never hold: a positive operator over no value.
				c.operator = operator{kind: kindString}
			} else {
				for _, v := range m[name][k] {
					c.values = append(c.values, compileValue(op.kind, v, vars))
				}
			}
			out = append(out, c)
		}
	}
	return out
}

func compileValue(kind opKind, s string, vars bool) condValue {
	v := condValue{pattern: pattern{text: s}, ok: true}
	switch kind {
	case kindString, kindStringIgnoreCase, kindStringLike, kindArn, kindBool:
		if vars {
			v.tmpl = parseTemplate(s)
		}
	case kindNumeric:
		v.num, v.ok = parseNumber(s)
	case kindDate:
		v.t, v.ok = parseDate(s)
	case kindBinary:
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
		v.bin, v.ok = b, err == nil
	case kindIP:
		v.prefix, v.ok = parsePrefix(s)
	case kindNull:
		v.null = strings.EqualFold(s, "true")
		v.ok = v.null || strings.EqualFold(s, "false")
	}
	return v
}

// holds evaluates the condition against the request.
func (c *condition) holds(r *evalCtx) bool {
	vals, _ := r.lookup(c.key)
	absent := len(vals) == 0
	if c.kind == kindNull {
		for i := range c.values {
			if v := &c.values[i]; v.ok && v.null == absent {
				return true
			}
		}
		return false
	}
	if absent {
		switch {
		case c.ifExists:
			return true
		case c.set == setAnyValue:
			return false
		case c.set == setAllValues:
			return true
		}
		return c.negate
	}
	set := c.set
	if set == setNone {
		// A positive operator needs one matching request value; a negated one needs every request
		// value to match none of the policy values.
		set = setAnyValue
		if c.negate {
			set = setAllValues
		}
	}
	for _, rv := range vals {
		ok := c.matchesAny(rv, r) != c.negate
		if set == setAnyValue && ok {
			return true
		}
		if set == setAllValues && !ok {
			return false
		}
	}
	return set == setAllValues
}

// matchesAny reports whether the request value rv satisfies the positive form of the operator for
// at least one policy value.
func (c *condition) matchesAny(rv string, r *evalCtx) bool {
	switch c.kind {
	case kindNumeric:
		n, ok := parseNumber(rv)
		if !ok {
			return false
		}
		for i := range c.values {
			if v := &c.values[i]; v.ok && compare(c.cmp, cmpFloat(n, v.num)) {
				return true
			}
		}
		return false
	case kindDate:
		t, ok := parseDate(rv)
		if !ok {
			return false
		}
		for i := range c.values {
			if v := &c.values[i]; v.ok && compare(c.cmp, t.Compare(v.t)) {
				return true
			}
		}
		return false
	case kindIP:
		addr, err := netip.ParseAddr(strings.TrimSpace(rv))
		if err != nil {
			return false
		}
		addr = addr.WithZone("").Unmap()
		for i := range c.values {
			if v := &c.values[i]; v.ok && v.prefix.Contains(addr) {
				return true
			}
		}
		return false
	case kindBinary:
		b, err := base64.StdEncoding.DecodeString(rv)
		if err != nil {
			b = []byte(rv)
		}
		for i := range c.values {
			if v := &c.values[i]; v.ok && bytes.Equal(b, v.bin) {
				return true
			}
		}
		return false
	}
	for i := range c.values {
		v := &c.values[i]
		pv, esc := v.text, false
		if v.tmpl != nil {
			var ok bool
			asGlob := c.kind == kindStringLike || c.kind == kindArn
			if pv, ok = expand(v.tmpl, r, asGlob); !ok {
				continue
			}
			esc = asGlob
		}
		var m bool
		switch c.kind {
		case kindString:
			m = rv == pv
		case kindStringIgnoreCase, kindBool:
			m = strings.EqualFold(rv, pv)
		case kindStringLike:
			m = glob(pv, rv, esc)
		case kindArn:
			m = arnLike(pv, rv, esc)
		}
		if m {
			return true
		}
	}
	return false
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// compare applies cmp to the result of comparing the request value with the policy value.
func compare(cmp cmpKind, c int) bool {
	switch cmp {
	case cmpLt:
		return c < 0
	case cmpLe:
		return c <= 0
	case cmpGt:
		return c > 0
	case cmpGe:
		return c >= 0
	}
	return c == 0
}

// arnLike matches an ARN against an ARN pattern part by part: arn, partition, service, region,
// account and resource are each matched as globs, so a wildcard does not cross a colon of the
// first five separators. A pattern of "*" matches any value.
func arnLike(p, s string, esc bool) bool {
	if p == "*" {
		return true
	}
	for n := 0; n < 5; n++ {
		pi, si := strings.IndexByte(p, ':'), strings.IndexByte(s, ':')
		if pi < 0 || si < 0 {
			return false
		}
		if !glob(p[:pi], s[:si], esc) {
			return false
		}
		p, s = p[pi+1:], s[si+1:]
	}
	return glob(p, s, esc)
}

func parseNumber(s string) (float64, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return f, err == nil
}

// parseDate parses an ISO 8601 date or date-time, or epoch seconds.
func parseDate(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0).UTC(), true
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && strings.Trim(s, "0123456789.") == "" {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)).UTC(), true
	}
	for _, layout := range []string{
		time.RFC3339, // also accepts fractional seconds
		"2006-01-02T15:04Z07:00",
		"2006-01-02T15:04:05",
		"2006-01-02T15:04",
		"2006-01-02",
		"20060102T150405Z0700",
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// parsePrefix parses a CIDR block or a single address.
func parsePrefix(s string) (netip.Prefix, bool) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, false
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	a = a.WithZone("").Unmap()
	return netip.PrefixFrom(a, a.BitLen()), true
}
