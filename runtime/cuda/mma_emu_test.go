package cuda

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	cg "github.com/inference-pio/pio/codegen/cuda"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
)

// mmaKernels counts the tensor-core GEMM kernels of a plan's module, so
// that a test shows it ran them.
func mmaKernels(t *testing.T, p *ir.Plan) int {
	t.Helper()
	m, err := cg.Generate(p)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, k := range m.Kernels {
		if strings.HasPrefix(k, "matmul_mma_") {
			n++
		}
	}
	return n
}

// TestEmulatedMMAGolden: a bf16 engine of the tiny Qwen3 run on prompts of
// more than WarpMaxRows tokens (every matmul, the logits one too, on the
// tensor-core kernel, x split into three bf16 terms) gives the CPU
// backend's logits within 1e-4, one sequence and two in one step
// (measured: 1.6e-6; with x in two terms 1.7e-5, rounded to bf16 alone
// 1.2e-2).
func TestEmulatedMMAGolden(t *testing.T) {
	gxx := useFakeDriver(t)
	gpu, ref, g, e := emuBackends(t, gxx, "qwen3-a", ir.BF16, false)
	if n := mmaKernels(t, e.Meta.Plan); n == 0 {
		t.Fatal("the bf16 plan has no tensor-core matmul kernel")
	}
	// The golden prompts, one after another (46 tokens).
	var long []int32
	for _, p := range g.Prompts {
		long = append(long, p.IDs...)
	}
	long = append(long, g.Prompts[len(g.Prompts)-1].IDs...)
	if err := golden.RelErr(forward(t, gpu, long), forward(t, ref, long)); err > 1e-4 {
		t.Errorf("%d-token prompt: logits vs CPU backend: relative error %.3g", len(long), err)
	}
	// Two sequences of 27 and 26 tokens in one step: 53 rows, one logit row each.
	a, b := long[:27], long[1:27]
	var bt runtime.Batch
	for s, ts := range [][]int32{a, b} {
		for i, tok := range ts {
			bt.Tokens = append(bt.Tokens, tok)
			bt.Positions = append(bt.Positions, int32(i))
			bt.SeqOfToken = append(bt.SeqOfToken, int32(s))
		}
		bt.LogitRows = append(bt.LogitRows, int32(len(bt.Tokens)-1))
	}
	bt.Seqs = []runtime.SeqView{{Blocks: []int32{0, 1, 2, 3, 4, 5, 6}}, {Blocks: []int32{10, 11, 12, 13, 14, 15, 16}}}
	outs := stepBoth(t, &bt, []string{"logits"}, gpu, ref)
	if err := golden.RelErr(outs[0][0], outs[1][0]); err > 1e-4 {
		t.Errorf("two sequences: logits vs CPU backend: relative error %.3g", err)
	}
}

// TestEmulatedMMAOps runs matmul and fused_matmul steps on shapes the tiny
// goldens do not have, against the CPU backend within 1e-5 (f32 both ways:
// the three bf16 terms carry x's 24 bits and products with bf16 weights are
// exact; measured ≤ 7.5e-7, 3.5e-6 with two terms, 3e-3 with x rounded to
// bf16 alone):
// rows not a multiple of the 64-row block tile (17, the fewest above the
// GEMV's 16, and 70), output columns not a multiple of the block's 128 (or
// 64 with SwiGLU), K not a multiple of the 32-deep slice, every fusion
// (RMSNorm prologue with and without unit offset, SwiGLU, residual), K = 24
// (less than one slice, with 20 output columns), and a K that is no
// multiple of 8 (the SIMT tile's fallback).
func TestEmulatedMMAOps(t *testing.T) {
	gxx := useFakeDriver(t)
	const K, N, I, K2, K3 = 200, 136, 100, 36, 24
	b := ir.NewBuilder("mma-ops")
	x := b.Input("x", ir.F32, ir.T, K)
	x2 := b.Input("x2", ir.F32, ir.T, K2)
	fusedMatMulOutputs(b, x, N, K, I)
	b.Output("k36", b.MatMul(x2, b.Weight("w36", ir.BF16, N, K2)))
	x3 := b.Input("x3", ir.F32, ir.T, K3)
	b.Output("k24_norm_swiglu", b.Op(ir.OpFusedMatMul, []*ir.Value{x3, b.Weight("gu24", ir.BF16, 40, K3), b.Weight("norm24", ir.F32, K3)},
		ir.Int("norm", 1), ir.Float("eps", 1e-6), ir.Str("act", "swiglu")))
	p := loweredPlan(t, b)
	if n := mmaKernels(t, p); n != 5 {
		t.Fatalf("%d tensor-core matmul kernels, want 5 (all but K = %d)", n, K2)
	}
	ws, cws := fillWeights(p)
	gpu, ref := planBackends(t, gxx, p, ws, cws, Options{MaxTokens: 80})
	r := rand.New(rand.NewPCG(5, 6))
	normal := normals(r)
	names := outputNames(p)
	for _, T := range []int{17, 70} {
		t.Run(fmt.Sprint("T=", T), func(t *testing.T) {
			in := map[string]runtime.Input{"x": {F32: normal(T * K)}, "x2": {F32: normal(T * K2)}, "res": {F32: normal(T * N)}, "res2": {F32: normal(T * I)}, "x3": {F32: normal(T * K3)}}
			outs := stepBoth(t, visionBatch(T, in), names, gpu, ref)
			for i, n := range names {
				if e := golden.RelErr(outs[0][i], outs[1][i]); e > 1e-5 || len(outs[0][i]) != len(outs[1][i]) {
					t.Errorf("%s: emulated CUDA vs CPU relative error %.3g (%d and %d values)", n, e, len(outs[0][i]), len(outs[1][i]))
				}
			}
		})
	}
}
