package cuda

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	cg "github.com/inference-pio/pio/codegen/cuda"
	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
)

// kernelsAt are the kernel kinds (names without their hash) that a plan's
// matmul steps launch at rows, one string per step.
func kernelsAt(m *cg.Module, p *ir.Plan, rows int) map[string]int {
	kinds := map[string]int{}
	for i, s := range p.Steps {
		if s.Op != ir.OpMatMul && s.Op != ir.OpFusedMatMul {
			continue
		}
		var ks []string
		for _, l := range m.Launches {
			if l.Step == i && l.Runs(rows, rows, false) {
				k := l.Kernel[:strings.LastIndexByte(l.Kernel, '_')]
				if k == "matmul_warp" {
					k += fmt.Sprint("/", l.Grid[1].Div)
				}
				ks = append(ks, k)
			}
		}
		kinds[strings.Join(ks, "+")]++
	}
	return kinds
}

// TestEmulatedSplitKOps runs matmul and fused_matmul steps on the batched
// decode row counts against the CPU backend within 1e-5: 5, 8 and 16 rows
// on the GEMV with 16 rows per block row (one pass over W), 17, 40, 64 and
// 100 on split-K (K in parts on tensor cores, then the partials' ordered
// sum with the epilogues). The shapes are narrow enough to split: K = 1000
// (4 parts of 8 slices, the last slice short) and K = 776 (3 uneven parts:
// 8, 8, 9 slices), output columns not a multiple of the block's, every
// fusion (RMSNorm prologue with and without unit offset, SwiGLU,
// residual), and K = 36 (no multiple of 8: the GEMV's scalar loop, the SIMT
// tile above 16 rows).
func TestEmulatedSplitKOps(t *testing.T) {
	gxx := useFakeDriver(t)
	const K, K2, K3, N, N2, I = 1000, 776, 36, 136, 40, 100
	b := ir.NewBuilder("splitk-ops")
	x := b.Input("x", ir.F32, ir.T, K)
	x2 := b.Input("x2", ir.F32, ir.T, K2)
	x3 := b.Input("x3", ir.F32, ir.T, K3)
	fusedMatMulOutputs(b, x, N, K, I)
	b.Output("k776_norm_f32", b.Op(ir.OpFusedMatMul, []*ir.Value{x2, b.Weight("w776", ir.BF16, N2, K2), b.Weight("norm776", ir.F32, K2)},
		ir.Int("norm", 1), ir.Float("eps", 1e-6)))
	b.Output("k36_norm_residual", b.Op(ir.OpFusedMatMul, []*ir.Value{x3, b.Weight("w36", ir.BF16, N2, K3), b.Weight("norm36", ir.BF16, K3), b.Input("res3", ir.F32, ir.T, N2)},
		ir.Int("norm", 1), ir.Float("eps", 1e-6), ir.Int("residual", 1)))
	p := loweredPlan(t, b)
	m, err := cg.Generate(p)
	if err != nil {
		t.Fatal(err)
	}
	// The kernels each row count runs, per step.
	for _, c := range []struct {
		rows int
		want map[string]int
	}{
		{4, map[string]int{"matmul_warp/4": 6}},
		{5, map[string]int{"matmul_warp/16": 6}},
		{16, map[string]int{"matmul_warp/16": 6}},
		{17, map[string]int{"matmul_splitk+matmul_splitk_sum": 2, "matmul_splitk_norm+matmul_splitk+matmul_splitk_sum": 3, "matmul_tile": 1}},
		{128, map[string]int{"matmul_splitk+matmul_splitk_sum": 2, "matmul_splitk_norm+matmul_splitk+matmul_splitk_sum": 3, "matmul_tile": 1}},
		{129, map[string]int{"matmul_mma": 5, "matmul_tile": 1}},
	} {
		if got := kernelsAt(m, p, c.rows); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Fatalf("%d rows: kernels %v, want %v", c.rows, got, c.want)
		}
	}
	ws, cws := fillWeights(p)
	gpu, ref := planBackends(t, gxx, p, ws, cws, Options{MaxTokens: 100})
	r := rand.New(rand.NewPCG(7, 8))
	normal := normals(r)
	names := outputNames(p)
	for _, T := range []int{5, 8, 16, 17, 40, 64, 100} {
		t.Run(fmt.Sprint("T=", T), func(t *testing.T) {
			in := map[string]runtime.Input{"x": {F32: normal(T * K)}, "x2": {F32: normal(T * K2)}, "x3": {F32: normal(T * K3)},
				"res": {F32: normal(T * N)}, "res2": {F32: normal(T * I)}, "res3": {F32: normal(T * N2)}}
			outs := stepBoth(t, visionBatch(T, in), names, gpu, ref)
			for i, n := range names {
				e := golden.RelErr(outs[0][i], outs[1][i])
				if e > 1e-5 || len(outs[0][i]) != len(outs[1][i]) {
					t.Errorf("%s: emulated CUDA vs CPU relative error %.3g (%d and %d values)", n, e, len(outs[0][i]), len(outs[1][i]))
				}
				t.Logf("%s: %.3g", n, e)
			}
		})
	}
}

// TestEmulatedGEMVGolden: the bf16 tiny Qwen3 decoding five sequences in
// one step (5 rows: every matmul on the GEMV with 16 rows per block row,
// the RMSNorm prologue, SwiGLU and residual fused) and then a 40-token
// prompt step gives the CPU backend's logits within 1e-4.
func TestEmulatedGEMVGolden(t *testing.T) {
	gxx := useFakeDriver(t)
	e, g := emuEngine(t, gxx, "qwen3-a", compiler.Options{DType: ir.BF16, KVDType: ir.F32})
	gpu, ref := engineBackends(t, e, Options{MaxTokens: 64, NumBlocks: 64, BlockSize: 4, MaxSeqs: 8})
	m, err := cg.Generate(e.Meta.Plan)
	if err != nil {
		t.Fatal(err)
	}
	if k := kernelsAt(m, e.Meta.Plan, 5); len(k) != 1 || k["matmul_warp/16"] == 0 {
		t.Fatalf("5 rows: matmul kernels %v, want the 16-row GEMV only", k)
	}
	var long []int32
	for _, p := range g.Prompts {
		long = append(long, p.IDs...)
	}
	// Five sequences: prompts of 2..6 tokens, then one decode step of a token each.
	var bt runtime.Batch
	for s := 0; s < 5; s++ {
		for i, tok := range long[s : s+2+s] {
			bt.Tokens = append(bt.Tokens, tok)
			bt.Positions = append(bt.Positions, int32(i))
			bt.SeqOfToken = append(bt.SeqOfToken, int32(s))
		}
		bt.LogitRows = append(bt.LogitRows, int32(len(bt.Tokens)-1))
		bt.Seqs = append(bt.Seqs, runtime.SeqView{Blocks: []int32{int32(4 * s), int32(4*s + 1), int32(4*s + 2)}})
	}
	outs := stepBoth(t, &bt, []string{"logits"}, gpu, ref)
	if err := golden.RelErr(outs[0][0], outs[1][0]); err > 1e-4 {
		t.Errorf("prefill of five sequences: logits vs CPU backend: relative error %.3g", err)
	}
	dec := runtime.Batch{Seqs: bt.Seqs}
	for s := 0; s < 5; s++ {
		dec.Tokens = append(dec.Tokens, long[10+s])
		dec.Positions = append(dec.Positions, int32(2+s))
		dec.SeqOfToken = append(dec.SeqOfToken, int32(s))
		dec.LogitRows = append(dec.LogitRows, int32(s))
	}
	outs = stepBoth(t, &dec, []string{"logits"}, gpu, ref)
	if err := golden.RelErr(outs[0][0], outs[1][0]); err > 1e-4 || len(outs[0][0]) != len(outs[1][0]) || len(outs[0][0]) == 0 {
		t.Errorf("decode of five sequences: logits vs CPU backend: relative error %.3g", err)
	} else {
		t.Logf("decode of five sequences: %.3g", err)
	}
	if len(long) < 40 {
		long = append(long, long...)
	}
	if err := golden.RelErr(forward(t, gpu, long[:40]), forward(t, ref, long[:40])); err > 1e-4 {
		t.Errorf("40-token prompt: logits vs CPU backend: relative error %.3g", err)
	} else {
		t.Logf("40-token prompt: %.3g", err)
	}
}
