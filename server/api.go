package server

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/inference-pio/pio/frontends/chat"
	"github.com/inference-pio/pio/pio"
	"github.com/inference-pio/pio/runtime/sample"
	"github.com/inference-pio/pio/runtime/toolcall"
)

// apiError is an OpenAI error body.
type apiError struct {
	status  int
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) Error() string { return e.Message }

func badRequest(param, format string, args ...any) *apiError {
	e := &apiError{status: 400, Message: fmt.Sprintf(format, args...), Type: "invalid_request_error"}
	if param != "" {
		e.Param = &param
	}
	return e
}

// stopField is OpenAI's stop: a string or a list of strings.
type stopField []string

func (s *stopField) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*s = nil
		return nil
	}
	var one string
	if json.Unmarshal(b, &one) == nil {
		*s = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("must be a string or a list of strings")
	}
	*s = many
	return nil
}

// samplingParams are the fields both endpoints share (OpenAI's, plus
// vLLM's extensions top_k, min_p, repetition_penalty, stop_token_ids,
// ignore_eos), and what options makes of them.
type samplingParams struct {
	Model             string
	MaxTokens         *int
	Temperature       *float64
	TopP              *float64
	TopK              *int
	MinP              *float64
	RepetitionPenalty *float64
	PresencePenalty   *float64
	FrequencyPenalty  *float64
	LogitBias         map[string]float64
	Seed              *int64
	Stop              stopField
	StopTokenIDs      []int32
	IgnoreEOS         bool
	N                 *int
	Stream            bool
	StreamOptions     json.RawMessage
	ResponseFormat    json.RawMessage // structured output (structured.go)

	// Set by options.
	n            int         // choices, 1..maxChoices
	includeUsage bool        // stream_options.include_usage
	extras       extraFields // fields neither honoured nor refused (fields.go)
}

// fields are the targets of the fields samplingParams honours.
func (p *samplingParams) fields() map[string]any {
	return map[string]any{
		"model": &p.Model, "max_tokens": &p.MaxTokens, "temperature": &p.Temperature, "top_p": &p.TopP,
		"top_k": &p.TopK, "min_p": &p.MinP, "repetition_penalty": &p.RepetitionPenalty,
		"presence_penalty": &p.PresencePenalty, "frequency_penalty": &p.FrequencyPenalty,
		"logit_bias": &p.LogitBias, "seed": &p.Seed, "stop": &p.Stop, "stop_token_ids": &p.StopTokenIDs,
		"ignore_eos": &p.IgnoreEOS, "n": &p.N, "stream": &p.Stream, "stream_options": &p.StreamOptions,
		"response_format": &p.ResponseFormat,
	}
}

const maxStopStrings = 16

// maxChoices is the most choices (n, and completions' best_of) one request
// may ask for: each is a sequence of its own in the batch.
const maxChoices = 16

// options validates p and converts it; topLogprobs < 0 means no logprobs.
func (p *samplingParams) options(maxTokens *int, logprobs bool, topLogprobs int) (pio.GenerateOptions, *apiError) {
	var o pio.GenerateOptions
	finite := func(v *float64) bool { return v == nil || !(math.IsNaN(*v) || math.IsInf(*v, 0)) }
	if maxTokens == nil {
		maxTokens = p.MaxTokens
	}
	if maxTokens != nil {
		if *maxTokens < 1 {
			return o, badRequest("max_tokens", "max_tokens must be at least 1, got %d", *maxTokens)
		}
		o.MaxTokens = *maxTokens
	}
	p.n = 1
	if p.N != nil {
		if *p.N < 1 || *p.N > maxChoices {
			return o, badRequest("n", "n must be in [1, %d], got %d", maxChoices, *p.N)
		}
		p.n = *p.N
	}
	if t := p.Temperature; t != nil && (*t < 0 || *t > 2 || !finite(t)) {
		return o, badRequest("temperature", "temperature must be in [0, 2], got %v", *t)
	}
	if t := p.TopP; t != nil && (*t <= 0 || *t > 1 || !finite(t)) {
		return o, badRequest("top_p", "top_p must be in (0, 1], got %v", *t)
	}
	if k := p.TopK; k != nil && *k < -1 {
		return o, badRequest("top_k", "top_k must be -1 (off) or >= 0, got %d", *k)
	}
	if m := p.MinP; m != nil && (*m < 0 || *m > 1 || !finite(m)) {
		return o, badRequest("min_p", "min_p must be in [0, 1], got %v", *m)
	}
	if r := p.RepetitionPenalty; r != nil && (*r <= 0 || *r > 2 || !finite(r)) {
		return o, badRequest("repetition_penalty", "repetition_penalty must be in (0, 2], got %v", *r)
	}
	for name, v := range map[string]*float64{"presence_penalty": p.PresencePenalty, "frequency_penalty": p.FrequencyPenalty} {
		if v != nil && (*v < -2 || *v > 2 || !finite(v)) {
			return o, badRequest(name, "%s must be in [-2, 2], got %v", name, *v)
		}
	}
	if len(p.Stop) > maxStopStrings {
		return o, badRequest("stop", "at most %d stop strings, got %d", maxStopStrings, len(p.Stop))
	}
	for _, s := range p.Stop {
		if s == "" {
			return o, badRequest("stop", "stop strings must not be empty")
		}
	}
	if topLogprobs > sample.MaxTopLogprobs {
		return o, badRequest("top_logprobs", "top_logprobs must be in [0, %d], got %d", sample.MaxTopLogprobs, topLogprobs)
	}
	if topLogprobs < 0 && logprobs {
		topLogprobs = 0
	}
	var e *apiError
	if o.LogitBias, e = p.logitBias(); e != nil {
		return o, e
	}
	if e := p.streamOptions(); e != nil {
		return o, e
	}
	if o.Grammar, e = p.responseFormat(); e != nil {
		return o, e
	}
	o.Temperature, o.TopP, o.MinP, o.RepetitionPenalty = p.Temperature, p.TopP, p.MinP, p.RepetitionPenalty
	if p.TopK != nil {
		k := max(*p.TopK, 0)
		o.TopK = &k
	}
	if p.PresencePenalty != nil {
		o.PresencePenalty = *p.PresencePenalty
	}
	if p.FrequencyPenalty != nil {
		o.FrequencyPenalty = *p.FrequencyPenalty
	}
	if p.Seed != nil {
		s := uint64(*p.Seed)
		o.Seed = &s
	}
	o.Stop, o.StopTokenIDs, o.IgnoreEOS = p.Stop, p.StopTokenIDs, p.IgnoreEOS
	o.Logprobs = logprobs
	o.TopLogprobs = max(topLogprobs, 0)
	return o, nil
}

// logitBias reads logit_bias (pio.GenerateOptions.LogitBias): token ids
// (decimal strings, as JSON object keys must be) to biases in [-100, 100].
// Ids beyond the vocabulary are refused when the request is submitted
// (scheduler.Config.VocabSize).
func (p *samplingParams) logitBias() (map[int32]float32, *apiError) {
	if len(p.LogitBias) == 0 {
		return nil, nil
	}
	bias := make(map[int32]float32, len(p.LogitBias))
	for k, v := range p.LogitBias {
		id, err := strconv.ParseInt(k, 10, 32)
		if err != nil || id < 0 || strconv.Itoa(int(id)) != k {
			return nil, badRequest("logit_bias", "logit_bias keys must be token ids (decimal, >= 0), got %q", k)
		}
		if v < -sample.MaxLogitBias || v > sample.MaxLogitBias || math.IsNaN(v) {
			return nil, badRequest("logit_bias", "logit_bias values must be in [-%d, %d], got %v for token %d", sample.MaxLogitBias, sample.MaxLogitBias, v, id)
		}
		bias[int32(id)] = float32(v)
	}
	return bias, nil
}

// streamOptions reads stream_options, which only a streamed request may
// send (as OpenAI and vLLM answer). include_obfuscation (OpenAI pads
// streamed chunks with a random field against length side channels) is
// accepted: no chunk here carries the padding, which clients discard.
func (p *samplingParams) streamOptions() *apiError {
	if isNull(p.StreamOptions) {
		return nil
	}
	var obfuscate bool
	extras, e := decodeObject(p.StreamOptions, "stream_options.", map[string]any{
		"include_usage": &p.includeUsage, "include_obfuscation": &obfuscate,
	}, nil)
	if e != nil {
		return e
	}
	if !p.Stream {
		return badRequest("stream_options", "stream_options is only allowed with stream: true")
	}
	p.extras.add("stream_options.", extras)
	return nil
}

// chatMessage is a message as the API sends it.
type chatMessage struct {
	Role             string
	Content          json.RawMessage
	ReasoningContent *string // vLLM's field for an assistant turn's thinking
	Refusal          *string
	Name             string
	ToolCallID       string
	ToolCalls        []json.RawMessage // each read by toolCall
}

func (m *chatMessage) fields() map[string]any {
	return map[string]any{
		"role": &m.Role, "content": &m.Content, "reasoning_content": &m.ReasoningContent, "refusal": &m.Refusal,
		"name": &m.Name, "tool_call_id": &m.ToolCallID, "tool_calls": &m.ToolCalls,
	}
}

// messageChecks are the OpenAI message fields refused.
var messageChecks = map[string]fieldCheck{
	"audio":         unsupported("audio is not supported"),
	"function_call": unsupported("function_call (deprecated) is not supported; use tool_calls"),
}

type chatRequest struct {
	samplingParams
	Messages            []json.RawMessage
	Tools               []json.RawMessage
	ToolChoice          json.RawMessage
	ParallelToolCalls   *bool
	MaxCompletionTokens *int
	Logprobs            bool
	TopLogprobs         *int
	ChatTemplateKwargs  json.RawMessage // template variables (chat.TemplateVars)
}

func (r *chatRequest) fields() map[string]any {
	f := r.samplingParams.fields()
	f["messages"], f["tools"], f["tool_choice"], f["parallel_tool_calls"] = &r.Messages, &r.Tools, &r.ToolChoice, &r.ParallelToolCalls
	f["max_completion_tokens"], f["logprobs"], f["top_logprobs"] = &r.MaxCompletionTokens, &r.Logprobs, &r.TopLogprobs
	f["chat_template_kwargs"] = &r.ChatTemplateKwargs
	return f
}

// oneToolCall reports whether the answer may hold one tool call at most
// (parallel_tool_calls: false).
func (r *chatRequest) oneToolCall() bool { return r.ParallelToolCalls != nil && !*r.ParallelToolCalls }

type completionRequest struct {
	samplingParams
	Prompt   json.RawMessage
	Logprobs *int
	Echo     bool
	Suffix   *string
	BestOf   *int

	bestOf int // candidates generated, >= n
}

func (r *completionRequest) fields() map[string]any {
	f := r.samplingParams.fields()
	f["prompt"], f["logprobs"], f["echo"], f["suffix"], f["best_of"] = &r.Prompt, &r.Logprobs, &r.Echo, &r.Suffix, &r.BestOf
	return f
}

// decodeRequest reads body, one JSON object, into fields, and records the
// fields neither honoured nor refused in p.extras.
func decodeRequest(body []byte, p *samplingParams, fields map[string]any, checks map[string]fieldCheck) *apiError {
	raw, e := readObject(body)
	if e != nil {
		return e
	}
	extras, e := decodeObject(raw, "", fields, checks)
	p.extras.add("", extras)
	return e
}

// MaxImageBytes is the most bytes one decoded image_url data may have;
// the request body limit (Config.MaxBodyBytes) applies first.
const MaxImageBytes = 32 << 20

// contentParts reads a message's content: a string, null, or a list of
// content parts. Text-only lists come back as one string; a list with
// image_url parts (data: URLs of base64 PNG, JPEG or WebP) comes back as
// parts, for vision-language engines. A part's fields are read as the
// request's are (decodeObject; its extras go to x); image_url.detail is
// honoured as "auto" only: an image is seen at the resolution the engine's
// preprocessor config gives it, and no request can change that.
func contentParts(raw json.RawMessage, i int, x *extraFields) (string, []pio.Part, *apiError) {
	if isNull(raw) {
		return "", nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil, nil
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", nil, badRequest(fmt.Sprintf("messages[%d].content", i), "content must be a string or a list of content parts")
	}
	var b strings.Builder
	var out []pio.Part
	images := false
	for j, raw := range parts {
		param := fmt.Sprintf("messages[%d].content[%d]", i, j)
		var typ string
		var text *string
		var image json.RawMessage
		extras, e := decodeObject(raw, param+".", map[string]any{"type": &typ, "text": &text, "image_url": &image}, nil)
		if e != nil {
			return "", nil, e
		}
		x.add("messages[].content[].", extras)
		switch {
		case typ == "text" && !isNull(image):
			return "", nil, badRequest(param+".image_url", "%s.image_url: a text part has no image_url", param)
		case typ == "image_url" && text != nil:
			return "", nil, badRequest(param+".text", "%s.text: an image_url part has no text", param)
		}
		switch typ {
		case "text":
			if text == nil {
				return "", nil, badRequest(param+".text", "%s.text: a text part needs text", param)
			}
			b.WriteString(*text)
			out = append(out, pio.Part{Type: "text", Text: *text})
		case "image_url":
			data, e := imageURL(image, param+".image_url", x)
			if e != nil {
				return "", nil, e
			}
			out = append(out, pio.Part{Type: "image", Image: data})
			images = true
		default:
			return "", nil, badRequest(param+".type", "%s.type: content part type %q is not supported (text and image_url)", param, typ)
		}
	}
	if !images {
		return b.String(), nil, nil
	}
	return "", out, nil
}

// imageURL reads an image_url part's image_url object (param names it).
func imageURL(raw json.RawMessage, param string, x *extraFields) ([]byte, *apiError) {
	if isNull(raw) {
		return nil, badRequest(param, "%s: an image_url part needs image_url.url", param)
	}
	var url string
	var detail *string
	extras, e := decodeObject(raw, param+".", map[string]any{"url": &url, "detail": &detail}, nil)
	if e != nil {
		return nil, e
	}
	x.add("messages[].content[].image_url.", extras)
	if detail != nil && *detail != "auto" {
		return nil, badRequest(param+".detail", `%s.detail %q is not supported: an image is seen at the engine's own resolution; send "auto" or leave it out`, param, *detail)
	}
	return decodeDataURL(url, param+".url")
}

// decodeDataURL reads data:image/{png,jpeg,webp};base64,... (the only
// image URLs served: the server fetches nothing).
func decodeDataURL(u, param string) ([]byte, *apiError) {
	bad := func(format string, args ...any) *apiError {
		return badRequest(param, "%s: %s", param, fmt.Sprintf(format, args...))
	}
	if u == "" {
		return nil, bad("an image_url part needs image_url.url")
	}
	rest, ok := strings.CutPrefix(u, "data:")
	if !ok {
		return nil, bad("image_url must be a data: URL (data:image/png;base64,...); the server fetches no URLs")
	}
	meta, payload, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, bad("malformed data: URL (no comma)")
	}
	media, enc, _ := strings.Cut(meta, ";")
	switch strings.ToLower(media) {
	case "image/png", "image/jpeg", "image/jpg", "image/webp":
	default:
		return nil, bad("image media type %q is not supported (image/png, image/jpeg, image/webp)", media)
	}
	if !strings.EqualFold(enc, "base64") {
		return nil, bad("image data: URL must be base64-encoded")
	}
	if base64.StdEncoding.DecodedLen(len(payload)) > MaxImageBytes {
		return nil, bad("image of about %d bytes is over the %d-byte limit", base64.StdEncoding.DecodedLen(len(payload)), MaxImageBytes)
	}
	data, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return nil, bad("image data is not valid base64: %v", err)
	}
	if len(data) == 0 {
		return nil, bad("image data is empty")
	}
	return data, nil
}

// parseChat validates a chat request; d fills the sampling parameters it
// leaves out.
func parseChat(body []byte, d *Defaults) (*chatRequest, []pio.Message, pio.ChatOptions, *apiError) {
	var req chatRequest
	var opt pio.ChatOptions
	if e := decodeRequest(body, &req.samplingParams, req.fields(), chatChecks); e != nil {
		return nil, nil, opt, e
	}
	if len(req.Messages) == 0 {
		return nil, nil, opt, badRequest("messages", "messages must not be empty")
	}
	msgs := make([]pio.Message, 0, len(req.Messages))
	for i, raw := range req.Messages {
		var m chatMessage
		prefix := fmt.Sprintf("messages[%d].", i)
		extras, e := decodeObject(raw, prefix, m.fields(), messageChecks)
		if e != nil {
			return nil, nil, opt, e
		}
		req.extras.add("messages[].", extras)
		role := m.Role
		switch role {
		case "system", "user", "assistant", "tool":
		case "developer":
			role = "system"
		default:
			return nil, nil, opt, badRequest(prefix+"role", "unknown role %q", m.Role)
		}
		text, parts, e := contentParts(m.Content, i, &req.extras)
		if e != nil {
			return nil, nil, opt, e
		}
		if m.Refusal != nil && *m.Refusal != "" {
			// An assistant's earlier refusal is what it said.
			if text != "" || parts != nil {
				return nil, nil, opt, badRequest(prefix+"refusal", "%srefusal: a message has content or a refusal, not both", prefix)
			}
			text = *m.Refusal
		}
		msg := pio.Message{Role: role, Content: text, Parts: parts, Name: m.Name, ToolCallID: m.ToolCallID}
		if m.ReasoningContent != nil {
			msg.ReasoningContent = *m.ReasoningContent
		}
		for j, raw := range m.ToolCalls {
			c, e := toolCall(raw, fmt.Sprintf("%stool_calls[%d]", prefix, j), &req.extras)
			if e != nil {
				return nil, nil, opt, e
			}
			msg.ToolCalls = append(msg.ToolCalls, c)
		}
		msgs = append(msgs, msg)
	}
	top := -1
	if req.TopLogprobs != nil {
		if !req.Logprobs {
			return nil, nil, opt, badRequest("top_logprobs", "top_logprobs needs logprobs: true")
		}
		if *req.TopLogprobs < 0 {
			return nil, nil, opt, badRequest("top_logprobs", "top_logprobs must be in [0, %d], got %d", sample.MaxTopLogprobs, *req.TopLogprobs)
		}
		top = *req.TopLogprobs
	}
	req.withDefaults(d)
	gen, e := req.options(req.MaxCompletionTokens, req.Logprobs, top)
	if e != nil {
		return nil, nil, opt, e
	}
	opt.GenerateOptions = gen
	for i, t := range req.Tools {
		if e := checkTool(t, i, &req.extras); e != nil {
			return nil, nil, opt, e
		}
	}
	useTools, force, e := toolChoice(req.ToolChoice, req.Tools, req.oneToolCall())
	if e != nil {
		return nil, nil, opt, e
	}
	if useTools && len(req.Tools) > 0 {
		opt.Tools = req.Tools
		opt.ParseToolCalls = true
	}
	if force != nil {
		if opt.Grammar != nil {
			return nil, nil, opt, badRequest("tool_choice", "tool_choice forcing a tool call cannot be combined with response_format json_object or json_schema")
		}
		opt.ToolChoice = force
	}
	if opt.TemplateExtra, e = templateKwargs(req.ChatTemplateKwargs); e != nil {
		return nil, nil, opt, e
	}
	if v, ok := opt.TemplateExtra["enable_thinking"]; ok {
		b, isBool := v.(bool)
		if !isBool {
			return nil, nil, opt, badRequest("chat_template_kwargs.enable_thinking", "chat_template_kwargs.enable_thinking must be a boolean")
		}
		opt.EnableThinking = &b
	}
	return &req, msgs, opt, nil
}

// templateKwargs reads chat_template_kwargs, vLLM's extra template
// variables: an object, each value as Python's json.loads would give it to
// the template (chat.TemplateVars: 1 stays an integer, null is None, an
// object keeps its keys' order). Null or {} gives none.
func templateKwargs(raw json.RawMessage) (map[string]any, *apiError) {
	if isNull(raw) {
		return nil, nil
	}
	vars, err := chat.TemplateVars(raw)
	if err != nil {
		return nil, badRequest("chat_template_kwargs", "chat_template_kwargs: %v", err)
	}
	if len(vars) == 0 {
		return nil, nil
	}
	return vars, nil
}

// toolCall reads an assistant message's tool call (param names it:
// "messages[2].tool_calls[0]"): {"id", "type": "function", "function":
// {"name", "arguments"}}, its fields read as the request's are
// (decodeObject; extras go to x).
func toolCall(raw json.RawMessage, param string, x *extraFields) (pio.ToolCall, *apiError) {
	var c pio.ToolCall
	var fn json.RawMessage
	extras, e := decodeObject(raw, param+".", map[string]any{"id": &c.ID, "type": &c.Type, "function": &fn}, nil)
	if e != nil {
		return c, e
	}
	x.add("messages[].tool_calls[].", extras)
	if c.Type != "" && c.Type != "function" {
		return c, badRequest(param+".type", `%s.type: tool call type %q is not supported (only "function")`, param, c.Type)
	}
	if isNull(fn) {
		return c, badRequest(param+".function", "%s.function: a tool call needs function", param)
	}
	extras, e = decodeObject(fn, param+".function.", map[string]any{"name": &c.Function.Name, "arguments": &c.Function.Arguments}, nil)
	if e != nil {
		return c, e
	}
	x.add("messages[].tool_calls[].function.", extras)
	if c.Function.Name == "" {
		return c, badRequest(param+".function.name", "%s.function.name: a tool call needs the function's name", param)
	}
	return c, nil
}

// checkTool checks tools[i], a tool definition: {"type": "function",
// "function": {"name", "description", "parameters", "strict"}}, its fields
// read as the request's are (decodeObject; extras go to x). The template
// is given the definition as the request wrote it.
func checkTool(raw json.RawMessage, i int, x *extraFields) *apiError {
	param := fmt.Sprintf("tools[%d]", i)
	var typ string
	var fn json.RawMessage
	extras, e := decodeObject(raw, param+".", map[string]any{"type": &typ, "function": &fn}, nil)
	if e != nil {
		return e
	}
	x.add("tools[].", extras)
	if typ != "function" || isNull(fn) {
		return badRequest(param, `%s: a tool must be {"type": "function", "function": {"name": ...}}`, param)
	}
	var name string
	var description *string
	var parameters map[string]json.RawMessage
	var strict *bool
	extras, e = decodeObject(fn, param+".function.", map[string]any{
		"name": &name, "description": &description, "parameters": &parameters, "strict": &strict,
	}, nil)
	if e != nil {
		return e
	}
	x.add("tools[].function.", extras)
	if name == "" {
		return badRequest(param+".function.name", "%s.function.name: a tool needs a name", param)
	}
	if strict != nil && *strict {
		return badRequest(param+".function.strict",
			"%s.function.strict: true is not supported: arguments are parsed from the model's text, not constrained to the schema", param)
	}
	return nil
}

// toolChoice reads tool_choice and reports whether the request's tools are
// used, and what a call is forced to be. "auto" (the default) renders them
// into the prompt and parses tool calls out of the answer; "none" does
// neither — the template never shows the model the tools, and markup it
// writes anyway stays content — so no call can come back, as OpenAI
// defines "none". "required" and a named function ({"type": "function",
// "function": {"name": ...}}) force the answer to be tool calls (of any of
// the tools, one or more, exactly one with parallel_tool_calls false; or
// exactly one call of the named function, which must be among tools),
// enforced per token in the model's own tool-call format with the tools'
// parameter schemas (pio.ChatOptions.ToolChoice). allowed_tools is
// refused.
func toolChoice(raw json.RawMessage, tools []json.RawMessage, one bool) (bool, *toolcall.Force, *apiError) {
	if isNull(raw) {
		return true, nil, nil
	}
	var choice string
	if json.Unmarshal(raw, &choice) == nil {
		switch choice {
		case "auto":
			return true, nil, nil
		case "none":
			return false, nil, nil
		case "required":
			if len(tools) == 0 {
				return false, nil, badRequest("tool_choice", `tool_choice "required" needs tools`)
			}
			return true, &toolcall.Force{One: one}, nil
		}
		return false, nil, badRequest("tool_choice", `tool_choice must be "none", "auto" or "required", got %q`, choice)
	}
	var named struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if json.Unmarshal(raw, &named) != nil || named.Type == "" {
		return false, nil, badRequest("tool_choice", `tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}`)
	}
	if named.Type != "function" {
		return false, nil, badRequest("tool_choice", "tool_choice of type %q is not supported (only \"function\")", named.Type)
	}
	name := named.Function.Name
	if name == "" {
		return false, nil, badRequest("tool_choice", "tool_choice.function.name is required")
	}
	for _, t := range tools {
		var def struct {
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		if json.Unmarshal(t, &def) == nil && def.Function.Name == name {
			return true, &toolcall.Force{Name: name, One: true}, nil
		}
	}
	return false, nil, badRequest("tool_choice", "tool_choice names the function %q, which is not among the tools", name)
}

// parseCompletion validates a completion request; the prompt is text or
// token ids (exactly one of the results); d fills the sampling parameters
// it leaves out.
func parseCompletion(body []byte, d *Defaults) (*completionRequest, string, []int32, pio.GenerateOptions, *apiError) {
	var req completionRequest
	var none pio.GenerateOptions
	if e := decodeRequest(body, &req.samplingParams, req.fields(), completionChecks); e != nil {
		return nil, "", nil, none, e
	}
	if req.Echo {
		return nil, "", nil, none, badRequest("echo", "echo is not supported")
	}
	if req.Suffix != nil && *req.Suffix != "" {
		return nil, "", nil, none, badRequest("suffix", "suffix is not supported")
	}
	var text string
	var ids []int32
	var texts []string
	var idLists [][]int32
	switch {
	case isNull(req.Prompt):
		return nil, "", nil, none, badRequest("prompt", "prompt is required")
	case json.Unmarshal(req.Prompt, &text) == nil:
	case json.Unmarshal(req.Prompt, &ids) == nil:
	case json.Unmarshal(req.Prompt, &texts) == nil && len(texts) == 1:
		text = texts[0]
	case json.Unmarshal(req.Prompt, &idLists) == nil && len(idLists) == 1:
		ids = idLists[0]
	default:
		return nil, "", nil, none, badRequest("prompt", "prompt must be a string, a list of token ids, or a list of one of those (batches are not supported)")
	}
	if text == "" && len(ids) == 0 {
		return nil, "", nil, none, badRequest("prompt", "prompt must not be empty")
	}
	top := -1
	if req.Logprobs != nil {
		if *req.Logprobs < 0 {
			return nil, "", nil, none, badRequest("logprobs", "logprobs must be in [0, %d], got %d", sample.MaxTopLogprobs, *req.Logprobs)
		}
		top = *req.Logprobs
	}
	req.withDefaults(d)
	opt, e := req.options(nil, req.Logprobs != nil, top)
	if e != nil {
		return nil, "", nil, none, e
	}
	if req.MaxTokens == nil {
		opt.MaxTokens = 16 // OpenAI's default for completions
	}
	req.bestOf = req.n
	if req.BestOf != nil {
		// best_of = n is the default and changes nothing, so it may stream.
		switch {
		case *req.BestOf < req.n || *req.BestOf > maxChoices:
			return nil, "", nil, none, badRequest("best_of", "best_of must be in [n, %d] (n = %d), got %d", maxChoices, req.n, *req.BestOf)
		case *req.BestOf > req.n && req.Stream:
			return nil, "", nil, none, badRequest("best_of", "best_of (%d candidates for n = %d) cannot be streamed", *req.BestOf, req.n)
		}
		req.bestOf = *req.BestOf
	}
	return &req, text, ids, opt, nil
}
