package cuda

import (
	"fmt"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
)

// attn is the geometry of one attention step.
type attn struct {
	hq, hkv, g, d, dv int
	cache             int
	ct                string // cache element type
	scale             float64
	bq, bk            int // prefill tile: query tokens, keys per smem chunk
}

const attnWarps = 8 // prefill block: 8 warps

func (g *gen) attnShape(s ir.Step) (attn, error) {
	if s.Op == ir.OpQKVAttention {
		if dt, _ := g.operand(s.Args[0]); dt != ir.F32 {
			return attn{}, fmt.Errorf("qkv has dtype %v: want f32", dt)
		}
		at := s.Attr()
		h := at.Ints("heads")
		d, dv := int(at.Int("head_dim")), int(at.Int("v_head_dim"))
		if dv != d {
			return attn{}, fmt.Errorf("v_head_dim %d != head_dim %d has no CUDA template yet", dv, d)
		}
		return g.attnGeom(int(h[0]), int(h[1]), d, dv, at)
	}
	_, q := g.operand(s.Args[0])
	_, k := g.operand(s.Args[1])
	_, v := g.operand(s.Args[2])
	for i := range s.Args {
		if dt, _ := g.operand(s.Args[i]); dt != ir.F32 {
			return attn{}, fmt.Errorf("operand %d has dtype %v: want f32", i, dt)
		}
	}
	return g.attnGeom(int(q[1]), int(k[1]), int(q[2]), int(v[2]), s.Attr())
}

func (g *gen) attnGeom(hq, hkv, d, dv int, at ir.AttrReader) (attn, error) {
	a := attn{hq: hq, hkv: hkv, d: d, dv: dv, cache: int(at.Int("cache")), scale: at.Float("scale")}
	a.g = a.hq / a.hkv
	if a.cache < 0 || a.cache >= len(g.p.Caches) {
		return a, fmt.Errorf("cache %d not declared", a.cache)
	}
	c := g.p.Caches[a.cache]
	if c.Kind != ir.CacheKV || len(c.Entries) != 2 || !c.Entries[0].Equal(ir.Sh(ir.Dim(hkv), ir.Dim(d))) || !c.Entries[1].Equal(ir.Sh(ir.Dim(hkv), ir.Dim(dv))) {
		return a, fmt.Errorf("cache %d (%v %v) does not hold k [%d, %d] and v [%d, %d]", a.cache, c.Kind, c.Entries, hkv, d, hkv, dv)
	}
	ct, err := ctype(c.DType)
	if err != nil {
		return a, fmt.Errorf("cache %d: %w", a.cache, err)
	}
	a.ct = ct
	// Shared memory: q rows (bq·g·d) + a chunk of bk keys (padded rows) and values.
	for _, bk := range []int{32, 16, 8} {
		kv := bk * (a.d + 1 + a.dv) * 4
		for bq := maxTileTokens; bq >= 1; bq /= 2 {
			if kv+bq*a.g*a.d*4 <= staticSmem {
				a.bq, a.bk = bq, bk
				return a, nil
			}
		}
	}
	return a, fmt.Errorf("head dims %d/%d with %d query heads per kv head do not fit %d bytes of shared memory", a.d, a.dv, a.g, staticSmem)
}

func (g *gen) attention(step int, s ir.Step) error {
	a, err := g.attnShape(s)
	if err != nil {
		return err
	}
	a.bq = g.m.TileTokens
	// 1. Append this step's k and v to the paged cache.
	appendK, err := g.emit("kv_append", kvAppendTmpl, a.holes())
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: appendK, Block: 128, Grid: [3]abi.Expr{{T: 1}, {Fixed: 1}, {Fixed: 1}},
		Params: append([]abi.Param{{Kind: abi.PArg, Index: 1}, {Kind: abi.PArg, Index: 2}, {Kind: abi.PCacheK, Index: uint16(a.cache)}, {Kind: abi.PCacheV, Index: uint16(a.cache)},
			{Kind: abi.PPositions}, {Kind: abi.PSeqOfToken}}, append(pagedMeta(), abi.Param{Kind: abi.PT})...)})
	return g.attnKernels(step, a, abi.Param{Kind: abi.PArg, Index: 0})
}

func pagedMeta() []abi.Param {
	return []abi.Param{{Kind: abi.PBlockTables}, {Kind: abi.PMaxBlocks}, {Kind: abi.PBlockSize}}
}

// attnHoles fill the attention templates: the step's geometry.
type attnHoles struct {
	CT                string // cache element type
	HQ, HKV, G, D, DV int    // query and kv heads, query heads per kv head, head dims of k and v
	Scale             string // C literal
	BQ, BK            int    // prefill tile: query tokens, keys per shared-memory chunk
}

func (a attn) holes() attnHoles {
	return attnHoles{CT: a.ct, HQ: a.hq, HKV: a.hkv, G: a.g, D: a.d, DV: a.dv, Scale: cf(a.scale), BQ: a.bq, BK: a.bk}
}

// Warps and Threads are the prefill block's; Rows its rows (tokens × the
// GQA group), RPW the rows per warp; VC and DC are the 32-lane chunks of
// a v and a k row; SplitSize the positions of a decode split.
func (h attnHoles) Warps() int     { return attnWarps }
func (h attnHoles) Threads() int   { return attnWarps * 32 }
func (h attnHoles) Rows() int      { return h.BQ * h.G }
func (h attnHoles) RPW() int       { return (h.Rows() + attnWarps - 1) / attnWarps }
func (h attnHoles) VC() int        { return (h.DV + 31) / 32 }
func (h attnHoles) DC() int        { return (h.D + 31) / 32 }
func (h attnHoles) SplitSize() int { return SplitSize }

// kvAppendTmpl writes this step's k and v into the paged cache.
var kvAppendTmpl = kernelTemplate("kv_append", `// kv_append: cache[slot(t)] = k[t], v[t]; k [T, {{.HKV}}, {{.D}}], v [T, {{.HKV}}, {{.DV}}], cache {{.CT}}.
extern "C" __global__ void __launch_bounds__(128) KNAME(const float* __restrict__ k, const float* __restrict__ v, {{.CT}}* __restrict__ kc, {{.CT}}* __restrict__ vc,
    const int* __restrict__ positions, const int* __restrict__ seq_of_token, const int* __restrict__ block_tables, int max_blocks, int block_size, int T) {
  const long t = blockIdx.x;
  if (t >= T) return;
  const int p = positions[t];
  const long slot = (long)block_tables[(long)seq_of_token[t] * max_blocks + p / block_size] * block_size + p % block_size;
  for (int i = threadIdx.x; i < {{.HKV}} * {{.D}}; i += blockDim.x) pio_st(kc + slot * {{.HKV}} * {{.D}}L + i, k[t * {{.HKV}} * {{.D}}L + i]);
  for (int i = threadIdx.x; i < {{.HKV}} * {{.DV}}; i += blockDim.x) pio_st(vc + slot * {{.HKV}} * {{.DV}}L + i, v[t * {{.HKV}} * {{.DV}}L + i]);
}
`)

// attnKernels emits the attention proper over the paged cache, whose k and
// v for this step are already written; q comes from parameter q: the
// prefill kernel, and for decode the split kernel and the combine.
func (g *gen) attnKernels(step int, a attn, q abi.Param) error {
	if err := g.prefillAttn(step, a, q); err != nil {
		return err
	}
	if err := g.decodeAttn(step, a, q); err != nil {
		return err
	}
	return g.combineAttn(step, a)
}

// prefillAttn: FlashAttention-2-style. One block per (tile of ≤ bq
// consecutive tokens of one sequence, kv head); its rows are the tile's
// tokens × the g query heads sharing that kv head. Keys and values come
// through shared memory bk at a time; each warp keeps an online softmax
// (running max m, sum l, unnormalised output) per row it owns.
func (g *gen) prefillAttn(step int, a attn, q abi.Param) error {
	meta := pagedMeta()
	prefill, err := g.emit("attn_prefill", attnPrefillTmpl, a.holes())
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: prefill, Block: attnWarps * 32, Mode: abi.Prefill, Grid: [3]abi.Expr{{Tiles: 1}, {Fixed: int64(a.hkv)}, {Fixed: 1}},
		Params: append([]abi.Param{q, {Kind: abi.POut}, {Kind: abi.PCacheK, Index: uint16(a.cache)}, {Kind: abi.PCacheV, Index: uint16(a.cache)},
			{Kind: abi.PPositions}, {Kind: abi.PTiles}}, meta...)})
	return nil
}

var attnPrefillTmpl = kernelTemplate("attn_prefill", `// attn_prefill: causal paged GQA attention (q may be y: a block reads its rows of q before it writes them), {{.HQ}} query heads over {{.HKV}} kv heads, head dims {{.D}}/{{.DV}}, tiles of {{.BQ}} tokens, {{.BK}} keys per chunk.
extern "C" __global__ void __launch_bounds__({{.Threads}}) KNAME(const float* q, float* y, const {{.CT}}* __restrict__ kc, const {{.CT}}* __restrict__ vc,
    const int* __restrict__ positions, const int* __restrict__ tiles, const int* __restrict__ block_tables, int max_blocks, int block_size) {
  constexpr int G = {{.G}}, ROWS = {{.Rows}}, RPW = {{.RPW}}, VC = {{.VC}}, BK = {{.BK}}, D = {{.D}}, DV = {{.DV}}, HQ = {{.HQ}}, HKV = {{.HKV}};
  __shared__ float qs[ROWS][D];
  __shared__ float ks[BK][D + 1];
  __shared__ float vs[BK][DV];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int kvh = blockIdx.y;
  const int seq = tiles[3 * blockIdx.x], t0 = tiles[3 * blockIdx.x + 1], nt = tiles[3 * blockIdx.x + 2];
  for (int e = threadIdx.x; e < ROWS * D; e += blockDim.x) {
    const int r = e / D, c = e % D, i = r / G;
    qs[r][c] = i < nt ? q[((long)(t0 + i) * HQ + kvh * G + r % G) * D + c] : 0.f;
  }
  const int pos0 = positions[t0], last = pos0 + nt - 1;
  const int* bt = block_tables + (long)seq * max_blocks;
  float m[RPW], l[RPW], acc[RPW][VC];
#pragma unroll
  for (int rr = 0; rr < RPW; rr++) {
    m[rr] = -INFINITY;
    l[rr] = 0.f;
#pragma unroll
    for (int c = 0; c < VC; c++) acc[rr][c] = 0.f;
  }
  for (int kb = 0; kb <= last; kb += BK) {
    __syncthreads();
    for (int e = threadIdx.x; e < BK * D; e += blockDim.x) {
      const int j = e / D, c = e % D, p = kb + j;
      float val = 0.f;
      if (p <= last) {
        const long slot = (long)bt[p / block_size] * block_size + p % block_size;
        val = pio_f32(kc[(slot * HKV + kvh) * D + c]);
      }
      ks[j][c] = val;
    }
    for (int e = threadIdx.x; e < BK * DV; e += blockDim.x) {
      const int j = e / DV, c = e % DV, p = kb + j;
      float val = 0.f;
      if (p <= last) {
        const long slot = (long)bt[p / block_size] * block_size + p % block_size;
        val = pio_f32(vc[(slot * HKV + kvh) * DV + c]);
      }
      vs[j][c] = val;
    }
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < RPW; rr++) {
      const int r = warp + rr * {{.Warps}};
      if (r >= ROWS || r / G >= nt) continue;
      const int pos = pos0 + r / G;
      if (kb > pos) continue;
      float sc = -INFINITY;
      if (lane < BK && kb + lane <= pos) {
        float d = 0.f;
#pragma unroll 8
        for (int c = 0; c < D; c++) d = fmaf(qs[r][c], ks[lane][c], d);
        sc = d * {{.Scale}};
      }
      const float mx = pio_warp_max(sc);
      const float mn = fmaxf(m[rr], mx);
      const float corr = expf(m[rr] - mn);
      const float pj = sc == -INFINITY ? 0.f : expf(sc - mn);
      l[rr] = l[rr] * corr + pio_warp_sum(pj);
#pragma unroll
      for (int c = 0; c < VC; c++) acc[rr][c] *= corr;
      for (int j = 0; j < BK; j++) {
        const float pb = __shfl_sync(0xffffffffu, pj, j);
#pragma unroll
        for (int c = 0; c < VC; c++)
          if (lane + 32 * c < DV) acc[rr][c] = fmaf(pb, vs[j][lane + 32 * c], acc[rr][c]);
      }
      m[rr] = mn;
    }
  }
#pragma unroll
  for (int rr = 0; rr < RPW; rr++) {
    const int r = warp + rr * {{.Warps}};
    if (r >= ROWS || r / G >= nt) continue;
    float* yr = y + ((long)(t0 + r / G) * HQ + kvh * G + r % G) * DV;
    const float inv = 1.0f / l[rr];
#pragma unroll
    for (int c = 0; c < VC; c++)
      if (lane + 32 * c < DV) yr[lane + 32 * c] = acc[rr][c] * inv;
  }
}
`)

// decodeAttn, flash-decoding style: one block per (token, kv head, split of
// SplitSize positions); 4 warps stride over the split's keys, each with an
// online softmax per query head of the group; the warps merge, and the
// block writes (m, l, unnormalised output) per head into the workspace.
func (g *gen) decodeAttn(step int, a attn, q abi.Param) error {
	meta := pagedMeta()
	split, err := g.emit("attn_decode", attnDecodeTmpl, a.holes())
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: split, Block: 128, Mode: abi.Decode, Workspace: int64(a.hq * (a.dv + 2)),
		Grid: [3]abi.Expr{{T: 1}, {Fixed: int64(a.hkv)}, {Splits: 1}},
		Params: append([]abi.Param{q, {Kind: abi.PCacheK, Index: uint16(a.cache)}, {Kind: abi.PCacheV, Index: uint16(a.cache)},
			{Kind: abi.PPositions}, {Kind: abi.PSeqOfToken}}, append(meta, abi.Param{Kind: abi.PWorkspace}, abi.Param{Kind: abi.PSplits})...)})
	return nil
}

var attnDecodeTmpl = kernelTemplate("attn_decode", `// attn_decode: one split of {{.SplitSize}} positions of causal paged GQA attention for one token, {{.HQ}} query heads over {{.HKV}} kv heads, head dims {{.D}}/{{.DV}}.
extern "C" __global__ void __launch_bounds__(128) KNAME(const float* __restrict__ q, const {{.CT}}* __restrict__ kc, const {{.CT}}* __restrict__ vc,
    const int* __restrict__ positions, const int* __restrict__ seq_of_token, const int* __restrict__ block_tables, int max_blocks, int block_size,
    float* __restrict__ ws, int splits) {
  constexpr int G = {{.G}}, DC = {{.DC}}, VC = {{.VC}}, D = {{.D}}, DV = {{.DV}}, HQ = {{.HQ}}, HKV = {{.HKV}}, SPLIT = {{.SplitSize}};
  __shared__ float sm[4][G], sl[4][G], sacc[4][G][VC * 32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const long t = blockIdx.x;
  const int kvh = blockIdx.y, z = blockIdx.z;
  const int pos = positions[t];
  const int* bt = block_tables + (long)seq_of_token[t] * max_blocks;
  const int lo = z * SPLIT, hi = min(pos + 1, lo + SPLIT);
  float qr[G][DC], m[G], l[G], acc[G][VC];
#pragma unroll
  for (int g = 0; g < G; g++) {
    m[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int c = 0; c < DC; c++) qr[g][c] = lane + 32 * c < D ? q[(t * HQ + kvh * G + g) * D + lane + 32 * c] : 0.f;
#pragma unroll
    for (int c = 0; c < VC; c++) acc[g][c] = 0.f;
  }
  for (int p = lo + warp; p < hi; p += 4) {
    const long slot = (long)bt[p / block_size] * block_size + p % block_size;
    const {{.CT}}* kr = kc + (slot * HKV + kvh) * D;
    const {{.CT}}* vr = vc + (slot * HKV + kvh) * DV;
    float kv[DC], vv[VC];
#pragma unroll
    for (int c = 0; c < DC; c++) kv[c] = lane + 32 * c < D ? pio_f32(kr[lane + 32 * c]) : 0.f;
#pragma unroll
    for (int c = 0; c < VC; c++) vv[c] = lane + 32 * c < DV ? pio_f32(vr[lane + 32 * c]) : 0.f;
#pragma unroll
    for (int g = 0; g < G; g++) {
      float d = 0.f;
#pragma unroll
      for (int c = 0; c < DC; c++) d = fmaf(qr[g][c], kv[c], d);
      const float sc = pio_warp_sum(d) * {{.Scale}};
      const float mn = fmaxf(m[g], sc);
      const float corr = expf(m[g] - mn), e = expf(sc - mn);
      l[g] = l[g] * corr + e;
#pragma unroll
      for (int c = 0; c < VC; c++) acc[g][c] = fmaf(e, vv[c], acc[g][c] * corr);
      m[g] = mn;
    }
  }
#pragma unroll
  for (int g = 0; g < G; g++) {
    if (lane == 0) { sm[warp][g] = m[g]; sl[warp][g] = l[g]; }
#pragma unroll
    for (int c = 0; c < VC; c++) sacc[warp][g][lane + 32 * c] = acc[g][c];
  }
  __syncthreads();
  for (int e = threadIdx.x; e < G * (DV + 2); e += blockDim.x) {
    const int g = e / (DV + 2), c = e % (DV + 2);
    float mx = -INFINITY;
    for (int w = 0; w < 4; w++) mx = fmaxf(mx, sm[w][g]);
    float v = mx;
    if (c > 0) {
      v = 0.f;
      for (int w = 0; w < 4; w++) {
        if (sm[w][g] == -INFINITY) continue;
        const float f = expf(sm[w][g] - mx);
        v += f * (c == 1 ? sl[w][g] : sacc[w][g][c - 2]);
      }
    }
    ws[((t * HQ + kvh * G + g) * splits + z) * (DV + 2) + c] = v;
  }
}
`)

// combineAttn merges a token's decode splits, head by head.
func (g *gen) combineAttn(step int, a attn) error {
	combine, err := g.emit("attn_combine", attnCombineTmpl, a.holes())
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: combine, Block: 128, Mode: abi.Decode, Grid: [3]abi.Expr{{T: 1}, {Fixed: int64(a.hq)}, {Fixed: 1}},
		Params: []abi.Param{{Kind: abi.PWorkspace}, {Kind: abi.POut}, {Kind: abi.PPositions}, {Kind: abi.PSplits}}})
	return nil
}

var attnCombineTmpl = kernelTemplate("attn_combine", `// attn_combine: merges the decode splits of {{.HQ}} query heads, head dim {{.DV}}.
extern "C" __global__ void __launch_bounds__(128) KNAME(const float* __restrict__ ws, float* __restrict__ y, const int* __restrict__ positions, int splits) {
  constexpr int HQ = {{.HQ}}, DV = {{.DV}};
  const long t = blockIdx.x;
  const int h = blockIdx.y;
  const int n = min(splits, positions[t] / {{.SplitSize}} + 1);
  const float* base = ws + (t * HQ + h) * (long)splits * (DV + 2);
  float mx = -INFINITY;
  for (int z = 0; z < n; z++) mx = fmaxf(mx, base[z * (DV + 2)]);
  float sum = 0.f;
  for (int z = 0; z < n; z++) {
    const float mz = base[z * (DV + 2)];
    if (mz != -INFINITY) sum += base[z * (DV + 2) + 1] * expf(mz - mx);
  }
  const float inv = 1.0f / sum;
  for (int c = threadIdx.x; c < DV; c += blockDim.x) {
    float o = 0.f;
    for (int z = 0; z < n; z++) {
      const float mz = base[z * (DV + 2)];
      if (mz != -INFINITY) o += base[z * (DV + 2) + 2 + c] * expf(mz - mx);
    }
    y[(t * HQ + h) * DV + c] = o * inv;
  }
}
`)

// qkvAttention handles qkv_attention: a prep kernel takes each token's
// fused q|k|v row, applies the per-head q/k RMSNorm and RoPE, writes k and v
// into the paged cache and q into the output buffer (head_dim = v_head_dim,
// so q has the output's shape); the attention kernels then read q there and
// overwrite it with the result.
func (g *gen) qkvAttention(step int, s ir.Step) error {
	a, err := g.attnShape(s)
	if err != nil {
		return err
	}
	a.bq = g.m.TileTokens
	at := s.Attr()
	norm := len(s.Args) == 4
	gated := at.Bool("gate")
	rd := int(at.Int("rotary_dims"))
	h := qkvPrepHoles{attnHoles: a.holes(), Norm: norm, Gated: gated, NeoX: at.String("style") == "neox", RD: rd, Half: rd / 2, Inv: invTable(at), Off: "0.0f"}
	if norm {
		qdt, _ := g.operand(s.Args[2])
		kdt, _ := g.operand(s.Args[3])
		if h.QNT, err = ctype(qdt); err != nil {
			return err
		}
		if h.KNT, err = ctype(kdt); err != nil {
			return err
		}
		h.Eps = cf(at.Float("eps"))
		if at.Bool("unit_offset") {
			h.Off = "1.0f"
		}
	}
	prep, err := g.emit("qkv_prep", qkvPrepTmpl, h)
	if err != nil {
		return err
	}
	params := []abi.Param{{Kind: abi.PArg, Index: 0}, {Kind: abi.PPositions}}
	if norm {
		params = append(params, abi.Param{Kind: abi.PArg, Index: 2}, abi.Param{Kind: abi.PArg, Index: 3})
	}
	params = append(params, abi.Param{Kind: abi.POut}, abi.Param{Kind: abi.PCacheK, Index: uint16(a.cache)}, abi.Param{Kind: abi.PCacheV, Index: uint16(a.cache)}, abi.Param{Kind: abi.PSeqOfToken})
	params = append(params, append(pagedMeta(), abi.Param{Kind: abi.PT})...)
	g.launch(abi.Launch{Step: step, Kernel: prep, Block: 128, Grid: [3]abi.Expr{{T: 1}, {Fixed: 1}, {Fixed: 1}}, Params: params})
	if err := g.attnKernels(step, a, abi.Param{Kind: abi.POut}); err != nil {
		return err
	}
	if gated {
		return g.attnGate(step, a)
	}
	return nil
}

// qkvPrepHoles fill qkv_prep.
type qkvPrepHoles struct {
	attnHoles
	Norm     bool   // per-head RMSNorm of q and k (weights qn, kn)
	QNT, KNT string // their element types
	Eps, Off string // C literals: eps, and "0.0f" or "1.0f" with unit_offset
	Gated    bool   // q's rows are per head [query | gate] (qkv_attention gate=1, Qwen3-Next)
	NeoX     bool   // rotate halves, else interleaved pairs
	RD, Half int    // rotary channels, and half of them
	Inv      string // C initialiser of the inverse frequencies (invTable)
}

// qkvPrepTmpl takes each token's fused q|k|v row, applies the per-head q/k
// RMSNorm and RoPE, writes k and v into the paged cache and q into y.
var qkvPrepTmpl = kernelTemplate("qkv_prep", `// qkv_prep{{if .Gated}} (gated: q rows per head [query | gate]){{end}}: per token, {{.HQ}} q and {{.HKV}} k heads of dim {{.D}}: rms_norm (if weights), rope ({{if .NeoX}}neox{{else}}interleaved{{end}}, {{.RD}} channels); k, v (dim {{.DV}}) into the cache {{.CT}}, q into y.
__constant__ float KNAME_inv[{{.Half}}] = { {{- .Inv -}} };
extern "C" __global__ void __launch_bounds__(128) KNAME(const float* __restrict__ qkv, const int* __restrict__ positions, {{if .Norm}}const {{.QNT}}* __restrict__ qn, const {{.KNT}}* __restrict__ kn, {{end}}float* __restrict__ y,
    {{.CT}}* __restrict__ kc, {{.CT}}* __restrict__ vc, const int* __restrict__ seq_of_token, const int* __restrict__ block_tables, int max_blocks, int block_size, int T) {
  constexpr int HQ = {{.HQ}}, HKV = {{.HKV}}, D = {{.D}}, DV = {{.DV}}, RD = {{.RD}}, HALF = {{.Half}};
  __shared__ float bufs[4][D];
  const long t = blockIdx.x;
  if (t >= T) return;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float* buf = bufs[warp];
  const float* row = qkv + t * (long)({{if .Gated}}2 * {{end}}HQ * D + HKV * D + HKV * DV);
  const int p = positions[t];
  const long slot = (long)block_tables[(long)seq_of_token[t] * max_blocks + p / block_size] * block_size + p % block_size;
  const float fp = (float)p;
  for (int u = warp; u < HQ + HKV; u += 4) {
    const bool isq = u < HQ;
{{- if .Gated}}
    const float* src = row + (isq ? (long)u * 2 * D : (long)(HQ + u) * D);
{{- else}}
    const float* src = row + (long)u * D;
{{- end}}
{{- if .Norm}}
    float ss = 0.f;
    for (int c = lane; c < D; c += 32) ss = fmaf(src[c], src[c], ss);
    const float inv = 1.0f / sqrtf(pio_warp_sum(ss) / {{.D}}.0f + {{.Eps}});
    for (int c = lane; c < D; c += 32) buf[c] = __fmul_rn(__fmul_rn(src[c], inv), {{.Off}} + (isq ? pio_f32(qn[c]) : pio_f32(kn[c])));
{{- else}}
    for (int c = lane; c < D; c += 32) buf[c] = src[c];
{{- end}}
    __syncwarp();
    for (int c = lane; c < D; c += 32) {
      float o = buf[c];
      if (c < RD) {
{{- if .NeoX}}
        const int j = c < HALF ? c : c - HALF; const float x1 = buf[j], x2 = buf[j + HALF]; const bool first = c < HALF;
{{- else}}
        const int j = c >> 1; const float x1 = buf[2 * j], x2 = buf[2 * j + 1]; const bool first = (c & 1) == 0;
{{- end}}
        const float a = __fmul_rn(fp, KNAME_inv[j]);
        double sd, cd;
        sincos((double)a, &sd, &cd);
        const float sn = (float)sd, cs = (float)cd;
        o = first ? __fmul_rn(x1, cs) - __fmul_rn(x2, sn) : __fmul_rn(x2, cs) + __fmul_rn(x1, sn);
      }
      if (isq) y[(t * HQ + u) * D + c] = o;
      else pio_st(kc + (slot * HKV + (u - HQ)) * D + c, o);
    }
    __syncwarp();
  }
  const float* vsrc = row + (long)({{if .Gated}}2 * {{end}}HQ + HKV) * D;
  for (int i = threadIdx.x; i < HKV * DV; i += blockDim.x) pio_st(vc + slot * HKV * DV + i, vsrc[i]);
}
`)
