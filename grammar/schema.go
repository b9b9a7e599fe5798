package grammar

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
)

// JSONSchema compiles a JSON Schema into a grammar of the JSON texts it
// accepts. See SchemaToGBNF for what is supported and enforced.
func JSONSchema(schema []byte) (*Grammar, error) {
	src, err := SchemaToGBNF(schema)
	if err != nil {
		return nil, err
	}
	return Parse(src)
}

// SchemaToGBNF translates a JSON Schema into GBNF text.
//
// Supported: type (one or a list; without type, the kind is read from the
// keywords present), properties (generated in the order the schema writes
// them), required, additionalProperties (false, true, or a schema; absent
// means true, as JSON Schema says), enum, const, anyOf, oneOf (as anyOf:
// a value that matches two branches is not excluded), allOf (merged into
// one schema where the members do not conflict, else an error), items,
// prefixItems, minItems, maxItems, minLength, maxLength, pattern (a
// Regex subset; unanchored patterns match anywhere, as JSON Schema says),
// format (date, time, date-time, uuid, email), minimum, maximum,
// exclusiveMinimum, exclusiveMaximum, $ref to "#", "#/$defs/..." or
// "#/definitions/..." (recursion included) and annotations (title,
// description, default, examples, ...), which constrain nothing.
//
// Every other keyword is an error that names it: nothing is dropped.
//
// What is generated is always valid under the schema, but some valid
// values are not generated:
//   - integer bounds are exact; number bounds admit the integers in range
//     and non-negative decimals k.f with k and k+1 in range, without
//     exponents;
//   - with declared properties, additional property names use no escape
//     sequences (so that none can spell a declared name);
//   - date leaves out February 29, time leaves out leap seconds, email is
//     a plain dot-atom address with a letters-only top-level domain;
//   - inside a pattern, . and classes leave out characters JSON escapes.
//
// Whitespace: an optional single space after {, [, : and , and after each
// key, member value or element (as in {"a": 1, "b": [1, 2]}); no
// newlines, none before the whole value or after it.
func SchemaToGBNF(schema []byte) (string, error) {
	v, err := decodeOrdered(schema)
	if err != nil {
		return "", fmt.Errorf("grammar: schema: %w", err)
	}
	c := &schemaConv{root: v, rules: map[string]string{}, refs: map[string]string{}}
	expr, err := c.visit(v, "root", 0)
	if err != nil {
		return "", fmt.Errorf("grammar: schema: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "root ::= %s\n", expr)
	for _, name := range c.order {
		fmt.Fprintf(&b, "%s ::= %s\n", name, c.rules[name])
	}
	return b.String(), nil
}

type schemaConv struct {
	root  any
	rules map[string]string
	order []string
	refs  map[string]string // $ref -> its rule
}

// rule defines a rule named after hint (made unique) and returns its name.
func (c *schemaConv) rule(hint, body string) string {
	name := c.reserve(hint)
	c.rules[name] = body
	return name
}

func (c *schemaConv) reserve(hint string) string {
	var b strings.Builder
	for _, r := range hint {
		if r < 0x80 && isNameByte(byte(r)) {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	base := b.String()
	if base == "" || base == "root" {
		base = "r"
	}
	name := base
	for i := 1; ; i++ {
		if _, taken := c.rules[name]; !taken {
			break
		}
		name = fmt.Sprintf("%s%d", base, i)
	}
	c.rules[name] = ""
	c.order = append(c.order, name)
	return name
}

// primitive defines one of the shared rules once and returns its name.
func (c *schemaConv) primitive(name string) string {
	if _, ok := c.rules[name]; ok {
		return name
	}
	body, ok := primitives[name]
	if !ok {
		panic("grammar: no primitive " + name)
	}
	c.rules[name] = body
	c.order = append(c.order, name)
	for _, dep := range primitiveDeps[name] {
		c.primitive(dep)
	}
	return name
}

var primitives = map[string]string{
	"sp":      `" "?`,
	"char":    `[^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" ( [0-9a-cA-CefEF] hex{3} | [dD] [0-7] hex{2} ) )`,
	"hex":     `[0-9a-fA-F]`,
	"kchar":   `[^"\\\x00-\x1F]`,
	"string":  `"\"" char* "\""`,
	"integer": `"-"? ( "0" | [1-9] [0-9]* )`,
	"number":  `"-"? ( "0" | [1-9] [0-9]* ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?`,
	"boolean": `"true" | "false"`,
	"null":    `"null"`,
	"value":   `object | array | string | number | boolean | null`,
	"object":  `"{" sp ( string sp ":" sp value sp ( "," sp string sp ":" sp value sp )* )? "}"`,
	"array":   `"[" sp ( value sp ( "," sp value sp )* )? "]"`,
	"d31":     `"0" [1-9] | [12] [0-9] | "3" [01]`,
	"d30":     `"0" [1-9] | [12] [0-9] | "30"`,
	"d28":     `"0" [1-9] | "1" [0-9] | "2" [0-8]`,
	"date":    `[0-9]{4} "-" ( "0" [13578] "-" d31 | "1" [02] "-" d31 | "0" [469] "-" d30 | "11-" d30 | "02-" d28 )`,
	"time":    `( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,9} )? ( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )`,
	"uuid":    `hex{8} "-" hex{4} "-" hex{4} "-" hex{4} "-" hex{12}`,
	"email":   `[a-zA-Z0-9_+-]{1,16} ( "." [a-zA-Z0-9_+-]{1,16} ){0,2} "@" label ( "." label ){0,2} "." [a-zA-Z]{2,6}`,
	"label":   `[a-zA-Z0-9] ( [a-zA-Z0-9-]{0,20} [a-zA-Z0-9] )?`,
}

var primitiveDeps = map[string][]string{
	"char":   {"hex"},
	"string": {"char"},
	"value":  {"object", "array", "string", "number", "boolean", "null"},
	"object": {"sp", "string", "value"},
	"array":  {"sp", "value"},
	"date":   {"d31", "d30", "d28"},
	"uuid":   {"hex"},
	"email":  {"label"},
}

var annotations = []string{"title", "description", "$schema", "$id", "$comment", "examples", "default", "deprecated", "readOnly", "writeOnly", "$defs", "definitions"}

var handled = []string{"type", "properties", "required", "additionalProperties", "enum", "const", "anyOf", "oneOf", "allOf",
	"items", "prefixItems", "minItems", "maxItems", "minLength", "maxLength", "pattern", "format",
	"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "$ref"}

// typeKeywords: the keywords that imply a type when type is absent.
var typeKeywords = map[string][]string{
	"object": {"properties", "required", "additionalProperties"},
	"array":  {"items", "prefixItems", "minItems", "maxItems"},
	"string": {"minLength", "maxLength", "pattern", "format"},
	"number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
}

const maxSchemaDepth = 64

func (c *schemaConv) visit(v any, hint string, depth int) (string, error) {
	if depth > maxSchemaDepth {
		return "", fmt.Errorf("%s: schema nested more than %d deep", hint, maxSchemaDepth)
	}
	switch v := v.(type) {
	case bool:
		if v {
			return c.primitive("value"), nil
		}
		return `[^\x00-\U0010FFFF]`, nil // false: nothing
	case *object:
		return c.visitObject(v, hint, depth)
	}
	return "", fmt.Errorf("%s: a schema must be an object or a boolean", hint)
}

func (c *schemaConv) visitObject(s *object, hint string, depth int) (string, error) {
	var unsupported []string
	for _, k := range s.keys {
		if !slices.Contains(handled, k) && !slices.Contains(annotations, k) {
			unsupported = append(unsupported, k)
		}
	}
	if len(unsupported) > 0 {
		return "", fmt.Errorf("%s: unsupported keywords %s", hint, strings.Join(unsupported, ", "))
	}
	if ref, ok := s.get("$ref"); ok {
		for _, k := range s.keys {
			if k != "$ref" && slices.Contains(handled, k) {
				return "", fmt.Errorf("%s: $ref beside %s is not supported", hint, k)
			}
		}
		return c.visitRef(ref, depth)
	}
	if all, ok := s.get("allOf"); ok {
		merged, err := c.mergeAllOf(s, all, hint)
		if err != nil {
			return "", err
		}
		return c.visit(merged, hint, depth+1)
	}
	if cv, ok := s.get("const"); ok {
		var b strings.Builder
		encodeCompact(&b, cv)
		return gbnfLiteral(b.String()), nil
	}
	if ev, ok := s.get("enum"); ok {
		list, ok := ev.([]any)
		if !ok || len(list) == 0 {
			return "", fmt.Errorf("%s: enum must be a non-empty array", hint)
		}
		var opts []string
		for _, e := range list {
			var b strings.Builder
			encodeCompact(&b, e)
			opts = append(opts, b.String())
		}
		return choiceExpr(opts), nil
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		if av, ok := s.get(kw); ok {
			list, ok := av.([]any)
			if !ok || len(list) == 0 {
				return "", fmt.Errorf("%s: %s must be a non-empty array", hint, kw)
			}
			var alts []string
			for i, sub := range list {
				e, err := c.visit(sub, fmt.Sprintf("%s-%d", hint, i), depth+1)
				if err != nil {
					return "", err
				}
				alts = append(alts, e)
			}
			return c.rule(hint, strings.Join(alts, " | ")), nil
		}
	}
	types, err := schemaTypes(s, hint)
	if err != nil {
		return "", err
	}
	if types == nil {
		return c.primitive("value"), nil
	}
	var alts []string
	for _, t := range types {
		e, err := c.visitTyped(s, t, hint, depth)
		if err != nil {
			return "", err
		}
		alts = append(alts, e)
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return c.rule(hint, strings.Join(alts, " | ")), nil
}

// schemaTypes reads type, or infers it from the keywords; nil: any value.
func schemaTypes(s *object, hint string) ([]string, error) {
	tv, ok := s.get("type")
	if !ok {
		var out []string
		for _, t := range []string{"object", "array", "string", "number"} {
			if slices.ContainsFunc(typeKeywords[t], func(k string) bool { _, ok := s.get(k); return ok }) {
				out = append(out, t)
			}
		}
		if len(out) > 1 {
			return nil, fmt.Errorf("%s: keywords of several types without a type", hint)
		}
		return out, nil
	}
	var list []any
	switch tv := tv.(type) {
	case string:
		list = []any{tv}
	case []any:
		list = tv
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("%s: type must be a string or a non-empty array", hint)
	}
	var out []string
	for _, t := range list {
		ts, _ := t.(string)
		switch ts {
		case "object", "array", "string", "number", "integer", "boolean", "null":
			out = append(out, ts)
		default:
			return nil, fmt.Errorf("%s: unknown type %v", hint, t)
		}
	}
	return out, nil
}

func (c *schemaConv) visitTyped(s *object, t, hint string, depth int) (string, error) {
	switch t {
	case "boolean", "null":
		return c.primitive(t), nil
	case "string":
		return c.visitString(s, hint)
	case "integer", "number":
		return c.visitNumber(s, t, hint)
	case "array":
		return c.visitArray(s, hint, depth)
	case "object":
		return c.visitProperties(s, hint, depth)
	}
	panic("unreachable")
}

func (c *schemaConv) visitRef(ref any, depth int) (string, error) {
	r, ok := ref.(string)
	if !ok {
		return "", fmt.Errorf("$ref must be a string")
	}
	if name, ok := c.refs[r]; ok {
		return name, nil
	}
	target, err := c.resolve(r)
	if err != nil {
		return "", err
	}
	hint := r[strings.LastIndexByte(r, '/')+1:]
	if r == "#" {
		hint = "self"
	}
	name := c.reserve(hint)
	c.refs[r] = name
	body, err := c.visit(target, name, depth+1)
	if err != nil {
		return "", err
	}
	c.rules[name] = body
	return name, nil
}

// resolve follows a local JSON pointer.
func (c *schemaConv) resolve(ref string) (any, error) {
	if ref != "#" && !strings.HasPrefix(ref, "#/") {
		return nil, fmt.Errorf("$ref %q: only local references (#/...) are supported", ref)
	}
	cur := c.root
	if ref == "#" {
		return cur, nil
	}
	for _, part := range strings.Split(ref[2:], "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		switch v := cur.(type) {
		case *object:
			next, ok := v.get(part)
			if !ok {
				return nil, fmt.Errorf("$ref %q: no %q", ref, part)
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(v) {
				return nil, fmt.Errorf("$ref %q: no %q", ref, part)
			}
			cur = v[i]
		default:
			return nil, fmt.Errorf("$ref %q: no %q", ref, part)
		}
	}
	return cur, nil
}

// mergeAllOf merges s (less allOf) and its allOf members into one schema.
func (c *schemaConv) mergeAllOf(s *object, all any, hint string) (any, error) {
	list, ok := all.([]any)
	if !ok || len(list) == 0 {
		return nil, fmt.Errorf("%s: allOf must be a non-empty array", hint)
	}
	out := &object{vals: map[string]any{}}
	members := []any{s}
	for _, m := range list {
		for range 16 { // follow $refs (not recursive ones: bounded)
			mo, ok := m.(*object)
			if !ok || len(mo.keys) != 1 || mo.keys[0] != "$ref" {
				break
			}
			ref, _ := mo.vals["$ref"].(string)
			r, err := c.resolve(ref)
			if err != nil {
				return nil, err
			}
			m = r
		}
		members = append(members, m)
	}
	var objects []*object
	for _, m := range members {
		mo, ok := m.(*object)
		if !ok {
			if m == true {
				continue
			}
			return nil, fmt.Errorf("%s: allOf: cannot merge %v", hint, m)
		}
		objects = append(objects, mo)
		for _, k := range mo.keys {
			v := mo.vals[k]
			if k == "allOf" && m == s {
				continue
			}
			if slices.Contains(annotations, k) {
				continue
			}
			old, exists := out.vals[k]
			switch {
			case !exists:
				out.keys = append(out.keys, k)
				out.vals[k] = v
			case k == "required":
				a, _ := old.([]any)
				b, _ := v.([]any)
				merged := slices.Clone(a)
				for _, x := range b {
					if !slices.ContainsFunc(merged, func(y any) bool { return equalJSON(x, y) }) {
						merged = append(merged, x)
					}
				}
				out.vals[k] = merged
			case k == "properties":
				a, ok1 := old.(*object)
				b, ok2 := v.(*object)
				if !ok1 || !ok2 {
					return nil, fmt.Errorf("%s: allOf: properties must be objects", hint)
				}
				merged := &object{keys: slices.Clone(a.keys), vals: map[string]any{}}
				for pk, pv := range a.vals {
					merged.vals[pk] = pv
				}
				for _, pk := range b.keys {
					if pv, dup := merged.vals[pk]; dup {
						if !equalJSON(pv, b.vals[pk]) {
							return nil, fmt.Errorf("%s: allOf: property %q is defined twice, differently", hint, pk)
						}
						continue
					}
					merged.keys = append(merged.keys, pk)
					merged.vals[pk] = b.vals[pk]
				}
				out.vals[k] = merged
			case !equalJSON(old, v):
				return nil, fmt.Errorf("%s: allOf: cannot merge two values of %s", hint, k)
			}
		}
	}
	// additionalProperties sees only its own schema's properties: merged,
	// it would admit the other members' properties, which it rejects.
	if merged, ok := out.vals["properties"].(*object); ok {
		for _, mo := range objects {
			ap, has := mo.get("additionalProperties")
			if !has || ap == true {
				continue
			}
			own, _ := mo.vals["properties"].(*object)
			for _, k := range merged.keys {
				if _, ok := own.get(k); own == nil || !ok {
					return nil, fmt.Errorf("%s: allOf: one member's additionalProperties rejects property %q of another: no instance with it is valid", hint, k)
				}
			}
		}
	}
	return out, nil
}

func intKeyword(s *object, k, hint string) (int, bool, error) {
	v, ok := s.get(k)
	if !ok {
		return 0, false, nil
	}
	n, isNum := v.(json.Number)
	i, err := strconv.Atoi(string(n))
	if !isNum || err != nil || i < 0 || i > maxRepeat {
		return 0, false, fmt.Errorf("%s: %s must be an integer in 0..%d", hint, k, maxRepeat)
	}
	return i, true, nil
}

func (c *schemaConv) visitString(s *object, hint string) (string, error) {
	minLen, hasMin, err := intKeyword(s, "minLength", hint)
	if err != nil {
		return "", err
	}
	maxLen, hasMax, err := intKeyword(s, "maxLength", hint)
	if err != nil {
		return "", err
	}
	if fv, ok := s.get("format"); ok {
		f, _ := fv.(string)
		if _, ok := s.get("pattern"); ok || hasMin || hasMax {
			return "", fmt.Errorf("%s: format with pattern or lengths is not supported", hint)
		}
		switch f {
		case "date", "time", "uuid", "email":
			return c.rule(hint, `"\"" `+c.primitive(f)+` "\""`), nil
		case "date-time":
			return c.rule(hint, `"\"" `+c.primitive("date")+` "T" `+c.primitive("time")+` "\""`), nil
		}
		return "", fmt.Errorf("%s: unsupported format %q", hint, f)
	}
	if pv, ok := s.get("pattern"); ok {
		p, _ := pv.(string)
		if hasMin || hasMax {
			return "", fmt.Errorf("%s: pattern with minLength/maxLength is not supported", hint)
		}
		expr, err := regexToGBNF(p, true)
		if err != nil {
			return "", fmt.Errorf("%s: pattern: %w", hint, err)
		}
		kchar := c.primitive("kchar")
		if !strings.HasPrefix(p, "^") {
			expr = kchar + "* " + expr
		}
		if !strings.HasSuffix(p, "$") || strings.HasSuffix(p, `\$`) {
			expr += " " + kchar + "*"
		}
		return c.rule(hint, `"\"" `+expr+` "\""`), nil
	}
	if !hasMin && !hasMax {
		return c.primitive("string"), nil
	}
	char := c.primitive("char")
	if !hasMax {
		return c.rule(hint, fmt.Sprintf(`"\"" %s{%d,} "\""`, char, minLen)), nil
	}
	if maxLen < minLen {
		return "", fmt.Errorf("%s: maxLength below minLength", hint)
	}
	return c.rule(hint, fmt.Sprintf(`"\"" %s{%d,%d} "\""`, char, minLen, maxLen)), nil
}

// bound reads a numeric keyword; ok false when absent.
func bound(s *object, k, hint string) (*big.Rat, bool, error) {
	v, ok := s.get(k)
	if !ok {
		return nil, false, nil
	}
	n, isNum := v.(json.Number)
	r, ok2 := new(big.Rat).SetString(string(n))
	if !isNum || !ok2 {
		return nil, false, fmt.Errorf("%s: %s must be a number", hint, k)
	}
	return r, true, nil
}

// ratFloor: big.Int's Div is Euclidean, the floor for a positive denominator.
func ratFloor(r *big.Rat) *big.Int { return new(big.Int).Div(r.Num(), r.Denom()) }

func ratCeil(r *big.Rat) *big.Int {
	f := ratFloor(r)
	if !r.IsInt() {
		f.Add(f, big.NewInt(1))
	}
	return f
}

const maxBound = 1e18

func (c *schemaConv) visitNumber(s *object, t, hint string) (string, error) {
	// lo/hi: the least and greatest integer in range; fracLo/fracHi: the
	// integer parts k with k.f in range (k and k+1 in range).
	var lo, hi, fracLo, fracHi *big.Int
	one := big.NewInt(1)
	for _, k := range []string{"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"} {
		r, ok, err := bound(s, k, hint)
		if err != nil {
			return "", err
		}
		if !ok {
			continue
		}
		f, _ := r.Float64()
		if math.Abs(f) > maxBound {
			return "", fmt.Errorf("%s: %s beyond ±1e18 is not supported", hint, k)
		}
		var l, fl, h, fh *big.Int
		switch k {
		case "minimum":
			l, fl = ratCeil(r), ratCeil(r)
		case "exclusiveMinimum":
			l = new(big.Int).Add(ratFloor(r), one)
			fl = ratCeil(r)
		case "maximum":
			h = ratFloor(r)
			fh = new(big.Int).Sub(ratFloor(r), one)
		case "exclusiveMaximum":
			h = new(big.Int).Sub(ratCeil(r), one)
			fh = new(big.Int).Sub(ratFloor(r), one)
		}
		if l != nil && (lo == nil || l.Cmp(lo) > 0) {
			lo = l
		}
		if fl != nil && (fracLo == nil || fl.Cmp(fracLo) > 0) {
			fracLo = fl
		}
		if h != nil && (hi == nil || h.Cmp(hi) < 0) {
			hi = h
		}
		if fh != nil && (fracHi == nil || fh.Cmp(fracHi) < 0) {
			fracHi = fh
		}
	}
	if lo == nil && hi == nil {
		return c.primitive(t), nil
	}
	var alts []string
	if ints := intRange(lo, hi); ints != "" {
		alts = append(alts, ints)
	}
	if t == "number" {
		fl := big.NewInt(0)
		if fracLo != nil && fracLo.Sign() > 0 {
			fl = fracLo
		}
		if fracHi == nil || fl.Cmp(fracHi) <= 0 {
			if ks := intRange(fl, fracHi); ks != "" {
				alts = append(alts, "("+ks+`) "." [0-9]* [1-9]`)
			}
		}
	}
	if len(alts) == 0 {
		return "", fmt.Errorf("%s: no %s lies within the bounds", hint, t)
	}
	return c.rule(hint, strings.Join(alts, " | ")), nil
}

// intRange is a GBNF expression for the decimal integers in [lo, hi] (nil:
// unbounded), or "" if there are none.
func intRange(lo, hi *big.Int) string {
	if lo != nil && hi != nil && lo.Cmp(hi) > 0 {
		return ""
	}
	var alts []string
	zero := big.NewInt(0)
	// Non-negative part: [max(lo, 0), hi].
	if hi == nil || hi.Sign() >= 0 {
		l := zero
		if lo != nil && lo.Sign() > 0 {
			l = lo
		}
		alts = append(alts, natRange(l, hi))
	}
	// Negative part: -[max(-hi, 1), -lo].
	if lo == nil || lo.Sign() < 0 {
		l := big.NewInt(1)
		if hi != nil && hi.Sign() < 0 {
			l = new(big.Int).Neg(hi)
		}
		var h *big.Int
		if lo != nil {
			h = new(big.Int).Neg(lo)
		}
		alts = append(alts, `"-" (`+natRange(l, h)+`)`)
	}
	return strings.Join(alts, " | ")
}

// natRange: the naturals in [lo, hi] (hi nil: unbounded), lo <= hi,
// written without leading zeros.
func natRange(lo, hi *big.Int) string {
	los := lo.String()
	var alts []string
	maxLen := len(los)
	if hi != nil {
		maxLen = len(hi.String())
	}
	for n := len(los); n <= maxLen; n++ {
		a := lo
		if n > len(los) {
			a = new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n-1)), nil)
		}
		b := new(big.Int).Sub(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil), big.NewInt(1))
		if hi != nil && hi.Cmp(b) < 0 {
			b = hi
		}
		alts = append(alts, digitRange(a.String(), b.String()))
	}
	if hi == nil {
		alts = append(alts, fmt.Sprintf("[1-9] [0-9]{%d} [0-9]*", len(los)))
	}
	return strings.Join(alts, " | ")
}

// digitRange: the digit strings of a's length from a to b (a <= b).
func digitRange(a, b string) string {
	if a == "" {
		return `""`
	}
	if len(a) == 1 {
		return fmt.Sprintf("[%c-%c]", a[0], b[0])
	}
	rest := len(a) - 1
	if a[0] == b[0] {
		return fmt.Sprintf(`"%c" (%s)`, a[0], digitRange(a[1:], b[1:]))
	}
	nines, zeros := strings.Repeat("9", rest), strings.Repeat("0", rest)
	alts := []string{fmt.Sprintf(`"%c" (%s)`, a[0], digitRange(a[1:], nines))}
	if a[0]+1 <= b[0]-1 {
		alts = append(alts, fmt.Sprintf("[%c-%c] [0-9]{%d}", a[0]+1, b[0]-1, rest))
	}
	alts = append(alts, fmt.Sprintf(`"%c" (%s)`, b[0], digitRange(zeros, b[1:])))
	return strings.Join(alts, " | ")
}

func (c *schemaConv) visitArray(s *object, hint string, depth int) (string, error) {
	sp := c.primitive("sp")
	var prefix []string
	if pv, ok := s.get("prefixItems"); ok {
		list, ok := pv.([]any)
		if !ok {
			return "", fmt.Errorf("%s: prefixItems must be an array", hint)
		}
		for i, sub := range list {
			e, err := c.visit(sub, fmt.Sprintf("%s-%d", hint, i), depth+1)
			if err != nil {
				return "", err
			}
			prefix = append(prefix, e)
		}
	}
	item := c.primitive("value")
	itemsAllowed := true
	if iv, ok := s.get("items"); ok {
		if iv == false {
			itemsAllowed = false
		} else {
			e, err := c.visit(iv, hint+"-item", depth+1)
			if err != nil {
				return "", err
			}
			item = e
		}
	}
	minItems, _, err := intKeyword(s, "minItems", hint)
	if err != nil {
		return "", err
	}
	maxItems, hasMax, err := intKeyword(s, "maxItems", hint)
	if err != nil {
		return "", err
	}
	if !itemsAllowed && (!hasMax || maxItems > len(prefix)) {
		maxItems, hasMax = len(prefix), true
	}
	if hasMax && maxItems < minItems {
		return "", fmt.Errorf("%s: maxItems below minItems", hint)
	}
	elem := func(i int) string {
		if i < len(prefix) {
			return prefix[i] + " " + sp
		}
		return item + " " + sp
	}
	// tail(i): the elements from index i on, i elements already written.
	var tail func(i int) string
	tail = func(i int) string {
		if hasMax && i >= maxItems {
			return ""
		}
		if i >= len(prefix) {
			least := max(minItems-i, 0)
			if !hasMax {
				return fmt.Sprintf(`( "," %s %s ){%d,}`, sp, elem(i), least)
			}
			return fmt.Sprintf(`( "," %s %s ){%d,%d}`, sp, elem(i), least, maxItems-i)
		}
		seq := fmt.Sprintf(`"," %s %s %s`, sp, elem(i), tail(i+1))
		if i < minItems {
			return seq
		}
		return "( " + seq + " )?"
	}
	body := ""
	if !hasMax || maxItems > 0 {
		body = elem(0) + " " + tail(1)
		if minItems == 0 {
			body = "( " + body + " )?"
		}
	}
	return c.rule(hint, fmt.Sprintf(`"[" %s %s "]"`, sp, body)), nil
}

func (c *schemaConv) visitProperties(s *object, hint string, depth int) (string, error) {
	sp := c.primitive("sp")
	props := &object{vals: map[string]any{}}
	if pv, ok := s.get("properties"); ok {
		if props, ok = pv.(*object); !ok {
			return "", fmt.Errorf("%s: properties must be an object", hint)
		}
	}
	required := map[string]bool{}
	if rv, ok := s.get("required"); ok {
		list, _ := rv.([]any)
		for _, r := range list {
			name, ok := r.(string)
			if !ok {
				return "", fmt.Errorf("%s: required must list strings", hint)
			}
			if _, declared := props.get(name); !declared {
				return "", fmt.Errorf("%s: required property %q is not declared in properties", hint, name)
			}
			required[name] = true
		}
	}
	kvs := make([]string, len(props.keys))
	for i, k := range props.keys {
		v, err := c.visit(props.vals[k], hint+"-"+k, depth+1)
		if err != nil {
			return "", err
		}
		var key strings.Builder
		encodeCompact(&key, k)
		kvs[i] = fmt.Sprintf(`%s %s ":" %s %s %s`, gbnfLiteral(key.String()), sp, sp, v, sp)
	}
	// The additional members, each written with its key and value.
	additional := ""
	av, hasAV := s.get("additionalProperties")
	if !hasAV || av != false {
		val := c.primitive("value")
		if hasAV && av != true {
			e, err := c.visit(av, hint+"-additional", depth+1)
			if err != nil {
				return "", err
			}
			val = e
		}
		key := c.primitive("string")
		if len(props.keys) > 0 {
			key = `"\"" ` + c.notKeys(hint, props.keys) + ` "\""`
		}
		additional = c.rule(hint+"-additional-kv", fmt.Sprintf(`%s %s ":" %s %s %s`, key, sp, sp, val, sp))
	}
	// first(i): members from property i on, none written yet;
	// after(i): the same once one has been written (each after a comma).
	n := len(props.keys)
	after := make([]string, n+1)
	after[n] = `""`
	if additional != "" {
		after[n] = fmt.Sprintf(`( "," %s %s )*`, sp, additional)
	}
	for i := n - 1; i >= 0; i-- {
		seq := fmt.Sprintf(`"," %s %s`, sp, kvs[i])
		if !required[props.keys[i]] {
			seq = "( " + seq + " )?"
		}
		after[i] = c.rule(fmt.Sprintf("%s-after%d", hint, i), seq+" "+after[i+1])
	}
	first := `""`
	if additional != "" {
		first = fmt.Sprintf(`( %s ( "," %s %s )* )?`, additional, sp, additional)
	}
	for i := n - 1; i >= 0; i-- {
		alt := kvs[i] + " " + after[i+1]
		if !required[props.keys[i]] {
			alt += " | " + first
		}
		first = c.rule(fmt.Sprintf("%s-first%d", hint, i), alt)
	}
	return c.rule(hint, fmt.Sprintf(`"{" %s %s "}"`, sp, first)), nil
}

// notKeys: the inside of a JSON string, written without escapes, that is
// none of keys.
func (c *schemaConv) notKeys(hint string, keys []string) string {
	type trie struct {
		next map[rune]*trie
		end  bool
	}
	root := &trie{next: map[rune]*trie{}}
	for _, k := range keys {
		if strings.ContainsFunc(k, func(r rune) bool { return r < 0x20 || r == '"' || r == '\\' }) {
			continue // only an escape could spell it
		}
		t := root
		for _, r := range k {
			if t.next[r] == nil {
				t.next[r] = &trie{next: map[rune]*trie{}}
			}
			t = t.next[r]
		}
		t.end = true
	}
	kchar := c.primitive("kchar")
	var build func(t *trie) string
	build = func(t *trie) string {
		var alts []string
		excluded := []runeRange{{0, 0x1F}, {'"', '"'}, {'\\', '\\'}}
		runes := make([]rune, 0, len(t.next))
		for r := range t.next {
			runes = append(runes, r)
		}
		slices.Sort(runes)
		for _, r := range runes {
			alts = append(alts, gbnfLiteral(string(r))+" "+build(t.next[r]))
			excluded = append(excluded, runeRange{r, r})
		}
		alts = append(alts, gbnfClass(complementRanges(normalizeRanges(excluded)))+" "+kchar+"*")
		if !t.end {
			alts = append(alts, `""`)
		}
		return c.rule(hint+"-key", strings.Join(alts, " | "))
	}
	return build(root)
}
