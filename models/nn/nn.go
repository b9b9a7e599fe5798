// Package nn holds the building blocks several architectures share —
// attention with optional q/k norms, the SwiGLU MLP — written once against
// the IR builder. A block declares its weights under checkpoint names and
// its Forward builds IR that reads like the Hugging Face modeling code.
package nn

import (
	"math"

	"github.com/inference-pio/pio/ir"
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

// W declares a weight under its checkpoint name.
func (c *Ctx) W(name string, shape ...int) *ir.Value {
	dims := make([]ir.Dim, len(shape))
	for i, d := range shape {
		dims[i] = ir.Dim(d)
	}
	return c.B.Weight(name, c.WDType, dims...)
}

// AttentionConfig is the geometry of a multi-head (GQA) attention block.
type AttentionConfig struct {
	Hidden, Heads, KVHeads, HeadDim int
	QKNorm                          bool    // per-head RMSNorm on q and k before RoPE (Qwen3)
	NormEps                         float64 // eps of the q/k norms
	RoPE                            ir.RoPEOpts
}

// Attention is self-attention with q/k/v/o projections, optional q/k
// RMSNorm, RoPE and a paged KV cache.
type Attention struct {
	Cfg          AttentionConfig
	Q, K, V, O   *ir.Value
	QNorm, KNorm *ir.Value
	Cache        int
}

// NewAttention declares the block's weights under prefix (e.g.
// "model.layers.3.self_attn.") and its KV cache for layer.
func NewAttention(c *Ctx, prefix string, layer int, cfg AttentionConfig) *Attention {
	a := &Attention{Cfg: cfg}
	a.Q = c.W(prefix+"q_proj.weight", cfg.Heads*cfg.HeadDim, cfg.Hidden)
	a.K = c.W(prefix+"k_proj.weight", cfg.KVHeads*cfg.HeadDim, cfg.Hidden)
	a.V = c.W(prefix+"v_proj.weight", cfg.KVHeads*cfg.HeadDim, cfg.Hidden)
	a.O = c.W(prefix+"o_proj.weight", cfg.Hidden, cfg.Heads*cfg.HeadDim)
	if cfg.QKNorm {
		a.QNorm = c.W(prefix+"q_norm.weight", cfg.HeadDim)
		a.KNorm = c.W(prefix+"k_norm.weight", cfg.HeadDim)
	}
	kv := ir.Sh(ir.Dim(cfg.KVHeads), ir.Dim(cfg.HeadDim))
	a.Cache = c.B.Cache(ir.CacheSpec{Kind: ir.CacheKV, Layer: layer, DType: ir.F32, Entries: []ir.Shape{kv, kv.Clone()}})
	return a
}

// Forward: x [T, hidden], pos i32[T] -> [T, hidden].
func (a *Attention) Forward(c *Ctx, x, pos *ir.Value) *ir.Value {
	b, cfg := c.B, a.Cfg
	h, kvh, d := ir.Dim(cfg.Heads), ir.Dim(cfg.KVHeads), ir.Dim(cfg.HeadDim)
	q := b.Reshape(b.MatMul(x, a.Q), ir.T, h, d)   // [T, heads, headDim]
	k := b.Reshape(b.MatMul(x, a.K), ir.T, kvh, d) // [T, kvHeads, headDim]
	v := b.Reshape(b.MatMul(x, a.V), ir.T, kvh, d)
	if cfg.QKNorm {
		q = b.RMSNorm(q, a.QNorm, cfg.NormEps, false)
		k = b.RMSNorm(k, a.KNorm, cfg.NormEps, false)
	}
	q = b.RoPE(q, pos, cfg.RoPE)
	k = b.RoPE(k, pos, cfg.RoPE)
	o := b.Attention(q, k, v, a.Cache, 1/math.Sqrt(float64(cfg.HeadDim))) // [T, heads, headDim]
	return b.MatMul(b.Reshape(o, ir.T, h*d), a.O)
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
