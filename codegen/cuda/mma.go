package cuda

import (
	"fmt"
	"strings"
)

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
func (m *mm) mmaOK() bool { return m.wt == "pio_bf16" && m.k%8 == 0 }

// mmaCols is the number of output columns one block computes.
func (m *mm) mmaCols() int64 {
	if m.swiglu {
		return mmaBN / 2
	}
	return mmaBN
}

// mmaKernel is the many-rows GEMM on tensor cores
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
func (m *mm) mmaKernel() string { return m.mmaBody(1) }

// mmaBody is the tensor-core kernel's text; with p > 1 parts it is the
// split-K kernel (mmaSplitKernel): block z multiplies k slices
// [z·NS/p, (z+1)·NS/p) and stores its raw accumulators as partials.
func (m *mm) mmaBody(p int) string {
	var b strings.Builder
	cols := m.mmaCols()
	ns := (m.k + mmaBK - 1) / mmaBK
	split := p > 1
	if split {
		fmt.Fprintf(&b, "// matmul%s, split-K partials on tensor cores: w %s[%d, %d], %d output columns; %d×%d block tiles, k in %d parts of %d-deep slices, mma.sync m16n8k16 bf16 on x split into %d bf16 terms.\n",
			m.baseLabel, m.wt, m.n, m.k, m.nOut, mmaBM, cols, p, mmaBK, mmaTerms)
		fmt.Fprintf(&b, "extern \"C\" __global__ void __launch_bounds__(256) KNAME(%s, float* __restrict__ part) {\n", m.decl())
	} else {
		fmt.Fprintf(&b, "// matmul%s, many rows, tensor cores: w %s[%d, %d], %d output columns; %d×%d block tiles, %d-deep k slices, mma.sync m16n8k16 bf16 on x split into %d bf16 terms.\n",
			m.baseLabel, m.wt, m.n, m.k, m.nOut, mmaBM, cols, mmaBK, mmaTerms)
		fmt.Fprintf(&b, "extern \"C\" __global__ void __launch_bounds__(256) KNAME(%s) {\n", m.decl())
	}
	fmt.Fprintf(&b, "  constexpr long K = %d, NOUT = %d;\n  constexpr int NS = %d;  // k slices\n  const long M = %s;\n", m.k, m.nOut, ns, m.mExpr)
	if split {
		fmt.Fprintf(&b, "  constexpr long N = %d;  // partial row length: W's rows\n  constexpr int P = %d;  // k parts\n", m.n, p)
		b.WriteString("  const int s0 = (int)blockIdx.z * NS / P, s1 = ((int)blockIdx.z + 1) * NS / P;  // this block's k slices\n")
	}
	b.WriteString("  // x's bf16 terms and W: [buffer]([term])[row][k pair] (bf16 pairs, low k in the low half)\n")
	fmt.Fprintf(&b, "  __align__(16) __shared__ unsigned xs[2][%d][64][16];\n  __align__(16) __shared__ unsigned ws[2][128][16];\n", mmaTerms)
	if m.norm {
		b.WriteString("  __shared__ float inv[64];\n")
	}
	b.WriteString("  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;\n")
	b.WriteString("  const int wm = warp >> 2, wn = warp & 3;  // warp tile: rows wm*32.., weight rows below\n")
	fmt.Fprintf(&b, "  const long m0 = (long)blockIdx.y * 64, n0 = (long)blockIdx.x * %d;\n", cols)
	switch {
	case m.norm && split: // the inverse norms of the pre-pass (mmaNormKernel), after the partials
		b.WriteString("  if (tid < 64) inv[tid] = m0 + tid < M ? part[P * M * N + m0 + tid] : 0.f;\n  __syncthreads();\n")
	case m.norm:
		b.WriteString(m.invNorms("64", "warp", "lane", 8, "inv"))
	}
	// Staging registers of the next slice.
	b.WriteString("  float4 xr[2];\n  uint4 wr[2];\n")
	if m.norm {
		b.WriteString("  float nr[2][4];\n")
	}
	load := func(k0 string) string {
		var l strings.Builder
		l.WriteString("#pragma unroll\n    for (int i = 0; i < 2; i++) {\n")
		l.WriteString("      const int e = tid + i * 256, r = e >> 3, c = (e & 7) * 4;  // x: 64 rows × 8 float4\n")
		kk := "c"
		if k0 != "0" {
			kk = k0 + " + c"
		}
		fmt.Fprintf(&l, "      const long gm = m0 + r, kk = %s;\n", kk)
		l.WriteString("      xr[i] = (gm < M && kk < K) ? pio_ld4(x + gm * K + kk) : float4{0.f, 0.f, 0.f, 0.f};\n")
		if m.norm {
			l.WriteString("#pragma unroll\n      for (int q = 0; q < 4; q++) nr[i][q] = kk < K ? pio_f32(nw[kk + q]) : 0.f;\n")
		}
		l.WriteString("    }\n#pragma unroll\n    for (int i = 0; i < 2; i++) {\n")
		l.WriteString("      const int e = tid + i * 256, r = e >> 2, c = (e & 3) * 8;  // w: 128 rows × 4 vectors of 8\n")
		if m.swiglu {
			fmt.Fprintf(&l, "      const long gn = n0 + (r & 63), kk = %s, wrow = gn + (r >> 6) * NOUT;  // gate rows, then up rows\n", kk)
		} else {
			fmt.Fprintf(&l, "      const long gn = n0 + r, kk = %s, wrow = gn;\n", kk)
		}
		l.WriteString("      wr[i] = (gn < NOUT && kk < K) ? pio_ld16(w + wrow * K + kk) : uint4{0u, 0u, 0u, 0u};\n    }\n")
		return l.String()
	}
	store := func(buf string) string {
		var s strings.Builder
		s.WriteString("#pragma unroll\n    for (int i = 0; i < 2; i++) {\n")
		s.WriteString("      const int e = tid + i * 256, r = e >> 3, c = (e & 7) * 2;\n")
		s.WriteString("      float v[4] = {xr[i].x, xr[i].y, xr[i].z, xr[i].w};\n")
		if m.norm {
			fmt.Fprintf(&s, "#pragma unroll\n      for (int q = 0; q < 4; q++) v[q] = __fmul_rn(__fmul_rn(v[q], inv[r]), %s + nr[i][q]);\n", m.off)
		}
		fmt.Fprintf(&s, "#pragma unroll\n      for (int p = 0; p < %d; p++) {\n", mmaTerms)
		fmt.Fprintf(&s, "        xs[%[1]s][p][r][c] = pio_bf16x2_take(v[0], v[1]);\n        xs[%[1]s][p][r][c + 1] = pio_bf16x2_take(v[2], v[3]);\n      }\n", buf)
		s.WriteString("    }\n#pragma unroll\n    for (int i = 0; i < 2; i++) {\n")
		fmt.Fprintf(&s, "      const int e = tid + i * 256;\n      *reinterpret_cast<uint4*>(&ws[%s][e >> 2][(e & 3) * 4]) = wr[i];\n    }\n", buf)
		return s.String()
	}
	// wrow(j) is the shared row of the warp's n tile j; with SwiGLU, tiles
	// 0, 1 are gate rows and 2, 3 the up rows of the same columns.
	wrow, col := "wn * 32 + j * 8", "wn * 32 + j * 8"
	jout := 4
	if m.swiglu {
		wrow, col, jout = "(j >> 1) * 64 + wn * 16 + (j & 1) * 8", "wn * 16 + j * 8", 2
	}
	b.WriteString("  float acc[2][4][4];\n#pragma unroll\n  for (int i = 0; i < 2; i++)\n#pragma unroll\n    for (int j = 0; j < 4; j++)\n#pragma unroll\n      for (int c = 0; c < 4; c++) acc[i][j][c] = 0.f;\n")
	first, s0, s1, buf := "0", "0", "NS", "s & 1"
	if split {
		first, s0, s1, buf = fmt.Sprintf("s0 * %dL", mmaBK), "s0", "s1", "(s - s0) & 1"
	}
	b.WriteString("  {\n" + load(first) + store("0") + "  }\n  __syncthreads();\n")
	fmt.Fprintf(&b, "  for (int s = %s; s < %s; s++) {\n    const int B = %s;\n", s0, s1, buf)
	fmt.Fprintf(&b, "    if (s + 1 < %s) {\n"+indent(load(fmt.Sprintf("(s + 1) * %dL", mmaBK)))+"    }\n", s1)
	b.WriteString(mmaSlice(mmaFrags{xs: "xs", ws: "ws", wrow: wrow}))
	fmt.Fprintf(&b, "    if (s + 1 < %s) {\n"+indent(store("B ^ 1"))+"    }\n    __syncthreads();\n  }\n", s1)
	// Epilogue: accumulator c of tile (i, j) is row g + 8·(c >> 1), column 2t + (c & 1).
	if split {
		// Partials: part[(z·M + row)·N + weight row], gate and up rows apart
		// (SwiGLU needs their full sums).
		wcol, wadd := "wn * 32 + j * 8", ""
		if m.swiglu {
			wcol, wadd = "wn * 16 + (j & 1) * 8", " + (j >> 1) * NOUT"
		}
		b.WriteString("  float* pz = part + (long)blockIdx.z * M * N;\n")
		b.WriteString("#pragma unroll\n  for (int i = 0; i < 2; i++)\n#pragma unroll\n    for (int j = 0; j < 4; j++)\n#pragma unroll\n      for (int c = 0; c < 4; c++) {\n")
		b.WriteString("        const long gm = m0 + wm * 32 + i * 16 + g + (c >> 1) * 8;\n")
		fmt.Fprintf(&b, "        const long gn = n0 + %s + 2 * t + (c & 1);\n", wcol)
		fmt.Fprintf(&b, "        if (gm < M && gn < NOUT) pz[gm * N + gn%s] = acc[i][j][c];\n      }\n}\n", wadd)
		return b.String()
	}
	fmt.Fprintf(&b, "#pragma unroll\n  for (int i = 0; i < 2; i++)\n#pragma unroll\n    for (int j = 0; j < %d; j++)\n#pragma unroll\n      for (int c = 0; c < 4; c++) {\n", jout)
	b.WriteString("        const long gm = m0 + wm * 32 + i * 16 + g + (c >> 1) * 8;\n")
	fmt.Fprintf(&b, "        const long gn = n0 + %s + 2 * t + (c & 1);\n", col)
	b.WriteString("        if (gm < M && gn < NOUT) " + m.epilogue("acc[i][j][c]", "acc[i][j + 2][c]", "gm", "gn") + "\n      }\n}\n")
	return b.String()
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
	p := min((mmaSplitBlocks+tiles-1)/tiles, (m.k+mmaBK-1)/mmaBK/mmaSplitMinSlices)
	return int(max(p, 1))
}

// mmaSplitWorkspace is the split-K launches' workspace floats per row.
func (m *mm) mmaSplitWorkspace(p int) int64 {
	ws := int64(p) * m.n
	if m.norm {
		ws++
	}
	return ws
}

// mmaSplitKernel is the split-K kernel of p parts (see mmaBody).
func (m *mm) mmaSplitKernel(p int) string { return m.mmaBody(p) }

// mmaNormKernel is the split-K pre-pass: each row's RMSNorm inverse, one
// warp per row, computed as the unsplit kernel does, stored after the p
// parts' partials.
func (m *mm) mmaNormKernel(p int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "// matmul%s, split-K pre-pass: each row's inverse RMS over %d columns, one warp per row, into the workspace after %d parts of partials.\n", m.baseLabel, m.k, p)
	fmt.Fprintf(&b, "extern \"C\" __global__ void __launch_bounds__(256) KNAME(%s, float* __restrict__ part) {\n", m.decl())
	fmt.Fprintf(&b, "  constexpr long K = %d, N = %d;\n  constexpr int P = %d;\n  const long M = %s;\n", m.k, m.n, p, m.mExpr)
	b.WriteString("  const int lane = threadIdx.x & 31;\n  const long row = (long)blockIdx.x * 8 + (threadIdx.x >> 5);\n  if (row >= M) return;\n")
	b.WriteString("  float ss = 0.f;\n  for (int c = lane; c < K; c += 32) { const float v = x[row * K + c]; ss = fmaf(v, v, ss); }\n")
	fmt.Fprintf(&b, "  ss = pio_warp_sum(ss);\n  if (lane == 0) part[P * M * N + row] = 1.0f / sqrtf(ss / %d.0f + %s);\n}\n", m.k, m.eps)
	return b.String()
}

// mmaSumKernel adds each output's p partials in part order and applies the
// epilogues (SwiGLU on the summed gate and up, residual), one thread per
// output.
func (m *mm) mmaSumKernel(p int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "// matmul%s, split-K sum: %d output columns of %d parts' partials of rows of %d, added in part order.\n", m.baseLabel, m.nOut, p, m.n)
	fmt.Fprintf(&b, "extern \"C\" __global__ void __launch_bounds__(256) KNAME(%s, float* __restrict__ part) {\n", m.decl())
	fmt.Fprintf(&b, "  constexpr long N = %d, NOUT = %d;\n  constexpr int P = %d;\n  const long M = %s;\n", m.n, m.nOut, p, m.mExpr)
	b.WriteString("  const long e = (long)blockIdx.x * 256 + threadIdx.x, row = e / NOUT, col = e % NOUT;\n  if (row >= M) return;\n")
	b.WriteString("  const float* pr = part + row * N + col;\n  float z = pr[0];\n")
	if m.swiglu {
		b.WriteString("  float zu = pr[NOUT];\n")
	}
	b.WriteString("#pragma unroll\n  for (int q = 1; q < P; q++) {\n    z += pr[q * M * N];\n")
	if m.swiglu {
		b.WriteString("    zu += pr[q * M * N + NOUT];\n")
	}
	b.WriteString("  }\n  " + m.epilogue("z", "zu", "row", "col") + "\n}\n")
	return b.String()
}

// mmaFrags names where mmaSlice reads its fragments.
type mmaFrags struct {
	xs, ws    string // the shared arrays of x's terms and of W's rows
	wrow      string // C expression: W's row in ws for n tile j
	skipEmpty bool   // skip an m tile past M (warp-uniform), for tiles of fewer rows than the block
}

// mmaSlice is the MMAs of one k slice (shared buffer B), for a block of 8
// warps in 2 (M) × 4 (N), each owning 2 × 4 tiles of 16 × 8 accumulated in
// acc[i][j] from the fragments f names. Shared by the dense tensor-core
// kernel and the MoE expert kernels.
func mmaSlice(f mmaFrags) string {
	xs, ws, wrow := f.xs, f.ws, f.wrow
	var b strings.Builder
	b.WriteString("    // Fragments (PTX ISA m16n8k16 layouts): A rows g, g+8 of each m tile, B row g of each n tile;\n")
	b.WriteString("    // words 4t..4t+3 of a row are k 8t..8t+7: words 0, 1 feed the first 16-deep step, 2, 3 the second.\n")
	b.WriteString("    unsigned bw[4][4];\n")
	fmt.Fprintf(&b, "#pragma unroll\n    for (int j = 0; j < 4; j++) pio_lds4(&%s[B][%s + g][4 * t], bw[j]);\n", ws, wrow)
	fmt.Fprintf(&b, "#pragma unroll\n    for (int p = %d; p >= 0; p--) {  // the smallest term first\n      unsigned a[2][2][4];\n", mmaTerms-1)
	fmt.Fprintf(&b, "#pragma unroll\n      for (int i = 0; i < 2; i++)\n#pragma unroll\n        for (int h = 0; h < 2; h++) pio_lds4(&%s[B][p][wm * 32 + i * 16 + h * 8 + g][4 * t], a[i][h]);\n", xs)
	b.WriteString("#pragma unroll\n      for (int ks = 0; ks < 2; ks++)\n#pragma unroll\n        for (int i = 0; i < 2; i++) {\n")
	if f.skipEmpty {
		b.WriteString("          if (wm * 32 + i * 16 >= M) continue;  // no valid rows in this m tile (warp-uniform)\n")
	}
	b.WriteString("          const unsigned fa[4] = {a[i][0][2 * ks], a[i][1][2 * ks], a[i][0][2 * ks + 1], a[i][1][2 * ks + 1]};\n")
	b.WriteString("#pragma unroll\n          for (int j = 0; j < 4; j++) {\n            const unsigned fb[2] = {bw[j][2 * ks], bw[j][2 * ks + 1]};\n")
	b.WriteString("            pio_mma_bf16_16816(acc[i][j], fa, fb);\n          }\n        }\n    }\n")
	return b.String()
}

// indent adds two spaces to every line but #pragma lines.
func indent(s string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "#") {
			lines[i] = "  " + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}
