// Package cuda generates the CUDA C++ kernels of a plan and drives nvcc.
//
// Generate walks an ir.Plan and, for every step, instantiates a
// parameterised template chosen by the step's op and attributes (dtype of
// the weight, row length, heads, head dim, RoPE style, ...): every size the
// step knows at build time becomes a compile-time constant, and only T, S
// and the paged-attention metadata arrive at run time. Identical
// instantiations are emitted once, so a 28-layer model has one RMSNorm
// kernel per distinct row length, not 57. The result is one .cu module and
// a launch table: for each step, which kernels to launch, with which
// parameters (abi.Param), grid (abi.Expr) and block, and under which
// condition (decode or prefill, a range of T), in the launch ABI that
// kernel/abi defines. runtime/cuda executes that table without importing
// this package; nothing in it names a model.
//
// Each template is the kernel's CUDA text with named holes (text/template,
// parsed once: template.go), so that the generator reads like the kernel
// it writes; testdata/qwen3-a.bf16.cu, the generated module of the tiny
// Qwen3 (go test -update rewrites it), shows a template change as a diff.
//
// A matmul step (matmul.go) has several launches, chosen by its weight
// dtype and, at run time, its rows (Launch.MinRows/MaxRows): up to
// WarpMaxRows rows (decode), a GEMV with a warp per output column, 4 rows
// per pass over W up to 4 rows and 16 from 5 (W read once); above, a
// tensor-core GEMM (mma.go: mma.sync m16n8k16 on bf16 W, x split into
// three bf16 terms so that it computes to f32 accuracy) when W is bf16 with
// rows of a multiple of 8, else a 64×64 SIMT f32 tile. Up to 128 rows
// (batched decode), a bf16 step whose 64×128 tiles are too few to fill the
// GPU runs the tensor-core kernel split-K instead: K in parts fixed at
// build time, f32 partials in the workspace, then a kernel that adds them
// in part order (deterministic) and applies the epilogues, after a
// pre-pass for the RMSNorm's inverse norms. All share one parameter list
// (split-K adds the workspace) and fuse the same RMSNorm prologue, SwiGLU
// and residual epilogues.
//
// The MoE experts (moe.go) are a grouped GEMM over the (token, slot)
// pairs, grouped by expert on the device: SIMT kernels of one block per
// (expert, row tile) and, in steps of more than WarpMaxRows tokens with
// bf16 experts, mma.go's tensor-core scheme (three bf16 terms of x, f32
// accumulators) for each expert with more than WarpMaxRows pairs, in tiles
// of 64 of its pairs listed by the grouping kernel. An expert no token
// chose costs nothing; the combine adds in increasing expert order.
//
// Attention (attention.go, mla.go) is FlashAttention-2 style for prefill:
// a block takes tokens of one prefill tile (PTiles) × heads, streams the
// paged cache through shared memory in chunks once for all its rows, with
// an online softmax in f32; MLA's latent entries (c_kv|k_rope) are read so
// once per 2 tokens × 20 heads at GLM-4.7-Flash's widths. Decode is
// flash-decoding: splits of SplitSize positions, then a combine.
//
// Compile (nvcc.go) turns a module into one image per target architecture
// (sm_80, sm_89, sm_90a cubins and compute_90 PTX for newer GPUs), in
// parallel, cached by content hash under the user cache directory.
//
// What this package is not: it never talks to a GPU; it needs nvcc only to
// compile, and its tests skip that part when nvcc is absent.
package cuda
