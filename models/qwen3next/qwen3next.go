// Package qwen3next builds the IR of Qwen3-Next (Qwen3NextForCausalLM:
// Qwen3-Coder-Next), following transformers' modeling_qwen3_next.py: a
// hybrid of Gated DeltaNet (linear attention) layers and gated full
// attention layers, chosen per layer by layer_types, each followed by a
// sparse MoE with a sigmoid-gated shared expert (or a dense SwiGLU on
// mlp_only_layers). Every Qwen3NextRMSNorm is the (1+w) form.
//
// A DeltaNet layer keeps two per-sequence state caches (conv [C, K−1] and
// recurrent [Hv, dk, dv], f32); a full-attention layer a paged KV cache.
package qwen3next

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	"github.com/inference-pio/pio/models/nn"
)

func init() { models.Register("Qwen3NextForCausalLM", New) }

// Layer kinds of layer_types.
const (
	LinearAttention = "linear_attention"
	FullAttention   = "full_attention"
)

// Config is the part of config.json the model uses, validated.
type Config struct {
	Hidden, Intermediate, Layers, Vocab int
	Heads, KVHeads, HeadDim, RotaryDims int
	Eps, RopeTheta                      float64
	Tied                                bool
	LayerTypes                          []string // per layer: LinearAttention or FullAttention
	// MaxPositions is max_position_embeddings (transformers' default,
	// 32768, when absent): the context limit, not part of the graph.
	MaxPositions int

	// Gated DeltaNet geometry.
	LinKeyHeads, LinValueHeads, LinKeyDim, LinValueDim, ConvKernel int

	// MoE: a layer is sparse when Experts > 0, it is not in MLPOnly and
	// (layer+1) % SparseStep == 0; otherwise a dense SwiGLU of Intermediate.
	Experts, TopK, MoEIntermediate, SharedIntermediate, SparseStep int
	NormTopK                                                       bool
	MLPOnly                                                        []int
}

// extra holds the config.json fields hf.Config does not name.
type extra struct {
	LayerTypes            []string `json:"layer_types"`
	FullAttentionInterval *int     `json:"full_attention_interval"`
	LinKeyHeads           int      `json:"linear_num_key_heads"`
	LinValueHeads         int      `json:"linear_num_value_heads"`
	LinKeyDim             int      `json:"linear_key_head_dim"`
	LinValueDim           int      `json:"linear_value_head_dim"`
	ConvKernel            int      `json:"linear_conv_kernel_dim"`
	Experts               int      `json:"num_experts"`
	TopK                  int      `json:"num_experts_per_tok"`
	MoEIntermediate       int      `json:"moe_intermediate_size"`
	SharedIntermediate    int      `json:"shared_expert_intermediate_size"`
	NormTopK              *bool    `json:"norm_topk_prob"`
	SparseStep            *int     `json:"decoder_sparse_step"`
	MLPOnly               []int    `json:"mlp_only_layers"`
}

// Class is transformers' Qwen3NextConfig (5.17), with the v4 spelling
// full_attention_interval: its keys, RoPE (partial) and defaults.
var Class = models.Class{
	Keys: models.Keys{
		Read: []string{"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
			"num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings",
			"linear_conv_kernel_dim", "linear_key_head_dim", "linear_value_head_dim", "linear_num_key_heads",
			"linear_num_value_heads", "decoder_sparse_step", "moe_intermediate_size", "shared_expert_intermediate_size",
			"num_experts_per_tok", "num_experts", "norm_topk_prob", "mlp_only_layers", "layer_types", "full_attention_interval"},
		Fixed: map[string][]any{"attention_bias": {false}, "hidden_act": {"silu", "swish"}},
	},
	Rope: models.RopeSpec{DefaultTheta: 10000, Partial: true}, MaxPositions: 32768, Eps: 1e-6,
}

// legacyLayerTypes are the older layer_types names transformers maps to
// the current ones (remap_legacy_layer_types).
var legacyLayerTypes = map[string]string{"attention": FullAttention, "mamba": LinearAttention, "conv": LinearAttention}

// Model builds Qwen3-Next graphs.
type Model struct{ cfg Config }

// New validates cfg and returns the model.
func New(c *hf.Config) (models.Model, error) {
	cfg, err := ParseConfig(c)
	if err != nil {
		return nil, err
	}
	return &Model{cfg: cfg}, nil
}

// ParseConfig reads and validates the fields the model needs. Absent keys
// take transformers' Qwen3NextConfig defaults: layer_types from
// full_attention_interval (4: every 4th layer full attention; legacy names
// remapped), num_key_value_heads 2, head_dim 256, partial_rotary_factor
// 0.25, rope_theta 10000, rms_norm_eps 1e-6, norm_topk_prob true,
// decoder_sparse_step 1, max_position_embeddings 32768. num_experts must
// be given (0: every layer dense). A key that would change the math and is
// not implemented is an error naming it (see Class).
func ParseConfig(c *hf.Config) (Config, error) {
	common, err := Class.Check(c)
	if err != nil {
		return Config{}, err
	}
	var x extra
	if err := c.Decode(&x); err != nil {
		return Config{}, err
	}
	cfg := Config{
		Hidden: c.HiddenSize, Intermediate: c.IntermediateSize, Layers: c.NumHiddenLayers, Vocab: c.VocabSize,
		Heads: c.NumAttentionHeads, HeadDim: c.HeadDim,
		Eps: common.Eps, RopeTheta: common.RopeTheta, Tied: c.TieWordEmbeddings, MaxPositions: common.MaxPositions,
		LinKeyHeads: x.LinKeyHeads, LinValueHeads: x.LinValueHeads, LinKeyDim: x.LinKeyDim, LinValueDim: x.LinValueDim,
		ConvKernel: x.ConvKernel, Experts: x.Experts, TopK: x.TopK, MoEIntermediate: x.MoEIntermediate,
		SharedIntermediate: x.SharedIntermediate, NormTopK: true, SparseStep: 1, MLPOnly: x.MLPOnly,
	}
	fail := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("config.json: "+format, args...)
	}
	if !c.Has("head_dim") {
		cfg.HeadDim = 256
	}
	if cfg.KVHeads, err = models.IntKey(c, "num_key_value_heads", 2, 0); err != nil {
		return Config{}, err
	}
	if !c.Has("num_experts") {
		return fail("num_experts must be set (transformers' default is 512; 0 makes every layer dense)")
	}
	if x.NormTopK != nil {
		cfg.NormTopK = *x.NormTopK
	}
	if x.SparseStep != nil {
		cfg.SparseStep = *x.SparseStep
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"hidden_size", cfg.Hidden}, {"num_hidden_layers", cfg.Layers}, {"vocab_size", cfg.Vocab},
		{"num_attention_heads", cfg.Heads}, {"num_key_value_heads", cfg.KVHeads}, {"head_dim", cfg.HeadDim},
		{"linear_num_key_heads", cfg.LinKeyHeads}, {"linear_num_value_heads", cfg.LinValueHeads},
		{"linear_key_head_dim", cfg.LinKeyDim}, {"linear_value_head_dim", cfg.LinValueDim},
		{"linear_conv_kernel_dim", cfg.ConvKernel}, {"decoder_sparse_step", cfg.SparseStep},
		{"max_position_embeddings", cfg.MaxPositions}} {
		if f.v <= 0 {
			return fail("%s must be > 0, got %d", f.name, f.v)
		}
	}
	cfg.LayerTypes = x.LayerTypes
	if cfg.LayerTypes == nil {
		every := 4
		if x.FullAttentionInterval != nil {
			every = *x.FullAttentionInterval
		}
		if every <= 0 {
			return fail("full_attention_interval must be > 0, got %d", every)
		}
		for i := range cfg.Layers {
			cfg.LayerTypes = append(cfg.LayerTypes, map[bool]string{true: FullAttention, false: LinearAttention}[(i+1)%every == 0])
		}
	}
	if len(cfg.LayerTypes) != cfg.Layers {
		return fail("layer_types has %d entries for %d layers", len(cfg.LayerTypes), cfg.Layers)
	}
	for i, t := range cfg.LayerTypes {
		if now, ok := legacyLayerTypes[t]; ok {
			cfg.LayerTypes[i], t = now, now
		}
		if t != LinearAttention && t != FullAttention {
			return fail("layer_types[%d] is %q, want %q or %q", i, t, LinearAttention, FullAttention)
		}
	}
	rotary := 0.25 // Qwen3NextConfig's default partial_rotary_factor
	if c.Rope.Has("partial_rotary_factor") {
		rotary = c.Rope.PartialRotaryFactor
	}
	cfg.RotaryDims = int(float64(cfg.HeadDim) * rotary)
	switch {
	case cfg.Heads%cfg.KVHeads != 0:
		return fail("num_attention_heads %d is not a multiple of num_key_value_heads %d", cfg.Heads, cfg.KVHeads)
	case cfg.LinValueHeads%cfg.LinKeyHeads != 0:
		return fail("linear_num_value_heads %d is not a multiple of linear_num_key_heads %d", cfg.LinValueHeads, cfg.LinKeyHeads)
	case cfg.RotaryDims <= 0 || cfg.RotaryDims%2 != 0:
		return fail("rotary dims %d (head_dim × partial_rotary_factor) must be even and > 0", cfg.RotaryDims)
	case cfg.ConvKernel < 2 || cfg.ConvKernel > 64:
		return fail("linear_conv_kernel_dim %d must be in [2, 64]", cfg.ConvKernel)
	case !(cfg.Eps > 0):
		return fail("rms_norm_eps must be > 0")
	}
	for i := range cfg.Layers {
		if cfg.sparse(i) {
			if cfg.TopK < 1 || cfg.TopK > cfg.Experts || cfg.MoEIntermediate <= 0 || cfg.SharedIntermediate < 0 {
				return fail("MoE layer %d: num_experts_per_tok %d must be in [1, %d], moe_intermediate_size %d > 0", i, cfg.TopK, cfg.Experts, cfg.MoEIntermediate)
			}
		} else if cfg.Intermediate <= 0 {
			return fail("dense layer %d: intermediate_size must be > 0, got %d", i, cfg.Intermediate)
		}
	}
	return cfg, nil
}

// sparse reports whether layer i uses the MoE block (transformers'
// Qwen3NextDecoderLayer rule).
func (c *Config) sparse(i int) bool {
	return c.Experts > 0 && !slices.Contains(c.MLPOnly, i) && (i+1)%c.SparseStep == 0
}

// MaxPositions is the context limit (models.Model).
func (m *Model) MaxPositions() int { return m.cfg.MaxPositions }

// Ignored: the multi-token-prediction head (mtp.*), which transformers
// does not load either.
func (m *Model) Ignored(name string) bool { return strings.HasPrefix(name, "mtp.") }

// mixer is a layer's token mixer: gated attention or Gated DeltaNet.
type mixer interface {
	// Forward: x [T, hidden], pos i32[T] -> [T, hidden].
	Forward(c *nn.Ctx, x, pos *ir.Value) *ir.Value
}

// mlp is a layer's channel mixer: the sparse MoE or a dense SwiGLU.
type mlp interface {
	// Forward: x [T, hidden] -> [T, hidden].
	Forward(c *nn.Ctx, x *ir.Value) *ir.Value
}

type layer struct {
	inNorm, postNorm *ir.Value
	mix              mixer
	mlp              mlp
}

// Build returns the graph: inputs tokens i32[T], positions i32[T],
// logit_rows i32[S]; output logits [S, vocab] (plus taps when asked).
func (m *Model) Build(opt models.BuildOptions) (*ir.Graph, error) {
	cfg := m.cfg
	b := ir.NewBuilder("qwen3next")
	c := &nn.Ctx{B: b, WDType: opt.WeightDType}
	if c.WDType == ir.DInvalid {
		c.WDType = ir.F32
	}
	tokens := b.Input("tokens", ir.I32, ir.T)
	pos := b.Input("positions", ir.I32, ir.T)
	rows := b.Input("logit_rows", ir.I32, ir.S)
	embed := c.W("model.embed_tokens.weight", cfg.Vocab, cfg.Hidden)

	layers := make([]layer, cfg.Layers)
	for i := range layers {
		p := "model.layers." + strconv.Itoa(i) + "."
		l := layer{
			inNorm:   c.W(p+"input_layernorm.weight", cfg.Hidden),
			postNorm: c.W(p+"post_attention_layernorm.weight", cfg.Hidden),
		}
		if cfg.LayerTypes[i] == FullAttention {
			l.mix = newGatedAttention(c, p+"self_attn.", i, &cfg)
		} else {
			l.mix = newGatedDeltaNet(c, p+"linear_attn.", i, &cfg)
		}
		if cfg.sparse(i) {
			l.mlp = newSparseMoE(c, p+"mlp.", &cfg, opt.Has)
		} else {
			l.mlp = nn.NewSwiGLU(c, p+"mlp.", cfg.Hidden, cfg.Intermediate)
		}
		layers[i] = l
	}
	norm := c.W("model.norm.weight", cfg.Hidden)
	head := embed
	if !cfg.Tied || (opt.Has != nil && opt.Has("lm_head.weight")) {
		head = c.W("lm_head.weight", cfg.Vocab, cfg.Hidden)
	}

	h := b.Embedding(embed, tokens) // [T, hidden]
	for i, l := range layers {
		h = b.Add(h, l.mix.Forward(c, b.RMSNorm(h, l.inNorm, cfg.Eps, true), pos))
		h = b.Add(h, l.mlp.Forward(c, b.RMSNorm(h, l.postNorm, cfg.Eps, true)))
		if opt.Taps {
			b.Output("hidden."+strconv.Itoa(i), h)
		}
	}
	h = b.RMSNorm(h, norm, cfg.Eps, true)
	if opt.Taps {
		b.Output("norm", h)
	}
	b.Output("logits", b.MatMul(b.GatherRows(h, rows), head)) // [S, vocab]
	return b.Finish()
}

// gatedAttention is Qwen3NextAttention: q_proj yields per head the query
// and an output gate (interleaved: head j's rows are [query_j ‖ gate_j]),
// (1+w) q/k norms, partial RoPE, and o ⊙ sigmoid(gate) before o_proj.
type gatedAttention struct {
	cfg          *Config
	q, k, v, o   *ir.Value
	qNorm, kNorm *ir.Value
	cache        int
}

func newGatedAttention(c *nn.Ctx, prefix string, layer int, cfg *Config) *gatedAttention {
	h, kv, d := cfg.Heads, cfg.KVHeads, cfg.HeadDim
	a := &gatedAttention{
		cfg:   cfg,
		q:     c.W(prefix+"q_proj.weight", 2*h*d, cfg.Hidden),
		k:     c.W(prefix+"k_proj.weight", kv*d, cfg.Hidden),
		v:     c.W(prefix+"v_proj.weight", kv*d, cfg.Hidden),
		o:     c.W(prefix+"o_proj.weight", cfg.Hidden, h*d),
		qNorm: c.W(prefix+"q_norm.weight", d),
		kNorm: c.W(prefix+"k_norm.weight", d),
	}
	e := ir.Sh(ir.Dim(kv), ir.Dim(d))
	a.cache = c.B.Cache(ir.CacheSpec{Kind: ir.CacheKV, Layer: layer, DType: ir.F32, Entries: []ir.Shape{e, e.Clone()}})
	return a
}

func (a *gatedAttention) Forward(c *nn.Ctx, x, pos *ir.Value) *ir.Value {
	b, cfg := c.B, a.cfg
	h, kv, d := ir.Dim(cfg.Heads), ir.Dim(cfg.KVHeads), ir.Dim(cfg.HeadDim)
	qg := b.Reshape(b.MatMul(x, a.q), ir.T, h, 2*d) // [T, heads, query ‖ gate]
	q := b.RMSNorm(b.Slice(qg, 0, int(d)), a.qNorm, cfg.Eps, true)
	gate := b.Slice(qg, int(d), int(d))
	k := b.RMSNorm(b.Reshape(b.MatMul(x, a.k), ir.T, kv, d), a.kNorm, cfg.Eps, true)
	v := b.Reshape(b.MatMul(x, a.v), ir.T, kv, d)
	rope := ir.RoPEOpts{Theta: cfg.RopeTheta, RotaryDims: cfg.RotaryDims, Style: "neox"}
	o := b.Attention(b.RoPE(q, pos, rope), b.RoPE(k, pos, rope), v, a.cache, 1/math.Sqrt(float64(cfg.HeadDim)))
	o = b.Mul(o, b.Sigmoid(gate)) // [T, heads, headDim]
	return b.MatMul(b.Reshape(o, ir.T, h*d), a.o)
}

// gatedDeltaNet is Qwen3NextGatedDeltaNet. in_proj_qkvz is grouped per key
// head g: [q_g (dk) ‖ k_g (dk) ‖ v of its r value heads (r·dv) ‖ z of them
// (r·dv)], r = Hv/Hk; in_proj_ba likewise [b (r) ‖ a (r)]. The depthwise
// causal conv (+SiLU) runs over the channels [q ‖ k ‖ v] (head-major), then
// the gated delta rule with l2-normalised q, k, and the gated RMSNorm
// w ⊙ norm(o) ⊙ silu(z) (plain w) before out_proj.
type gatedDeltaNet struct {
	cfg                 *Config
	qkvz, ba, conv, out *ir.Value
	aLog, dtBias, norm  *ir.Value
	convCache, rec      int
}

func newGatedDeltaNet(c *nn.Ctx, prefix string, layer int, cfg *Config) *gatedDeltaNet {
	hk, hv, dk, dv := cfg.LinKeyHeads, cfg.LinValueHeads, cfg.LinKeyDim, cfg.LinValueDim
	channels := 2*hk*dk + hv*dv
	n := &gatedDeltaNet{
		cfg:    cfg,
		qkvz:   c.W(prefix+"in_proj_qkvz.weight", 2*hk*dk+2*hv*dv, cfg.Hidden),
		ba:     c.W(prefix+"in_proj_ba.weight", 2*hv, cfg.Hidden),
		conv:   c.W(prefix+"conv1d.weight", channels, 1, cfg.ConvKernel),
		aLog:   c.W(prefix+"A_log", hv),
		dtBias: c.W(prefix+"dt_bias", hv),
		norm:   c.W(prefix+"norm.weight", dv),
		out:    c.W(prefix+"out_proj.weight", cfg.Hidden, hv*dv),
	}
	n.convCache = c.B.Cache(ir.CacheSpec{Kind: ir.CacheState, Layer: layer, DType: ir.F32,
		Entries: []ir.Shape{ir.Sh(ir.Dim(channels), ir.Dim(cfg.ConvKernel-1))}})
	n.rec = c.B.Cache(ir.CacheSpec{Kind: ir.CacheState, Layer: layer, DType: ir.F32,
		Entries: []ir.Shape{ir.Sh(ir.Dim(hv), ir.Dim(dk), ir.Dim(dv))}})
	return n
}

func (n *gatedDeltaNet) Forward(c *nn.Ctx, x, _ *ir.Value) *ir.Value {
	b, cfg := c.B, n.cfg
	hk, hv, dk, dv := cfg.LinKeyHeads, cfg.LinValueHeads, cfg.LinKeyDim, cfg.LinValueDim
	r := hv / hk
	T := ir.T
	p := b.Reshape(b.MatMul(x, n.qkvz), T, ir.Dim(hk), ir.Dim(2*dk+2*r*dv)) // [T, Hk, group]
	q := b.Reshape(b.Slice(p, 0, dk), T, ir.Dim(hk*dk))
	k := b.Reshape(b.Slice(p, dk, dk), T, ir.Dim(hk*dk))
	v := b.Reshape(b.Slice(p, 2*dk, r*dv), T, ir.Dim(hv*dv))
	z := b.Reshape(b.Slice(p, 2*dk+r*dv, r*dv), T, ir.Dim(hv), ir.Dim(dv))
	ba := b.Reshape(b.MatMul(x, n.ba), T, ir.Dim(hk), ir.Dim(2*r)) // [T, Hk, b ‖ a]
	beta := b.Sigmoid(b.Reshape(b.Slice(ba, 0, r), T, ir.Dim(hv)))
	g := b.DeltaNetDecay(b.Reshape(b.Slice(ba, r, r), T, ir.Dim(hv)), n.aLog, n.dtBias)

	mixed := b.Conv1DCausal(b.Concat(1, "", q, k, v), n.conv, n.convCache, true) // [T, C]
	q = b.Reshape(b.Slice(mixed, 0, hk*dk), T, ir.Dim(hk), ir.Dim(dk))
	k = b.Reshape(b.Slice(mixed, hk*dk, hk*dk), T, ir.Dim(hk), ir.Dim(dk))
	v = b.Reshape(b.Slice(mixed, 2*hk*dk, hv*dv), T, ir.Dim(hv), ir.Dim(dv))

	o := b.GatedDeltaRule(q, k, v, g, beta, n.rec, ir.DeltaRuleOpts{Scale: 1 / math.Sqrt(float64(dk)), L2Norm: true})
	o = b.Mul(b.RMSNorm(o, n.norm, cfg.Eps, false), b.SiLU(z)) // [T, Hv, dv]
	return b.MatMul(b.Reshape(o, T, ir.Dim(hv*dv)), n.out)
}

// sparseMoE is Qwen3NextSparseMoeBlock: softmax top-k routing over the
// experts (renormalised when norm_topk_prob), plus the shared SwiGLU expert
// scaled per token by sigmoid(x·w_sgᵀ).
type sparseMoE struct {
	cfg          *Config
	router       *ir.Value
	gateUp, down *ir.Value // stacked [E·2I, H] and [E·H, I] (or v5's [E, 2I, H], [E, H, I])
	shared       *nn.SwiGLU
	sharedGate   *ir.Value
}

func newSparseMoE(c *nn.Ctx, prefix string, cfg *Config, has func(string) bool) *sparseMoE {
	e, in, h := cfg.Experts, cfg.MoEIntermediate, cfg.Hidden
	m := &sparseMoE{cfg: cfg, router: c.W(prefix+"gate.weight", e, h)}
	if has != nil && has(prefix+"experts.gate_up_proj") {
		m.gateUp = c.W(prefix+"experts.gate_up_proj", e, 2*in, h)
		m.down = c.W(prefix+"experts.down_proj", e, h, in)
	} else { // hub per-expert tensors, stacked at build time
		var gu, down []*ir.Value
		for i := range e {
			ep := prefix + "experts." + strconv.Itoa(i) + "."
			gu = append(gu, c.W(ep+"gate_proj.weight", in, h), c.W(ep+"up_proj.weight", in, h))
			down = append(down, c.W(ep+"down_proj.weight", h, in))
		}
		m.gateUp = c.B.Concat(0, prefix+"experts.gate_up_proj", gu...)
		m.down = c.B.Concat(0, prefix+"experts.down_proj", down...)
	}
	if cfg.SharedIntermediate > 0 {
		m.shared = nn.NewSwiGLU(c, prefix+"shared_expert.", h, cfg.SharedIntermediate)
		m.sharedGate = c.W(prefix+"shared_expert_gate.weight", 1, h)
	}
	return m
}

func (m *sparseMoE) Forward(c *nn.Ctx, x *ir.Value) *ir.Value {
	b := c.B
	ids, w := b.Router(b.MatMul(x, m.router), nil, ir.RouterOpts{K: m.cfg.TopK, Scoring: "softmax", Normalize: m.cfg.NormTopK})
	y := b.MoE(x, ids, w, m.gateUp, m.down, m.cfg.Experts)
	if m.shared == nil {
		return y
	}
	return b.Add(y, b.MulRows(m.shared.Forward(c, x), b.Sigmoid(b.MatMul(x, m.sharedGate))))
}

// StateBytesPerSequence is the size of one sequence's state slots over all
// DeltaNet layers, in f32: the conv state [C, K−1] and the recurrent state
// [Hv, dk, dv] of each. (Full-attention layers add paged KV blocks, which
// grow with the sequence.)
func (c Config) StateBytesPerSequence() int64 {
	channels := int64(2*c.LinKeyHeads*c.LinKeyDim + c.LinValueHeads*c.LinValueDim)
	per := channels*int64(c.ConvKernel-1) + int64(c.LinValueHeads)*int64(c.LinKeyDim)*int64(c.LinValueDim)
	var n int64
	for _, t := range c.LayerTypes {
		if t == LinearAttention {
			n += 4 * per
		}
	}
	return n
}
