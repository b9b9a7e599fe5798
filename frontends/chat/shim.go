package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/exec"
)

// keyOrder remembers the key order of the JSON objects (map[string]any) handed to a template,
// keyed by map identity, for as long as the render that made them runs: gonja's maps are Go maps,
// while Python dicts keep insertion order, which tojson and items() show.
var keyOrder sync.Map // uintptr -> []string

func mapID(m map[string]any) uintptr { return reflect.ValueOf(m).Pointer() }

func orderedKeys(m map[string]any) []string {
	if v, ok := keyOrder.Load(mapID(m)); ok {
		if keys := v.([]string); len(keys) == len(m) {
			return keys
		}
	}
	keys := make([]string, 0, len(m)) // made by the template, or modified: no order known
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// registry records the maps of one render, and forgets them after it.
type registry struct{ ids []uintptr }

func newRegistry() *registry { return &registry{} }

func (r *registry) object(keys []string, m map[string]any) map[string]any {
	id := mapID(m)
	keyOrder.Store(id, keys)
	r.ids = append(r.ids, id)
	return m
}

func (r *registry) release() {
	for _, id := range r.ids {
		keyOrder.Delete(id)
	}
}

// message converts a Message to the dict transformers would see; empty optional fields are absent.
func (r *registry) message(m Message) map[string]any {
	keys := []string{"role", "content"}
	d := map[string]any{"role": m.Role, "content": m.Content}
	if m.Parts != nil {
		parts := make([]any, len(m.Parts))
		for i, p := range m.Parts {
			if p.Type == "text" {
				parts[i] = r.object([]string{"type", "text"}, map[string]any{"type": p.Type, "text": p.Text})
			} else {
				parts[i] = r.object([]string{"type"}, map[string]any{"type": p.Type})
			}
		}
		d["content"] = parts
	}
	add := func(k string, v any) {
		keys = append(keys, k)
		d[k] = v
	}
	if m.ReasoningContent != "" {
		add("reasoning_content", m.ReasoningContent)
	}
	if len(m.ToolCalls) > 0 {
		calls := make([]any, len(m.ToolCalls))
		for i, c := range m.ToolCalls {
			typ := c.Type
			if typ == "" {
				typ = "function"
			}
			var args any = c.Function.Arguments
			if v, err := r.decode([]byte(c.Function.Arguments)); err == nil {
				args = v
			}
			fn := r.object([]string{"name", "arguments"}, map[string]any{"name": c.Function.Name, "arguments": args})
			ck := []string{"type", "function"}
			cm := map[string]any{"type": typ, "function": fn}
			if c.ID != "" {
				ck = append([]string{"id"}, ck...)
				cm["id"] = c.ID
			}
			calls[i] = r.object(ck, cm)
		}
		add("tool_calls", calls)
	}
	if m.ToolCallID != "" {
		add("tool_call_id", m.ToolCallID)
	}
	if m.Name != "" {
		add("name", m.Name)
	}
	return r.object(keys, d)
}

// decode parses one JSON value into template values: objects as ordered map[string]any, arrays
// as []any, integers as int (json.Number beyond int64), other numbers as float64.
func (r *registry) decode(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := r.value(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

func (r *registry) value(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			var keys []string
			m := map[string]any{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k := kt.(string)
				v, err := r.value(dec)
				if err != nil {
					return nil, err
				}
				if _, dup := m[k]; !dup {
					keys = append(keys, k)
				}
				m[k] = v // the last duplicate wins, in the first one's place, as in Python
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return r.object(keys, m), nil
		case '[':
			l := []any{}
			for dec.More() {
				v, err := r.value(dec)
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
	default: // string, bool, nil
		return t, nil
	}
}

// filterToJSON is transformers' tojson: json.dumps(x, ensure_ascii=False, indent=None,
// separators=None, sort_keys=False), with the same keyword arguments.
func filterToJSON(_ *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	o := pyJSON{ensureASCII: false, itemSep: ", ", keySep: ": "}
	for k, v := range params.KwArgs {
		switch k {
		case "indent":
			if !v.IsNil() {
				if v.IsInteger() {
					o.indent = strings.Repeat(" ", max(v.Integer(), 0))
				} else {
					o.indent = v.String()
				}
				o.indented = true
				o.itemSep = ","
			}
		case "ensure_ascii":
			o.ensureASCII = v.IsTrue()
		case "sort_keys":
			o.sortKeys = v.IsTrue()
		case "separators":
			if v.IsList() && v.Len() == 2 {
				o.itemSep, o.keySep = v.Index(0).String(), v.Index(1).String()
			}
		default:
			return exec.AsValue(fmt.Errorf("tojson: unexpected keyword argument %q", k))
		}
	}
	if len(params.Args) > 0 {
		return exec.AsValue(errors.New("tojson takes keyword arguments only"))
	}
	var b strings.Builder
	if err := o.write(&b, in.Interface(), 0); err != nil {
		return exec.AsValue(fmt.Errorf("tojson: %w", err))
	}
	return exec.AsSafeValue(b.String())
}

type pyJSON struct {
	ensureASCII, sortKeys, indented bool
	indent, itemSep, keySep         string
}

func (o *pyJSON) newline(b *strings.Builder, level int) {
	if o.indented {
		b.WriteByte('\n')
		for range level {
			b.WriteString(o.indent)
		}
	}
}

func (o *pyJSON) write(b *strings.Builder, v any, level int) error {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case string:
		o.str(b, x)
	case json.Number:
		b.WriteString(string(x))
	case int:
		b.WriteString(strconv.Itoa(x))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case int32:
		b.WriteString(strconv.FormatInt(int64(x), 10))
	case float64:
		b.WriteString(pyFloat(x))
	case float32:
		b.WriteString(pyFloat(float64(x)))
	case map[string]any:
		keys := orderedKeys(x)
		if o.sortKeys {
			keys = slices.Sorted(slices.Values(keys))
		}
		return o.object(b, keys, func(k string) any { return x[k] }, level)
	case exec.Dict:
		return o.dict(b, &x, level)
	case *exec.Dict:
		return o.dict(b, x, level)
	case []any:
		return o.list(b, len(x), func(i int) any { return x[i] }, level)
	case *exec.Value:
		return o.write(b, x.Interface(), level)
	default:
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Slice, reflect.Array:
			return o.list(b, rv.Len(), func(i int) any { return rv.Index(i).Interface() }, level)
		case reflect.Map:
			if rv.Type().Key().Kind() == reflect.String {
				keys := make([]string, 0, rv.Len())
				for _, k := range rv.MapKeys() {
					keys = append(keys, k.String())
				}
				sort.Strings(keys)
				return o.object(b, keys, func(k string) any { return rv.MapIndex(reflect.ValueOf(k)).Interface() }, level)
			}
		}
		return fmt.Errorf("object of type %T is not JSON serializable", v)
	}
	return nil
}

func (o *pyJSON) dict(b *strings.Builder, d *exec.Dict, level int) error {
	keys := make([]string, len(d.Pairs))
	vals := map[string]any{}
	for i, p := range d.Pairs {
		keys[i] = p.Key.String()
		vals[keys[i]] = p.Value.Interface()
	}
	if o.sortKeys {
		sort.Strings(keys)
	}
	return o.object(b, keys, func(k string) any { return vals[k] }, level)
}

func (o *pyJSON) object(b *strings.Builder, keys []string, get func(string) any, level int) error {
	if len(keys) == 0 {
		b.WriteString("{}")
		return nil
	}
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(o.itemSep)
		}
		o.newline(b, level+1)
		o.str(b, k)
		b.WriteString(o.keySep)
		if err := o.write(b, get(k), level+1); err != nil {
			return err
		}
	}
	o.newline(b, level)
	b.WriteByte('}')
	return nil
}

func (o *pyJSON) list(b *strings.Builder, n int, get func(int) any, level int) error {
	if n == 0 {
		b.WriteString("[]")
		return nil
	}
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteString(o.itemSep)
		}
		o.newline(b, level+1)
		if err := o.write(b, get(i), level+1); err != nil {
			return err
		}
	}
	o.newline(b, level)
	b.WriteByte(']')
	return nil
}

// str writes s as Python's json.dumps does.
func (o *pyJSON) str(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			switch {
			case r < 0x20:
				fmt.Fprintf(b, `\u%04x`, r)
			case o.ensureASCII && r > 0x7e:
				if r >= 0x10000 {
					r1, r2 := utf16Pair(r)
					fmt.Fprintf(b, `\u%04x\u%04x`, r1, r2)
				} else {
					fmt.Fprintf(b, `\u%04x`, r)
				}
			default:
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

func utf16Pair(r rune) (rune, rune) {
	r -= 0x10000
	return 0xD800 + (r>>10)&0x3FF, 0xDC00 + r&0x3FF
}

// pyFloat is Python's repr(float): the shortest round-tripping digits, in fixed notation when the
// decimal exponent is in [-4, 16), else d.ddde±XX; integral values keep ".0". json.dumps writes
// inf and nan as Infinity and NaN.
func pyFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case math.IsNaN(f):
		return "NaN"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // [-]d[.ddd]e±XX
	sign := ""
	if e[0] == '-' {
		sign, e = "-", e[1:]
	}
	mant, exps, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(exps)
	digits := strings.Replace(mant, ".", "", 1)
	decpt := exp + 1 // value = 0.digits × 10^decpt
	if decpt > -4 && decpt <= 16 {
		switch {
		case decpt <= 0:
			return sign + "0." + strings.Repeat("0", -decpt) + digits
		case decpt >= len(digits):
			return sign + digits + strings.Repeat("0", decpt-len(digits)) + ".0"
		default:
			return sign + digits[:decpt] + "." + digits[decpt:]
		}
	}
	m := digits[:1]
	if len(digits) > 1 {
		m += "." + digits[1:]
	}
	es := fmt.Sprintf("%+03d", exp)
	return sign + m + "e" + es
}

var strMethodNames = strings.Fields(`capitalize casefold center count encode endswith expandtabs find
	format index isalnum isalpha isascii isdecimal isdigit isidentifier islower isnumeric isprintable
	isspace istitle isupper join ljust lower lstrip partition removeprefix removesuffix rfind rindex
	rjust rpartition rsplit rstrip split splitlines startswith strip swapcase title translate upper zfill`)

var dictMethodNames = strings.Fields(`get pop popitem setdefault update copy clear`)

// methods is gonja's method table with Python's str.replace (count optional) and dict
// keys/values/items in insertion order.
func methods() exec.Methods {
	str := map[string]exec.Method[string]{}
	for _, n := range strMethodNames {
		if m, ok := builtins.Methods.Str.Get(n); ok {
			str[n] = m
		}
	}
	str["replace"] = func(self string, _ *exec.Value, args *exec.VarArgs) (any, error) {
		if len(args.Args) < 2 || len(args.Args) > 3 || len(args.KwArgs) > 0 {
			return nil, exec.ErrInvalidCall(errors.New("replace() takes 2 or 3 positional arguments"))
		}
		count := -1
		if len(args.Args) == 3 {
			if !args.Args[2].IsInteger() {
				return nil, exec.ErrInvalidCall(errors.New("replace() count must be an integer"))
			}
			count = args.Args[2].Integer()
		}
		return strings.Replace(self, args.Args[0].String(), args.Args[1].String(), count), nil
	}
	str["startswith"] = affixMethod("startswith", strings.HasPrefix)
	str["endswith"] = affixMethod("endswith", strings.HasSuffix)
	str["find"] = findMethod("find", false)
	str["rfind"] = findMethod("rfind", true)
	dict := map[string]exec.Method[map[string]any]{}
	for _, n := range dictMethodNames {
		if m, ok := builtins.Methods.Dict.Get(n); ok {
			dict[n] = m
		}
	}
	noArgs := func(name string, f func(map[string]any) any) exec.Method[map[string]any] {
		return func(self map[string]any, selfValue *exec.Value, args *exec.VarArgs) (any, error) {
			if len(args.Args) > 0 || len(args.KwArgs) > 0 {
				return nil, exec.ErrInvalidCall(fmt.Errorf("%s() takes no arguments", name))
			}
			// gonja hands methods a converted copy; the original map carries the key order
			// (and its nested maps theirs).
			if orig, ok := selfValue.Interface().(map[string]any); ok {
				self = orig
			}
			return f(self), nil
		}
	}
	dict["keys"] = noArgs("keys", func(m map[string]any) any { return orderedKeys(m) })
	dict["values"] = noArgs("values", func(m map[string]any) any {
		var out []any
		for _, k := range orderedKeys(m) {
			out = append(out, m[k])
		}
		return out
	})
	dict["items"] = noArgs("items", func(m map[string]any) any {
		var out []any
		for _, k := range orderedKeys(m) {
			out = append(out, []any{k, m[k]})
		}
		return out
	})
	return exec.Methods{
		Bool:  builtins.Methods.Bool,
		Int:   builtins.Methods.Int,
		Float: builtins.Methods.Float,
		Str:   exec.NewMethodSet(str),
		Dict:  exec.NewMethodSet(dict),
		List:  builtins.Methods.List,
	}
}

// strftime formats t with the C directives chat templates use (strftime_now("%d %b %Y")).
func strftime(t time.Time, format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 == len(format) {
			b.WriteByte(c)
			continue
		}
		i++
		switch format[i] {
		case 'Y':
			fmt.Fprintf(&b, "%04d", t.Year())
		case 'y':
			fmt.Fprintf(&b, "%02d", t.Year()%100)
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'I':
			fmt.Fprintf(&b, "%02d", (t.Hour()+11)%12+1)
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case 'p':
			b.WriteString(t.Format("PM"))
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case 'b':
			b.WriteString(t.Format("Jan"))
		case 'B':
			b.WriteString(t.Format("January"))
		case 'a':
			b.WriteString(t.Format("Mon"))
		case 'A':
			b.WriteString(t.Format("Monday"))
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(format[i])
		}
	}
	return b.String()
}

// pySlice resolves Python's optional start and end arguments (args[from:]) against n code points.
func pySlice(args []*exec.Value, n int) (int, int, error) {
	bound := func(i int, def int) (int, error) {
		if i >= len(args) || args[i].IsNil() {
			return def, nil
		}
		if !args[i].IsInteger() {
			return 0, errors.New("slice indices must be integers or None")
		}
		v := args[i].Integer()
		if v < 0 {
			v = max(v+n, 0)
		}
		return min(v, n), nil
	}
	start, err := bound(0, 0)
	if err != nil {
		return 0, 0, err
	}
	end, err := bound(1, n)
	return start, end, err
}

// affixMethod is Python's str.startswith / str.endswith: a string or a tuple (list) of strings,
// optional start and end in code points.
func affixMethod(name string, has func(s, affix string) bool) exec.Method[string] {
	return func(self string, _ *exec.Value, args *exec.VarArgs) (any, error) {
		if len(args.Args) < 1 || len(args.Args) > 3 || len(args.KwArgs) > 0 {
			return nil, exec.ErrInvalidCall(fmt.Errorf("%s() takes 1 to 3 positional arguments", name))
		}
		r := []rune(self)
		start, end, err := pySlice(args.Args[1:], len(r))
		if err != nil {
			return nil, exec.ErrInvalidCall(err)
		}
		if len(args.Args) > 1 && !args.Args[1].IsNil() && args.Args[1].IsInteger() && args.Args[1].Integer() > len(r) {
			return false, nil // Python: a start beyond the end never matches
		}
		sub := ""
		if start <= end {
			sub = string(r[start:end])
		} else {
			return false, nil
		}
		var affixes []string
		switch a := args.Args[0]; {
		case a.IsString():
			affixes = []string{a.String()}
		case a.IsList():
			for i := 0; i < a.Len(); i++ {
				affixes = append(affixes, a.Index(i).String())
			}
		default:
			return nil, exec.ErrInvalidCall(fmt.Errorf("%s() first argument must be str or a tuple of str", name))
		}
		for _, x := range affixes {
			if has(sub, x) {
				return true, nil
			}
		}
		return false, nil
	}
}

// findMethod is Python's str.find / str.rfind: the code-point index of the first (last)
// occurrence of sub in self[start:end], or -1.
func findMethod(name string, last bool) exec.Method[string] {
	return func(self string, _ *exec.Value, args *exec.VarArgs) (any, error) {
		if len(args.Args) < 1 || len(args.Args) > 3 || len(args.KwArgs) > 0 || !args.Args[0].IsString() {
			return nil, exec.ErrInvalidCall(fmt.Errorf("%s() takes a string and optional start and end", name))
		}
		r := []rune(self)
		start, end, err := pySlice(args.Args[1:], len(r))
		if err != nil {
			return nil, exec.ErrInvalidCall(err)
		}
		if len(args.Args) > 1 && !args.Args[1].IsNil() && args.Args[1].IsInteger() && args.Args[1].Integer() > len(r) || start > end {
			return -1, nil
		}
		sub, hay := args.Args[0].String(), string(r[start:end])
		var i int
		if last {
			i = strings.LastIndex(hay, sub)
		} else {
			i = strings.Index(hay, sub)
		}
		if i < 0 {
			return -1, nil
		}
		return start + utf8.RuneCountInString(hay[:i]), nil
	}
}

// filterReverse is Jinja's reverse: a reversed copy of a list, or a string reversed by code points.
func filterReverse(_ *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	if len(params.Args) > 0 || len(params.KwArgs) > 0 {
		return exec.AsValue(errors.New("reverse takes no arguments"))
	}
	if in.IsString() {
		r := []rune(in.String())
		slices.Reverse(r)
		return exec.AsValue(string(r))
	}
	if in.IsList() {
		out := make([]any, in.Len())
		for i := range out {
			out[len(out)-1-i] = in.Index(i).Interface()
		}
		return exec.AsValue(out)
	}
	return exec.AsValue(fmt.Errorf("reverse: cannot reverse %s", in.String()))
}
