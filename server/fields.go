package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"
)

// Every field of a request body is one of four kinds:
//
//   - honoured: decoded into the request (the targets decodeObject is given);
//   - accepted: an OpenAI field that cannot change the answer (user,
//     metadata, store: false, ...), checked for its type and not used;
//   - refused: an OpenAI field, or a value of one, this server cannot honour
//     (tool_choice allowed_tools, audio, ...): a
//     400 that names it, so that no client believes it was applied;
//   - extra: any other field. Frameworks add their own (vLLM's guided_json,
//     min_tokens, ...); refusing them would break clients written for those
//     servers, so they are accepted, and the first request that sends one
//     names it in the server log (Server.noteIgnored, which bounds how many
//     it names), as vLLM does.
//
// The objects inside a request are read the same way: stream_options, each
// message, its content parts (and their image_url), its tool_calls, and
// each tool definition; their extras are logged by path
// ("messages[].content[].cache_control").
//
// The fields vLLM added that this server implements (top_k, min_p,
// repetition_penalty, stop_token_ids, ignore_eos, chat_template_kwargs,
// reasoning_content in messages) are honoured like OpenAI's, and so is
// response_format on both endpoints (structured output, structured.go).

// fieldCheck decides an accepted or refused field's value: it returns why
// the value is refused, "" when it is accepted.
type fieldCheck func(raw json.RawMessage) string

func isNull(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

// typed accepts any value of type T (null included) and refuses the rest.
func typed[T any](want string) fieldCheck {
	return func(raw json.RawMessage) string {
		var v T
		if json.Unmarshal(raw, &v) != nil {
			return "must be " + want
		}
		return ""
	}
}

// unsupported refuses every value but null.
func unsupported(why string) fieldCheck {
	return func(raw json.RawMessage) string {
		if isNull(raw) {
			return ""
		}
		return why
	}
}

// oneOf accepts null and the listed strings and refuses the rest.
func oneOf(why string, ok ...string) fieldCheck {
	return func(raw json.RawMessage) string {
		var s string
		if isNull(raw) || json.Unmarshal(raw, &s) == nil && slices.Contains(ok, s) {
			return ""
		}
		return why
	}
}

// harmless are OpenAI fields both endpoints accept without using them:
// none can change what is generated.
var harmless = map[string]fieldCheck{
	// An end-user id for OpenAI's abuse monitoring.
	"user": typed[string]("a string"),
	// safety_identifier replaces user; prompt_cache_key groups requests
	// for OpenAI's cache routing (the prefix cache here needs no key).
	"safety_identifier": typed[string]("a string"),
	"prompt_cache_key":  typed[string]("a string"),
	// metadata is only kept with store: true, which is refused.
	"metadata": typed[map[string]string]("an object of strings"),
	"store": func(raw json.RawMessage) string {
		var b bool
		if isNull(raw) || json.Unmarshal(raw, &b) == nil && !b {
			return ""
		}
		return "only false is supported: this server stores no completions"
	},
	// Processing tiers: every request here is served alike, the default.
	"service_tier": oneOf(`must be "auto" or "default": this server has no other tiers`, "auto", "default"),
}

// chatOnly are OpenAI's chat completions fields that the chat endpoint
// refuses (the ones it honours are decoded) and the completions endpoint
// refuses outright, as it does every chat field.
var chatOnly = map[string]fieldCheck{
	"modalities": func(raw json.RawMessage) string {
		var m []string
		if isNull(raw) || json.Unmarshal(raw, &m) == nil && !slices.ContainsFunc(m, func(s string) bool { return s != "text" }) {
			return ""
		}
		return `only ["text"] is supported`
	},
	"audio":              unsupported("audio output is not supported"),
	"prediction":         unsupported("predicted outputs are not supported"),
	"reasoning_effort":   unsupported(`reasoning_effort is not supported; chat_template_kwargs {"enable_thinking": false} turns thinking off for templates that have it`),
	"verbosity":          unsupported("verbosity is not supported"),
	"web_search_options": unsupported("web search is not supported"),
	"functions": func(raw json.RawMessage) string {
		var l []json.RawMessage
		if isNull(raw) || json.Unmarshal(raw, &l) == nil && len(l) == 0 {
			return ""
		}
		return "functions (deprecated) is not supported; use tools"
	},
	"function_call": oneOf(`function_call (deprecated) is not supported; use tools and tool_choice`, "none", "auto"),
}

// chatFields are the chat fields that chatOnly does not list: honoured by
// the chat endpoint, refused by the completions endpoint.
var chatFields = []string{"messages", "tools", "tool_choice", "parallel_tool_calls", "max_completion_tokens", "top_logprobs"}

// completionFields are OpenAI's completions fields that the chat endpoint
// refuses.
var completionFields = []string{"prompt", "best_of", "echo", "suffix"}

// refuseAll refuses every value but null of the named fields: they belong
// to the other endpoint.
func refuseAll(checks map[string]fieldCheck, names []string, why string) {
	for _, n := range names {
		checks[n] = unsupported(why)
	}
}

// chatChecks and completionChecks are the accepted and refused fields of
// each endpoint.
var chatChecks, completionChecks = map[string]fieldCheck{}, map[string]fieldCheck{}

func init() {
	for k, c := range harmless {
		chatChecks[k], completionChecks[k] = c, c
	}
	for k, c := range chatOnly {
		chatChecks[k] = c
	}
	refuseAll(chatChecks, completionFields, "a /v1/completions field, not one of /v1/chat/completions")
	refuseAll(completionChecks, append(slices.Collect(maps.Keys(chatOnly)), chatFields...), "a /v1/chat/completions field, not one of /v1/completions")
}

// Extra field names are the client's: these bound what the server keeps
// and logs of them (Server.noteIgnored), so that neither one request (a
// body of 20 MiB holds over a million names) nor many grow its memory or
// its log without end.
const (
	maxRememberedFields = 256 // names logged, and remembered, for the server's life
	maxNamedPerRequest  = 16  // new names one request may log
	maxFieldNameBytes   = 64  // a longer name is logged, and remembered, cut to this length and "…"
)

// extraFields are the names of a request's extra fields, each once and cut
// to maxFieldNameBytes, the first maxRememberedFields of them (more could
// not all be remembered).
type extraFields struct {
	names []string
	seen  map[string]bool
}

// add records names, the extra fields of one object, each after prefix
// ("messages[].").
func (x *extraFields) add(prefix string, names []string) {
	for _, n := range names {
		if len(x.names) == maxRememberedFields {
			return
		}
		n = shortName(prefix + n)
		if x.seen[n] {
			continue
		}
		if x.seen == nil {
			x.seen = map[string]bool{}
		}
		x.seen[n] = true
		x.names = append(x.names, n)
	}
}

// shortName is name, or when it is over maxFieldNameBytes its first bytes
// (whole characters) and "…".
func shortName(name string) string {
	if len(name) <= maxFieldNameBytes {
		return name
	}
	cut := maxFieldNameBytes
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return strings.ToValidUTF8(name[:cut], "\ufffd") + "…"
}

// decodeObject decodes the JSON object raw field by field: a field named in
// into is decoded into its target (a wrong type is a 400 naming it), one in
// checks is accepted or refused by its check, and the names of the others
// come back, sorted. prefix is put before a field's name in errors
// ("messages[2]."). Field names match exactly (encoding/json would also
// take "Temperature" for temperature).
func decodeObject(raw json.RawMessage, prefix string, into map[string]any, checks map[string]fieldCheck) ([]string, *apiError) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		what := "the request body"
		if prefix != "" {
			what = strings.TrimSuffix(prefix, ".")
		}
		return nil, badRequest(strings.TrimSuffix(prefix, "."), "%s must be a JSON object", what)
	}
	var extras []string
	for k, v := range obj {
		if t, ok := into[k]; ok {
			if err := json.Unmarshal(v, t); err != nil {
				return nil, badRequest(prefix+k, "%s%s: %s", prefix, k, typeError(err))
			}
			continue
		}
		if c, ok := checks[k]; ok {
			if why := c(v); why != "" {
				return nil, badRequest(prefix+k, "%s%s: %s", prefix, k, why)
			}
			continue
		}
		extras = append(extras, k)
	}
	slices.Sort(extras)
	return extras, nil
}

// typeError says what was wrong with a field's value, without the Go type
// names encoding/json puts in its errors.
func typeError(err error) string {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return err.Error()
	}
	if te.Field != "" {
		return fmt.Sprintf("%s: a JSON %s is not valid here", te.Field, te.Value)
	}
	return fmt.Sprintf("a JSON %s is not valid here", te.Value)
}

// readObject checks that body is one JSON object and nothing more.
func readObject(body []byte) (json.RawMessage, *apiError) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, badRequest("", "invalid JSON body: %v", err)
	}
	if dec.More() {
		return nil, badRequest("", "invalid JSON body: data after the object")
	}
	return raw, nil
}
