package cuda

import (
	"math/rand/v2"
	"testing"

	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
)

// TestEmulatedMoEOps runs the MoE templates on shapes the tiny goldens do
// not have, against the CPU backend: 40 experts (not a multiple of a
// warp), top-6, 70 tokens (many pairs per expert, more than one pass of
// the expert GEMMs), rows of logits with ties (equal scores go to the
// lower expert on both backends, or y would differ), softmax and sigmoid
// routing with a selection-only bias, and moe_routed with its norm
// prologue, bias and residual.
func TestEmulatedMoEOps(t *testing.T) {
	gxx := useFakeDriver(t)
	const T, E, K, H, I = 70, 40, 6, 72, 40
	b := ir.NewBuilder("moe-ops")
	x := b.Input("x", ir.F32, ir.T, H)
	logits := b.Input("logits", ir.F32, ir.T, E)
	gu, down := b.Weight("gu", ir.BF16, E*2*I, H), b.Weight("down", ir.F32, E*H, I)
	bias := b.Weight("bias", ir.F32, E)
	ids, w := b.Router(logits, nil, ir.RouterOpts{K: K, Scoring: "softmax", Normalize: true})
	b.Output("y_softmax", b.MoE(x, ids, w, gu, down, E))
	b.Output("w_softmax", w)
	ids2, w2 := b.Router(logits, bias, ir.RouterOpts{K: K, Scoring: "sigmoid", Normalize: true, Scale: 1.8})
	b.Output("y_sigmoid", b.MoE(x, ids2, w2, gu, down, E))
	b.Output("w_sigmoid", w2)
	routed := b.Op(ir.OpMoERouted, []*ir.Value{x, b.Weight("router", ir.BF16, E, H), gu, down, bias, b.Weight("norm", ir.F32, H), x},
		ir.Int("k", K), ir.Str("scoring", "sigmoid"), ir.Int("normalize", 1), ir.Float("scale", 2.5), ir.Int("experts", E),
		ir.Int("bias", 1), ir.Int("norm", 1), ir.Float("eps", 1e-6), ir.Int("residual", 1))
	b.Output("y_routed", routed)
	p := loweredPlan(t, b)
	ws, cws := fillWeights(p)
	gpu, ref := planBackends(t, gxx, p, ws, cws, Options{MaxTokens: 80})
	r := rand.New(rand.NewPCG(7, 8))
	var xs, ls []float32
	for range T * H {
		xs = append(xs, float32(r.NormFloat64()))
	}
	for i := range T {
		for e := range E {
			v := float32(r.NormFloat64())
			switch i % 4 {
			case 1: // ties: only 4 distinct values in the row
				v = float32(e%4) / 2
			case 2: // all equal
				v = 0.25
			}
			ls = append(ls, v)
		}
	}
	in := map[string]runtime.Input{"x": {F32: xs}, "logits": {F32: ls}}
	names := outputNames(p)
	outs := stepBoth(t, visionBatch(T, in), names, gpu, ref)
	for i, n := range names {
		if e := golden.RelErr(outs[0][i], outs[1][i]); e > 1e-4 || len(outs[0][i]) != len(outs[1][i]) {
			t.Errorf("%s: emulated CUDA vs CPU relative error %.3g (%d and %d values)", n, e, len(outs[0][i]), len(outs[1][i]))
		}
	}
}
