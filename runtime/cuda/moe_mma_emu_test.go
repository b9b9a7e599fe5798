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

// moeMMAKernels counts the tensor-core expert kernels (gate/up, down) of a
// plan's module, so that a test shows it has them.
func moeMMAKernels(t *testing.T, p *ir.Plan) (gateUp, down int) {
	t.Helper()
	m, err := cg.Generate(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range m.Kernels {
		switch {
		case strings.HasPrefix(k, "moe_gate_up_mma_"):
			gateUp++
		case strings.HasPrefix(k, "moe_down_mma_"):
			down++
		}
	}
	return gateUp, down
}

// TestEmulatedMoEMMAGolden: bf16 engines of the tiny Qwen3-MoE and
// GLM-4.7-Flash (8 experts, top-3) and Qwen3-Next MoE (top-2) over a
// 64-token prompt — 192 or 128 pairs, so that most experts have more than
// 16 and run on the tensor-core kernels, the others on the SIMT ones in
// the same step — give the CPU backend's logits within 1e-4.
func TestEmulatedMoEMMAGolden(t *testing.T) {
	gxx := useFakeDriver(t)
	for _, model := range []string{"qwen3moe", "glm4moelite", "qwen3next/moe"} {
		t.Run(model, func(t *testing.T) {
			gpu, ref, g, e := emuBackends(t, gxx, model, ir.BF16, false)
			if gu, d := moeMMAKernels(t, e.Meta.Plan); gu == 0 || d == 0 {
				t.Fatalf("the bf16 plan has %d tensor-core gate/up and %d down kernels", gu, d)
			}
			var long []int32
			for len(long) < 64 {
				for _, p := range g.Prompts {
					long = append(long, p.IDs...)
				}
			}
			long = long[:64]
			got, want := forward(t, gpu, long), forward(t, ref, long)
			e1 := golden.RelErr(got, want)
			t.Logf("%d-token prompt: relative error vs CPU %.3g", len(long), e1)
			if e1 > 1e-4 {
				t.Errorf("%d-token prompt: logits vs CPU backend: relative error %.3g", len(long), e1)
			}
		})
	}
}

// moeIDs lays out a step's expert ids so that expert e gets counts[e]
// pairs: the pairs slot-major (slot j of every token, then slot j+1) take
// the experts in order, each counts[e] times. With every count at most T, a
// token never gets an expert twice.
func moeIDs(T, K int, counts []int) ([]int32, error) {
	var seq []int32
	for e, c := range counts {
		if c > T {
			return nil, fmt.Errorf("expert %d: %d pairs for %d tokens", e, c, T)
		}
		for range c {
			seq = append(seq, int32(e))
		}
	}
	if len(seq) != T*K {
		return nil, fmt.Errorf("%d pairs, want %d", len(seq), T*K)
	}
	ids := make([]int32, T*K)
	for j := range K {
		for t := range T {
			ids[t*K+j] = seq[j*T+t]
		}
	}
	return ids, nil
}

// TestEmulatedMoEMMAOps runs the moe op on ids the test chooses, against
// the CPU backend within 2e-6 (f32 both ways; the three bf16 terms carry
// x's 24 bits and the bf16 weights' products are exact: measured ≤ 3.8e-7,
// and 3e-6 to 5e-6 with x in two terms, which the bound catches): 40 experts,
// top-4, most with no pairs, one with 1, one with 16 (the SIMT kernels'),
// 17 (the fewest the tensor cores take), 64 (one whole tile), 65 (a tile
// and one pair), one with most of the step's tokens; hidden 136 and
// intermediate 40, so that the k slices, the 64 gate/up columns and the
// 128 down columns of a block all have tails; steps of 90 tokens and of
// 17 (the fewest that take the tensor cores).
func TestEmulatedMoEMMAOps(t *testing.T) {
	gxx := useFakeDriver(t)
	const E, K, H, I = 40, 4, 136, 40
	b := ir.NewBuilder("moe-mma-ops")
	x := b.Input("x", ir.F32, ir.T, H)
	ids := b.Input("ids", ir.I32, ir.T, K)
	w := b.Input("w", ir.F32, ir.T, K)
	gu, down := b.Weight("gu", ir.BF16, E*2*I, H), b.Weight("down", ir.BF16, E*H, I)
	b.Output("y", b.MoE(x, ids, w, gu, down, E))
	p := loweredPlan(t, b)
	if gu, d := moeMMAKernels(t, p); gu != 1 || d != 1 {
		t.Fatalf("%d tensor-core gate/up and %d down kernels, want 1 each", gu, d)
	}
	ws, cws := fillWeights(p)
	gpu, ref := planBackends(t, gxx, p, ws, cws, Options{MaxTokens: 96})
	r := rand.New(rand.NewPCG(9, 10))
	for _, c := range []struct {
		T      int
		counts map[int]int
	}{
		{90, map[int]int{1: 1, 2: 85, 3: 17, 4: 16, 5: 64, 6: 65, 7: 2, 9: 20, 10: 30, 11: 30, 12: 1, 39: 29}},
		{17, map[int]int{1: 1, 2: 16, 3: 17, 5: 17, 7: 10, 39: 7}},
	} {
		t.Run(fmt.Sprint("T=", c.T), func(t *testing.T) {
			counts := make([]int, E)
			for e, n := range c.counts {
				counts[e] = n
			}
			idv, err := moeIDs(c.T, K, counts)
			if err != nil {
				t.Fatal(err)
			}
			var xs, wv []float32
			for range c.T * H {
				xs = append(xs, float32(r.NormFloat64()))
			}
			for range c.T * K {
				wv = append(wv, float32(0.1+r.Float64()))
			}
			in := map[string]runtime.Input{"x": {F32: xs}, "ids": {I32: idv}, "w": {F32: wv}}
			outs := stepBoth(t, visionBatch(c.T, in), []string{"y"}, gpu, ref)
			e := golden.RelErr(outs[0][0], outs[1][0])
			t.Logf("y: relative error vs CPU %.3g", e)
			if e > 2e-6 || len(outs[0][0]) != len(outs[1][0]) {
				t.Errorf("y: emulated CUDA vs CPU relative error %.3g (%d and %d values)", e, len(outs[0][0]), len(outs[1][0]))
			}
		})
	}
}
