package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// The values a template sees, as Python's would be. gonja keeps a template's own dict literals
// in *exec.Dict, a list of pairs it iterates in order, but a Go map it iterates sorted (for k in
// m) or in Go's random map order (m|items). JSON objects and messages are therefore built as
// *exec.Dict, so that `for k in d`, d|items, d.items()/keys()/values() and tojson follow
// insertion order as Python dicts do, and two renders of one request give one text.

// pyNone is the type of none.
type pyNone struct{}

// none is Python's None where a template is handed one: JSON null, and tools=None when a request
// has no tools (as transformers passes it). It is a typed nil pointer: gonja's `is none`, truth
// test and `== none` see nil, as they do for an undefined name, while the shim's `defined` test
// and `string` filter tell the two apart as Jinja does (None is defined; str(None) is "None").
var none = (*pyNone)(nil)

// dictBuilder builds a dict in insertion order.
type dictBuilder struct {
	pairs []*exec.Pair
	at    map[string]int
}

// set adds k, or replaces its value where it is already there: the last of duplicate JSON keys
// wins, in the first one's place, as in Python.
func (b *dictBuilder) set(k string, v any) {
	if i, ok := b.at[k]; ok {
		b.pairs[i].Value = exec.AsValue(v)
		return
	}
	if b.at == nil {
		b.at = map[string]int{}
	}
	b.at[k] = len(b.pairs)
	b.pairs = append(b.pairs, &exec.Pair{Key: exec.AsValue(k), Value: exec.AsValue(v)})
}

// dict returns the built mapping: a *exec.Dict, or an empty map[string]any when there is no key,
// because gonja's truth test takes every *exec.Dict as true where Python's {} is false.
func (b *dictBuilder) dict() any {
	if len(b.pairs) == 0 {
		return map[string]any{}
	}
	return &exec.Dict{Pairs: b.pairs}
}

// message converts a Message to the dict transformers would see; empty optional fields are absent.
func message(m Message) any {
	var d dictBuilder
	d.set("role", m.Role)
	if m.Parts != nil {
		parts := make([]any, len(m.Parts))
		for i, p := range m.Parts {
			var pd dictBuilder
			pd.set("type", p.Type)
			if p.Type == "text" {
				pd.set("text", p.Text)
			}
			parts[i] = pd.dict()
		}
		d.set("content", parts)
	} else {
		d.set("content", m.Content)
	}
	if m.ReasoningContent != "" {
		d.set("reasoning_content", m.ReasoningContent)
	}
	if len(m.ToolCalls) > 0 {
		calls := make([]any, len(m.ToolCalls))
		for i, c := range m.ToolCalls {
			typ := c.Type
			if typ == "" {
				typ = "function"
			}
			var args any = c.Function.Arguments
			if v, err := decodeJSON([]byte(c.Function.Arguments)); err == nil {
				args = v
			}
			var fn, cd dictBuilder
			fn.set("name", c.Function.Name)
			fn.set("arguments", args)
			if c.ID != "" {
				cd.set("id", c.ID)
			}
			cd.set("type", typ)
			cd.set("function", fn.dict())
			calls[i] = cd.dict()
		}
		d.set("tool_calls", calls)
	}
	if m.ToolCallID != "" {
		d.set("tool_call_id", m.ToolCallID)
	}
	if m.Name != "" {
		d.set("name", m.Name)
	}
	return d.dict()
}

// maxJSONDepth bounds the nesting of a JSON value handed to a template, so that hostile input
// gets an error rather than a deep recursion.
const maxJSONDepth = 512

// decodeJSON parses one JSON value into template values, as json.loads gives them to Jinja:
// objects as ordered dicts (dictBuilder), arrays as []any, integers as int (json.Number beyond
// int64, printed as written), other numbers as float64, null as none. Malformed JSON, trailing
// data and nesting deeper than maxJSONDepth are errors.
func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := jsonValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

// TemplateVars decodes a JSON object into template variables, one a key, each value as
// json.loads gives it to Jinja (decodeJSON): integers stay integers, null is None, objects keep
// their keys' order. It is how chat_template_kwargs reach Options.Extra, as vLLM passes them
// to apply_chat_template. raw that is not one JSON object (null included) is an error.
func TemplateVars(raw []byte) (map[string]any, error) {
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, err
	}
	vars := map[string]any{}
	switch d := v.(type) {
	case *exec.Dict:
		for _, p := range d.Pairs {
			vars[p.Key.String()] = p.Value.Interface()
		}
	case map[string]any: // {}
	default:
		return nil, errors.New("not a JSON object")
	}
	return vars, nil
}

func jsonValue(dec *json.Decoder, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("JSON nested deeper than %d", maxJSONDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			var d dictBuilder
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("object key %v is not a string", kt)
				}
				v, err := jsonValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				d.set(k, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return d.dict(), nil
		case '[':
			l := []any{}
			for dec.More() {
				v, err := jsonValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return l, nil
		}
		return nil, fmt.Errorf("unexpected %v", t)
	case json.Number:
		s := string(t)
		if !strings.ContainsAny(s, ".eE") {
			if i, err := strconv.ParseInt(s, 10, 0); err == nil {
				return int(i), nil
			}
			return t, nil // a Python int beyond int64: printed as written
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, err
		}
		return f, nil // overflow gives ±Inf, as Python's float()
	case nil:
		return none, nil
	default: // string, bool
		return t, nil
	}
}

// entries returns the members of a mapping in Python's iteration order: a *exec.Dict's (JSON
// objects, messages, the template's own dict literals) in insertion order; a Go map's (made by
// gonja's builtins, or given in Options.Extra), which has none, sorted by key. ok is false when
// v is not a mapping.
func entries(v *exec.Value) (pairs []*exec.Pair, ok bool) {
	switch d := v.Interface().(type) {
	case *exec.Dict:
		return d.Pairs, true
	case exec.Dict:
		return d.Pairs, true
	}
	rv := reflect.ValueOf(v.Interface())
	if rv.Kind() != reflect.Map {
		return nil, false
	}
	for _, k := range rv.MapKeys() {
		pairs = append(pairs, &exec.Pair{Key: exec.ToValue(k), Value: exec.ToValue(rv.MapIndex(k))})
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].Key.String() < pairs[j].Key.String() })
	return pairs, true
}

// itemList is a mapping's items as the template iterates them: two-element lists, which
// `for k, v in ...` unpacks as Python unpacks the (key, value) tuples.
func itemList(pairs []*exec.Pair) []any {
	out := make([]any, len(pairs))
	for i, p := range pairs {
		out[i] = []any{p.Key, p.Value}
	}
	return out
}

// noArgFilter is a filter that takes no arguments: an error passes through, an undefined value
// gives undefinedResult, and f maps the others.
func noArgFilter(name string, undefinedResult any, f func(in *exec.Value) *exec.Value) exec.FilterFunction {
	return func(_ *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
		switch {
		case in.IsError():
			return in
		case len(params.Args) > 0 || len(params.KwArgs) > 0:
			return exec.AsValue(fmt.Errorf("%s takes no arguments", name))
		case !in.Val.IsValid():
			return exec.AsValue(undefinedResult)
		}
		return f(in)
	}
}

// filterItems is Jinja's items: a mapping's (key, value) pairs in its order; nothing for an
// undefined value; an error for anything else.
var filterItems = noArgFilter("items", []any{}, func(in *exec.Value) *exec.Value {
	pairs, ok := entries(in)
	if !ok {
		return exec.AsValue(errors.New("Can only get item pairs from a mapping."))
	}
	return exec.AsValue(itemList(pairs))
})

// filterDictSort is Jinja's dictsort(case_sensitive=False, by='key', reverse=False): a
// mapping's (key, value) pairs sorted by key or value, stably.
func filterDictSort(_ *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	pairs, ok := entries(in)
	if !ok {
		return exec.AsValue(errors.New("dictsort: the value is not a mapping"))
	}
	caseSensitive, byValue, reverse := false, false, false
	names := []string{"case_sensitive", "by", "reverse"}
	if len(params.Args) > len(names) {
		return exec.AsValue(errors.New("dictsort takes at most 3 arguments"))
	}
	args := map[string]*exec.Value{}
	for i, a := range params.Args {
		args[names[i]] = a
	}
	for k, a := range params.KwArgs {
		if _, dup := args[k]; dup || !slices.Contains(names, k) {
			return exec.AsValue(fmt.Errorf("dictsort: unexpected argument %q", k))
		}
		args[k] = a
	}
	if a, ok := args["case_sensitive"]; ok {
		caseSensitive = a.IsTrue()
	}
	if a, ok := args["by"]; ok {
		switch a.String() {
		case "key":
		case "value":
			byValue = true
		default:
			return exec.AsValue(errors.New("You can only sort by either 'key' or 'value'"))
		}
	}
	if a, ok := args["reverse"]; ok {
		reverse = a.IsTrue()
	}
	sorted := append([]*exec.Pair(nil), pairs...)
	key := func(p *exec.Pair) *exec.Value {
		if byValue {
			return p.Value
		}
		return p.Key
	}
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := key(sorted[i]), key(sorted[j])
		if reverse {
			a, b = b, a
		}
		if a.IsNumber() && b.IsNumber() {
			return a.Float() < b.Float()
		}
		as, bs := a.String(), b.String()
		if !caseSensitive {
			as, bs = strings.ToLower(as), strings.ToLower(bs)
		}
		return as < bs
	})
	return exec.AsValue(itemList(sorted))
}

// testDefined is Jinja's defined: false only for an undefined value, so that None (none) is
// defined, as in Python.
func testDefined(_ *exec.Context, in *exec.Value, _ *exec.VarArgs) (bool, error) {
	return in.Val.IsValid() && !in.IsError(), nil
}

func testUndefined(ctx *exec.Context, in *exec.Value, params *exec.VarArgs) (bool, error) {
	d, err := testDefined(ctx, in, params)
	return !d, err
}

// dictMethods are Python's non-mutating dict methods over a mapping in its iteration order
// (entries). gonja hands a method a copy of its dict converted to a Go map, which has lost the
// order and, in nested values, none; selfValue is the original.
func dictMethods() map[string]exec.Method[map[string]any] {
	noArgs := func(name string, f func([]*exec.Pair) any) exec.Method[map[string]any] {
		return func(_ map[string]any, self *exec.Value, args *exec.VarArgs) (any, error) {
			if len(args.Args) > 0 || len(args.KwArgs) > 0 {
				return nil, exec.ErrInvalidCall(fmt.Errorf("%s() takes no arguments", name))
			}
			pairs, _ := entries(self)
			return f(pairs), nil
		}
	}
	return map[string]exec.Method[map[string]any]{
		"keys": noArgs("keys", func(pairs []*exec.Pair) any {
			out := make([]any, len(pairs))
			for i, p := range pairs {
				out[i] = p.Key
			}
			return out
		}),
		"values": noArgs("values", func(pairs []*exec.Pair) any {
			out := make([]any, len(pairs))
			for i, p := range pairs {
				out[i] = p.Value
			}
			return out
		}),
		"items": noArgs("items", func(pairs []*exec.Pair) any { return itemList(pairs) }),
		"copy": noArgs("copy", func(pairs []*exec.Pair) any {
			if len(pairs) == 0 {
				return map[string]any{}
			}
			return &exec.Dict{Pairs: append([]*exec.Pair(nil), pairs...)}
		}),
		"get": func(_ map[string]any, self *exec.Value, args *exec.VarArgs) (any, error) {
			if len(args.Args) < 1 || len(args.Args) > 2 || len(args.KwArgs) > 0 {
				return nil, exec.ErrInvalidCall(errors.New("get() takes 1 or 2 positional arguments"))
			}
			pairs, _ := entries(self)
			for _, p := range pairs {
				if p.Key.EqualValueTo(args.Args[0]) {
					return p.Value.Interface(), nil
				}
			}
			if len(args.Args) == 2 {
				return args.Args[1].Interface(), nil
			}
			return none, nil
		},
	}
}

// filterString is Jinja's string: Python's str() of the value (None, True, 1.0, ['a', 1],
// {'k': None}); an undefined value gives "".
var filterString = noArgFilter("string", "", func(in *exec.Value) *exec.Value { return exec.AsValue(pyStr(in)) })

// pyStr is Python's str() of a template value.
func pyStr(v *exec.Value) string {
	switch {
	case v.IsNil():
		return "None"
	case v.IsString(), v.IsInteger():
		return v.String()
	case v.IsBool():
		if v.Bool() {
			return "True"
		}
		return "False"
	case v.IsFloat():
		return pyFloat(v.Float())
	case v.IsList(), v.IsDict():
		var b strings.Builder
		pyRepr(&b, v, 0)
		return b.String()
	}
	return v.String()
}

// pyRepr writes Python's repr() of a template value (containers nested beyond maxJSONDepth are
// written as "...", as Python writes a recursive one).
func pyRepr(b *strings.Builder, v *exec.Value, depth int) {
	if depth > maxJSONDepth {
		b.WriteString("...")
		return
	}
	if pairs, ok := entries(v); ok {
		b.WriteByte('{')
		for i, p := range pairs {
			if i > 0 {
				b.WriteString(", ")
			}
			pyRepr(b, p.Key, depth+1)
			b.WriteString(": ")
			pyRepr(b, p.Value, depth+1)
		}
		b.WriteByte('}')
		return
	}
	switch {
	case v.IsList():
		b.WriteByte('[')
		for i := range v.Len() {
			if i > 0 {
				b.WriteString(", ")
			}
			pyRepr(b, v.Index(i), depth+1)
		}
		b.WriteByte(']')
	case v.IsString():
		if _, big := v.Interface().(json.Number); big {
			b.WriteString(v.String())
		} else {
			pyQuote(b, v.String())
		}
	default:
		b.WriteString(pyStr(v))
	}
}

// pyQuote writes Python's repr() of a string: single quotes unless the string holds ' and no ",
// backslash escapes for the quote, \, \t, \n, \r, other control characters and non-printable
// code points (\xhh, \uhhhh, \Uhhhhhhhh).
func pyQuote(b *strings.Builder, s string) {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f || r >= 0x80 && !unicode.IsPrint(r):
			switch {
			case r <= 0xff:
				fmt.Fprintf(b, `\x%02x`, r)
			case r <= 0xffff:
				fmt.Fprintf(b, `\u%04x`, r)
			default:
				fmt.Fprintf(b, `\U%08x`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
}
