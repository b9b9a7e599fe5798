package cuda

import (
	"fmt"
	"strings"

	"github.com/inference-pio/pio/ir"
)

// The quantized-weights family: matmul_q (ir/op_quant.go) is the only one of
// its ops left in a plan (quantize runs at build time).
func init() { templates[ir.OpMatMulQ] = (*gen).matmulQ }

// quantDecode are the code decoders of matmul_q, emitted ahead of each of
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
const quantDecode = `#ifndef PIO_QUANT_DECODE
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
#endif
`

// mmq is one matmul_q instantiation.
type mmq struct {
	format   string // int8, int4 or fp8
	n, k, g  int64  // W is [n, k], g weights per scale
	mExpr    string // C expression of M (rows of x)
	rowBytes int64  // code bytes per row of W
	perVec   int64  // weights per 16-byte code vector
}

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
	m := mmq{format: s.Attr().String("format"), n: int64(csh[0]), k: int64(xsh.Last()), g: s.Attr().Int("group")}
	wantDT, wantSh, err := ir.QuantCodes(m.format, csh[0], xsh.Last())
	if err != nil {
		return err
	}
	if cdt != wantDT || !csh.Equal(wantSh) {
		return fmt.Errorf("codes %v%v: %s needs %v%v", cdt, csh, m.format, wantDT, wantSh)
	}
	if m.g <= 0 || m.g%32 != 0 || m.k%m.g != 0 {
		return fmt.Errorf("group %d must be a positive multiple of 32 dividing K = %d", m.g, m.k)
	}
	if sdt != ir.F32 || !ssh.Equal(ir.Sh(csh[0], ir.Dim(m.k/m.g))) {
		return fmt.Errorf("scales %v%v: want f32[%d, %d]", sdt, ssh, m.n, m.k/m.g)
	}
	m.rowBytes, m.perVec = m.k, 16
	if m.format == "int4" {
		m.rowBytes, m.perVec = m.k/2, 32
	}
	rowsE, mExpr, err := rows(xsh, m.k)
	if err != nil {
		return err
	}
	m.mExpr = mExpr

	const warps = 8
	for _, v := range warpVariants { // matmul.go: TR = 4 up to 4 rows, 16 (one pass over the codes) to 16
		warp := g.kernel("matmul_q_warp", m.warpKernel(v.tr, warps))
		g.launch(Launch{Step: step, Kernel: warp, Params: stdParams(3), Block: warps * 32, MinRows: v.minRows, MaxRows: v.maxRows, Rows: rowsE,
			Grid: [3]Expr{{Fixed: m.n, Div: warps}, {T: rowsE.T, S: rowsE.S, Fixed: rowsE.Fixed, Div: int64(v.tr)}, {Fixed: 1}}})
	}
	tile := g.kernel("matmul_q_tile", m.tileKernel())
	g.launch(Launch{Step: step, Kernel: tile, Params: stdParams(3), Block: 256, MinRows: WarpMaxRows + 1, Rows: rowsE,
		Grid: [3]Expr{{Fixed: m.n, Div: 64}, {T: rowsE.T, S: rowsE.S, Fixed: rowsE.Fixed, Div: 64}, {Fixed: 1}}})
	return nil
}

// codeType is the C type of a format's codes, for the comments and
// parameter list.
func (m *mmq) codeType() string {
	switch m.format {
	case "int8":
		return "i8"
	case "int4":
		return "u8"
	}
	return "f8e4m3"
}

func (m *mmq) decl() string {
	return "const float* __restrict__ x, const unsigned char* __restrict__ q, const float* __restrict__ sc, float* __restrict__ y, int T, int S"
}

// decodeVec is the C code decoding the 16-byte vector c (a uint4) into the
// float array w of m.perVec weights, in weight order.
func (m *mmq) decodeVec(c, w string) string {
	var b strings.Builder
	for i, f := range []string{"x", "y", "z", "w"} {
		switch m.format {
		case "int4": // word i: bytes 4i..4i+3 of the block
			fmt.Fprintf(&b, "        pio_dq_int4(%[1]s.%[2]s, %[3]s + %[4]d, %[3]s + %[5]d);\n", c, f, w, 4*i, 16+4*i)
		default:
			fmt.Fprintf(&b, "        pio_dq_%[1]s(%[2]s.%[3]s, %[4]s + %[5]d);\n", m.format, c, f, w, 4*i)
		}
	}
	return b.String()
}

func (m *mmq) warpKernel(tr, warps int) string {
	nv := m.rowBytes / 16                  // code vectors per row
	u := min(max((nv+31)/32, 1), int64(8)) // vectors per lane in flight
	var b strings.Builder
	b.WriteString(quantDecode)
	fmt.Fprintf(&b, "// matmul_q (%s, group %d), few rows: codes %s[%d, %d], scales f32[%d, %d]; one warp per output column, %d rows per block row;\n",
		m.format, m.g, m.codeType(), m.n, m.rowBytes, m.n, m.k/m.g, tr)
	fmt.Fprintf(&b, "// each lane loads up to %d 16-byte code vectors (%d weights each) before decoding them in registers.\n", u, m.perVec)
	fmt.Fprintf(&b, "extern \"C\" __global__ void __launch_bounds__(%d) KNAME(%s) {\n", warps*32, m.decl())
	fmt.Fprintf(&b, "  constexpr int TR = %d, NV = %d, WV = %d, U = %d;\n  constexpr long K = %d, N = %d, GS = %d, G = %d;\n", tr, nv, m.perVec, u, m.k, m.n, m.k/m.g, m.g)
	fmt.Fprintf(&b, "  const long M = %s;\n", m.mExpr)
	fmt.Fprintf(&b, "  const int lane = threadIdx.x & 31;\n  const long n = (long)blockIdx.x * %d + (threadIdx.x >> 5);\n", warps)
	b.WriteString(`  const long m0 = (long)blockIdx.y * TR;
  if (n >= N) return;
`)
	fmt.Fprintf(&b, "  const uint4* qr = reinterpret_cast<const uint4*>(q + n * %dL);\n", m.rowBytes)
	b.WriteString(`  PIO_ALIGNED16(qr);
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
`)
	b.WriteString(m.decodeVec("c[i]", "w"))
	b.WriteString(`#pragma unroll
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
	return b.String()
}

func (m *mmq) tileKernel() string {
	var b strings.Builder
	b.WriteString(quantDecode)
	fmt.Fprintf(&b, "// matmul_q (%s, group %d), many rows: codes %s[%d, %d], scales f32[%d, %d]; 64×64 tiles, 32-deep k slices decoded\n",
		m.format, m.g, m.codeType(), m.n, m.rowBytes, m.n, m.k/m.g)
	b.WriteString("// into shared memory as f32 (scale·q), 4×4 outputs per thread.\n")
	fmt.Fprintf(&b, "extern \"C\" __global__ void __launch_bounds__(256) KNAME(%s) {\n", m.decl())
	fmt.Fprintf(&b, "  constexpr long K = %d, N = %d, GS = %d, G = %d;\n  const long M = %s;\n", m.k, m.n, m.k/m.g, m.g, m.mExpr)
	b.WriteString(`  __shared__ float xs[32][64 + 4];
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
`)
	if m.format == "int4" {
		// Part lp holds bytes 4lp..4lp+3 of the slice's block: weights
		// 4lp+i and 16+4lp+i.
		b.WriteString(`      if (gn < N) {
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
`)
	} else {
		fmt.Fprintf(&b, `      if (gn < N) {
        const float s = sc[gn * GS + k0 / G];
        const unsigned* qw = reinterpret_cast<const unsigned*>(q + gn * K + k0 + lp * 8);
        pio_dq_%[1]s(qw[0], wv);
        pio_dq_%[1]s(qw[1], wv + 4);
#pragma unroll
        for (int e = 0; e < 8; e++) wv[e] = s * wv[e];
      } else {
#pragma unroll
        for (int e = 0; e < 8; e++) wv[e] = 0.f;
      }
#pragma unroll
      for (int e = 0; e < 8; e++) ws[lp * 8 + e][lr] = wv[e];
    }
`, m.format)
	}
	b.WriteString(`    __syncthreads();
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
	return b.String()
}
