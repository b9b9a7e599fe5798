package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"

	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/pio"
)

// postOK posts body and decodes the 200 answer.
func postOK(t *testing.T, url, body string) map[string]any {
	t.Helper()
	status, out := post(t, url, "", body)
	if status != 200 {
		t.Fatalf("%s: status %d (%s)", body, status, out)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// choicesOf returns the answer's choices by index, checking the indices
// are 0..n-1.
func choicesOf(t *testing.T, r map[string]any, n int) []map[string]any {
	t.Helper()
	list, _ := r["choices"].([]any)
	if len(list) != n {
		t.Fatalf("%d choices, want %d: %v", len(list), n, r)
	}
	out := make([]map[string]any, n)
	for _, c := range list {
		m := c.(map[string]any)
		i := int(m["index"].(float64))
		if i < 0 || i >= n || out[i] != nil {
			t.Fatalf("choice index %d twice or out of [0, %d)", i, n)
		}
		out[i] = m
	}
	return out
}

// sseEvents posts a streamed request and returns the data of its events
// up to [DONE].
func sseEvents(t *testing.T, url, body string) []string {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: status %d", body, resp.StatusCode)
	}
	var evs []string
	rd := bufio.NewReader(resp.Body)
	for {
		ev, err := readEvent(rd)
		if err != nil {
			t.Fatal(err)
		}
		if ev == "[DONE]" {
			return evs
		}
		evs = append(evs, ev)
	}
}

// streamChoices posts a streamed request and returns each choice's text
// (completions' text or chat's delta content), its finish reason and the
// usage of the last chunk, checking that every chunk carries one choice.
func streamChoices(t *testing.T, url, body string, n int) (texts, finish []string, usage map[string]any) {
	t.Helper()
	texts, finish = make([]string, n), make([]string, n)
	for _, ev := range sseEvents(t, url, body) {
		var ch struct {
			Choices []struct {
				Index        int     `json:"index"`
				Text         string  `json:"text"`
				FinishReason *string `json:"finish_reason"`
				Delta        struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage map[string]any `json:"usage"`
		}
		if err := json.Unmarshal([]byte(ev), &ch); err != nil {
			t.Fatalf("event %s: %v", ev, err)
		}
		if ch.Usage != nil {
			usage = ch.Usage
			continue
		}
		if len(ch.Choices) != 1 {
			t.Fatalf("chunk with %d choices: %s", len(ch.Choices), ev)
		}
		c := ch.Choices[0]
		if c.Index < 0 || c.Index >= n || finish[c.Index] != "" {
			t.Fatalf("chunk for choice %d (of %d, finished %q): %s", c.Index, n, finish, ev)
		}
		texts[c.Index] += c.Text + c.Delta.Content
		if c.FinishReason != nil {
			finish[c.Index] = *c.FinishReason
		}
	}
	return texts, finish, usage
}

// weatherParams is a chat request for question offering a get_weather
// tool that takes a city.
func weatherParams(question string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    "tiny",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(question)},
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name:       "get_weather",
			Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
		})},
	}
}

// idList is a prompt of n token ids as JSON.
func idList(n, base int) string {
	var s []string
	for i := 0; i < n; i++ {
		s = append(s, strconv.Itoa((base+i*13)%500))
	}
	return "[" + strings.Join(s, ",") + "]"
}

// TestLogitBias: a bias of -100 on the greedy token makes greedy decoding
// take the runner-up (the model's second most likely token), +100 on a
// token makes every step take it, greedy or sampled, in both endpoints.
func TestLogitBias(t *testing.T) {
	srv, e := start(t, pio.Options{MaxStepTokens: 32, CacheTokens: 1024}, Config{})
	g, err := golden.Load("qwen3-a")
	if err != nil {
		t.Fatal(err)
	}
	p := g.Prompts[1]
	prompt, _ := json.Marshal(p.IDs)
	comp := srv.URL + "/v1/completions"
	first := func(bias string) (tok string, lp float64, top map[string]any) {
		r := postOK(t, comp, `{"prompt":`+string(prompt)+`,"max_tokens":1,"temperature":0,"logprobs":2,"logit_bias":{`+bias+`}}`)
		l := choicesOf(t, r, 1)[0]["logprobs"].(map[string]any)
		return l["tokens"].([]any)[0].(string), l["token_logprobs"].([]any)[0].(float64), l["top_logprobs"].([]any)[0].(map[string]any)
	}
	tok, lp, top := first("")
	if len(top) != 2 || top[tok] != lp {
		t.Fatalf("greedy token %q (%v) is not the most likely of %v", tok, lp, top)
	}
	greedy := p.Greedy[0] // transformers' greedy token
	banned, blp, _ := first(fmt.Sprintf(`"%d":-100`, greedy))
	var runnerUp string
	for k, v := range top {
		if k != tok && v.(float64) < lp {
			runnerUp = k
		}
	}
	if banned != runnerUp || top[banned] != blp {
		t.Errorf("greedy token %d banned: took %q (%v), want the runner-up %q of %v", greedy, banned, blp, runnerUp, top)
	}
	x, err := e.Encode("x")
	if err != nil || len(x) != 1 {
		t.Fatalf("encode x: %v %v", x, err)
	}
	for _, sampling := range []string{`"temperature":0`, `"temperature":1,"seed":4`} {
		bias := fmt.Sprintf(`"logit_bias":{"%d":100},"max_tokens":5,"ignore_eos":true,%s`, x[0], sampling)
		r := postOK(t, comp, `{"prompt":`+string(prompt)+`,`+bias+`}`)
		if got := choicesOf(t, r, 1)[0]["text"]; got != "xxxxx" {
			t.Errorf("completion, %s, +100 on x: %q", sampling, got)
		}
		r = postOK(t, srv.URL+"/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],`+bias+`}`)
		if got := choicesOf(t, r, 1)[0]["message"].(map[string]any)["content"]; got != "xxxxx" {
			t.Errorf("chat, %s, +100 on x: %q", sampling, got)
		}
	}
}

// TestChoices: n choices are separate sequences that share the prompt's
// blocks through the prefix cache (the prefill counter proves it), are
// indexed 0..n-1 whole and streamed, differ when sampled, are reproducible
// with a seed, are identical when greedy, and all count in the usage.
func TestChoices(t *testing.T) {
	srv, _ := start(t, pio.Options{MaxStepTokens: 64, CacheTokens: 2048, BlockSize: 16}, Config{})
	comp := srv.URL + "/v1/completions"
	body := `{"prompt":` + idList(50, 3) + `,"n":3,"max_tokens":4,"ignore_eos":true,"temperature":1,"seed":5}`
	prefill := metric(t, srv.URL, "pio_prefill_tokens_total")
	cached := metric(t, srv.URL, "pio_prompt_cached_tokens_total")
	r := postOK(t, comp, body)
	// Choice 0 computes the 50 prompt positions; choices 1 and 2 take its
	// 3 full blocks (48 positions) from the cache and compute 2 each.
	if d := metric(t, srv.URL, "pio_prefill_tokens_total") - prefill; d != 50+2+2 {
		t.Errorf("n=3 prefilled %v positions, want 54 (the prompt once, then 2 per further choice)", d)
	}
	if d := metric(t, srv.URL, "pio_prompt_cached_tokens_total") - cached; d != 96 {
		t.Errorf("n=3 took %v positions from the prefix cache, want 96", d)
	}
	u := r["usage"].(map[string]any)
	if u["prompt_tokens"] != 50.0 || u["completion_tokens"] != 12.0 || u["total_tokens"] != 62.0 {
		t.Errorf("usage %v, want 50 prompt and 12 completion tokens", u)
	}
	var texts []string
	for _, c := range choicesOf(t, r, 3) {
		texts = append(texts, c["text"].(string))
	}
	if texts[0] == texts[1] && texts[1] == texts[2] {
		t.Errorf("three sampled choices are the same: %q", texts)
	}
	var again []string
	for _, c := range choicesOf(t, postOK(t, comp, body), 3) {
		again = append(again, c["text"].(string))
	}
	if !slices.Equal(texts, again) {
		t.Errorf("same seed, other choices: %q then %q", texts, again)
	}
	streamed, finish, su := streamChoices(t, comp, strings.Replace(body, `"n":3`, `"n":3,"stream":true,"stream_options":{"include_usage":true}`, 1), 3)
	if !slices.Equal(streamed, texts) || !slices.Equal(finish, []string{"length", "length", "length"}) {
		t.Errorf("streamed %q finish %q, want %q and length", streamed, finish, texts)
	}
	if su["completion_tokens"] != 12.0 {
		t.Errorf("streamed usage %v, want 12 completion tokens", su)
	}
	greedy := choicesOf(t, postOK(t, comp, `{"prompt":`+idList(20, 9)+`,"n":2,"max_tokens":6,"temperature":0}`), 2)
	if greedy[0]["text"] != greedy[1]["text"] {
		t.Errorf("greedy choices differ: %q, %q", greedy[0]["text"], greedy[1]["text"])
	}

	chat := srv.URL + "/v1/chat/completions"
	cbody := `{"messages":[{"role":"user","content":"Tell me a story."}],"n":2,"max_tokens":6,"temperature":1,"seed":11}`
	var contents []string
	for _, c := range choicesOf(t, postOK(t, chat, cbody), 2) {
		s, _ := c["message"].(map[string]any)["content"].(string)
		contents = append(contents, s)
	}
	sc, sf, _ := streamChoices(t, chat, strings.Replace(cbody, `"n":2`, `"n":2,"stream":true`, 1), 2)
	for i := range sc {
		if strings.TrimSpace(sc[i]) != strings.TrimSpace(contents[i]) || sf[i] == "" {
			t.Errorf("chat choice %d streamed %q (finish %q), whole %q", i, sc[i], sf[i], contents[i])
		}
	}
	if contents[0] == contents[1] {
		t.Errorf("two sampled chat choices are the same: %q", contents)
	}
}

// TestBestOf: best_of generates that many candidates (the same ones n
// would give with the seed) and returns the n with the highest cumulative
// log-probability, best first, counting every candidate's tokens.
func TestBestOf(t *testing.T) {
	srv, _ := start(t, pio.Options{MaxStepTokens: 64, CacheTokens: 2048}, Config{})
	comp := srv.URL + "/v1/completions"
	type cand struct {
		text string
		sum  float64
	}
	// Find a seed whose best candidate is not the first, so that returning
	// choice 0 would fail.
	var cands []cand
	seed := 0
	for seed = 1; seed < 20; seed++ {
		r := postOK(t, comp, fmt.Sprintf(`{"prompt":%s,"n":3,"max_tokens":4,"ignore_eos":true,"temperature":1,"seed":%d,"logprobs":0}`, idList(12, 5), seed))
		cands = cands[:0]
		for _, c := range choicesOf(t, r, 3) {
			sum := 0.0
			for _, lp := range c["logprobs"].(map[string]any)["token_logprobs"].([]any) {
				sum += lp.(float64)
			}
			cands = append(cands, cand{c["text"].(string), sum})
		}
		if cands[0].sum < max(cands[1].sum, cands[2].sum) && cands[1].sum != cands[2].sum {
			break
		}
	}
	if seed == 20 {
		t.Fatalf("no seed in 1..19 makes a later candidate the best: %+v", cands)
	}
	order := []int{0, 1, 2}
	slices.SortFunc(order, func(a, b int) int {
		if cands[a].sum > cands[b].sum {
			return -1
		}
		return 1
	})
	for _, n := range []int{1, 2} {
		r := postOK(t, comp, fmt.Sprintf(`{"prompt":%s,"n":%d,"best_of":3,"max_tokens":4,"ignore_eos":true,"temperature":1,"seed":%d}`, idList(12, 5), n, seed))
		for i, c := range choicesOf(t, r, n) {
			if want := cands[order[i]].text; c["text"] != want || c["logprobs"] != nil {
				t.Errorf("n=%d best_of=3 seed %d: choice %d %q (logprobs %v), want %q of %+v", n, seed, i, c["text"], c["logprobs"], want, cands)
			}
		}
		if u := r["usage"].(map[string]any); u["completion_tokens"] != 12.0 {
			t.Errorf("best_of=3 usage %v, want 12 completion tokens", u)
		}
	}
}

// optsRecorder records the options the server hands its engine's Chat.
type optsRecorder struct {
	formatted
	got *pio.ChatOptions
}

func (r optsRecorder) Chat(ctx context.Context, msgs []pio.Message, opt pio.ChatOptions, fn func(pio.ChatChunk)) (pio.ChatResult, error) {
	*r.got = opt
	return r.formatted.Chat(ctx, msgs, opt, fn)
}

// TestToolChoiceAndParallelCalls: a model answer with two tool calls comes
// back with both by default, with the first only under
// parallel_tool_calls: false (whole and streamed), and as plain content
// under tool_choice "none", whose prompt shows the model no tools.
func TestToolChoiceAndParallelCalls(t *testing.T) {
	_, e := start(t, pio.Options{CacheTokens: 512}, Config{})
	out := "</think>\n\nChecking both.\n" +
		"<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>\n" +
		"<tool_call>\n<function=get_weather>\n<parameter=city>\nTokyo\n</parameter>\n</function>\n</tool_call>"
	var pieces []string
	for i := 0; i < len(out); i += 4 {
		pieces = append(pieces, out[i:min(i+4, len(out))])
	}
	var got pio.ChatOptions
	eng := optsRecorder{formatted{Engine: e, arch: "Qwen3MoeForCausalLM", pieces: pieces}, &got}
	c := client(httptestServer(t, mustNew(t, eng, Config{ModelName: "tiny"})), "")
	params := weatherParams("Weather in Paris and Tokyo?")
	ctx := context.Background()
	for _, parallel := range []bool{true, false} {
		p := params
		want := 2
		if !parallel {
			p.ParallelToolCalls = openai.Bool(false)
			want = 1
		}
		whole, err := c.Chat.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		m := whole.Choices[0].Message
		if len(m.ToolCalls) != want || m.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` || whole.Choices[0].FinishReason != "tool_calls" {
			t.Errorf("parallel %v: %d calls %+v finish %q, want %d", parallel, len(m.ToolCalls), m.ToolCalls, whole.Choices[0].FinishReason, want)
		}
		s := c.Chat.Completions.NewStreaming(ctx, p)
		var acc openai.ChatCompletionAccumulator
		for s.Next() {
			acc.AddChunk(s.Current())
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		if sm := acc.Choices[0].Message; len(sm.ToolCalls) != want || sm.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` {
			t.Errorf("parallel %v: streamed %d calls %+v, want %d", parallel, len(sm.ToolCalls), sm.ToolCalls, want)
		}
	}
	p := params
	p.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("none")}
	whole, err := c.Chat.Completions.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	m := whole.Choices[0].Message
	if len(m.ToolCalls) != 0 || !strings.Contains(m.Content, "<tool_call>") || whole.Choices[0].FinishReason != "stop" {
		t.Errorf("tool_choice none: %d calls, content %q, finish %q", len(m.ToolCalls), m.Content, whole.Choices[0].FinishReason)
	}
	if len(got.Tools) != 0 || got.ParseToolCalls {
		t.Errorf("tool_choice none: the engine was given %d tools, parse %v", len(got.Tools), got.ParseToolCalls)
	}
	if _, err := c.Chat.Completions.New(ctx, params); err != nil || len(got.Tools) != 1 || !got.ParseToolCalls {
		t.Errorf("tool_choice auto: %v, %d tools, parse %v", err, len(got.Tools), got.ParseToolCalls)
	}
}

// TestFanOut: choices after the first start only once it has started
// (its prompt is then cached); a first choice that fails before starting
// starts no other; a failing choice cancels the rest and its error, not
// theirs, comes back.
func TestFanOut(t *testing.T) {
	var mu sync.Mutex
	var ran []int
	err := fanOut(context.Background(), 3, func(ctx context.Context, i int, started func()) error {
		mu.Lock()
		ran = append(ran, i)
		n := len(ran)
		mu.Unlock()
		if i == 0 {
			time.Sleep(20 * time.Millisecond)
			if n != 1 {
				t.Errorf("choice 0 ran %d-th", n)
			}
			mu.Lock()
			if len(ran) != 1 {
				t.Errorf("choices %v ran before choice 0 started", ran)
			}
			mu.Unlock()
			started()
		}
		return nil
	})
	slices.Sort(ran)
	if err != nil || !slices.Equal(ran, []int{0, 1, 2}) {
		t.Errorf("ran %v, err %v", ran, err)
	}

	boom := errors.New("boom")
	calls := 0
	err = fanOut(context.Background(), 3, func(ctx context.Context, i int, started func()) error {
		calls++
		return boom
	})
	if err != boom || calls != 1 {
		t.Errorf("choice 0 failing first: err %v after %d calls, want boom after 1", err, calls)
	}

	err = fanOut(context.Background(), 3, func(ctx context.Context, i int, started func()) error {
		started()
		if i == 2 {
			return boom
		}
		<-ctx.Done() // cancelled by choice 2's failure
		return ctx.Err()
	})
	if err != boom {
		t.Errorf("choice 2 failing: err %v, want boom", err)
	}
}
