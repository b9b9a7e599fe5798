// Package chat renders a model's Jinja chat template (tokenizer_config.json "chat_template" or
// chat_template.jinja) over a conversation, byte-identical to transformers' apply_chat_template:
// same variables (messages, tools, add_generation_prompt, enable_thinking and any extra keyword
// arguments), Jinja's trim_blocks and lstrip_blocks, and transformers' Python-style tojson.
//
// Templates run on github.com/nikolalohinski/gonja/v2 with a shim for where it differs from
// Python Jinja: JSON objects keep their key order (tojson, dict.items/keys/values), tojson writes
// Python's json.dumps text (", " and ": " separators, non-ASCII unescaped, Python float repr),
// str.replace works without a count, str.startswith/endswith/find/rfind follow Python on empty
// strings, tuples and bounds, the reverse filter reverses, and raise_exception and strftime_now
// exist. Known remaining difference: gonja's ** always gives a float (2 ** 5 prints 32.0).
//
// It does not tokenize: the rendered text goes to frontends/tokenizer, whose Encode matches the
// special tokens it contains.
package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
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
		// Arguments is JSON text, as in OpenAI's API. Valid JSON reaches the template as an
		// object (as vLLM passes it), so `arguments | tojson` prints Python's json.dumps of it;
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
	// templates that use them). They override the variables above of the same name.
	Extra map[string]any
}

// Render returns the text of template applied to msgs, as transformers'
// apply_chat_template(msgs, tools=..., add_generation_prompt=..., tokenize=False, **kwargs).
// A template error (a parse error, or raise_exception called) is returned, never a panic.
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
	reg := newRegistry()
	defer reg.release()

	messages := make([]any, len(msgs))
	for i, m := range msgs {
		messages[i] = reg.message(m)
	}
	data := map[string]any{
		"messages":              messages,
		"add_generation_prompt": opt.AddGenerationPrompt,
	}
	if opt.Tools != nil {
		tools := make([]any, len(opt.Tools))
		for i, raw := range opt.Tools {
			v, err := reg.decode(raw)
			if err != nil {
				return "", fmt.Errorf("chat template: tool %d: %w", i, err)
			}
			tools[i] = v
		}
		data["tools"] = tools
	} else {
		data["tools"] = nil // transformers passes tools=None
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
	loader, err := loaders.NewShiftedLoader("chat_template", bytes.NewReader([]byte(src)), loaders.MustNewFileSystemLoader(""))
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
		for name, f := range map[string]exec.FilterFunction{"tojson": filterToJSON, "reverse": filterReverse} {
			if err := filters.Replace(name, f); err != nil {
				panic(err) // gonja always has these filters
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
			Tests:             builtins.Tests,
			ControlStructures: builtins.ControlStructures,
			Methods:           methods(),
		}
	})
	return env
}
