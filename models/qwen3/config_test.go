package qwen3

import (
	"testing"

	"github.com/inference-pio/pio/models/internal/configtest"
)

var tinyDirs = []string{"../../testdata/tiny/qwen3-a", "../../testdata/tiny/qwen3-b"}

// TestShippedConfigs builds and binds the tiny checkpoints as shipped and
// checks that Keys classifies every key of their configs.
func TestShippedConfigs(t *testing.T) {
	for _, dir := range tinyDirs {
		m := configtest.Shipped(t, dir, &Class.Keys).(*Model)
		if c := m.Config(); c.MaxPositions != 512 || c.HeadDim == 0 {
			t.Errorf("%s: config %+v", dir, c)
		}
	}
}

// TestDefaults: absent keys take Qwen3Config's defaults, not values derived
// from other keys (head_dim 128, not hidden_size/num_attention_heads = 16;
// num_key_value_heads 32, or num_attention_heads when null).
func TestDefaults(t *testing.T) {
	dir := tinyDirs[0]
	m, err := New(configtest.Load(t, dir, configtest.Edit{Path: "head_dim", Value: configtest.Delete},
		configtest.Edit{Path: "num_key_value_heads", Value: nil}, configtest.Edit{Path: "max_position_embeddings", Value: configtest.Delete},
		configtest.Edit{Path: "rope_parameters.rope_theta", Value: configtest.Delete}, configtest.Edit{Path: "rms_norm_eps", Value: configtest.Delete}))
	if err != nil {
		t.Fatal(err)
	}
	c := m.(*Model).Config()
	if c.HeadDim != 128 || c.KVHeads != c.Heads || c.MaxPositions != 32768 || c.RopeTheta != 10000 || c.Eps != 1e-6 {
		t.Errorf("defaults: %+v", c)
	}
	m, err = New(configtest.Load(t, dir, configtest.Edit{Path: "num_key_value_heads", Value: configtest.Delete},
		configtest.Edit{Path: "num_attention_heads", Value: 64}))
	if err != nil {
		t.Fatal(err)
	}
	if c := m.(*Model).Config(); c.KVHeads != 32 {
		t.Errorf("absent num_key_value_heads: %d, want 32", c.KVHeads)
	}
	// layer_types may say sliding_attention: without use_sliding_window
	// transformers keeps every layer full attention.
	configtest.Builds(t, dir, configtest.Edit{Path: "layer_types", Value: []any{"full_attention", "sliding_attention", "sliding_attention"}},
		configtest.Edit{Path: "sliding_window", Value: 16})
}

// TestUnsupportedFields sets, one at a time, a field that changes the
// math to a value the builder does not implement; the build error names it.
func TestUnsupportedFields(t *testing.T) {
	configtest.Unsupported(t, tinyDirs[0], []configtest.Case{
		configtest.Set("attention_bias", true, "true"),
		configtest.Set("hidden_act", "gelu", `"gelu"`),
		configtest.Set("rope_parameters.rope_type", "yarn", `"yarn"`),
		configtest.Set("rope_parameters.factor", 4, "scaling"),
		configtest.Set("rope_parameters.original_max_position_embeddings", 256, "not supported"),
		configtest.Set("rope_parameters.mrope_section", []any{8, 4, 4}, "multimodal"),
		configtest.Set("partial_rotary_factor", 0.5, "0.5"),
		{Edits: []configtest.Edit{{Path: "use_sliding_window", Value: true}, {Path: "sliding_window", Value: 64},
			{Path: "layer_types", Value: []any{"full_attention", "sliding_attention", "full_attention"}}}, Want: "layers [1]"},
		{Edits: []configtest.Edit{{Path: "use_sliding_window", Value: true}, {Path: "sliding_window", Value: 64},
			{Path: "layer_types", Value: configtest.Delete}, {Path: "max_window_layers", Value: 2}}, Want: "layers [2]"},
		configtest.Set("layer_types", []any{"full_attention", "linear_attention", "full_attention"}, "layer_types[1]"),
		configtest.Set("layer_types", []any{"full_attention"}, "1 entries for 3 layers"),
		configtest.Set("quantization_config", map[string]any{"quant_method": "fp8"}, "quantized"),
		configtest.Set("per_layer_config", map[string]any{"0": map[string]any{}}, "per-layer"),
		{Edits: []configtest.Edit{{Path: "rope_scaling", Value: map[string]any{"rope_type": "linear", "factor": 2}}}, Want: "both set"},
	})
}
