package server

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/pio"
	"github.com/inference-pio/pio/runtime/toolcall"
)

func client(url, key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

// TestOpenAIClient drives a live server with the official Go client:
// models, chat and completions, streamed and not, against the engine's
// own results.
func TestOpenAIClient(t *testing.T) {
	srv, e := start(t, pio.Options{MaxStepTokens: 16, MaxSeqs: 8, CacheTokens: 2048}, Config{APIKey: "k"})
	c := client(srv.URL, "k")
	ctx := context.Background()

	models, err := c.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(models.Data) != 1 || models.Data[0].ID != "tiny" {
		t.Errorf("models %+v", models.Data)
	}

	// Completions by token ids give transformers' greedy tokens.
	g, err := golden.Load("qwen3-a")
	if err != nil {
		t.Fatal(err)
	}
	p := g.Prompts[1]
	var prompt []int64
	for _, id := range p.IDs {
		prompt = append(prompt, int64(id))
	}
	zero := 0.0
	want, err := e.GenerateIDs(ctx, p.IDs, pio.GenerateOptions{MaxTokens: 16, Temperature: &zero, IgnoreEOS: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(want.Tokens, p.Greedy) {
		t.Fatalf("engine greedy %v, golden %v", want.Tokens, p.Greedy)
	}
	cparams := openai.CompletionNewParams{
		Model:       "tiny",
		Prompt:      openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: prompt},
		MaxTokens:   openai.Int(16),
		Temperature: openai.Float(0),
		Logprobs:    openai.Int(2),
	}
	cparams.SetExtraFields(map[string]any{"ignore_eos": true})
	comp, err := c.Completions.New(ctx, cparams)
	if err != nil {
		t.Fatal(err)
	}
	if len(comp.Choices) != 1 || comp.Choices[0].Text != want.Text || comp.Usage.CompletionTokens != 16 || comp.Usage.PromptTokens != int64(len(p.IDs)) {
		t.Errorf("completion %q usage %+v, want %q", comp.Choices[0].Text, comp.Usage, want.Text)
	}
	if lp := comp.Choices[0].Logprobs; len(lp.TokenLogprobs) != 16 || len(lp.TopLogprobs) != 16 || len(lp.TopLogprobs[0]) == 0 {
		t.Errorf("logprobs %+v", lp)
	}
	stream := c.Completions.NewStreaming(ctx, cparams)
	var text strings.Builder
	finish := ""
	for stream.Next() {
		ch := stream.Current()
		if len(ch.Choices) > 0 {
			text.WriteString(ch.Choices[0].Text)
			if ch.Choices[0].FinishReason != "" {
				finish = string(ch.Choices[0].FinishReason)
			}
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != want.Text || finish != "length" {
		t.Errorf("streamed completion %q finish %q, want %q length", text.String(), finish, want.Text)
	}

	// Chat, whole and streamed, gives the same message; N concurrent
	// streams each give it too. (stream_options is only for streams: a
	// whole request with it is a 400, as OpenAI's.)
	params := openai.ChatCompletionNewParams{
		Model:       "tiny",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("Hello there")},
		MaxTokens:   openai.Int(12),
		Temperature: openai.Float(0),
		Seed:        openai.Int(1),
	}
	whole, err := c.Chat.Completions.New(ctx, params)
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	if err != nil {
		t.Fatal(err)
	}
	if whole.Usage.CompletionTokens == 0 || whole.Choices[0].FinishReason == "" || whole.Object != "chat.completion" {
		t.Errorf("chat %+v", whole)
	}
	wantMsg := whole.Choices[0].Message.Content + "|" + whole.Choices[0].Message.JSON.ExtraFields["reasoning_content"].Raw()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acc, reasoning, err := streamChat(ctx, c, params)
			if err != nil {
				t.Error(err)
				return
			}
			if len(acc.Choices) != 1 || acc.Usage.CompletionTokens != whole.Usage.CompletionTokens {
				t.Errorf("stream %d: %+v", i, acc.ChatCompletion)
				return
			}
			got := acc.Choices[0].Message.Content + "|"
			if reasoning != "" {
				b, _ := json.Marshal(reasoning)
				got += string(b)
			}
			if got != wantMsg {
				t.Errorf("stream %d: %q, want %q", i, got, wantMsg)
			}
		}()
	}
	wg.Wait()

	// A wrong key is refused with OpenAI's error.
	bad := client(srv.URL, "nope")
	_, err = bad.Chat.Completions.New(ctx, params)
	var apiErr *openai.Error
	if err == nil || !asError(err, &apiErr) || apiErr.StatusCode != 401 {
		t.Errorf("wrong key: %v", err)
	}
}

func asError(err error, target **openai.Error) bool {
	e, ok := err.(*openai.Error)
	if ok {
		*target = e
	}
	return ok
}

// scripted is an Engine whose chat answer is fixed text, run through the
// same toolcall parser as pio's: it checks how the server returns
// reasoning and tool calls, which a random tiny model never writes.
type scripted struct {
	Engine
	pieces []string
}

func (s scripted) Chat(ctx context.Context, msgs []pio.Message, opt pio.ChatOptions, fn func(pio.ChatChunk)) (pio.ChatResult, error) {
	p, _ := toolcall.New("qwen3", toolcall.Options{ToolCalls: opt.ParseToolCalls, Reasoning: true})
	var res pio.ChatResult
	res.Role = "assistant"
	emit := func(d toolcall.Delta) {
		res.Content += d.Content
		res.ReasoningContent += d.Reasoning
		for _, c := range d.Calls {
			tc := pio.ToolCall{ID: "call_x", Type: "function"}
			tc.Function.Name, tc.Function.Arguments = c.Name, c.Arguments
			res.ToolCalls = append(res.ToolCalls, tc)
		}
		if fn != nil {
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

func TestToolCallsAndReasoning(t *testing.T) {
	_, e := start(t, pio.Options{CacheTokens: 512}, Config{})
	out := "<think>\nThe user wants weather.\n</think>\n\nChecking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"
	var pieces []string
	for i := 0; i < len(out); i += 5 {
		pieces = append(pieces, out[i:min(i+5, len(out))])
	}
	srv := httptestServer(t, mustNew(t, scripted{Engine: e, pieces: pieces}, Config{ModelName: "tiny"}))
	c := client(srv, "")
	params := weatherParams("Weather in Paris?")
	ctx := context.Background()
	whole, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	m := whole.Choices[0].Message
	if m.Content != "Checking." || whole.Choices[0].FinishReason != "tool_calls" || len(m.ToolCalls) != 1 {
		t.Fatalf("message %+v finish %q", m, whole.Choices[0].FinishReason)
	}
	fc := m.ToolCalls[0].AsFunction()
	if fc.Function.Name != "get_weather" || fc.Function.Arguments != `{"city":"Paris"}` || fc.ID == "" {
		t.Errorf("tool call %+v", fc)
	}
	if r := m.JSON.ExtraFields["reasoning_content"].Raw(); r != `"The user wants weather."` {
		t.Errorf("reasoning_content %s", r)
	}

	acc, reasoning, err := streamChat(ctx, c, params)
	if err != nil {
		t.Fatal(err)
	}
	sm := acc.Choices[0].Message
	if sm.Content != "Checking." || len(sm.ToolCalls) != 1 || sm.ToolCalls[0].Function.Name != "get_weather" ||
		sm.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` || acc.Choices[0].FinishReason != "tool_calls" {
		t.Errorf("streamed message %+v finish %q", sm, acc.Choices[0].FinishReason)
	}
	if reasoning != "The user wants weather." {
		t.Errorf("streamed reasoning %q", reasoning)
	}
}

// streamChat streams a chat completion through the official client and
// returns the accumulated completion and the reasoning_content deltas
// joined.
func streamChat(ctx context.Context, c openai.Client, params openai.ChatCompletionNewParams) (openai.ChatCompletionAccumulator, string, error) {
	s := c.Chat.Completions.NewStreaming(ctx, params)
	var acc openai.ChatCompletionAccumulator
	var reasoning strings.Builder
	for s.Next() {
		ch := s.Current()
		acc.AddChunk(ch)
		if len(ch.Choices) > 0 {
			if r := ch.Choices[0].Delta.JSON.ExtraFields["reasoning_content"]; r.Raw() != "" {
				var v string
				if err := json.Unmarshal([]byte(r.Raw()), &v); err != nil {
					return acc, "", err
				}
				reasoning.WriteString(v)
			}
		}
	}
	return acc, reasoning.String(), s.Err()
}
