package hf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// Config holds the config.json fields that most architectures share,
// normalised across transformers v4 and v5 spellings. A field absent from the
// file (or null) keeps its zero value unless noted; nothing is required here,
// because each model builder validates what it needs. Architecture-specific
// fields are read from Raw with Decode.
//
// Where v4 and v5 spell a field differently, both are accepted: dtype wins
// over torch_dtype, and RoPE follows transformers 5.17 (see RopeParams).
type Config struct {
	Architectures         []string
	ModelType             string
	HiddenSize            int
	IntermediateSize      int
	NumHiddenLayers       int
	NumAttentionHeads     int
	NumKeyValueHeads      int // 0 when absent; builders usually default it to NumAttentionHeads
	HeadDim               int // 0 when absent; builders usually default it to HiddenSize/NumAttentionHeads
	VocabSize             int
	MaxPositionEmbeddings int
	RMSNormEps            float64
	Rope                  RopeParams
	TieWordEmbeddings     bool
	AttentionBias         bool
	HiddenAct             string
	DType                 string // "bfloat16", "float16", "float32", ... as written
	BOSTokenID            *int
	EOSTokenIDs           []int // eos_token_id, which may be one id or a list
	PadTokenID            *int

	// Raw is the original JSON, for fields not listed above.
	Raw []byte
}

// RopeParams are the rotary position embedding parameters, gathered as
// transformers 5.17 does (PreTrainedConfig.convert_rope_params_to_dict):
// from the RoPE dict — rope_scaling (v4) or rope_parameters (v5); a config
// that sets both is an error, since transformers would silently read
// rope_scaling alone — with the top-level rope_theta and
// partial_rotary_factor used only where the dict does not set them.
type RopeParams struct {
	// Source is the key the RoPE dict was read from: "rope_scaling",
	// "rope_parameters", or "" when the config has neither (or null).
	Source string
	// Given lists, sorted, the RoPE keys the config sets (in the dict or,
	// for rope_theta and partial_rotary_factor, at the top level), so a
	// model can tell an absent key from its zero value.
	Given []string
	// Type is rope_type (or the older "type"): "default" when absent, and
	// also for the legacy "mrope", whose sections are in MRopeSection.
	Type                string
	Theta               float64 // 0 when absent
	PartialRotaryFactor float64 // fraction of head_dim rotated, in (0, 1]; 1 when absent
	Factor              float64 // scaling factor; 0 when absent
	MRopeSection        []int
	MRopeInterleaved    bool // false when absent (see Given)
	// Extra holds the other keys of the dict
	// (original_max_position_embeddings, beta_fast, ...) as decoded by
	// encoding/json; nil when there are none.
	Extra map[string]any
}

// Has reports whether the config sets the RoPE key (see Given).
func (r *RopeParams) Has(key string) bool {
	_, ok := slices.BinarySearch(r.Given, key)
	return ok
}

// ropeKeys are the rope_scaling / rope_parameters keys RopeParams names.
var ropeKeys = map[string]bool{
	"type": true, "rope_type": true, "rope_theta": true, "partial_rotary_factor": true,
	"factor": true, "mrope_section": true, "mrope_interleaved": true,
}

// ParseConfig parses the contents of a config.json.
func ParseConfig(data []byte) (*Config, error) { return parseConfig(data, "config.json") }

// LoadConfig reads and parses the config.json at path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseConfig(data, path)
}

// Decode unmarshals the original JSON into v, for architecture-specific fields.
func (c *Config) Decode(v any) error {
	if err := json.Unmarshal(c.Raw, v); err != nil {
		return fmt.Errorf("config.json: %w", err)
	}
	return nil
}

// Has reports whether the config sets key at its top level to something
// other than null: transformers gives an absent key its class default.
func (c *Config) Has(key string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(c.Raw, &m) != nil {
		return false
	}
	raw, ok := m[key]
	return ok && jsonKind(raw) != "null"
}

// Text returns the config of the text decoder, as transformers'
// get_text_config(decoder=True) does: the "text_config" object of a
// vision-language config such as Qwen3-VL's (where max_position_embeddings,
// vocab_size and the RoPE parameters live), else c itself.
func (c *Config) Text() (*Config, error) {
	t, err := c.Sub("text_config")
	if t == nil && err == nil {
		return c, nil
	}
	return t, err
}

// Sub parses the object under key, such as the "text_config" of a
// vision-language model, as a Config of its own. It returns nil, nil when key
// is absent or null.
func (c *Config) Sub(key string) (*Config, error) {
	p, err := newParser(c.Raw, "config.json")
	if err != nil {
		return nil, err
	}
	raw, ok := p.get(key)
	if !ok {
		return nil, nil
	}
	if k := jsonKind(raw); k != "object" {
		return nil, fmt.Errorf("config.json: %s: want an object, got %s", key, k)
	}
	return parseConfig(raw, "config.json: "+key)
}

func parseConfig(data []byte, file string) (*Config, error) {
	p, err := newParser(data, file)
	if err != nil {
		return nil, err
	}
	c := &Config{
		Rope: RopeParams{Type: "default", PartialRotaryFactor: 1},
		Raw:  bytes.Clone(data),
	}
	p.strings("architectures", &c.Architectures)
	p.str("model_type", &c.ModelType)
	p.int("hidden_size", &c.HiddenSize)
	p.int("intermediate_size", &c.IntermediateSize)
	p.int("num_hidden_layers", &c.NumHiddenLayers)
	p.int("num_attention_heads", &c.NumAttentionHeads)
	p.int("num_key_value_heads", &c.NumKeyValueHeads)
	p.int("head_dim", &c.HeadDim)
	p.int("vocab_size", &c.VocabSize)
	p.int("max_position_embeddings", &c.MaxPositionEmbeddings)
	p.float("rms_norm_eps", &c.RMSNormEps)
	p.bool("tie_word_embeddings", &c.TieWordEmbeddings)
	p.bool("attention_bias", &c.AttentionBias)
	p.str("hidden_act", &c.HiddenAct)
	p.str("torch_dtype", &c.DType)
	p.str("dtype", &c.DType)
	p.optInt("bos_token_id", &c.BOSTokenID)
	p.intOrInts("eos_token_id", &c.EOSTokenIDs)
	p.optInt("pad_token_id", &c.PadTokenID)

	given := map[string]bool{}
	for _, key := range []string{"rope_theta", "partial_rotary_factor"} {
		if _, ok := p.get(key); ok {
			given[key] = true
		}
	}
	p.float("rope_theta", &c.Rope.Theta)
	p.float("partial_rotary_factor", &c.Rope.PartialRotaryFactor)
	var dicts []*parser
	for _, key := range []string{"rope_scaling", "rope_parameters"} {
		if q := p.object(key); q != nil && len(q.m) > 0 { // transformers treats {} as absent
			dicts = append(dicts, q)
			c.Rope.Source = key
		}
	}
	switch {
	case p.err != nil:
	case len(dicts) == 2:
		p.err = fmt.Errorf("%s: rope_scaling and rope_parameters are both set; transformers reads only rope_scaling then, so keep one", file)
	case len(dicts) == 1:
		q := dicts[0]
		q.rope(&c.Rope)
		p.err = q.err
		for k := range q.m {
			given[k] = true
		}
	}
	c.Rope.Given = slices.Sorted(maps.Keys(given))
	if p.err == nil {
		if f := c.Rope.PartialRotaryFactor; f <= 0 || f > 1 {
			p.err = fmt.Errorf("%s: partial_rotary_factor: want a value in (0, 1], got %v", file, f)
		}
	}
	if p.err != nil {
		return nil, p.err
	}
	return c, nil
}

// GenerationConfig holds the sampling defaults of generation_config.json.
// Pointer fields are nil when the file does not set them, so callers can
// tell "absent" (use your own default; transformers' are temperature 1,
// top_p 1, top_k 50, no min_p, repetition_penalty 1) from an explicit value.
type GenerationConfig struct {
	DoSample          bool // false when absent, as in transformers
	Temperature       *float64
	TopP              *float64
	TopK              *int
	MinP              *float64
	RepetitionPenalty *float64
	EOSTokenIDs       []int // eos_token_id, one id or a list
	BOSTokenID        *int
	PadTokenID        *int

	// Raw is the original JSON, for fields not listed above.
	Raw []byte
}

// Decode unmarshals the original JSON into v, for fields not listed in
// GenerationConfig.
func (g *GenerationConfig) Decode(v any) error {
	if err := json.Unmarshal(g.Raw, v); err != nil {
		return fmt.Errorf("generation_config.json: %w", err)
	}
	return nil
}

// LoadGenerationConfig reads dir/generation_config.json. The file is
// optional: when it does not exist the result is nil, nil.
func LoadGenerationConfig(dir string) (*GenerationConfig, error) {
	path := filepath.Join(dir, "generation_config.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseGenerationConfig(data, path)
}

// ParseGenerationConfig parses the contents of a generation_config.json;
// file names it in errors.
func ParseGenerationConfig(data []byte, file string) (*GenerationConfig, error) {
	p, err := newParser(data, file)
	if err != nil {
		return nil, err
	}
	g := &GenerationConfig{Raw: bytes.Clone(data)}
	p.bool("do_sample", &g.DoSample)
	p.optFloat("temperature", &g.Temperature)
	p.optFloat("top_p", &g.TopP)
	p.optInt("top_k", &g.TopK)
	p.optFloat("min_p", &g.MinP)
	p.optFloat("repetition_penalty", &g.RepetitionPenalty)
	p.intOrInts("eos_token_id", &g.EOSTokenIDs)
	p.optInt("bos_token_id", &g.BOSTokenID)
	p.optInt("pad_token_id", &g.PadTokenID)
	if p.err != nil {
		return nil, p.err
	}
	return g, nil
}

// parser reads typed fields out of one JSON object. The first error sticks;
// later calls do nothing.
type parser struct {
	file   string // for errors: "config.json", a path, ...
	prefix string // key prefix for nested objects: "rope_scaling."
	m      map[string]json.RawMessage
	err    error
}

func newParser(data []byte, file string) (*parser, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		if _, ok := errors.AsType[*json.SyntaxError](err); ok {
			return nil, fmt.Errorf("%s: %w", file, JSONError(data, err))
		}
		if k := jsonKind(data); k != "object" {
			return nil, fmt.Errorf("%s: want a JSON object, got %s", file, k)
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if m == nil { // the literal null
		return nil, fmt.Errorf("%s: want a JSON object, got null", file)
	}
	return &parser{file: file, m: m}, nil
}

// get returns the raw value of key, with ok false when it is absent or null.
func (p *parser) get(key string) (json.RawMessage, bool) {
	raw, ok := p.m[key]
	if !ok || p.err != nil || jsonKind(raw) == "null" {
		return nil, false
	}
	return raw, true
}

func (p *parser) fail(key, format string, args ...any) {
	p.err = fmt.Errorf("%s: %s%s: %s", p.file, p.prefix, key, fmt.Sprintf(format, args...))
}

// want checks that raw is of the JSON kind want, recording an error if not.
func (p *parser) want(key string, raw json.RawMessage, want string) bool {
	if k := jsonKind(raw); k != want {
		article := "a"
		if want == "array" || want == "object" {
			article = "an"
		}
		p.fail(key, "want %s %s, got %s", article, want, k)
		return false
	}
	return true
}

func (p *parser) str(key string, dst *string) {
	if raw, ok := p.get(key); ok && p.want(key, raw, "string") {
		if err := json.Unmarshal(raw, dst); err != nil {
			p.fail(key, "%v", err)
		}
	}
}

func (p *parser) bool(key string, dst *bool) {
	if raw, ok := p.get(key); ok && p.want(key, raw, "bool") {
		*dst = raw[0] == 't'
	}
}

// number parses a non-negative, finite JSON number.
func (p *parser) number(key string, raw json.RawMessage) (float64, bool) {
	if !p.want(key, raw, "number") {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	switch {
	case err != nil || math.IsInf(f, 0) || math.IsNaN(f):
		p.fail(key, "want a finite number, got %s", raw)
		return 0, false
	case f < 0:
		p.fail(key, "must not be negative, got %s", raw)
		return 0, false
	}
	return f, true
}

// integer parses a non-negative JSON integer (1024 or 1024.0).
func (p *parser) integer(key string, raw json.RawMessage) (int, bool) {
	f, ok := p.number(key, raw)
	if !ok {
		return 0, false
	}
	if f != math.Trunc(f) || f >= 1<<63 {
		p.fail(key, "want an integer, got %s", raw)
		return 0, false
	}
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return int(n), true // exact, even above 2^53
	}
	return int(f), true
}

func (p *parser) float(key string, dst *float64) {
	if raw, ok := p.get(key); ok {
		if f, ok := p.number(key, raw); ok {
			*dst = f
		}
	}
}

func (p *parser) optFloat(key string, dst **float64) {
	if raw, ok := p.get(key); ok {
		if f, ok := p.number(key, raw); ok {
			*dst = &f
		}
	}
}

func (p *parser) int(key string, dst *int) {
	if raw, ok := p.get(key); ok {
		if n, ok := p.integer(key, raw); ok {
			*dst = n
		}
	}
}

func (p *parser) optInt(key string, dst **int) {
	if raw, ok := p.get(key); ok {
		if n, ok := p.integer(key, raw); ok {
			*dst = &n
		}
	}
}

// ints parses an array of non-negative integers.
func (p *parser) ints(key string, dst *[]int) {
	raw, ok := p.get(key)
	if !ok || !p.want(key, raw, "array") {
		return
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		p.fail(key, "%v", err)
		return
	}
	out := make([]int, len(elems))
	for i, e := range elems {
		n, ok := p.integer(fmt.Sprintf("%s[%d]", key, i), e)
		if !ok {
			return
		}
		out[i] = n
	}
	*dst = out
}

// intOrInts parses one non-negative integer or an array of them.
func (p *parser) intOrInts(key string, dst *[]int) {
	raw, ok := p.get(key)
	switch {
	case !ok:
	case jsonKind(raw) == "array":
		p.ints(key, dst)
	case jsonKind(raw) == "number":
		if n, ok := p.integer(key, raw); ok {
			*dst = []int{n}
		}
	default:
		p.fail(key, "want a number or an array of numbers, got %s", jsonKind(raw))
	}
}

func (p *parser) strings(key string, dst *[]string) {
	raw, ok := p.get(key)
	if !ok || !p.want(key, raw, "array") {
		return
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		p.fail(key, "%v", err)
		return
	}
	out := make([]string, len(elems))
	for i, e := range elems {
		k := fmt.Sprintf("%s[%d]", key, i)
		if !p.want(k, e, "string") {
			return
		}
		if err := json.Unmarshal(e, &out[i]); err != nil {
			p.fail(k, "%v", err)
			return
		}
	}
	*dst = out
}

// object returns a parser for the object under key, or nil when it is
// absent, null or not an object (the last recorded as an error).
func (p *parser) object(key string) *parser {
	raw, ok := p.get(key)
	if !ok || !p.want(key, raw, "object") {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		p.fail(key, "%v", err)
		return nil
	}
	return &parser{file: p.file, prefix: p.prefix + key + ".", m: m}
}

// rope overlays the rope_scaling / rope_parameters object p onto r.
func (p *parser) rope(r *RopeParams) {
	p.str("type", &r.Type)
	p.str("rope_type", &r.Type)
	if r.Type == "" || r.Type == "mrope" { // "mrope": Qwen2-VL's legacy name for default RoPE over sections
		r.Type = "default"
	}
	p.float("rope_theta", &r.Theta)
	p.float("partial_rotary_factor", &r.PartialRotaryFactor)
	p.float("factor", &r.Factor)
	p.ints("mrope_section", &r.MRopeSection)
	p.bool("mrope_interleaved", &r.MRopeInterleaved)
	for k, raw := range p.m {
		if ropeKeys[k] || p.err != nil {
			continue
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			p.fail(k, "%v", err)
			return
		}
		if r.Extra == nil {
			r.Extra = make(map[string]any)
		}
		r.Extra[k] = v
	}
}

// JSONError adds the position of an encoding/json syntax error in data, as
// line, column and byte offset; other errors are returned as they are.
func JSONError(data []byte, err error) error {
	se, ok := errors.AsType[*json.SyntaxError](err)
	if !ok {
		return err
	}
	off := se.Offset - 1 // Offset counts the bad byte...
	if se.Error() == "unexpected end of JSON input" {
		off = se.Offset // ...unless there is none
	}
	off = min(max(off, 0), int64(len(data)))
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := int(off) - bytes.LastIndexByte(data[:off], '\n')
	return fmt.Errorf("invalid JSON at line %d, column %d (byte offset %d): %w", line, col, off, err)
}
