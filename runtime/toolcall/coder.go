package toolcall

import "strings"

// Qwen3-Coder's call markup (Qwen3-Coder-30B-A3B, Qwen3-Coder-Next),
// between <tool_call> and </tool_call>:
//
//	<function=NAME>
//	<parameter=KEY>
//	VALUE
//	</parameter>
//	…
//	</function>
const (
	functionOpen   = "<function="
	functionClose  = "</function>"
	parameterOpen  = "<parameter="
	parameterClose = "</parameter>"
)

// parseCoderCall reads the functions of one Qwen3-Coder call block (each
// becomes a Call). A value loses one leading and one trailing newline and
// converts to the JSON type of the tool's parameter schema (number,
// integer, boolean, object, array); without one, or when the text is not
// of that type, it stays a string. Like vLLM's parser it accepts a missing
// </parameter> (before the next <parameter= or the end of the function)
// and a missing final </function>; the parser also takes a
// <function=…>…</function> block that lacks the <tool_call> wrapper, as
// vLLM's does. A body that starts with "{" is read as
// Hermes JSON (Qwen3-Next-Instruct writes that, with the same
// architecture).
func parseCoderCall(body string, s schemas) ([]Call, bool) {
	if strings.HasPrefix(strings.TrimSpace(body), "{") {
		return parseCall(body)
	}
	var calls []Call
	rest := body
	for {
		rest = strings.TrimLeft(rest, " \t\r\n")
		if rest == "" {
			break
		}
		name, r, ok := tagValue(rest, functionOpen)
		if !ok {
			return nil, false
		}
		fn, after, closed := strings.Cut(r, functionClose)
		if !closed {
			after = ""
		}
		rest = after
		args, ok := parseCoderParams(fn, name, s)
		if !ok {
			return nil, false
		}
		calls = append(calls, Call{Name: name, Arguments: args})
	}
	return calls, len(calls) > 0
}

func parseCoderParams(fn, name string, s schemas) (string, bool) {
	var args argsObject
	for {
		fn = strings.TrimLeft(fn, " \t\r\n")
		if fn == "" {
			return args.String(), true
		}
		key, r, ok := tagValue(fn, parameterOpen)
		if !ok {
			return "", false
		}
		end, next := strings.Index(r, parameterClose), strings.Index(r, parameterOpen)
		var v string
		switch {
		case end >= 0 && (next < 0 || end < next):
			v, fn = r[:end], r[end+len(parameterClose):]
		case next >= 0:
			v, fn = r[:next], r[next:]
		default:
			v, fn = r, ""
		}
		v = strings.TrimPrefix(v, "\n")
		v = strings.TrimSuffix(v, "\n")
		j, ok := typedValue(v, s.typeOf(name, key))
		if !ok {
			j = jsonString(v)
		}
		args.set(key, j)
	}
}

// tagValue reads open, a name and ">" from the start of s (as in
// "<function=NAME>") and returns the name and what follows.
func tagValue(s, open string) (name, rest string, ok bool) {
	if !strings.HasPrefix(s, open) {
		return "", "", false
	}
	name, rest, ok = strings.Cut(s[len(open):], ">")
	name = strings.TrimSpace(name)
	return name, rest, ok && validName(name)
}
