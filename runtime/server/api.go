package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/inference-pio/pio/pio"
	"github.com/inference-pio/pio/runtime/sample"
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
		return fmt.Errorf("stop must be a string or a list of strings")
	}
	*s = many
	return nil
}

// samplingParams are the fields both endpoints share (OpenAI's, plus
// vLLM's extensions top_k, min_p, repetition_penalty, stop_token_ids,
// ignore_eos).
type samplingParams struct {
	Model             string    `json:"model"`
	MaxTokens         *int      `json:"max_tokens"`
	Temperature       *float64  `json:"temperature"`
	TopP              *float64  `json:"top_p"`
	TopK              *int      `json:"top_k"`
	MinP              *float64  `json:"min_p"`
	RepetitionPenalty *float64  `json:"repetition_penalty"`
	PresencePenalty   *float64  `json:"presence_penalty"`
	FrequencyPenalty  *float64  `json:"frequency_penalty"`
	Seed              *int64    `json:"seed"`
	Stop              stopField `json:"stop"`
	StopTokenIDs      []int32   `json:"stop_token_ids"`
	IgnoreEOS         bool      `json:"ignore_eos"`
	N                 *int      `json:"n"`
	Stream            bool      `json:"stream"`
	StreamOptions     *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

const maxStopStrings = 16

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
	if p.N != nil && *p.N != 1 {
		return o, badRequest("n", "only n=1 is supported, got %d", *p.N)
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

// chatMessage is a message as the API sends it.
type chatMessage struct {
	Role             string          `json:"role"`
	Content          json.RawMessage `json:"content"`
	ReasoningContent *string         `json:"reasoning_content"`
	Name             string          `json:"name"`
	ToolCallID       string          `json:"tool_call_id"`
	ToolCalls        []struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
}

type chatRequest struct {
	samplingParams
	Messages            []chatMessage     `json:"messages"`
	Tools               []json.RawMessage `json:"tools"`
	ToolChoice          json.RawMessage   `json:"tool_choice"`
	MaxCompletionTokens *int              `json:"max_completion_tokens"`
	Logprobs            bool              `json:"logprobs"`
	TopLogprobs         *int              `json:"top_logprobs"`
	ChatTemplateKwargs  map[string]any    `json:"chat_template_kwargs"`
}

type completionRequest struct {
	samplingParams
	Prompt   json.RawMessage `json:"prompt"`
	Logprobs *int            `json:"logprobs"`
	Echo     bool            `json:"echo"`
	Suffix   *string         `json:"suffix"`
}

// decodeJSON reads one JSON object; trailing data is an error.
func decodeJSON(body []byte, v any) *apiError {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return badRequest("", "invalid JSON body: %v", err)
	}
	if dec.More() {
		return badRequest("", "invalid JSON body: data after the object")
	}
	return nil
}

// MaxImageBytes is the most bytes one decoded image_url data may have;
// the request body limit (Config.MaxBodyBytes) applies first.
const MaxImageBytes = 32 << 20

// contentParts reads a message's content: a string, null, or a list of
// content parts. Text-only lists come back as one string; a list with
// image_url parts (data: URLs of base64 PNG, JPEG or WebP) comes back as
// parts, for vision-language engines.
func contentParts(raw json.RawMessage, i int) (string, []pio.Part, *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil, nil
	}
	var parts []struct {
		Type     string `json:"type"`
		Text     string `json:"text"`
		ImageURL *struct {
			URL string `json:"url"`
		} `json:"image_url"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", nil, badRequest(fmt.Sprintf("messages[%d].content", i), "content must be a string or a list of content parts")
	}
	var b strings.Builder
	var out []pio.Part
	images := false
	for j, p := range parts {
		param := fmt.Sprintf("messages[%d].content[%d]", i, j)
		switch p.Type {
		case "text":
			b.WriteString(p.Text)
			out = append(out, pio.Part{Type: "text", Text: p.Text})
		case "image_url":
			if p.ImageURL == nil {
				return "", nil, badRequest(param+".image_url", "an image_url part needs image_url.url")
			}
			data, e := decodeDataURL(p.ImageURL.URL, param+".image_url.url")
			if e != nil {
				return "", nil, e
			}
			out = append(out, pio.Part{Type: "image", Image: data})
			images = true
		default:
			return "", nil, badRequest(param+".type", "content part type %q is not supported (text and image_url)", p.Type)
		}
	}
	if !images {
		return b.String(), nil, nil
	}
	return "", out, nil
}

// decodeDataURL reads data:image/{png,jpeg,webp};base64,... (the only
// image URLs served: the server fetches nothing).
func decodeDataURL(u, param string) ([]byte, *apiError) {
	rest, ok := strings.CutPrefix(u, "data:")
	if !ok {
		return nil, badRequest(param, "image_url must be a data: URL (data:image/png;base64,...); the server fetches no URLs")
	}
	meta, payload, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, badRequest(param, "malformed data: URL (no comma)")
	}
	media, enc, _ := strings.Cut(meta, ";")
	switch strings.ToLower(media) {
	case "image/png", "image/jpeg", "image/jpg", "image/webp":
	default:
		return nil, badRequest(param, "image media type %q is not supported (image/png, image/jpeg, image/webp)", media)
	}
	if !strings.EqualFold(enc, "base64") {
		return nil, badRequest(param, "image data: URL must be base64-encoded")
	}
	if base64.StdEncoding.DecodedLen(len(payload)) > MaxImageBytes {
		return nil, badRequest(param, "image of about %d bytes is over the %d-byte limit", base64.StdEncoding.DecodedLen(len(payload)), MaxImageBytes)
	}
	data, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return nil, badRequest(param, "image data is not valid base64: %v", err)
	}
	if len(data) == 0 {
		return nil, badRequest(param, "image data is empty")
	}
	return data, nil
}

// parseChat validates a chat request.
func parseChat(body []byte) (*chatRequest, []pio.Message, pio.ChatOptions, *apiError) {
	var req chatRequest
	var opt pio.ChatOptions
	if e := decodeJSON(body, &req); e != nil {
		return nil, nil, opt, e
	}
	if len(req.Messages) == 0 {
		return nil, nil, opt, badRequest("messages", "messages must not be empty")
	}
	msgs := make([]pio.Message, 0, len(req.Messages))
	for i, m := range req.Messages {
		role := m.Role
		switch role {
		case "system", "user", "assistant", "tool":
		case "developer":
			role = "system"
		default:
			return nil, nil, opt, badRequest(fmt.Sprintf("messages[%d].role", i), "unknown role %q", m.Role)
		}
		text, parts, e := contentParts(m.Content, i)
		if e != nil {
			return nil, nil, opt, e
		}
		msg := pio.Message{Role: role, Content: text, Parts: parts, Name: m.Name, ToolCallID: m.ToolCallID}
		if m.ReasoningContent != nil {
			msg.ReasoningContent = *m.ReasoningContent
		}
		for _, tc := range m.ToolCalls {
			var c pio.ToolCall
			c.ID, c.Type = tc.ID, tc.Type
			c.Function.Name, c.Function.Arguments = tc.Function.Name, tc.Function.Arguments
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
	gen, e := req.options(req.MaxCompletionTokens, req.Logprobs, top)
	if e != nil {
		return nil, nil, opt, e
	}
	opt.GenerateOptions = gen
	for i, t := range req.Tools {
		var def struct {
			Type     string `json:"type"`
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		if json.Unmarshal(t, &def) != nil || def.Type != "function" || def.Function.Name == "" {
			return nil, nil, opt, badRequest(fmt.Sprintf("tools[%d]", i), "a tool must be {\"type\": \"function\", \"function\": {\"name\": ...}}")
		}
	}
	useTools := len(req.Tools) > 0
	if len(req.ToolChoice) > 0 && string(req.ToolChoice) != "null" {
		var choice string
		if json.Unmarshal(req.ToolChoice, &choice) == nil {
			switch choice {
			case "none":
				useTools = false
			case "auto", "required":
			default:
				return nil, nil, opt, badRequest("tool_choice", "tool_choice must be none, auto, required or a function, got %q", choice)
			}
		}
	}
	if useTools {
		opt.Tools = req.Tools
		opt.ParseToolCalls = true
	}
	if v, ok := req.ChatTemplateKwargs["enable_thinking"]; ok {
		b, isBool := v.(bool)
		if !isBool {
			return nil, nil, opt, badRequest("chat_template_kwargs.enable_thinking", "enable_thinking must be a boolean")
		}
		opt.EnableThinking = &b
	}
	if len(req.ChatTemplateKwargs) > 0 {
		opt.TemplateExtra = req.ChatTemplateKwargs
	}
	return &req, msgs, opt, nil
}

// parseCompletion validates a completion request; the prompt is text or
// token ids (exactly one of the results).
func parseCompletion(body []byte) (*completionRequest, string, []int32, pio.GenerateOptions, *apiError) {
	var req completionRequest
	var none pio.GenerateOptions
	if e := decodeJSON(body, &req); e != nil {
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
	case len(req.Prompt) == 0 || string(req.Prompt) == "null":
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
	opt, e := req.options(nil, req.Logprobs != nil, top)
	if e != nil {
		return nil, "", nil, none, e
	}
	if req.MaxTokens == nil {
		opt.MaxTokens = 16 // OpenAI's default for completions
	}
	return &req, text, ids, opt, nil
}
