package server

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/inference-pio/pio/pio"
)

// accept checks a parsed request's model and logs its extra fields
// (noteIgnored); an error is the request's answer.
func (s *Server) accept(r *http.Request, p *samplingParams) *apiError {
	if e := s.checkModel(p.Model); e != nil {
		return e
	}
	s.noteIgnored(r.URL.Path, &p.extras)
	return nil
}

// generation serves the choices of one accepted request, whichever
// endpoint's: run generates them, then reply answers with one JSON body,
// or send streams their chunks as server-sent events and endStream ends
// the stream. The handler gives the engine call and the JSON of each
// choice or chunk.
type generation struct {
	s       *Server
	w       http.ResponseWriter
	ctx     context.Context
	cancel  context.CancelFunc // the request's generation; call it when the handler returns
	t       timing
	head    map[string]any // id, object, created and model, in the answer and each chunk
	results []pio.Result   // each choice's, once run returned without an error
	mu      sync.Mutex     // the choices' goroutines share ev and head while streaming
	ev      *sse
}

// newGeneration starts serving k choices (OpenAI's n, or completions'
// best_of) of r, which arrived at start; the answer's id is
// idPrefix-random and its object object.
func (s *Server) newGeneration(w http.ResponseWriter, r *http.Request, start time.Time, idPrefix, object string, k int) *generation {
	ctx, cancel := context.WithCancel(r.Context())
	return &generation{
		s: s, w: w, ctx: ctx, cancel: cancel, t: timing{m: s.metrics, start: start},
		head:    map[string]any{"id": newID(idPrefix), "object": object, "created": time.Now().Unix(), "model": s.cfg.ModelName},
		results: make([]pio.Result, k),
		ev:      newSSE(w),
	}
}

// run generates the choices, each a sequence of its own (fanOut), and
// returns the first error. gen generates choice i: it calls tokens with
// the number of tokens of each chunk before the handler's own use of the
// chunk (choice 0's time the request; the first starts the other choices)
// and returns the choice's result.
func (g *generation) run(gen func(ctx context.Context, i int, tokens func(n int)) (pio.Result, error)) error {
	return fanOut(g.ctx, len(g.results), func(ctx context.Context, i int, started func()) error {
		res, err := gen(ctx, i, func(n int) {
			if i == 0 {
				g.t.tokens(n)
			}
			started()
		})
		if err == nil {
			g.results[i] = res
		}
		return err
	})
}

// reply answers a request that is not streamed once run returned err:
// with the error, or with the choices that choices builds and the usage of
// every choice generated.
func (g *generation) reply(err error, choices func() []any) {
	g.s.outcome(g.ctx, err)
	if err != nil {
		if g.ctx.Err() == nil {
			g.s.fail(g.w, engineError(err))
		}
		return
	}
	g.t.done()
	g.head["choices"], g.head["usage"] = choices(), usageOfChoices(g.results)
	writeJSON(g.w, g.head)
}

// send streams one choice's chunk (choice is its entry of "choices"). A
// write that fails — the client is gone, or stopped reading — cancels the
// request.
func (g *generation) send(choice map[string]any) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.head["choices"] = []any{choice}
	g.ev.send(g.head)
	if g.ev.err != nil {
		g.cancel()
	}
}

// endStream ends a stream once run returned err. An error is an HTTP
// error if no event went out yet, else an error event; otherwise the usage
// chunk follows when stream_options.include_usage asked for it, then
// [DONE].
func (g *generation) endStream(err error, includeUsage bool) {
	g.s.outcome(g.ctx, err)
	switch {
	case err != nil && g.ctx.Err() != nil: // cancelled: nobody to tell
	case err != nil && !g.ev.started:
		g.s.fail(g.w, engineError(err))
	case err != nil:
		g.s.metrics.count("stream_error")
		g.ev.fail(engineError(err))
		g.ev.done()
	default:
		g.t.done()
		if includeUsage {
			g.head["choices"], g.head["usage"] = []any{}, usageOfChoices(g.results)
			g.ev.send(g.head)
		}
		g.ev.done()
	}
}
