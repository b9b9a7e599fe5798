package qwen3next

import (
	"slices"
	"testing"

	"github.com/inference-pio/pio/models/internal/configtest"
)

var tinyDirs = []string{"../../testdata/tiny/qwen3next/dense", "../../testdata/tiny/qwen3next/moe"}

// TestShippedConfigs builds and binds the tiny checkpoints as shipped and
// checks that Keys classifies every key of their configs.
func TestShippedConfigs(t *testing.T) {
	for _, dir := range tinyDirs {
		m := configtest.Shipped(t, dir, &Class.Keys).(*Model)
		// rope_parameters' partial_rotary_factor (0.5) wins over the top-level one (0.25).
		if c := m.cfg; c.RotaryDims != 8 || c.MaxPositions != 512 {
			t.Errorf("%s: config %+v", dir, c)
		}
	}
}

// TestDefaults: absent keys take Qwen3NextConfig's defaults
// (partial_rotary_factor 0.25, num_key_value_heads 2, head_dim 256), and
// legacy layer_types names are remapped as transformers does.
func TestDefaults(t *testing.T) {
	del := func(k string) configtest.Edit { return configtest.Edit{Path: k, Value: configtest.Delete} }
	cfg, err := ParseConfig(configtest.Load(t, tinyDirs[1], del("partial_rotary_factor"), del("rope_parameters.partial_rotary_factor"),
		del("num_key_value_heads"), del("head_dim"), del("max_position_embeddings"),
		configtest.Edit{Path: "layer_types", Value: []any{"mamba", "attention", "conv", "linear_attention"}}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RotaryDims != 64 || cfg.KVHeads != 2 || cfg.HeadDim != 256 || cfg.MaxPositions != 32768 ||
		!slices.Equal(cfg.LayerTypes, []string{LinearAttention, FullAttention, LinearAttention, LinearAttention}) {
		t.Errorf("defaults: %+v", cfg)
	}
}

// TestUnsupportedFields sets, one at a time, a field that changes the
// math to a value the builder does not implement; the build error names it.
func TestUnsupportedFields(t *testing.T) {
	configtest.Unsupported(t, tinyDirs[1], []configtest.Case{
		configtest.Set("attention_bias", true, "true"),
		configtest.Set("hidden_act", "gelu", `"gelu"`),
		configtest.Set("rope_parameters.rope_type", "yarn", `"yarn"`),
		configtest.Set("rope_parameters.mrope_section", []any{4, 2, 2}, "multimodal"),
		configtest.Set("layer_types", []any{"linear_attention", "sliding_attention", "linear_attention", "linear_attention"}, `"sliding_attention"`),
		configtest.Set("num_experts", configtest.Delete, "must be set"),
		configtest.Set("quantization_config", map[string]any{"quant_method": "fp8"}, "quantized"),
	})
}
