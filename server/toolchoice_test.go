package server

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"

	"github.com/inference-pio/pio/internal/schemacheck"
	"github.com/inference-pio/pio/pio"
)

// TestToolChoiceRequired: tool_choice "required" (parallel or not) and a
// named function, through the official Go client, streamed and not, on
// the tiny Qwen3 model (Hermes JSON calls) at temperature 1: every answer
// that finishes has finish_reason tool_calls, no content, and calls of the
// offered tools (the named one when named; exactly one with
// parallel_tool_calls false or a named function) whose arguments an
// independent validator accepts under the tool's schema.
func TestToolChoiceRequired(t *testing.T) {
	srv, _ := start(t, pio.Options{MaxStepTokens: 64, MaxSeqs: 8, CacheTokens: 8192}, Config{})
	c := client(srv.URL, "")
	// Small tools: the tiny model holds 512 tokens, the tools' prompt included.
	schemas := map[string]string{
		"f": `{"type":"object","properties":{"n":{"type":"integer","minimum":0,"maximum":9}},"required":["n"],"additionalProperties":false}`,
		"g": `{"type":"object","properties":{"b":{"type":"boolean"}},"additionalProperties":false}`,
	}
	sc := map[string]*schemacheck.Schema{}
	var tools []openai.ChatCompletionToolUnionParam
	for _, name := range []string{"f", "g"} {
		sc[name] = schemacheck.Compile(t, name, []byte(schemas[name]))
		var p shared.FunctionParameters
		if err := json.Unmarshal([]byte(schemas[name]), &p); err != nil {
			t.Fatal(err)
		}
		tools = append(tools, openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: name, Parameters: p}))
	}
	cases := []struct {
		what   string
		choice openai.ChatCompletionToolChoiceOptionUnionParam
		one    bool
		want   string
	}{
		{"required", openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}, false, ""},
		{"required, parallel_tool_calls false", openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}, true, ""},
		{"named g", openai.ChatCompletionToolChoiceOptionUnionParam{OfFunctionToolChoice: &openai.ChatCompletionNamedToolChoiceParam{
			Function: openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "g"}}}, false, "g"},
	}
	check := func(what string, seed int64, ch openai.ChatCompletionMessage, finish string, one bool, want string) bool {
		if finish == "length" {
			return false
		}
		if finish != "tool_calls" || ch.Content != "" || len(ch.ToolCalls) == 0 {
			t.Errorf("%s seed %d: finish %q, content %q, %d calls", what, seed, finish, ch.Content, len(ch.ToolCalls))
			return false
		}
		if (one || want != "") && len(ch.ToolCalls) != 1 {
			t.Errorf("%s seed %d: %d calls, want 1", what, seed, len(ch.ToolCalls))
		}
		for _, call := range ch.ToolCalls {
			s, ok := sc[call.Function.Name]
			if !ok || want != "" && call.Function.Name != want {
				t.Errorf("%s seed %d: a call of %q", what, seed, call.Function.Name)
				continue
			}
			if err := s.Validate(call.Function.Arguments); err != nil {
				t.Errorf("%s seed %d: %s(%s): %v", what, seed, call.Function.Name, call.Function.Arguments, err)
			}
		}
		return true
	}
	for _, tc := range cases {
		params := openai.ChatCompletionNewParams{
			Model:       "tiny",
			Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")},
			Tools:       tools,
			ToolChoice:  tc.choice,
			Temperature: openai.Float(1),
		}
		if tc.one {
			params.ParallelToolCalls = openai.Bool(false)
		}
		params.SetExtraFields(map[string]any{"chat_template_kwargs": map[string]any{"enable_thinking": false}})
		finished, total := 0, 0
		for seed := int64(1); seed <= 8; seed++ {
			params.Seed = openai.Int(seed)
			r, err := c.Chat.Completions.New(context.Background(), params)
			if err != nil {
				t.Fatal(err)
			}
			total++
			if check(tc.what, seed, r.Choices[0].Message, r.Choices[0].FinishReason, tc.one, tc.want) {
				finished++
			}
			st := c.Chat.Completions.NewStreaming(context.Background(), params)
			var acc openai.ChatCompletionAccumulator
			for st.Next() {
				acc.AddChunk(st.Current())
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			total++
			if check(tc.what+" (streamed)", seed, acc.Choices[0].Message, acc.Choices[0].FinishReason, tc.one, tc.want) {
				finished++
			}
		}
		t.Logf("%s: %d of %d answers finished, each valid tool calls", tc.what, finished, total)
		if finished < total/3 {
			t.Errorf("%s: only %d of %d answers finished", tc.what, finished, total)
		}
	}
}
