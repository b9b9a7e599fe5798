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
}

// Model builds Qwen3-MoE graphs.
type Model struct{ cfg Config }

// New validates cfg and returns the model.
func New(c *hf.Config) (models.Model, error) {
	var x struct {
		Experts     int   `json:"num_experts"`
		LocalExp    int   `json:"num_local_experts"` // v5 re-saves spell num_experts this way
		TopK        int   `json:"num_experts_per_tok"`
		MoEInter    int   `json:"moe_intermediate_size"`
		NormTopK    bool  `json:"norm_topk_prob"`
		SparseStep  *int  `json:"decoder_sparse_step"`
		MLPOnly     []int `json:"mlp_only_layers"`
		Sliding     bool  `json:"use_sliding_window"`
		AttnBiasSet bool  `json:"attention_bias"`
	}
	if err := c.Decode(&x); err != nil {
		return nil, err
	}
	cfg := Config{
		Hidden: c.HiddenSize, Intermediate: c.IntermediateSize, Layers: c.NumHiddenLayers,
		Heads: c.NumAttentionHeads, KVHeads: c.NumKeyValueHeads, HeadDim: c.HeadDim, Vocab: c.VocabSize,
		Experts: x.Experts, TopK: x.TopK, MoEIntermediate: x.MoEInter, SparseStep: 1, MLPOnly: x.MLPOnly, NormTopK: x.NormTopK,
		Eps: c.RMSNormEps, RopeTheta: c.Rope.Theta, Tied: c.TieWordEmbeddings,
	}
	if cfg.Experts == 0 {
		cfg.Experts = x.LocalExp
	}
	if x.SparseStep != nil {
		cfg.SparseStep = *x.SparseStep
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
	}{{"hidden_size", cfg.Hidden}, {"num_hidden_layers", cfg.Layers}, {"num_attention_heads", cfg.Heads},
		{"num_key_value_heads", cfg.KVHeads}, {"head_dim", cfg.HeadDim}, {"vocab_size", cfg.Vocab},
		{"num_experts", cfg.Experts}, {"num_experts_per_tok", cfg.TopK}, {"moe_intermediate_size", cfg.MoEIntermediate},
		{"decoder_sparse_step", cfg.SparseStep}} {
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
	case !(cfg.RopeTheta > 0):
		return nil, fmt.Errorf("config.json: rope theta must be > 0")
	case c.Rope.Type != "" && c.Rope.Type != "default":
		return nil, fmt.Errorf("config.json: rope type %q is not supported yet (only default)", c.Rope.Type)
	case x.Sliding:
		return nil, fmt.Errorf("config.json: use_sliding_window is not supported")
	case x.AttnBiasSet:
		return nil, fmt.Errorf("config.json: attention_bias is not supported")
	}
	return m, nil
}

// sparse reports whether layer i has the MoE MLP (transformers' rule).
func (m *Model) sparse(i int) bool {
	return !slices.Contains(m.cfg.MLPOnly, i) && (i+1)%m.cfg.SparseStep == 0
}

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
