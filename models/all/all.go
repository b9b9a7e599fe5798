// Package all registers every architecture this build supports; import it
// for its side effects.
package all

import (
	_ "github.com/inference-pio/pio/models/qwen3" // Qwen3ForCausalLM
)
