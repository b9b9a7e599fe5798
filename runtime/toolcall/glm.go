package toolcall

import "strings"

// GLM-4.7's call markup, between <tool_call> and </tool_call>:
//
//	NAME<arg_key>k1</arg_key><arg_value>v1</arg_value><arg_key>k2</arg_key>…
//
// (GLM-4.5/4.6 put newlines between the parts; they are allowed.)
const (
	argKeyOpen    = "<arg_key>"
	argKeyClose   = "</arg_key>"
	argValueOpen  = "<arg_value>"
	argValueClose = "</arg_value>"
)

// parseGLMCall reads one GLM call. The template writes string values as
// they are and tojson's the others, so a value is decoded as JSON unless
// the tool's schema says it is a string or it is not a JSON non-string
// (then it stays the string it is). With a schema type, values convert to
// it as in Qwen3-Coder's format. A body that starts with "{" is read as
// Hermes JSON.
func parseGLMCall(body string, s schemas) ([]Call, bool) {
	if strings.HasPrefix(strings.TrimSpace(body), "{") {
		return parseCall(body)
	}
	name, rest := body, ""
	if i := strings.Index(body, argKeyOpen); i >= 0 {
		name, rest = body[:i], body[i:]
	}
	name = strings.TrimSpace(name)
	if !validName(name) {
		return nil, false
	}
	var args argsObject
	for {
		rest = strings.TrimLeft(rest, " \t\r\n")
		if rest == "" {
			break
		}
		k, r, ok := between(rest, argKeyOpen, argKeyClose)
		if !ok {
			return nil, false
		}
		k = strings.TrimSpace(k)
		if k == "" {
			return nil, false
		}
		v, r, ok := between(strings.TrimLeft(r, " \t\r\n"), argValueOpen, argValueClose)
		if !ok {
			return nil, false
		}
		rest = r
		args.set(k, glmValue(v, s.typeOf(name, k)))
	}
	return []Call{{Name: name, Arguments: args.String()}}, true
}

// glmValue returns the JSON text of a GLM argument value.
func glmValue(v, typ string) string {
	if typ == "string" {
		return jsonString(v)
	}
	if j, ok := typedValue(v, typ); ok {
		return j
	}
	if t := strings.TrimSpace(v); t != "" && t[0] != '"' {
		if j, ok := compactJSON(t); ok {
			return j
		}
	}
	return jsonString(v)
}

// between reads open, then text up to close, from the start of s: it
// returns the text and what follows close.
func between(s, open, close string) (inner, rest string, ok bool) {
	if !strings.HasPrefix(s, open) {
		return "", "", false
	}
	inner, rest, ok = strings.Cut(s[len(open):], close)
	return inner, rest, ok
}
