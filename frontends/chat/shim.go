package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/exec"
)

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
		b.WriteString(jsonFloat(x))
	case float32:
		b.WriteString(jsonFloat(float64(x)))
	case *exec.Value:
		return o.write(b, x.Interface(), level)
	case *pyNone:
		b.WriteString("null")
	default:
		if level > maxJSONDepth {
			return errors.New("nested too deeply")
		}
		if pairs, ok := entries(exec.ToValue(v)); ok {
			return o.mapping(b, pairs, level)
		}
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Slice, reflect.Array:
			return o.list(b, rv.Len(), func(i int) any { return rv.Index(i).Interface() }, level)
		case reflect.Pointer:
			if rv.IsNil() {
				b.WriteString("null")
				return nil
			}
		}
		return fmt.Errorf("object of type %T is not JSON serializable", v)
	}
	return nil
}

// jsonKey is json.dumps's text of a dict key: str as it is, int and float as str() writes them,
// bool and None as JSON does; other keys are an error.
func jsonKey(k *exec.Value) (string, error) {
	switch {
	case k.IsString():
		return k.String(), nil
	case k.IsBool():
		return strconv.FormatBool(k.Bool()), nil
	case k.IsNil():
		return "null", nil
	case k.IsInteger():
		return k.String(), nil
	case k.IsFloat():
		return jsonFloat(k.Float()), nil
	}
	return "", fmt.Errorf("keys must be str, int, float, bool or None, not %T", k.Interface())
}

// mapping writes a dict's members in its order (entries), or sorted by key with sort_keys.
func (o *pyJSON) mapping(b *strings.Builder, pairs []*exec.Pair, level int) error {
	keys := make([]string, len(pairs))
	order := make([]int, len(pairs))
	for i, p := range pairs {
		k, err := jsonKey(p.Key)
		if err != nil {
			return err
		}
		keys[i], order[i] = k, i
	}
	if o.sortKeys {
		sort.SliceStable(order, func(i, j int) bool { return keys[order[i]] < keys[order[j]] })
	}
	if len(pairs) == 0 {
		b.WriteString("{}")
		return nil
	}
	b.WriteByte('{')
	for n, i := range order {
		if n > 0 {
			b.WriteString(o.itemSep)
		}
		o.newline(b, level+1)
		o.str(b, keys[i])
		b.WriteString(o.keySep)
		if err := o.write(b, pairs[i].Value, level+1); err != nil {
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

// jsonFloat is json.dumps's text of a float: Python's repr, with inf and nan as Infinity,
// -Infinity and NaN.
func jsonFloat(f float64) string {
	switch s := pyFloat(f); s {
	case "inf":
		return "Infinity"
	case "-inf":
		return "-Infinity"
	case "nan":
		return "NaN"
	default:
		return s
	}
}

// pyFloat is Python's repr(float): the shortest round-tripping digits, in fixed notation when the
// decimal exponent is in [-4, 16), else d.ddde±XX; integral values keep ".0"; inf, -inf, nan.
func pyFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
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

// dictMethodNames are gonja's mutating dict methods kept (on the copy gonja hands them); the others
// are dictMethods.
var dictMethodNames = strings.Fields(`pop popitem setdefault update clear`)

// methods is gonja's method table with Python's str.replace (count optional), str.startswith,
// endswith, find and rfind, and dict get/keys/values/items/copy in the dict's order.
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
	for n, m := range dictMethods() {
		dict[n] = m
	}
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
