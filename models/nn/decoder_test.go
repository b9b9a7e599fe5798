package nn

import (
	"slices"
	"strings"
	"testing"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
)

// tiny is a two-layer decoder: layer 0 attention + SwiGLU, layer 1
// attention + MoE with a gated shared expert.
func tiny(att AttentionConfig) *Decoder {
	t := models.TextConfig{Hidden: 16, Intermediate: 24, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 4, RotaryDims: 4,
		Vocab: 32, Eps: 1e-6, RopeTheta: 1e4, Tied: true}
	return NewDecoder(t, func(c *Ctx, i int, p string) (Mixer, FFN) {
		a := NewAttention(c, p+"self_attn.", i, att)
		if i == 0 {
			return a, NewSwiGLU(c, p+"mlp.", t.Hidden, t.Intermediate)
		}
		return a, NewMoE(c, p+"mlp.", MoEConfig{Hidden: t.Hidden, Inter: 8, Experts: 4,
			Router:      ir.RouterOpts{K: 2, Scoring: "softmax", Normalize: true},
			SharedInter: 8, SharedName: "shared_expert.", SharedGate: true})
	})
}

var gqa = AttentionConfig{Hidden: 16, Heads: 4, KVHeads: 2, HeadDim: 4, QKNorm: true, Norm: NormOpts{Eps: 1e-6},
	Rotary: RoPE{Theta: 1e4, RotaryDims: 4, Style: "neox"}}

func weights(g *ir.Graph) []string {
	var names []string
	for _, v := range g.Values {
		if v.Op == ir.OpWeight {
			names = append(names, v.Name())
		}
	}
	return names
}

func outputs(g *ir.Graph) []string {
	var names []string
	for _, o := range g.Outputs {
		names = append(names, o.Name)
	}
	return names
}

// firstStep is the index of the first value that computes (not an input,
// a weight or a concat of weights), and lastWeight that of the last weight.
func firstStep(g *ir.Graph) (first, lastWeight int) {
	first = -1
	for i, v := range g.Values {
		switch v.Op {
		case ir.OpWeight:
			lastWeight = i
		case ir.OpInput, ir.OpConcat:
		default:
			if first < 0 {
				first = i
			}
		}
	}
	return first, lastWeight
}

func TestDecoderBuild(t *testing.T) {
	g, err := tiny(gqa).Build("tiny", models.BuildOptions{Taps: true})
	if err != nil {
		t.Fatal(err)
	}
	if first, last := firstStep(g); last > first {
		t.Errorf("Build: weight v%d declared after the first step v%d", last, first)
	}
	w := weights(g)
	if slices.Contains(w, "lm_head.weight") {
		t.Errorf("tied decoder without a stored lm_head declares it")
	}
	for _, name := range []string{"model.embed_tokens.weight", "model.layers.1.input_layernorm.weight",
		"model.layers.1.mlp.shared_expert_gate.weight", "model.norm.weight"} {
		if !slices.Contains(w, name) {
			t.Errorf("no weight %s in %v", name, w)
		}
	}
	if got, want := strings.Join(outputs(g), " "), "hidden.0 hidden.1 router.1 norm logits"; got != want {
		t.Errorf("outputs %q, want %q", got, want)
	}
	if n := len(g.Caches); n != 2 {
		t.Errorf("%d caches, want 2", n)
	}

	d := tiny(gqa)
	d.NoRouterTaps = true
	d.Tied = false
	if g, err = d.Build("tiny", models.BuildOptions{Taps: true}); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(outputs(g), " "), "hidden.0 hidden.1 norm logits"; got != want {
		t.Errorf("NoRouterTaps: outputs %q, want %q", got, want)
	}
	if !slices.Contains(weights(g), "lm_head.weight") {
		t.Errorf("untied decoder without lm_head.weight")
	}
}

// TestDecoderForwardDeclaresLazily: without Declare, each weight is
// declared when first used, so layer 1's come after layer 0's steps and
// lm_head after the final norm.
func TestDecoderForwardDeclaresLazily(t *testing.T) {
	b := ir.NewBuilder("lazy")
	opt := models.BuildOptions{Has: func(n string) bool { return n == "lm_head.weight" }}
	c := NewCtx(b, opt)
	tokens, pos, rows := b.Input("tokens", ir.I32, ir.T), b.Input("positions", ir.I32, ir.T), b.Input("logit_rows", ir.I32, ir.S)
	tiny(gqa).Forward(c, tokens, pos, rows, opt)
	g, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	at := map[string]int{}
	for i, v := range g.Values {
		if v.Op == ir.OpWeight {
			at[v.Name()] = i
		}
	}
	first, _ := firstStep(g)
	if l1 := at["model.layers.1.input_layernorm.weight"]; l1 < first {
		t.Errorf("layer 1 declared at v%d, before the first step v%d", l1, first)
	}
	if h, n := at["lm_head.weight"], at["model.norm.weight"]; h < n || n == 0 {
		t.Errorf("lm_head at v%d, final norm at v%d: want the checkpoint's lm_head (tied, but stored) after the norm", h, n)
	}
}

// TestAttentionOrders: transformers' order, the legacy order and the gated
// block build the same ops (the gate adds slices, a sigmoid and a mul).
func TestAttentionOrders(t *testing.T) {
	count := func(att AttentionConfig) map[ir.Op]int {
		g, err := tiny(att).Build("tiny", models.BuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n := map[ir.Op]int{}
		for _, v := range g.Values {
			n[v.Op]++
		}
		return n
	}
	legacy, gated := gqa, gqa
	legacy.LegacyOrder = true
	gated.Gated = true
	gated.Norm.UnitOffset = true
	plain, leg, gat := count(gqa), count(legacy), count(gated)
	for op, n := range plain {
		if leg[op] != n {
			t.Errorf("legacy order: %d %v, want %d", leg[op], op, n)
		}
	}
	if gat[ir.OpSection] != plain[ir.OpSection]+4 || gat[ir.OpSigmoid] != plain[ir.OpSigmoid]+2 {
		t.Errorf("gated: %d slices, %d sigmoids; want 4 and 2 more than %d, %d", gat[ir.OpSection], gat[ir.OpSigmoid], plain[ir.OpSection], plain[ir.OpSigmoid])
	}
}
