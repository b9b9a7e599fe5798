package cuda

// The harness the emulated-kernel and GPU tests share: one plan on the
// emulated CUDA backend and on the CPU backend, fed the same inputs;
// requests served by the scheduler on a backend.

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/passes"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/engine"
	"github.com/inference-pio/pio/runtime/kvcache"
	"github.com/inference-pio/pio/runtime/scheduler"
)

// planBackends opens p with weights ws on the emulated CUDA backend (its
// kernels compiled by gxx) and with cws on the CPU backend (two threads),
// both with opt's sizes; both close when the test ends.
func planBackends(t *testing.T, gxx string, p *ir.Plan, ws []Weight, cws []cpu.Weight, opt Options) (*Backend, *cpu.Backend) {
	t.Helper()
	gpu, err := New(p, ws, emuKernels(t, gxx, p), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gpu.Close() })
	ref, err := cpu.New(p, cws, cpu.Options{MaxTokens: opt.MaxTokens, NumBlocks: opt.NumBlocks, BlockSize: opt.BlockSize, MaxSeqs: opt.MaxSeqs, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ref.Close() })
	return gpu, ref
}

// emuEngine builds the golden checkpoint model with opt (its source and
// output filled in), opens the engine with kernels gxx compiled for the
// emulation, and closes it when the test ends.
func emuEngine(t *testing.T, gxx, model string, opt compiler.Options) (*engine.Engine, *golden.Model) {
	t.Helper()
	g, err := golden.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	opt.Source, opt.Output = g.Dir, filepath.Join(t.TempDir(), "e.pio")
	if _, err := compiler.Build(opt); err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(opt.Output, engine.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	e.Meta.Kernels = emuKernels(t, gxx, e.Meta.Plan)
	return e, g
}

// engineBackends opens engine e on the CUDA backend and on the CPU
// backend (default threads), both with opt's sizes; both close when the
// test ends.
func engineBackends(t *testing.T, e *engine.Engine, opt Options) (*Backend, *cpu.Backend) {
	t.Helper()
	gpu, err := FromEngine(e, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gpu.Close() })
	ref, err := cpu.FromEngine(e, cpu.Options{MaxTokens: opt.MaxTokens, NumBlocks: opt.NumBlocks, BlockSize: opt.BlockSize, MaxSeqs: opt.MaxSeqs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ref.Close() })
	return gpu, ref
}

// fusedMatMulOutputs adds to b the matmul variants of the tensor-core and
// split-K tests over x [T, K], each an output: plain (w [N, K]), RMSNorm +
// SwiGLU (gu [2I, K]), unit-offset RMSNorm + residual (res [T, N]), SwiGLU
// + residual (res2 [T, I]); w, gu and the bf16 norm are weights in that
// order, res and res2 inputs.
func fusedMatMulOutputs(b *ir.Builder, x *ir.Value, N, K, I int) {
	w := b.Weight("w", ir.BF16, ir.Dim(N), ir.Dim(K))
	gu := b.Weight("gu", ir.BF16, ir.Dim(2*I), ir.Dim(K))
	norm := b.Weight("norm", ir.BF16, ir.Dim(K))
	res := b.Input("res", ir.F32, ir.T, ir.Dim(N))
	res2 := b.Input("res2", ir.F32, ir.T, ir.Dim(I))
	b.Output("plain", b.MatMul(x, w))
	b.Output("norm_swiglu", b.Op(ir.OpFusedMatMul, []*ir.Value{x, gu, norm},
		ir.Int("norm", 1), ir.Float("eps", 1e-6), ir.Str("act", "swiglu")))
	b.Output("norm1_residual", b.Op(ir.OpFusedMatMul, []*ir.Value{x, w, norm, res},
		ir.Int("norm", 1), ir.Float("eps", 1e-5), ir.Int("unit_offset", 1), ir.Int("residual", 1)))
	b.Output("swiglu_residual", b.Op(ir.OpFusedMatMul, []*ir.Value{x, gu, res2},
		ir.Str("act", "swiglu"), ir.Int("residual", 1)))
}

// normals returns a function that draws n standard normal values from r.
func normals(r *rand.Rand) func(n int) []float32 {
	return func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
}

// loweredPlan finishes b's graph and lowers it to a plan, with no passes.
func loweredPlan(t *testing.T, b *ir.Builder) *ir.Plan {
	t.Helper()
	g, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	p, err := passes.Lower(g)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// serveAll submits reqs at once to a scheduler over be (blocks cache blocks
// of bs tokens, cfg's limits) and returns each request's tokens, in order.
func serveAll(t *testing.T, be runtime.Backend, blocks, bs int, cfg scheduler.Config, reqs []scheduler.Request) [][]int32 {
	t.Helper()
	s, err := scheduler.New(be, kvcache.NewAllocator(blocks, bs), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var streams []*scheduler.Stream
	for _, r := range reqs {
		st, err := s.Submit(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	var out [][]int32
	for _, st := range streams {
		var toks []int32
		for {
			rs, done, _, err := st.Next(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				toks = append(toks, r.Token)
			}
			if done {
				break
			}
		}
		out = append(out, toks)
	}
	return out
}
