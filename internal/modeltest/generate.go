package modeltest

import (
	"context"
	"fmt"
	"slices"

	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/kvcache"
	"github.com/inference-pio/pio/runtime/sample"
)

// Generator runs one sequence at a time through a runtime.Backend: prefill
// in chunks of at most maxStepTokens, then token-by-token decode through
// the paged KV cache. It is the single-stream path the model and backend
// tests drive a backend with; nothing outside tests uses it (serving goes
// through pio and runtime/scheduler, which batch many sequences).
type Generator struct {
	be            runtime.Backend
	alloc         *kvcache.Allocator
	maxStepTokens int
	batch         runtime.Batch
}

// NewGenerator returns a generator over a backend whose cache has the
// allocator's geometry.
func NewGenerator(be runtime.Backend, alloc *kvcache.Allocator, maxStepTokens int) *Generator {
	if maxStepTokens <= 0 {
		maxStepTokens = 1
	}
	return &Generator{be: be, alloc: alloc, maxStepTokens: maxStepTokens}
}

// Sequence is one stream's state: its cache blocks and its tokens so far.
type Sequence struct {
	KV     kvcache.Sequence
	Tokens []int32
}

// Release returns the sequence's cache blocks.
func (g *Generator) Release(s *Sequence) {
	g.alloc.Free(&s.KV)
	s.Tokens = s.Tokens[:0]
}

// Feed appends tokens to the sequence, running as many steps as needed, and
// returns the logits after the last one (valid until the next call).
func (g *Generator) Feed(s *Sequence, tokens []int32) ([]float32, error) {
	if len(tokens) == 0 {
		return nil, fmt.Errorf("feed: no tokens")
	}
	var logits []float32
	for len(tokens) > 0 {
		n := min(len(tokens), g.maxStepTokens)
		start := len(s.Tokens)
		if err := g.alloc.Grow(&s.KV, start+n); err != nil {
			return nil, err
		}
		b := &g.batch
		b.Tokens = append(b.Tokens[:0], tokens[:n]...)
		b.Positions, b.SeqOfToken = b.Positions[:0], b.SeqOfToken[:0]
		for i := 0; i < n; i++ {
			b.Positions = append(b.Positions, int32(start+i))
			b.SeqOfToken = append(b.SeqOfToken, 0)
		}
		b.Seqs = append(b.Seqs[:0], runtime.SeqView{Blocks: s.KV.Blocks})
		b.LogitRows = append(b.LogitRows[:0], int32(n-1))
		if err := g.be.Step(b); err != nil {
			return nil, err
		}
		s.Tokens = append(s.Tokens, tokens[:n]...)
		s.KV.Len = len(s.Tokens)
		tokens = tokens[n:]
		out, _, err := g.be.Output("logits")
		if err != nil {
			return nil, err
		}
		logits = out
	}
	return logits, nil
}

// GenerateOptions configure Generate.
type GenerateOptions struct {
	MaxTokens int
	Sample    sample.Options
	Stop      []int32 // stop after emitting one of these ids
}

// Generate prefills prompt into a fresh sequence and decodes up to
// MaxTokens tokens, calling emit as each arrives. It returns the new tokens.
func (g *Generator) Generate(ctx context.Context, prompt []int32, opt GenerateOptions, emit func(int32) error) ([]int32, error) {
	smp, err := sample.New(opt.Sample)
	if err != nil {
		return nil, err
	}
	var s Sequence
	defer g.Release(&s)
	logits, err := g.Feed(&s, prompt)
	if err != nil {
		return nil, err
	}
	var out []int32
	for len(out) < opt.MaxTokens {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		tok, err := smp.Sample(logits)
		if err != nil {
			return out, err
		}
		out = append(out, tok)
		if emit != nil {
			if err := emit(tok); err != nil {
				return out, err
			}
		}
		if slices.Contains(opt.Stop, tok) || len(out) == opt.MaxTokens {
			break
		}
		if logits, err = g.Feed(&s, []int32{tok}); err != nil {
			return out, err
		}
	}
	return out, nil
}
