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
}

// Model builds Qwen3 graphs.
type Model struct{ cfg Config }

// New validates cfg and returns the model.
func New(c *hf.Config) (models.Model, error) {
	cfg := Config{
		Hidden: c.HiddenSize, Intermediate: c.IntermediateSize, Layers: c.NumHiddenLayers,
		Heads: c.NumAttentionHeads, KVHeads: c.NumKeyValueHeads, HeadDim: c.HeadDim, Vocab: c.VocabSize,
		Eps: c.RMSNormEps, RopeTheta: c.Rope.Theta, Tied: c.TieWordEmbeddings,
	}
	if cfg.KVHeads == 0 {
		cfg.KVHeads = cfg.Heads
	}
	if cfg.HeadDim == 0 && cfg.Heads > 0 {
		cfg.HeadDim = cfg.Hidden / cfg.Heads
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"hidden_size", cfg.Hidden}, {"intermediate_size", cfg.Intermediate}, {"num_hidden_layers", cfg.Layers},
		{"num_attention_heads", cfg.Heads}, {"num_key_value_heads", cfg.KVHeads}, {"head_dim", cfg.HeadDim}, {"vocab_size", cfg.Vocab}} {
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
	case !(cfg.RopeTheta > 0):
		return nil, fmt.Errorf("config.json: rope theta must be > 0")
	case c.Rope.Type != "" && c.Rope.Type != "default":
		return nil, fmt.Errorf("config.json: rope type %q is not supported yet (only default)", c.Rope.Type)
	}
	return &Model{cfg: cfg}, nil
}

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
