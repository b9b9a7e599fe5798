// Package qwen3vl builds the IR of Qwen3-VL (Qwen3VLForConditionalGeneration:
// Qwen3-VL-2B-Instruct), following transformers' modeling_qwen3_vl.py, as
// two plan stages:
//
//   - vision (once per prefill that carries images): patch embedding, the
//     bilinearly interpolated learned position embedding, pre-LN blocks with
//     2-D RoPE and attention bidirectional within each image, the patch
//     merger, and the DeepStack mergers tapped after the configured blocks;
//   - text: Qwen3's decoder with interleaved MRoPE positions i32[T, 3], the
//     merged image features placed at the <|image_pad|> rows and the
//     DeepStack features added after decoder layers 0, 1, 2.
//
// The vision stage's T is the number of merged (LLM) tokens: its inputs are
// laid out [T, merge², ...] by frontends/image.NewVisionInputs, so the
// merger is a reshape. Stage outputs feed the text stage's inputs by name.
package qwen3vl

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	"github.com/inference-pio/pio/models/nn"
	"github.com/inference-pio/pio/models/qwen3"
)

func init() { models.Register("Qwen3VLForConditionalGeneration", New) }

// TextConfig is text_config; Tied is the top level's
// tie_word_embeddings.
type TextConfig struct {
	models.TextConfig
	MRopeSection []int64 // [t, h, w] frequency slots, interleaved
}

// VisionConfig is vision_config.
type VisionConfig struct {
	Depth, Hidden, Intermediate, Heads, OutHidden       int
	PatchSize, TemporalPatchSize, MergeSize, InChannels int
	NumPositionEmbeddings                               int // a side×side learned grid
	// DeepStack is deepstack_visual_indexes as written: the vision blocks
	// whose output a DeepStack merger taps; merger k is
	// deepstack_merger_list.k for the block DeepStack[k]. The features
	// reach the text layers in block order (see DeepStackTaps).
	DeepStack []int
	RopeTheta float64
}

// DeepStackTaps returns the vision blocks that feed DeepStack feature
// j = 0, 1, ... (deepstack.<j>, added after text layer j) in transformers'
// order: the vision tower appends a feature as it walks its blocks, so the
// features come in increasing block order whatever the order of
// deepstack_visual_indexes, and block b's feature is computed by merger
// deepstack_merger_list.<k> with k the position of b in that list.
func (v VisionConfig) DeepStackTaps() []int { return slices.Sorted(slices.Values(v.DeepStack)) }

// Config is the model's configuration with its special token ids.
type Config struct {
	Text                                           TextConfig
	Vision                                         VisionConfig
	ImageToken, VideoToken, VisionStart, VisionEnd int32
}

// Model builds Qwen3-VL graphs.
type Model struct{ cfg Config }

// Config returns the validated configuration.
func (m *Model) Config() Config { return m.cfg }

// New validates c (config.json with text_config and vision_config).
func New(c *hf.Config) (models.Model, error) {
	cfg, err := ParseConfig(c)
	if err != nil {
		return nil, err
	}
	return &Model{cfg: cfg}, nil
}

// Keys classifies Qwen3VLConfig's keys (transformers 5.17): the top level
// holds the special token ids, tie_word_embeddings (which alone decides
// whether lm_head is tied) and the two sub-configs.
var Keys = models.Keys{
	Read: []string{"text_config", "vision_config", "image_token_id", "video_token_id", "vision_start_token_id",
		"vision_end_token_id", "tie_word_embeddings"},
}

// TextClass is Qwen3VLTextConfig: its keys, RoPE (interleaved MRoPE) and
// defaults. tie_word_embeddings is not a key of the class (the top level's
// decides) and is checked against the top level's; layer_types is read by
// transformers but changes nothing (it has no sliding-window attention),
// and the sliding-window keys of pre-5 configs are not read at all, so
// use_sliding_window is held to false.
var TextClass = models.Class{
	Keys: models.Keys{
		Prefix: "text_config.",
		Read: []string{"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
			"num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings"},
		Fixed: map[string][]any{"attention_bias": {false}, "hidden_act": {"silu", "swish"}, "use_sliding_window": {false}},
		Inert: []string{"layer_types", "sliding_window", "max_window_layers"},
	},
	Rope: models.RopeSpec{Prefix: "text_config.", DefaultTheta: 500000, MRope: true}, MaxPositions: 128000, Eps: 1e-6,
	GQA: &models.GQA{KVHeads: 32, NullKVHeadsIsHeads: true, HeadDim: 128},
}

// VisionKeys classifies Qwen3VLVisionConfig's keys; num_attention_heads is
// transformers' alias of num_heads, and the RoPE keys (axial RoPE over the
// patch grid) are read by models.CheckRope.
var VisionKeys = models.Keys{
	Prefix: "vision_config.",
	Read: []string{"depth", "hidden_size", "intermediate_size", "num_heads", "num_attention_heads", "in_channels",
		"patch_size", "spatial_merge_size", "temporal_patch_size", "out_hidden_size", "num_position_embeddings",
		"deepstack_visual_indexes"},
	Fixed: map[string][]any{"hidden_act": {"gelu_pytorch_tanh"}},
}

// ParseConfig reads and validates a Qwen3-VL config.json. Absent keys take
// transformers' defaults: text num_key_value_heads 32 (null:
// num_attention_heads), head_dim 128, rope_theta 500000, rms_norm_eps
// 1e-6, max_position_embeddings 128000, mrope_section [24, 20, 20]
// (interleaved: transformers 5.17 always interleaves, so an explicit
// mrope_interleaved false is refused); vision in_channels 3, patch_size
// 16, temporal_patch_size 2, spatial_merge_size 2, num_position_embeddings
// 2304, deepstack_visual_indexes [8, 16, 24], rope_theta 10000; top-level
// tie_word_embeddings false. A key that would change the math and is not
// implemented is an error naming it (see Keys, TextClass, VisionKeys).
func ParseConfig(c *hf.Config) (Config, error) {
	var cfg Config
	tc, err := c.Sub("text_config")
	if err != nil || tc == nil {
		return cfg, fmt.Errorf("config.json: text_config: missing or invalid (%v)", err)
	}
	vcRaw, err := c.Sub("vision_config")
	if err != nil || vcRaw == nil {
		return cfg, fmt.Errorf("config.json: vision_config: missing or invalid (%v)", err)
	}
	for _, k := range []struct {
		keys *models.Keys
		raw  []byte
	}{{&Keys, c.Raw}, {&VisionKeys, vcRaw.Raw}} { // text_config: parseText
		if err := k.keys.Check(k.raw); err != nil {
			return cfg, err
		}
	}
	var top struct {
		Image       *int32 `json:"image_token_id"`
		Video       *int32 `json:"video_token_id"`
		VisionStart *int32 `json:"vision_start_token_id"`
		VisionEnd   *int32 `json:"vision_end_token_id"`
		Tied        *bool  `json:"tie_word_embeddings"`
		Vision      struct {
			Depth        int    `json:"depth"`
			Hidden       int    `json:"hidden_size"`
			Intermediate int    `json:"intermediate_size"`
			Heads        int    `json:"num_heads"`
			HeadsAlias   *int   `json:"num_attention_heads"`
			OutHidden    int    `json:"out_hidden_size"`
			Patch        *int   `json:"patch_size"`
			Temporal     *int   `json:"temporal_patch_size"`
			Merge        *int   `json:"spatial_merge_size"`
			InChannels   *int   `json:"in_channels"`
			NumPos       *int   `json:"num_position_embeddings"`
			DeepStack    *[]int `json:"deepstack_visual_indexes"`
		} `json:"vision_config"`
	}
	if err := c.Decode(&top); err != nil {
		return cfg, err
	}
	if top.Image == nil || top.VisionStart == nil || top.VisionEnd == nil {
		return cfg, errors.New("config.json: image_token_id, vision_start_token_id and vision_end_token_id are required")
	}
	cfg.ImageToken, cfg.VisionStart, cfg.VisionEnd = *top.Image, *top.VisionStart, *top.VisionEnd
	if top.Video != nil {
		cfg.VideoToken = *top.Video
	}
	t, err := parseText(tc, top.Tied != nil && *top.Tied)
	if err != nil {
		return cfg, err
	}
	v := top.Vision
	or := func(p *int, def int) int {
		if p != nil {
			return *p
		}
		return def
	}
	vc := VisionConfig{Depth: v.Depth, Hidden: v.Hidden, Intermediate: v.Intermediate, Heads: or(v.HeadsAlias, v.Heads),
		OutHidden: v.OutHidden, PatchSize: or(v.Patch, 16), TemporalPatchSize: or(v.Temporal, 2), MergeSize: or(v.Merge, 2),
		InChannels: or(v.InChannels, 3), NumPositionEmbeddings: or(v.NumPos, 2304), DeepStack: []int{8, 16, 24}}
	if v.DeepStack != nil {
		vc.DeepStack = *v.DeepStack
	}
	vr := vcRaw.Rope
	if vr.Type == "axial" { // the vision tower's only RoPE (default_rope_type)
		vr.Type = "default"
	}
	if vc.RopeTheta, err = models.CheckRope(&vr, models.RopeSpec{Prefix: "vision_config.", DefaultTheta: 10000}); err != nil {
		return cfg, err
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"vision_config.depth", vc.Depth}, {"vision_config.hidden_size", vc.Hidden},
		{"vision_config.intermediate_size", vc.Intermediate}, {"vision_config.num_heads", vc.Heads},
		{"vision_config.out_hidden_size", vc.OutHidden}, {"vision_config.patch_size", vc.PatchSize},
		{"vision_config.temporal_patch_size", vc.TemporalPatchSize}, {"vision_config.spatial_merge_size", vc.MergeSize},
		{"vision_config.in_channels", vc.InChannels}, {"vision_config.num_position_embeddings", vc.NumPositionEmbeddings}} {
		if f.v <= 0 {
			return cfg, fmt.Errorf("config.json: %s must be > 0, got %d", f.name, f.v)
		}
	}
	side := int(math.Sqrt(float64(vc.NumPositionEmbeddings)))
	switch {
	case vc.Hidden%vc.Heads != 0 || (vc.Hidden/vc.Heads)%4 != 0:
		return cfg, fmt.Errorf("config.json: vision_config.hidden_size %d / num_heads %d: the head dim must be a multiple of 4 (2-D RoPE)", vc.Hidden, vc.Heads)
	case side*side != vc.NumPositionEmbeddings:
		return cfg, fmt.Errorf("config.json: vision_config.num_position_embeddings %d is not a square", vc.NumPositionEmbeddings)
	case vc.OutHidden != t.Hidden:
		return cfg, fmt.Errorf("config.json: vision_config.out_hidden_size %d != text_config.hidden_size %d", vc.OutHidden, t.Hidden)
	case len(vc.DeepStack) > t.Layers:
		return cfg, fmt.Errorf("config.json: vision_config.deepstack_visual_indexes has %d DeepStack taps but text_config has %d layers", len(vc.DeepStack), t.Layers)
	}
	for i, d := range vc.DeepStack {
		if d < 0 || d >= vc.Depth {
			return cfg, fmt.Errorf("config.json: vision_config.deepstack_visual_indexes %v: outside depth %d", vc.DeepStack, vc.Depth)
		}
		if slices.Index(vc.DeepStack, d) != i {
			// transformers would tap block d once, with the first of its mergers, and load the other unused.
			return cfg, fmt.Errorf("config.json: vision_config.deepstack_visual_indexes %v lists block %d twice", vc.DeepStack, d)
		}
	}
	cfg.Text, cfg.Vision = t, vc
	return cfg, nil
}

// parseText reads and validates text_config; tied is the top level's
// tie_word_embeddings.
func parseText(tc *hf.Config, tied bool) (TextConfig, error) {
	common, err := TextClass.Check(tc)
	if err != nil {
		return TextConfig{}, err
	}
	t := TextConfig{TextConfig: common}
	if tc.Has("tie_word_embeddings") && tc.TieWordEmbeddings != tied {
		return t, fmt.Errorf("config.json: text_config.tie_word_embeddings is %v but tie_word_embeddings is %v: transformers ties lm_head by the top-level key alone, so make them agree", tc.TieWordEmbeddings, tied)
	}
	t.Tied = tied
	if err := models.CheckSizes("text_config.", models.Size{Key: "intermediate_size", N: t.Intermediate}); err != nil {
		return t, err
	}
	sections := tc.Rope.MRopeSection
	if !tc.Rope.Has("mrope_section") {
		sections = []int{24, 20, 20} // Qwen3VLTextRotaryEmbedding's default
	}
	var sum int64
	for _, s := range sections {
		t.MRopeSection = append(t.MRopeSection, int64(s))
		sum += int64(s)
	}
	slots := int64(t.HeadDim / 2)
	where := "text_config." + tc.Rope.Source + "."
	switch {
	case tc.Rope.Has("mrope_interleaved") && !tc.Rope.MRopeInterleaved:
		return t, fmt.Errorf("config.json: %smrope_interleaved is false: only the interleaved layout is supported (transformers 5.17 interleaves whatever the key says)", where)
	case len(t.MRopeSection) != 3 || sum != slots || 3*t.MRopeSection[1] > slots || 3*t.MRopeSection[2] > slots:
		return t, fmt.Errorf("config.json: %smrope_section %v: want 3 sections (t, h, w) summing to head_dim/2 = %d, with 3·h and 3·w at most %d", where, t.MRopeSection, slots, slots)
	}
	return t, nil
}

// MaxPositions is the context limit (models.Model).
func (m *Model) MaxPositions() int { return m.cfg.Text.MaxPositions }

// Ignored: nothing in a Qwen3-VL checkpoint is skipped.
func (m *Model) Ignored(string) bool { return false }

// ErrNeedsStages is returned by Build: a Qwen3-VL engine needs two plan
// stages, which a single-graph build cannot express.
var ErrNeedsStages = errors.New("qwen3vl: the model has two plan stages (vision, text): build it through models.Staged")

// Build reports ErrNeedsStages.
func (m *Model) Build(models.BuildOptions) (*ir.Graph, error) { return nil, ErrNeedsStages }

// Vision stage inputs and outputs.
const (
	InPixels   = "pixel_values"    // f32[T, G, C·Tp·P·P]
	InPosIdx   = "pos_idx"         // i32[T, G, 4]
	InPosW     = "pos_w"           // f32[T, G, 4]
	InRoPEPos  = "vision_pos"      // i32[T, G, 2]
	InSegments = "segments"        // i32[T]
	OutImage   = "image_embeds"    // f32[T, out_hidden]
	OutDeep    = "deepstack."      // + k: f32[T, out_hidden]
	InMRoPE    = "mrope_positions" // text: i32[T, 3]
	InMask     = "image_mask"      // text: i32[T]
)

type linear struct{ w, b *ir.Value }

func newLinear(c *nn.Ctx, name string, out, in int) linear {
	return linear{c.W(name+".weight", out, in), c.W(name+".bias", out)}
}

func (l linear) forward(b *ir.Builder, x *ir.Value) *ir.Value {
	return b.BiasAdd(b.MatMul(x, l.w), l.b)
}

type layerNorm struct{ w, b *ir.Value }

func newLayerNorm(c *nn.Ctx, name string, d int) layerNorm {
	return layerNorm{c.W(name+".weight", d), c.W(name+".bias", d)}
}

func (n layerNorm) forward(b *ir.Builder, x *ir.Value) *ir.Value {
	return b.LayerNorm(x, n.w, n.b, 1e-6)
}

// merger is Qwen3VLVisionPatchMerger: LayerNorm (per patch, or after
// grouping when post is set), group merge² patches, fc1, exact GELU, fc2.
type merger struct {
	norm     layerNorm
	fc1, fc2 linear
	post     bool
}

func newMerger(c *nn.Ctx, prefix string, v VisionConfig, post bool) merger {
	g := v.MergeSize * v.MergeSize * v.Hidden
	nd := v.Hidden
	if post {
		nd = g
	}
	return merger{norm: newLayerNorm(c, prefix+"norm", nd), fc1: newLinear(c, prefix+"linear_fc1", g, g),
		fc2: newLinear(c, prefix+"linear_fc2", v.OutHidden, g), post: post}
}

// forward: x [T, G, hidden] -> [T, out_hidden].
func (m merger) forward(b *ir.Builder, x *ir.Value, g int) *ir.Value {
	if !m.post {
		x = m.norm.forward(b, x)
	}
	x = b.Reshape(x, ir.T, x.Shape[1]*x.Shape[2]) // the 2×2 block's patches side by side
	if m.post {
		x = m.norm.forward(b, x)
	}
	return m.fc2.forward(b, b.GELU(m.fc1.forward(b, x), "erf"))
}

// BuildVision returns the vision stage: inputs pixel_values, pos_idx,
// pos_w, vision_pos, segments; outputs image_embeds and deepstack.<k>
// (plus "vision.hidden" when opt.Taps).
func (m *Model) BuildVision(opt models.BuildOptions) (*ir.Graph, error) {
	v := m.cfg.Vision
	b := ir.NewBuilder("qwen3vl.vision")
	c := nn.NewCtx(b, opt)
	g := ir.Dim(v.MergeSize * v.MergeSize)
	row := v.InChannels * v.TemporalPatchSize * v.PatchSize * v.PatchSize
	hd := v.Hidden / v.Heads
	D, H, HD := ir.Dim(v.Hidden), ir.Dim(v.Heads), ir.Dim(hd)

	px := b.Input(InPixels, ir.F32, ir.T, g, ir.Dim(row))
	posIdx := b.Input(InPosIdx, ir.I32, ir.T, g, 4)
	posW := b.Input(InPosW, ir.F32, ir.T, g, 4)
	rpos := b.Input(InRoPEPos, ir.I32, ir.T, g, 2)
	seg := b.Input(InSegments, ir.I32, ir.T)

	// Conv3d with kernel = stride = (Tp, P, P) is a linear map over the (C, Tp, P, P) row.
	// The checkpoint weight is [D, C, Tp, P, P]; it is declared as the [D, C·Tp·P·P] view.
	patch := linear{c.W("model.visual.patch_embed.proj.weight", v.Hidden, row), c.W("model.visual.patch_embed.proj.bias", v.Hidden)}
	pos := c.W("model.visual.pos_embed.weight", v.NumPositionEmbeddings, v.Hidden)
	x := patch.forward(b, px)                       // [T, G, D]
	x = b.Add(x, b.WeightedRows(pos, posIdx, posW)) // + bilinear position embedding

	rope := ir.MRoPEOpts{Theta: v.RopeTheta, FreqDim: hd / 2, Sections: []int64{int64(hd / 4), int64(hd / 4)}, Layout: "chunked"}
	var outs []*ir.Value // deepstack.<j>, in block order (VisionConfig.DeepStackTaps)
	for i := 0; i < v.Depth; i++ {
		p := "model.visual.blocks." + strconv.Itoa(i) + "."
		n1, n2 := newLayerNorm(c, p+"norm1", v.Hidden), newLayerNorm(c, p+"norm2", v.Hidden)
		qkv := newLinear(c, p+"attn.qkv", 3*v.Hidden, v.Hidden)
		proj := newLinear(c, p+"attn.proj", v.Hidden, v.Hidden)
		fc1 := newLinear(c, p+"mlp.linear_fc1", v.Intermediate, v.Hidden)
		fc2 := newLinear(c, p+"mlp.linear_fc2", v.Hidden, v.Intermediate)

		t := qkv.forward(b, n1.forward(b, x)) // [T, G, 3·D]: per patch q ‖ k ‖ v, each head-major
		q := b.Reshape(b.Slice(t, 0, v.Hidden), ir.T, g, H, HD)
		k := b.Reshape(b.Slice(t, v.Hidden, v.Hidden), ir.T, g, H, HD)
		vv := b.Reshape(b.Slice(t, 2*v.Hidden, v.Hidden), ir.T, g, H, HD)
		q, k = b.MRoPE(q, rpos, rope), b.MRoPE(k, rpos, rope)
		a := b.SegmentAttention(q, k, vv, seg, 1/math.Sqrt(float64(hd)))
		x = b.Add(x, proj.forward(b, b.Reshape(a, ir.T, g, D)))
		x = b.Add(x, fc2.forward(b, b.GELU(fc1.forward(b, n2.forward(b, x)), "tanh")))
		if k := slices.Index(v.DeepStack, i); k >= 0 {
			outs = append(outs, newMerger(c, "model.visual.deepstack_merger_list."+strconv.Itoa(k)+".", v, true).forward(b, x, int(g)))
		}
	}
	if opt.Taps {
		b.Output("vision.hidden", x)
	}
	b.Output(OutImage, newMerger(c, "model.visual.merger.", v, false).forward(b, x, int(g)))
	for k, o := range outs {
		b.Output(OutDeep+strconv.Itoa(k), o)
	}
	return b.Finish()
}

// BuildText returns the text stage: inputs tokens i32[T], mrope_positions
// i32[T, 3], logit_rows i32[S], image_mask i32[T], image_embeds and
// deepstack.<k> f32[T, hidden] (rows where image_mask is 0 are ignored);
// output logits [S, vocab] (plus hidden.<i> and norm when opt.Taps; hidden.<i>
// is a layer's output before its DeepStack injection, as transformers' layer
// hooks see it).
//
// Qwen3VLTextModel is Qwen3's decoder (under model.language_model.) with
// MRoPE attention in transformers' order, the image features in place of
// their placeholder tokens' embeddings, and DeepStack feature k added to
// those rows after layer k. Its weights are declared as the layers are
// reached (nn.Decoder.Forward), the order its engines keep.
func (m *Model) BuildText(opt models.BuildOptions) (*ir.Graph, error) {
	t := m.cfg.Text
	b := ir.NewBuilder("qwen3vl.text")
	c := nn.NewCtx(b, opt)
	tokens := b.Input("tokens", ir.I32, ir.T)
	pos := b.Input(InMRoPE, ir.I32, ir.T, 3)
	rows := b.Input("logit_rows", ir.I32, ir.S)
	mask := b.Input(InMask, ir.I32, ir.T)
	img := b.Input(OutImage, ir.F32, ir.T, ir.Dim(t.Hidden))
	deep := make([]*ir.Value, len(m.cfg.Vision.DeepStack))
	for k := range deep {
		deep[k] = b.Input(OutDeep+strconv.Itoa(k), ir.F32, ir.T, ir.Dim(t.Hidden))
	}

	attn := qwen3.Attention(t.TextConfig)
	attn.LegacyOrder = false
	attn.Rotary = nn.MRoPE{Theta: t.RopeTheta, FreqDim: t.HeadDim, Sections: t.MRopeSection, Layout: "interleaved"}
	d := nn.NewDecoder(t.TextConfig, func(c *nn.Ctx, i int, p string) (nn.Mixer, nn.FFN) {
		return nn.NewAttention(c, p+"self_attn.", i, attn), nn.NewSwiGLU(c, p+"mlp.", t.Hidden, t.Intermediate)
	})
	d.Prefix = "model.language_model."
	d.Embedded = func(c *nn.Ctx, h *ir.Value) *ir.Value { return c.B.SetRows(h, img, mask) }
	d.AfterLayer = func(c *nn.Ctx, i int, h *ir.Value) *ir.Value {
		if i < len(deep) {
			return c.B.AddRows(h, deep[i], mask)
		}
		return h
	}
	d.Forward(c, tokens, pos, rows, opt)
	return b.Finish()
}
