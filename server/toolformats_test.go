package server

import (
	"context"
	"fmt"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"

	"github.com/inference-pio/pio/pio"
	"github.com/inference-pio/pio/runtime/toolcall"
)

// formatted is an Engine whose chat answer is fixed text, split by the
// parser pio picks for an architecture, with the request's tools (so their
// schema types reach the XML-argument parsers as they do in pio.Chat).
type formatted struct {
	Engine
	arch   string
	pieces []string
}

func (s formatted) Chat(ctx context.Context, msgs []pio.Message, opt pio.ChatOptions, fn func(pio.ChatChunk)) (pio.ChatResult, error) {
	p, err := toolcall.New(toolcall.FormatFor(s.arch, ""), toolcall.Options{ToolCalls: opt.ParseToolCalls, Reasoning: true, InReasoning: true, Tools: opt.Tools})
	if err != nil {
		return pio.ChatResult{}, err
	}
	var res pio.ChatResult
	res.Role = "assistant"
	emit := func(d toolcall.Delta) {
		res.Content += d.Content
		res.ReasoningContent += d.Reasoning
		for _, c := range d.Calls {
			tc := pio.ToolCall{ID: fmt.Sprintf("call_%d", c.Index), Type: "function"}
			tc.Function.Name, tc.Function.Arguments = c.Name, c.Arguments
			res.ToolCalls = append(res.ToolCalls, tc)
		}
		if fn != nil && !d.Empty() {
			fn(pio.ChatChunk{Content: d.Content, Reasoning: d.Reasoning, ToolCalls: d.Calls, Tokens: []int32{1}})
		}
	}
	for _, piece := range s.pieces {
		emit(p.Add(piece))
	}
	emit(p.Flush())
	res.FinishReason = "stop"
	if len(res.ToolCalls) > 0 {
		res.FinishReason = "tool_calls"
	}
	res.CompletionTokens = len(s.pieces)
	return res, nil
}

// TestToolFormats serves GLM-4.7's and Qwen3-Coder's markup (the prompt
// opened <think>, as GLM's does) and checks the OpenAI answer, whole and
// streamed through the official client's accumulator: content, two
// tool_calls with arguments typed by the request's tool schema.
func TestToolFormats(t *testing.T) {
	_, e := start(t, pio.Options{CacheTokens: 512}, Config{})
	want := []struct{ name, args string }{
		{"get_weather", `{"city":"Paris","days":3}`},
		{"get_weather", `{"city":"Tokyo","days":1}`},
	}
	for _, tc := range []struct{ arch, out string }{
		{"Glm4MoeLiteForCausalLM", "The user wants two cities.</think>Checking both." +
			"<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value><arg_key>days</arg_key><arg_value>3</arg_value></tool_call>" +
			"<tool_call>get_weather<arg_key>city</arg_key><arg_value>Tokyo</arg_value><arg_key>days</arg_key><arg_value>1</arg_value></tool_call>"},
		{"Qwen3MoeForCausalLM", "The user wants two cities.</think>\n\nChecking both.\n" +
			"<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>\n" +
			"<tool_call>\n<function=get_weather>\n<parameter=city>\nTokyo\n</parameter>\n<parameter=days>\n1\n</parameter>\n</function>\n</tool_call>"},
	} {
		var pieces []string
		for i := 0; i < len(tc.out); i += 3 {
			pieces = append(pieces, tc.out[i:min(i+3, len(tc.out))])
		}
		c := client(httptestServer(t, mustNew(t, formatted{Engine: e, arch: tc.arch, pieces: pieces}, Config{ModelName: "tiny"})), "")
		params := openai.ChatCompletionNewParams{
			Model:    "tiny",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather in Paris and Tokyo?")},
			Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
				Name: "get_weather",
				Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{
					"city": map[string]any{"type": "string"}, "days": map[string]any{"type": "integer"}}},
			})},
		}
		ctx := context.Background()
		whole, err := c.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		m := whole.Choices[0].Message
		if m.Content != "Checking both." || whole.Choices[0].FinishReason != "tool_calls" || len(m.ToolCalls) != len(want) {
			t.Fatalf("%s: message %+v finish %q", tc.arch, m, whole.Choices[0].FinishReason)
		}
		for i, w := range want {
			if f := m.ToolCalls[i].AsFunction().Function; f.Name != w.name || f.Arguments != w.args {
				t.Errorf("%s: call %d = %s %s, want %s %s", tc.arch, i, f.Name, f.Arguments, w.name, w.args)
			}
		}
		if r := m.JSON.ExtraFields["reasoning_content"].Raw(); r != `"The user wants two cities."` {
			t.Errorf("%s: reasoning_content %s", tc.arch, r)
		}

		s := c.Chat.Completions.NewStreaming(ctx, params)
		var acc openai.ChatCompletionAccumulator
		for s.Next() {
			acc.AddChunk(s.Current())
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		sm := acc.Choices[0].Message
		if sm.Content != "Checking both." || len(sm.ToolCalls) != len(want) || acc.Choices[0].FinishReason != "tool_calls" {
			t.Fatalf("%s: streamed message %+v finish %q", tc.arch, sm, acc.Choices[0].FinishReason)
		}
		for i, w := range want {
			if f := sm.ToolCalls[i].Function; f.Name != w.name || f.Arguments != w.args {
				t.Errorf("%s: streamed call %d = %s %s, want %s %s", tc.arch, i, f.Name, f.Arguments, w.name, w.args)
			}
		}
	}
}
