package ir

import (
	"fmt"
	"strconv"
	"strings"
)

// Parse reads the text form written by Print and returns a verified graph;
// Parse(Print(g)) prints exactly as g does. Values get IDs by position, and
// each label (v<N>) in an argument or output refers to the earlier value
// defined with that label, so labels need not be dense. Every value carries
// its type; for computed ops it must equal the inferred type. Blank lines and
// comments from '#' to the end of a line are ignored. A retired op reads as
// the op that replaced it (Upgrade), so older dumps and goldens still parse.
// Errors name the line ("line 7: ..."), except those of the final Verify,
// which name the value.
func Parse(text string) (*Graph, error) {
	p := &parser{labels: map[string]*Value{}}
	g, err := p.parse(text)
	if err != nil {
		return nil, err
	}
	if err := Verify(g); err != nil {
		return nil, err
	}
	return g, nil
}

type tokKind uint8

const (
	tkIdent  tokKind = iota + 1 // [A-Za-z_][A-Za-z0-9_]*
	tkNumber                    // a numeric literal, classified where it is used
	tkString                    // a Go double-quoted string; text is the unquoted value
	tkPunct                     // one of ( ) { } [ ] , = :
)

type token struct {
	kind tokKind
	text string
}

func (t token) String() string {
	switch t.kind {
	case tkString:
		return strconv.Quote(t.text)
	case 0:
		return "end of line"
	}
	return strconv.Quote(t.text)
}

type parser struct {
	line   int     // 1-based number of the line being parsed
	toks   []token // the line's tokens
	pos    int
	g      *Graph
	labels map[string]*Value
}

// errorf returns an error that names the current line.
func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("line %d: %s", p.line, fmt.Sprintf(format, args...))
}

func (p *parser) parse(text string) (*Graph, error) {
	const (
		header = iota
		body
		done
	)
	state := header
	for i, line := range strings.Split(text, "\n") {
		p.line = i + 1
		if err := p.lex(line); err != nil {
			return nil, err
		}
		if len(p.toks) == 0 {
			continue
		}
		var err error
		switch state {
		case header:
			err = p.header()
			state = body
		case body:
			if p.peekPunct("}") {
				p.pos++
				err = p.end()
				state = done
				break
			}
			err = p.item()
		case done:
			err = p.errorf("unexpected %v after the closing }", p.toks[0])
		}
		if err != nil {
			return nil, err
		}
	}
	switch state {
	case header:
		return nil, p.errorf("no graph")
	case body:
		return nil, p.errorf("missing closing }")
	}
	return p.g, nil
}

// lex splits one line into tokens.
func (p *parser) lex(line string) error {
	p.toks, p.pos = p.toks[:0], 0
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			return nil
		case c == '"':
			j := i + 1
			for j < len(line) && line[j] != '"' {
				if line[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(line) {
				return p.errorf("unterminated string")
			}
			s, err := strconv.Unquote(line[i : j+1])
			if err != nil {
				return p.errorf("bad string %s", line[i:j+1])
			}
			p.toks = append(p.toks, token{tkString, s})
			i = j + 1
		case isIdentStart(c):
			j := i + 1
			for j < len(line) && isIdentChar(line[j]) {
				j++
			}
			p.toks = append(p.toks, token{tkIdent, line[i:j]})
			i = j
		case c == '-' || c == '.' || '0' <= c && c <= '9':
			j := i + 1
			for j < len(line) {
				d := line[j]
				if isIdentChar(d) || d == '.' || (d == '+' || d == '-') && strings.ContainsRune("eEpP", rune(line[j-1])) {
					j++
					continue
				}
				break
			}
			p.toks = append(p.toks, token{tkNumber, line[i:j]})
			i = j
		case strings.IndexByte("(){}[],=:", c) >= 0:
			p.toks = append(p.toks, token{tkPunct, line[i : i+1]})
			i++
		default:
			return p.errorf("unexpected character %q", line[i:])
		}
	}
	return nil
}

func isIdentStart(c byte) bool { return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isIdentChar(c byte) bool  { return isIdentStart(c) || '0' <= c && c <= '9' }

// next returns the next token of the line (kind 0 at its end).
func (p *parser) next() token {
	if p.pos >= len(p.toks) {
		return token{}
	}
	t := p.toks[p.pos]
	p.pos++
	return t
}

func (p *parser) peekPunct(s string) bool {
	return p.pos < len(p.toks) && p.toks[p.pos].kind == tkPunct && p.toks[p.pos].text == s
}

// expect consumes a punctuation or keyword token.
func (p *parser) expect(kind tokKind, s string) error {
	t := p.next()
	if t.kind != kind || t.text != s {
		return p.errorf("want %q, got %v", s, t)
	}
	return nil
}

// end checks that the line has no tokens left.
func (p *parser) end() error {
	if p.pos < len(p.toks) {
		return p.errorf("unexpected %v at the end of the line", p.toks[p.pos])
	}
	return nil
}

// header parses `graph "name" {`.
func (p *parser) header() error {
	if err := p.expect(tkIdent, "graph"); err != nil {
		return err
	}
	name := p.next()
	if name.kind != tkString {
		return p.errorf("want the graph's quoted name, got %v", name)
	}
	if err := p.expect(tkPunct, "{"); err != nil {
		return err
	}
	p.g = &Graph{Name: name.text}
	return p.end()
}

// item parses one line of the body: a cache, a value or an output.
func (p *parser) item() error {
	t := p.next()
	switch {
	case t.kind == tkIdent && t.text == "cache":
		return p.cache()
	case t.kind == tkIdent && t.text == "output":
		return p.output()
	case t.kind == tkIdent && isLabel(t.text):
		return p.value(t.text)
	}
	return p.errorf("want a cache, a value or an output, got %v", t)
}

// isLabel reports whether s is v<digits>.
func isLabel(s string) bool {
	if len(s) < 2 || s[0] != 'v' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// cache parses `cache 0 = kv layer=0 f32 [[2, 32], [2, 32]]` (after "cache").
func (p *parser) cache() error {
	idx, err := p.int("cache index")
	if err != nil {
		return err
	}
	if idx != int64(len(p.g.Caches)) {
		return p.errorf("cache %d declared out of order (want cache %d)", idx, len(p.g.Caches))
	}
	if err := p.expect(tkPunct, "="); err != nil {
		return err
	}
	var c CacheSpec
	kind := p.next()
	for k, name := range cacheKindNames {
		if kind.kind == tkIdent && kind.text == name {
			c.Kind = k
		}
	}
	if c.Kind == 0 {
		return p.errorf("unknown cache kind %v", kind)
	}
	if err := p.expect(tkIdent, "layer"); err != nil {
		return err
	}
	if err := p.expect(tkPunct, "="); err != nil {
		return err
	}
	layer, err := p.int("layer")
	if err != nil {
		return err
	}
	if int64(int(layer)) != layer {
		return p.errorf("layer %d out of range", layer)
	}
	c.Layer = int(layer)
	if c.DType, err = p.dtype(); err != nil {
		return err
	}
	if err := p.expect(tkPunct, "["); err != nil {
		return err
	}
	for !p.peekPunct("]") {
		if len(c.Entries) > 0 {
			if err := p.expect(tkPunct, ","); err != nil {
				return err
			}
		}
		sh, err := p.shape()
		if err != nil {
			return err
		}
		c.Entries = append(c.Entries, sh)
	}
	p.pos++
	if err := p.end(); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return p.errorf("cache %d: %v", idx, err)
	}
	p.g.Caches = append(p.g.Caches, c)
	return nil
}

// output parses `output "logits" = v2` (after "output").
func (p *parser) output() error {
	name := p.next()
	if name.kind != tkString {
		return p.errorf("want the output's quoted name, got %v", name)
	}
	if err := p.expect(tkPunct, "="); err != nil {
		return err
	}
	v, err := p.ref()
	if err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	for _, o := range p.g.Outputs {
		if o.Name == name.text {
			return p.errorf("output %q declared twice", name.text)
		}
	}
	p.g.Outputs = append(p.g.Outputs, Output{Name: name.text, Value: v})
	return nil
}

// ref parses a label and returns the value defined with it.
func (p *parser) ref() (*Value, error) {
	t := p.next()
	if t.kind != tkIdent || !isLabel(t.text) {
		return nil, p.errorf("want a value label (v<N>), got %v", t)
	}
	v, ok := p.labels[t.text]
	if !ok {
		return nil, p.errorf("value %s is not defined on an earlier line", t.text)
	}
	return v, nil
}

// value parses `v3 = rms_norm(v2, v1) {eps=1e-06} : f32[T, 64]` after the label.
func (p *parser) value(lab string) error {
	if _, dup := p.labels[lab]; dup {
		return p.errorf("value %s defined twice", lab)
	}
	if err := p.expect(tkPunct, "="); err != nil {
		return err
	}
	name := p.next()
	if name.kind != tkIdent {
		return p.errorf("want an op name, got %v", name)
	}
	op, err := ParseOp(name.text)
	if err != nil {
		return p.errorf("%v", err)
	}
	if err := p.expect(tkPunct, "("); err != nil {
		return err
	}
	var args []*Value
	for !p.peekPunct(")") {
		if len(args) > 0 {
			if err := p.expect(tkPunct, ","); err != nil {
				return err
			}
		}
		a, err := p.ref()
		if err != nil {
			return err
		}
		args = append(args, a)
	}
	p.pos++
	var attrs []Attr
	if p.peekPunct("{") {
		p.pos++
		for !p.peekPunct("}") {
			if len(attrs) > 0 {
				if err := p.expect(tkPunct, ","); err != nil {
					return err
				}
			}
			at, err := p.attr()
			if err != nil {
				return err
			}
			attrs = append(attrs, at)
		}
		p.pos++
	}
	if err := p.expect(tkPunct, ":"); err != nil {
		return err
	}
	dt, err := p.dtype()
	if err != nil {
		return err
	}
	sh, err := p.shape()
	if err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	if _, retired := op.Retired(); retired { // text written before the op was retired
		up, a, err := Upgrade(op, attrs)
		if err != nil {
			return p.errorf("%v", err)
		}
		op, attrs = up, a
	}
	v, err := p.g.NewValue(op, dt, sh, args, attrs...)
	if err != nil {
		if lab != fmt.Sprintf("v%d", len(p.g.Values)) {
			return p.errorf("%s (value %d): %v", lab, len(p.g.Values), err)
		}
		return p.errorf("%v", err)
	}
	p.labels[lab] = v
	return nil
}

// attr parses `key=value`: an integer, a float (with '.' or an exponent, or
// inf/nan), a quoted string or an integer list.
func (p *parser) attr() (Attr, error) {
	key := p.next()
	if key.kind != tkIdent {
		return Attr{}, p.errorf("want an attribute name, got %v", key)
	}
	if err := p.expect(tkPunct, "="); err != nil {
		return Attr{}, err
	}
	t := p.next()
	switch {
	case t.kind == tkString:
		return Str(key.text, t.text), nil
	case t.kind == tkIdent && (t.text == "inf" || t.text == "nan"):
		f, _ := strconv.ParseFloat(t.text, 64)
		return Float(key.text, f), nil
	case t.kind == tkNumber && isInt(t.text):
		n, err := strconv.ParseInt(t.text, 10, 64)
		if err != nil {
			return Attr{}, p.errorf("attribute %s: integer %s out of range", key.text, t.text)
		}
		return Int(key.text, n), nil
	case t.kind == tkNumber:
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return Attr{}, p.errorf("attribute %s: bad number %s", key.text, t.text)
		}
		return Float(key.text, f), nil
	case t.kind == tkPunct && t.text == "[":
		list := []int64{}
		for !p.peekPunct("]") {
			if len(list) > 0 {
				if err := p.expect(tkPunct, ","); err != nil {
					return Attr{}, err
				}
			}
			n, err := p.int("list element")
			if err != nil {
				return Attr{}, err
			}
			list = append(list, n)
		}
		p.pos++
		return Ints(key.text, list...), nil
	}
	return Attr{}, p.errorf("attribute %s: want a value, got %v", key.text, t)
}

// isInt reports whether s is -?[0-9]+.
func isInt(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// int parses a decimal integer token.
func (p *parser) int(what string) (int64, error) {
	t := p.next()
	if t.kind != tkNumber || !isInt(t.text) {
		return 0, p.errorf("want an integer %s, got %v", what, t)
	}
	n, err := strconv.ParseInt(t.text, 10, 64)
	if err != nil {
		return 0, p.errorf("%s %s out of range", what, t.text)
	}
	return n, nil
}

func (p *parser) dtype() (DType, error) {
	t := p.next()
	if t.kind != tkIdent {
		return DInvalid, p.errorf("want a dtype, got %v", t)
	}
	dt, err := ParseDType(t.text)
	if err != nil {
		return DInvalid, p.errorf("%v", err)
	}
	return dt, nil
}

// shape parses `[T, 4, 32]`; sizes are non-negative, T and S symbolic.
func (p *parser) shape() (Shape, error) {
	if err := p.expect(tkPunct, "["); err != nil {
		return nil, err
	}
	var sh Shape
	for !p.peekPunct("]") {
		if len(sh) > 0 {
			if err := p.expect(tkPunct, ","); err != nil {
				return nil, err
			}
		}
		t := p.next()
		switch {
		case t.kind == tkIdent && t.text == "T":
			sh = append(sh, T)
		case t.kind == tkIdent && t.text == "S":
			sh = append(sh, S)
		case t.kind == tkNumber && isInt(t.text) && t.text[0] != '-':
			n, err := strconv.ParseInt(t.text, 10, 64)
			if err != nil {
				return nil, p.errorf("dimension %s out of range", t.text)
			}
			sh = append(sh, Dim(n))
		default:
			return nil, p.errorf("want a dimension (a size, T or S), got %v", t)
		}
	}
	p.pos++
	if err := sh.validate(); err != nil {
		return nil, p.errorf("%v", err)
	}
	return sh, nil
}
