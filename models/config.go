package models

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/inference-pio/pio/frontends/hf"
)

// Keys classifies the keys of one config.json object — a model's top level,
// or the text_config or vision_config inside it — against transformers
// 5.17's config class for it. Every key the class defines (and every key of
// older spellings the builder reads) is in exactly one place:
//
//   - Read: read and honoured by the builder;
//   - Fixed: not implemented, so held to the values the builder computes
//     (transformers' default first); null or absent means the default;
//   - Inert (or CommonInert): does not change the forward pass.
//
// Keys the class does not define are accepted: transformers keeps them as
// attributes that its modeling code never reads, so they cannot change the
// reference output. The exceptions are Denied, keys that transformers'
// shared loading machinery acts on whatever the model.
type Keys struct {
	Prefix string // names the object in errors: "" or "text_config."
	Read   []string
	Fixed  map[string][]any // JSON values: bool, float64, string
	Inert  []string
}

// CommonInert are the keys of transformers' PreTrainedConfig and of hub
// configs that no forward pass reads: bookkeeping (architectures,
// model_type, transformers_version, _name_or_path, auto_map), the storage
// dtype (dtype, torch_dtype: the engine's dtype is pioc build's choice;
// goldens compute in f32), generation and tokenizer settings (use_cache,
// the *_token_id keys: pad_token_id only marks the embedding row that
// training leaves without gradient), training-only settings (dropout,
// initializer_range, router auxiliary loss, router logits output) and
// output switches. Architectures add their own Inert keys.
var CommonInert = []string{
	"_attn_implementation", "_commit_hash", "_name_or_path", "architectures", "attention_dropout",
	"attn_implementation", "auto_map", "bos_token_id", "chunk_size_feed_forward", "dtype", "eos_token_id",
	"experts_implementation", "id2label", "initializer_range", "is_encoder_decoder", "label2id",
	"model_type", "name_or_path", "num_labels", "output_attentions", "output_hidden_states",
	"output_router_logits", "pad_token_id", "problem_type", "return_dict", "router_aux_loss_coef",
	"tokenizer_class", "torch_dtype", "transformers_version", "use_cache",
}

// Denied are keys that change the model whatever its class, with why no
// builder accepts them.
var Denied = map[string]string{
	"quantization_config": "a pre-quantized checkpoint is not supported (build from the unquantized one; pioc build --quant quantizes it)",
	"per_layer_config":    "per-layer config overrides (transformers' heterogeneous models) are not supported",
}

// RopeKeys are the RoPE keys hf.RopeParams gathers; CheckRope classifies
// them, so they count as read.
var RopeKeys = []string{"rope_scaling", "rope_parameters", "rope_theta", "partial_rotary_factor"}

// Check returns an error naming the first key (in sorted order) of the
// JSON object raw that k refuses: a Denied key, or a Fixed key whose value
// the builder does not implement.
func (k *Keys) Check(raw []byte) error {
	m, err := object(raw)
	if err != nil {
		return fmt.Errorf("config.json: %s%v", k.Prefix, err)
	}
	for _, key := range slices.Sorted(maps.Keys(m)) {
		v := m[key]
		if isNull(v) {
			continue
		}
		if why, ok := Denied[key]; ok {
			return fmt.Errorf("config.json: %s%s is set: %s", k.Prefix, key, why)
		}
		want, ok := k.Fixed[key]
		if !ok || slices.ContainsFunc(want, func(w any) bool { return sameJSON(v, w) }) {
			continue
		}
		alts := make([]string, len(want))
		for i, w := range want {
			b, _ := json.Marshal(w)
			alts[i] = string(b)
		}
		return fmt.Errorf("config.json: %s%s is %s: not supported (only %s)", k.Prefix, key, compact(v), strings.Join(alts, " or "))
	}
	return nil
}

// Unclassified returns, sorted, the keys of the JSON object raw that k
// does not list (Read, Fixed, Inert, CommonInert, RopeKeys). They are
// accepted (see Keys); tests use this to keep the tables complete for the
// configs we ship and know.
func (k *Keys) Unclassified(raw []byte) ([]string, error) {
	m, err := object(raw)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, key := range slices.Sorted(maps.Keys(m)) {
		_, fixed := k.Fixed[key]
		if !fixed && !slices.Contains(k.Read, key) && !slices.Contains(k.Inert, key) &&
			!slices.Contains(CommonInert, key) && !slices.Contains(RopeKeys, key) {
			out = append(out, key)
		}
	}
	return out, nil
}

func object(raw []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// sameJSON reports whether the JSON value raw equals w (1 and 1.0 are the
// same number).
func sameJSON(raw json.RawMessage, w any) bool {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	a, err1 := json.Marshal(v)
	b, err2 := json.Marshal(w)
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}

func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

// Class describes one transformers config class for Check: its keys, the
// RoPE it implements, and its defaults for the keys every builder reads.
type Class struct {
	Keys         Keys
	Rope         RopeSpec
	MaxPositions int     // max_position_embeddings when absent
	Eps          float64 // rms_norm_eps when absent
	// GQA, for a class with grouped-query attention (every one but MLA),
	// gives its defaults for the attention geometry, which Check then reads
	// and checks.
	GQA *GQA
}

// GQA holds a config class's defaults for grouped-query attention.
type GQA struct {
	KVHeads int // num_key_value_heads when absent
	// NullKVHeadsIsHeads reads a null num_key_value_heads as
	// num_attention_heads (Qwen3Config's __post_init__); otherwise null is
	// refused as not > 0.
	NullKVHeadsIsHeads bool
	HeadDim            int // head_dim when absent; 0: hidden_size / num_attention_heads
}

// TextConfig is what every text decoder's config class gives its
// builder, read and checked by Class.Check with the class's defaults.
type TextConfig struct {
	Hidden, Intermediate, Layers, Heads, Vocab int
	// KVHeads, HeadDim and RotaryDims (the channels of a head RoPE
	// rotates: head_dim × partial_rotary_factor) are read for classes with
	// grouped-query attention (Class.GQA); 0 otherwise.
	KVHeads, HeadDim, RotaryDims int
	Eps, RopeTheta               float64
	Tied                         bool
	// MaxPositions is max_position_embeddings (the class's default when
	// absent): the context limit, not part of the graph.
	MaxPositions int
}

// Check refuses what the builder does not implement (Keys.Check, then
// CheckRope) and returns the text decoder's config with the class's
// defaults for absent keys. It also checks what every builder needs: the
// model's sizes (hidden_size, num_hidden_layers, num_attention_heads,
// vocab_size, max_position_embeddings; with GQA, num_key_value_heads,
// head_dim, their ratio and even rotary dims) and rms_norm_eps. Sizes only
// some layers use (intermediate_size, experts) are the builder's to check,
// with CheckSizes.
func (cl *Class) Check(c *hf.Config) (TextConfig, error) {
	if err := cl.Keys.Check(c.Raw); err != nil {
		return TextConfig{}, err
	}
	theta, err := CheckRope(&c.Rope, cl.Rope)
	if err != nil {
		return TextConfig{}, err
	}
	t := TextConfig{Hidden: c.HiddenSize, Intermediate: c.IntermediateSize, Layers: c.NumHiddenLayers,
		Heads: c.NumAttentionHeads, Vocab: c.VocabSize, Eps: c.RMSNormEps, RopeTheta: theta,
		Tied: c.TieWordEmbeddings, MaxPositions: c.MaxPositionEmbeddings}
	if !c.Has("max_position_embeddings") {
		t.MaxPositions = cl.MaxPositions
	}
	if !c.Has("rms_norm_eps") {
		t.Eps = cl.Eps
	}
	p := cl.Keys.Prefix
	sizes := []Size{{"hidden_size", t.Hidden}, {"num_hidden_layers", t.Layers}, {"num_attention_heads", t.Heads},
		{"vocab_size", t.Vocab}, {"max_position_embeddings", t.MaxPositions}}
	if g := cl.GQA; g != nil {
		null := 0
		if g.NullKVHeadsIsHeads {
			null = t.Heads
		}
		if t.KVHeads, err = intKey(c, p, "num_key_value_heads", g.KVHeads, null); err != nil {
			return t, err
		}
		t.HeadDim = c.HeadDim
		switch {
		case g.HeadDim > 0 && !c.Has("head_dim"):
			t.HeadDim = g.HeadDim // the class's default, not hidden_size/num_attention_heads
		case g.HeadDim == 0 && t.HeadDim == 0 && t.Heads > 0:
			t.HeadDim = t.Hidden / t.Heads
		}
		sizes = append(sizes, Size{"num_key_value_heads", t.KVHeads}, Size{"head_dim", t.HeadDim})
	}
	if err := CheckSizes(p, sizes...); err != nil {
		return t, err
	}
	if !(t.Eps > 0) {
		return t, fmt.Errorf("config.json: %srms_norm_eps must be > 0", p)
	}
	if cl.GQA == nil {
		return t, nil
	}
	factor := 1.0
	if cl.Rope.Partial {
		factor = cl.Rope.DefaultPartial
		if c.Rope.Has("partial_rotary_factor") {
			factor = c.Rope.PartialRotaryFactor
		}
	}
	t.RotaryDims = int(float64(t.HeadDim) * factor)
	switch {
	case t.Heads%t.KVHeads != 0:
		return t, fmt.Errorf("config.json: %snum_attention_heads %d is not a multiple of num_key_value_heads %d", p, t.Heads, t.KVHeads)
	case factor == 1 && t.HeadDim%2 != 0:
		return t, fmt.Errorf("config.json: %shead_dim %d must be even for RoPE", p, t.HeadDim)
	case t.RotaryDims <= 0 || t.RotaryDims%2 != 0:
		return t, fmt.Errorf("config.json: %srotary dims %d (head_dim × partial_rotary_factor) must be even and > 0", p, t.RotaryDims)
	}
	return t, nil
}

// Size is a config key and its value, for CheckSizes.
type Size struct {
	Key string
	N   int
}

// CheckSizes returns an error naming the first key (under prefix, "" or
// "text_config.") whose value is not > 0.
func CheckSizes(prefix string, sizes ...Size) error {
	for _, s := range sizes {
		if s.N <= 0 {
			return fmt.Errorf("config.json: %s%s must be > 0, got %d", prefix, s.Key, s.N)
		}
	}
	return nil
}

// RopeSpec says which RoPE settings an architecture implements, for
// CheckRope.
type RopeSpec struct {
	Prefix       string  // names the object in errors: "" or "text_config."
	DefaultTheta float64 // transformers' default_theta for the class, used when rope_theta is absent
	Partial      bool    // partial_rotary_factor is honoured; otherwise it must be 1
	// DefaultPartial is partial_rotary_factor when absent, where Partial
	// (Qwen3-Next: 0.25).
	DefaultPartial float64
	MRope          bool // mrope_section and mrope_interleaved are honoured; otherwise they must be absent
}

// CheckRope refuses RoPE settings an architecture does not implement —
// any rope_type but "default" (YaRN, linear, dynamic, llama3, longrope...),
// a scaling factor, keys of the RoPE dict it does not know, a partial
// rotary factor other than 1 or multimodal sections where spec does not
// allow them — naming the key, and returns rope_theta (spec.DefaultTheta
// when absent).
func CheckRope(r *hf.RopeParams, spec RopeSpec) (float64, error) {
	in := func(key string) string { // where the key was read
		if r.Source != "" && key != "partial_rotary_factor" && key != "rope_theta" {
			return spec.Prefix + r.Source + "." + key
		}
		return spec.Prefix + key
	}
	switch {
	case r.Type != "default":
		return 0, fmt.Errorf("config.json: %s is %q: not supported yet (only default RoPE)", in("rope_type"), r.Type)
	case r.Has("factor"):
		return 0, fmt.Errorf("config.json: %s is set: RoPE scaling is not supported (only default RoPE)", in("factor"))
	case len(r.Extra) > 0:
		k := slices.Sorted(maps.Keys(r.Extra))[0]
		return 0, fmt.Errorf("config.json: %s is set: not supported (default RoPE reads rope_type and rope_theta)", in(k))
	case !spec.Partial && r.PartialRotaryFactor != 1:
		return 0, fmt.Errorf("config.json: %spartial_rotary_factor is %s: not supported (this architecture rotates whole heads: 1)",
			spec.Prefix, strconv.FormatFloat(r.PartialRotaryFactor, 'g', -1, 64))
	case !spec.MRope && (r.Has("mrope_section") || r.Has("mrope_interleaved")):
		k := "mrope_section"
		if !r.Has(k) {
			k = "mrope_interleaved"
		}
		return 0, fmt.Errorf("config.json: %s is set: multimodal RoPE is not supported by this architecture", in(k))
	}
	if !r.Has("rope_theta") {
		return spec.DefaultTheta, nil
	}
	if !(r.Theta > 0) {
		return 0, fmt.Errorf("config.json: %srope_theta must be > 0, got %v", spec.Prefix, r.Theta)
	}
	return r.Theta, nil
}

// CheckSlidingWindow refuses a Qwen3-family config on which transformers
// would run sliding-window attention, naming the keys that ask for it.
// transformers keeps sliding_window (default 4096; null: none) only when
// use_sliding_window is true; Qwen3 (perLayer) then slides on the layers
// layer_types marks "sliding_attention" (by default, those from
// max_window_layers, default 28, on), Qwen3-MoE on every layer. perLayer
// also validates layer_types, which Qwen3 reads.
func CheckSlidingWindow(c *hf.Config, perLayer bool) error {
	var x struct {
		Use        bool            `json:"use_sliding_window"`
		Window     json.RawMessage `json:"sliding_window"`
		MaxWindow  *int            `json:"max_window_layers"`
		LayerTypes []string        `json:"layer_types"`
	}
	if err := c.Decode(&x); err != nil {
		return err
	}
	if perLayer && x.LayerTypes != nil {
		if len(x.LayerTypes) != c.NumHiddenLayers {
			return fmt.Errorf("config.json: layer_types has %d entries for %d layers", len(x.LayerTypes), c.NumHiddenLayers)
		}
		for i, t := range x.LayerTypes {
			if t != "full_attention" && t != "sliding_attention" {
				return fmt.Errorf("config.json: layer_types[%d] is %q: not supported (full_attention, or sliding_attention without a window)", i, t)
			}
		}
	}
	window := "4096" // the class default when the key is absent
	if x.Window != nil {
		window = compact(x.Window)
	}
	if !x.Use || window == "null" {
		return nil
	}
	var sliding []int
	for i := range c.NumHiddenLayers {
		switch {
		case !perLayer:
			sliding = append(sliding, i)
		case x.LayerTypes != nil:
			if x.LayerTypes[i] == "sliding_attention" {
				sliding = append(sliding, i)
			}
		case x.MaxWindow == nil && i >= 28, x.MaxWindow != nil && i >= *x.MaxWindow:
			sliding = append(sliding, i)
		}
	}
	if len(sliding) == 0 {
		return nil
	}
	return fmt.Errorf("config.json: use_sliding_window is true with sliding_window %s: sliding-window attention (layers %v) is not supported", window, sliding)
}

// IntKey is an integer key as transformers' config class leaves it: the
// config's value when set, absent (the class default) when the key is not
// there, and null when it is null (what the class's __post_init__ puts in
// place of None; 0 where None would break transformers too, so that the
// builder's "must be > 0" check names the key).
func IntKey(c *hf.Config, key string, absent, null int) (int, error) {
	return intKey(c, "", key, absent, null)
}

// intKey is IntKey for the object under prefix ("" or "text_config."),
// which errors name.
func intKey(c *hf.Config, prefix, key string, absent, null int) (int, error) {
	m, err := object(c.Raw)
	if err != nil {
		return 0, fmt.Errorf("config.json: %s%v", prefix, err)
	}
	raw, ok := m[key]
	switch {
	case !ok:
		return absent, nil
	case isNull(raw):
		return null, nil
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
	if err != nil {
		var f float64
		if json.Unmarshal(raw, &f) != nil || f != float64(int64(f)) {
			return 0, fmt.Errorf("config.json: %s%s: want an integer, got %s", prefix, key, compact(raw))
		}
		n = int64(f)
	}
	return int(n), nil
}
