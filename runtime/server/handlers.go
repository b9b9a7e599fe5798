package server

import (
	"context"
	"net/http"
	"time"

	"github.com/inference-pio/pio/pio"
)

type logprobEntry struct {
	Token       string         `json:"token"`
	Logprob     float32        `json:"logprob"`
	Bytes       []int          `json:"bytes"`
	TopLogprobs []logprobEntry `json:"top_logprobs"`
}

func chatLogprobs(lps []pio.Logprob) map[string]any {
	out := make([]logprobEntry, 0, len(lps))
	entry := func(t pio.TokenLogprob) logprobEntry {
		b := make([]int, len(t.Text))
		for i := range t.Text {
			b[i] = int(t.Text[i])
		}
		return logprobEntry{Token: t.Text, Logprob: t.Logprob, Bytes: b, TopLogprobs: []logprobEntry{}}
	}
	for _, lp := range lps {
		e := entry(lp.TokenLogprob)
		for _, t := range lp.Top {
			e.TopLogprobs = append(e.TopLogprobs, entry(t))
		}
		out = append(out, e)
	}
	return map[string]any{"content": out}
}

type toolCallJSON struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	t := timing{m: s.metrics, start: time.Now()}
	body, e := s.readBody(w, r)
	if e != nil {
		s.fail(w, e)
		return
	}
	req, msgs, opt, e := parseChat(body)
	if e == nil {
		e = s.checkModel(req.Model)
	}
	if e != nil {
		s.fail(w, e)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	id, created := newID("chatcmpl"), time.Now().Unix()
	wantLogprobs := req.Logprobs
	if !req.Stream {
		res, err := s.eng.Chat(ctx, msgs, opt, func(c pio.ChatChunk) { t.tokens(len(c.Tokens)) })
		s.outcome(ctx, err)
		if err != nil {
			if ctx.Err() == nil {
				s.fail(w, engineError(err))
			}
			return
		}
		t.done()
		msg := map[string]any{"role": "assistant", "content": trimSpaceOrNil(res.Content)}
		if res.ReasoningContent != "" {
			msg["reasoning_content"] = res.ReasoningContent
		}
		if len(res.ToolCalls) > 0 {
			var calls []toolCallJSON
			for _, c := range res.ToolCalls {
				var j toolCallJSON
				j.ID, j.Type = c.ID, c.Type
				j.Function.Name, j.Function.Arguments = c.Function.Name, c.Function.Arguments
				calls = append(calls, j)
			}
			msg["tool_calls"] = calls
		}
		choice := map[string]any{"index": 0, "message": msg, "finish_reason": res.FinishReason, "logprobs": nil}
		if wantLogprobs {
			choice["logprobs"] = chatLogprobs(res.Logprobs)
		}
		writeJSON(w, map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": s.cfg.ModelName,
			"choices": []any{choice}, "usage": usageOf(res.Result),
		})
		return
	}

	ev := newSSE(w)
	chunk := func(delta map[string]any, finish *string, lps []pio.Logprob) map[string]any {
		choice := map[string]any{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": nil}
		if wantLogprobs && len(lps) > 0 {
			choice["logprobs"] = chatLogprobs(lps)
		}
		return map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": s.cfg.ModelName, "choices": []any{choice}}
	}
	sendRole := func() {
		if !ev.started {
			ev.send(chunk(map[string]any{"role": "assistant", "content": ""}, nil, nil))
		}
	}
	calls := 0
	res, err := s.eng.Chat(ctx, msgs, opt, func(c pio.ChatChunk) {
		t.tokens(len(c.Tokens))
		delta := map[string]any{}
		if c.Content != "" {
			delta["content"] = c.Content
		}
		if c.Reasoning != "" {
			delta["reasoning_content"] = c.Reasoning
		}
		if len(c.ToolCalls) > 0 {
			var list []toolCallJSON
			for _, tc := range c.ToolCalls {
				var j toolCallJSON
				idx := calls
				calls++
				j.Index, j.ID, j.Type = &idx, newID("call"), "function"
				j.Function.Name, j.Function.Arguments = tc.Name, tc.Arguments
				list = append(list, j)
			}
			delta["tool_calls"] = list
		}
		if len(delta) == 0 && !(wantLogprobs && len(c.Logprobs) > 0) {
			return
		}
		sendRole()
		ev.send(chunk(delta, nil, c.Logprobs))
		if ev.err != nil {
			cancel() // the client is gone
		}
	})
	s.outcome(ctx, err)
	if err != nil {
		s.streamFail(w, ctx, ev, err)
		return
	}
	t.done()
	sendRole()
	finish := res.FinishReason
	ev.send(chunk(map[string]any{}, &finish, nil))
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		ev.send(map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": s.cfg.ModelName,
			"choices": []any{}, "usage": usageOf(res.Result)})
	}
	ev.done()
}

// completionLogprobs is the legacy completions format.
func completionLogprobs(lps []pio.Logprob, offset int) (map[string]any, int) {
	toks, lp, offs := []string{}, []float32{}, []int{}
	tops := []map[string]float32{}
	for _, l := range lps {
		toks = append(toks, l.Text)
		lp = append(lp, l.Logprob)
		offs = append(offs, offset)
		offset += len(l.Text)
		top := map[string]float32{}
		for _, t := range l.Top {
			top[t.Text] = t.Logprob
		}
		tops = append(tops, top)
	}
	return map[string]any{"tokens": toks, "token_logprobs": lp, "top_logprobs": tops, "text_offset": offs}, offset
}

func (s *Server) completions(w http.ResponseWriter, r *http.Request) {
	t := timing{m: s.metrics, start: time.Now()}
	body, e := s.readBody(w, r)
	if e != nil {
		s.fail(w, e)
		return
	}
	req, text, ids, opt, e := parseCompletion(body)
	if e == nil {
		e = s.checkModel(req.Model)
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
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	id, created := newID("cmpl"), time.Now().Unix()
	wantLogprobs := req.Logprobs != nil
	if !req.Stream {
		res, err := s.eng.GenerateIDs(ctx, ids, opt, func(c pio.Chunk) { t.tokens(len(c.Tokens)) })
		s.outcome(ctx, err)
		if err != nil {
			if ctx.Err() == nil {
				s.fail(w, engineError(err))
			}
			return
		}
		t.done()
		choice := map[string]any{"index": 0, "text": res.Text, "finish_reason": res.FinishReason, "logprobs": nil}
		if wantLogprobs {
			choice["logprobs"], _ = completionLogprobs(res.Logprobs, 0)
		}
		writeJSON(w, map[string]any{"id": id, "object": "text_completion", "created": created, "model": s.cfg.ModelName,
			"choices": []any{choice}, "usage": usageOf(res)})
		return
	}
	ev := newSSE(w)
	offset := 0
	chunk := func(text string, finish *string, lps []pio.Logprob) map[string]any {
		choice := map[string]any{"index": 0, "text": text, "finish_reason": finish, "logprobs": nil}
		if wantLogprobs && len(lps) > 0 {
			choice["logprobs"], offset = completionLogprobs(lps, offset)
		}
		return map[string]any{"id": id, "object": "text_completion", "created": created, "model": s.cfg.ModelName, "choices": []any{choice}}
	}
	res, err := s.eng.GenerateIDs(ctx, ids, opt, func(c pio.Chunk) {
		t.tokens(len(c.Tokens))
		if c.Text == "" && !(wantLogprobs && len(c.Logprobs) > 0) {
			return
		}
		ev.send(chunk(c.Text, nil, c.Logprobs))
		if ev.err != nil {
			cancel()
		}
	})
	s.outcome(ctx, err)
	if err != nil {
		s.streamFail(w, ctx, ev, err)
		return
	}
	t.done()
	finish := res.FinishReason
	ev.send(chunk("", &finish, nil))
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		ev.send(map[string]any{"id": id, "object": "text_completion", "created": created, "model": s.cfg.ModelName,
			"choices": []any{}, "usage": usageOf(res)})
	}
	ev.done()
}

// streamFail reports err: as an HTTP error if no event went out yet, else
// as an error event.
func (s *Server) streamFail(w http.ResponseWriter, ctx context.Context, ev *sse, err error) {
	switch {
	case ctx.Err() != nil:
	case !ev.started:
		s.fail(w, engineError(err))
	default:
		s.metrics.count("stream_error")
		ev.fail(engineError(err))
		ev.done()
	}
}
