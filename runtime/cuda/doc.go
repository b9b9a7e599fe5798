// Package cuda is the CUDA backend: it runs an engine's plan on an NVIDIA
// GPU with the kernels that codegen/cuda generated and pioc compiled into
// the engine (its kernels section).
//
// The CUDA driver (libcuda.so.1) is loaded at run time with purego, so the
// Go binaries build with CGO_ENABLED=0, stay static, and start on machines
// with no CUDA at all (New then fails with a clear error). The backend picks
// the engine's cubin for the device's compute capability, or the PTX for
// the driver to JIT on newer GPUs; allocates the weights, one activation
// arena, the paged KV pools and a small per-step metadata block with plain
// device allocations; and runs the plan's launch table on one stream.
// Decode steps (every sequence brings one token) are captured as CUDA
// graphs, one per batch size, and replayed.
//
// What this package is not: a scheduler or sampler (runtime/scheduler,
// runtime/sample), or a kernel author (codegen/cuda).
package cuda
