package grammar

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Regex compiles a regular expression that the whole output must match
// (as vLLM's guided_regex does). The subset: literals, escapes (\d \w \s
// and their negations, \n \r \t \f \v, \xHH, \uHHHH, escaped
// punctuation), classes [...] and [^...], ., groups (...) and (?:...),
// alternation |, quantifiers * + ? {m} {m,} {m,n} (a lazy ? after one is
// accepted and changes nothing: only the language matters), and ^ and $
// at the ends. Lookaround, backreferences and other anchors are errors.
func Regex(pattern string) (*Grammar, error) {
	expr, err := regexToGBNF(pattern, false)
	if err != nil {
		return nil, err
	}
	return Parse("root ::= " + expr + "\n")
}

// Choice compiles a grammar matching exactly one of options.
func Choice(options []string) (*Grammar, error) {
	if len(options) == 0 {
		return nil, fmt.Errorf("grammar: a choice needs at least one option")
	}
	return Parse("root ::= " + choiceExpr(options) + "\n")
}

func choiceExpr(options []string) string {
	alts := make([]string, len(options))
	for i, o := range options {
		alts[i] = gbnfLiteral(o)
	}
	return "(" + strings.Join(alts, " | ") + ")"
}

// gbnfLiteral quotes s as a GBNF string literal.
func gbnfLiteral(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		b.WriteString(gbnfChar(r))
	}
	b.WriteByte('"')
	return b.String()
}

// gbnfChar writes one character for a GBNF literal or class.
func gbnfChar(r rune) string {
	switch {
	case r == '"' || r == '\\' || r == ']' || r == '[' || r == '-' || r == '^':
		return `\` + string(r)
	case r < 0x20 || r == 0x7F:
		return fmt.Sprintf(`\x%02X`, r)
	case r == utf8.RuneError:
		return `\uFFFD`
	}
	return string(r)
}

// gbnfClass writes rune ranges as a GBNF class.
func gbnfClass(rs []runeRange) string {
	if len(rs) == 0 { // matches nothing
		return `[^\x00-\U0010FFFF]`
	}
	var b strings.Builder
	b.WriteByte('[')
	for _, r := range rs {
		b.WriteString(gbnfChar(r.lo))
		if r.hi > r.lo {
			b.WriteByte('-')
			b.WriteString(gbnfChar(r.hi))
		}
	}
	b.WriteByte(']')
	return b.String()
}

// jsonUnescaped is what may appear unescaped in a JSON string.
var jsonUnescaped = complementRanges([]runeRange{{0, 0x1F}, {'"', '"'}, {'\\', '\\'}})

func intersectRanges(a, b []runeRange) []runeRange {
	var out []runeRange
	for _, x := range a {
		for _, y := range b {
			lo, hi := max(x.lo, y.lo), min(x.hi, y.hi)
			if lo <= hi {
				out = append(out, runeRange{lo, hi})
			}
		}
	}
	return normalizeRanges(out)
}

type regexParser struct {
	src  string
	i    int
	json bool // inside a JSON string: characters are written as JSON writes them
	dep  int
}

func (p *regexParser) errorf(format string, args ...any) error {
	return fmt.Errorf("grammar: regex %q at offset %d: %s", p.src, p.i, fmt.Sprintf(format, args...))
}

// regexToGBNF translates a regular expression into a GBNF expression. With
// json set, the expression matches the pattern's strings as the inside of
// a JSON string: quotes, backslashes and control characters are written
// escaped, and classes and . leave out characters JSON must escape.
func regexToGBNF(pattern string, json bool) (string, error) {
	p := &regexParser{src: pattern, json: json}
	if strings.HasPrefix(p.src, "^") {
		p.i = 1
	}
	s, err := p.alternation()
	if err != nil {
		return "", err
	}
	if p.i < len(p.src) && p.src[p.i] == '$' && p.i == len(p.src)-1 {
		p.i++
	}
	if p.i < len(p.src) {
		return "", p.errorf("unexpected %q", p.src[p.i])
	}
	return s, nil
}

func (p *regexParser) alternation() (string, error) {
	var alts []string
	for {
		s, err := p.concat()
		if err != nil {
			return "", err
		}
		alts = append(alts, s)
		if p.i < len(p.src) && p.src[p.i] == '|' {
			p.i++
			continue
		}
		break
	}
	return "(" + strings.Join(alts, " | ") + ")", nil
}

func (p *regexParser) concat() (string, error) {
	var parts []string
	for p.i < len(p.src) {
		c := p.src[p.i]
		if c == '|' || c == ')' {
			break
		}
		if c == '$' && p.i == len(p.src)-1 {
			break
		}
		atom, err := p.atom()
		if err != nil {
			return "", err
		}
		atom, err = p.quantifier(atom)
		if err != nil {
			return "", err
		}
		parts = append(parts, atom)
	}
	if len(parts) == 0 {
		return `""`, nil
	}
	return strings.Join(parts, " "), nil
}

func (p *regexParser) quantifier(atom string) (string, error) {
	for p.i < len(p.src) {
		c := p.src[p.i]
		switch c {
		case '*', '+', '?':
			p.i++
			atom = "(" + atom + ")" + string(c)
		case '{':
			end := strings.IndexByte(p.src[p.i:], '}')
			if end < 0 {
				return "", p.errorf("unclosed {")
			}
			body := p.src[p.i+1 : p.i+end]
			lo, hi, comma := strings.Cut(body, ",")
			m, err1 := strconv.Atoi(lo)
			n := m
			var err2 error
			if comma {
				n = -1
				if hi != "" {
					n, err2 = strconv.Atoi(hi)
				}
			}
			if err1 != nil || err2 != nil || m < 0 || m > maxRepeat || n > maxRepeat || (n >= 0 && n < m) {
				return "", p.errorf("bad repetition {%s}", body)
			}
			p.i += end + 1
			if n < 0 {
				atom = fmt.Sprintf("(%s){%d,}", atom, m)
			} else {
				atom = fmt.Sprintf("(%s){%d,%d}", atom, m, n)
			}
		default:
			return atom, nil
		}
		if p.i < len(p.src) && p.src[p.i] == '?' { // lazy: same language
			p.i++
		}
	}
	return atom, nil
}

func (p *regexParser) atom() (string, error) {
	c := p.src[p.i]
	switch c {
	case '(':
		p.i++
		if strings.HasPrefix(p.src[p.i:], "?:") {
			p.i += 2
		} else if strings.HasPrefix(p.src[p.i:], "?") {
			return "", p.errorf("group flags, lookaround and named groups are not supported")
		}
		if p.dep++; p.dep > 100 {
			return "", p.errorf("groups nested more than 100 deep")
		}
		s, err := p.alternation()
		if err != nil {
			return "", err
		}
		p.dep--
		if p.i >= len(p.src) || p.src[p.i] != ')' {
			return "", p.errorf("missing )")
		}
		p.i++
		return s, nil
	case '[':
		rs, err := p.class()
		if err != nil {
			return "", err
		}
		return p.ranges(rs), nil
	case '.':
		p.i++
		return p.ranges(complementRanges([]runeRange{{'\n', '\n'}, {'\r', '\r'}})), nil
	case '*', '+', '?', '{':
		return "", p.errorf("quantifier %q without an operand", c)
	case '^', '$':
		return "", p.errorf("anchor %q inside the pattern is not supported", c)
	case '\\':
		rs, lit, err := p.escape()
		if err != nil {
			return "", err
		}
		if rs != nil {
			return p.ranges(rs), nil
		}
		return p.literal(lit), nil
	}
	r, size := utf8.DecodeRuneInString(p.src[p.i:])
	p.i += size
	return p.literal(r), nil
}

// ranges writes a class, limited to what a JSON string holds unescaped.
func (p *regexParser) ranges(rs []runeRange) string {
	if p.json {
		rs = intersectRanges(rs, jsonUnescaped)
	}
	return gbnfClass(rs)
}

func (p *regexParser) literal(r rune) string {
	if p.json {
		switch {
		case r == '"' || r == '\\':
			return gbnfLiteral(`\` + string(r))
		case r == '\n':
			return gbnfLiteral(`\n`)
		case r == '\t':
			return gbnfLiteral(`\t`)
		case r == '\r':
			return gbnfLiteral(`\r`)
		case r < 0x20:
			return gbnfLiteral(fmt.Sprintf(`\u%04x`, r))
		}
	}
	return gbnfLiteral(string(r))
}

var (
	digitRanges = []runeRange{{'0', '9'}}
	wordRanges  = []runeRange{{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}}
	spaceRanges = []runeRange{{'\t', '\r'}, {' ', ' '}}
)

// escape reads a backslash escape: a class (rs) or one character.
func (p *regexParser) escape() (rs []runeRange, r rune, err error) {
	p.i++ // backslash
	if p.i >= len(p.src) {
		return nil, 0, p.errorf("trailing backslash")
	}
	c := p.src[p.i]
	p.i++
	switch c {
	case 'd':
		return digitRanges, 0, nil
	case 'w':
		return wordRanges, 0, nil
	case 's':
		return spaceRanges, 0, nil
	case 'D':
		return complementRanges(digitRanges), 0, nil
	case 'W':
		return complementRanges(wordRanges), 0, nil
	case 'S':
		return complementRanges(spaceRanges), 0, nil
	case 'n':
		return nil, '\n', nil
	case 'r':
		return nil, '\r', nil
	case 't':
		return nil, '\t', nil
	case 'f':
		return nil, '\f', nil
	case 'v':
		return nil, '\v', nil
	case 'x', 'u':
		n := 2
		if c == 'u' {
			n = 4
		}
		if len(p.src)-p.i < n {
			return nil, 0, p.errorf("\\%c needs %d hex digits", c, n)
		}
		v, err := strconv.ParseUint(p.src[p.i:p.i+n], 16, 32)
		if err != nil || v >= 0xD800 && v <= 0xDFFF {
			return nil, 0, p.errorf("bad escape \\%c%s", c, p.src[p.i:p.i+n])
		}
		p.i += n
		return nil, rune(v), nil
	}
	if c < 0x80 && !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
		return nil, rune(c), nil
	}
	return nil, 0, p.errorf("unsupported escape \\%c", c)
}

func (p *regexParser) class() ([]runeRange, error) {
	p.i++ // [
	negated := false
	if p.i < len(p.src) && p.src[p.i] == '^' {
		negated = true
		p.i++
	}
	var rs []runeRange
	first := true
	for {
		if p.i >= len(p.src) {
			return nil, p.errorf("missing ]")
		}
		if p.src[p.i] == ']' && !first {
			p.i++
			break
		}
		first = false
		lo, set, err := p.classChar()
		if err != nil {
			return nil, err
		}
		if set != nil {
			rs = append(rs, set...)
			continue
		}
		hi := lo
		if p.i+1 < len(p.src) && p.src[p.i] == '-' && p.src[p.i+1] != ']' {
			p.i++
			var set2 []runeRange
			if hi, set2, err = p.classChar(); err != nil {
				return nil, err
			}
			if set2 != nil || hi < lo {
				return nil, p.errorf("bad class range")
			}
		}
		rs = append(rs, runeRange{lo, hi})
	}
	rs = normalizeRanges(rs)
	if negated {
		rs = complementRanges(rs)
	}
	return rs, nil
}

func (p *regexParser) classChar() (rune, []runeRange, error) {
	if p.src[p.i] == '\\' {
		rs, r, err := p.escape()
		return r, rs, err
	}
	r, size := utf8.DecodeRuneInString(p.src[p.i:])
	p.i += size
	return r, nil, nil
}
