package modeltest

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/internal/tolerance"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/cpu/kern"
	"github.com/inference-pio/pio/runtime/engine"
	"github.com/inference-pio/pio/runtime/kvcache"
)

// Build compiles dir into an engine through pioc's own build (verifier on),
// with weights stored as dt and per-layer taps when taps is set (without
// taps, values only taps read let more fusions apply), and loads it on the
// CPU backend with opt. Both close with the test.
//
// The KV cache is f32 whatever dt (pioc's default stores it in bf16 for
// bf16 engines): the goldens are transformers' f32 computation, matched
// within 1e-4, and a bf16 cache rounds every cached K and V by up to 2^-8
// relative, a deliberate departure that can even flip an MoE router's
// choice. Tests of the bf16 cache build with BuildKV.
func Build(t testing.TB, dir string, dt ir.DType, taps bool, opt cpu.Options) (*engine.Engine, *cpu.Backend) {
	t.Helper()
	return BuildKV(t, dir, dt, ir.F32, taps, opt)
}

// BuildKV is Build with the paged caches stored as kv (ir.DInvalid: pioc's
// default, compiler.AutoKVDType).
func BuildKV(t testing.TB, dir string, dt, kv ir.DType, taps bool, opt cpu.Options) (*engine.Engine, *cpu.Backend) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "e.pio")
	if _, err := compiler.Build(compiler.Options{Source: dir, Output: path, DType: dt, KVDType: kv, Check: true, Taps: taps}); err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(path, engine.OpenOptions{VerifyWeights: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	be, err := cpu.FromEngine(e, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	t.Logf("cpu backend, kernels %s", kern.Features()) // which level a failure ran at
	return e, be
}

// Forward runs sequences from position 0 in one step on a backend built
// with opt (sequence i in state slot i, with fresh cache blocks), keeping
// every row's outputs.
func Forward(t testing.TB, be runtime.Backend, opt cpu.Options, seqs ...[]int32) {
	t.Helper()
	alloc := kvcache.NewAllocator(opt.NumBlocks, opt.BlockSize)
	b := &runtime.Batch{}
	for s, ids := range seqs {
		var kv kvcache.Sequence
		if err := alloc.Grow(&kv, len(ids)); err != nil {
			t.Fatal(err)
		}
		b.Seqs = append(b.Seqs, runtime.SeqView{Blocks: kv.Blocks, Slot: int32(s)})
		for i, id := range ids {
			b.LogitRows = append(b.LogitRows, int32(len(b.Tokens)))
			b.Tokens = append(b.Tokens, id)
			b.Positions = append(b.Positions, int32(i))
			b.SeqOfToken = append(b.SeqOfToken, int32(s))
		}
	}
	if err := be.Step(b); err != nil {
		t.Fatal(err)
	}
}

// Output returns a copy of an output of the last step.
func Output(t testing.TB, be runtime.Backend, name string) []float32 {
	t.Helper()
	out, _, err := be.Output(name)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Clone(out)
}

// CheckGolden runs prompt p (number pi) in one step and compares every
// tapped hidden state, the final norm and the logits with the reference:
// tensor-relative error (golden.RelErr) at most tol.
func CheckGolden(t testing.TB, be runtime.Backend, opt cpu.Options, pi int, p golden.Prompt, tol float64) {
	t.Helper()
	Forward(t, be, opt, p.IDs)
	check := func(name string, want []float32) {
		t.Helper()
		if e := golden.RelErr(Output(t, be, name), want); !tolerance.Within(t, e, tol) {
			t.Errorf("prompt %d %s: relative error %.3g > %.3g", pi, name, e, tol)
		}
	}
	for l, want := range p.Hidden {
		check(fmt.Sprintf("hidden.%d", l), want)
	}
	check("norm", p.Norm)
	check("logits", p.Logits)
}

// CheckGreedy decodes each prompt's continuation through Generator
// (chunked prefill, then one token per step through the paged cache) and
// compares it with the reference's greedy tokens.
func CheckGreedy(t testing.TB, be runtime.Backend, opt cpu.Options, prompts []golden.Prompt) {
	t.Helper()
	gen := NewGenerator(be, kvcache.NewAllocator(opt.NumBlocks, opt.BlockSize), opt.MaxTokens)
	for pi, p := range prompts {
		got, err := gen.Generate(context.Background(), p.IDs, GenerateOptions{MaxTokens: len(p.Greedy)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, p.Greedy) {
			t.Errorf("prompt %d greedy:\n got %v\nwant %v", pi, got, p.Greedy)
		}
	}
}
