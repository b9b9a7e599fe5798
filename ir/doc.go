// Package ir is Inference-PIO's tensor IR: the graph a model builder produces,
// the passes rewrite, and the compiler lowers to a Plan (plan.go) that the
// runtime executes.
//
// A Graph is a list of Values in topological order. A Value is one node: a
// dense ID, an Op, a result DType and Shape, its Args (earlier Values) and
// Attrs. There is no separate node/edge type and no mutation of shapes after
// construction: every Value's type is inferred from its op, args and attrs
// (op.go) and re-checked by the verifier (verify.go).
//
// # Dimension order
//
// One order holds everywhere in the repository: row-major, token-major.
// Activations are [T, ...] where T is the symbolic number of tokens in the
// step (all sequences of a batch concatenated); per-head activations are
// [T, heads, headDim]. Weights keep the checkpoint's own layout,
// [out_features, in_features], so MatMul computes y = x·Wᵀ. A second
// symbolic dimension S is the number of rows the step keeps for its
// outputs (S <= T): usually one per sequence, its last token, but several
// per sequence when a caller needs them (speculative-decoding checks,
// golden tests that compare every position's logits).
//
// # Stability
//
// Op and DType numbers are written into engine files, so both tables are
// append-only: never renumber an entry; retire one by leaving a tombstone.
// A retired op (one that another op computes the same as) still reads, in
// engines and in text, as the op that replaced it (retired.go).
//
// # Attributes
//
// Each op declares the attributes it takes in its OpInfo (schema.go): key,
// type, required or optional with a default. The verifier rejects any other
// key and any value of the wrong type, and code reads attributes through an
// AttrReader (Value.Attr, Step.Attr), which gives an absent optional one
// its declared default, so no reader states a default of its own.
//
// # Text form
//
// Every graph prints to a stable text form (print.go) and parses back
// (parse.go); pass golden tests and `pioc build --dump-ir` depend on it:
//
//	graph "qwen3" {
//	  cache 0 = kv layer=0 f32 [[2, 32], [2, 32]]
//	  v0 = input() {name="tokens"} : i32[T]
//	  v1 = weight() {name="model.embed_tokens.weight"} : bf16[512, 64]
//	  v2 = embedding(v1, v0) : f32[T, 64]
//	  output "logits" = v2
//	}
//
// What this package is not: it holds no kernels and knows nothing about
// checkpoints or engine files.
package ir
