package cuda

import (
	"fmt"
	"strings"

	"github.com/inference-pio/pio/ir"
)

// mm is one matmul or fused_matmul instantiation.
type mm struct {
	wt        string // weight element type
	n, k      int64  // W is [n, k]
	nOut      int64  // output columns (n, or n/2 with swiglu)
	norm      bool   // rms_norm prologue with weight nw
	nwt, off  string // norm weight type, "0.0f" or "1.0f"
	eps       string
	swiglu    bool   // y = silu(z[:, :n/2]) ⊙ z[:, n/2:]
	residual  bool   // y += r
	rt        string // residual element type
	mExpr     string // C expression of M (rows)
	normArg   int
	resArg    int
	nargs     int
	rowsGrid  Expr
	baseLabel string
}

// matmul handles matmul and fused_matmul: a GEMM y = x·Wᵀ with an optional
// RMSNorm prologue, SwiGLU epilogue and residual add. Its launches are
// picked by the step's rows: a warp-per-output GEMV for up to WarpMaxRows
// rows (decode; 4 rows per pass over W up to 4 rows, 16 above:
// warpVariants), and above it a tiled GEMM: on tensor cores (mma.go) when W
// is bf16 with rows of a multiple of 8 elements — split-K up to
// mmaSplitMaxRows rows when the step's column tiles are too few to fill
// the GPU (mmaSplits) — else the 64×64 SIMT f32 tile (any weight dtype,
// any K). Each computes in f32 to the CPU backend's accuracy: the
// tensor-core kernels multiply x split into three bf16 terms.
func (g *gen) matmul(step int, s ir.Step) error {
	xdt, xsh := g.operand(s.Args[0])
	wdt, wsh := g.operand(s.Args[1])
	if xdt != ir.F32 {
		return fmt.Errorf("x dtype %v: want f32", xdt)
	}
	wt, err := ctype(wdt)
	if err != nil {
		return err
	}
	m := mm{wt: wt, n: int64(wsh[0]), k: int64(wsh[1]), normArg: -1, resArg: -1, nargs: 2, off: "0.0f"}
	m.nOut = m.n
	if s.Op == ir.OpFusedMatMul {
		m.normArg, m.resArg, m.nargs = ir.FusedMatMulLayout(s.Attr())
		switch act := s.Attr().String("act"); act {
		case "none":
		case "swiglu":
			m.swiglu, m.nOut = true, m.n/2
		default:
			return fmt.Errorf("act %q has no CUDA template", act)
		}
	}
	if m.normArg >= 0 {
		m.norm = true
		ndt, _ := g.operand(s.Args[m.normArg])
		if m.nwt, err = ctype(ndt); err != nil {
			return err
		}
		m.eps = cf(s.Attr().Float("eps"))
		if s.Attr().Bool("unit_offset") {
			m.off = "1.0f"
		}
	}
	if m.resArg >= 0 {
		m.residual = true
		rdt, _ := g.operand(s.Args[m.resArg])
		if m.rt, err = ctype(rdt); err != nil {
			return err
		}
	}
	rowsE, mExpr, err := rows(xsh, m.k)
	if err != nil {
		return err
	}
	m.mExpr, m.rowsGrid = mExpr, rowsE
	var label []string
	if m.norm {
		label = append(label, "rms_norm prologue")
	}
	if m.swiglu {
		label = append(label, "swiglu")
	}
	if m.residual {
		label = append(label, "+ residual")
	}
	if len(label) > 0 {
		m.baseLabel = " (" + strings.Join(label, ", ") + ")"
	}

	const warps = 8
	for _, v := range warpVariants {
		warp := g.kernel("matmul_warp", m.warpKernel(v.tr, warps))
		g.launch(Launch{Step: step, Kernel: warp, Params: stdParams(m.nargs), Block: warps * 32, MinRows: v.minRows, MaxRows: v.maxRows, Rows: rowsE,
			Grid: [3]Expr{{Fixed: m.nOut, Div: warps}, {T: rowsE.T, S: rowsE.S, Fixed: rowsE.Fixed, Div: int64(v.tr)}, {Fixed: 1}}})
	}
	if m.mmaOK() {
		minRows := WarpMaxRows + 1
		if p := m.mmaSplits(); p > 1 {
			// Batched decode: split-K (mma.go), then the ordered sum.
			params := append(stdParams(m.nargs), Param{Kind: PWorkspace})
			l := Launch{Step: step, Params: params, Block: 256, MinRows: WarpMaxRows + 1, MaxRows: mmaSplitMaxRows, Rows: rowsE, Workspace: m.mmaSplitWorkspace(p)}
			if m.norm {
				l.Kernel = g.kernel("matmul_splitk_norm", m.mmaNormKernel(p))
				l.Grid = [3]Expr{{T: rowsE.T, S: rowsE.S, Fixed: rowsE.Fixed, Div: 8}, {Fixed: 1}, {Fixed: 1}}
				g.launch(l)
			}
			l.Kernel = g.kernel("matmul_splitk", m.mmaSplitKernel(p))
			l.Grid = [3]Expr{{Fixed: m.nOut, Div: m.mmaCols()}, {T: rowsE.T, S: rowsE.S, Fixed: rowsE.Fixed, Div: mmaBM}, {Fixed: int64(p)}}
			g.launch(l)
			l.Kernel = g.kernel("matmul_splitk_sum", m.mmaSumKernel(p))
			l.Grid = [3]Expr{{T: rowsE.T * m.nOut, S: rowsE.S * m.nOut, Fixed: rowsE.Fixed * m.nOut, Div: 256}, {Fixed: 1}, {Fixed: 1}}
			g.launch(l)
			minRows = mmaSplitMaxRows + 1
		}
		mma := g.kernel("matmul_mma", m.mmaKernel())
		g.launch(Launch{Step: step, Kernel: mma, Params: stdParams(m.nargs), Block: 256, MinRows: minRows, Rows: rowsE,
			Grid: [3]Expr{{Fixed: m.nOut, Div: m.mmaCols()}, {T: rowsE.T, S: rowsE.S, Fixed: rowsE.Fixed, Div: mmaBM}, {Fixed: 1}}})
		return nil
	}
	tile := g.kernel("matmul_tile", m.tileKernel())
	g.launch(Launch{Step: step, Kernel: tile, Params: stdParams(m.nargs), Block: 256, MinRows: WarpMaxRows + 1, Rows: rowsE,
		Grid: [3]Expr{{Fixed: m.nOut, Div: 64}, {T: rowsE.T, S: rowsE.S, Fixed: rowsE.Fixed, Div: 64}, {Fixed: 1}}})
	return nil
}

// decl is the kernel's parameter list (x, w, [nw], [r], y, T, S).
func (m *mm) decl() string {
	d := fmt.Sprintf("const float* __restrict__ x, const %s* __restrict__ w, ", m.wt)
	if m.norm {
		d += fmt.Sprintf("const %s* __restrict__ nw, ", m.nwt)
	}
	if m.residual {
		d += fmt.Sprintf("const %s* __restrict__ res, ", m.rt)
	}
	return d + "float* __restrict__ y, int T, int S"
}

// epilogue turns accumulators g (and u) of output (row, col) into y.
func (m *mm) epilogue(g, u, row, col string) string {
	v := g
	if m.swiglu {
		v = fmt.Sprintf("__fmul_rn(%[1]s / (1.0f + expf(-%[1]s)), %[2]s)", g, u)
	}
	if m.residual {
		v = fmt.Sprintf("__fadd_rn(%s, pio_f32(res[(%s) * %dL + (%s)]))", v, row, m.nOut, col)
	}
	return fmt.Sprintf("y[(%s) * %dL + (%s)] = %s;", row, m.nOut, col, v)
}

// invNorms is the RMSNorm prologue's inverse norms of a block's rows
// m0 + rr, rr < rows, into the shared dst[rows]: a warp per row (warp is
// the thread's warp, lane its lane, warps the block's), then a barrier.
// The split-K pre-pass (mmaNormKernel) computes each row's as this does.
func (m *mm) invNorms(rows, warp, lane string, warps int, dst string) string {
	return fmt.Sprintf("  for (int rr = %[2]s; rr < %[1]s; rr += %[4]d) {\n    float ss = 0.f;\n    if (m0 + rr < M)\n"+
		"      for (int c = %[3]s; c < K; c += 32) { const float v = x[(m0 + rr) * K + c]; ss = fmaf(v, v, ss); }\n"+
		"    ss = pio_warp_sum(ss);\n    if (%[3]s == 0) %[5]s[rr] = 1.0f / sqrtf(ss / %[6]d.0f + %[7]s);\n  }\n  __syncthreads();\n",
		rows, warp, lane, warps, dst, m.k, m.eps)
}

// warpVariants are the GEMV's rows per block row (TR) and the step rows
// each runs for. The GEMV reads W once per block row: at 16 rows TR = 4
// reads it 4 times, TR = 16 once (from 5 rows up). Estimate for an H100
// (3.35 TB/s, 132 SMs, ~31 T FP32 FMA/s): per 2-byte W element a lane does
// one FMA per row, so at 16 rows the HBM rate asks ~27 T FMA/s (the norm
// prologue adds two multiplies per x element and column): from ~9 rows the
// GEMV nears the FP32 units' limit rather than HBM's, still a quarter of
// TR = 4's W traffic and block rows. Occupancy: TR = 16 uses ≤ 80
// registers at Qwen3-4B's shapes (TestMatMulRegisters; unrolled twice, not
// four times, which spills), so 3 blocks of 256 threads per SM, each lane
// with 2 × 16 bytes of W in flight (twice with SwiGLU): ~24 KiB per SM,
// above the ~15 KiB that 3.35 TB/s at ~600 ns of latency needs. One to
// four rows (single-sequence decode) keep TR = 4: fewer registers, more
// loads in flight.
var warpVariants = []struct{ tr, minRows, maxRows int }{{4, 0, 4}, {16, 5, WarpMaxRows}}

func (m *mm) warpKernel(tr, warps int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "// matmul%s, few rows: w %s[%d, %d], %d output columns; one warp per column, %d rows per block row.\n", m.baseLabel, m.wt, m.n, m.k, m.nOut, tr)
	fmt.Fprintf(&b, "extern \"C\" __global__ void __launch_bounds__(%d) KNAME(%s) {\n", warps*32, m.decl())
	fmt.Fprintf(&b, "  constexpr int TR = %d;\n  constexpr long K = %d, NOUT = %d;\n", tr, m.k, m.nOut)
	fmt.Fprintf(&b, "  const long M = %s;\n", m.mExpr)
	fmt.Fprintf(&b, "  const int lane = threadIdx.x & 31;\n  const int n = blockIdx.x * %d + (threadIdx.x >> 5);\n", warps)
	b.WriteString("  const long m0 = (long)blockIdx.y * TR;\n")
	if m.norm {
		// The block's rows' inverse norms, a warp per row, once per block.
		b.WriteString("  __shared__ float invs[TR];\n" + m.invNorms("TR", "threadIdx.x >> 5", "lane", warps, "invs"))
	}
	b.WriteString("  if (n >= NOUT) return;\n")
	b.WriteString("  const " + m.wt + "* wr = w + n * K;\n")
	if m.swiglu {
		b.WriteString("  const " + m.wt + "* ur = w + (n + NOUT) * K;\n")
	}
	b.WriteString("  float acc[TR];\n")
	init := "acc[r] = 0.f;"
	if m.swiglu {
		b.WriteString("  float accu[TR];\n")
		init += " accu[r] = 0.f;"
	}
	b.WriteString("#pragma unroll\n  for (int r = 0; r < TR; r++) { " + init + " }\n")
	vec := m.k%8 == 0
	norm := func(xv, c string) string {
		if !m.norm {
			return ""
		}
		return fmt.Sprintf("%s = __fmul_rn(__fmul_rn(%s, invs[r]), %s + %s);", xv, xv, m.off, c)
	}
	if vec {
		// Unrolled so that several 16-byte weight loads per lane are in
		// flight: decode is bound by how many bytes are outstanding.
		fmt.Fprintf(&b, "#pragma unroll %d\n  for (long c = lane * 8; c < K; c += 256) {\n    float wv[8];\n    pio_ld8(wr + c, wv);\n", min(4, 32/tr))
		if m.swiglu {
			b.WriteString("    float uv[8];\n    pio_ld8(ur + c, uv);\n")
		}
		if m.norm {
			b.WriteString("    float nv[8];\n    pio_ld8(nw + c, nv);\n")
		}
		b.WriteString("#pragma unroll\n    for (int r = 0; r < TR; r++) {\n      if (m0 + r < M) {\n        float xv[8];\n        pio_ld8(x + (m0 + r) * K + c, xv);\n#pragma unroll\n        for (int e = 0; e < 8; e++) {\n")
		if m.norm {
			b.WriteString("          " + norm("xv[e]", "nv[e]") + "\n")
		}
		b.WriteString("          acc[r] = fmaf(xv[e], wv[e], acc[r]);\n")
		if m.swiglu {
			b.WriteString("          accu[r] = fmaf(xv[e], uv[e], accu[r]);\n")
		}
		b.WriteString("        }\n      }\n    }\n  }\n")
	} else {
		b.WriteString("  for (long c = lane; c < K; c += 32) {\n    const float wv = pio_f32(wr[c]);\n")
		if m.swiglu {
			b.WriteString("    const float uv = pio_f32(ur[c]);\n")
		}
		if m.norm {
			b.WriteString("    const float nv = pio_f32(nw[c]);\n")
		}
		b.WriteString("#pragma unroll\n    for (int r = 0; r < TR; r++) {\n      if (m0 + r < M) {\n        float xv = x[(m0 + r) * K + c];\n")
		if m.norm {
			b.WriteString("        " + norm("xv", "nv") + "\n")
		}
		b.WriteString("        acc[r] = fmaf(xv, wv, acc[r]);\n")
		if m.swiglu {
			b.WriteString("        accu[r] = fmaf(xv, uv, accu[r]);\n")
		}
		b.WriteString("      }\n    }\n  }\n")
	}
	b.WriteString("#pragma unroll\n  for (int r = 0; r < TR; r++) {\n    const float z = pio_warp_sum(acc[r]);\n")
	if m.swiglu {
		b.WriteString("    const float zu = pio_warp_sum(accu[r]);\n")
	}
	b.WriteString("    if (lane == 0 && m0 + r < M) " + m.epilogue("z", "zu", "m0 + r", "n") + "\n  }\n}\n")
	return b.String()
}

func (m *mm) tileKernel() string {
	var b strings.Builder
	fmt.Fprintf(&b, "// matmul%s, many rows: w %s[%d, %d], %d output columns; 64×64 tiles, 16-deep k slices, 4×4 outputs per thread.\n", m.baseLabel, m.wt, m.n, m.k, m.nOut)
	fmt.Fprintf(&b, "extern \"C\" __global__ void __launch_bounds__(256) KNAME(%s) {\n", m.decl())
	fmt.Fprintf(&b, "  constexpr long K = %d, NOUT = %d;\n  const long M = %s;\n", m.k, m.nOut, m.mExpr)
	b.WriteString("  __shared__ float xs[16][64 + 4];\n  __shared__ float ws[16][64 + 4];\n")
	if m.swiglu {
		b.WriteString("  __shared__ float us[16][64 + 4];\n")
	}
	if m.norm {
		b.WriteString("  __shared__ float inv[64];\n")
	}
	b.WriteString("  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;\n  const long m0 = (long)blockIdx.y * 64;\n  const long n0 = (long)blockIdx.x * 64;\n")
	if m.norm {
		b.WriteString(m.invNorms("64", "tid >> 5", "(tid & 31)", 8, "inv"))
	}
	zero := "acc[i][j] = 0.f;"
	b.WriteString("  float acc[4][4];\n")
	if m.swiglu {
		b.WriteString("  float accu[4][4];\n")
		zero += " accu[i][j] = 0.f;"
	}
	b.WriteString("#pragma unroll\n  for (int i = 0; i < 4; i++)\n#pragma unroll\n    for (int j = 0; j < 4; j++) { " + zero + " }\n")
	b.WriteString("  for (long k0 = 0; k0 < K; k0 += 16) {\n#pragma unroll\n    for (int i = 0; i < 4; i++) {\n      const int e = tid + i * 256, r = e >> 4, c = e & 15;\n      const long kk = k0 + c, gm = m0 + r, gn = n0 + r;\n")
	b.WriteString("      float xv = (gm < M && kk < K) ? x[gm * K + kk] : 0.f;\n")
	if m.norm {
		fmt.Fprintf(&b, "      if (gm < M && kk < K) xv = __fmul_rn(__fmul_rn(xv, inv[r]), %s + pio_f32(nw[kk]));\n", m.off)
	}
	b.WriteString("      xs[c][r] = xv;\n      ws[c][r] = (gn < NOUT && kk < K) ? pio_f32(w[gn * K + kk]) : 0.f;\n")
	if m.swiglu {
		b.WriteString("      us[c][r] = (gn < NOUT && kk < K) ? pio_f32(w[(gn + NOUT) * K + kk]) : 0.f;\n")
	}
	b.WriteString("    }\n    __syncthreads();\n#pragma unroll\n    for (int kk = 0; kk < 16; kk++) {\n      float a[4], bw[4];\n")
	if m.swiglu {
		b.WriteString("      float bu[4];\n")
	}
	b.WriteString("#pragma unroll\n      for (int i = 0; i < 4; i++) {\n        a[i] = xs[kk][ty * 4 + i];\n        bw[i] = ws[kk][tx * 4 + i];\n")
	if m.swiglu {
		b.WriteString("        bu[i] = us[kk][tx * 4 + i];\n")
	}
	b.WriteString("      }\n#pragma unroll\n      for (int i = 0; i < 4; i++)\n#pragma unroll\n        for (int j = 0; j < 4; j++) {\n          acc[i][j] = fmaf(a[i], bw[j], acc[i][j]);\n")
	if m.swiglu {
		b.WriteString("          accu[i][j] = fmaf(a[i], bu[j], accu[i][j]);\n")
	}
	b.WriteString("        }\n    }\n    __syncthreads();\n  }\n")
	b.WriteString("#pragma unroll\n  for (int i = 0; i < 4; i++) {\n    const long gm = m0 + ty * 4 + i;\n    if (gm >= M) continue;\n#pragma unroll\n    for (int j = 0; j < 4; j++) {\n      const long gn = n0 + tx * 4 + j;\n")
	b.WriteString("      if (gn < NOUT) " + m.epilogue("acc[i][j]", "accu[i][j]", "gm", "gn") + "\n    }\n  }\n}\n")
	return b.String()
}
