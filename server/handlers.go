package server

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/inference-pio/pio/pio"
)

type toolCallJSON struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// chatChoice is choice i of a whole (not streamed) chat answer.
func (s *Server) chatChoice(i int, res pio.ChatResult, req *chatRequest) map[string]any {
	msg := map[string]any{"role": "assistant", "content": trimSpaceOrNil(res.Content)}
	if res.ReasoningContent != "" {
		msg["reasoning_content"] = res.ReasoningContent
	}
	calls := res.ToolCalls
	if req.oneToolCall() && len(calls) > 1 {
		calls = calls[:1]
	}
	if len(calls) > 0 {
		var list []toolCallJSON
		for _, c := range calls {
			var j toolCallJSON
			j.ID, j.Type = c.ID, c.Type
			j.Function.Name, j.Function.Arguments = c.Function.Name, c.Function.Arguments
			list = append(list, j)
		}
		msg["tool_calls"] = list
	}
	choice := map[string]any{"index": i, "message": msg, "finish_reason": res.FinishReason, "logprobs": nil}
	if req.Logprobs {
		choice["logprobs"] = s.chatLogprobs(res.Logprobs)
	}
	return choice
}

// chat serves /v1/chat/completions. With n > 1 every choice is a sequence
// of its own (generation.run), streamed interleaved, each chunk carrying
// its choice's index. parallel_tool_calls: false keeps the first tool call
// of each choice and drops the others the model wrote (generation is not
// cut short: the answer is what the model wrote, less those calls).
func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, e := s.readBody(w, r)
	if e != nil {
		s.fail(w, e)
		return
	}
	req, msgs, opt, e := parseChat(body, &s.cfg.Defaults)
	if e == nil {
		e = s.accept(r, &req.samplingParams)
	}
	if e != nil {
		s.fail(w, e)
		return
	}
	g := s.newGeneration(w, r, start, "chatcmpl", "chat.completion", req.n)
	defer g.cancel()
	// run calls chunk with each chunk of choice i, then done with the
	// choice's result.
	run := func(chunk func(i int, c pio.ChatChunk), done func(i int, res pio.ChatResult)) error {
		return g.run(func(ctx context.Context, i int, tokens func(int)) (pio.Result, error) {
			o := opt
			o.GenerateOptions = choiceOptions(opt.GenerateOptions, i)
			res, err := s.eng.Chat(ctx, msgs, o, func(c pio.ChatChunk) {
				tokens(len(c.Tokens))
				chunk(i, c)
			})
			if err == nil {
				done(i, res)
			}
			return res.Result, err
		})
	}
	if !req.Stream {
		choices := make([]any, req.n)
		err := run(func(int, pio.ChatChunk) {}, func(i int, res pio.ChatResult) { choices[i] = s.chatChoice(i, res, req) })
		g.reply(err, func() []any { return choices })
		return
	}

	g.head["object"] = "chat.completion.chunk"
	chunk := func(i int, delta map[string]any, finish *string, lps []pio.Logprob) map[string]any {
		choice := map[string]any{"index": i, "delta": delta, "finish_reason": finish, "logprobs": nil}
		if req.Logprobs && len(lps) > 0 {
			choice["logprobs"] = s.chatLogprobs(lps)
		}
		return choice
	}
	roleSent := make([]bool, req.n)
	calls := make([]int, req.n)
	sendRole := func(i int) {
		if !roleSent[i] {
			roleSent[i] = true
			g.send(chunk(i, map[string]any{"role": "assistant", "content": ""}, nil, nil))
		}
	}
	err := run(func(i int, c pio.ChatChunk) {
		delta := map[string]any{}
		if c.Content != "" {
			delta["content"] = c.Content
		}
		if c.Reasoning != "" {
			delta["reasoning_content"] = c.Reasoning
		}
		var list []toolCallJSON
		for _, tc := range c.ToolCalls {
			if req.oneToolCall() && calls[i] > 0 {
				break
			}
			var j toolCallJSON
			idx := calls[i]
			calls[i]++
			j.Index, j.ID, j.Type = &idx, newID("call"), "function"
			j.Function.Name, j.Function.Arguments = tc.Name, tc.Arguments
			list = append(list, j)
		}
		if len(list) > 0 {
			delta["tool_calls"] = list
		}
		if len(delta) == 0 && !(req.Logprobs && len(c.Logprobs) > 0) {
			return
		}
		sendRole(i)
		g.send(chunk(i, delta, nil, c.Logprobs))
	}, func(i int, res pio.ChatResult) {
		sendRole(i)
		finish := res.FinishReason
		g.send(chunk(i, map[string]any{}, &finish, nil))
	})
	g.endStream(err, req.includeUsage)
}

// bestOf returns the indices of the n results with the highest cumulative
// log-probability (of the model's distribution, before penalties,
// temperature and logit bias), best first, the lower index first on ties.
// vLLM ranks best_of the same way; OpenAI's reference says "highest log
// probability per token", which would favour long answers over short ones
// that stopped early.
func bestOf(rs []pio.Result, n int) []int {
	sum := make([]float64, len(rs))
	for i, r := range rs {
		for _, lp := range r.Logprobs {
			sum[i] += float64(lp.Logprob)
		}
	}
	idx := make([]int, len(rs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(sum[b], sum[a]) })
	return idx[:n]
}

// completions serves /v1/completions: n choices as chat's, or with best_of
// the n best of best_of candidates (bestOf), which cannot be streamed.
func (s *Server) completions(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, e := s.readBody(w, r)
	if e != nil {
		s.fail(w, e)
		return
	}
	req, text, ids, opt, e := parseCompletion(body, &s.cfg.Defaults)
	if e == nil {
		e = s.accept(r, &req.samplingParams)
	}
	if e != nil {
		s.fail(w, e)
		return
	}
	if ids == nil {
		var err error
		if ids, err = s.eng.Encode(text); err != nil {
			s.fail(w, engineError(err))
			return
		}
		if len(ids) == 0 {
			s.fail(w, badRequest("prompt", "prompt encodes to no tokens"))
			return
		}
	}
	g := s.newGeneration(w, r, start, "cmpl", "text_completion", req.bestOf)
	defer g.cancel()
	wantLogprobs := req.Logprobs != nil
	rank := req.bestOf > req.n
	if rank {
		opt.Logprobs = true // to rank the candidates by
	}
	prompt := s.promptOffsets(text, ids)
	// run calls chunk with each chunk of choice i, then done with the
	// choice's result.
	run := func(chunk func(i int, c pio.Chunk), done func(i int, res pio.Result)) error {
		return g.run(func(ctx context.Context, i int, tokens func(int)) (pio.Result, error) {
			res, err := s.eng.GenerateIDs(ctx, ids, choiceOptions(opt, i), func(c pio.Chunk) {
				tokens(len(c.Tokens))
				chunk(i, c)
			})
			if err == nil {
				done(i, res)
			}
			return res, err
		})
	}
	if !req.Stream {
		err := run(func(int, pio.Chunk) {}, func(int, pio.Result) {})
		g.reply(err, func() []any {
			order := make([]int, req.n)
			for i := range order {
				order[i] = i
			}
			if rank {
				order = bestOf(g.results, req.n)
			}
			choices := make([]any, 0, req.n)
			for i, k := range order {
				res := g.results[k]
				choice := map[string]any{"index": i, "text": res.Text, "finish_reason": res.FinishReason, "logprobs": nil}
				if wantLogprobs {
					o := prompt
					choice["logprobs"] = s.completionLogprobs(res.Logprobs, &o)
				}
				choices = append(choices, choice)
			}
			return choices
		})
		return
	}
	offsets := make([]textOffsets, req.n)
	for i := range offsets {
		offsets[i] = prompt
	}
	send := func(i int, text string, finish *string, lps []pio.Logprob) {
		choice := map[string]any{"index": i, "text": text, "finish_reason": finish, "logprobs": nil}
		if wantLogprobs && len(lps) > 0 {
			choice["logprobs"] = s.completionLogprobs(lps, &offsets[i])
		}
		g.send(choice)
	}
	err := run(func(i int, c pio.Chunk) {
		if c.Text != "" || wantLogprobs && len(c.Logprobs) > 0 {
			send(i, c.Text, nil, c.Logprobs)
		}
	}, func(i int, res pio.Result) {
		finish := res.FinishReason
		send(i, "", &finish, nil)
	})
	g.endStream(err, req.includeUsage)
}
