package toolcall

import "strings"

// FormatFor returns the tool-call format (a name for New) of a model,
// from its Hugging Face architecture, or from its name when the
// architecture is not one it knows:
//
//	Qwen3MoeForCausalLM, Qwen3NextForCausalLM     qwen3-coder
//	Glm4MoeLiteForCausalLM, Glm4MoeForCausalLM    glm47
//	anything else (Qwen3ForCausalLM, Qwen3-VL)    qwen3
//
// The qwen3-coder and glm47 parsers also read a Hermes JSON call, so a
// Qwen3 MoE model that writes JSON (Qwen3-30B-A3B, Qwen3-Next-Instruct)
// still gets its calls.
func FormatFor(arch, name string) string {
	switch arch {
	case "Qwen3MoeForCausalLM", "Qwen3NextForCausalLM":
		return "qwen3-coder"
	case "Glm4MoeLiteForCausalLM", "Glm4MoeForCausalLM":
		return "glm47"
	case "Qwen3ForCausalLM", "Qwen3VLForConditionalGeneration":
		return "qwen3"
	}
	n := strings.ToLower(name)
	switch {
	case strings.Contains(n, "glm-4.7"), strings.Contains(n, "glm4"), strings.Contains(n, "glm-4.5"), strings.Contains(n, "glm-4.6"):
		return "glm47"
	case strings.Contains(n, "coder"):
		return "qwen3-coder"
	}
	return "qwen3"
}
