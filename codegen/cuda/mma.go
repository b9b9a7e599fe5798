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
// simply rounded to bf16 (that costs 2^-9: ~2e-3 relative in a matmul,
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
func (m *mm) mmaKernel() string {
	var b strings.Builder
	cols := m.mmaCols()
	fmt.Fprintf(&b, "// matmul%s, many rows, tensor cores: w %s[%d, %d], %d output columns; %d×%d block tiles, %d-deep k slices, mma.sync m16n8k16 bf16 on x split into %d bf16 terms.\n",
		m.baseLabel, m.wt, m.n, m.k, m.nOut, mmaBM, cols, mmaBK, mmaTerms)
	fmt.Fprintf(&b, "extern \"C\" __global__ void __launch_bounds__(256) KNAME(%s) {\n", m.decl())
	fmt.Fprintf(&b, "  constexpr long K = %d, NOUT = %d;\n  constexpr int NS = %d;  // k slices\n  const long M = %s;\n", m.k, m.nOut, (m.k+mmaBK-1)/mmaBK, m.mExpr)
	b.WriteString("  // x's bf16 terms and W: [buffer]([term])[row][k pair] (bf16 pairs, low k in the low half)\n")
	fmt.Fprintf(&b, "  __align__(16) __shared__ unsigned xs[2][%d][64][16];\n  __align__(16) __shared__ unsigned ws[2][128][16];\n", mmaTerms)
	if m.norm {
		b.WriteString("  __shared__ float inv[64];\n")
	}
	b.WriteString("  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;\n")
	b.WriteString("  const int wm = warp >> 2, wn = warp & 3;  // warp tile: rows wm*32.., weight rows below\n")
	fmt.Fprintf(&b, "  const long m0 = (long)blockIdx.y * 64, n0 = (long)blockIdx.x * %d;\n", cols)
	if m.norm {
		b.WriteString("  for (int rr = warp; rr < 64; rr += 8) {\n    float ss = 0.f;\n    if (m0 + rr < M)\n      for (int c = lane; c < K; c += 32) { const float v = x[(m0 + rr) * K + c]; ss = fmaf(v, v, ss); }\n")
		fmt.Fprintf(&b, "    ss = pio_warp_sum(ss);\n    if (lane == 0) inv[rr] = 1.0f / sqrtf(ss / %d.0f + %s);\n  }\n  __syncthreads();\n", m.k, m.eps)
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
	b.WriteString("  {\n" + load("0") + store("0") + "  }\n  __syncthreads();\n")
	b.WriteString("  for (int s = 0; s < NS; s++) {\n    const int B = s & 1;\n")
	b.WriteString("    if (s + 1 < NS) {\n" + indent(load(fmt.Sprintf("(s + 1) * %dL", mmaBK))) + "    }\n")
	b.WriteString("    // Fragments (PTX ISA m16n8k16 layouts): A rows g, g+8 of each m tile, B row g of each n tile;\n")
	b.WriteString("    // words 4t..4t+3 of a row are k 8t..8t+7: words 0, 1 feed the first 16-deep step, 2, 3 the second.\n")
	b.WriteString("    unsigned bw[4][4];\n")
	fmt.Fprintf(&b, "#pragma unroll\n    for (int j = 0; j < 4; j++) pio_lds4(&ws[B][%s + g][4 * t], bw[j]);\n", wrow)
	fmt.Fprintf(&b, "#pragma unroll\n    for (int p = %d; p >= 0; p--) {  // the smallest term first\n      unsigned a[2][2][4];\n", mmaTerms-1)
	b.WriteString("#pragma unroll\n      for (int i = 0; i < 2; i++)\n#pragma unroll\n        for (int h = 0; h < 2; h++) pio_lds4(&xs[B][p][wm * 32 + i * 16 + h * 8 + g][4 * t], a[i][h]);\n")
	b.WriteString("#pragma unroll\n      for (int ks = 0; ks < 2; ks++)\n#pragma unroll\n        for (int i = 0; i < 2; i++) {\n")
	b.WriteString("          const unsigned fa[4] = {a[i][0][2 * ks], a[i][1][2 * ks], a[i][0][2 * ks + 1], a[i][1][2 * ks + 1]};\n")
	b.WriteString("#pragma unroll\n          for (int j = 0; j < 4; j++) {\n            const unsigned fb[2] = {bw[j][2 * ks], bw[j][2 * ks + 1]};\n")
	b.WriteString("            pio_mma_bf16_16816(acc[i][j], fa, fb);\n          }\n        }\n    }\n")
	b.WriteString("    if (s + 1 < NS) {\n" + indent(store("B ^ 1")) + "    }\n    __syncthreads();\n  }\n")
	// Epilogue: accumulator c of tile (i, j) is row g + 8·(c >> 1), column 2t + (c & 1).
	fmt.Fprintf(&b, "#pragma unroll\n  for (int i = 0; i < 2; i++)\n#pragma unroll\n    for (int j = 0; j < %d; j++)\n#pragma unroll\n      for (int c = 0; c < 4; c++) {\n", jout)
	b.WriteString("        const long gm = m0 + wm * 32 + i * 16 + g + (c >> 1) * 8;\n")
	fmt.Fprintf(&b, "        const long gn = n0 + %s + 2 * t + (c & 1);\n", col)
	b.WriteString("        if (gm < M && gn < NOUT) " + m.epilogue("acc[i][j][c]", "acc[i][j + 2][c]", "gm", "gn") + "\n      }\n}\n")
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
