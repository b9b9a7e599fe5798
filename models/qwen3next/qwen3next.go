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
	"strings"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	"github.com/inference-pio/pio/models/nn"
	"github.com/inference-pio/pio/models/qwen3"
)

func init() { models.Register("Qwen3NextForCausalLM", New) }

// Layer kinds of layer_types.
const (
	LinearAttention = "linear_attention"
	FullAttention   = "full_attention"
)

// Config is the part of config.json the model uses, validated.
type Config struct {
	models.TextConfig
	LayerTypes []string // per layer: LinearAttention or FullAttention

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
	Rope: models.RopeSpec{DefaultTheta: 10000, Partial: true, DefaultPartial: 0.25}, MaxPositions: 32768, Eps: 1e-6,
	GQA: &models.GQA{KVHeads: 2, HeadDim: 256},
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
	text, err := Class.Check(c)
	if err != nil {
		return Config{}, err
	}
	var x extra
	if err := c.Decode(&x); err != nil {
		return Config{}, err
	}
	cfg := Config{
		TextConfig:  text,
		LinKeyHeads: x.LinKeyHeads, LinValueHeads: x.LinValueHeads, LinKeyDim: x.LinKeyDim, LinValueDim: x.LinValueDim,
		ConvKernel: x.ConvKernel, Experts: x.Experts, TopK: x.TopK, MoEIntermediate: x.MoEIntermediate,
		SharedIntermediate: x.SharedIntermediate, NormTopK: true, SparseStep: 1, MLPOnly: x.MLPOnly,
	}
	fail := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("config.json: "+format, args...)
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
	if err := models.CheckSizes("", models.Size{Key: "linear_num_key_heads", N: cfg.LinKeyHeads},
		models.Size{Key: "linear_num_value_heads", N: cfg.LinValueHeads}, models.Size{Key: "linear_key_head_dim", N: cfg.LinKeyDim},
		models.Size{Key: "linear_value_head_dim", N: cfg.LinValueDim}, models.Size{Key: "linear_conv_kernel_dim", N: cfg.ConvKernel},
		models.Size{Key: "decoder_sparse_step", N: cfg.SparseStep}); err != nil {
		return Config{}, err
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
	switch {
	case cfg.LinValueHeads%cfg.LinKeyHeads != 0:
		return fail("linear_num_value_heads %d is not a multiple of linear_num_key_heads %d", cfg.LinValueHeads, cfg.LinKeyHeads)
	case cfg.ConvKernel < 2 || cfg.ConvKernel > 64:
		return fail("linear_conv_kernel_dim %d must be in [2, 64]", cfg.ConvKernel)
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

// Build returns the graph (nn.Decoder.Build): Qwen3NextDecoderLayer is
// Gated DeltaNet or gated attention, as layer_types says, then the sparse
// MoE with its sigmoid-gated shared expert (a SwiGLU MLP on dense layers);
// every Qwen3NextRMSNorm scales by (1+w).
func (m *Model) Build(opt models.BuildOptions) (*ir.Graph, error) {
	cfg := m.cfg
	d := nn.NewDecoder(cfg.TextConfig, func(c *nn.Ctx, i int, p string) (mix nn.Mixer, ffn nn.FFN) {
		if cfg.LayerTypes[i] == FullAttention {
			mix = nn.NewAttention(c, p+"self_attn.", i, attention(cfg.TextConfig))
		} else {
			mix = newGatedDeltaNet(c, p+"linear_attn.", i, &cfg)
		}
		if !cfg.sparse(i) {
			return mix, nn.NewSwiGLU(c, p+"mlp.", cfg.Hidden, cfg.Intermediate)
		}
		return mix, nn.NewMoE(c, p+"mlp.", nn.MoEConfig{
			Hidden: cfg.Hidden, Inter: cfg.MoEIntermediate, Experts: cfg.Experts,
			Router:      ir.RouterOpts{K: cfg.TopK, Scoring: "softmax", Normalize: cfg.NormTopK},
			SharedInter: cfg.SharedIntermediate, SharedName: "shared_expert.", SharedGate: true,
		})
	})
	d.Norm.UnitOffset = true
	d.NoRouterTaps = true
	return d.Build("qwen3next", opt)
}

// attention is Qwen3NextAttention: Qwen3's, with an output gate from
// q_proj (o ⊙ sigmoid(gate) before o_proj), (1+w) q/k norms and partial
// RoPE (t.RotaryDims of each head).
func attention(t models.TextConfig) nn.AttentionConfig {
	a := qwen3.Attention(t)
	a.Gated = true
	a.Norm.UnitOffset = true
	a.LegacyOrder = false
	return a
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
	aLog, dtBias        *ir.Value
	norm                *nn.RMSNorm
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
		norm:   nn.NewRMSNorm(c, prefix+"norm.weight", dv, nn.NormOpts{Eps: cfg.Eps}),
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
	o = b.Mul(n.norm.Forward(c, o), b.SiLU(z)) // [T, Hv, dv]
	return b.MatMul(b.Reshape(o, T, ir.Dim(hv*dv)), n.out)
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
