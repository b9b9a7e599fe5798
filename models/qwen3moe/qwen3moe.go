// Package qwen3moe builds the IR of Qwen3-MoE (Qwen3MoeForCausalLM:
// Qwen3-Coder-30B-A3B-Instruct), following transformers'
// modeling_qwen3_moe.py: Qwen3's attention block unchanged, and a sparse
// MoE MLP (softmax router in f32, top-k, renormalised when norm_topk_prob)
// on every layer except those in mlp_only_layers or off the
// decoder_sparse_step grid, which keep a dense SwiGLU.
package qwen3moe

import (
	"fmt"
	"slices"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	"github.com/inference-pio/pio/models/nn"
	"github.com/inference-pio/pio/models/qwen3"
)

func init() { models.Register("Qwen3MoeForCausalLM", New) }

// Config is the part of config.json the model uses, validated.
type Config struct {
	models.TextConfig
	Experts, TopK, MoEIntermediate, SparseStep int
	MLPOnly                                    []int
	NormTopK                                   bool
}

// Class is transformers' Qwen3MoeConfig (5.17): its keys, RoPE and
// defaults. The sliding-window keys are read by models.CheckSlidingWindow.
// qkv_bias, use_qk_norm and shared_expert_intermediate_size come from
// Qwen's own modeling code and hub configs; transformers does not read them
// and runs the math their Fixed values describe. max_window_layers and
// layer_types are Qwen3Config keys that Qwen3MoeConfig does not have:
// nothing reads them.
var Class = models.Class{
	Keys: models.Keys{
		Read: []string{"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
			"num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings",
			"use_sliding_window", "sliding_window", "decoder_sparse_step", "moe_intermediate_size", "num_experts_per_tok",
			"num_experts", "num_local_experts", "norm_topk_prob", "mlp_only_layers"},
		Fixed: map[string][]any{"attention_bias": {false}, "hidden_act": {"silu", "swish"},
			"qkv_bias": {false}, "use_qk_norm": {true}, "shared_expert_intermediate_size": {0.0}},
		Inert: []string{"max_window_layers", "layer_types"},
	},
	Rope: models.RopeSpec{DefaultTheta: 10000}, MaxPositions: 32768, Eps: 1e-6,
	GQA: &models.GQA{KVHeads: 4},
}

// Model builds Qwen3-MoE graphs.
type Model struct{ cfg Config }

// Config returns the validated configuration.
func (m *Model) Config() Config { return m.cfg }

// New validates cfg and returns the model. Absent keys take transformers'
// Qwen3MoeConfig defaults (num_key_value_heads 4, head_dim
// hidden_size/num_attention_heads, norm_topk_prob false,
// decoder_sparse_step 1, rope_theta 10000, rms_norm_eps 1e-6,
// max_position_embeddings 32768); num_local_experts, the spelling v5
// re-saves use, wins over num_experts as in transformers. A key that would
// change the math and is not implemented is an error naming it (see Class).
func New(c *hf.Config) (models.Model, error) {
	t, err := Class.Check(c)
	if err != nil {
		return nil, err
	}
	if err := models.CheckSlidingWindow(c, false); err != nil {
		return nil, err
	}
	var x struct {
		Experts    int   `json:"num_experts"`
		LocalExp   *int  `json:"num_local_experts"` // v5 re-saves spell num_experts this way
		TopK       int   `json:"num_experts_per_tok"`
		MoEInter   int   `json:"moe_intermediate_size"`
		NormTopK   bool  `json:"norm_topk_prob"`
		SparseStep *int  `json:"decoder_sparse_step"`
		MLPOnly    []int `json:"mlp_only_layers"`
	}
	if err := c.Decode(&x); err != nil {
		return nil, err
	}
	cfg := Config{TextConfig: t, Experts: x.Experts, TopK: x.TopK, MoEIntermediate: x.MoEInter, SparseStep: 1,
		MLPOnly: x.MLPOnly, NormTopK: x.NormTopK}
	expertsKey := "num_experts"
	if x.LocalExp != nil { // the attribute num_experts maps to: set after it, so it wins
		cfg.Experts, expertsKey = *x.LocalExp, "num_local_experts"
	}
	if x.SparseStep != nil {
		cfg.SparseStep = *x.SparseStep
	}
	if err := models.CheckSizes("", models.Size{Key: expertsKey, N: cfg.Experts}, models.Size{Key: "num_experts_per_tok", N: cfg.TopK},
		models.Size{Key: "moe_intermediate_size", N: cfg.MoEIntermediate}, models.Size{Key: "decoder_sparse_step", N: cfg.SparseStep}); err != nil {
		return nil, err
	}
	for i := range cfg.Layers {
		if !cfg.sparse(i) && cfg.Intermediate <= 0 {
			return nil, fmt.Errorf("config.json: layer %d is dense but intermediate_size is %d", i, cfg.Intermediate)
		}
	}
	if cfg.TopK > cfg.Experts {
		return nil, fmt.Errorf("config.json: num_experts_per_tok %d exceeds num_experts %d", cfg.TopK, cfg.Experts)
	}
	return &Model{cfg: cfg}, nil
}

// sparse reports whether layer i has the MoE MLP (transformers' rule).
func (c *Config) sparse(i int) bool {
	return !slices.Contains(c.MLPOnly, i) && (i+1)%c.SparseStep == 0
}

// MaxPositions is the context limit (models.Model).
func (m *Model) MaxPositions() int { return m.cfg.MaxPositions }

// Ignored: Qwen3-MoE checkpoints hold nothing the model skips.
func (m *Model) Ignored(string) bool { return false }

// Build returns the graph (nn.Decoder.Build): Qwen3MoeDecoderLayer is
// Qwen3's attention and, on sparse layers, a softmax-routed MoE in place of
// the SwiGLU MLP.
func (m *Model) Build(opt models.BuildOptions) (*ir.Graph, error) {
	cfg := m.cfg
	return nn.NewDecoder(cfg.TextConfig, func(c *nn.Ctx, i int, p string) (nn.Mixer, nn.FFN) {
		attn := nn.NewAttention(c, p+"self_attn.", i, qwen3.Attention(cfg.TextConfig))
		if !cfg.sparse(i) {
			return attn, nn.NewSwiGLU(c, p+"mlp.", cfg.Hidden, cfg.Intermediate)
		}
		return attn, nn.NewMoE(c, p+"mlp.", nn.MoEConfig{
			Hidden: cfg.Hidden, Inter: cfg.MoEIntermediate, Experts: cfg.Experts,
			Router: ir.RouterOpts{K: cfg.TopK, Scoring: "softmax", Normalize: cfg.NormTopK},
		})
	}).Build("qwen3moe", opt)
}
