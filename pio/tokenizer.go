package pio

import (
	"encoding/json"
	"fmt"

	"github.com/inference-pio/pio/frontends/chat"
	"github.com/inference-pio/pio/frontends/tokenizer"
)

// hfText is the engine's tokenizer and chat template.
type hfText struct {
	*tokenizer.Tokenizer
	template string
	specials map[string]any
}

func (t hfText) NewStreamDecoder(skipSpecial bool) streamDecoder {
	return t.Tokenizer.NewStreamDecoder(skipSpecial)
}

func init() {
	loadText = func(tokJSON, cfgJSON []byte, template string) (textCodec, error) {
		tok, err := tokenizer.Load(tokJSON, cfgJSON)
		if err != nil {
			return nil, err
		}
		if template == "" {
			template = tok.ChatTemplate()
		}
		return hfText{Tokenizer: tok, template: template, specials: specialTokens(cfgJSON)}, nil
	}
}

// Render renders msgs for generation with the model's Jinja template.
func (t hfText) Render(msgs []Message, opt templateOptions) (string, error) {
	if t.template == "" {
		return "", fmt.Errorf("pio: the engine has no chat template")
	}
	extra := map[string]any{}
	for k, v := range t.specials {
		extra[k] = v
	}
	for k, v := range opt.Extra {
		extra[k] = v
	}
	return chat.Render(t.template, msgs, chat.Options{AddGenerationPrompt: true, EnableThinking: opt.EnableThinking, Tools: opt.Tools, Extra: extra})
}

// specialTokens reads bos_token and eos_token of tokenizer_config.json
// (a string or {"content": ...}), which some templates use.
func specialTokens(cfg []byte) map[string]any {
	var raw map[string]json.RawMessage
	if json.Unmarshal(cfg, &raw) != nil {
		return nil
	}
	out := map[string]any{}
	for _, k := range []string{"bos_token", "eos_token"} {
		var s string
		var obj struct {
			Content string `json:"content"`
		}
		if json.Unmarshal(raw[k], &s) == nil && s != "" {
			out[k] = s
		} else if json.Unmarshal(raw[k], &obj) == nil && obj.Content != "" {
			out[k] = obj.Content
		}
	}
	return out
}

// Message is one chat message, as chat templates and the OpenAI API see it.
type Message = chat.Message

// Part is one part of a message's content: text, or an image file.
type Part = chat.Part

// ToolCall is a call an assistant message made.
type ToolCall = chat.ToolCall
