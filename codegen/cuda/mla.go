package cuda

import (
	"fmt"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
)

// Templates of multi-head latent attention and its helpers (ir/op_moe.go:
// head_matmul, mla_attention), with the semantics of runtime/cpu/mla.go.
//
// mla_attention appends each token's c_kv [R] and k_rope [Dr] to the
// latent cache (ir.CacheLatent: entry pools PCacheK and PCacheV), then runs
// the absorbed form, with an online softmax in f32. Prefill (mla_prefill)
// is tiled like attn_prefill: a block takes a few tokens of a prefill tile
// × heads and streams the sequence's latent entries through shared memory
// once for all of them (mlaPrefillText has the byte counts). Decode
// (mla_attention, mla_combine) is one block per (token, split of SplitSize
// positions), every head of the token scoring and accumulating against the
// same chunk, and a combine of the splits.

func init() {
	templates[ir.OpHeadMatMul] = (*gen).headMatMul
	templates[ir.OpMLAAttention] = (*gen).mlaAttention
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
	start, nrows := s.Attr().Int("start"), s.Attr().Int("rows")
	h := headMatMulHoles{XT: xt, WT: wt, Per: per, Start: start, Rows: nrows, R: r, Heads: heads}
	if s.Attr().Bool("transpose") {
		name, err := g.emit("head_matmul_t", headMatMulTransposedTmpl, h)
		if err != nil {
			return err
		}
		g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(2), Block: 256,
			Grid: [3]abi.Expr{{T: heads * r, Div: 256}, {Fixed: 1}, {Fixed: 1}}})
		return nil
	}
	name, err := g.emit("head_matmul", headMatMulTmpl, h)
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(2), Block: 256,
		Grid: [3]abi.Expr{{T: heads * nrows, Div: 8}, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

// headMatMulHoles fill head_matmul and head_matmul_t: rows Start..Start+Rows
// of each head's Per rows of W (rows of R), Heads heads.
type headMatMulHoles struct {
	XT, WT                     string
	Per, Start, Rows, R, Heads int64
}

// headMatMulTransposedTmpl is y[t,h,c] = Σ_n B_h[n,c]·x[t,h,n]: one thread per output,
// the weight rows read coalesced along c.
var headMatMulTransposedTmpl = kernelTemplate("head_matmul_t", `// head_matmul_t: y[t, h, c] = Σ_n W[h·{{.Per}} + {{.Start}} + n, c]·x[t, h, n], n < {{.Rows}}, c < {{.R}}, {{.Heads}} heads; W {{.WT}}.
extern "C" __global__ void __launch_bounds__(256) KNAME(const {{.XT}}* __restrict__ x, const {{.WT}}* __restrict__ w, float* __restrict__ y, int T, int S) {
  const long o = (long)blockIdx.x * 256 + threadIdx.x;
  if (o >= (long)T * {{.Heads}} * {{.R}}) return;
  const long th = o / {{.R}}, c = o % {{.R}}, h = th % {{.Heads}};
  const {{.XT}}* xr = x + th * {{.Rows}}L;
  const {{.WT}}* wb = w + (h * {{.Per}}L + {{.Start}}) * {{.R}}L + c;
  float acc = 0.f;
  for (int n = 0; n < {{.Rows}}; n++) acc = fmaf(pio_f32(wb[(long)n * {{.R}}]), pio_f32(xr[n]), acc);
  y[o] = acc;
}
`)

// headMatMulTmpl is y[t,h,n] = B_h[n]·x[t,h]: one warp per output.
var headMatMulTmpl = kernelTemplate("head_matmul", `// head_matmul: y[t, h, n] = W[h·{{.Per}} + {{.Start}} + n]·x[t, h], n < {{.Rows}}, rows of {{.R}}, {{.Heads}} heads; W {{.WT}}.
extern "C" __global__ void __launch_bounds__(256) KNAME(const {{.XT}}* __restrict__ x, const {{.WT}}* __restrict__ w, float* __restrict__ y, int T, int S) {
  const long o = (long)blockIdx.x * 8 + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (o >= (long)T * {{.Heads}} * {{.Rows}}) return;
  const long th = o / {{.Rows}}, n = o % {{.Rows}}, h = th % {{.Heads}};
  const {{.XT}}* xr = x + th * {{.R}}L;
  const {{.WT}}* wr = w + (h * {{.Per}}L + {{.Start}} + n) * {{.R}}L;
  float acc = 0.f;
  for (int c = lane; c < {{.R}}; c += 32) acc = fmaf(pio_f32(wr[c]), pio_f32(xr[c]), acc);
  acc = pio_warp_sum(acc);
  if (lane == 0) y[o] = acc;
}
`)

// mlaWarps is the warps of an mla_attention block.
const mlaWarps = 8

// mlaRegBudget is the registers per thread a prefill block's rows may take
// (q, accumulator, m, l and four scores in flight per row) of the 255 a
// thread of a 256-thread block may have; the rest go to indices and
// addresses.
const mlaRegBudget = 200

// mlaTile is the geometry of the tiled MLA prefill kernel: a block takes
// bt consecutive tokens of one prefill tile × hb heads, rows of (token,
// head), rpw rows per warp, and streams bk positions of latent entries
// through shared memory at a time.
type mlaTile struct {
	hb, hg  int // heads per block; head groups (hb·hg = H)
	bt, sub int // tokens per block; blocks per prefill tile along its tokens
	rows    int // hb·bt
	rpw     int // rows per warp
	bk      int // positions per shared-memory chunk
}

// mlaPrefillTile chooses the prefill geometry for heads heads of latent r
// and rope dr, and prefill tiles of at most tile tokens.
//
// Estimate. A row keeps its q (r + dr channels) and its unnormalised
// output (r) in registers across all chunks, its lane holding channels
// lane, lane+32, ...: 2·⌈r/32⌉ + ⌈dr/32⌉ + 2 (m, l) + 4 (scores in flight)
// registers per row per thread; at GLM-4.7-Flash's widths (r 512, dr 64)
// 40, so mlaRegBudget affords 5 rows per warp, 40 rows per block of 8
// warps: 2 tokens × 20 heads. The accumulators are what bounds it: 40 rows
// are 40·(576 + 512) floats, two thirds of the 64K registers of an SM, so
// a tile of 16 tokens × 20 heads (320 rows) cannot live in one block, and
// latent reuse per block is rows/H. Shared memory: bk positions of c_kv
// and k_rope (bk·(r + dr)·4 B), the chunk's scores (rows·bk·4 B) and cache
// slots (bk·8 B): bk = 16 at these widths, 36 + 2.5 + 0.1 KB ≤ 48 KB static.
func mlaPrefillTile(heads, r, dr, tile int) (mlaTile, error) {
	perRow := 2*((r+31)/32) + (dr+31)/32 + 6
	rpw := min(max(mlaRegBudget/perRow, 1), 8)
	maxRows := mlaWarps * rpw
	var t mlaTile
	for hb := 1; hb <= min(heads, maxRows); hb++ {
		if heads%hb != 0 {
			continue
		}
		if bt := min(maxRows/hb, tile); hb*bt >= t.rows {
			t.hb, t.bt, t.rows = hb, bt, hb*bt
		}
	}
	if t.rows == 0 {
		return t, fmt.Errorf("no prefill tile for %d heads", heads)
	}
	t.hg, t.sub, t.rpw = heads/t.hb, (tile+t.bt-1)/t.bt, (t.rows+mlaWarps-1)/mlaWarps
	for _, bk := range []int{32, 16, 8} {
		if bk*(r+dr)*4+t.rpw*mlaWarps*bk*4+bk*8 <= staticSmem {
			t.bk = bk
			return t, nil
		}
	}
	return t, fmt.Errorf("latent %d + rope %d does not fit %d bytes of shared memory at 8 positions a chunk", r, dr, staticSmem)
}

func (g *gen) mlaAttention(step int, s ir.Step) error {
	for i := range s.Args {
		if dt, _ := g.operand(s.Args[i]); dt != ir.F32 {
			return fmt.Errorf("operand %d has dtype %v: want f32", i, dt)
		}
	}
	_, qsh := g.operand(s.Args[0])
	_, rsh := g.operand(s.Args[1])
	heads, r, dr := int(qsh[1]), int(qsh[2]), int(rsh[2])
	ci := int(s.Attr().Int("cache"))
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
	tl, err := mlaPrefillTile(heads, r, dr, g.m.TileTokens)
	if err != nil {
		return err
	}
	// 1. Append c_kv and k_rope.
	h := mlaHoles{CT: ct, H: heads, R: r, DR: dr, Scale: cf(s.Attr().Float("scale")), Warps: mlaWarps, SplitSize: SplitSize}
	appendK, err := g.emit("latent_append", latentAppendTmpl, h)
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: appendK, Block: 128, Grid: [3]abi.Expr{{T: 1}, {Fixed: 1}, {Fixed: 1}},
		Params: append([]abi.Param{{Kind: abi.PArg, Index: 2}, {Kind: abi.PArg, Index: 3}, {Kind: abi.PCacheK, Index: uint16(ci)}, {Kind: abi.PCacheV, Index: uint16(ci)},
			{Kind: abi.PPositions}, {Kind: abi.PSeqOfToken}}, append(pagedMeta(), abi.Param{Kind: abi.PT})...)})

	head := []abi.Param{{Kind: abi.PArg, Index: 0}, {Kind: abi.PArg, Index: 1}, {Kind: abi.PCacheK, Index: uint16(ci)}, {Kind: abi.PCacheV, Index: uint16(ci)}}
	prefill, err := g.emit("mla_prefill", mlaPrefillTmpl, mlaPrefillHoles{mlaHoles: h, BT: tl.bt, HB: tl.hb, HG: tl.hg, Rows: tl.rows, RPW: tl.rpw, BK: tl.bk})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: prefill, Block: mlaWarps * 32, Mode: abi.Prefill,
		Grid:   [3]abi.Expr{{Tiles: 1}, {Fixed: int64(tl.sub * tl.hg)}, {Fixed: 1}},
		Params: append(append(head, abi.Param{Kind: abi.POut}, abi.Param{Kind: abi.PPositions}, abi.Param{Kind: abi.PTiles}), pagedMeta()...)})

	// 3. Decode: one block per (token, split of SplitSize positions); a
	// chunk of BK positions of latent entries in shared memory; warp w owns
	// heads w, w+8, ...; lane l owns channels l, l+32, ...; every head of
	// the token scores and accumulates against the same chunk, with an
	// online softmax in f32, and writes (m, l, o) per head; the combine
	// merges the splits.
	bk := 32
	for bk > 1 && bk*(r+dr+mlaWarps)*4 > staticSmem {
		bk /= 2
	}
	decode, err := g.emit("mla_attention", mlaDecodeTmpl, mlaDecodeHoles{mlaHoles: h, BK: bk, HPW: (heads + mlaWarps - 1) / mlaWarps})
	if err != nil {
		return err
	}
	tail := append([]abi.Param{{Kind: abi.PPositions}, {Kind: abi.PSeqOfToken}}, append(pagedMeta(), abi.Param{Kind: abi.PT})...)
	g.launch(abi.Launch{Step: step, Kernel: decode, Block: mlaWarps * 32, Mode: abi.Decode, Workspace: int64(heads * (r + 2)),
		Grid: [3]abi.Expr{{T: 1}, {Fixed: 1}, {Splits: 1}}, Params: append(append(head, abi.Param{Kind: abi.PWorkspace}, abi.Param{Kind: abi.PSplits}), tail...)})
	combine, err := g.emit("mla_combine", mlaCombineTmpl, h)
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: combine, Block: 128, Mode: abi.Decode,
		Grid: [3]abi.Expr{{T: 1}, {Fixed: int64(heads)}, {Fixed: 1}}, Params: []abi.Param{{Kind: abi.PWorkspace}, {Kind: abi.POut}, {Kind: abi.PPositions}, {Kind: abi.PSplits}}})
	return nil
}

// mlaHoles fill the mla_attention templates.
type mlaHoles struct {
	CT        string // latent cache element type
	H, R, DR  int    // heads, latent (c_kv) and rope widths
	Scale     string // C literal
	Warps     int    // warps of a block (mlaWarps)
	SplitSize int    // positions of a decode split
}

// Threads is a block's threads.
func (h mlaHoles) Threads() int { return h.Warps * 32 }

// latentAppendTmpl writes each token's c_kv and k_rope into the latent cache.
var latentAppendTmpl = kernelTemplate("latent_append", `// latent_append: cache[slot(t)] = c_kv[t] [{{.R}}], k_rope[t] [{{.DR}}]; cache {{.CT}}.
extern "C" __global__ void __launch_bounds__(128) KNAME(const float* __restrict__ ckv, const float* __restrict__ kr, {{.CT}}* __restrict__ cc, {{.CT}}* __restrict__ kc,
    const int* __restrict__ positions, const int* __restrict__ seq_of_token, const int* __restrict__ block_tables, int max_blocks, int block_size, int T) {
  const long t = blockIdx.x;
  if (t >= T) return;
  const int p = positions[t];
  const long slot = (long)block_tables[(long)seq_of_token[t] * max_blocks + p / block_size] * block_size + p % block_size;
  for (int i = threadIdx.x; i < {{.R}}; i += blockDim.x) pio_st(cc + slot * {{.R}}L + i, ckv[t * {{.R}}L + i]);
  for (int i = threadIdx.x; i < {{.DR}}; i += blockDim.x) pio_st(kc + slot * {{.DR}}L + i, kr[t * {{.DR}}L + i]);
}
`)

// mlaDecodeHoles fill mla_attention: BK positions a chunk, HPW heads a warp.
type mlaDecodeHoles struct {
	mlaHoles
	BK, HPW int
}

// RC and DRC are the 32-lane chunks of a latent and a rope row.
func (h mlaDecodeHoles) RC() int  { return (h.R + 31) / 32 }
func (h mlaDecodeHoles) DRC() int { return (h.DR + 31) / 32 }

// mlaDecodeTmpl is one decode split of mla_attention (see mlaAttention).
var mlaDecodeTmpl = kernelTemplate("mla_attention", `// mla_attention (decode: one block per (token, split of {{.SplitSize}} positions), partial (m, l, o) per head into the workspace): absorbed causal latent attention, {{.H}} heads, latent {{.R}}, rope {{.DR}}, scale {{.Scale}}; {{.BK}} positions per chunk shared by all heads.
extern "C" __global__ void __launch_bounds__({{.Threads}}) KNAME(const float* ql, const float* __restrict__ qr, const {{.CT}}* __restrict__ cc, const {{.CT}}* __restrict__ kc, float* __restrict__ ws, int splits,
    const int* __restrict__ positions, const int* __restrict__ seq_of_token, const int* __restrict__ block_tables, int max_blocks, int block_size, int T) {
  constexpr int H = {{.H}}, R = {{.R}}, DR = {{.DR}}, BK = {{.BK}}, HPW = {{.HPW}}, RC = {{.RC}}, DRC = {{.DRC}};
  __shared__ float cs[BK][R];
  __shared__ float ks[BK][DR];
  __shared__ float ps[{{.Warps}}][BK];
  const long t = blockIdx.x;
  if (t >= T) return;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int n = positions[t] + 1;
  const int* bt = block_tables + (long)seq_of_token[t] * max_blocks;
  float q[HPW][RC], qp[HPW][DRC], acc[HPW][RC], m[HPW], l[HPW];
#pragma unroll
  for (int hh = 0; hh < HPW; hh++) {
    const int h = warp + hh * {{.Warps}};
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
  const int lo = blockIdx.z * {{.SplitSize}}, hi = min(n, lo + {{.SplitSize}});
  for (int j0 = lo; j0 < hi; j0 += BK) {
    const int nb = min(BK, hi - j0);
    __syncthreads();
    for (int e = threadIdx.x; e < nb * R; e += blockDim.x) {
      const int j = e / R, c = e % R, pos = j0 + j;
      const long slot = (long)bt[pos / block_size] * block_size + pos % block_size;
      cs[j][c] = pio_f32(cc[slot * R + c]);
    }
    for (int e = threadIdx.x; e < nb * DR; e += blockDim.x) {
      const int j = e / DR, c = e % DR, pos = j0 + j;
      const long slot = (long)bt[pos / block_size] * block_size + pos % block_size;
      ks[j][c] = pio_f32(kc[slot * DR + c]);
    }
    __syncthreads();
#pragma unroll
    for (int hh = 0; hh < HPW; hh++) {
      const int h = warp + hh * {{.Warps}};
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
        const float sc = __fmul_rn(__fadd_rn(pio_warp_sum(d), pio_warp_sum(dp)), {{.Scale}});
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
#pragma unroll
  for (int hh = 0; hh < HPW; hh++) {
    const int h = warp + hh * {{.Warps}};
    if (h >= H) break;
    float* o = ws + ((t * H + h) * (long)splits + blockIdx.z) * (R + 2);
    if (lane == 0) { o[0] = m[hh]; o[1] = l[hh]; }
#pragma unroll
    for (int i = 0; i < RC; i++) {
      const int c = lane + 32 * i;
      if (c < R) o[2 + c] = acc[hh][i];
    }
  }
}
`)

// mlaPrefillHoles fill mla_prefill: mlaTile's geometry.
type mlaPrefillHoles struct {
	mlaHoles
	BT, HB, HG, Rows, RPW, BK int
}

// mlaPrefillTmpl is the tiled prefill kernel of mla_attention, in the
// FlashAttention-2 manner of
// attn_prefill: one block per (prefill tile, bt of its tokens × hb heads);
// the block streams its sequence's latent entries, positions 0 to its last
// token's, through shared memory bk at a time, once for all its rows.
//
// Per chunk, a warp scores each of its rows against 4 positions at a time:
// every lane sums its channels' products for the 4 (the chunk's c_kv and
// k_rope read once from shared memory for all the warp's rows), then a
// reduce-scatter across the warp (xor 16 and 8 exchanging halves, xor 4, 2,
// 1 summing) leaves each group of 8 lanes one position's full score: 6
// shuffles for 4 scores, where a warp sum per score takes 5 per score. The
// online softmax (running max m, sum l, rescale of the accumulator by
// e^{m_old - m_new}) is per row in f32; the accumulation then reads each
// c_kv value once for all the warp's rows.
//
// Latent bytes read per prefill of T tokens of one sequence, per layer
// (positions × (r + dr) × element size; a tile's rows are tokens × heads):
// the per-token kernel this replaces read positions 0..t for every token,
// T(T+1)/2 positions: at T = 4096, 8.39M positions, 19.3 GB with an f32
// cache (9.7 GB bf16). This kernel reads, per block of bt tokens and hb
// heads, positions 0..its last token: (H/hb)·Σ_k bt·(k+1) over the T/bt
// blocks ≈ (H/hb)·T²/(2·bt); at GLM-4.7-Flash's 2 tokens × 20 heads,
// 2048·2049 = 4.20M positions, 9.7 GB f32 (4.8 GB bf16): half. Going
// further needs rows that do not fit the registers (see mlaPrefillTile).
// Inside the SM, per (row, position) a lane still issues 34 FMAs (18 for
// the score, 16 for the output), but about 8 shared-memory loads instead
// of 35 (a c_kv value serves the warp's 5 rows) and 2 shuffles instead of
// 10, so FMAs rather than shared-memory bandwidth bound the kernel.
var mlaPrefillTmpl = kernelTemplate("mla_prefill", `// mla_prefill: absorbed causal latent attention over prefill tiles, {{.H}} heads, latent {{.R}}, rope {{.DR}}, scale {{.Scale}}; blocks of {{.BT}} tokens × {{.HB}} heads ({{.Rows}} rows, {{.RPW}} a warp), {{.BK}} positions per chunk (q may be y: a block reads its rows of q before it writes them).
extern "C" __global__ void __launch_bounds__({{.Threads}}) KNAME(const float* ql, const float* __restrict__ qr, const {{.CT}}* __restrict__ cc, const {{.CT}}* __restrict__ kc, float* y,
    const int* __restrict__ positions, const int* __restrict__ tiles, const int* __restrict__ block_tables, int max_blocks, int block_size) {
  constexpr int H = {{.H}}, R = {{.R}}, DR = {{.DR}}, BT = {{.BT}}, HB = {{.HB}}, HG = {{.HG}}, ROWS = {{.Rows}}, RPW = {{.RPW}}, BK = {{.BK}}, W = {{.Warps}};
  constexpr int RC = (R + 31) / 32, DRC = (DR + 31) / 32;
  constexpr bool RFULL = R % 32 == 0, DRFULL = DR % 32 == 0;
  __shared__ float cs[BK][R];
  __shared__ float ks[BK][DR];
  __shared__ float ps[RPW * W][BK];
  __shared__ long slots[BK];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int seq = tiles[3 * blockIdx.x], t0 = tiles[3 * blockIdx.x + 1], nt = tiles[3 * blockIdx.x + 2];
  const int i0 = (blockIdx.y / HG) * BT, h0 = (blockIdx.y % HG) * HB;
  if (i0 >= nt) return;
  const int pos0 = positions[t0] + i0, ntb = min(BT, nt - i0);
  const int hi = pos0 + ntb;
  const int* bt = block_tables + (long)seq * max_blocks;
  float q[RPW][RC], qp[RPW][DRC], acc[RPW][RC], m[RPW], l[RPW];
#pragma unroll
  for (int rr = 0; rr < RPW; rr++) {
    const int row = warp + rr * W, i = row / HB;
    const bool ok = row < ROWS && i < ntb;
    const long th = (long)(t0 + i0 + i) * H + h0 + row % HB;
    m[rr] = -INFINITY;
    l[rr] = 0.f;
#pragma unroll
    for (int k = 0; k < RC; k++) {
      const int c = lane + 32 * k;
      q[rr][k] = ok && (RFULL || c < R) ? ql[th * R + c] : 0.f;
      acc[rr][k] = 0.f;
    }
#pragma unroll
    for (int k = 0; k < DRC; k++) {
      const int c = lane + 32 * k;
      qp[rr][k] = ok && (DRFULL || c < DR) ? qr[th * DR + c] : 0.f;
    }
  }
  for (int j0 = 0; j0 < hi; j0 += BK) {
    const int nb = min(BK, hi - j0);
    __syncthreads();
    if (threadIdx.x < BK) {
      const int pos = j0 + threadIdx.x;
      slots[threadIdx.x] = threadIdx.x < nb ? (long)bt[pos / block_size] * block_size + pos % block_size : -1;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < BK * R; e += blockDim.x) {
      const int j = e / R, c = e % R;
      cs[j][c] = slots[j] >= 0 ? pio_f32(cc[slots[j] * R + c]) : 0.f;
    }
    for (int e = threadIdx.x; e < BK * DR; e += blockDim.x) {
      const int j = e / DR, c = e % DR;
      ks[j][c] = slots[j] >= 0 ? pio_f32(kc[slots[j] * DR + c]) : 0.f;
    }
    __syncthreads();
    // Scores, 4 positions at a time; lanes 0, 8, 16, 24 write positions +0..+3.
    for (int j4 = 0; j4 < nb; j4 += 4) {
      float v[RPW][4];
#pragma unroll
      for (int rr = 0; rr < RPW; rr++)
#pragma unroll
        for (int jj = 0; jj < 4; jj++) v[rr][jj] = 0.f;
#pragma unroll
      for (int k = 0; k < RC; k++) {
        const int c = lane + 32 * k;
        if (RFULL || c < R) {
#pragma unroll
          for (int jj = 0; jj < 4; jj++) {
            const float kv = cs[j4 + jj][c];
#pragma unroll
            for (int rr = 0; rr < RPW; rr++) v[rr][jj] = fmaf(q[rr][k], kv, v[rr][jj]);
          }
        }
      }
#pragma unroll
      for (int k = 0; k < DRC; k++) {
        const int c = lane + 32 * k;
        if (DRFULL || c < DR) {
#pragma unroll
          for (int jj = 0; jj < 4; jj++) {
            const float kv = ks[j4 + jj][c];
#pragma unroll
            for (int rr = 0; rr < RPW; rr++) v[rr][jj] = fmaf(qp[rr][k], kv, v[rr][jj]);
          }
        }
      }
      const bool up16 = (lane & 16) != 0, up8 = (lane & 8) != 0;
#pragma unroll
      for (int rr = 0; rr < RPW; rr++) {
        float a0 = up16 ? v[rr][2] : v[rr][0], a1 = up16 ? v[rr][3] : v[rr][1];
        a0 += __shfl_xor_sync(0xffffffffu, up16 ? v[rr][0] : v[rr][2], 16);
        a1 += __shfl_xor_sync(0xffffffffu, up16 ? v[rr][1] : v[rr][3], 16);
        float s = up8 ? a1 : a0;
        s += __shfl_xor_sync(0xffffffffu, up8 ? a0 : a1, 8);
        s += __shfl_xor_sync(0xffffffffu, s, 4);
        s += __shfl_xor_sync(0xffffffffu, s, 2);
        s += __shfl_xor_sync(0xffffffffu, s, 1);
        if ((lane & 7) == 0) ps[warp + rr * W][j4 + (lane >> 3)] = __fmul_rn(s, {{.Scale}});
      }
    }
    __syncwarp();
    // Online softmax per row: lane j holds position j0 + j.
#pragma unroll
    for (int rr = 0; rr < RPW; rr++) {
      const int row = warp + rr * W, i = row / HB;
      float sc = -INFINITY;
      if (row < ROWS && i < ntb && lane < nb && j0 + lane <= pos0 + i) sc = ps[row][lane];
      const float cm = pio_warp_max(sc);
      float p = 0.f;
      if (cm != -INFINITY) {
        const float mn = fmaxf(m[rr], cm);
        const float corr = expf(m[rr] - mn);
        p = sc == -INFINITY ? 0.f : expf(sc - mn);
        l[rr] = l[rr] * corr + pio_warp_sum(p);
#pragma unroll
        for (int k = 0; k < RC; k++) acc[rr][k] *= corr;
        m[rr] = mn;
      }
      if (lane < BK) ps[row][lane] = p;
    }
    __syncwarp();
    for (int j = 0; j < nb; j++) {
      float p[RPW];
#pragma unroll
      for (int rr = 0; rr < RPW; rr++) p[rr] = ps[warp + rr * W][j];
#pragma unroll
      for (int k = 0; k < RC; k++) {
        const int c = lane + 32 * k;
        if (RFULL || c < R) {
          const float cv = cs[j][c];
#pragma unroll
          for (int rr = 0; rr < RPW; rr++) acc[rr][k] = fmaf(p[rr], cv, acc[rr][k]);
        }
      }
    }
    __syncwarp();
  }
#pragma unroll
  for (int rr = 0; rr < RPW; rr++) {
    const int row = warp + rr * W, i = row / HB;
    if (row >= ROWS || i >= ntb) continue;
    float* yr = y + ((long)(t0 + i0 + i) * H + h0 + row % HB) * R;
    const float inv = 1.0f / l[rr];
#pragma unroll
    for (int k = 0; k < RC; k++) {
      const int c = lane + 32 * k;
      if (RFULL || c < R) yr[c] = acc[rr][k] * inv;
    }
  }
}
`)

// mlaCombineTmpl merges the decode splits of mla_attention: y = Σ_z e^{m_z - m}·o_z / Σ_z e^{m_z - m}·l_z.
var mlaCombineTmpl = kernelTemplate("mla_combine", `// mla_combine: merges the decode splits of {{.H}} heads, latent {{.R}}.
extern "C" __global__ void __launch_bounds__(128) KNAME(const float* __restrict__ ws, float* __restrict__ y, const int* __restrict__ positions, int splits) {
  constexpr int H = {{.H}}, R = {{.R}};
  const long t = blockIdx.x;
  const int h = blockIdx.y;
  const int n = min(splits, positions[t] / {{.SplitSize}} + 1);
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
`)
