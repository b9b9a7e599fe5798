// Package models maps model names to checkpoints and architectures to the
// Go code that builds their IR.
//
// Each architecture lives in its own subpackage (models/qwen3, ...) and
// registers itself in one line:
//
//	func init() { models.Register("Qwen3ForCausalLM", New) }
//
// A model reads its typed config, declares its weights under their
// checkpoint names and builds an ir.Graph; Bind then matches every declared
// weight against a checkpoint and reports all problems in one error. Models
// never name a kernel or a device: that is the compiler's job.
package models
