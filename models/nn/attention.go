package nn

import (
	"math"

	"github.com/inference-pio/pio/ir"
)

// Rotary rotates queries and keys by their positions: the RoPE variant of
// an attention block, chosen once per model.
type Rotary interface {
	// Rotate: x [T, heads, headDim], pos (the graph's positions) -> x rotated.
	Rotate(b *ir.Builder, x, pos *ir.Value) *ir.Value
}

// RoPE rotates by positions i32[T]: the first RotaryDims channels of each
// head (all of them for plain RoPE, fewer for partial RoPE), in Style
// "neox" (rotate-half) or "interleaved" (adjacent pairs).
type RoPE ir.RoPEOpts

// Rotate implements Rotary.
func (r RoPE) Rotate(b *ir.Builder, x, pos *ir.Value) *ir.Value {
	return b.RoPE(x, pos, ir.RoPEOpts(r))
}

// MRoPE rotates by multimodal positions i32[T, 3] (temporal, height,
// width), each frequency slot reading the axis its Sections and Layout
// give it (Qwen3-VL: interleaved).
type MRoPE ir.MRoPEOpts

// Rotate implements Rotary.
func (r MRoPE) Rotate(b *ir.Builder, x, pos *ir.Value) *ir.Value {
	return b.MRoPE(x, pos, ir.MRoPEOpts(r))
}

// AttentionConfig is the geometry and variant of a multi-head (GQA)
// attention block.
type AttentionConfig struct {
	Hidden, Heads, KVHeads, HeadDim int
	QKNorm                          bool     // per-head RMSNorm on q and k before the rotation (Qwen3)
	Norm                            NormOpts // of the q/k norms
	Rotary                          Rotary
	// Gated: q_proj also yields an output gate per head (head j's rows are
	// [query_j ‖ gate_j]), and o ⊙ sigmoid(gate) goes into o_proj
	// (Qwen3-Next).
	Gated bool
	// LegacyOrder (ungated blocks) builds the q/k norms after all three
	// projections rather than each right after its own, as transformers
	// writes it: the same math, in the value order Qwen3's and Qwen3-MoE's
	// graphs were first built in, which their dumps and engines keep.
	LegacyOrder bool
}

// Attention is causal self-attention over a paged KV cache: q/k/v/o
// projections, optional q/k RMSNorm and output gate, and a rotary
// embedding.
type Attention struct {
	Cfg          AttentionConfig
	Q, K, V, O   *ir.Value
	QNorm, KNorm *RMSNorm // nil without QKNorm
	Cache        int
}

// NewAttention declares the block's weights under prefix (e.g.
// "model.layers.3.self_attn.") and its KV cache for layer.
func NewAttention(c *Ctx, prefix string, layer int, cfg AttentionConfig) *Attention {
	a := &Attention{Cfg: cfg}
	q := cfg.Heads * cfg.HeadDim
	if cfg.Gated {
		q *= 2
	}
	a.Q = c.W(prefix+"q_proj.weight", q, cfg.Hidden)
	a.K = c.W(prefix+"k_proj.weight", cfg.KVHeads*cfg.HeadDim, cfg.Hidden)
	a.V = c.W(prefix+"v_proj.weight", cfg.KVHeads*cfg.HeadDim, cfg.Hidden)
	a.O = c.W(prefix+"o_proj.weight", cfg.Hidden, cfg.Heads*cfg.HeadDim)
	if cfg.QKNorm {
		a.QNorm = NewRMSNorm(c, prefix+"q_norm.weight", cfg.HeadDim, cfg.Norm)
		a.KNorm = NewRMSNorm(c, prefix+"k_norm.weight", cfg.HeadDim, cfg.Norm)
	}
	kv := ir.Sh(ir.Dim(cfg.KVHeads), ir.Dim(cfg.HeadDim))
	a.Cache = c.B.Cache(ir.CacheSpec{Kind: ir.CacheKV, Layer: layer, DType: ir.F32, Entries: []ir.Shape{kv, kv.Clone()}})
	return a
}

// Forward: x [T, hidden], pos (i32[T], or [T, 3] for MRoPE) -> [T, hidden].
func (a *Attention) Forward(c *Ctx, x, pos *ir.Value) *ir.Value {
	b, cfg := c.B, a.Cfg
	h, kvh, d := ir.Dim(cfg.Heads), ir.Dim(cfg.KVHeads), ir.Dim(cfg.HeadDim)
	proj := func(w *ir.Value, heads, width ir.Dim) *ir.Value { return b.Reshape(b.MatMul(x, w), ir.T, heads, width) }
	var q, k, v, gate *ir.Value // q, gate [T, heads, headDim]; k, v [T, kvHeads, headDim]
	switch {
	case cfg.Gated:
		qg := proj(a.Q, h, 2*d) // [T, heads, query ‖ gate]
		q, gate = qkNorm(c, a.QNorm, b.Slice(qg, 0, int(d))), b.Slice(qg, int(d), int(d))
		k, v = qkNorm(c, a.KNorm, proj(a.K, kvh, d)), proj(a.V, kvh, d)
	case cfg.LegacyOrder:
		q, k, v = proj(a.Q, h, d), proj(a.K, kvh, d), proj(a.V, kvh, d)
		q, k = qkNorm(c, a.QNorm, q), qkNorm(c, a.KNorm, k)
	default:
		q, k, v = qkNorm(c, a.QNorm, proj(a.Q, h, d)), qkNorm(c, a.KNorm, proj(a.K, kvh, d)), proj(a.V, kvh, d)
	}
	q, k = cfg.Rotary.Rotate(b, q, pos), cfg.Rotary.Rotate(b, k, pos)
	o := b.Attention(q, k, v, a.Cache, 1/math.Sqrt(float64(cfg.HeadDim))) // [T, heads, headDim]
	if gate != nil {
		o = b.Mul(o, b.Sigmoid(gate))
	}
	return b.MatMul(b.Reshape(o, ir.T, h*d), a.O)
}

// qkNorm applies the q or k norm n, if the block has one.
func qkNorm(c *Ctx, n *RMSNorm, x *ir.Value) *ir.Value {
	if n == nil {
		return x
	}
	return n.Forward(c, x)
}
