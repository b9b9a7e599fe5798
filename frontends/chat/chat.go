// Package chat renders a model's Jinja chat template (tokenizer_config.json "chat_template" or
// chat_template.jinja) over a conversation, byte-identical to transformers' apply_chat_template:
// same variables (messages, tools, add_generation_prompt, enable_thinking and any extra keyword
// arguments), Jinja's trim_blocks and lstrip_blocks, and transformers' Python-style tojson.
//
// Templates run on github.com/nikolalohinski/gonja/v2 with a shim for where it differs from
// Python Jinja. JSON objects (tool definitions, tool call arguments) and messages reach the
// template as gonja's ordered *exec.Dict, so `for k in d`, d|items, d.items()/keys()/values(),
// dictsort's ties and tojson follow insertion order as Python dicts do, and one request always
// renders to one text; JSON null and transformers' tools=None are a None that is defined and
// that the string filter writes as "None". tojson writes Python's json.dumps text (", " and ": "
// separators, non-ASCII unescaped, Python float repr, transformers' keyword arguments), the
// string filter is Python's str() (True, 1.0, ['a', None], {'k': 1}), str.replace works without
// a count, str.startswith/endswith/find/rfind follow Python on empty strings, tuples and bounds,
// the reverse filter reverses, and raise_exception and strftime_now exist.
//
// Known remaining differences: gonja's ** always gives a float (2 ** 5 prints 32.0); printing a
// None directly ({{ x }}, x ~ "") writes "" where Python writes "None", and a dict printed so is
// not Python's repr (the string filter is); gonja cannot tell an undefined name from None in
// tests other than defined and undefined; a dict's attribute whose name is a method or field of
// exec.Dict (x.Keys, x.Get, x.String, x.Pairs) is that, not the item.
//
// It does not tokenize: the rendered text goes to frontends/tokenizer, whose Encode matches the
// special tokens it contains.
package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
	"github.com/nikolalohinski/gonja/v2/tokens"
)

// Message is one turn of a conversation, in OpenAI's chat form.
type Message struct {
	Role, Content string
	// Parts, when not nil, is the content as a list of parts (OpenAI's content array) and
	// Content is ignored: the template sees content as a list of {"type": "text", "text": ...}
	// and {"type": "image"} objects, which Qwen3-VL's template renders as text and as
	// <|vision_start|><|image_pad|><|vision_end|>.
	Parts []Part
	// ReasoningContent is the thinking of an assistant turn. Empty means absent: templates then
	// look for <think>...</think> in Content, as they do when the key is missing.
	ReasoningContent string
	ToolCalls        []ToolCall
	// ToolCallID and Name identify the call a tool message answers (empty: absent).
	ToolCallID, Name string
}

// Part is one part of a message's content.
type Part struct {
	Type  string // "text" or "image"
	Text  string // of a text part
	Image []byte // of an image part: the encoded file, for the runtime (never rendered)
}

// Images returns the image parts' files of msgs in order: the order of the <|image_pad|>
// tokens a template renders for them.
func Images(msgs []Message) [][]byte {
	var out [][]byte
	for _, m := range msgs {
		for _, p := range m.Parts {
			if p.Type == "image" {
				out = append(out, p.Image)
			}
		}
	}
	return out
}

// ToolCall is a call an assistant turn made.
type ToolCall struct {
	ID, Type string // Type "" is rendered as "function"
	Function struct {
		Name string
		// Arguments is JSON text, as in OpenAI's API. Valid JSON reaches the template decoded
		// (as vLLM passes it), an object with its keys in the text's order, so that
		// `arguments|items` and `arguments | tojson` give what Python's json.loads would;
		// anything else reaches it as the string.
		Arguments string
	}
}

// Options are the variables of the template besides messages.
type Options struct {
	AddGenerationPrompt bool
	EnableThinking      *bool             // nil: not defined in the template
	Tools               []json.RawMessage // OpenAI tool definitions, each a JSON object
	// Extra holds further template variables (chat_template_kwargs; bos_token and eos_token for
	// templates that use them). They override the variables above of the same name. A Go map
	// among them has no key order: templates iterate it sorted by key.
	Extra map[string]any
}

// Render returns the text of template applied to msgs, as transformers'
// apply_chat_template(msgs, tools=..., add_generation_prompt=..., tokenize=False, **kwargs).
// A template error (a parse error, raise_exception called, a filter given the wrong value) or a
// tool that is not valid JSON is returned as an error, never a panic.
func Render(template string, msgs []Message, opt Options) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("chat template: %v", r)
		}
	}()
	tmpl, err := compile(template)
	if err != nil {
		return "", err
	}
	messages := make([]any, len(msgs))
	for i, m := range msgs {
		messages[i] = message(m)
	}
	data := map[string]any{
		"messages":              messages,
		"add_generation_prompt": opt.AddGenerationPrompt,
		"tools":                 none, // transformers passes tools=None and documents=None
		"documents":             none,
	}
	if opt.Tools != nil {
		tools := make([]any, len(opt.Tools))
		for i, raw := range opt.Tools {
			v, err := decodeJSON(raw)
			if err != nil {
				return "", fmt.Errorf("chat template: tool %d: %w", i, err)
			}
			tools[i] = v
		}
		data["tools"] = tools
	}
	if opt.EnableThinking != nil {
		data["enable_thinking"] = *opt.EnableThinking
	}
	for k, v := range opt.Extra {
		data[k] = v
	}
	s, err := tmpl.ExecuteToString(exec.NewContext(data))
	if err != nil {
		return "", fmt.Errorf("chat template: %w", err)
	}
	return s, nil
}

// compiled templates by source; a server renders with one or two templates all its life.
var (
	compiledMu sync.Mutex
	compiled   = map[string]*exec.Template{}
)

const maxCompiled = 64

func compile(src string) (*exec.Template, error) {
	compiledMu.Lock()
	defer compiledMu.Unlock()
	if t, ok := compiled[src]; ok {
		return t, nil
	}
	cfg := config.New()
	cfg.TrimBlocks = true // transformers: jinja2 Environment(trim_blocks=True, lstrip_blocks=True)
	cfg.LeftStripBlocks = true
	loader, err := loaders.NewShiftedLoader("chat_template", bytes.NewReader([]byte(midLineTags(src, cfg))), loaders.MustNewFileSystemLoader(""))
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	t, err := exec.NewTemplate("chat_template", cfg, loader, environment())
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	if len(compiled) >= maxCompiled {
		clear(compiled)
	}
	compiled[src] = t
	return t, nil
}

var (
	envOnce sync.Once
	env     *exec.Environment
)

// environment is gonja's default environment with the shim described in the package doc.
func environment() *exec.Environment {
	envOnce.Do(func() {
		filters := exec.NewFilterSet(map[string]exec.FilterFunction{}).Update(builtins.Filters)
		for name, f := range map[string]exec.FilterFunction{"tojson": filterToJSON, "reverse": filterReverse,
			"items": filterItems, "dictsort": filterDictSort, "string": filterString} {
			if err := filters.Replace(name, f); err != nil {
				panic(err) // gonja always has these filters
			}
		}
		tests := exec.NewTestSet(map[string]exec.TestFunction{}).Update(builtins.Tests)
		for name, f := range map[string]exec.TestFunction{"defined": testDefined, "undefined": testUndefined} {
			if err := tests.Replace(name, f); err != nil {
				panic(err) // gonja always has these tests
			}
		}
		ctx := exec.EmptyContext().Update(builtins.GlobalFunctions).Update(builtins.GlobalVariables)
		ctx.Set("raise_exception", func(msg string) (string, error) {
			return "", errors.New(msg)
		})
		ctx.Set("strftime_now", func(format string) string {
			return strftime(time.Now(), format)
		})
		env = &exec.Environment{
			Context:           ctx,
			Filters:           filters,
			Tests:             tests,
			ControlStructures: builtins.ControlStructures,
			Methods:           methods(),
		}
	})
	return env
}

// midLineTags returns src (newlines normalized as gonja does) with a '+' ({%+, {#+) on each block
// or comment tag that follows spaces or tabs in the middle of a line. Jinja's lstrip_blocks
// strips the blanks before a tag only where they start a line; gonja's strips them after any
// other tag too ("{{ x }} {% endif %}" loses its space), and '+' turns lstrip_blocks off for one
// tag in both. A template gonja cannot lex is returned as it is, for the parser to report.
func midLineTags(src string, cfg *config.Config) string {
	src = strings.ReplaceAll(strings.ReplaceAll(src, "\r\n", "\n"), "\r", "\n")
	lexCfg := cfg.Inherit()
	lexCfg.LeftStripBlocks = false
	lexCfg.KeepTrailingNewline = true // positions in src as it is
	stream := tokens.LexAll(src, lexCfg)
	var at []int // positions just after the "{%" or "{#" to mark
	var prev, data *tokens.Token
	for ; !stream.End(); stream.Next() {
		tok := stream.Current()
		switch tok.Type {
		case tokens.BlockBegin, tokens.CommentBegin:
			if data != nil && (tok.Val == cfg.BlockStartString || tok.Val == cfg.CommentStartString) &&
				data.Pos > 0 && src[data.Pos-1] != '\n' && prev != nil && !strings.HasPrefix(prev.Val, "-") &&
				strings.Trim(src[data.Pos:tok.Pos], " \t") == "" {
				at = append(at, tok.Pos+len(tok.Val))
			}
		}
		data = nil
		switch tok.Type {
		case tokens.Data:
			data = tok
		case tokens.BlockEnd, tokens.VariableEnd, tokens.CommentEnd:
			prev = tok
		}
	}
	if stream.IsError() || len(at) == 0 {
		return src
	}
	var b strings.Builder
	last := 0
	for _, p := range at {
		b.WriteString(src[last:p])
		b.WriteByte('+')
		last = p
	}
	b.WriteString(src[last:])
	return b.String()
}
