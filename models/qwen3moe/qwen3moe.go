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
	"strconv"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	"github.com/inference-pio/pio/models/nn"
)

func init() { models.Register("Qwen3MoeForCausalLM", New) }

// Config is the part of config.json the model uses, validated.
type Config struct {
	Hidden, Intermediate, Layers, Heads, KVHeads, HeadDim, Vocab int
	Experts, TopK, MoEIntermediate, SparseStep                   int
	MLPOnly                                                      []int
	NormTopK                                                     bool
	Eps, RopeTheta                                               float64
	Tied                                                         bool
	// MaxPositions is max_position_embeddings (transformers' default,
	// 32768, when absent): the context limit, not part of the graph.
	MaxPositions int
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
	common, err := Class.Check(c)
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
	cfg := Config{
		Hidden: c.HiddenSize, Intermediate: c.IntermediateSize, Layers: c.NumHiddenLayers,
		Heads: c.NumAttentionHeads, HeadDim: c.HeadDim, Vocab: c.VocabSize,
		Experts: x.Experts, TopK: x.TopK, MoEIntermediate: x.MoEInter, SparseStep: 1, MLPOnly: x.MLPOnly, NormTopK: x.NormTopK,
		Eps: common.Eps, RopeTheta: common.RopeTheta, Tied: c.TieWordEmbeddings, MaxPositions: common.MaxPositions,
	}
	expertsKey := "num_experts"
	if x.LocalExp != nil { // the attribute num_experts maps to: set after it, so it wins
		cfg.Experts, expertsKey = *x.LocalExp, "num_local_experts"
	}
	if x.SparseStep != nil {
		cfg.SparseStep = *x.SparseStep
	}
	if cfg.KVHeads, err = models.IntKey(c, "num_key_value_heads", 4, 0); err != nil {
		return nil, err
	}
	if cfg.HeadDim == 0 && cfg.Heads > 0 {
		cfg.HeadDim = cfg.Hidden / cfg.Heads
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"hidden_size", cfg.Hidden}, {"num_hidden_layers", cfg.Layers}, {"num_attention_heads", cfg.Heads},
		{"num_key_value_heads", cfg.KVHeads}, {"head_dim", cfg.HeadDim}, {"vocab_size", cfg.Vocab},
		{expertsKey, cfg.Experts}, {"num_experts_per_tok", cfg.TopK}, {"moe_intermediate_size", cfg.MoEIntermediate},
		{"decoder_sparse_step", cfg.SparseStep}, {"max_position_embeddings", cfg.MaxPositions}} {
		if f.v <= 0 {
			return nil, fmt.Errorf("config.json: %s must be > 0, got %d", f.name, f.v)
		}
	}
	m := &Model{cfg: cfg}
	for i := range cfg.Layers {
		if !m.sparse(i) && cfg.Intermediate <= 0 {
			return nil, fmt.Errorf("config.json: layer %d is dense but intermediate_size is %d", i, cfg.Intermediate)
		}
	}
	switch {
	case cfg.TopK > cfg.Experts:
		return nil, fmt.Errorf("config.json: num_experts_per_tok %d exceeds num_experts %d", cfg.TopK, cfg.Experts)
	case cfg.Heads%cfg.KVHeads != 0:
		return nil, fmt.Errorf("config.json: num_attention_heads %d is not a multiple of num_key_value_heads %d", cfg.Heads, cfg.KVHeads)
	case cfg.HeadDim%2 != 0:
		return nil, fmt.Errorf("config.json: head_dim %d must be even for RoPE", cfg.HeadDim)
	case !(cfg.Eps > 0):
		return nil, fmt.Errorf("config.json: rms_norm_eps must be > 0")
	}
	return m, nil
}

// sparse reports whether layer i has the MoE MLP (transformers' rule).
func (m *Model) sparse(i int) bool {
	return !slices.Contains(m.cfg.MLPOnly, i) && (i+1)%m.cfg.SparseStep == 0
}

// MaxPositions is the context limit (models.Model).
func (m *Model) MaxPositions() int { return m.cfg.MaxPositions }

// Ignored: Qwen3-MoE checkpoints hold nothing the model skips.
func (m *Model) Ignored(string) bool { return false }

type layer struct {
	inNorm, postNorm *ir.Value
	attn             *nn.Attention
	mlp              nn.FFN
}

// Build returns the graph: inputs tokens i32[T], positions i32[T],
// logit_rows i32[S]; output logits [S, vocab]. With taps it adds
// "hidden.<i>", "norm" and, per MoE layer, "router.<i>" (the chosen
// experts, i32[T, k]).
func (m *Model) Build(opt models.BuildOptions) (*ir.Graph, error) {
	cfg := m.cfg
	b := ir.NewBuilder("qwen3moe")
	c := &nn.Ctx{B: b, WDType: opt.WeightDType, Has: opt.Has}
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
			attn: nn.NewAttention(c, p+"self_attn.", i, nn.AttentionConfig{
				Hidden: cfg.Hidden, Heads: cfg.Heads, KVHeads: cfg.KVHeads, HeadDim: cfg.HeadDim,
				QKNorm: true, NormEps: cfg.Eps,
				RoPE: ir.RoPEOpts{Theta: cfg.RopeTheta, RotaryDims: cfg.HeadDim, Style: "neox"},
			}),
		}
		if m.sparse(i) {
			l.mlp = nn.NewMoE(c, p+"mlp.", nn.MoEConfig{
				Hidden: cfg.Hidden, Inter: cfg.MoEIntermediate, Experts: cfg.Experts,
				Router: ir.RouterOpts{K: cfg.TopK, Scoring: "softmax", Normalize: cfg.NormTopK},
			})
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
		h = b.Add(h, l.attn.Forward(c, b.RMSNorm(h, l.inNorm, cfg.Eps, false), pos))
		y, ids := l.mlp.Route(c, b.RMSNorm(h, l.postNorm, cfg.Eps, false))
		h = b.Add(h, y)
		if opt.Taps {
			b.Output("hidden."+strconv.Itoa(i), h)
			if ids != nil {
				b.Output("router."+strconv.Itoa(i), ids)
			}
		}
	}
	h = b.RMSNorm(h, norm, cfg.Eps, false)
	if opt.Taps {
		b.Output("norm", h)
	}
	b.Output("logits", b.MatMul(b.GatherRows(h, rows), head)) // [S, vocab]
	return b.Finish()
}
