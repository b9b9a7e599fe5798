package toolcall

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/inference-pio/pio/grammar"
)

// Force is what a request's tool_choice forces: tool calls, and nothing
// else, in the model's own markup.
type Force struct {
	// Name, when set, is the one function to call (a named tool_choice);
	// otherwise each call picks one of the tools ("required").
	Name string
	// One allows exactly one call (parallel_tool_calls false, or a named
	// function); otherwise one or more.
	One bool
}

// SchemaError is a tool definition Grammar cannot enforce: its parameters
// use a JSON Schema keyword the grammar does not support, or, in the
// XML-argument formats, a parameter whose value the parser could not read
// back as the schema's type.
type SchemaError struct {
	Tool int // index among the tools
	Err  error
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("tools[%d].function.parameters: %v", e.Tool, e.Err)
}

func (e *SchemaError) Unwrap() error { return e.Err }

// tool is one OpenAI tool definition as Grammar reads it.
type tool struct {
	index  int
	name   string
	params json.RawMessage // the parameters schema; nil when absent
}

func readTools(tools []json.RawMessage) ([]tool, error) {
	var out []tool
	for i, raw := range tools {
		type fn struct {
			Name       string          `json:"name"`
			Parameters json.RawMessage `json:"parameters"`
		}
		var t struct {
			fn
			Function *fn `json:"function"`
		}
		if err := json.Unmarshal(raw, &t); err != nil {
			return nil, fmt.Errorf("toolcall: tools[%d]: %v", i, err)
		}
		f := t.fn
		if t.Function != nil {
			f = *t.Function
		}
		if !validName(f.Name) {
			return nil, fmt.Errorf("toolcall: tools[%d]: the function name %q cannot be written in a tool call", i, f.Name)
		}
		if string(f.Parameters) == "null" {
			f.Parameters = nil
		}
		out = append(out, tool{index: i, name: f.Name, params: f.Parameters})
	}
	return out, nil
}

// Grammar returns the grammar of an answer that is tool calls and nothing
// else, in format's markup (the names New takes), each call naming one of
// tools (OpenAI definitions) or force.Name, with arguments valid under
// that tool's parameters schema, such that the format's parser reads them
// back as those calls:
//
//   - qwen3/hermes: <tool_call>\n{"name": "NAME", "arguments": {...}}\n</tool_call>
//     (calls separated by "\n"), arguments by grammar.SchemaToGBNF;
//   - qwen3-coder: <tool_call>\n<function=NAME>\n<parameter=K>\nV\n</parameter>\n…</function>\n</tool_call>;
//   - glm47: <tool_call>NAME<arg_key>K</arg_key><arg_value>V</arg_value>…</tool_call>.
//
// In the XML-argument formats the parameters must be an object schema
// with properties: each property is written in the schema's order,
// required ones always, others optionally, no others. A property of type
// "string" is its raw text (no markup that would end the value: for
// Qwen3-Coder </parameter>, <parameter=, </function> and </tool_call>, for
// GLM </arg_value> and </tool_call>), limited by enum or const, or by
// minLength/maxLength (then without any "<"); a
// property of one other type (integer, number, boolean, object, array) is
// JSON under its schema, as the parsers convert it by the schema's type.
// Anything else (string patterns or formats, type lists, anyOf, no type)
// is a *SchemaError naming the property, as is every unsupported JSON
// Schema keyword in any format.
func Grammar(format string, tools []json.RawMessage, force Force) (*grammar.Grammar, error) {
	src, err := GrammarSource(format, tools, force)
	if err != nil {
		return nil, err
	}
	return grammar.Parse(src)
}

// GrammarSource is Grammar's GBNF text.
func GrammarSource(format string, tools []json.RawMessage, force Force) (string, error) {
	ts, err := readTools(tools)
	if err != nil {
		return "", err
	}
	if force.Name != "" {
		i := slices.IndexFunc(ts, func(t tool) bool { return t.name == force.Name })
		if i < 0 {
			return "", fmt.Errorf("toolcall: the function %q is not among the tools", force.Name)
		}
		ts = ts[i : i+1]
	}
	if len(ts) == 0 {
		return "", fmt.Errorf("toolcall: no tools to call")
	}
	var b strings.Builder
	var calls []string
	for k, t := range ts {
		p := fmt.Sprintf("t%d-", k)
		var body string
		var err error
		switch format {
		case "qwen3", "hermes":
			body, err = hermesCall(&b, p, t)
		case "qwen3-coder":
			body, err = coderCall(&b, p, t)
		case "glm47":
			body, err = glmCall(&b, p, t)
		default:
			return "", fmt.Errorf("toolcall: unknown format %q (known: qwen3, hermes, glm47, qwen3-coder)", format)
		}
		if err != nil {
			return "", &SchemaError{Tool: t.index, Err: err}
		}
		fmt.Fprintf(&b, "%scall ::= %s\n", p, body)
		calls = append(calls, p+"call")
	}
	fmt.Fprintf(&b, "call ::= %s\n", strings.Join(calls, " | "))
	root := "root ::= call\n"
	if !force.One && force.Name == "" {
		root = "root ::= call ( \"\\n\" call )*\n"
	}
	return root + b.String(), nil
}

// hermesCall: {"name": "NAME", "arguments": ARGS} inside <tool_call>\n…\n</tool_call>.
func hermesCall(b *strings.Builder, p string, t tool) (string, error) {
	params := t.params
	if params == nil {
		params = json.RawMessage(`{"type":"object"}`)
	}
	src, err := grammar.SchemaToGBNF(params)
	if err != nil {
		return "", err
	}
	b.WriteString(jsonRules(src, p))
	head := `{"name": ` + jsonString(t.name) + `, "arguments": `
	return gbnfLiteral("<tool_call>\n"+head) + " " + p + "root " + gbnfLiteral("}\n</tool_call>"), nil
}

// xmlParam is one property of a tool in the XML-argument formats.
type xmlParam struct {
	key      string
	required bool
	rule     string // the value's rule
}

// xmlParams defines the value rules of t's properties; stops are the
// markup a raw string value must not contain.
func xmlParams(b *strings.Builder, p string, t tool, stops []string) ([]xmlParam, error) {
	if t.params == nil {
		return nil, nil
	}
	var s struct {
		Type                 json.RawMessage `json:"type"`
		Properties           json.RawMessage `json:"properties"`
		Required             []string        `json:"required"`
		AdditionalProperties json.RawMessage `json:"additionalProperties"`
	}
	if err := json.Unmarshal(t.params, &s); err != nil {
		return nil, err
	}
	var other map[string]json.RawMessage
	_ = json.Unmarshal(t.params, &other)
	for k := range other {
		switch k {
		case "type", "properties", "required", "additionalProperties", "title", "description", "$schema", "$comment", "examples", "default":
		default:
			return nil, fmt.Errorf("the keyword %q is not supported in this tool-call format (an object of properties is)", k)
		}
	}
	if len(s.Type) > 0 && string(s.Type) != `"object"` {
		return nil, fmt.Errorf(`type must be "object"`)
	}
	keys, props, err := orderedObject(s.Properties)
	if err != nil {
		return nil, fmt.Errorf("properties: %v", err)
	}
	for _, r := range s.Required {
		if !slices.Contains(keys, r) {
			return nil, fmt.Errorf("required property %q has no schema in properties", r)
		}
	}
	var out []xmlParam
	for i, k := range keys {
		if !validName(k) {
			return nil, fmt.Errorf("property %q: the name cannot be written in this tool-call format", k)
		}
		rule := fmt.Sprintf("%sv%d", p, i)
		body, err := xmlValue(b, rule+"-", props[i], stops)
		if err != nil {
			return nil, fmt.Errorf("properties.%s: %v", k, err)
		}
		fmt.Fprintf(b, "%s ::= %s\n", rule, body)
		out = append(out, xmlParam{key: k, required: slices.Contains(s.Required, k), rule: rule})
	}
	return out, nil
}

// xmlValue returns the rule body of a property's value.
func xmlValue(b *strings.Builder, p string, prop json.RawMessage, stops []string) (string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(prop, &m); err != nil {
		return "", fmt.Errorf("a property schema must be an object")
	}
	var typ string
	if json.Unmarshal(m["type"], &typ) != nil || typ == "" {
		return "", fmt.Errorf("only a property of one type (\"type\" a string) can be written in this tool-call format")
	}
	if typ != "string" {
		switch typ {
		case "integer", "number", "boolean", "object", "array":
		default:
			return "", fmt.Errorf("type %q cannot be written in this tool-call format", typ)
		}
		src, err := grammar.SchemaToGBNF(prop)
		if err != nil {
			return "", err
		}
		b.WriteString(jsonRules(src, p))
		return p + "root", nil
	}
	var options []string
	minLen, maxLen := -1, -1
	for k, v := range m {
		switch k {
		case "type", "title", "description", "default", "examples", "$comment":
		case "minLength", "maxLength":
			var n int
			if json.Unmarshal(v, &n) != nil || n < 0 {
				return "", fmt.Errorf("%s must be a non-negative integer", k)
			}
			if k == "minLength" {
				minLen = n
			} else {
				maxLen = n
			}
		case "enum":
			var l []any
			if json.Unmarshal(v, &l) != nil {
				return "", fmt.Errorf("enum must be a list")
			}
			for _, x := range l {
				if s, ok := x.(string); ok {
					options = append(options, s)
				}
			}
			if len(options) == 0 {
				return "", fmt.Errorf("enum has no string")
			}
		case "const":
			var s string
			if json.Unmarshal(v, &s) != nil {
				return "", fmt.Errorf("const of a string property must be a string")
			}
			options = append(options, s)
		default:
			return "", fmt.Errorf("the keyword %q of a string property is not supported in this tool-call format (its value is raw text)", k)
		}
	}
	if options != nil {
		var alts []string
		for _, o := range options {
			n := utf8.RuneCountInString(o)
			if containsAny(o, stops) || n < minLen || maxLen >= 0 && n > maxLen {
				continue
			}
			alts = append(alts, gbnfLiteral(o))
		}
		if len(alts) == 0 {
			return "", fmt.Errorf("no allowed value can be written in this tool-call format")
		}
		slices.Sort(alts)
		alts = slices.Compact(alts)
		return "( " + strings.Join(alts, " | ") + " )", nil
	}
	if minLen >= 0 || maxLen >= 0 {
		// Counted characters, none of them "<" (every stop starts with
		// one), so no markup can be spelled.
		if maxLen >= 0 && minLen > maxLen {
			return "", fmt.Errorf("minLength is over maxLength")
		}
		rep := fmt.Sprintf("{%d,}", max(minLen, 0))
		if maxLen >= 0 {
			rep = fmt.Sprintf("{%d,%d}", max(minLen, 0), maxLen)
		}
		return `[^<]` + rep, nil
	}
	b.WriteString(avoidRules(p+"raw", stops))
	return p + "raw", nil
}

func containsAny(s string, subs []string) bool {
	return slices.ContainsFunc(subs, func(x string) bool { return strings.Contains(s, x) })
}

// xmlArgs is the rule body of the parameters in order: required ones
// always, the others optionally; each written by one(key, rule).
func xmlArgs(ps []xmlParam, one func(key, rule string) string) string {
	var parts []string
	for _, x := range ps {
		s := one(x.key, x.rule)
		if !x.required {
			s = "( " + s + " )?"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// coderCall: Qwen3-Coder's <function=NAME> block, as its template writes it.
func coderCall(b *strings.Builder, p string, t tool) (string, error) {
	ps, err := xmlParams(b, p, t, []string{parameterClose, parameterOpen, functionClose, callClose})
	if err != nil {
		return "", err
	}
	args := xmlArgs(ps, func(k, rule string) string {
		return gbnfLiteral(parameterOpen+k+">\n") + " " + rule + " " + gbnfLiteral("\n"+parameterClose+"\n")
	})
	return strings.TrimSpace(gbnfLiteral(callOpen+"\n"+functionOpen+t.name+">\n") + " " + args + " " + gbnfLiteral(functionClose+"\n"+callClose)), nil
}

// glmCall: GLM-4.7's NAME<arg_key>…</arg_key><arg_value>…</arg_value>.
func glmCall(b *strings.Builder, p string, t tool) (string, error) {
	ps, err := xmlParams(b, p, t, []string{argValueClose, callClose})
	if err != nil {
		return "", err
	}
	args := xmlArgs(ps, func(k, rule string) string {
		return gbnfLiteral(argKeyOpen+k+argKeyClose+argValueOpen) + " " + rule + " " + gbnfLiteral(argValueClose)
	})
	return strings.TrimSpace(gbnfLiteral(callOpen+t.name) + " " + args + " " + gbnfLiteral(callClose)), nil
}

// orderedObject reads a JSON object's keys in order and their values.
func orderedObject(raw json.RawMessage) ([]string, []json.RawMessage, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil, nil
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, nil, fmt.Errorf("not an object")
	}
	var keys []string
	var vals []json.RawMessage
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		k, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		if i := slices.Index(keys, k); i >= 0 {
			vals[i] = v
			continue
		}
		keys, vals = append(keys, k), append(vals, v)
	}
	return keys, vals, nil
}

// gbnfLiteral writes s as a GBNF string literal.
func gbnfLiteral(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// gbnfClassChar writes c (ASCII) for use inside a GBNF character class.
func gbnfClassChar(c byte) string {
	switch c {
	case '\\', ']', '[', '-', '^', '"':
		return `\` + string(c)
	case '\n':
		return `\n`
	}
	if c < 0x20 || c == 0x7f {
		return fmt.Sprintf(`\x%02X`, c)
	}
	return string(c)
}

// avoidRules defines name, the rule of any text (valid UTF-8, possibly
// empty) that contains none of stops (ASCII strings), as the states of an
// Aho-Corasick automaton over stops, one rule per state.
func avoidRules(name string, stops []string) string {
	// The trie of stops: state 0 is the root; a state is a prefix.
	prefixes := []string{""}
	index := map[string]int{"": 0}
	for _, s := range stops {
		for i := 1; i <= len(s); i++ {
			if _, ok := index[s[:i]]; !ok {
				index[s[:i]] = len(prefixes)
				prefixes = append(prefixes, s[:i])
			}
		}
	}
	// next(state, c): the longest prefix of a stop that is a suffix of
	// prefixes[state]+c; -1 when that text contains a whole stop.
	next := func(st int, c byte) int {
		t := prefixes[st] + string(c)
		if containsAny(t, stops) {
			return -1
		}
		for i := 0; i <= len(t); i++ {
			if j, ok := index[t[i:]]; ok {
				return j
			}
		}
		return 0
	}
	var alphabet []byte
	for _, s := range stops {
		for i := 0; i < len(s); i++ {
			if !slices.Contains(alphabet, s[i]) {
				alphabet = append(alphabet, s[i])
			}
		}
	}
	slices.Sort(alphabet)
	var b strings.Builder
	var other strings.Builder // every character not in the alphabet goes back to the root
	other.WriteString("[^")
	for _, c := range alphabet {
		other.WriteString(gbnfClassChar(c))
	}
	other.WriteString("]")
	rule := func(st int) string { return fmt.Sprintf("%s-s%d", name, st) }
	fmt.Fprintf(&b, "%s ::= %s\n", name, rule(0))
	for st := range prefixes {
		if containsAny(prefixes[st], stops) {
			continue // a whole stop: no rule
		}
		alts := []string{other.String() + " " + rule(0)}
		for _, c := range alphabet {
			if n := next(st, c); n >= 0 {
				alts = append(alts, gbnfLiteral(string(c))+" "+rule(n))
			}
		}
		alts = append(alts, `""`)
		fmt.Fprintf(&b, "%s ::= %s\n", rule(st), strings.Join(alts, " | "))
	}
	return b.String()
}

// jsonRules is the GBNF of a JSON value (grammar.SchemaToGBNF) with p
// before its rule names and no raw "<" inside strings: a JSON string may
// still hold "<", written \u003c, but no text of it can spell the markup
// that would end the call or the value before its end.
func jsonRules(src, p string) string {
	lines := strings.Split(prefixRules(src, p), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, p+"char ::= ") || strings.HasPrefix(l, p+"kchar ::= ") {
			lines[i] = strings.Replace(l, `[^"\\\x00-\x1F]`, `[^"\\\x00-\x1F<]`, 1)
		}
	}
	return strings.Join(lines, "\n")
}

// prefixRules puts p before every rule name of the GBNF text src.
func prefixRules(src, p string) string {
	var b strings.Builder
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '"' || c == '[':
			end := byte('"')
			if c == '[' {
				end = ']'
			}
			j := i + 1
			for j < len(src) && src[j] != end {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			j = min(j+1, len(src))
			b.WriteString(src[i:j])
			i = j
		case c == '{':
			j := strings.IndexByte(src[i:], '}')
			if j < 0 {
				j = len(src) - i - 1
			}
			b.WriteString(src[i : i+j+1])
			i += j + 1
		case c == '#':
			j := strings.IndexByte(src[i:], '\n')
			if j < 0 {
				j = len(src) - i
			}
			i += j
		case isGBNFName(c):
			j := i
			for j < len(src) && isGBNFName(src[j]) {
				j++
			}
			b.WriteString(p)
			b.WriteString(src[i:j])
			i = j
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

func isGBNFName(c byte) bool {
	return c == '-' || c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
