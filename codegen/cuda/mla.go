package cuda

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/inference-pio/pio/ir"
)

// Templates of multi-head latent attention and its helpers (ir/op_moe.go:
// slice, head_matmul, mla_attention), with the semantics of
// runtime/cpu/mla.go.
//
// mla_attention appends each token's c_kv [R] and k_rope [Dr] to the
// latent cache (ir.CacheLatent: entry pools PCacheK and PCacheV), then runs
// the absorbed form: one block per token streams that token's sequence of
// latent entries through shared memory, a chunk of positions at a time, and
// every head of the token scores and accumulates against the same chunk (one
// pass over the latent stream serves all heads), with an online softmax in
// f32. Prefill uses the same kernel (each token sees positions 0..its own).

func init() {
	templates[ir.OpSlice] = (*gen).moeSlice // the one slice template (ir/op_moe.go), used by every family
	templates[ir.OpHeadMatMul] = (*gen).headMatMul
	templates[ir.OpMLAAttention] = (*gen).mlaAttention
}

func (g *gen) moeSlice(step int, s ir.Step) error {
	xdt, xsh := g.operand(s.Args[0])
	xt, err := ctype(xdt)
	if err != nil {
		return err
	}
	d := int64(xsh.Last())
	start, n := s.Attrs.Int("start", 0), s.Attrs.Int("len", 0)
	grid, nrows, err := rows(xsh, d)
	if err != nil {
		return err
	}
	name := g.kernel("slice", fmt.Sprintf(`// slice: y[r, :] = x[r, %[2]d:%[3]d] over rows of %[4]d.
extern "C" __global__ void __launch_bounds__(128) KNAME(const %[1]s* __restrict__ x, float* __restrict__ y, int T, int S) {
  const long r = blockIdx.x;
  if (r >= %[5]s) return;
  for (int c = threadIdx.x; c < %[6]d; c += blockDim.x) y[r * %[6]dL + c] = pio_f32(x[r * %[4]dL + %[2]d + c]);
}
`, xt, start, start+n, d, nrows, n))
	g.launch(Launch{Step: step, Kernel: name, Params: stdParams(1), Block: 128, Grid: [3]Expr{grid, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

func (g *gen) headMatMul(step int, s ir.Step) error {
	xdt, xsh := g.operand(s.Args[0])
	wdt, wsh := g.operand(s.Args[1])
	xt, err := ctype(xdt)
	if err != nil {
		return err
	}
	wt, err := ctype(wdt)
	if err != nil {
		return err
	}
	heads, r := int64(xsh[1]), int64(wsh[1])
	per := int64(wsh[0]) / heads
	start, nrows := s.Attrs.Int("start", 0), s.Attrs.Int("rows", 0)
	if s.Attrs.Int("transpose", 0) == 1 {
		// y[t,h,c] = Σ_n B_h[n,c]·x[t,h,n]: one thread per output, the
		// weight rows read coalesced along c.
		name := g.kernel("head_matmul_t", fmt.Sprintf(`// head_matmul_t: y[t, h, c] = Σ_n W[h·%[3]d + %[4]d + n, c]·x[t, h, n], n < %[5]d, c < %[6]d, %[7]d heads; W %[2]s.
extern "C" __global__ void __launch_bounds__(256) KNAME(const %[1]s* __restrict__ x, const %[2]s* __restrict__ w, float* __restrict__ y, int T, int S) {
  const long o = (long)blockIdx.x * 256 + threadIdx.x;
  if (o >= (long)T * %[7]d * %[6]d) return;
  const long th = o / %[6]d, c = o %% %[6]d, h = th %% %[7]d;
  const %[1]s* xr = x + th * %[5]dL;
  const %[2]s* wb = w + (h * %[3]dL + %[4]d) * %[6]dL + c;
  float acc = 0.f;
  for (int n = 0; n < %[5]d; n++) acc = fmaf(pio_f32(wb[(long)n * %[6]d]), pio_f32(xr[n]), acc);
  y[o] = acc;
}
`, xt, wt, per, start, nrows, r, heads))
		g.launch(Launch{Step: step, Kernel: name, Params: stdParams(2), Block: 256,
			Grid: [3]Expr{{T: heads * r, Div: 256}, {Fixed: 1}, {Fixed: 1}}})
		return nil
	}
	// y[t,h,n] = B_h[n]·x[t,h]: one warp per output.
	name := g.kernel("head_matmul", fmt.Sprintf(`// head_matmul: y[t, h, n] = W[h·%[3]d + %[4]d + n]·x[t, h], n < %[5]d, rows of %[6]d, %[7]d heads; W %[2]s.
extern "C" __global__ void __launch_bounds__(256) KNAME(const %[1]s* __restrict__ x, const %[2]s* __restrict__ w, float* __restrict__ y, int T, int S) {
  const long o = (long)blockIdx.x * 8 + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (o >= (long)T * %[7]d * %[5]d) return;
  const long th = o / %[5]d, n = o %% %[5]d, h = th %% %[7]d;
  const %[1]s* xr = x + th * %[6]dL;
  const %[2]s* wr = w + (h * %[3]dL + %[4]d + n) * %[6]dL;
  float acc = 0.f;
  for (int c = lane; c < %[6]d; c += 32) acc = fmaf(pio_f32(wr[c]), pio_f32(xr[c]), acc);
  acc = pio_warp_sum(acc);
  if (lane == 0) y[o] = acc;
}
`, xt, wt, per, start, nrows, r, heads))
	g.launch(Launch{Step: step, Kernel: name, Params: stdParams(2), Block: 256,
		Grid: [3]Expr{{T: heads * nrows, Div: 8}, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

// mlaWarps is the warps of an mla_attention block.
const mlaWarps = 8

func (g *gen) mlaAttention(step int, s ir.Step) error {
	for i := range s.Args {
		if dt, _ := g.operand(s.Args[i]); dt != ir.F32 {
			return fmt.Errorf("operand %d has dtype %v: want f32", i, dt)
		}
	}
	_, qsh := g.operand(s.Args[0])
	_, rsh := g.operand(s.Args[1])
	heads, r, dr := int(qsh[1]), int(qsh[2]), int(rsh[2])
	ci := int(s.Attrs.Int("cache", -1))
	if ci < 0 || ci >= len(g.p.Caches) {
		return fmt.Errorf("cache %d not declared", ci)
	}
	c := g.p.Caches[ci]
	if c.Kind != ir.CacheLatent || len(c.Entries) != 2 || !c.Entries[0].Equal(ir.Sh(ir.Dim(r))) || !c.Entries[1].Equal(ir.Sh(ir.Dim(dr))) {
		return fmt.Errorf("cache %d (%v %v) does not hold c_kv [%d] and k_rope [%d]", ci, c.Kind, c.Entries, r, dr)
	}
	ct, err := ctype(c.DType)
	if err != nil {
		return fmt.Errorf("cache %d: %w", ci, err)
	}
	// 1. Append c_kv and k_rope.
	appendK := g.kernel("latent_append", fmt.Sprintf(`// latent_append: cache[slot(t)] = c_kv[t] [%[2]d], k_rope[t] [%[3]d]; cache %[1]s.
extern "C" __global__ void __launch_bounds__(128) KNAME(const float* __restrict__ ckv, const float* __restrict__ kr, %[1]s* __restrict__ cc, %[1]s* __restrict__ kc,
    const int* __restrict__ positions, const int* __restrict__ seq_of_token, const int* __restrict__ block_tables, int max_blocks, int block_size, int T) {
  const long t = blockIdx.x;
  if (t >= T) return;
  const int p = positions[t];
  const long slot = (long)block_tables[(long)seq_of_token[t] * max_blocks + p / block_size] * block_size + p %% block_size;
  for (int i = threadIdx.x; i < %[2]d; i += blockDim.x) pio_st(cc + slot * %[2]dL + i, ckv[t * %[2]dL + i]);
  for (int i = threadIdx.x; i < %[3]d; i += blockDim.x) pio_st(kc + slot * %[3]dL + i, kr[t * %[3]dL + i]);
}
`, ct, r, dr))
	g.launch(Launch{Step: step, Kernel: appendK, Block: 128, Grid: [3]Expr{{T: 1}, {Fixed: 1}, {Fixed: 1}},
		Params: append([]Param{{Kind: PArg, Index: 2}, {Kind: PArg, Index: 3}, {Kind: PCacheK, Index: uint16(ci)}, {Kind: PCacheV, Index: uint16(ci)},
			{Kind: PPositions}, {Kind: PSeqOfToken}}, append(pagedMeta(), Param{Kind: PT})...)})

	// 2. Attention: a chunk of BK positions of latent entries in shared
	// memory; warp w owns heads w, w+8, ...; lane l owns channels l, l+32, ...
	bk := 32
	for bk > 1 && bk*(r+dr+mlaWarps)*4 > staticSmem {
		bk /= 2
	}
	hpw := (heads + mlaWarps - 1) / mlaWarps
	rc, drc := (r+31)/32, (dr+31)/32
	prefillEpi := `#pragma unroll
  for (int hh = 0; hh < HPW; hh++) {
    const int h = warp + hh * %[11]d;
    if (h >= H) break;
    const float inv = 1.0f / l[hh];
#pragma unroll
    for (int i = 0; i < RC; i++) {
      const int c = lane + 32 * i;
      if (c < R) y[(t * H + h) * R + c] = acc[hh][i] * inv;
    }
  }
`
	decodeEpi := `#pragma unroll
  for (int hh = 0; hh < HPW; hh++) {
    const int h = warp + hh * %[11]d;
    if (h >= H) break;
    float* o = ws + ((t * H + h) * (long)splits + blockIdx.z) * (R + 2);
    if (lane == 0) { o[0] = m[hh]; o[1] = l[hh]; }
#pragma unroll
    for (int i = 0; i < RC; i++) {
      const int c = lane + 32 * i;
      if (c < R) o[2 + c] = acc[hh][i];
    }
  }
`
	// The epilogues go in as arguments, so their own verb is filled here.
	prefillEpi = strings.ReplaceAll(prefillEpi, "%[11]d", strconv.Itoa(mlaWarps))
	decodeEpi = strings.ReplaceAll(decodeEpi, "%[11]d", strconv.Itoa(mlaWarps))
	emit := func(decode bool) string {
		what, sig, rng, epi := "prefill: one block per token", "float* y, ", "  const int lo = 0, hi = n;\n", prefillEpi
		if decode {
			what = fmt.Sprintf("decode: one block per (token, split of %d positions), partial (m, l, o) per head into the workspace", SplitSize)
			sig = "float* __restrict__ ws, int splits, "
			rng = fmt.Sprintf("  const int lo = blockIdx.z * %d, hi = min(n, lo + %d);\n", SplitSize, SplitSize)
			epi = decodeEpi
		}
		return g.kernel("mla_attention", fmt.Sprintf(`// mla_attention (%[12]s): absorbed causal latent attention, %[2]d heads, latent %[3]d, rope %[4]d, scale %[5]s; %[6]d positions per chunk shared by all heads (q may be y: a warp reads its heads' q before it writes them).
extern "C" __global__ void __launch_bounds__(%[7]d) KNAME(const float* ql, const float* __restrict__ qr, const %[1]s* __restrict__ cc, const %[1]s* __restrict__ kc, %[13]s
    const int* __restrict__ positions, const int* __restrict__ seq_of_token, const int* __restrict__ block_tables, int max_blocks, int block_size, int T) {
  constexpr int H = %[2]d, R = %[3]d, DR = %[4]d, BK = %[6]d, HPW = %[8]d, RC = %[9]d, DRC = %[10]d;
  __shared__ float cs[BK][R];
  __shared__ float ks[BK][DR];
  __shared__ float ps[%[11]d][BK];
  const long t = blockIdx.x;
  if (t >= T) return;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int n = positions[t] + 1;
  const int* bt = block_tables + (long)seq_of_token[t] * max_blocks;
  float q[HPW][RC], qp[HPW][DRC], acc[HPW][RC], m[HPW], l[HPW];
#pragma unroll
  for (int hh = 0; hh < HPW; hh++) {
    const int h = warp + hh * %[11]d;
    m[hh] = -INFINITY;
    l[hh] = 0.f;
#pragma unroll
    for (int i = 0; i < RC; i++) {
      const int c = lane + 32 * i;
      q[hh][i] = h < H && c < R ? ql[(t * H + h) * R + c] : 0.f;
      acc[hh][i] = 0.f;
    }
#pragma unroll
    for (int i = 0; i < DRC; i++) {
      const int c = lane + 32 * i;
      qp[hh][i] = h < H && c < DR ? qr[(t * H + h) * DR + c] : 0.f;
    }
  }
%[14]s  for (int j0 = lo; j0 < hi; j0 += BK) {
    const int nb = min(BK, hi - j0);
    __syncthreads();
    for (int e = threadIdx.x; e < nb * R; e += blockDim.x) {
      const int j = e / R, c = e %% R, pos = j0 + j;
      const long slot = (long)bt[pos / block_size] * block_size + pos %% block_size;
      cs[j][c] = pio_f32(cc[slot * R + c]);
    }
    for (int e = threadIdx.x; e < nb * DR; e += blockDim.x) {
      const int j = e / DR, c = e %% DR, pos = j0 + j;
      const long slot = (long)bt[pos / block_size] * block_size + pos %% block_size;
      ks[j][c] = pio_f32(kc[slot * DR + c]);
    }
    __syncthreads();
#pragma unroll
    for (int hh = 0; hh < HPW; hh++) {
      const int h = warp + hh * %[11]d;
      if (h >= H) break;
      float cm = -INFINITY;
      for (int j = 0; j < nb; j++) {
        float d = 0.f;
#pragma unroll
        for (int i = 0; i < RC; i++) {
          const int c = lane + 32 * i;
          if (c < R) d = fmaf(q[hh][i], cs[j][c], d);
        }
        float dp = 0.f;
#pragma unroll
        for (int i = 0; i < DRC; i++) {
          const int c = lane + 32 * i;
          if (c < DR) dp = fmaf(qp[hh][i], ks[j][c], dp);
        }
        const float sc = __fmul_rn(__fadd_rn(pio_warp_sum(d), pio_warp_sum(dp)), %[5]s);
        if (lane == 0) ps[warp][j] = sc;
        cm = fmaxf(cm, sc);
      }
      __syncwarp();
      const float mn = fmaxf(m[hh], cm);
      const float corr = expf(m[hh] - mn);
      l[hh] *= corr;
#pragma unroll
      for (int i = 0; i < RC; i++) acc[hh][i] *= corr;
      for (int j = 0; j < nb; j++) {
        const float p = expf(ps[warp][j] - mn);
        l[hh] += p;
#pragma unroll
        for (int i = 0; i < RC; i++) {
          const int c = lane + 32 * i;
          if (c < R) acc[hh][i] = fmaf(p, cs[j][c], acc[hh][i]);
        }
      }
      m[hh] = mn;
      __syncwarp();
    }
  }
%[15]s}
`, ct, heads, r, dr, cf(s.Attrs.Float("scale", 0)), bk, mlaWarps*32, hpw, rc, drc, mlaWarps, what, sig, rng, epi))
	}
	head := []Param{{Kind: PArg, Index: 0}, {Kind: PArg, Index: 1}, {Kind: PCacheK, Index: uint16(ci)}, {Kind: PCacheV, Index: uint16(ci)}}
	tail := append([]Param{{Kind: PPositions}, {Kind: PSeqOfToken}}, append(pagedMeta(), Param{Kind: PT})...)
	g.launch(Launch{Step: step, Kernel: emit(false), Block: mlaWarps * 32, Mode: Prefill, Grid: [3]Expr{{T: 1}, {Fixed: 1}, {Fixed: 1}},
		Params: append(append(head, Param{Kind: POut}), tail...)})
	g.launch(Launch{Step: step, Kernel: emit(true), Block: mlaWarps * 32, Mode: Decode, Workspace: int64(heads * (r + 2)),
		Grid: [3]Expr{{T: 1}, {Fixed: 1}, {Splits: 1}}, Params: append(append(head, Param{Kind: PWorkspace}, Param{Kind: PSplits}), tail...)})
	g.launch(Launch{Step: step, Kernel: g.kernel("mla_combine", fmt.Sprintf(mlaCombineText, heads, r, SplitSize)), Block: 128, Mode: Decode,
		Grid: [3]Expr{{T: 1}, {Fixed: int64(heads)}, {Fixed: 1}}, Params: []Param{{Kind: PWorkspace}, {Kind: POut}, {Kind: PPositions}, {Kind: PSplits}}})
	return nil
}

// mlaCombineText merges the decode splits of mla_attention (heads, latent
// dim, split size): y = Σ_z e^{m_z - m}·o_z / Σ_z e^{m_z - m}·l_z.
const mlaCombineText = `// mla_combine: merges the decode splits of %[1]d heads, latent %[2]d.
extern "C" __global__ void __launch_bounds__(128) KNAME(const float* __restrict__ ws, float* __restrict__ y, const int* __restrict__ positions, int splits) {
  constexpr int H = %[1]d, R = %[2]d;
  const long t = blockIdx.x;
  const int h = blockIdx.y;
  const int n = min(splits, positions[t] / %[3]d + 1);
  const float* base = ws + (t * H + h) * (long)splits * (R + 2);
  float mx = -INFINITY;
  for (int z = 0; z < n; z++) mx = fmaxf(mx, base[z * (R + 2)]);
  float sum = 0.f;
  for (int z = 0; z < n; z++) {
    const float mz = base[z * (R + 2)];
    if (mz != -INFINITY) sum += base[z * (R + 2) + 1] * expf(mz - mx);
  }
  const float inv = 1.0f / sum;
  for (int c = threadIdx.x; c < R; c += blockDim.x) {
    float o = 0.f;
    for (int z = 0; z < n; z++) {
      const float mz = base[z * (R + 2)];
      if (mz != -INFINITY) o += base[z * (R + 2) + 2 + c] * expf(mz - mx);
    }
    y[(t * H + h) * R + c] = o * inv;
  }
}
`
