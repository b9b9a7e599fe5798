// Package qwen3 builds the IR of the dense Qwen3 family (Qwen3ForCausalLM:
// Qwen3-0.6B, Qwen3-4B-Instruct-2507), following transformers'
// modeling_qwen3.py: pre-norm decoder layers with GQA attention, per-head
// q/k RMSNorm before rotate-half RoPE, and a SwiGLU MLP.
package qwen3

import (
	"fmt"
	"strconv"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	"github.com/inference-pio/pio/models/nn"
)

func init() { models.Register("Qwen3ForCausalLM", New) }

// Config is the part of config.json the model uses, validated.
type Config struct {
	Hidden, Intermediate, Layers, Heads, KVHeads, HeadDim, Vocab int
	Eps, RopeTheta                                               float64
	Tied                                                         bool
	// MaxPositions is max_position_embeddings (transformers' default,
	// 32768, when absent): the context limit, not part of the graph.
	MaxPositions int
}

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
}

// Model builds Qwen3 graphs.
type Model struct{ cfg Config }

// New validates cfg and returns the model. Absent keys take transformers'
// Qwen3Config defaults (num_key_value_heads 32, head_dim 128, rope_theta
// 10000, rms_norm_eps 1e-6, max_position_embeddings 32768); a key that would change the math and is
// not implemented is an error naming it (see Class).
func New(c *hf.Config) (models.Model, error) {
	common, err := Class.Check(c)
	if err != nil {
		return nil, err
	}
	if err := models.CheckSlidingWindow(c, true); err != nil {
		return nil, err
	}
	cfg := Config{
		Hidden: c.HiddenSize, Intermediate: c.IntermediateSize, Layers: c.NumHiddenLayers,
		Heads: c.NumAttentionHeads, KVHeads: c.NumKeyValueHeads, HeadDim: c.HeadDim, Vocab: c.VocabSize,
		Eps: common.Eps, RopeTheta: common.RopeTheta, Tied: c.TieWordEmbeddings, MaxPositions: common.MaxPositions,
	}
	// Qwen3Config: num_key_value_heads 32 when absent, num_attention_heads when null.
	if cfg.KVHeads, err = models.IntKey(c, "num_key_value_heads", 32, cfg.Heads); err != nil {
		return nil, err
	}
	if !c.Has("head_dim") {
		cfg.HeadDim = 128 // Qwen3Config's default, not hidden_size/num_attention_heads
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"hidden_size", cfg.Hidden}, {"intermediate_size", cfg.Intermediate}, {"num_hidden_layers", cfg.Layers},
		{"num_attention_heads", cfg.Heads}, {"num_key_value_heads", cfg.KVHeads}, {"head_dim", cfg.HeadDim}, {"vocab_size", cfg.Vocab},
		{"max_position_embeddings", cfg.MaxPositions}} {
		if f.v <= 0 {
			return nil, fmt.Errorf("config.json: %s must be > 0, got %d", f.name, f.v)
		}
	}
	switch {
	case cfg.Heads%cfg.KVHeads != 0:
		return nil, fmt.Errorf("config.json: num_attention_heads %d is not a multiple of num_key_value_heads %d", cfg.Heads, cfg.KVHeads)
	case cfg.HeadDim%2 != 0:
		return nil, fmt.Errorf("config.json: head_dim %d must be even for RoPE", cfg.HeadDim)
	case !(cfg.Eps > 0):
		return nil, fmt.Errorf("config.json: rms_norm_eps must be > 0")
	}
	return &Model{cfg: cfg}, nil
}

// Config returns the validated configuration.
func (m *Model) Config() Config { return m.cfg }

// MaxPositions is the context limit (models.Model).
func (m *Model) MaxPositions() int { return m.cfg.MaxPositions }

// Ignored: Qwen3 checkpoints hold nothing the model skips.
func (m *Model) Ignored(string) bool { return false }

type layer struct {
	inNorm, postNorm *ir.Value
	attn             *nn.Attention
	mlp              *nn.SwiGLU
}

// Build returns the graph: inputs tokens i32[T], positions i32[T],
// logit_rows i32[S]; output logits [S, vocab] (plus taps when asked).
func (m *Model) Build(opt models.BuildOptions) (*ir.Graph, error) {
	cfg := m.cfg
	b := ir.NewBuilder("qwen3")
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
		layers[i] = layer{
			inNorm:   c.W(p+"input_layernorm.weight", cfg.Hidden),
			postNorm: c.W(p+"post_attention_layernorm.weight", cfg.Hidden),
			attn: nn.NewAttention(c, p+"self_attn.", i, nn.AttentionConfig{
				Hidden: cfg.Hidden, Heads: cfg.Heads, KVHeads: cfg.KVHeads, HeadDim: cfg.HeadDim,
				QKNorm: true, NormEps: cfg.Eps,
				RoPE: ir.RoPEOpts{Theta: cfg.RopeTheta, RotaryDims: cfg.HeadDim, Style: "neox"},
			}),
			mlp: nn.NewSwiGLU(c, p+"mlp.", cfg.Hidden, cfg.Intermediate),
		}
	}
	norm := c.W("model.norm.weight", cfg.Hidden)
	// Tied embeddings: lm_head.weight when the checkpoint has it, else the embedding.
	head := embed
	if !cfg.Tied || (opt.Has != nil && opt.Has("lm_head.weight")) {
		head = c.W("lm_head.weight", cfg.Vocab, cfg.Hidden)
	}

	h := b.Embedding(embed, tokens) // [T, hidden]
	for i, l := range layers {
		h = b.Add(h, l.attn.Forward(c, b.RMSNorm(h, l.inNorm, cfg.Eps, false), pos))
		h = b.Add(h, l.mlp.Forward(c, b.RMSNorm(h, l.postNorm, cfg.Eps, false)))
		if opt.Taps {
			b.Output("hidden."+strconv.Itoa(i), h)
		}
	}
	h = b.RMSNorm(h, norm, cfg.Eps, false)
	if opt.Taps {
		b.Output("norm", h)
	}
	b.Output("logits", b.MatMul(b.GatherRows(h, rows), head)) // [S, vocab]
	return b.Finish()
}
