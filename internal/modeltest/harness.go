package modeltest

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/engine"
	"github.com/inference-pio/pio/runtime/kvcache"
)

// Build compiles dir into an engine through pioc's own build (verifier on),
// with weights stored as dt and per-layer taps when taps is set (without
// taps, values only taps read let more fusions apply), and loads it on the
// CPU backend with opt. Both close with the test.
func Build(t testing.TB, dir string, dt ir.DType, taps bool, opt cpu.Options) (*engine.Engine, *cpu.Backend) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "e.pio")
	if _, err := compiler.Build(compiler.Options{Source: dir, Output: path, DType: dt, Check: true, Taps: taps}); err != nil {
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
