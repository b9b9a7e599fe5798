package qwen3moe

import (
	"testing"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/models/internal/configtest"
)

const tinyDir = "../../testdata/tiny/qwen3moe"

// hubConfig is Qwen3-Coder-30B-A3B-Instruct's config.json with the keys
// MODELS.md §3.1 lists, Qwen's own qkv_bias, use_qk_norm and
// shared_expert_intermediate_size among them.
const hubConfig = `{"architectures":["Qwen3MoeForCausalLM"],"attention_bias":false,"attention_dropout":0.0,
	"decoder_sparse_step":1,"eos_token_id":151645,"head_dim":128,"hidden_act":"silu","hidden_size":2048,
	"initializer_range":0.02,"intermediate_size":5472,"max_position_embeddings":262144,"max_window_layers":28,
	"mlp_only_layers":[],"model_type":"qwen3_moe","moe_intermediate_size":768,"norm_topk_prob":true,
	"num_attention_heads":32,"num_experts":128,"num_experts_per_tok":8,"num_hidden_layers":48,"num_key_value_heads":4,
	"output_router_logits":false,"qkv_bias":false,"rms_norm_eps":1e-06,"rope_scaling":null,"rope_theta":10000000,
	"router_aux_loss_coef":0.0,"shared_expert_intermediate_size":0,"sliding_window":null,"tie_word_embeddings":false,
	"torch_dtype":"bfloat16","transformers_version":"4.51.0","use_cache":true,"use_qk_norm":true,
	"use_sliding_window":false,"vocab_size":151936}`

// TestShippedConfig builds and binds the tiny checkpoint as shipped, reads
// num_local_experts (the v5 spelling) and checks that Keys classifies every
// key of the tiny and the real (hub) config.
func TestShippedConfig(t *testing.T) {
	m := configtest.Shipped(t, tinyDir, &Class.Keys).(*Model)
	if c := m.Config(); c.Experts != 8 || c.MaxPositions != 512 || !c.NormTopK {
		t.Errorf("config %+v", c)
	}
	configtest.Classified(t, &Class.Keys, []byte(hubConfig))
}

// TestDefaults: absent keys take Qwen3MoeConfig's defaults, and
// num_local_experts wins over num_experts as in transformers.
func TestDefaults(t *testing.T) {
	m, err := New(configtest.Load(t, tinyDir, configtest.Edit{Path: "num_key_value_heads", Value: configtest.Delete},
		configtest.Edit{Path: "head_dim", Value: configtest.Delete}, configtest.Edit{Path: "norm_topk_prob", Value: configtest.Delete},
		configtest.Edit{Path: "num_experts", Value: 4}, configtest.Edit{Path: "max_position_embeddings", Value: configtest.Delete}))
	if err != nil {
		t.Fatal(err)
	}
	if c := m.(*Model).Config(); c.KVHeads != 4 || c.HeadDim != 64/4 || c.NormTopK || c.Experts != 8 || c.MaxPositions != 32768 {
		t.Errorf("defaults: %+v", c)
	}
	// The hub config, with Qwen's own keys at the values transformers'
	// fixed math implies.
	cfg, err := hf.ParseConfig([]byte(hubConfig))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := New(cfg); err != nil {
		t.Error(err)
	} else if c := m.(*Model).Config(); c.Experts != 128 || c.MaxPositions != 262144 || c.RopeTheta != 1e7 {
		t.Errorf("hub config: %+v", c)
	}
}

// TestUnsupportedFields sets, one at a time, a field that changes the
// math to a value the builder does not implement; the build error names it.
func TestUnsupportedFields(t *testing.T) {
	configtest.Unsupported(t, tinyDir, []configtest.Case{
		configtest.Set("attention_bias", true, "true"),
		configtest.Set("hidden_act", "relu", `"relu"`),
		{Edits: []configtest.Edit{{Path: "use_sliding_window", Value: true}, {Path: "sliding_window", Value: 32}}, Want: "layers [0 1 2]"},
		configtest.Set("qkv_bias", true, "true"),
		configtest.Set("use_qk_norm", false, "false"),
		configtest.Set("shared_expert_intermediate_size", 16, "16"),
		configtest.Set("rope_parameters.rope_type", "linear", `"linear"`),
		configtest.Set("partial_rotary_factor", 0.5, "0.5"),
		configtest.Set("quantization_config", map[string]any{"quant_method": "fp8"}, "quantized"),
		configtest.Set("num_local_experts", 0, "must be > 0"),
	})
}
