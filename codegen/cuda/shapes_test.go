package cuda

import (
	"fmt"
	"testing"

	"github.com/inference-pio/pio/ir"
)

// realShapes are the configs of the models the CUDA backend is benchmarked
// on (Qwen/Qwen3-0.6B and Qwen/Qwen3-4B-Instruct-2507), two layers each:
// the kernels depend on the shapes, not on the depth.
var realShapes = map[string]string{
	"qwen3-0.6b": `{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 1024, "intermediate_size": 3072,
		"num_hidden_layers": 2, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
		"rms_norm_eps": 1e-06, "rope_theta": 1000000, "tie_word_embeddings": true, "max_position_embeddings": 40960, "hidden_act": "silu"}`,
	"qwen3-4b": `{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 2560, "intermediate_size": 9728,
		"num_hidden_layers": 2, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
		"rms_norm_eps": 1e-06, "rope_theta": 5000000, "tie_word_embeddings": true, "max_position_embeddings": 262144, "hidden_act": "silu"}`,
}

// configPlan builds the plan of a config with no checkpoint (every weight
// the model asks for is taken to exist, bar an untied lm_head).
func configPlan(t *testing.T, name string) *ir.Plan {
	return widthsPlan(t, name, realShapes[name], ir.BF16, func(n string) bool { return n != "lm_head.weight" })
}

func TestGenerateRealShapes(t *testing.T) {
	for name := range realShapes {
		m, err := Generate(configPlan(t, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m.TileTokens < 4 {
			t.Errorf("%s: prefill tiles of %d tokens", name, m.TileTokens)
		}
		fmt.Printf("%s: %d kernels, %d launches, tiles of %d tokens\n", name, len(m.Kernels), len(m.Launches), m.TileTokens)
	}
}
