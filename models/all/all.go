// Package all registers every architecture this build supports; import it
// for its side effects.
package all

import (
	_ "github.com/inference-pio/pio/models/glm4moelite" // Glm4MoeLiteForCausalLM
	_ "github.com/inference-pio/pio/models/qwen3"       // Qwen3ForCausalLM
	_ "github.com/inference-pio/pio/models/qwen3moe"    // Qwen3MoeForCausalLM
	_ "github.com/inference-pio/pio/models/qwen3next"   // Qwen3NextForCausalLM
	_ "github.com/inference-pio/pio/models/qwen3vl"     // Qwen3VLForConditionalGeneration (two plan stages)
)
