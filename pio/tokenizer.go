package pio

import (
	"fmt"
	"strings"

	"github.com/inference-pio/pio/frontends/tokenizer"
)

// hfText is the engine's tokenizer and chat template.
type hfText struct {
	*tokenizer.Tokenizer
	template string
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
		return hfText{Tokenizer: tok, template: template}, nil
	}
}

// Render renders msgs for generation.
func (t hfText) Render(msgs []Message, opt templateOptions) (string, error) {
	if t.template == "" {
		return "", fmt.Errorf("pio: the engine has no chat template")
	}
	return renderChatML(msgs, opt), nil
}

// renderChatML is an interim renderer of the ChatML layout Qwen's
// templates produce, used until the Jinja renderer (frontends/chat) is
// wired in.
func renderChatML(msgs []Message, opt templateOptions) string {
	var b strings.Builder
	for _, m := range msgs {
		role, content := m.Role, m.Content
		if role == "tool" {
			role, content = "user", "<tool_response>\n"+content+"\n</tool_response>"
		}
		b.WriteString("<|im_start|>" + role + "\n" + content)
		for _, c := range m.ToolCalls {
			b.WriteString("\n<tool_call>\n{\"name\": \"" + c.Function.Name + "\", \"arguments\": " + c.Function.Arguments + "}\n</tool_call>")
		}
		b.WriteString("<|im_end|>\n")
	}
	b.WriteString("<|im_start|>assistant\n")
	if opt.EnableThinking != nil && !*opt.EnableThinking {
		b.WriteString("<think>\n\n</think>\n\n")
	}
	return b.String()
}
