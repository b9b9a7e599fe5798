// Package nn holds the blocks the architectures share, written once
// against the IR builder: the decoder skeleton (Decoder: embedding, layers
// of a token mixer and an FFN, final norm, head), attention with its
// rotary variants, the SwiGLU MLP, the sparse MoE and RMSNorm. A block
// declares its weights under checkpoint names and its Forward builds IR
// that reads like the Hugging Face modeling code.
//
// It is not for what one architecture alone has (MLA, Gated DeltaNet, the
// vision tower): those live with their model and plug into Decoder through
// the Mixer and FFN interfaces.
package nn

import (
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
)

// Ctx is the builder plus the dtype weights are declared in.
type Ctx struct {
	B      *ir.Builder
	WDType ir.DType
	// Has reports whether the checkpoint holds a tensor (nil: no
	// checkpoint); blocks use it to pick between alternative layouts, such
	// as per-expert and fused expert tensors.
	Has func(name string) bool
}

// NewCtx is the context of a build: weights in opt.WeightDType (F32 when
// unset), checkpoint lookups through opt.Has.
func NewCtx(b *ir.Builder, opt models.BuildOptions) *Ctx {
	c := &Ctx{B: b, WDType: opt.WeightDType, Has: opt.Has}
	if c.WDType == ir.DInvalid {
		c.WDType = ir.F32
	}
	return c
}

// W declares a weight under its checkpoint name.
func (c *Ctx) W(name string, shape ...int) *ir.Value {
	dims := make([]ir.Dim, len(shape))
	for i, d := range shape {
		dims[i] = ir.Dim(d)
	}
	return c.B.Weight(name, c.WDType, dims...)
}

// has reports whether the checkpoint holds name (false without one).
func (c *Ctx) has(name string) bool { return c.Has != nil && c.Has(name) }

// NormOpts configures an RMSNorm.
type NormOpts struct {
	Eps float64
	// UnitOffset scales by (1+w) instead of w, the weight initialised to
	// zero (Qwen3NextRMSNorm).
	UnitOffset bool
}

// RMSNorm is x / sqrt(mean(x²) + eps) over the last dim, scaled by its
// weight.
type RMSNorm struct {
	W    *ir.Value // [dim]
	Opts NormOpts
}

// NewRMSNorm declares the norm's weight [dim] under name.
func NewRMSNorm(c *Ctx, name string, dim int, o NormOpts) *RMSNorm {
	return &RMSNorm{W: c.W(name, dim), Opts: o}
}

// Forward: x [..., dim] -> [..., dim].
func (n *RMSNorm) Forward(c *Ctx, x *ir.Value) *ir.Value {
	return c.B.RMSNorm(x, n.W, n.Opts.Eps, n.Opts.UnitOffset)
}

// SwiGLU is the gated MLP down(silu(gate(x)) ⊙ up(x)).
type SwiGLU struct {
	Gate, Up, Down *ir.Value
}

// NewSwiGLU declares gate_proj, up_proj and down_proj under prefix.
func NewSwiGLU(c *Ctx, prefix string, hidden, inter int) *SwiGLU {
	return &SwiGLU{
		Gate: c.W(prefix+"gate_proj.weight", inter, hidden),
		Up:   c.W(prefix+"up_proj.weight", inter, hidden),
		Down: c.W(prefix+"down_proj.weight", hidden, inter),
	}
}

// Forward: x [T, hidden] -> [T, hidden].
func (m *SwiGLU) Forward(c *Ctx, x *ir.Value) *ir.Value {
	b := c.B
	return b.MatMul(b.Mul(b.SiLU(b.MatMul(x, m.Gate)), b.MatMul(x, m.Up)), m.Down)
}

// Route implements FFN: a dense MLP chooses no experts.
func (m *SwiGLU) Route(c *Ctx, x *ir.Value) (y, ids *ir.Value) { return m.Forward(c, x), nil }
