package nn

import (
	"strconv"
	"strings"

	"github.com/inference-pio/pio/ir"
)

// MoEConfig is the geometry and routing of a sparse mixture-of-experts MLP.
type MoEConfig struct {
	Hidden, Inter, Experts int
	Router                 ir.RouterOpts
	// SelectionBias declares gate.e_score_correction_bias [E] (kept in
	// f32), added to the scores to choose experts but not to weigh them.
	SelectionBias bool
	// SharedInter > 0 adds a shared SwiGLU expert of that size under
	// SharedName ("shared_experts." for GLM, "shared_expert." for
	// Qwen3-Next).
	SharedInter int
	SharedName  string
	// SharedGate scales the shared expert per token by sigmoid(x·w_sgᵀ),
	// w_sg [1, H] declared as the shared expert's name + "_gate.weight"
	// (Qwen3-Next's shared_expert_gate).
	SharedGate bool
}

// MoE is a router over stacked SwiGLU experts, plus an optional shared
// expert: y = Σ_j w_j · Expert_{ids_j}(x) (+ [sigmoid(x·w_sgᵀ) ⊙] Shared(x)).
type MoE struct {
	Cfg          MoEConfig
	Gate, Bias   *ir.Value // router [E, H]; selection bias [E] or nil
	GateUp, Down *ir.Value // [E·2I, H] (or [E, 2I, H]) and [E·H, I] (or [E, H, I])
	Shared       *SwiGLU
	SharedGate   *ir.Value // [1, H] or nil
}

// NewMoE declares the block's weights under prefix (e.g.
// "model.layers.3.mlp."). Experts bind to transformers v5's fused 3-D
// tensors (experts.gate_up_proj [E, 2I, H], experts.down_proj [E, H, I])
// when the checkpoint has them, else to the hub's per-expert tensors
// (experts.<e>.{gate,up,down}_proj.weight), which a concat of weights
// stacks at build time into one engine tensor each.
func NewMoE(c *Ctx, prefix string, cfg MoEConfig) *MoE {
	m := &MoE{Cfg: cfg}
	b, e, in, h := c.B, cfg.Experts, cfg.Inter, cfg.Hidden
	m.Gate = c.W(prefix+"gate.weight", e, h)
	if cfg.SelectionBias {
		m.Bias = b.Weight(prefix+"gate.e_score_correction_bias", ir.F32, ir.Dim(e))
	}
	fused := prefix + "experts.gate_up_proj"
	if c.has(fused) {
		m.GateUp = c.W(fused, e, 2*in, h)
		m.Down = c.W(prefix+"experts.down_proj", e, h, in)
	} else {
		var gu, down []*ir.Value
		for i := 0; i < e; i++ {
			p := prefix + "experts." + strconv.Itoa(i) + "."
			gu = append(gu, c.W(p+"gate_proj.weight", in, h), c.W(p+"up_proj.weight", in, h))
			down = append(down, c.W(p+"down_proj.weight", h, in))
		}
		m.GateUp = b.Concat(0, prefix+"experts.gate_up_proj", gu...) // [E·2I, H]
		m.Down = b.Concat(0, prefix+"experts.down_proj", down...)    // [E·H, I]
	}
	if cfg.SharedInter > 0 {
		m.Shared = NewSwiGLU(c, prefix+cfg.SharedName, h, cfg.SharedInter)
		if cfg.SharedGate {
			m.SharedGate = c.W(prefix+strings.TrimSuffix(cfg.SharedName, ".")+"_gate.weight", 1, h)
		}
	}
	return m
}

// Forward: x [T, hidden] -> y [T, hidden], and the chosen experts i32[T, k].
func (m *MoE) Forward(c *Ctx, x *ir.Value) (y, ids *ir.Value) {
	b := c.B
	logits := b.MatMul(x, m.Gate) // [T, E], f32
	ids, w := b.Router(logits, m.Bias, m.Cfg.Router)
	y = b.MoE(x, ids, w, m.GateUp, m.Down, m.Cfg.Experts)
	if m.Shared != nil {
		s := m.Shared.Forward(c, x)
		if m.SharedGate != nil {
			s = b.MulRows(s, b.Sigmoid(b.MatMul(x, m.SharedGate)))
		}
		y = b.Add(y, s)
	}
	return y, ids
}

// Route implements FFN.
func (m *MoE) Route(c *Ctx, x *ir.Value) (y, ids *ir.Value) { return m.Forward(c, x) }
