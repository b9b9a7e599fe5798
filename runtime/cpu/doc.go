// Package cpu is the reference backend: it executes an ir.Plan on the CPU in
// f32, and its results are the numerical truth the other backends and the
// model tests are checked against.
//
// New binds a plan to its weights (f32, bf16 or f16, used in place when the
// bytes allow), allocates the arena once for Options.MaxTokens tokens, the
// paged caches and the state slots, and starts a fixed pool of worker
// goroutines. Step then runs the plan's steps in order without allocating;
// the heavy kernels (matmul, attention, rope, norms, elementwise ops) split
// their work over the pool.
//
// Numerics: all activations are f32. Weights are widened exactly to f32 as
// they are read. Dot products accumulate in f32 with eight accumulators;
// RMSNorm's sum of squares and softmax's sum of exponentials accumulate in
// f64; RoPE angles, cos and sin are f32 as in transformers. Within these
// limits the results match a float64 reference to about 1e-6 relative.
// Paged caches are stored in their plan dtype: f32, or bf16 (pioc's default
// for bf16 engines), rounded to nearest even when written and widened
// exactly when read (kv.go).
//
// What it is not: it is not fast (no SIMD, no quantized kernels), it does not
// schedule requests or allocate cache blocks (runtime/kvcache does), and it
// does not read engine files.
package cpu
