package toolcall

import (
	"bytes"
	"encoding/json"
	"strings"
)

// schemas maps a tool's name to its parameters' JSON-schema types, read
// from the request's OpenAI tool definitions. Unknown tools and
// parameters have no entry.
type schemas map[string]map[string]string

// newSchemas reads tool definitions of the form {"type": "function",
// "function": {"name": …, "parameters": {"properties": {k: {"type": …}}}}}
// (the bare {"name": …, "parameters": …} form too). Definitions it cannot
// read are skipped: the parsers then keep those values as strings.
func newSchemas(tools []json.RawMessage) schemas {
	s := schemas{}
	for _, raw := range tools {
		type fn struct {
			Name       string `json:"name"`
			Parameters struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"parameters"`
		}
		var t struct {
			fn
			Function *fn `json:"function"`
		}
		if json.Unmarshal(raw, &t) != nil {
			continue
		}
		f := t.fn
		if t.Function != nil {
			f = *t.Function
		}
		if f.Name == "" {
			continue
		}
		params := map[string]string{}
		for k, prop := range f.Parameters.Properties {
			params[k] = schemaType(prop)
		}
		s[f.Name] = params
	}
	return s
}

// schemaType returns a property's type: "type" as a string, or the first
// non-null entry of a type list or of anyOf/oneOf; "" when there is none.
func schemaType(prop json.RawMessage) string {
	var p struct {
		Type  json.RawMessage   `json:"type"`
		AnyOf []json.RawMessage `json:"anyOf"`
		OneOf []json.RawMessage `json:"oneOf"`
	}
	if json.Unmarshal(prop, &p) != nil {
		return ""
	}
	var one string
	if json.Unmarshal(p.Type, &one) == nil {
		return one
	}
	var list []string
	if json.Unmarshal(p.Type, &list) == nil {
		for _, t := range list {
			if t != "null" {
				return t
			}
		}
	}
	for _, alt := range append(p.AnyOf, p.OneOf...) {
		if t := schemaType(alt); t != "" && t != "null" {
			return t
		}
	}
	return ""
}

// typeOf returns the schema type of tool's parameter key ("" if unknown).
func (s schemas) typeOf(tool, key string) string { return s[tool][key] }

// typedValue converts a value written as text to JSON text of the schema
// type typ (integer, number, boolean, object, array; "null" becomes null
// for any of them). It reports false when the text is not of that type, or
// typ is "string", unknown or empty.
func typedValue(v, typ string) (string, bool) {
	t := strings.TrimSpace(v)
	switch typ {
	case "integer", "number", "boolean", "object", "array", "null":
		if t == "null" {
			return "null", true
		}
	default:
		return "", false
	}
	switch typ {
	case "integer", "number":
		return jsonNumber(t)
	case "boolean":
		switch strings.ToLower(t) {
		case "true":
			return "true", true
		case "false":
			return "false", true
		}
	case "object", "array":
		want := byte('{')
		if typ == "array" {
			want = '['
		}
		if t != "" && t[0] == want {
			return compactJSON(t)
		}
	}
	return "", false
}

// jsonNumber returns t if it is a JSON number.
func jsonNumber(t string) (string, bool) {
	if t == "" || (t[0] != '-' && (t[0] < '0' || t[0] > '9')) {
		return "", false
	}
	return compactJSON(t)
}

// compactJSON returns t compacted if it is one valid JSON value.
func compactJSON(t string) (string, bool) {
	if !json.Valid([]byte(t)) {
		return "", false
	}
	var b bytes.Buffer
	if json.Compact(&b, []byte(t)) != nil {
		return "", false
	}
	return b.String(), true
}

// jsonString returns s as a JSON string, without HTML escaping.
func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}

// argsObject builds an arguments object in the order keys first appear; a
// repeated key keeps its last value.
type argsObject struct {
	keys []string
	vals map[string]string // JSON text
}

func (a *argsObject) set(k, jsonVal string) {
	if a.vals == nil {
		a.vals = map[string]string{}
	}
	if _, ok := a.vals[k]; !ok {
		a.keys = append(a.keys, k)
	}
	a.vals[k] = jsonVal
}

func (a *argsObject) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range a.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(jsonString(k))
		b.WriteByte(':')
		b.WriteString(a.vals[k])
	}
	b.WriteByte('}')
	return b.String()
}

// validName reports whether s can be a function or parameter name: not
// empty, and free of whitespace and markup characters.
func validName(s string) bool {
	return s != "" && !strings.ContainsAny(s, " \t\r\n<>{}\"")
}
