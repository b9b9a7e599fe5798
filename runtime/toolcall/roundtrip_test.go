package toolcall

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/inference-pio/pio/frontends/chat"
)

// TestGLM47RoundTrip renders each assistant turn with tool calls of the chat test conversations
// through GLM-4.7-Flash's published template (testdata/tokenizer/glm-synthetic carries the real
// file, as testdata/templates/GLM-4.7-Flash.jinja) and parses the turn back: the calls must come
// out as they went in.
func TestGLM47RoundTrip(t *testing.T) {
	tmpl, err := os.ReadFile("../../testdata/tokenizer/glm-synthetic/chat_template.jinja")
	if err != nil {
		t.Fatal(err)
	}
	var convs []struct {
		Name     string            `json:"name"`
		Tools    []json.RawMessage `json:"tools"`
		Messages []struct {
			Role      string `json:"role"`
			Content   string `json:"content"`
			ToolCalls []struct {
				Function struct {
					Name      string          `json:"name"`
					Arguments json.RawMessage `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"messages"`
	}
	b, err := os.ReadFile("../../testdata/tokenizer/conversations.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &convs); err != nil {
		t.Fatal(err)
	}
	render := func(msgs []chat.Message) string {
		s, err := chat.Render(string(tmpl), msgs, chat.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	checked := 0
	for _, c := range convs {
		var msgs []chat.Message
		for _, m := range c.Messages {
			msg := chat.Message{Role: m.Role, Content: m.Content}
			var want []Call
			for _, tc := range m.ToolCalls {
				args := string(tc.Function.Arguments)
				if strings.Contains(args, "</") {
					// A string value holding the format's own closing tags cannot
					// round-trip: drop such values.
					var obj map[string]any
					if err := json.Unmarshal(tc.Function.Arguments, &obj); err != nil {
						t.Fatal(err)
					}
					for k, v := range obj {
						if s, ok := v.(string); ok && strings.Contains(s, "</") {
							delete(obj, k)
							t.Logf("%s: argument %q dropped: it holds markup", c.Name, k)
						}
					}
					b, _ := json.Marshal(obj)
					args = string(b)
				}
				var call chat.ToolCall
				call.Function.Name, call.Function.Arguments = tc.Function.Name, args
				msg.ToolCalls = append(msg.ToolCalls, call)
				want = append(want, Call{Index: len(want), Name: tc.Function.Name, Arguments: args})
			}
			before := render(msgs)
			msgs = append(msgs, msg)
			if len(want) == 0 {
				continue
			}
			turn, ok := strings.CutPrefix(render(msgs)[len(before):], "<|assistant|>")
			if !ok {
				t.Fatalf("%s: the assistant turn does not start with <|assistant|>", c.Name)
			}
			opt := Options{ToolCalls: true, Reasoning: true, Tools: c.Tools}
			if r, ok := strings.CutPrefix(turn, "<think>"); ok { // as after the <think> generation prompt
				turn, opt.InReasoning = r, true
			} else {
				turn = strings.TrimPrefix(turn, "</think>")
			}
			got := collect(t, "glm47", opt, []string{turn})
			if len(got.Calls) != len(want) {
				t.Errorf("%s: parsed %d calls from %q, want %d", c.Name, len(got.Calls), turn, len(want))
				continue
			}
			for i := range want {
				var g, w any
				if json.Unmarshal([]byte(got.Calls[i].Arguments), &g) != nil || json.Unmarshal([]byte(want[i].Arguments), &w) != nil ||
					got.Calls[i].Name != want[i].Name || !cmp.Equal(g, w) {
					t.Errorf("%s: call %d = %s %s, want %s %s", c.Name, i, got.Calls[i].Name, got.Calls[i].Arguments, want[i].Name, want[i].Arguments)
				}
			}
			checked++
		}
	}
	if checked < 3 {
		t.Fatalf("only %d assistant turns with tool calls checked", checked)
	}
}
