package nn

import (
	"strconv"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
)

// Mixer is a decoder layer's token mixer: attention, MLA or Gated DeltaNet.
type Mixer interface {
	// Forward: x [T, hidden], pos (the graph's positions) -> [T, hidden].
	Forward(c *Ctx, x, pos *ir.Value) *ir.Value
}

// FFN is a decoder layer's MLP: dense (SwiGLU) or sparse (MoE).
type FFN interface {
	// Route: x [T, hidden] -> y [T, hidden], and for a sparse block the
	// chosen experts i32[T, k] (nil for a dense one).
	Route(c *Ctx, x *ir.Value) (y, ids *ir.Value)
}

// Layer is one pre-norm decoder layer:
// h += Mixer(InNorm(h)); h += FFN(PostNorm(h)).
type Layer struct {
	InNorm, PostNorm *RMSNorm // input_layernorm, post_attention_layernorm
	Mixer            Mixer
	FFN              FFN
}

// Forward: h [T, hidden] -> [T, hidden], and the experts the FFN chose
// (nil for a dense one).
func (l *Layer) Forward(c *Ctx, h, pos *ir.Value) (out, ids *ir.Value) {
	b := c.B
	h = b.Add(h, l.Mixer.Forward(c, l.InNorm.Forward(c, h), pos))
	y, ids := l.FFN.Route(c, l.PostNorm.Forward(c, h))
	return b.Add(h, y), ids
}

// Decoder is the decoder-only transformer every text model here is
// (transformers' <Arch>Model under its <Arch>ForCausalLM head):
// embed_tokens, Layers pre-norm layers, the final norm and lm_head, tied
// to the embedding when Tied and the checkpoint does not store lm_head. A
// model gives its sizes and NewLayer, which chooses each layer's mixer and
// FFN. A Decoder builds one graph.
type Decoder struct {
	Prefix                string // of the decoder's weights: "model." (Qwen3-VL: "model.language_model.")
	Vocab, Hidden, Layers int
	Norm                  NormOpts // every layer's norms and the final norm
	Tied                  bool     // tie_word_embeddings
	// NewLayer declares layer i's token mixer and FFN under prefix
	// ("model.layers.<i>.").
	NewLayer func(c *Ctx, i int, prefix string) (Mixer, FFN)
	// NoRouterTaps leaves the router.<i> taps out (Qwen3-Next, whose
	// goldens hold no router choices).
	NoRouterTaps bool

	// Stage hooks (Qwen3-VL's text stage), nil where unused. Embedded
	// rewrites the embeddings [T, hidden] before layer 0; AfterLayer
	// rewrites layer i's output after its tap.
	Embedded   func(c *Ctx, h *ir.Value) *ir.Value
	AfterLayer func(c *Ctx, i int, h *ir.Value) *ir.Value

	embed, head *ir.Value
	layers      []*Layer
	norm        *RMSNorm
}

// NewDecoder returns the decoder t describes: weights under "model.",
// RMSNorms of t's eps, lm_head tied as t says, layers from newLayer.
func NewDecoder(t models.TextConfig, newLayer func(c *Ctx, i int, prefix string) (Mixer, FFN)) *Decoder {
	return &Decoder{Prefix: "model.", Vocab: t.Vocab, Hidden: t.Hidden, Layers: t.Layers,
		Norm: NormOpts{Eps: t.Eps}, Tied: t.Tied, NewLayer: newLayer}
}

// Build returns the graph called name: inputs tokens i32[T], positions
// i32[T], logit_rows i32[S]; output logits [S, vocab], and with opt.Taps
// "hidden.<i>" (layer i's output), "norm" and, per sparse layer,
// "router.<i>" (the chosen experts, i32[T, k]). Every weight is declared
// before the first step.
func (d *Decoder) Build(name string, opt models.BuildOptions) (*ir.Graph, error) {
	b := ir.NewBuilder(name)
	c := NewCtx(b, opt)
	tokens := b.Input("tokens", ir.I32, ir.T)
	pos := b.Input("positions", ir.I32, ir.T)
	rows := b.Input("logit_rows", ir.I32, ir.S)
	d.Declare(c)
	d.Forward(c, tokens, pos, rows, opt)
	return b.Finish()
}

// Declare declares every weight and cache: the embedding, each layer's,
// the final norm's and lm_head.
func (d *Decoder) Declare(c *Ctx) {
	d.embedding(c)
	for i := range d.Layers {
		d.layer(c, i)
	}
	d.finalNorm(c)
	d.lmHead(c)
}

// Forward outputs the logits [S, vocab] of rows i32[S] for tokens i32[T]
// at positions pos (taps: see Build). Each weight Declare has not declared
// is declared just before its first use, so a stage that skips Declare
// interleaves each layer's weights with its steps (Qwen3-VL's text stage,
// whose engines keep that order).
func (d *Decoder) Forward(c *Ctx, tokens, pos, rows *ir.Value, opt models.BuildOptions) {
	b := c.B
	h := b.Embedding(d.embedding(c), tokens) // [T, hidden]
	if d.Embedded != nil {
		h = d.Embedded(c, h)
	}
	for i := range d.Layers {
		var ids *ir.Value
		h, ids = d.layer(c, i).Forward(c, h, pos)
		if opt.Taps {
			b.Output("hidden."+strconv.Itoa(i), h)
			if ids != nil && !d.NoRouterTaps {
				b.Output("router."+strconv.Itoa(i), ids)
			}
		}
		if d.AfterLayer != nil {
			h = d.AfterLayer(c, i, h)
		}
	}
	h = d.finalNorm(c).Forward(c, h)
	if opt.Taps {
		b.Output("norm", h)
	}
	head := d.lmHead(c)
	b.Output("logits", b.MatMul(b.GatherRows(h, rows), head)) // [S, vocab]
}

func (d *Decoder) embedding(c *Ctx) *ir.Value {
	if d.embed == nil {
		d.embed = c.W(d.Prefix+"embed_tokens.weight", d.Vocab, d.Hidden)
	}
	return d.embed
}

func (d *Decoder) layer(c *Ctx, i int) *Layer {
	if d.layers == nil {
		d.layers = make([]*Layer, d.Layers)
	}
	if d.layers[i] == nil {
		p := d.Prefix + "layers." + strconv.Itoa(i) + "."
		l := &Layer{
			InNorm:   NewRMSNorm(c, p+"input_layernorm.weight", d.Hidden, d.Norm),
			PostNorm: NewRMSNorm(c, p+"post_attention_layernorm.weight", d.Hidden, d.Norm),
		}
		l.Mixer, l.FFN = d.NewLayer(c, i, p)
		d.layers[i] = l
	}
	return d.layers[i]
}

func (d *Decoder) finalNorm(c *Ctx) *RMSNorm {
	if d.norm == nil {
		d.norm = NewRMSNorm(c, d.Prefix+"norm.weight", d.Hidden, d.Norm)
	}
	return d.norm
}

// lmHead is lm_head.weight [vocab, hidden]; when tied, the embedding
// unless the checkpoint stores lm_head anyway.
func (d *Decoder) lmHead(c *Ctx) *ir.Value {
	if d.head == nil {
		d.head = d.embedding(c)
		if !d.Tied || c.has("lm_head.weight") {
			d.head = c.W("lm_head.weight", d.Vocab, d.Hidden)
		}
	}
	return d.head
}
