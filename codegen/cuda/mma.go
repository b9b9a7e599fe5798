package cuda

// Block tile of the tensor-core GEMM: mmaBM rows of x by mmaBN rows of W
// (output columns; with SwiGLU, mmaBN/2 gate rows and the matching
// mmaBN/2 up rows), k in slices of mmaBK. Eight warps in 2 (M) × 4 (N),
// each owning 32 rows × 32 weight rows: 2 × 4 mma tiles of 16 × 8. The
// kernel's text is written for these sizes.
const (
	mmaBM = 64
	mmaBN = 128
	mmaBK = 32
	// mmaTerms is the number of bf16 terms x is split into: three carry
	// all of an f32's 24 bits.
	mmaTerms = 3
)

// mmaOK reports whether the tensor-core kernel handles the step: bf16
// weights whose rows are whole 16-byte vectors (so are x's f32 rows).
func (m *mm) mmaOK() bool { return m.WT == "pio_bf16" && m.K%8 == 0 }

// mmaCols is the number of output columns one block computes.
func (m *mm) mmaCols() int64 {
	if m.SwiGLU {
		return mmaBN / 2
	}
	return mmaBN
}

// matmulMMATmpl is the many-rows GEMM on tensor cores
// (mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32), with the SIMT tile's
// fusions, parameters and output layout.
//
// Precision: x is f32 and the CPU backend computes in f32, so x is not
// simply rounded to bf16 (up to 2^-8 relative per element: ~2e-3 in a matmul,
// 1e-2 in the tiny goldens' logits). After the RMSNorm prologue (in f32),
// each element is split into bf16 terms, hi = bf16(x), mid = bf16(x − hi),
// lo = bf16(x − hi − mid) (each difference exact in f32), and every term
// is multiplied by the (exactly bf16) weights into the same f32
// accumulators, the smallest first: the products are exact and the terms
// carry all of x's 24 bits, so a matmul matches the CPU backend within
// ~7e-7 relative, like the SIMT tile. Two terms (hi + lo, 2^-17 relative:
// ~4e-6 a matmul, two MMAs per product instead of three) are not enough:
// the tiny DeltaNet golden's recurrent state carries that to 1.7e-4 in the
// logits of a 131-token prompt, past the backends' 1e-4 parity.
//
// Data path: per 32-deep k slice, every thread loads two float4 of x and
// two 16-byte vectors of W into registers while the warps multiply the
// previous slice out of shared memory (two buffers, one barrier a slice);
// x is normed and split on its way into shared memory. Shared rows hold k
// in natural order, 32 bf16 = 64 bytes, and each lane reads 16 bytes of a
// row (k 8t..8t+7, t = lane % 4), which covers its fragments of both
// 16-deep steps of the slice: a fixed permutation of k applied alike to A
// and B, which leaves the products' sum unchanged. 16-byte reads by 8 lanes
// (rows g, g+1 × 4 lanes) cover all 32 banks once, so no padding is needed.
// K must be a multiple of 8 (16-byte rows); the tail of the last slice is
// zeros.
//
// With Parts > 1 it is the split-K kernel (matmul_splitk): block z
// multiplies k slices [z·NS/P, (z+1)·NS/P) and stores its raw accumulators
// as partials.
var matmulMMATmpl = kernelTemplate("matmul_mma", `
{{- if .Split -}}
// matmul{{.Label}}, split-K partials on tensor cores: w {{.WT}}[{{.N}}, {{.K}}], {{.NOut}} output columns; {{.BM}}×{{.Cols}} block tiles, k in {{.Parts}} parts of {{.BK}}-deep slices, mma.sync m16n8k16 bf16 on x split into {{.Terms}} bf16 terms.
extern "C" __global__ void __launch_bounds__(256) KNAME({{template "mm_params" .}}, float* __restrict__ part) {
{{- else -}}
// matmul{{.Label}}, many rows, tensor cores: w {{.WT}}[{{.N}}, {{.K}}], {{.NOut}} output columns; {{.BM}}×{{.Cols}} block tiles, {{.BK}}-deep k slices, mma.sync m16n8k16 bf16 on x split into {{.Terms}} bf16 terms.
extern "C" __global__ void __launch_bounds__(256) KNAME({{template "mm_params" .}}) {
{{- end}}
  constexpr long K = {{.K}}, NOUT = {{.NOut}};
  constexpr int NS = {{.NS}};  // k slices
  const long M = {{.M}};
{{- if .Split}}
  constexpr long N = {{.N}};  // partial row length: W's rows
  constexpr int P = {{.Parts}};  // k parts
  const int s0 = (int)blockIdx.z * NS / P, s1 = ((int)blockIdx.z + 1) * NS / P;  // this block's k slices
{{- end}}
  // x's bf16 terms and W: [buffer]([term])[row][k pair] (bf16 pairs, low k in the low half)
  __align__(16) __shared__ unsigned xs[2][{{.Terms}}][64][16];
  __align__(16) __shared__ unsigned ws[2][128][16];
{{- if .Norm}}
  __shared__ float inv[64];
{{- end}}
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int wm = warp >> 2, wn = warp & 3;  // warp tile: rows wm*32.., weight rows below
  const long m0 = (long)blockIdx.y * 64, n0 = (long)blockIdx.x * {{.Cols}};
{{- if and .Norm .Split}}
{{- /* The inverse norms of the pre-pass (matmul_splitk_norm), after the partials. */}}
  if (tid < 64) inv[tid] = m0 + tid < M ? part[P * M * N + m0 + tid] : 0.f;
  __syncthreads();
{{- else if .Norm}}
{{template "mm_inv_norms" .InvNorms "64" "warp" "lane" 8 "inv"}}
{{- end}}
{{- /* Staging registers of the next slice. */}}
  float4 xr[2];
  uint4 wr[2];
{{- if .Norm}}
  float nr[2][4];
{{- end}}
  float acc[2][4][4];
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int c = 0; c < 4; c++) acc[i][j][c] = 0.f;
  {
{{template "mma_load" .Load .FirstK}}
{{template "mma_store" .Store "0"}}
  }
  __syncthreads();
  for (int s = {{.S0}}; s < {{.S1}}; s++) {
    const int B = {{.Buf}};
    if (s + 1 < {{.S1}}) {
{{include "mma_load" (.Load "(s + 1) * 32L + c") | indent}}
    }
{{template "mma_slice" .Frags}}
    if (s + 1 < {{.S1}}) {
{{include "mma_store" (.Store "B ^ 1") | indent}}
    }
    __syncthreads();
  }
{{- /* Epilogue: accumulator c of tile (i, j) is row g + 8·(c >> 1), column 2t + (c & 1). */}}
{{- if .Split}}
{{- /* Partials: part[(z·M + row)·N + weight row], gate and up rows apart (SwiGLU needs their full sums). */}}
  float* pz = part + (long)blockIdx.z * M * N;
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int c = 0; c < 4; c++) {
        const long gm = m0 + wm * 32 + i * 16 + g + (c >> 1) * 8;
{{- if .SwiGLU}}
        const long gn = n0 + wn * 16 + (j & 1) * 8 + 2 * t + (c & 1);
        if (gm < M && gn < NOUT) pz[gm * N + gn + (j >> 1) * NOUT] = acc[i][j][c];
{{- else}}
        const long gn = n0 + wn * 32 + j * 8 + 2 * t + (c & 1);
        if (gm < M && gn < NOUT) pz[gm * N + gn] = acc[i][j][c];
{{- end}}
      }
}
{{- else}}
{{- /* With SwiGLU, tiles j = 0, 1 are the gate and 2, 3 the up rows of the same columns. */}}
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < {{if .SwiGLU}}2{{else}}4{{end}}; j++)
#pragma unroll
      for (int c = 0; c < 4; c++) {
        const long gm = m0 + wm * 32 + i * 16 + g + (c >> 1) * 8;
        const long gn = n0 + {{if .SwiGLU}}wn * 16 + j * 8{{else}}wn * 32 + j * 8{{end}} + 2 * t + (c & 1);
        if (gm < M && gn < NOUT) {{.Epilogue "acc[i][j][c]" "acc[i][j + 2][c]" "gm" "gn"}}
      }
}
{{- end}}
`)

// mmaLoadTmpl stages a k slice (k = KK for the thread's c) in registers: two
// float4 of x (and the RMSNorm weights over them) and two 16-byte vectors
// of W per thread.
var mmaLoadTmpl = kernelTemplate("mma_load", `#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int e = tid + i * 256, r = e >> 3, c = (e & 7) * 4;  // x: 64 rows × 8 float4
      const long gm = m0 + r, kk = {{.KK}};
      xr[i] = (gm < M && kk < K) ? pio_ld4(x + gm * K + kk) : float4{0.f, 0.f, 0.f, 0.f};
{{- if .Norm}}
#pragma unroll
      for (int q = 0; q < 4; q++) nr[i][q] = kk < K ? pio_f32(nw[kk + q]) : 0.f;
{{- end}}
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int e = tid + i * 256, r = e >> 2, c = (e & 3) * 8;  // w: 128 rows × 4 vectors of 8
{{- if .SwiGLU}}
      const long gn = n0 + (r & 63), kk = {{.KK}}, wrow = gn + (r >> 6) * NOUT;  // gate rows, then up rows
{{- else}}
      const long gn = n0 + r, kk = {{.KK}}, wrow = gn;
{{- end}}
      wr[i] = (gn < NOUT && kk < K) ? pio_ld16(w + wrow * K + kk) : uint4{0u, 0u, 0u, 0u};
    }`)

// mmaStoreTmpl stores the staged slice into shared buffer Buf: x normed and
// split into its bf16 terms, W as it is.
var mmaStoreTmpl = kernelTemplate("mma_store", `#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int e = tid + i * 256, r = e >> 3, c = (e & 7) * 2;
      float v[4] = {xr[i].x, xr[i].y, xr[i].z, xr[i].w};
{{- if .Norm}}
#pragma unroll
      for (int q = 0; q < 4; q++) v[q] = __fmul_rn(__fmul_rn(v[q], inv[r]), {{.Off}} + nr[i][q]);
{{- end}}
#pragma unroll
      for (int p = 0; p < {{.Terms}}; p++) {
        xs[{{.Buf}}][p][r][c] = pio_bf16x2_take(v[0], v[1]);
        xs[{{.Buf}}][p][r][c + 1] = pio_bf16x2_take(v[2], v[3]);
      }
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int e = tid + i * 256;
      *reinterpret_cast<uint4*>(&ws[{{.Buf}}][e >> 2][(e & 3) * 4]) = wr[i];
    }`)

// mmaHoles fill the tensor-core templates: the step's matmul, its tiling
// and its k parts (1: the unsplit kernel).
type mmaHoles struct {
	*mm
	Parts int
}

// mmaHoles are the holes of the tensor-core kernels of p parts.
func (m *mm) mmaHoles(p int) *mmaHoles { return &mmaHoles{m, p} }

func (h *mmaHoles) Split() bool { return h.Parts > 1 }
func (h *mmaHoles) BM() int     { return mmaBM }
func (h *mmaHoles) BK() int     { return mmaBK }
func (h *mmaHoles) Terms() int  { return mmaTerms }
func (h *mmaHoles) Cols() int64 { return h.mmaCols() }
func (h *mmaHoles) NS() int64   { return (h.K + mmaBK - 1) / mmaBK }

// FirstK is the first slice's k of a thread's c; S0, S1 the block's slices,
// Buf the shared buffer slice s reads.
func (h *mmaHoles) FirstK() string { return h.pick("s0 * 32L + c", "c") }
func (h *mmaHoles) S0() string     { return h.pick("s0", "0") }
func (h *mmaHoles) S1() string     { return h.pick("s1", "NS") }
func (h *mmaHoles) Buf() string    { return h.pick("(s - s0) & 1", "s & 1") }

func (h *mmaHoles) pick(split, whole string) string {
	if h.Split() {
		return split
	}
	return whole
}

// mmaStage fills mma_load (KK) and mma_store (Buf).
type mmaStage struct {
	*mmaHoles
	KK, Buf string
}

func (h *mmaHoles) Load(kk string) mmaStage   { return mmaStage{h, kk, ""} }
func (h *mmaHoles) Store(buf string) mmaStage { return mmaStage{h, "", buf} }

// Frags are the dense kernel's fragments for mma_slice: with SwiGLU, n tiles
// 0, 1 of a warp are gate rows and 2, 3 the up rows of the same columns.
func (h *mmaHoles) Frags() mmaFrags {
	wrow := "wn * 32 + j * 8"
	if h.SwiGLU {
		wrow = "(j >> 1) * 64 + wn * 16 + (j & 1) * 8"
	}
	return mmaFrags{XS: "xs", WS: "ws", WRow: wrow}
}

// Split-K: the 64×128 kernel's grid is ⌈NOUT/128⌉ × ⌈M/64⌉ blocks, 20 for
// Qwen3-4B's o_proj and down (N = 2560) at up to 64 rows: 20 of an H100's
// 132 SMs stream W, far from HBM bandwidth. From WarpMaxRows+1 to
// mmaSplitMaxRows rows (batched decode), a step whose tiles are too few
// runs the same kernel on P parts of K (grid z), P chosen at build time so
// that the blocks number at least mmaSplitBlocks (2 per SM):
//
//	Qwen3-4B at ≤ 64 rows  tiles  P   blocks  slices/part  partials/W bytes
//	q/k/v   [6144, 2560]    48    6   288     13           0.30
//	o_proj  [2560, 4096]    20   14   280      9           0.44
//	gate/up [19456, 2560]  152    2   304     40           0.10
//	down    [2560, 9728]    20   14   280     21           0.18
//
// Each part is at least mmaSplitMinSlices slices (256 of k), which bounds
// the partials: a part writes M·N f32 for its 2·N·K/P bytes of W, so the
// partial bytes per W byte at 64 rows are 128·P/K ≤ 0.5 (the table's last
// column; they are written to and read back from L2 more than HBM). Per SM,
// two blocks (~128 registers a thread, 40 KiB shared) keep 2 × 8 KiB of W
// and 2 × 8 KiB of x in flight per slice, about the ~15 KiB per SM that
// 3.35 TB/s at ~600 ns of latency needs. The MMA work is the unsplit
// kernel's, 64 rows × 3 terms per W element whatever M: at the HBM rate
// (~1.7 T elements/s) ~640 TFLOP/s, about what mma.sync sustains on an
// H100: up to 64 rows the kernel is balanced between the two; from 65 to
// 128 rows two row tiles double the MMA work, so the tensor cores bound it
// at about half the HBM rate — on every SM, where unsplit only 40 blocks
// run. (A 16- or 32-row tile would cut the MMA work at 17–32 rows; not
// done.)
//
// The blocks store raw accumulators (SwiGLU's gate and up rows apart) as
// partials in the step's workspace; mmaSumKernel adds a row's P partials in
// part order (deterministic, no atomics) and applies the epilogues. With
// the RMSNorm prologue, a pre-pass (mmaNormKernel) writes each row's
// inverse norm after the partials, so the P blocks of a tile do not each
// read x's whole rows. Workspace: P·N partials + 1 inverse norm per row,
// for at most mmaSplitMaxRows rows.
const (
	mmaSplitMaxRows   = 128
	mmaSplitBlocks    = 264
	mmaSplitMinSlices = 8
)

// mmaSplits is the number of k parts of the split-K kernel, 1 when the
// step's tiles are enough (or K too short) to gain from splitting.
func (m *mm) mmaSplits() int {
	tiles := (m.nOut + m.mmaCols() - 1) / m.mmaCols()
	p := min((mmaSplitBlocks+tiles-1)/tiles, (m.K+mmaBK-1)/mmaBK/mmaSplitMinSlices)
	return int(max(p, 1))
}

// mmaSplitWorkspace is the split-K launches' workspace floats per row.
func (m *mm) mmaSplitWorkspace(p int) int64 {
	ws := int64(p) * m.N
	if m.Norm {
		ws++
	}
	return ws
}

// matmulSplitKNormTmpl is the split-K pre-pass: each row's RMSNorm inverse,
// one warp per row, computed as mm_inv_norms does, stored after the P
// parts' partials.
var matmulSplitKNormTmpl = kernelTemplate("matmul_splitk_norm", `// matmul{{.Label}}, split-K pre-pass: each row's inverse RMS over {{.K}} columns, one warp per row, into the workspace after {{.Parts}} parts of partials.
extern "C" __global__ void __launch_bounds__(256) KNAME({{template "mm_params" .}}, float* __restrict__ part) {
  constexpr long K = {{.K}}, N = {{.N}};
  constexpr int P = {{.Parts}};
  const long M = {{.M}};
  const int lane = threadIdx.x & 31;
  const long row = (long)blockIdx.x * 8 + (threadIdx.x >> 5);
  if (row >= M) return;
  float ss = 0.f;
  for (int c = lane; c < K; c += 32) { const float v = x[row * K + c]; ss = fmaf(v, v, ss); }
  ss = pio_warp_sum(ss);
  if (lane == 0) part[P * M * N + row] = 1.0f / sqrtf(ss / {{.K}}.0f + {{.Eps}});
}
`)

// matmulSplitKSumTmpl adds each output's P partials in part order and applies
// the epilogues (SwiGLU on the summed gate and up, residual), one thread
// per output.
var matmulSplitKSumTmpl = kernelTemplate("matmul_splitk_sum", `// matmul{{.Label}}, split-K sum: {{.NOut}} output columns of {{.Parts}} parts' partials of rows of {{.N}}, added in part order.
extern "C" __global__ void __launch_bounds__(256) KNAME({{template "mm_params" .}}, float* __restrict__ part) {
  constexpr long N = {{.N}}, NOUT = {{.NOut}};
  constexpr int P = {{.Parts}};
  const long M = {{.M}};
  const long e = (long)blockIdx.x * 256 + threadIdx.x, row = e / NOUT, col = e % NOUT;
  if (row >= M) return;
  const float* pr = part + row * N + col;
  float z = pr[0];
{{- if .SwiGLU}}
  float zu = pr[NOUT];
{{- end}}
#pragma unroll
  for (int q = 1; q < P; q++) {
    z += pr[q * M * N];
{{- if .SwiGLU}}
    zu += pr[q * M * N + NOUT];
{{- end}}
  }
  {{.Epilogue "z" "zu" "row" "col"}}
}
`)

// mmaFrags fill mma_slice: where it reads its fragments.
type mmaFrags struct {
	XS, WS    string // the shared arrays of x's terms and of W's rows
	WRow      string // C expression: W's row in WS for n tile j
	SkipEmpty bool   // skip an m tile past M (warp-uniform), for tiles of fewer rows than the block
}

// LastTerm is the index of x's smallest bf16 term, multiplied first.
func (mmaFrags) LastTerm() int { return mmaTerms - 1 }

// mmaSliceTmpl is the MMAs of one k slice (shared buffer B), for a block of 8
// warps in 2 (M) × 4 (N), each owning 2 × 4 tiles of 16 × 8 accumulated in
// acc[i][j] from the fragments mmaFrags name. Shared by the dense
// tensor-core kernel and the MoE expert kernels.
var mmaSliceTmpl = kernelTemplate("mma_slice", `    // Fragments (PTX ISA m16n8k16 layouts): A rows g, g+8 of each m tile, B row g of each n tile;
    // words 4t..4t+3 of a row are k 8t..8t+7: words 0, 1 feed the first 16-deep step, 2, 3 the second.
    unsigned bw[4][4];
#pragma unroll
    for (int j = 0; j < 4; j++) pio_lds4(&{{.WS}}[B][{{.WRow}} + g][4 * t], bw[j]);
#pragma unroll
    for (int p = {{.LastTerm}}; p >= 0; p--) {  // the smallest term first
      unsigned a[2][2][4];
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int h = 0; h < 2; h++) pio_lds4(&{{.XS}}[B][p][wm * 32 + i * 16 + h * 8 + g][4 * t], a[i][h]);
#pragma unroll
      for (int ks = 0; ks < 2; ks++)
#pragma unroll
        for (int i = 0; i < 2; i++) {
{{- if .SkipEmpty}}
          if (wm * 32 + i * 16 >= M) continue;  // no valid rows in this m tile (warp-uniform)
{{- end}}
          const unsigned fa[4] = {a[i][0][2 * ks], a[i][1][2 * ks], a[i][0][2 * ks + 1], a[i][1][2 * ks + 1]};
#pragma unroll
          for (int j = 0; j < 4; j++) {
            const unsigned fb[2] = {bw[j][2 * ks], bw[j][2 * ks + 1]};
            pio_mma_bf16_16816(acc[i][j], fa, fb);
          }
        }
    }`)
