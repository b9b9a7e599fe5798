// Package runtime runs engines: it defines what one step of work is (Batch,
// SeqView) and the Backend interface that executes a compiled ir.Plan over
// it. Subpackages hold the pieces, each testable without the others: the
// paged KV-cache block allocator (runtime/kvcache) and the backends
// (runtime/cpu, the numerical reference every test runs on).
//
// What it is not: it does not read engine files, schedule requests, sample
// tokens or tokenize text; those live in their own packages and meet here
// only through Batch and Backend. It imports no other package of the
// module, and no runtime package imports the build side (passes, models,
// compiler, codegen) or what sits above it (pio, server): see "Layers" in
// docs/design.md, checked by internal/layers. The CUDA launch ABI that
// runtime/engine stores and runtime/cuda runs is kernel/abi's, below both
// the runtime and the code generator.
package runtime
