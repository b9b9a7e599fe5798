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
//
// Configs are read as transformers 5.17 reads them, never guessed: each
// architecture describes its config class with a Class (keys read, keys
// held to the value the builder implements, keys that do not change the
// math; RoPE; defaults), and Class.Check, CheckRope and CheckSlidingWindow
// turn anything that would change the math and is not implemented into a
// build error naming the key (see Keys for the policy on unknown keys).
package models
