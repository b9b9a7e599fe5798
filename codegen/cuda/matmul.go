package cuda

import (
	"fmt"
	"strings"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
)

// mm is one matmul or fused_matmul instantiation. Its exported fields and
// methods are the holes of the matmul templates (matmul.go, mma.go).
type mm struct {
	WT       string // weight element type
	N, K     int64  // W is [N, K]
	nOut     int64  // output columns (N, or N/2 with SwiGLU): NOut
	Norm     bool   // rms_norm prologue with weight nw
	NWT, Off string // norm weight type, "0.0f" or "1.0f"
	Eps      string
	SwiGLU   bool   // y = silu(z[:, :N/2]) ⊙ z[:, N/2:]
	Residual bool   // y += r
	RT       string // residual element type
	M        string // C expression of M (rows)
	Label    string // the fusions, for the kernels' comments: " (rms_norm prologue, swiglu, + residual)"
	normArg  int
	resArg   int
	nargs    int
}

// NOut is the number of output columns.
func (m *mm) NOut() int64 { return m.nOut }

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
	m := mm{WT: wt, N: int64(wsh[0]), K: int64(wsh[1]), normArg: -1, resArg: -1, nargs: 2, Off: "0.0f"}
	m.nOut = m.N
	if s.Op == ir.OpFusedMatMul {
		m.normArg, m.resArg, m.nargs = ir.FusedMatMulLayout(s.Attr())
		switch act := s.Attr().String("act"); act {
		case "none":
		case "swiglu":
			m.SwiGLU, m.nOut = true, m.N/2
		default:
			return fmt.Errorf("act %q has no CUDA template", act)
		}
	}
	if m.normArg >= 0 {
		m.Norm = true
		ndt, _ := g.operand(s.Args[m.normArg])
		if m.NWT, err = ctype(ndt); err != nil {
			return err
		}
		m.Eps = cf(s.Attr().Float("eps"))
		if s.Attr().Bool("unit_offset") {
			m.Off = "1.0f"
		}
	}
	if m.resArg >= 0 {
		m.Residual = true
		rdt, _ := g.operand(s.Args[m.resArg])
		if m.RT, err = ctype(rdt); err != nil {
			return err
		}
	}
	rowsE, mExpr, err := rows(xsh, m.K)
	if err != nil {
		return err
	}
	m.M = mExpr
	var label []string
	if m.Norm {
		label = append(label, "rms_norm prologue")
	}
	if m.SwiGLU {
		label = append(label, "swiglu")
	}
	if m.Residual {
		label = append(label, "+ residual")
	}
	if len(label) > 0 {
		m.Label = " (" + strings.Join(label, ", ") + ")"
	}

	const warps = 8
	for _, v := range warpVariants {
		warp, err := g.emit("matmul_warp", matmulWarpTmpl, matmulWarpHoles{mm: &m, TR: v.tr, Warps: warps, Vec: m.K%8 == 0, Unroll: min(4, 32/v.tr)})
		if err != nil {
			return err
		}
		g.launch(abi.Launch{Step: step, Kernel: warp, Params: stdParams(m.nargs), Block: warps * 32, MinRows: v.minRows, MaxRows: v.maxRows, Rows: rowsE,
			Grid: [3]abi.Expr{{Fixed: m.nOut, Div: warps}, {T: rowsE.T, S: rowsE.S, Fixed: rowsE.Fixed, Div: int64(v.tr)}, {Fixed: 1}}})
	}
	if m.mmaOK() {
		minRows := WarpMaxRows + 1
		if p := m.mmaSplits(); p > 1 {
			// Batched decode: split-K (mma.go), then the ordered sum.
			params := append(stdParams(m.nargs), abi.Param{Kind: abi.PWorkspace})
			l := abi.Launch{Step: step, Params: params, Block: 256, MinRows: WarpMaxRows + 1, MaxRows: mmaSplitMaxRows, Rows: rowsE, Workspace: m.mmaSplitWorkspace(p)}
			if m.Norm {
				if l.Kernel, err = g.emit("matmul_splitk_norm", matmulSplitKNormTmpl, m.mmaHoles(p)); err != nil {
					return err
				}
				l.Grid = [3]abi.Expr{{T: rowsE.T, S: rowsE.S, Fixed: rowsE.Fixed, Div: 8}, {Fixed: 1}, {Fixed: 1}}
				g.launch(l)
			}
			if l.Kernel, err = g.emit("matmul_splitk", matmulMMATmpl, m.mmaHoles(p)); err != nil {
				return err
			}
			l.Grid = [3]abi.Expr{{Fixed: m.nOut, Div: m.mmaCols()}, {T: rowsE.T, S: rowsE.S, Fixed: rowsE.Fixed, Div: mmaBM}, {Fixed: int64(p)}}
			g.launch(l)
			if l.Kernel, err = g.emit("matmul_splitk_sum", matmulSplitKSumTmpl, m.mmaHoles(p)); err != nil {
				return err
			}
			l.Grid = [3]abi.Expr{{T: rowsE.T * m.nOut, S: rowsE.S * m.nOut, Fixed: rowsE.Fixed * m.nOut, Div: 256}, {Fixed: 1}, {Fixed: 1}}
			g.launch(l)
			minRows = mmaSplitMaxRows + 1
		}
		mma, err := g.emit("matmul_mma", matmulMMATmpl, m.mmaHoles(1))
		if err != nil {
			return err
		}
		g.launch(abi.Launch{Step: step, Kernel: mma, Params: stdParams(m.nargs), Block: 256, MinRows: minRows, Rows: rowsE,
			Grid: [3]abi.Expr{{Fixed: m.nOut, Div: m.mmaCols()}, {T: rowsE.T, S: rowsE.S, Fixed: rowsE.Fixed, Div: mmaBM}, {Fixed: 1}}})
		return nil
	}
	tile, err := g.emit("matmul_tile", matmulTileTmpl, &m)
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: tile, Params: stdParams(m.nargs), Block: 256, MinRows: WarpMaxRows + 1, Rows: rowsE,
		Grid: [3]abi.Expr{{Fixed: m.nOut, Div: 64}, {T: rowsE.T, S: rowsE.S, Fixed: rowsE.Fixed, Div: 64}, {Fixed: 1}}})
	return nil
}

// mmParamsTmpl is the matmul kernels' parameter list: x, w, [nw], [res], y, T, S.
var mmParamsTmpl = kernelTemplate("mm_params", `const float* __restrict__ x, const {{.WT}}* __restrict__ w, `+
	`{{if .Norm}}const {{.NWT}}* __restrict__ nw, {{end}}{{if .Residual}}const {{.RT}}* __restrict__ res, {{end}}float* __restrict__ y, int T, int S`)

// Epilogue is the C statement that turns accumulators g (and u, SwiGLU's
// up) of output (row, col) into y: SwiGLU, then the residual.
func (m *mm) Epilogue(g, u, row, col string) string {
	v := g
	if m.SwiGLU {
		v = fmt.Sprintf("__fmul_rn(%s / (1.0f + expf(-%s)), %s)", g, g, u)
	}
	if m.Residual {
		v = fmt.Sprintf("__fadd_rn(%s, pio_f32(res[(%s) * %dL + (%s)]))", v, row, m.nOut, col)
	}
	return fmt.Sprintf("y[(%s) * %dL + (%s)] = %s;", row, m.nOut, col, v)
}

// invNormHoles fill mm_inv_norms.
type invNormHoles struct {
	*mm
	Rows, Warp, Lane string // C expressions: the block's rows, the thread's warp and lane
	Warps            int    // warps in the block
	Dst              string // the shared array of the inverse norms
}

// InvNorms fills mm_inv_norms for a block's rows m0 + rr, rr < rows.
func (m *mm) InvNorms(rows, warp, lane string, warps int, dst string) invNormHoles {
	return invNormHoles{m, rows, warp, lane, warps, dst}
}

// mmInvNormsTmpl is the RMSNorm prologue's inverse norms of a block's rows
// m0 + rr, rr < Rows, into the shared Dst[Rows]: a warp per row, then a
// barrier. The split-K pre-pass (matmul_splitk_norm) computes each row's as
// this does.
var mmInvNormsTmpl = kernelTemplate("mm_inv_norms", `  for (int rr = {{.Warp}}; rr < {{.Rows}}; rr += {{.Warps}}) {
    float ss = 0.f;
    if (m0 + rr < M)
      for (int c = {{.Lane}}; c < K; c += 32) { const float v = x[(m0 + rr) * K + c]; ss = fmaf(v, v, ss); }
    ss = pio_warp_sum(ss);
    if ({{.Lane}} == 0) {{.Dst}}[rr] = 1.0f / sqrtf(ss / {{.K}}.0f + {{.Eps}});
  }
  __syncthreads();`)

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

// matmulWarpHoles fill matmul_warp.
type matmulWarpHoles struct {
	*mm
	TR, Warps int  // rows per block row; warps per block, one per output column
	Vec       bool // K is a whole number of 8-element vectors
	Unroll    int  // 16-byte W loads per lane in flight
}

// Threads is the block size.
func (h matmulWarpHoles) Threads() int { return h.Warps * 32 }

// matmulWarpTmpl is the few-rows GEMV: one warp per output column, TR rows per
// pass over W.
var matmulWarpTmpl = kernelTemplate("matmul_warp", `// matmul{{.Label}}, few rows: w {{.WT}}[{{.N}}, {{.K}}], {{.NOut}} output columns; one warp per column, {{.TR}} rows per block row.
extern "C" __global__ void __launch_bounds__({{.Threads}}) KNAME({{template "mm_params" .}}) {
  constexpr int TR = {{.TR}};
  constexpr long K = {{.K}}, NOUT = {{.NOut}};
  const long M = {{.M}};
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * {{.Warps}} + (threadIdx.x >> 5);
  const long m0 = (long)blockIdx.y * TR;
{{- if .Norm}}
  __shared__ float invs[TR];
{{template "mm_inv_norms" .InvNorms "TR" "threadIdx.x >> 5" "lane" .Warps "invs"}}
{{- end}}
  if (n >= NOUT) return;
  const {{.WT}}* wr = w + n * K;
{{- if .SwiGLU}}
  const {{.WT}}* ur = w + (n + NOUT) * K;
{{- end}}
  float acc[TR];
{{- if .SwiGLU}}
  float accu[TR];
{{- end}}
#pragma unroll
  for (int r = 0; r < TR; r++) { acc[r] = 0.f;{{if .SwiGLU}} accu[r] = 0.f;{{end}} }
{{- if .Vec}}
{{- /* Unrolled so that several 16-byte weight loads per lane are in
       flight: decode is bound by how many bytes are outstanding. */}}
#pragma unroll {{.Unroll}}
  for (long c = lane * 8; c < K; c += 256) {
    float wv[8];
    pio_ld8(wr + c, wv);
{{- if .SwiGLU}}
    float uv[8];
    pio_ld8(ur + c, uv);
{{- end}}
{{- if .Norm}}
    float nv[8];
    pio_ld8(nw + c, nv);
{{- end}}
#pragma unroll
    for (int r = 0; r < TR; r++) {
      if (m0 + r < M) {
        float xv[8];
        pio_ld8(x + (m0 + r) * K + c, xv);
#pragma unroll
        for (int e = 0; e < 8; e++) {
{{- if .Norm}}
          xv[e] = __fmul_rn(__fmul_rn(xv[e], invs[r]), {{.Off}} + nv[e]);
{{- end}}
          acc[r] = fmaf(xv[e], wv[e], acc[r]);
{{- if .SwiGLU}}
          accu[r] = fmaf(xv[e], uv[e], accu[r]);
{{- end}}
        }
      }
    }
  }
{{- else}}
  for (long c = lane; c < K; c += 32) {
    const float wv = pio_f32(wr[c]);
{{- if .SwiGLU}}
    const float uv = pio_f32(ur[c]);
{{- end}}
{{- if .Norm}}
    const float nv = pio_f32(nw[c]);
{{- end}}
#pragma unroll
    for (int r = 0; r < TR; r++) {
      if (m0 + r < M) {
        float xv = x[(m0 + r) * K + c];
{{- if .Norm}}
        xv = __fmul_rn(__fmul_rn(xv, invs[r]), {{.Off}} + nv);
{{- end}}
        acc[r] = fmaf(xv, wv, acc[r]);
{{- if .SwiGLU}}
        accu[r] = fmaf(xv, uv, accu[r]);
{{- end}}
      }
    }
  }
{{- end}}
#pragma unroll
  for (int r = 0; r < TR; r++) {
    const float z = pio_warp_sum(acc[r]);
{{- if .SwiGLU}}
    const float zu = pio_warp_sum(accu[r]);
{{- end}}
    if (lane == 0 && m0 + r < M) {{.Epilogue "z" "zu" "m0 + r" "n"}}
  }
}
`)

// matmulTileTmpl is the many-rows SIMT GEMM for any weight dtype: 64×64 tiles
// of f32 in shared memory, 16-deep k slices, 4×4 outputs per thread.
var matmulTileTmpl = kernelTemplate("matmul_tile", `// matmul{{.Label}}, many rows: w {{.WT}}[{{.N}}, {{.K}}], {{.NOut}} output columns; 64×64 tiles, 16-deep k slices, 4×4 outputs per thread.
extern "C" __global__ void __launch_bounds__(256) KNAME({{template "mm_params" .}}) {
  constexpr long K = {{.K}}, NOUT = {{.NOut}};
  const long M = {{.M}};
  __shared__ float xs[16][64 + 4];
  __shared__ float ws[16][64 + 4];
{{- if .SwiGLU}}
  __shared__ float us[16][64 + 4];
{{- end}}
{{- if .Norm}}
  __shared__ float inv[64];
{{- end}}
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const long m0 = (long)blockIdx.y * 64;
  const long n0 = (long)blockIdx.x * 64;
{{- if .Norm}}
{{template "mm_inv_norms" .InvNorms "64" "tid >> 5" "(tid & 31)" 8 "inv"}}
{{- end}}
  float acc[4][4];
{{- if .SwiGLU}}
  float accu[4][4];
{{- end}}
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) { acc[i][j] = 0.f;{{if .SwiGLU}} accu[i][j] = 0.f;{{end}} }
  for (long k0 = 0; k0 < K; k0 += 16) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int e = tid + i * 256, r = e >> 4, c = e & 15;
      const long kk = k0 + c, gm = m0 + r, gn = n0 + r;
      float xv = (gm < M && kk < K) ? x[gm * K + kk] : 0.f;
{{- if .Norm}}
      if (gm < M && kk < K) xv = __fmul_rn(__fmul_rn(xv, inv[r]), {{.Off}} + pio_f32(nw[kk]));
{{- end}}
      xs[c][r] = xv;
      ws[c][r] = (gn < NOUT && kk < K) ? pio_f32(w[gn * K + kk]) : 0.f;
{{- if .SwiGLU}}
      us[c][r] = (gn < NOUT && kk < K) ? pio_f32(w[(gn + NOUT) * K + kk]) : 0.f;
{{- end}}
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < 16; kk++) {
      float a[4], bw[4];
{{- if .SwiGLU}}
      float bu[4];
{{- end}}
#pragma unroll
      for (int i = 0; i < 4; i++) {
        a[i] = xs[kk][ty * 4 + i];
        bw[i] = ws[kk][tx * 4 + i];
{{- if .SwiGLU}}
        bu[i] = us[kk][tx * 4 + i];
{{- end}}
      }
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
          acc[i][j] = fmaf(a[i], bw[j], acc[i][j]);
{{- if .SwiGLU}}
          accu[i][j] = fmaf(a[i], bu[j], accu[i][j]);
{{- end}}
        }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const long gm = m0 + ty * 4 + i;
    if (gm >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const long gn = n0 + tx * 4 + j;
      if (gn < NOUT) {{.Epilogue "acc[i][j]" "accu[i][j]" "gm" "gn"}}
    }
  }
}
`)
