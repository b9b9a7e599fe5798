package grammar

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// A SyntaxError is a grammar that does not parse, at a 1-based line and
// column (in bytes) of its text.
type SyntaxError struct {
	Line, Col int
	Msg       string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("grammar: line %d, column %d: %s", e.Line, e.Col, e.Msg)
}

// maxRepeat bounds the counts of {m,n}: each repetition is a copy of the
// repeated expression in the compiled grammar.
const maxRepeat = 10000

// The parsed form of a grammar, before it is lowered to elements.
type nodeKind uint8

const (
	nLit    nodeKind = iota // lit: bytes in sequence
	nClass                  // ranges (negated: the complement)
	nRef                    // name
	nGroup                  // alts
	nRepeat                 // alts[0][0] repeated min..max times (max < 0: unbounded)
)

type node struct {
	kind     nodeKind
	pos      int // byte offset, for errors
	lit      []byte
	ranges   []runeRange
	negated  bool
	name     string
	alts     [][]*node
	min, max int
}

type runeRange struct{ lo, hi rune }

type ruleDef struct {
	name string
	pos  int
	alts [][]*node
}

type parser struct {
	src   string
	i     int
	depth int
}

func (p *parser) errAt(pos int, format string, args ...any) error {
	line, col := 1, 1
	for j := 0; j < pos && j < len(p.src); j++ {
		if p.src[j] == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return &SyntaxError{Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
}

// space skips blanks and comments; newlines only where newlineOK.
func (p *parser) space(newlineOK bool) {
	for p.i < len(p.src) {
		c := p.src[p.i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			p.i++
		case c == '\n' && newlineOK:
			p.i++
		case c == '#':
			for p.i < len(p.src) && p.src[p.i] != '\n' {
				p.i++
			}
		default:
			return
		}
	}
}

func isNameByte(c byte) bool {
	return c == '-' || c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func (p *parser) name() string {
	start := p.i
	for p.i < len(p.src) && isNameByte(p.src[p.i]) {
		p.i++
	}
	return p.src[start:p.i]
}

// parseGBNF parses a grammar's text into its rules, in order of definition.
func parseGBNF(src string) ([]ruleDef, error) {
	p := &parser{src: src}
	var defs []ruleDef
	for {
		p.space(true)
		if p.i >= len(src) {
			break
		}
		start := p.i
		name := p.name()
		if name == "" {
			return nil, p.errAt(p.i, "expected a rule name, found %q", p.peekRune())
		}
		p.space(false)
		if !hasPrefixAt(src, p.i, "::=") {
			return nil, p.errAt(p.i, "expected ::= after rule name %q", name)
		}
		p.i += 3
		p.space(false)
		alts, err := p.alternatives(false)
		if err != nil {
			return nil, err
		}
		if p.i < len(src) && src[p.i] != '\n' {
			return nil, p.errAt(p.i, "unexpected %q in rule %q", p.peekRune(), name)
		}
		defs = append(defs, ruleDef{name: name, pos: start, alts: alts})
	}
	if len(defs) == 0 {
		return nil, p.errAt(0, "empty grammar: no rules")
	}
	return defs, nil
}

func hasPrefixAt(s string, i int, prefix string) bool {
	return len(s)-i >= len(prefix) && s[i:i+len(prefix)] == prefix
}

func (p *parser) peekRune() string {
	if p.i >= len(p.src) {
		return "end of text"
	}
	r, _ := utf8.DecodeRuneInString(p.src[p.i:])
	return string(r)
}

func (p *parser) alternatives(nested bool) ([][]*node, error) {
	var alts [][]*node
	for {
		seq, err := p.sequence(nested)
		if err != nil {
			return nil, err
		}
		alts = append(alts, seq)
		if p.i < len(p.src) && p.src[p.i] == '|' {
			p.i++
			p.space(nested)
			continue
		}
		return alts, nil
	}
}

func (p *parser) sequence(nested bool) ([]*node, error) {
	var seq []*node
	for p.i < len(p.src) {
		start := p.i
		c := p.src[p.i]
		var n *node
		switch {
		case c == '"':
			p.i++
			var lit []byte
			for {
				if p.i >= len(p.src) || p.src[p.i] == '\n' {
					return nil, p.errAt(start, "unterminated string literal")
				}
				if p.src[p.i] == '"' {
					p.i++
					break
				}
				r, err := p.char()
				if err != nil {
					return nil, err
				}
				lit = utf8.AppendRune(lit, r)
			}
			n = &node{kind: nLit, pos: start, lit: lit}
		case c == '[':
			var err error
			if n, err = p.class(); err != nil {
				return nil, err
			}
		case c == '.':
			p.i++
			n = &node{kind: nClass, pos: start, negated: true}
		case c == '(':
			p.i++
			if p.depth++; p.depth > 100 {
				return nil, p.errAt(start, "groups nested more than 100 deep")
			}
			p.space(true)
			alts, err := p.alternatives(true)
			if err != nil {
				return nil, err
			}
			p.depth--
			if p.i >= len(p.src) || p.src[p.i] != ')' {
				return nil, p.errAt(start, "unclosed group: expected ) at %s", p.where())
			}
			p.i++
			n = &node{kind: nGroup, pos: start, alts: alts}
		case isNameByte(c):
			n = &node{kind: nRef, pos: start, name: p.name()}
			// A name followed by ::= starts the next rule: this one ended.
			save := p.i
			p.space(false)
			if hasPrefixAt(p.src, p.i, "::=") {
				return nil, p.errAt(start, "rule %q starts before the previous rule ended (missing newline?)", n.name)
			}
			p.i = save
		default:
			return seq, nil
		}
		p.space(nested)
		for {
			r, ok, err := p.repeat(n)
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
			n = r
			p.space(nested)
		}
		seq = append(seq, n)
	}
	return seq, nil
}

func (p *parser) where() string {
	if p.i >= len(p.src) {
		return "end of text"
	}
	return strconv.Quote(p.peekRune())
}

// repeat reads a *, +, ? or {m,n} after n.
func (p *parser) repeat(n *node) (*node, bool, error) {
	if p.i >= len(p.src) {
		return nil, false, nil
	}
	start := p.i
	min, max := 0, 0
	switch p.src[p.i] {
	case '*':
		min, max = 0, -1
		p.i++
	case '+':
		min, max = 1, -1
		p.i++
	case '?':
		min, max = 0, 1
		p.i++
	case '{':
		p.i++
		p.space(false)
		var ok bool
		if min, ok = p.number(); !ok {
			return nil, false, p.errAt(p.i, "expected a count after {")
		}
		max = min
		p.space(false)
		if p.i < len(p.src) && p.src[p.i] == ',' {
			p.i++
			p.space(false)
			if max, ok = p.number(); !ok {
				max = -1
			}
			p.space(false)
		}
		if p.i >= len(p.src) || p.src[p.i] != '}' {
			return nil, false, p.errAt(start, "unclosed repetition: expected } at %s", p.where())
		}
		p.i++
		if min > maxRepeat || max > maxRepeat {
			return nil, false, p.errAt(start, "repetition count over %d", maxRepeat)
		}
		if max >= 0 && max < min {
			return nil, false, p.errAt(start, "repetition {%d,%d}: maximum below minimum", min, max)
		}
	default:
		return nil, false, nil
	}
	return &node{kind: nRepeat, pos: start, alts: [][]*node{{n}}, min: min, max: max}, true, nil
}

func (p *parser) number() (int, bool) {
	start := p.i
	for p.i < len(p.src) && p.src[p.i] >= '0' && p.src[p.i] <= '9' && p.i-start < 6 {
		p.i++
	}
	if p.i == start {
		return 0, false
	}
	v, _ := strconv.Atoi(p.src[start:p.i])
	return v, true
}

func (p *parser) class() (*node, error) {
	start := p.i
	p.i++ // [
	n := &node{kind: nClass, pos: start}
	if p.i < len(p.src) && p.src[p.i] == '^' {
		n.negated = true
		p.i++
	}
	for {
		if p.i >= len(p.src) || p.src[p.i] == '\n' {
			return nil, p.errAt(start, "unterminated character class")
		}
		if p.src[p.i] == ']' {
			p.i++
			return n, nil
		}
		lo, err := p.char()
		if err != nil {
			return nil, err
		}
		hi := lo
		if p.i+1 < len(p.src) && p.src[p.i] == '-' && p.src[p.i+1] != ']' {
			p.i++
			at := p.i
			if hi, err = p.char(); err != nil {
				return nil, err
			}
			if hi < lo {
				return nil, p.errAt(at, "class range %q-%q is reversed", lo, hi)
			}
		}
		n.ranges = append(n.ranges, runeRange{lo, hi})
	}
}

// char reads one character of a literal or class, with its escapes.
func (p *parser) char() (rune, error) {
	start := p.i
	if p.src[p.i] != '\\' {
		r, size := utf8.DecodeRuneInString(p.src[p.i:])
		if r == utf8.RuneError && size <= 1 {
			return 0, p.errAt(start, "invalid UTF-8")
		}
		p.i += size
		return r, nil
	}
	p.i++
	if p.i >= len(p.src) {
		return 0, p.errAt(start, "escape at end of text")
	}
	c := p.src[p.i]
	p.i++
	digits := 0
	switch c {
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case '\\', '"', '\'', '[', ']', '-', '^', '/':
		return rune(c), nil
	case 'x':
		digits = 2
	case 'u':
		digits = 4
	case 'U':
		digits = 8
	default:
		return 0, p.errAt(start, "unknown escape \\%c", c)
	}
	if len(p.src)-p.i < digits {
		return 0, p.errAt(start, "escape \\%c needs %d hex digits", c, digits)
	}
	v, err := strconv.ParseUint(p.src[p.i:p.i+digits], 16, 32)
	if err != nil || v > utf8.MaxRune || v >= 0xD800 && v <= 0xDFFF {
		return 0, p.errAt(start, "bad escape %q", p.src[start:p.i+digits])
	}
	p.i += digits
	return rune(v), nil
}
