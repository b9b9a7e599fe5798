package hf

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// qwen3V4 is Qwen3-0.6B's hub config.json (MODELS.md §1.1), written by
// transformers 4.51.
const qwen3V4 = `{
  "architectures": ["Qwen3ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "head_dim": 128,
  "hidden_act": "silu",
  "hidden_size": 1024,
  "initializer_range": 0.02,
  "intermediate_size": 3072,
  "max_position_embeddings": 40960,
  "max_window_layers": 28,
  "model_type": "qwen3",
  "num_attention_heads": 16,
  "num_hidden_layers": 28,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-06,
  "rope_scaling": null,
  "rope_theta": 1000000,
  "sliding_window": null,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.51.0",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
}`

// qwen3V5 is the same model as transformers v5 re-serialises it.
const qwen3V5 = `{
  "architectures": ["Qwen3ForCausalLM"],
  "attention_bias": false,
  "bos_token_id": 151643,
  "dtype": "bfloat16",
  "eos_token_id": [151645],
  "head_dim": 128,
  "hidden_act": "silu",
  "hidden_size": 1024,
  "intermediate_size": 3072,
  "layer_types": ["full_attention", "full_attention"],
  "max_position_embeddings": 40960,
  "model_type": "qwen3",
  "num_attention_heads": 16,
  "num_hidden_layers": 28,
  "num_key_value_heads": 8,
  "pad_token_id": null,
  "rms_norm_eps": 1e-06,
  "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
  "tie_word_embeddings": true,
  "transformers_version": "5.0.0",
  "vocab_size": 151936
}`

func TestParseConfigQwen3(t *testing.T) {
	bos := 151643
	want := &Config{
		Architectures:         []string{"Qwen3ForCausalLM"},
		ModelType:             "qwen3",
		HiddenSize:            1024,
		IntermediateSize:      3072,
		NumHiddenLayers:       28,
		NumAttentionHeads:     16,
		NumKeyValueHeads:      8,
		HeadDim:               128,
		VocabSize:             151936,
		MaxPositionEmbeddings: 40960,
		RMSNormEps:            1e-6,
		Rope:                  RopeParams{Type: "default", Theta: 1e6, PartialRotaryFactor: 1},
		TieWordEmbeddings:     true,
		HiddenAct:             "silu",
		DType:                 "bfloat16",
		BOSTokenID:            &bos,
		EOSTokenIDs:           []int{151645},
	}
	for _, src := range []struct{ name, json string }{{"v4", qwen3V4}, {"v5", qwen3V5}} {
		t.Run(src.name, func(t *testing.T) {
			got, err := ParseConfig([]byte(src.json))
			if err != nil {
				t.Fatal(err)
			}
			if string(got.Raw) != src.json {
				t.Error("Raw is not the original JSON")
			}
			if diff := cmp.Diff(got, want, cmpopts.IgnoreFields(Config{}, "Raw"), cmpopts.IgnoreFields(RopeParams{}, "Source", "Given")); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
			var own struct {
				MaxWindowLayers *int     `json:"max_window_layers"`
				LayerTypes      []string `json:"layer_types"`
			}
			if err := got.Decode(&own); err != nil {
				t.Fatal(err)
			}
			if (src.name == "v4") != (own.MaxWindowLayers != nil) || (src.name == "v5") != (len(own.LayerTypes) == 2) {
				t.Errorf("Decode: got %+v", own)
			}
		})
	}
}

func TestParseConfigRope(t *testing.T) {
	tests := []struct {
		name string
		json string
		want RopeParams
	}{
		{"absent", `{}`, RopeParams{Type: "default", PartialRotaryFactor: 1}},
		{"empty dict is absent", `{"rope_scaling": {}, "rope_parameters": null}`, RopeParams{Type: "default", PartialRotaryFactor: 1}},
		{
			"qwen3-next v4", `{"rope_theta": 10000000, "partial_rotary_factor": 0.25, "rope_scaling": null}`,
			RopeParams{Given: []string{"partial_rotary_factor", "rope_theta"}, Type: "default", Theta: 1e7, PartialRotaryFactor: 0.25},
		},
		{
			"qwen3-next v5", `{"rope_parameters": {"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25}}`,
			RopeParams{Source: "rope_parameters", Given: []string{"partial_rotary_factor", "rope_theta", "rope_type"},
				Type: "default", Theta: 1e7, PartialRotaryFactor: 0.25},
		},
		{
			"qwen3-vl v4", `{"rope_theta": 5000000, "rope_scaling": {"rope_type": "default", "mrope_interleaved": true, "mrope_section": [24, 20, 20]}}`,
			RopeParams{Source: "rope_scaling", Given: []string{"mrope_interleaved", "mrope_section", "rope_theta", "rope_type"},
				Type: "default", Theta: 5e6, PartialRotaryFactor: 1, MRopeSection: []int{24, 20, 20}, MRopeInterleaved: true},
		},
		{
			"qwen3-vl v5", `{"rope_parameters": {"rope_type": "default", "rope_theta": 5000000, "mrope_interleaved": true, "mrope_section": [24, 20, 20]}}`,
			RopeParams{Source: "rope_parameters", Given: []string{"mrope_interleaved", "mrope_section", "rope_theta", "rope_type"},
				Type: "default", Theta: 5e6, PartialRotaryFactor: 1, MRopeSection: []int{24, 20, 20}, MRopeInterleaved: true},
		},
		{
			"dict beats top level", `{"rope_theta": 1e6, "partial_rotary_factor": 0.5,
				"rope_parameters": {"rope_type": "default", "rope_theta": 5e6, "partial_rotary_factor": 0.25}}`,
			RopeParams{Source: "rope_parameters", Given: []string{"partial_rotary_factor", "rope_theta", "rope_type"},
				Type: "default", Theta: 5e6, PartialRotaryFactor: 0.25},
		},
		{
			"legacy mrope", `{"rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}}`,
			RopeParams{Source: "rope_scaling", Given: []string{"mrope_section", "type"}, Type: "default", PartialRotaryFactor: 1, MRopeSection: []int{16, 24, 24}},
		},
		{
			"yarn extras", `{"rope_theta": 1e6, "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768, "beta_fast": 32}}`,
			RopeParams{Source: "rope_scaling", Given: []string{"beta_fast", "factor", "original_max_position_embeddings", "rope_theta", "type"},
				Type: "yarn", Theta: 1e6, PartialRotaryFactor: 1, Factor: 4,
				Extra: map[string]any{"original_max_position_embeddings": 32768.0, "beta_fast": 32.0}},
		},
		{
			"rope_type beats type", `{"rope_scaling": {"type": "linear", "rope_type": "dynamic", "factor": 2}}`,
			RopeParams{Source: "rope_scaling", Given: []string{"factor", "rope_type", "type"}, Type: "dynamic", PartialRotaryFactor: 1, Factor: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.json))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.Rope, tt.want); diff != "" {
				t.Errorf("Rope (-got +want):\n%s", diff)
			}
			for _, k := range tt.want.Given {
				if !c.Rope.Has(k) {
					t.Errorf("Has(%q) = false", k)
				}
			}
			if c.Rope.Has("mrope_sectio") || c.Rope.Has("zzz") {
				t.Error("Has reports a key the config does not set")
			}
		})
	}
}

func TestParseConfigFields(t *testing.T) {
	tests := []struct {
		name string
		json string
		want func(*Config) bool
	}{
		{"dtype v5 wins", `{"torch_dtype": "float16", "dtype": "bfloat16"}`, func(c *Config) bool { return c.DType == "bfloat16" }},
		{"eos list", `{"eos_token_id": [154820, 154827, 154829], "pad_token_id": 154820}`, func(c *Config) bool {
			return cmp.Equal(c.EOSTokenIDs, []int{154820, 154827, 154829}) && *c.PadTokenID == 154820 && c.BOSTokenID == nil
		}},
		{"nulls are absent", `{"eos_token_id": null, "bos_token_id": null, "head_dim": null}`, func(c *Config) bool {
			return c.EOSTokenIDs == nil && c.BOSTokenID == nil && c.HeadDim == 0
		}},
		{"integral float", `{"hidden_size": 1024.0, "vocab_size": 1e3}`, func(c *Config) bool { return c.HiddenSize == 1024 && c.VocabSize == 1000 }},
		{"unknown fields ignored", `{"foo": {"bar": [1, "x"]}, "attention_bias": true}`, func(c *Config) bool { return c.AttentionBias }},
		{"has", `{"head_dim": 0, "q_lora_rank": null}`, func(c *Config) bool {
			return c.Has("head_dim") && !c.Has("q_lora_rank") && !c.Has("absent")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.json))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(c) {
				t.Errorf("unexpected config %+v", c)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct{ json, want string }{
		{`{"hidden_size": "1024"}`, "config.json: hidden_size: want a number, got string"},
		{`{"hidden_size": 1024,}`, "config.json: invalid JSON at line 1, column 22 (byte offset 21)"},
		{"{\n  \"rms_norm_eps\": NaN}", "config.json: invalid JSON at line 2, column 19 (byte offset 20)"},
		{``, "config.json: invalid JSON"},
		{`[1]`, "config.json: want a JSON object, got array"},
		{`null`, "config.json: want a JSON object, got null"},
		{`{"num_hidden_layers": -1}`, "config.json: num_hidden_layers: must not be negative, got -1"},
		{`{"head_dim": 1.5}`, "config.json: head_dim: want an integer, got 1.5"},
		{`{"vocab_size": 1e30}`, "config.json: vocab_size: want an integer, got 1e30"},
		{`{"rms_norm_eps": 1e999}`, "config.json: rms_norm_eps: want a finite number, got 1e999"},
		{`{"rope_theta": -10000}`, "config.json: rope_theta: must not be negative"},
		{`{"tie_word_embeddings": 1}`, "config.json: tie_word_embeddings: want a bool, got number"},
		{`{"model_type": ["qwen3"]}`, "config.json: model_type: want a string, got array"},
		{`{"architectures": "Qwen3ForCausalLM"}`, "config.json: architectures: want an array, got string"},
		{`{"architectures": ["A", 1]}`, "config.json: architectures[1]: want a string, got number"},
		{`{"eos_token_id": "2"}`, "config.json: eos_token_id: want a number or an array of numbers, got string"},
		{`{"eos_token_id": [1, true]}`, "config.json: eos_token_id[1]: want a number, got bool"},
		{`{"bos_token_id": -1}`, "config.json: bos_token_id: must not be negative"},
		{`{"rope_scaling": "yarn"}`, "config.json: rope_scaling: want an object, got string"},
		{`{"rope_parameters": {"rope_theta": "1e6"}}`, "config.json: rope_parameters.rope_theta: want a number, got string"},
		{`{"rope_parameters": {"mrope_section": [24, -20, 20]}}`, "config.json: rope_parameters.mrope_section[1]: must not be negative"},
		{`{"rope_scaling": {"mrope_interleaved": "yes"}}`, "config.json: rope_scaling.mrope_interleaved: want a bool, got string"},
		{`{"partial_rotary_factor": 0}`, "config.json: partial_rotary_factor: want a value in (0, 1], got 0"},
		{`{"rope_parameters": {"partial_rotary_factor": 1.5}}`, "partial_rotary_factor: want a value in (0, 1], got 1.5"},
		{`{"rope_scaling": {"type": "linear", "factor": 2}, "rope_parameters": {"rope_type": "default"}}`,
			"config.json: rope_scaling and rope_parameters are both set"},
	}
	for _, tt := range tests {
		_, err := ParseConfig([]byte(tt.json))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseConfig(%s): err = %v\nwant it to contain %q", tt.json, err, tt.want)
		}
	}
}

func TestConfigSub(t *testing.T) {
	const vl = `{
	  "architectures": ["Qwen3VLForConditionalGeneration"],
	  "model_type": "qwen3_vl",
	  "text_config": {"hidden_size": 2048, "rope_theta": 5000000,
	    "rope_scaling": {"rope_type": "default", "mrope_interleaved": true, "mrope_section": [24, 20, 20]}},
	  "vision_config": 3
	}`
	c, err := ParseConfig([]byte(vl))
	if err != nil {
		t.Fatal(err)
	}
	text, err := c.Sub("text_config")
	if err != nil {
		t.Fatal(err)
	}
	if text.HiddenSize != 2048 || text.Rope.Theta != 5e6 || !text.Rope.MRopeInterleaved {
		t.Errorf("text_config = %+v", text)
	}
	if tc, err := c.Text(); err != nil || tc.HiddenSize != 2048 {
		t.Errorf("Text() = %+v, %v; want text_config", tc, err)
	}
	if tc, err := text.Text(); err != nil || tc != text {
		t.Errorf("Text() of a config without text_config = %p, %v; want itself (%p)", tc, err, text)
	}
	if sub, err := c.Sub("audio_config"); sub != nil || err != nil {
		t.Errorf(`Sub("audio_config") = %v, %v; want nil, nil`, sub, err)
	}
	if _, err := c.Sub("vision_config"); err == nil || !strings.Contains(err.Error(), "config.json: vision_config: want an object, got number") {
		t.Errorf(`Sub("vision_config"): err = %v`, err)
	}
	bad, _ := ParseConfig([]byte(`{"text_config": {"hidden_size": true}}`))
	if _, err := bad.Sub("text_config"); err == nil || !strings.Contains(err.Error(), "config.json: text_config: hidden_size: want a number, got bool") {
		t.Errorf("Sub of a bad text_config: err = %v", err)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	if _, err := LoadConfig(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadConfig(missing): err = %v, want fs.ErrNotExist", err)
	}
	if err := os.WriteFile(path, []byte(`{"hidden_size": "x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || !strings.HasPrefix(err.Error(), path+": hidden_size:") {
		t.Errorf("LoadConfig(bad): err = %v, want it to start with the path", err)
	}
}

func TestLoadGenerationConfig(t *testing.T) {
	dir := t.TempDir()
	g, err := LoadGenerationConfig(dir)
	if g != nil || err != nil {
		t.Fatalf("absent file: got %v, %v; want nil, nil", g, err)
	}
	// Qwen3-0.6B's generation_config.json (MODELS.md §8).
	const qwen3 = `{"bos_token_id": 151643, "do_sample": true, "eos_token_id": [151645, 151643],
		"pad_token_id": 151643, "temperature": 0.6, "top_k": 20, "top_p": 0.95, "transformers_version": "4.51.0"}`
	path := filepath.Join(dir, "generation_config.json")
	if err := os.WriteFile(path, []byte(qwen3), 0o644); err != nil {
		t.Fatal(err)
	}
	g, err = LoadGenerationConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	ptr := func(v float64) *float64 { return &v }
	iptr := func(v int) *int { return &v }
	want := &GenerationConfig{
		DoSample: true, Temperature: ptr(0.6), TopP: ptr(0.95), TopK: iptr(20),
		EOSTokenIDs: []int{151645, 151643}, BOSTokenID: iptr(151643), PadTokenID: iptr(151643),
	}
	if diff := cmp.Diff(g, want, cmpopts.IgnoreFields(GenerationConfig{}, "Raw")); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
	var extra struct {
		Version string `json:"transformers_version"`
	}
	if err := g.Decode(&extra); err != nil || extra.Version != "4.51.0" {
		t.Errorf("Decode: %+v, %v", extra, err)
	}
	if err := os.WriteFile(path, []byte(`{"top_k": "20"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadGenerationConfig(dir); err == nil || !strings.Contains(err.Error(), path+": top_k: want a number, got string") {
		t.Errorf("bad generation config: err = %v", err)
	}
}

// FuzzParseConfig checks that no input panics and that accepted configs
// hold no negative sizes.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(qwen3V4))
	f.Add([]byte(qwen3V5))
	f.Add([]byte(`{"rope_scaling": {"type": "yarn", "factor": 4, "x": [1, {"y": null}]}, "eos_token_id": [1, 2.0]}`))
	f.Add([]byte(`{"text_config": {"hidden_size": 1e3}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		for _, n := range []int{c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads,
			c.NumKeyValueHeads, c.HeadDim, c.VocabSize, c.MaxPositionEmbeddings} {
			if n < 0 {
				t.Fatalf("accepted a negative size: %+v", c)
			}
		}
		if f := c.Rope.PartialRotaryFactor; !(f > 0 && f <= 1) {
			t.Fatalf("accepted partial_rotary_factor %v", f)
		}
		c.Sub("text_config")
	})
}
