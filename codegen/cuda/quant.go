package cuda

import (
	"fmt"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
)

// The quantized-weights family: matmul_q (ir/op_quant.go) is the only one of
// its ops left in a plan (quantize runs at build time).
func init() { templates[ir.OpMatMulQ] = (*gen).matmulQ }

// quantDecodeTmpl are the code decoders of matmul_q, emitted ahead of each of
// its kernels (once per module, by the include guard). Each turns the four
// code bytes of a little-endian word into exact f32 values: the CPU backend
// (runtime/cpu/kern) decodes to the same bits.
//
// int8 puts byte b ^ 0x80 = q + 128 under the exponent of 2²³ and subtracts
// 2²³ + 128; int4 puts a nibble (q + 8) there and subtracts 2²³ + 8; both are
// exact integer arithmetic. fp8 E4M3 moves the sign to bit 31 and the other
// seven bits to bits 26..20 (an arithmetic shift does both), which reads as
// the value times 2⁻¹²⁰, and multiplies by 2¹²⁰: exact for every code, the
// subnormal codes included (their f32 image is a denormal, which f32
// arithmetic keeps without -ftz). Like kern.F8, the NaN codes 0x7f and 0xff
// decode to ±480; the compiler never emits them (it saturates at ±448).
var quantDecodeTmpl = kernelTemplate("quant_decode", `#ifndef PIO_QUANT_DECODE
#define PIO_QUANT_DECODE
__device__ __forceinline__ void pio_dq_int8(unsigned w, float o[4]) {
  w ^= 0x80808080u;
#pragma unroll
  for (int i = 0; i < 4; i++) o[i] = __uint_as_float(0x4b000000u | ((w >> (8 * i)) & 0xffu)) - 8388736.0f;
}
// pio_dq_int4: lo[i] is the low nibble of byte i (weight j + i of a 32-weight
// block), hi[i] its high nibble (weight j + 16 + i).
__device__ __forceinline__ void pio_dq_int4(unsigned w, float lo[4], float hi[4]) {
#pragma unroll
  for (int i = 0; i < 4; i++) {
    lo[i] = __uint_as_float(0x4b000000u | ((w >> (8 * i)) & 0xfu)) - 8388616.0f;
    hi[i] = __uint_as_float(0x4b000000u | ((w >> (8 * i + 4)) & 0xfu)) - 8388616.0f;
  }
}
// pio_f8e4m3 decodes the low byte of b.
__device__ __forceinline__ float pio_f8e4m3(unsigned b) {
  return __uint_as_float((unsigned)((int)(b << 24) >> 4) & 0x87f00000u) * __uint_as_float(0x7b800000u);
}
__device__ __forceinline__ void pio_dq_fp8(unsigned w, float o[4]) {
#pragma unroll
  for (int i = 0; i < 4; i++) o[i] = pio_f8e4m3(w >> (8 * i));
}
#endif`)

// mmq is one matmul_q instantiation; its exported fields and methods are
// the holes of the matmul_q templates.
type mmq struct {
	Format   string // int8, int4 or fp8
	n        int64  // W is [N, K]: N
	K, G     int64  // G weights per scale
	M        string // C expression of M (rows of x)
	RowBytes int64  // code bytes per row of W
	PerVec   int64  // weights per 16-byte code vector
}

// N is W's rows, the output columns.
func (m *mmq) N() int64 { return m.n }

// GS is the number of scales per row of W.
func (m *mmq) GS() int64 { return m.K / m.G }

// matmulQ handles matmul_q (x, codes, scales): y = x·Wᵀ with W decoded on
// the fly from its codes and group scales (layouts in ir/op_quant.go). Like
// matmul's SIMT path: a warp-per-output-column GEMV for up to WarpMaxRows
// rows (matmul's warpVariants: 4 rows per pass up to 4 rows, 16 above),
// which streams the codes as 16-byte vectors and decodes them in
// registers, and a 64×64 tiled kernel above, which decodes 32-deep slices of
// W into shared memory as f32 (scale·q, the CPU backend's decoded weights).
func (g *gen) matmulQ(step int, s ir.Step) error {
	xdt, xsh := g.operand(s.Args[0])
	cdt, csh := g.operand(s.Args[1])
	sdt, ssh := g.operand(s.Args[2])
	if xdt != ir.F32 {
		return fmt.Errorf("x dtype %v: want f32", xdt)
	}
	// Weights are allocated one by one (256-byte aligned), so every row of
	// codes starts on a 16-byte boundary (K is a multiple of 32).
	if s.Args[1].Kind != ir.RefWeight || s.Args[2].Kind != ir.RefWeight {
		return fmt.Errorf("codes and scales must be weights")
	}
	if len(xsh) == 0 || xsh.Last().Symbolic() || len(csh) != 2 || csh[0].Symbolic() {
		return fmt.Errorf("x %v, codes %v: want [..., K] and [N, ...]", xsh, csh)
	}
	m := mmq{Format: s.Attr().String("format"), n: int64(csh[0]), K: int64(xsh.Last()), G: s.Attr().Int("group")}
	wantDT, wantSh, err := ir.QuantCodes(m.Format, csh[0], xsh.Last())
	if err != nil {
		return err
	}
	if cdt != wantDT || !csh.Equal(wantSh) {
		return fmt.Errorf("codes %v%v: %s needs %v%v", cdt, csh, m.Format, wantDT, wantSh)
	}
	if m.G <= 0 || m.G%32 != 0 || m.K%m.G != 0 {
		return fmt.Errorf("group %d must be a positive multiple of 32 dividing K = %d", m.G, m.K)
	}
	if sdt != ir.F32 || !ssh.Equal(ir.Sh(csh[0], ir.Dim(m.GS()))) {
		return fmt.Errorf("scales %v%v: want f32[%d, %d]", sdt, ssh, m.n, m.GS())
	}
	m.RowBytes, m.PerVec = m.K, 16
	if m.Format == "int4" {
		m.RowBytes, m.PerVec = m.K/2, 32
	}
	rowsE, mExpr, err := rows(xsh, m.K)
	if err != nil {
		return err
	}
	m.M = mExpr

	const warps = 8
	for _, v := range warpVariants { // matmul.go: TR = 4 up to 4 rows, 16 (one pass over the codes) to 16
		warp, err := g.emit("matmul_q_warp", matmulQWarpTmpl, m.warpHoles(v.tr, warps))
		if err != nil {
			return err
		}
		g.launch(abi.Launch{Step: step, Kernel: warp, Params: stdParams(3), Block: warps * 32, MinRows: v.minRows, MaxRows: v.maxRows, Rows: rowsE,
			Grid: [3]abi.Expr{{Fixed: m.n, Div: warps}, {T: rowsE.T, S: rowsE.S, Fixed: rowsE.Fixed, Div: int64(v.tr)}, {Fixed: 1}}})
	}
	tile, err := g.emit("matmul_q_tile", matmulQTileTmpl, &m)
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: tile, Params: stdParams(3), Block: 256, MinRows: WarpMaxRows + 1, Rows: rowsE,
		Grid: [3]abi.Expr{{Fixed: m.n, Div: 64}, {T: rowsE.T, S: rowsE.S, Fixed: rowsE.Fixed, Div: 64}, {Fixed: 1}}})
	return nil
}

// CodeType is the C type of a format's codes, for the comments.
func (m *mmq) CodeType() string {
	switch m.Format {
	case "int8":
		return "i8"
	case "int4":
		return "u8"
	}
	return "f8e4m3"
}

// matmulQWarpHoles fill matmul_q_warp.
type matmulQWarpHoles struct {
	*mmq
	TR, Warps int   // rows per block row; warps per block, one per output column
	NV, U     int64 // code vectors per row; vectors per lane in flight
}

func (m *mmq) warpHoles(tr, warps int) matmulQWarpHoles {
	nv := m.RowBytes / 16
	return matmulQWarpHoles{mmq: m, TR: tr, Warps: warps, NV: nv, U: min(max((nv+31)/32, 1), int64(8))}
}

// Threads is the block size.
func (h matmulQWarpHoles) Threads() int { return h.Warps * 32 }

// mmqParams is the matmul_q kernels' parameter list.
const mmqParams = "const float* __restrict__ x, const unsigned char* __restrict__ q, const float* __restrict__ sc, float* __restrict__ y, int T, int S"

// matmulQWarpTmpl is the few-rows GEMV: one warp per output column, each lane
// streaming 16-byte code vectors and decoding them in registers. Word i of
// a vector holds its bytes 4i..4i+3: int8 and fp8 weights 4i..4i+3, int4
// weights 4i..4i+3 (low nibbles) and 16+4i..16+4i+3 (high nibbles).
var matmulQWarpTmpl = kernelTemplate("matmul_q_warp", `{{template "quant_decode"}}
// matmul_q ({{.Format}}, group {{.G}}), few rows: codes {{.CodeType}}[{{.N}}, {{.RowBytes}}], scales f32[{{.N}}, {{.GS}}]; one warp per output column, {{.TR}} rows per block row;
// each lane loads up to {{.U}} 16-byte code vectors ({{.PerVec}} weights each) before decoding them in registers.
extern "C" __global__ void __launch_bounds__({{.Threads}}) KNAME(`+mmqParams+`) {
  constexpr int TR = {{.TR}}, NV = {{.NV}}, WV = {{.PerVec}}, U = {{.U}};
  constexpr long K = {{.K}}, N = {{.N}}, GS = {{.GS}}, G = {{.G}};
  const long M = {{.M}};
  const int lane = threadIdx.x & 31;
  const long n = (long)blockIdx.x * {{.Warps}} + (threadIdx.x >> 5);
  const long m0 = (long)blockIdx.y * TR;
  if (n >= N) return;
  const uint4* qr = reinterpret_cast<const uint4*>(q + n * {{.RowBytes}}L);
  PIO_ALIGNED16(qr);
  const float* sr = sc + n * GS;
  float acc[TR];
#pragma unroll
  for (int r = 0; r < TR; r++) acc[r] = 0.f;
  for (int v0 = 0; v0 < NV; v0 += 32 * U) {
    uint4 c[U];
    float s[U];
#pragma unroll
    for (int i = 0; i < U; i++) {  // all loads first: decode is bound by the bytes in flight
      const int v = v0 + i * 32 + lane;
      if (v < NV) {
        c[i] = qr[v];
        s[i] = sr[v * WV / G];
      } else {
        c[i].x = c[i].y = c[i].z = c[i].w = 0u;
        s[i] = 0.f;
      }
    }
#pragma unroll
    for (int i = 0; i < U; i++) {
      const int v = v0 + i * 32 + lane;
      if (v < NV) {
        float w[WV];
{{- if eq .Format "int4"}}
        pio_dq_int4(c[i].x, w + 0, w + 16);
        pio_dq_int4(c[i].y, w + 4, w + 20);
        pio_dq_int4(c[i].z, w + 8, w + 24);
        pio_dq_int4(c[i].w, w + 12, w + 28);
{{- else}}
        pio_dq_{{.Format}}(c[i].x, w + 0);
        pio_dq_{{.Format}}(c[i].y, w + 4);
        pio_dq_{{.Format}}(c[i].z, w + 8);
        pio_dq_{{.Format}}(c[i].w, w + 12);
{{- end}}
#pragma unroll
        for (int r = 0; r < TR; r++) {
          if (m0 + r < M) {
            const float* xr = x + (m0 + r) * K + (long)v * WV;
            float p = 0.f;
#pragma unroll
            for (int e = 0; e < WV; e += 8) {
              float xv[8];
              pio_ld8(xr + e, xv);
#pragma unroll
              for (int j = 0; j < 8; j++) p = fmaf(xv[j], w[e + j], p);
            }
            acc[r] = fmaf(s[i], p, acc[r]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < TR; r++) {
    const float z = pio_warp_sum(acc[r]);
    if (lane == 0 && m0 + r < M) y[(m0 + r) * N + n] = z;
  }
}
`)

// matmulQTileTmpl is the many-rows kernel: 64×64 tiles, 32-deep k slices of W
// decoded into shared memory as f32 (scale·q), 4×4 outputs per thread.
var matmulQTileTmpl = kernelTemplate("matmul_q_tile", `{{template "quant_decode"}}
// matmul_q ({{.Format}}, group {{.G}}), many rows: codes {{.CodeType}}[{{.N}}, {{.RowBytes}}], scales f32[{{.N}}, {{.GS}}]; 64×64 tiles, 32-deep k slices decoded
// into shared memory as f32 (scale·q), 4×4 outputs per thread.
extern "C" __global__ void __launch_bounds__(256) KNAME(`+mmqParams+`) {
  constexpr long K = {{.K}}, N = {{.N}}, GS = {{.GS}}, G = {{.G}};
  const long M = {{.M}};
  __shared__ float xs[32][64 + 4];
  __shared__ float ws[32][64 + 4];
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const int lr = tid >> 2, lp = tid & 3;  // loads: row lr of the tile, part lp of the slice
  const long m0 = (long)blockIdx.y * 64;
  const long n0 = (long)blockIdx.x * 64;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j] = 0.f;
  for (long k0 = 0; k0 < K; k0 += 32) {
    {
      const long gm = m0 + lr;
      float xv[8];
      if (gm < M) {
        pio_ld8(x + gm * K + k0 + lp * 8, xv);
      } else {
#pragma unroll
        for (int e = 0; e < 8; e++) xv[e] = 0.f;
      }
#pragma unroll
      for (int e = 0; e < 8; e++) xs[lp * 8 + e][lr] = xv[e];
    }
    {
      const long gn = n0 + lr;
      float wv[8];  // the weights this thread stores, at columns col[e] of the slice
{{- if eq .Format "int4"}}
{{- /* Part lp holds bytes 4lp..4lp+3 of the slice's block: weights 4lp+i and 16+4lp+i. */}}
      if (gn < N) {
        const float s = sc[gn * GS + k0 / G];
        pio_dq_int4(*reinterpret_cast<const unsigned*>(q + gn * (K / 2) + k0 / 2 + lp * 4), wv, wv + 4);
#pragma unroll
        for (int e = 0; e < 8; e++) wv[e] = s * wv[e];
      } else {
#pragma unroll
        for (int e = 0; e < 8; e++) wv[e] = 0.f;
      }
#pragma unroll
      for (int e = 0; e < 4; e++) {
        ws[lp * 4 + e][lr] = wv[e];
        ws[16 + lp * 4 + e][lr] = wv[4 + e];
      }
    }
{{- else}}
      if (gn < N) {
        const float s = sc[gn * GS + k0 / G];
        const unsigned* qw = reinterpret_cast<const unsigned*>(q + gn * K + k0 + lp * 8);
        pio_dq_{{.Format}}(qw[0], wv);
        pio_dq_{{.Format}}(qw[1], wv + 4);
#pragma unroll
        for (int e = 0; e < 8; e++) wv[e] = s * wv[e];
      } else {
#pragma unroll
        for (int e = 0; e < 8; e++) wv[e] = 0.f;
      }
#pragma unroll
      for (int e = 0; e < 8; e++) ws[lp * 8 + e][lr] = wv[e];
    }
{{- end}}
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < 32; kk++) {
      float a[4], bw[4];
#pragma unroll
      for (int i = 0; i < 4; i++) {
        a[i] = xs[kk][ty * 4 + i];
        bw[i] = ws[kk][tx * 4 + i];
      }
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], bw[j], acc[i][j]);
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
      if (gn < N) y[gm * N + gn] = acc[i][j];
    }
  }
}
`)
