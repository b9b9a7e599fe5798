// Package glm4moelite builds the IR of GLM-4.7-Flash
// (Glm4MoeLiteForCausalLM), following transformers'
// modeling_glm4_moe_lite.py: DeepSeek-style multi-head latent attention
// (MLA) and a DeepSeek-V3-style MoE (sigmoid router with a selection-only
// e_score_correction_bias, renormalised, × routed_scaling_factor, plus an
// ungated shared expert); layers listed "dense" (the first
// first_k_dense_replace) keep a SwiGLU.
//
// Attention runs in absorbed form over a latent paged cache: per token and
// layer the cache holds the normalised c_kv [kv_lora_rank] and the rotated
// k_rope [qk_rope_head_dim] (576 values at real size), never the expanded
// K/V. W_UK (the k_nope rows of kv_b_proj) is folded into the query,
// q_lat[h] = W_UK[h]ᵀ·q_nope[h]; attention scores q_lat·c_kv + q_rope·k_rope
// scaled by 1/√(qk_nope+qk_rope); W_UV is applied after attention,
// o[h] = W_UV[h]·Σ p·c_kv. Both W_UK and W_UV are addressed as row blocks of
// the stored kv_b_proj by head_matmul, so nothing is duplicated.
//
// The multi-token-prediction layer the hub stores as model.layers.<L>.*
// (L = num_hidden_layers) is skipped by Ignored; it stays in the checkpoint
// for speculative decoding.
package glm4moelite

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	"github.com/inference-pio/pio/models/nn"
)

func init() { models.Register("Glm4MoeLiteForCausalLM", New) }

// Latent-branch RMSNorm epsilon: q_a_layernorm and kv_a_layernorm use the
// module default, not rms_norm_eps.
const latentEps = 1e-6

// Config is the part of config.json the model uses, validated. MLA has
// no GQA geometry: the embedded KVHeads, HeadDim and RotaryDims are 0.
type Config struct {
	models.TextConfig
	QRank, KVRank, NopeDim, RopeDim, VDim  int // QRank 0: no q LoRA (q_proj)
	Experts, TopK, MoEIntermediate, Shared int
	RoutedScale                            float64
	NormTopK                               bool
	Dense                                  []bool // per layer
}

// Class is transformers' Glm4MoeLiteConfig (5.17), with the DeepSeek-style
// keys of v4 hub configs: its keys, RoPE and defaults. transformers 5.17
// hard-codes sigmoid scoring with noaux_tc selection and ignores
// topk_method, scoring_func and moe_layer_freq, so they are held to what it
// computes; first_k_dense_replace is read only to check it against
// mlp_layer_types. pretraining_tp is not read by the modeling code,
// num_nextn_predict_layers counts the MTP layers that are not run (see
// Ignored), ep_size is expert parallelism.
var Class = models.Class{
	Keys: models.Keys{
		Read: []string{"vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers",
			"num_attention_heads", "num_key_value_heads", "n_shared_experts", "n_routed_experts", "num_local_experts",
			"routed_scaling_factor", "kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "head_dim", "v_head_dim",
			"qk_nope_head_dim", "qk_head_dim", "n_group", "topk_group", "num_experts_per_tok", "norm_topk_prob",
			"max_position_embeddings", "rms_norm_eps", "tie_word_embeddings", "mlp_layer_types", "first_k_dense_replace"},
		Fixed: map[string][]any{"attention_bias": {false}, "hidden_act": {"silu", "swish"}, "rope_interleave": {true},
			"topk_method": {"noaux_tc"}, "scoring_func": {"sigmoid"}, "moe_layer_freq": {1.0}},
		Inert: []string{"pretraining_tp", "num_nextn_predict_layers", "ep_size"},
	},
	Rope: models.RopeSpec{DefaultTheta: 10000}, MaxPositions: 202752, Eps: 1e-5,
}

// Model builds GLM-4.7-Flash graphs.
type Model struct{ cfg Config }

// Config returns the validated configuration.
func (m *Model) Config() Config { return m.cfg }

// New validates cfg and returns the model. Absent keys take transformers'
// Glm4MoeLiteConfig defaults (q_lora_rank 768, null: no q LoRA;
// num_key_value_heads 20, which must equal num_attention_heads;
// n_shared_experts 1, routed_scaling_factor 1.8, norm_topk_prob true,
// n_group and topk_group 1, mlp_layer_types dense then sparse, rope_theta
// 10000, rms_norm_eps 1e-5, max_position_embeddings 202752); the aliases
// num_local_experts and head_dim set n_routed_experts and qk_rope_head_dim
// as in transformers. A key that would change the math and is not
// implemented is an error naming it (see Class).
func New(c *hf.Config) (models.Model, error) {
	t, err := Class.Check(c)
	if err != nil {
		return nil, err
	}
	var x struct {
		KVRank     int      `json:"kv_lora_rank"`
		Nope       int      `json:"qk_nope_head_dim"`
		Rope       int      `json:"qk_rope_head_dim"`
		RopeAlias  *int     `json:"head_dim"`
		QKDim      *int     `json:"qk_head_dim"`
		V          int      `json:"v_head_dim"`
		Experts    int      `json:"n_routed_experts"`
		ExpAlias   *int     `json:"num_local_experts"`
		TopK       int      `json:"num_experts_per_tok"`
		MoEInter   int      `json:"moe_intermediate_size"`
		Shared     *int     `json:"n_shared_experts"`
		Scale      *float64 `json:"routed_scaling_factor"`
		NormTopK   *bool    `json:"norm_topk_prob"`
		NGroup     *int     `json:"n_group"`
		TopKGroup  *int     `json:"topk_group"`
		FirstDense *int     `json:"first_k_dense_replace"`
		LayerTypes []string `json:"mlp_layer_types"`
	}
	if err := c.Decode(&x); err != nil {
		return nil, err
	}
	cfg := Config{TextConfig: t, KVRank: x.KVRank, NopeDim: x.Nope, RopeDim: x.Rope, VDim: x.V,
		Experts: x.Experts, TopK: x.TopK, MoEIntermediate: x.MoEInter, Shared: 1, RoutedScale: 1.8, NormTopK: true}
	if cfg.QRank, err = models.IntKey(c, "q_lora_rank", 768, 0); err != nil {
		return nil, err
	}
	if c.Has("q_lora_rank") && cfg.QRank == 0 {
		return nil, fmt.Errorf("config.json: q_lora_rank must be > 0, or null for no query LoRA")
	}
	kvHeads, err := models.IntKey(c, "num_key_value_heads", 20, 0)
	if err != nil {
		return nil, err
	}
	if x.RopeAlias != nil && *x.RopeAlias != cfg.RopeDim {
		return nil, fmt.Errorf("config.json: head_dim %d (transformers' alias of qk_rope_head_dim) disagrees with qk_rope_head_dim %d", *x.RopeAlias, cfg.RopeDim)
	}
	if x.ExpAlias != nil {
		cfg.Experts = *x.ExpAlias
	}
	if x.Shared != nil {
		cfg.Shared = *x.Shared
	}
	if x.Scale != nil {
		cfg.RoutedScale = *x.Scale
	}
	if x.NormTopK != nil {
		cfg.NormTopK = *x.NormTopK
	}
	if err := models.CheckSizes("", models.Size{Key: "kv_lora_rank", N: cfg.KVRank}, models.Size{Key: "qk_nope_head_dim", N: cfg.NopeDim},
		models.Size{Key: "qk_rope_head_dim", N: cfg.RopeDim}, models.Size{Key: "v_head_dim", N: cfg.VDim}); err != nil {
		return nil, err
	}
	// Which layers are dense: mlp_layer_types, else transformers 5.17's
	// default (layer 0 only: it does not read first_k_dense_replace, so a
	// v4 config asking for another count is refused rather than guessed).
	cfg.Dense = make([]bool, cfg.Layers)
	if x.LayerTypes != nil {
		if len(x.LayerTypes) != cfg.Layers {
			return nil, fmt.Errorf("config.json: mlp_layer_types has %d entries for %d layers", len(x.LayerTypes), cfg.Layers)
		}
		for i, t := range x.LayerTypes {
			switch t {
			case "dense":
				cfg.Dense[i] = true
			case "sparse":
			default:
				return nil, fmt.Errorf("config.json: mlp_layer_types[%d] is %q, want \"dense\" or \"sparse\"", i, t)
			}
		}
	} else {
		cfg.Dense[0] = true
	}
	if x.FirstDense != nil {
		for i, d := range cfg.Dense {
			if d != (i < *x.FirstDense) {
				return nil, fmt.Errorf("config.json: first_k_dense_replace %d disagrees with the dense layers transformers builds (mlp_layer_types, default: layer 0 only); transformers 5.17 does not read it, so set mlp_layer_types", *x.FirstDense)
			}
		}
	}
	anySparse, anyDense := false, false
	for _, d := range cfg.Dense {
		anySparse, anyDense = anySparse || !d, anyDense || d
	}
	nGroup, topKGroup := 1, 1
	if x.NGroup != nil {
		nGroup = *x.NGroup
	}
	if x.TopKGroup != nil {
		topKGroup = *x.TopKGroup
	}
	switch {
	case anyDense && cfg.Intermediate <= 0:
		return nil, fmt.Errorf("config.json: intermediate_size must be > 0 for the dense layers")
	case anySparse && (cfg.Experts <= 0 || cfg.TopK <= 0 || cfg.MoEIntermediate <= 0 || cfg.TopK > cfg.Experts):
		return nil, fmt.Errorf("config.json: n_routed_experts %d, num_experts_per_tok %d, moe_intermediate_size %d do not make a MoE", cfg.Experts, cfg.TopK, cfg.MoEIntermediate)
	case cfg.Shared < 0:
		return nil, fmt.Errorf("config.json: n_shared_experts must be >= 0")
	case nGroup != topKGroup || nGroup <= 0 || (anySparse && cfg.Experts%nGroup != 0):
		// topk_group == n_group keeps every group: a no-op.
		return nil, fmt.Errorf("config.json: grouped routing (n_group %d, topk_group %d) is not supported; only topk_group == n_group, which keeps every group", nGroup, topKGroup)
	case x.QKDim != nil && *x.QKDim != cfg.NopeDim+cfg.RopeDim:
		return nil, fmt.Errorf("config.json: qk_head_dim %d is not qk_nope_head_dim + qk_rope_head_dim = %d", *x.QKDim, cfg.NopeDim+cfg.RopeDim)
	case cfg.RopeDim%2 != 0:
		return nil, fmt.Errorf("config.json: qk_rope_head_dim %d must be even", cfg.RopeDim)
	case !(cfg.RoutedScale > 0):
		return nil, fmt.Errorf("config.json: routed_scaling_factor must be > 0")
	case kvHeads != cfg.Heads:
		return nil, fmt.Errorf("config.json: num_key_value_heads %d must equal num_attention_heads %d: MLA expands keys and values per head (transformers' default is 20)", kvHeads, cfg.Heads)
	}
	return &Model{cfg: cfg}, nil
}

// MaxPositions is the context limit (models.Model).
func (m *Model) MaxPositions() int { return m.cfg.MaxPositions }

// Ignored skips the multi-token-prediction layer(s) stored after the
// decoder layers: model.layers.<i>.* with i >= num_hidden_layers.
func (m *Model) Ignored(name string) bool {
	rest, ok := strings.CutPrefix(name, "model.layers.")
	if !ok {
		return false
	}
	idx, _, ok := strings.Cut(rest, ".")
	i, err := strconv.Atoi(idx)
	return ok && err == nil && i >= m.cfg.Layers
}

// MLA is multi-head latent attention with its latent cache.
type MLA struct {
	cfg     Config
	QA, QB  *ir.Value   // q LoRA (QA nil: Q is q_proj)
	QANorm  *nn.RMSNorm // q_a_layernorm [q_lora_rank]
	Q       *ir.Value
	KVA     *ir.Value   // kv_a_proj_with_mqa [r+dr, H]
	KVANorm *nn.RMSNorm // kv_a_layernorm [r]
	KVB, O  *ir.Value   // kv_b_proj [heads·(dn+dv), r], o_proj
	Cache   int
}

func newMLA(c *nn.Ctx, p string, layer int, cfg Config) *MLA {
	a := &MLA{cfg: cfg}
	qd := cfg.NopeDim + cfg.RopeDim
	latent := nn.NormOpts{Eps: latentEps}
	if cfg.QRank > 0 {
		a.QA = c.W(p+"q_a_proj.weight", cfg.QRank, cfg.Hidden)
		a.QANorm = nn.NewRMSNorm(c, p+"q_a_layernorm.weight", cfg.QRank, latent)
		a.QB = c.W(p+"q_b_proj.weight", cfg.Heads*qd, cfg.QRank)
	} else {
		a.Q = c.W(p+"q_proj.weight", cfg.Heads*qd, cfg.Hidden)
	}
	a.KVA = c.W(p+"kv_a_proj_with_mqa.weight", cfg.KVRank+cfg.RopeDim, cfg.Hidden)
	a.KVANorm = nn.NewRMSNorm(c, p+"kv_a_layernorm.weight", cfg.KVRank, latent)
	a.KVB = c.W(p+"kv_b_proj.weight", cfg.Heads*(cfg.NopeDim+cfg.VDim), cfg.KVRank)
	a.O = c.W(p+"o_proj.weight", cfg.Hidden, cfg.Heads*cfg.VDim)
	a.Cache = c.B.Cache(ir.CacheSpec{Kind: ir.CacheLatent, Layer: layer, DType: ir.F32,
		Entries: []ir.Shape{ir.Sh(ir.Dim(cfg.KVRank)), ir.Sh(ir.Dim(cfg.RopeDim))}})
	return a
}

// Forward: x [T, hidden], pos i32[T] -> [T, hidden].
func (a *MLA) Forward(c *nn.Ctx, x, pos *ir.Value) *ir.Value {
	b, cfg := c.B, a.cfg
	h, dn, dr, r := ir.Dim(cfg.Heads), cfg.NopeDim, cfg.RopeDim, cfg.KVRank
	rope := nn.RoPE{Theta: cfg.RopeTheta, RotaryDims: dr, Style: "interleaved"}

	var q *ir.Value
	if a.QA != nil {
		q = b.MatMul(a.QANorm.Forward(c, b.MatMul(x, a.QA)), a.QB)
	} else {
		q = b.MatMul(x, a.Q)
	}
	q = b.Reshape(q, ir.T, h, ir.Dim(dn+dr))                    // [T, heads, dn+dr]
	qRope := rope.Rotate(b, b.Slice(q, dn, dr), pos)            // [T, heads, dr]
	qLat := b.HeadMatMul(b.Slice(q, 0, dn), a.KVB, 0, dn, true) // W_UKᵀ·q_nope: [T, heads, r]

	kv := b.MatMul(x, a.KVA) // [T, r+dr]
	ckv := a.KVANorm.Forward(c, b.Slice(kv, 0, r))
	kRope := b.Reshape(rope.Rotate(b, b.Reshape(b.Slice(kv, r, dr), ir.T, 1, ir.Dim(dr)), pos), ir.T, ir.Dim(dr))

	scale := 1 / math.Sqrt(float64(dn+dr))
	oLat := b.MLAAttention(qLat, qRope, ckv, kRope, a.Cache, scale) // [T, heads, r]
	o := b.HeadMatMul(oLat, a.KVB, dn, cfg.VDim, false)             // W_UV·o_lat: [T, heads, dv]
	return b.MatMul(b.Reshape(o, ir.T, h*ir.Dim(cfg.VDim)), a.O)
}

// Build returns the graph (nn.Decoder.Build): Glm4MoeLiteDecoderLayer is
// MLA and, on layers not listed dense, the DeepSeek-V3-style MoE with its
// shared expert in place of the SwiGLU MLP.
func (m *Model) Build(opt models.BuildOptions) (*ir.Graph, error) {
	cfg := m.cfg
	return nn.NewDecoder(cfg.TextConfig, func(c *nn.Ctx, i int, p string) (nn.Mixer, nn.FFN) {
		attn := newMLA(c, p+"self_attn.", i, cfg)
		if cfg.Dense[i] {
			return attn, nn.NewSwiGLU(c, p+"mlp.", cfg.Hidden, cfg.Intermediate)
		}
		return attn, nn.NewMoE(c, p+"mlp.", nn.MoEConfig{
			Hidden: cfg.Hidden, Inter: cfg.MoEIntermediate, Experts: cfg.Experts,
			Router:        ir.RouterOpts{K: cfg.TopK, Scoring: "sigmoid", Normalize: cfg.NormTopK, Scale: cfg.RoutedScale},
			SelectionBias: true,
			SharedInter:   cfg.MoEIntermediate * cfg.Shared, SharedName: "shared_experts.",
		})
	}).Build("glm4moelite", opt)
}

// CacheBytesPerToken returns the bytes one token occupies in the caches of
// all layers, for cache entries of elemBytes each: latent (what this model
// keeps) and expanded (a K/V cache of heads·(dn+dr) keys and heads·dv values).
func (m *Model) CacheBytesPerToken(elemBytes int) (latent, expanded int64) {
	cfg := m.cfg
	l := int64(cfg.Layers) * int64(elemBytes)
	return l * int64(cfg.KVRank+cfg.RopeDim), l * int64(cfg.Heads*(cfg.NopeDim+cfg.RopeDim+cfg.VDim))
}
