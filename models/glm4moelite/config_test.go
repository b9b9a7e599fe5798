package glm4moelite

import (
	"testing"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/models/internal/configtest"
)

const tinyDir = "../../testdata/tiny/glm4moelite"

// hubConfig is GLM-4.7-Flash's config.json with the keys MODELS.md §5.1
// lists (v4 spellings: first_k_dense_replace, topk_method, rope_theta).
const hubConfig = `{"architectures":["Glm4MoeLiteForCausalLM"],"attention_bias":false,"attention_dropout":0.0,
	"dtype":"bfloat16","eos_token_id":[154820,154827,154829],"first_k_dense_replace":1,"hidden_act":"silu",
	"hidden_size":2048,"intermediate_size":10240,"kv_lora_rank":512,"max_position_embeddings":202752,
	"model_type":"glm4_moe_lite","moe_intermediate_size":1536,"n_group":1,"n_routed_experts":64,"n_shared_experts":1,
	"norm_topk_prob":true,"num_attention_heads":20,"num_experts_per_tok":4,"num_hidden_layers":47,
	"num_key_value_heads":20,"num_nextn_predict_layers":1,"pad_token_id":154820,"partial_rotary_factor":1.0,
	"q_lora_rank":768,"qk_nope_head_dim":192,"qk_rope_head_dim":64,"rms_norm_eps":1e-05,"rope_scaling":null,
	"rope_theta":1000000,"routed_scaling_factor":1.8,"tie_word_embeddings":false,"topk_group":1,"topk_method":"noaux_tc",
	"transformers_version":"5.0.0rc0","use_cache":true,"v_head_dim":256,"vocab_size":154880}`

// TestShippedConfig builds and binds the tiny checkpoint as shipped and
// checks that Keys classifies every key of the tiny and the hub config.
func TestShippedConfig(t *testing.T) {
	m := configtest.Shipped(t, tinyDir, &Class.Keys).(*Model)
	if c := m.Config(); c.QRank != 24 || c.RoutedScale != 1.8 || c.MaxPositions != 512 || !c.Dense[0] || c.Dense[1] {
		t.Errorf("config %+v", c)
	}
	configtest.Classified(t, &Class.Keys, []byte(hubConfig))
	cfg, err := hf.ParseConfig([]byte(hubConfig))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg); err != nil {
		t.Error(err)
	}
}

// TestDefaults: absent keys take Glm4MoeLiteConfig's defaults (q_lora_rank
// 768, routed_scaling_factor 1.8, layer 0 dense), null q_lora_rank means
// no query LoRA, and the aliases num_local_experts and head_dim are read.
func TestDefaults(t *testing.T) {
	del := func(k string) configtest.Edit { return configtest.Edit{Path: k, Value: configtest.Delete} }
	m, err := New(configtest.Load(t, tinyDir, del("q_lora_rank"), del("routed_scaling_factor"), del("mlp_layer_types"),
		del("max_position_embeddings"), configtest.Edit{Path: "num_local_experts", Value: 6},
		configtest.Edit{Path: "head_dim", Value: 8}))
	if err != nil {
		t.Fatal(err)
	}
	if c := m.(*Model).Config(); c.QRank != 768 || c.RoutedScale != 1.8 || !c.Dense[0] || c.Dense[1] || c.Dense[2] ||
		c.Experts != 6 || c.MaxPositions != 202752 {
		t.Errorf("defaults: %+v", c)
	}
	m, err = New(configtest.Load(t, tinyDir, configtest.Edit{Path: "q_lora_rank", Value: nil},
		configtest.Edit{Path: "n_group", Value: 2}, configtest.Edit{Path: "topk_group", Value: 2}))
	if err != nil {
		t.Fatal(err)
	}
	if c := m.(*Model).Config(); c.QRank != 0 {
		t.Errorf("null q_lora_rank: %d, want 0 (q_proj)", c.QRank)
	}
}

// TestUnsupportedFields sets, one at a time, a field that changes the
// math to a value the builder does not implement; the build error names it.
func TestUnsupportedFields(t *testing.T) {
	configtest.Unsupported(t, tinyDir, []configtest.Case{
		configtest.Set("attention_bias", true, "true"),
		configtest.Set("hidden_act", "gelu", `"gelu"`),
		configtest.Set("rope_interleave", false, "false"),
		configtest.Set("topk_method", "greedy", `"greedy"`),
		configtest.Set("scoring_func", "softmax", `"softmax"`),
		configtest.Set("moe_layer_freq", 2, "2"),
		configtest.Set("n_group", 2, "topk_group 1"),
		configtest.Set("topk_group", 2, "n_group 1"),
		{Edits: []configtest.Edit{{Path: "first_k_dense_replace", Value: 2}}, Want: "mlp_layer_types"},
		configtest.Set("qk_head_dim", 30, "30"),
		configtest.Set("head_dim", 16, "16"),
		configtest.Set("num_key_value_heads", 2, "num_attention_heads 4"),
		configtest.Set("q_lora_rank", 0, "null"),
		configtest.Set("rope_parameters.rope_type", "yarn", `"yarn"`),
		configtest.Set("partial_rotary_factor", 0.5, "0.5"),
		configtest.Set("quantization_config", map[string]any{"quant_method": "fp8"}, "quantized"),
	})
}
