// Package qwen3 builds the IR of the dense Qwen3 family (Qwen3ForCausalLM:
// Qwen3-0.6B, Qwen3-4B-Instruct-2507), following transformers'
// modeling_qwen3.py: pre-norm decoder layers with GQA attention, per-head
// q/k RMSNorm before rotate-half RoPE, and a SwiGLU MLP.
package qwen3

import (
	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	"github.com/inference-pio/pio/models/nn"
)

func init() { models.Register("Qwen3ForCausalLM", New) }

// Config is the part of config.json the model uses, validated.
type Config struct{ models.TextConfig }

// Class is transformers' Qwen3Config (5.17): its keys (the sliding-window
// keys and layer_types are read by models.CheckSlidingWindow), RoPE and
// defaults.
var Class = models.Class{
	Keys: models.Keys{
		Read: []string{"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
			"num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings",
			"use_sliding_window", "sliding_window", "max_window_layers", "layer_types"},
		Fixed: map[string][]any{"attention_bias": {false}, "hidden_act": {"silu", "swish"}},
	},
	Rope: models.RopeSpec{DefaultTheta: 10000}, MaxPositions: 32768, Eps: 1e-6,
	GQA: &models.GQA{KVHeads: 32, NullKVHeadsIsHeads: true, HeadDim: 128},
}

// Model builds Qwen3 graphs.
type Model struct{ cfg Config }

// New validates cfg and returns the model. Absent keys take transformers'
// Qwen3Config defaults (num_key_value_heads 32, head_dim 128 — not
// hidden_size/num_attention_heads —, rope_theta 10000, rms_norm_eps 1e-6,
// max_position_embeddings 32768); a key that would change the math and is
// not implemented is an error naming it (see Class).
func New(c *hf.Config) (models.Model, error) {
	t, err := Class.Check(c)
	if err != nil {
		return nil, err
	}
	if err := models.CheckSlidingWindow(c, true); err != nil {
		return nil, err
	}
	if err := models.CheckSizes("", models.Size{Key: "intermediate_size", N: t.Intermediate}); err != nil {
		return nil, err
	}
	return &Model{cfg: Config{t}}, nil
}

// Config returns the validated configuration.
func (m *Model) Config() Config { return m.cfg }

// MaxPositions is the context limit (models.Model).
func (m *Model) MaxPositions() int { return m.cfg.MaxPositions }

// Ignored: Qwen3 checkpoints hold nothing the model skips.
func (m *Model) Ignored(string) bool { return false }

// Attention is Qwen3Attention: GQA with per-head q/k RMSNorm and
// rotate-half RoPE over whole heads.
func Attention(t models.TextConfig) nn.AttentionConfig {
	return nn.AttentionConfig{Hidden: t.Hidden, Heads: t.Heads, KVHeads: t.KVHeads, HeadDim: t.HeadDim,
		QKNorm: true, Norm: nn.NormOpts{Eps: t.Eps}, LegacyOrder: true,
		Rotary: nn.RoPE{Theta: t.RopeTheta, RotaryDims: t.RotaryDims, Style: "neox"}}
}

// Build returns the graph (nn.Decoder.Build): Qwen3DecoderLayer is
// self-attention and a SwiGLU MLP.
func (m *Model) Build(opt models.BuildOptions) (*ir.Graph, error) {
	t := m.cfg.TextConfig
	return nn.NewDecoder(t, func(c *nn.Ctx, i int, p string) (nn.Mixer, nn.FFN) {
		return nn.NewAttention(c, p+"self_attn.", i, Attention(t)), nn.NewSwiGLU(c, p+"mlp.", t.Hidden, t.Intermediate)
	}).Build("qwen3", opt)
}
