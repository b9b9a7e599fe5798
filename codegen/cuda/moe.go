package cuda

import (
	"fmt"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
)

// Templates of the MoE ops (ir/op_moe.go: router_topk, router_weights, moe)
// and the fused moe_routed (ir/op_fused.go), with the semantics of
// runtime/cpu/moe.go and fused.go:
//
//   - Routing runs in f32, one warp per token: softmax (max subtracted,
//     exponentials computed in double and rounded to f32, their sum taken
//     in double in expert order and rounded once, as the CPU does) or
//     sigmoid; the bias of router_topk only selects; equal scores go to the
//     lower expert index (a NaN score never beats a number).
//   - The experts are a grouped GEMM over the (token, slot) pairs: one block
//     counts the pairs of each expert, takes offsets and scatters the pair
//     indices by expert on the device; the gate/up and down kernels run one
//     block per (expert, tile of rows) and a block whose expert no token
//     chose returns at once, so such an expert reads no weights. In a step
//     of more than WarpMaxRows tokens, an expert with more than
//     moeMMAMinPairs pairs and bf16 weights runs on tensor cores instead
//     (mmaKernel): the grouping block lists its tiles of 64 pairs.
//   - The combine sums each token's pairs in increasing expert order, each
//     scaled by its weight, in f32 (then + residual for moe_routed).
//
// An expert id outside 0..E-1 (which the CPU backend reports as an error)
// contributes nothing here.
//
// The steps' scratch (routing of moe_routed, pair lists, activations) lives
// in the workspace (PWorkspace): moeWorkspace floats per token of the step
// (the runtime sizes the workspace for MaxTokens tokens as well as for the
// decode splits).

func init() {
	templates[ir.OpRouterTopK] = (*gen).routerTopK
	templates[ir.OpRouterWeights] = (*gen).routerWeights
	templates[ir.OpMoE] = (*gen).moe
	templates[ir.OpMoERouted] = (*gen).moeRouted
}

// moeGeom is the geometry of a moe (or moe_routed) step.
type moeGeom struct {
	e, k, h, inter int
	gut, dt        string // gate_up and down element types
}

// Rows handled per warp and pairs per pass of the expert GEMMs.
const (
	moeRowsPerWarp = 4
	moePairs       = 4
	moeWarps       = 8
)

// scratch is the per-token floats the expert kernels need, counting the
// fixed arrays once per token so that the total holds for any T >= 1. The
// pair scratch holds, in 4-byte words: cnt [E], start [E+1], E unused,
// order [T·K], up to 3 words so that act starts on 16 bytes, act [T·K, I],
// out [T·K, H], then the tensor-core tile table (a count and up to T·K
// (expert, first pair) entries).
func (m moeGeom) scratch() int64 {
	return int64(3*m.e+5) + int64(m.k)*int64(3+m.inter+m.h)
}

// route says what a routing kernel does (moe_route); its fields are the
// template's holes.
type route struct {
	Logits, Bias string // C element types of the logits and of the selection bias ("": no bias)
	Experts, K   int
	Softmax      bool     // softmax scores, else sigmoid
	TopK         bool     // choose the k ids
	Weights      bool     // write the k weights of the ids
	Normalize    bool     // divide the weights by their sum (with weights)
	Scale        float64  // then multiply them by scale (with weights)
	Workspace    []string // logits, ids and weights live in the workspace at these offsets (C expressions in T)
}

// moeRouteTmpl is the routing kernel: one warp per token scores the experts
// into shared memory, then (TopK) chooses k ids, and/or (Weights) writes
// the k weights of the ids. With workspace offsets the kernel reads and
// writes those regions of the workspace instead of taking them as
// parameters.
var moeRouteTmpl = kernelTemplate("moe_route", `// moe_route: {{if .Softmax}}softmax{{else}}sigmoid{{end}} scores of {{.Experts}} experts per token (one warp per token), top-{{.K}} choice {{.TopK}}, weights {{.Weights}}.
__device__ __forceinline__ bool KNAME_better(float v, int i, float bv, int bi) {
  if (i < 0) return false;
  if (bi < 0) return true;
  const bool vn = v != v, bn = bv != bv;
  if (bn) return !vn || i > bi;
  if (vn) return false;
  return v > bv || (v == bv && i < bi);
}
extern "C" __global__ void __launch_bounds__(32) KNAME({{template "moe_route_params" .}}int T, int S) {
  constexpr int E = {{.Experts}}, K = {{.K}};
  constexpr bool NORMALIZE = {{if .Normalize}}1{{else}}0{{end}};
  (void)NORMALIZE;
  __shared__ float sc[E];
  const long t = blockIdx.x;
  const int lane = threadIdx.x;
  if (t >= T) return;
{{- if .Workspace}}
  const float* logits = ws + {{index .Workspace 0}};
  int* ids = (int*)(ws + {{index .Workspace 1}});
  float* wout = ws + {{index .Workspace 2}};
{{- end}}
  const {{.Logits}}* l = logits + t * E;
{{- if .Softmax}}
  float m = -INFINITY;
  for (int i = lane; i < E; i += 32) m = fmaxf(m, pio_f32(l[i]));
  m = pio_warp_max(m);
  for (int i = lane; i < E; i += 32) sc[i] = (float)exp((double)(pio_f32(l[i]) - m));
  __syncwarp();
  __shared__ float total;
  if (lane == 0) {
    double sum = 0.0;
    for (int i = 0; i < E; i++) sum += (double)sc[i];
    total = (float)sum;
  }
  __syncwarp();
  const float inv = total;
  for (int i = lane; i < E; i += 32) sc[i] = sc[i] / inv;
  __syncwarp();
{{- else}}
  for (int i = lane; i < E; i += 32) {
      sc[i] = (float)(1.0 / (1.0 + exp(-(double)pio_f32(l[i]))));
  }
  __syncwarp();
{{- end}}
{{- if .TopK}}
  __shared__ float sel[E];
  __shared__ unsigned char taken[E];
  for (int i = lane; i < E; i += 32) { sel[i] = {{if .Bias}}__fadd_rn(sc[i], pio_f32(bias[i])){{else}}sc[i]{{end}}; taken[i] = 0; }
  __syncwarp();
  for (int j = 0; j < K; j++) {
    float bv = 0.f;
    int bi = -1;
    for (int i = lane; i < E; i += 32)
      if (!taken[i] && KNAME_better(sel[i], i, bv, bi)) { bv = sel[i]; bi = i; }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (KNAME_better(ov, oi, bv, bi)) { bv = ov; bi = oi; }
    }
    if (lane == 0) { ids[t * K + j] = bi; taken[bi] = 1; }
    __syncwarp();
  }
{{- end}}
{{- if .Weights}}
  if (lane == 0) {
    float sum = 0.f;
    for (int j = 0; j < K; j++) {
      const int id = ids[t * K + j];
      const float w = id >= 0 && id < E ? sc[id] : 0.f;
      wout[t * K + j] = w;
      sum = __fadd_rn(sum, w);
    }
    for (int j = 0; j < K; j++) {
      float w = wout[t * K + j];
{{- if .Normalize}}
      if (NORMALIZE) w = w / sum;
{{- end}}
      wout[t * K + j] = __fmul_rn(w, {{cf .Scale}});
    }
  }
{{- end}}
}
`)

// moeRouteParamsTmpl are moe_route's parameters before T and S: the logits and
// ids (and weights) unless they live in the workspace, and the bias.
var moeRouteParamsTmpl = kernelTemplate("moe_route_params", `
{{- if .Workspace}}float* ws, {{else}}const {{.Logits}}* __restrict__ logits, {{end}}
{{- if .Bias}}const {{.Bias}}* __restrict__ bias, {{end}}
{{- if not .Workspace}}
{{- if .TopK}}int* __restrict__ ids, {{else}}const int* __restrict__ ids, {{end}}
{{- if .Weights}}float* __restrict__ wout, {{end}}
{{- end}}`)

func (g *gen) routerTopK(step int, s ir.Step) error {
	ldt, lsh := g.operand(s.Args[0])
	lt, err := ctype(ldt)
	if err != nil {
		return err
	}
	bt := ""
	if len(s.Args) == 2 {
		bdt, _ := g.operand(s.Args[1])
		if bt, err = ctype(bdt); err != nil {
			return err
		}
	}
	at := s.Attr()
	name, err := g.emit("moe_route", moeRouteTmpl, route{Logits: lt, Bias: bt, Experts: int(lsh[1]), K: int(at.Int("k")), Softmax: at.String("scoring") == "softmax",
		TopK: true})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(len(s.Args)), Block: 32, Grid: [3]abi.Expr{{T: 1}, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

func (g *gen) routerWeights(step int, s ir.Step) error {
	ldt, lsh := g.operand(s.Args[0])
	lt, err := ctype(ldt)
	if err != nil {
		return err
	}
	_, ish := g.operand(s.Args[1])
	at := s.Attr()
	name, err := g.emit("moe_route", moeRouteTmpl, route{Logits: lt, Experts: int(lsh[1]), K: int(ish[1]), Softmax: at.String("scoring") == "softmax",
		Weights: true, Normalize: at.Bool("normalize"), Scale: at.Float("scale")})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(2), Block: 32, Grid: [3]abi.Expr{{T: 1}, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

// moeShape reads the expert weights: gate_up [E·2I, H] (or [E, 2I, H]) and
// down [E·H, I] (or [E, H, I]).
func (g *gen) moeShape(x, gu, down ir.Ref, e, k int) (moeGeom, error) {
	_, xsh := g.operand(x)
	gdt, gsh := g.operand(gu)
	ddt, dsh := g.operand(down)
	m := moeGeom{e: e, k: k, h: int(xsh[1])}
	gn, _ := gsh.Elems(0, 0)
	dn, _ := dsh.Elems(0, 0)
	if e < 1 || int64(gsh.Last()) != int64(m.h) || gn%int64(2*e*m.h) != 0 {
		return m, fmt.Errorf("gate_up %v does not fit %d experts of hidden %d", gsh, e, m.h)
	}
	m.inter = int(gn / int64(2*e*m.h))
	if int(dsh.Last()) != m.inter || dn != int64(e*m.h*m.inter) {
		return m, fmt.Errorf("down %v does not fit %d experts of hidden %d and intermediate %d", dsh, e, m.h, m.inter)
	}
	var err error
	if m.gut, err = ctype(gdt); err != nil {
		return m, err
	}
	if m.dt, err = ctype(ddt); err != nil {
		return m, err
	}
	return m, nil
}

// moeHoles fill the expert kernels' templates.
type moeHoles struct {
	E, K, H, I int    // experts, slots per token, hidden, intermediate
	TwoI       int    // gate_up rows per expert
	GUT, DT    string // gate_up and down element types
	XT         string // x's element type
	Base       string // C expression (in T): the pair scratch's offset in the workspace
	// IDsOff and WOff are the C expressions (in T) of the ids' and weights'
	// offsets in the workspace, "" where they are parameters.
	IDsOff, WOff string
	Residual     bool   // moe_combine adds res (of element type RT)
	RT           string //
	// GateUpMMA and DownMMA: the tensor cores take the gate/up and the down
	// GEMM of the experts with more than MinPairs pairs, in steps of more
	// than WarpMaxRows tokens.
	GateUpMMA, DownMMA    bool
	Threads, RowsPerBlock int // the SIMT GEMMs' blocks: threads, weight rows
	RPW, NP               int // weight rows per warp, pairs per pass
	GUTiles, DTiles       int // the SIMT GEMMs' blocks per expert
	Segs                  int // moe_group's threads per expert
	MinPairs, MMARows     int // moeMMAMinPairs, moeMMARows
	WarpMaxRows           int
}

// moeScratch fills moe_scratch: the regions of the pair scratch (at Base
// in the workspace) a kernel declares.
type moeScratch struct {
	Base                               string
	Cnt, Start, Order, Act, Out, Tiles bool
}

// Regions names the regions of the pair scratch a kernel declares.
func (h *moeHoles) Regions(names ...string) (moeScratch, error) {
	s := moeScratch{Base: h.Base}
	for _, n := range names {
		switch n {
		case "cnt":
			s.Cnt = true
		case "start":
			s.Start = true
		case "order":
			s.Order = true
		case "act":
			s.Act = true
		case "out":
			s.Out = true
		case "tiles":
			s.Tiles = true
		default:
			return s, fmt.Errorf("no scratch region %q", n)
		}
	}
	return s, nil
}

// ActOff is act's offset in the workspace: act (and so out) starts on 16
// bytes of ws, since the tensor-core down kernel reads act's rows as
// float4.
func (s moeScratch) ActOff() string {
	return fmt.Sprintf("((%s + 3 * E + 1 + (long)T * K + 3) & ~3L)", s.Base)
}

// moeScratchTmpl declares the regions of the pair scratch (moeGeom.scratch):
// optional lines, each with the newline before it, for {{- template}}.
var moeScratchTmpl = kernelTemplate("moe_scratch", `
{{- if or .Cnt .Start .Order}}
  int* pio_moe_i = (int*)(ws + {{.Base}});
{{- end}}
{{- if .Cnt}}
  int* cnt = pio_moe_i;
{{- end}}
{{- if .Start}}
  int* start = pio_moe_i + E;
{{- end}}
{{- if .Order}}
  int* order = pio_moe_i + 3 * E + 1;
{{- end}}
{{- if .Act}}
  float* act = ws + {{.ActOff}};
{{- end}}
{{- if .Out}}
  float* out = ws + {{.ActOff}} + (long)T * K * I;
{{- end}}
{{- if .Tiles}}
  int* tiles = (int*)(ws + {{.ActOff}} + (long)T * K * (I + H));
{{- end}}`)

// moeGroupTmpl counts the pairs of each expert, takes offsets and scatters the
// pair indices by expert (and lists the tensor-core kernels' tiles).
var moeGroupTmpl = kernelTemplate("moe_group", `// moe_group: the (token, slot) pairs of {{.E}} experts, top-{{.K}}, counted and grouped by expert on the device.
extern "C" __global__ void __launch_bounds__(1024) KNAME({{if not .IDsOff}}const int* __restrict__ ids_, {{end}}float* ws, int T) {
  enum { E = {{.E}}, K = {{.K}}, H = {{.H}}, I = {{.I}} };
{{- if or .GateUpMMA .DownMMA}}
{{- template "moe_scratch" .Regions "cnt" "start" "order" "tiles"}}
{{- else}}
{{- template "moe_scratch" .Regions "cnt" "start" "order"}}
{{- end}}
  const int* ids = {{if .IDsOff}}(const int*)(ws + {{.IDsOff}}){{else}}ids_{{end}};
  const int n = T * K;
  // SEG threads per expert, each scanning one contiguous segment of the
  // pairs (so a long prefill's n pairs cost n/SEG reads a thread, not n):
  // no atomics, and each expert's pairs come in increasing pair order (as
  // on the CPU).
  constexpr int SEG = {{.Segs}};
  __shared__ int seg[E * SEG];  // pairs of expert e in segment s: seg[e * SEG + s]
  const int len = (n + SEG - 1) / SEG;
  for (int j = threadIdx.x; j < E * SEG; j += blockDim.x) {
    const int e = j / SEG, p1 = min(n, (j % SEG + 1) * len);
    int c = 0;
    for (int p = (j % SEG) * len; p < p1; p++) c += ids[p] == e;
    seg[j] = c;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    int c = 0;
    for (int s = 0; s < SEG; s++) c += seg[e * SEG + s];
    cnt[e] = c;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int s = 0;
    for (int e = 0; e < E; e++) { start[e] = s; s += cnt[e]; }
    start[E] = s;
{{- if or .GateUpMMA .DownMMA}}
    // The tensor-core kernels' tiles: {{.MMARows}} pairs of one expert with more
    // than {{.MinPairs}}, in a step of more than {{.WarpMaxRows}} tokens.
    int nt = 0;
    if (T > {{.WarpMaxRows}})
      for (int e = 0; e < E; e++)
        if (cnt[e] > {{.MinPairs}})
          for (int q = start[e]; q < start[e + 1]; q += {{.MMARows}}) { tiles[1 + 2 * nt] = e; tiles[2 + 2 * nt] = q; nt++; }
    tiles[0] = nt;
{{- end}}
  }
  __syncthreads();
  for (int j = threadIdx.x; j < E * SEG; j += blockDim.x) {
    const int e = j / SEG, p1 = min(n, (j % SEG + 1) * len);
    int o = start[e];
    for (int s = e * SEG; s < j; s++) o += seg[s];
    for (int p = (j % SEG) * len; p < p1; p++)
      if (ids[p] == e) order[o++] = p;
  }
}
`)

// moeGateUpTmpl is the SIMT gate/up GEMM with its SwiGLU: a warp per weight
// row, NP pairs per pass over it.
var moeGateUpTmpl = kernelTemplate("moe_gate_up", `// moe_gate_up: act[p, i] = silu(gate_e[i]·x[t]) · up_e[i]·x[t] over the pairs p = (t, slot) of expert e; gate_up {{.GUT}}[{{.E}}·{{.TwoI}}, {{.H}}]; one block per (expert, {{.RowsPerBlock}} intermediate rows); an expert with no pairs returns at once.
extern "C" __global__ void __launch_bounds__({{.Threads}}) KNAME(const {{.XT}}* __restrict__ x, const {{.GUT}}* __restrict__ gu, float* ws, int T) {
  enum { E = {{.E}}, K = {{.K}}, H = {{.H}}, I = {{.I}} };
{{- template "moe_scratch" .Regions "start" "order" "act"}}
  constexpr int TILES = {{.GUTiles}}, RPW = {{.RPW}}, NP = {{.NP}};
  const int e = blockIdx.x / TILES, tile = blockIdx.x % TILES;
  const int p0 = start[e], p1 = start[e + 1];
  if (p0 == p1) return;
{{- if .GateUpMMA}}
  if (T > {{.WarpMaxRows}} && p1 - p0 > {{.MinPairs}}) return;  // the tensor-core kernel's
{{- end}}
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int r = 0; r < RPW; r++) {
    const int i = tile * {{.RowsPerBlock}} + warp * RPW + r;
    if (i >= I) break;
    const {{.GUT}}* wg = gu + ((long)e * 2 * I + i) * H;
    const {{.GUT}}* wu = gu + ((long)e * 2 * I + I + i) * H;
    for (int q0 = p0; q0 < p1; q0 += NP) {
      float ag[NP], au[NP];
      const float* xs[NP];
#pragma unroll
      for (int q = 0; q < NP; q++) {
        ag[q] = 0.f;
        au[q] = 0.f;
        xs[q] = q0 + q < p1 ? x + (long)(order[q0 + q] / K) * H : nullptr;
      }
      for (int c = lane; c < H; c += 32) {
        const float g = pio_f32(wg[c]), u = pio_f32(wu[c]);
#pragma unroll
        for (int q = 0; q < NP; q++)
          if (xs[q]) {
            const float v = pio_f32(xs[q][c]);
            ag[q] = fmaf(g, v, ag[q]);
            au[q] = fmaf(u, v, au[q]);
          }
      }
#pragma unroll
      for (int q = 0; q < NP; q++) {
        const float gs = pio_warp_sum(ag[q]), us = pio_warp_sum(au[q]);
        if (lane == 0 && xs[q]) act[(long)order[q0 + q] * I + i] = __fmul_rn(gs / (1.0f + expf(-gs)), us);
      }
    }
  }
}
`)

// moeDownTmpl is the SIMT down GEMM: a warp per weight row, NP pairs per pass
// over it.
var moeDownTmpl = kernelTemplate("moe_down", `// moe_down: out[p, r] = down_e[r]·act[p] over the pairs p of expert e; down {{.DT}}[{{.E}}·{{.H}}, {{.I}}]; one block per (expert, {{.RowsPerBlock}} rows); an expert with no pairs returns at once.
extern "C" __global__ void __launch_bounds__({{.Threads}}) KNAME(const {{.DT}}* __restrict__ down, float* ws, int T) {
  enum { E = {{.E}}, K = {{.K}}, H = {{.H}}, I = {{.I}} };
{{- template "moe_scratch" .Regions "start" "order" "act" "out"}}
  constexpr int TILES = {{.DTiles}}, RPW = {{.RPW}}, NP = {{.NP}};
  const int e = blockIdx.x / TILES, tile = blockIdx.x % TILES;
  const int p0 = start[e], p1 = start[e + 1];
  if (p0 == p1) return;
{{- if .DownMMA}}
  if (T > {{.WarpMaxRows}} && p1 - p0 > {{.MinPairs}}) return;  // the tensor-core kernel's
{{- end}}
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int r = 0; r < RPW; r++) {
    const int row = tile * {{.RowsPerBlock}} + warp * RPW + r;
    if (row >= H) break;
    const {{.DT}}* wd = down + ((long)e * H + row) * I;
    for (int q0 = p0; q0 < p1; q0 += NP) {
      float acc[NP];
      const float* as[NP];
#pragma unroll
      for (int q = 0; q < NP; q++) {
        acc[q] = 0.f;
        as[q] = q0 + q < p1 ? act + (long)order[q0 + q] * I : nullptr;
      }
      for (int c = lane; c < I; c += 32) {
        const float d = pio_f32(wd[c]);
#pragma unroll
        for (int q = 0; q < NP; q++)
          if (as[q]) acc[q] = fmaf(d, as[q][c], acc[q]);
      }
#pragma unroll
      for (int q = 0; q < NP; q++) {
        const float v = pio_warp_sum(acc[q]);
        if (lane == 0 && as[q]) out[(long)order[q0 + q] * H + row] = v;
      }
    }
  }
}
`)

// moeCombineTmpl sums each token's pairs in increasing expert order, each
// scaled by its weight, in f32 (then + residual).
var moeCombineTmpl = kernelTemplate("moe_combine", `// moe_combine: y[t] = Σ_j w[t, j]·out[t, j] over the {{.K}} slots in increasing expert order{{if .Residual}}, plus the residual{{end}}.
extern "C" __global__ void __launch_bounds__(128) KNAME(
{{- if not .IDsOff}}const int* __restrict__ ids_, {{end}}
{{- if not .WOff}}const float* __restrict__ w_, {{end}}
{{- if .Residual}}const {{.RT}}* __restrict__ res, {{end}}float* __restrict__ y, float* ws, int T) {
  enum { E = {{.E}}, K = {{.K}}, H = {{.H}}, I = {{.I}} };
{{- template "moe_scratch" .Regions "out"}}
  const int* ids = {{if .IDsOff}}(const int*)(ws + {{.IDsOff}}){{else}}ids_{{end}};
  const float* w = {{if .WOff}}(const float*)(ws + {{.WOff}}){{else}}w_{{end}};
  const long t = blockIdx.x;
  if (t >= T) return;
  int perm[K];
  for (int j = 0; j < K; j++) {
    perm[j] = j;
    for (int c = j; c > 0 && ids[t * K + perm[c]] < ids[t * K + perm[c - 1]]; c--) {
      const int s = perm[c]; perm[c] = perm[c - 1]; perm[c - 1] = s;
    }
  }
  for (int c = threadIdx.x; c < H; c += blockDim.x) {
    float acc = 0.f;
    for (int jj = 0; jj < K; jj++) {
      const int j = perm[jj], id = ids[t * K + j];
      if (id < 0 || id >= E) continue;
      acc = __fadd_rn(acc, __fmul_rn(out[(t * K + j) * H + c], w[t * K + j]));
    }
{{- if .Residual}}
    acc = __fadd_rn(pio_f32(res[(long)t * H + c]), acc);
{{- end}}
    y[t * H + c] = acc;
  }
}
`)

// expertKernels emits the grouped GEMM and the combine. x, ids, w: the
// parameters that hold the input rows, ids and weights (args or the
// workspace); base is the C expression (in T) of the pair scratch's offset
// in the workspace; res the residual parameter (nil: none).
func (g *gen) expertKernels(step int, m moeGeom, xt string, x, ids, w, gu, down abi.Param, base string, idsOff, wOff string, res *abi.Param, rt string) error {
	ws := abi.Param{Kind: abi.PWorkspace}
	T := abi.Param{Kind: abi.PT}
	withIDs := func(ps ...abi.Param) []abi.Param {
		if idsOff == "" {
			return append([]abi.Param{ids}, ps...)
		}
		return ps
	}

	// Tensor cores (bf16 weights whose rows are whole 16-byte vectors, f32
	// x) for the experts with more than moeMMAMinPairs pairs in a step of
	// more than WarpMaxRows tokens; the SIMT kernels take the others.
	guMMA := m.gut == "pio_bf16" && m.h%8 == 0 && xt == "float"
	downMMA := m.dt == "pio_bf16" && m.inter%8 == 0
	rowsPerBlock := moeWarps * moeRowsPerWarp
	guTiles := (m.inter + rowsPerBlock - 1) / rowsPerBlock
	dTiles := (m.h + rowsPerBlock - 1) / rowsPerBlock
	h := &moeHoles{E: m.e, K: m.k, H: m.h, I: m.inter, TwoI: 2 * m.inter, GUT: m.gut, DT: m.dt, XT: xt, Base: base,
		IDsOff: idsOff, WOff: wOff, Residual: res != nil, RT: rt, GateUpMMA: guMMA, DownMMA: downMMA,
		Threads: moeWarps * 32, RowsPerBlock: rowsPerBlock, RPW: moeRowsPerWarp, NP: moePairs, GUTiles: guTiles, DTiles: dTiles,
		Segs: max(1, 1024/m.e), MinPairs: moeMMAMinPairs, MMARows: moeMMARows, WarpMaxRows: WarpMaxRows}

	// 1. Count, offsets and the pairs grouped by expert.
	route, err := g.emit("moe_group", moeGroupTmpl, h)
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: route, Block: 1024, Grid: [3]abi.Expr{{Fixed: 1}, {Fixed: 1}, {Fixed: 1}},
		Params: withIDs(ws, T)})

	// 2. act[p] = silu(gate_e·x[t]) ⊙ (up_e·x[t]) for the pairs of each expert.
	gateUp, err := g.emit("moe_gate_up", moeGateUpTmpl, h)
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: gateUp, Block: moeWarps * 32, Grid: [3]abi.Expr{{Fixed: int64(m.e * guTiles)}, {Fixed: 1}, {Fixed: 1}},
		Params: []abi.Param{x, gu, ws, T}})
	if guMMA {
		name, err := g.emit("moe_gate_up_mma", moeMMATmpl, moeMMAHoles{h, gemmGateUp})
		if err != nil {
			return err
		}
		for _, r := range m.mmaTiles() {
			g.launch(abi.Launch{Step: step, Kernel: name, Block: 256, MinRows: r.minRows, MaxRows: r.maxRows, Grid: [3]abi.Expr{{Fixed: int64(m.inter), Div: moeMMARows}, r.tiles, {Fixed: 1}},
				Params: []abi.Param{x, gu, ws, T}})
		}
	}

	// 3. out[p] = down_e·act[p].
	downK, err := g.emit("moe_down", moeDownTmpl, h)
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: downK, Block: moeWarps * 32, Grid: [3]abi.Expr{{Fixed: int64(m.e * dTiles)}, {Fixed: 1}, {Fixed: 1}},
		Params: []abi.Param{down, ws, T}})
	if downMMA {
		name, err := g.emit("moe_down_mma", moeMMATmpl, moeMMAHoles{h, gemmDown})
		if err != nil {
			return err
		}
		for _, r := range m.mmaTiles() {
			g.launch(abi.Launch{Step: step, Kernel: name, Block: 256, MinRows: r.minRows, MaxRows: r.maxRows, Grid: [3]abi.Expr{{Fixed: int64(m.h), Div: 128}, r.tiles, {Fixed: 1}},
				Params: []abi.Param{down, ws, T}})
		}
	}

	// 4. y[t] = Σ_j w[t,j]·out[t,j] in increasing expert order (+ residual).
	combine, err := g.emit("moe_combine", moeCombineTmpl, h)
	if err != nil {
		return err
	}
	ps := withIDs()
	if wOff == "" {
		ps = append(ps, w)
	}
	if res != nil {
		ps = append(ps, *res)
	}
	g.launch(abi.Launch{Step: step, Kernel: combine, Block: 128, Grid: [3]abi.Expr{{T: 1}, {Fixed: 1}, {Fixed: 1}},
		Params: append(ps, abi.Param{Kind: abi.POut}, ws, T)})
	return nil
}

func (g *gen) moe(step int, s ir.Step) error {
	xdt, _ := g.operand(s.Args[0])
	xt, err := ctype(xdt)
	if err != nil {
		return err
	}
	_, ish := g.operand(s.Args[1])
	m, err := g.moeShape(s.Args[0], s.Args[3], s.Args[4], int(s.Attr().Int("experts")), int(ish[1]))
	if err != nil {
		return err
	}
	arg := func(i int) abi.Param { return abi.Param{Kind: abi.PArg, Index: uint16(i)} }
	n := len(g.m.Launches)
	if err := g.expertKernels(step, m, xt, arg(0), arg(1), arg(2), arg(3), arg(4), "0L", "", "", nil, ""); err != nil {
		return err
	}
	for i := n; i < len(g.m.Launches); i++ {
		g.m.Launches[i].Workspace = m.scratch()
	}
	return nil
}

func (g *gen) moeRouted(step int, s ir.Step) error {
	at := s.Attr()
	biasArg, normArg, resArg, nargs := ir.MoERoutedLayout(at)
	if len(s.Args) != nargs {
		return fmt.Errorf("want %d args, got %d", nargs, len(s.Args))
	}
	xdt, xsh := g.operand(s.Args[0])
	xt, err := ctype(xdt)
	if err != nil {
		return err
	}
	rdt, rsh := g.operand(s.Args[1])
	rt, err := ctype(rdt)
	if err != nil {
		return err
	}
	h := int(xsh[1])
	if len(rsh) != 2 || int(rsh[1]) != h {
		return fmt.Errorf("router %v does not fit hidden %d", rsh, h)
	}
	re, k := int(rsh[0]), int(at.Int("k"))
	m, err := g.moeShape(s.Args[0], s.Args[2], s.Args[3], int(at.Int("experts")), k)
	if err != nil {
		return err
	}
	arg := func(i int) abi.Param { return abi.Param{Kind: abi.PArg, Index: uint16(i)} }
	ws, T := abi.Param{Kind: abi.PWorkspace}, abi.Param{Kind: abi.PT}
	n0 := len(g.m.Launches)
	// Workspace: [xn T·H if norm] logits T·E, ids T·k, weights T·k, then the pair scratch.
	xnOff, perT := "", int64(0)
	xp, xType := arg(0), xt
	if normArg >= 0 {
		ndt, _ := g.operand(s.Args[normArg])
		nt, err := ctype(ndt)
		if err != nil {
			return err
		}
		off := "0.0f"
		if at.Bool("unit_offset") {
			off = "1.0f"
		}
		name, err := g.emit("moe_norm", moeNormTmpl, moeNormHoles{H: h, XT: xt, NT: nt, Eps: cf(at.Float("eps")), Off: off})
		if err != nil {
			return err
		}
		g.launch(abi.Launch{Step: step, Kernel: name, Block: 128, Grid: [3]abi.Expr{{T: 1}, {Fixed: 1}, {Fixed: 1}},
			Params: []abi.Param{arg(0), arg(normArg), ws, T}})
		xnOff, perT = "0L", int64(h)
		xp, xType = ws, "float"
	}
	logitsOff := fmt.Sprintf("%dL * T", perT)
	idsOff := fmt.Sprintf("%dL * T", perT+int64(re))
	wOff := fmt.Sprintf("%dL * T", perT+int64(re+k))
	base := fmt.Sprintf("%dL * T", perT+int64(re+2*k))
	// Router GEMM: logits[t, e] = x'[t]·router[e], one warp per output.
	rparams := []abi.Param{arg(0), arg(1), ws, T}
	if xnOff != "" {
		rparams = []abi.Param{arg(1), ws, T}
	}
	gemm, err := g.emit("moe_router", moeRouterTmpl, moeRouterHoles{RT: rt, E: re, H: h, XT: xType, Normed: xnOff != "", LogitsOff: logitsOff})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: gemm, Block: 256, Grid: [3]abi.Expr{{T: int64(re), Div: 8}, {Fixed: 1}, {Fixed: 1}}, Params: rparams})
	// Routing, reading the logits and writing ids and weights in the workspace.
	bt := ""
	if biasArg >= 0 {
		bdt, _ := g.operand(s.Args[biasArg])
		if bt, err = ctype(bdt); err != nil {
			return err
		}
	}
	wparams := []abi.Param{ws}
	if bt != "" {
		wparams = append(wparams, arg(biasArg))
	}
	routeWS, err := g.emit("moe_route", moeRouteTmpl, route{Logits: "float", Bias: bt, Experts: re, K: k, Softmax: at.String("scoring") == "softmax",
		TopK: true, Weights: true, Normalize: at.Bool("normalize"), Scale: at.Float("scale"), Workspace: []string{logitsOff, idsOff, wOff}})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: routeWS, Block: 32, Grid: [3]abi.Expr{{T: 1}, {Fixed: 1}, {Fixed: 1}}, Params: append(wparams, T, abi.Param{Kind: abi.PS})})

	var res *abi.Param
	resT := ""
	if resArg >= 0 {
		rp := arg(resArg)
		res = &rp
		rdt, _ := g.operand(s.Args[resArg])
		if resT, err = ctype(rdt); err != nil {
			return err
		}
	}
	if err := g.expertKernels(step, m, xType, xp, abi.Param{}, abi.Param{}, arg(2), arg(3), base, idsOff, wOff, res, resT); err != nil {
		return err
	}
	for i := n0; i < len(g.m.Launches); i++ {
		g.m.Launches[i].Workspace = perT + int64(re+2*k) + m.scratch()
	}
	return nil
}

// moeNormHoles fill moe_norm.
type moeNormHoles struct {
	H      int    // row length
	XT, NT string // x's and the norm weight's element types
	Eps    string // C literal
	Off    string // "0.0f", or "1.0f" with unit_offset
}

// moeNormTmpl is moe_routed's RMSNorm prologue, like the CPU's rmsRow: Σx² in
// double, inv = 1/sqrt(mean + eps), y = (x·inv)·w.
var moeNormTmpl = kernelTemplate("moe_norm", `// moe_norm: xn = rms_norm(x, w) over rows of {{.H}} into the workspace (the prologue of moe_routed).
extern "C" __global__ void __launch_bounds__(128) KNAME(const {{.XT}}* __restrict__ x, const {{.NT}}* __restrict__ w, float* ws, int T) {
  __shared__ double part[128];
  const long t = blockIdx.x;
  if (t >= T) return;
  const {{.XT}}* xr = x + t * {{.H}}L;
  float* yr = ws + t * {{.H}}L;
  double ss = 0.0;
  for (int c = threadIdx.x; c < {{.H}}; c += 128) { const double v = pio_f32(xr[c]); ss += v * v; }
  part[threadIdx.x] = ss;
  __syncthreads();
  ss = 0.0;
  for (int i = 0; i < 128; i++) ss += part[i];
  const float mean = (float)(ss / {{.H}}.0);
  const float inv = (float)(1.0 / sqrt((double)__fadd_rn(mean, {{.Eps}})));
  for (int c = threadIdx.x; c < {{.H}}; c += 128) yr[c] = __fmul_rn(__fmul_rn(pio_f32(xr[c]), inv), {{.Off}} + pio_f32(w[c]));
}
`)

// moeRouterHoles fill moe_router.
type moeRouterHoles struct {
	RT        string // the router's element type
	E, H      int    // experts, hidden
	XT        string // x's element type
	Normed    bool   // x is moe_norm's rows in the workspace (at 0), not a parameter
	LogitsOff string // C expression (in T): the logits' offset in the workspace
}

// moeRouterTmpl is moe_routed's router GEMM: logits[t, e] = x'[t]·router[e],
// one warp per output.
var moeRouterTmpl = kernelTemplate("moe_router", `// moe_router: logits[t, e] = x[t]·router[e] (router {{.RT}}[{{.E}}, {{.H}}]) into the workspace, one warp per output.
extern "C" __global__ void __launch_bounds__(256) KNAME({{if not .Normed}}const {{.XT}}* __restrict__ x, {{end}}const {{.RT}}* __restrict__ router, float* ws, int T) {
  const long o = (long)blockIdx.x * 8 + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (o >= (long)T * {{.E}}) return;
  const long t = o / {{.E}}, e = o % {{.E}};
  const {{.XT}}* xr = {{if .Normed}}ws{{else}}x{{end}} + t * {{.H}}L;
  const {{.RT}}* wr = router + e * {{.H}}L;
  float acc = 0.f;
  for (int c = lane; c < {{.H}}; c += 32) acc = fmaf(pio_f32(xr[c]), pio_f32(wr[c]), acc);
  acc = pio_warp_sum(acc);
  if (lane == 0) ws[{{.LogitsOff}} + o] = acc;
}
`)

// The tensor-core expert GEMMs: an expert with more than moeMMAMinPairs
// pairs in a step of more than WarpMaxRows tokens is multiplied in block
// tiles of moeMMARows of its pairs (gathered rows of x, or of act) by 128
// weight rows.
const (
	moeMMAMinPairs = WarpMaxRows
	moeMMARows     = 64
	moeMMATerms    = mmaTerms // bf16 terms of x (mma.go's scheme)
)

// mmaTiles gives the grid's y dimension of the tensor-core kernels by the
// step's tokens T > WarpMaxRows: at least the tile table's entries, the
// smaller of two bounds (blocks past the table return at once). An expert
// in the table has c ≥ n = moeMMAMinPairs+1 pairs, and the pairs of a step
// total T·K. Its ⌈c/64⌉ tiles are at most c/n (one for c ≤ 64, else at most
// c/64 + 1), so T·K/n in all; and at most (c+63)/64, so (T·K + 63·E)/64.
// The first is smaller up to T = 63·n·E / ((64−n)·K).
func (m moeGeom) mmaTiles() []moeTileGrid {
	n := moeMMAMinPairs + 1
	perPair := abi.Expr{T: int64(m.k), Div: int64(n)}
	perExpert := abi.Expr{T: int64(m.k), Fixed: int64((moeMMARows - 1) * m.e), Div: moeMMARows}
	x := (moeMMARows - 1) * n * m.e / ((moeMMARows - n) * m.k)
	if x <= WarpMaxRows {
		return []moeTileGrid{{WarpMaxRows + 1, 0, perExpert}}
	}
	return []moeTileGrid{{WarpMaxRows + 1, x, perPair}, {x + 1, 0, perExpert}}
}

// moeTileGrid is the y dimension of a tensor-core expert launch for steps
// of minRows to maxRows (0: no bound) tokens.
type moeTileGrid struct {
	minRows, maxRows int
	tiles            abi.Expr
}

// expertGEMM names one of the two expert GEMMs.
type expertGEMM uint8

const (
	gemmGateUp expertGEMM = iota // x rows of the pairs' tokens in, silu(gate)·up out (act)
	gemmDown                     // act rows in, out
)

// moeMMAHoles fill moe_mma: the step's expert holes and which GEMM.
type moeMMAHoles struct {
	*moeHoles
	Which expertGEMM
}

func (h moeMMAHoles) Down() bool { return h.Which == gemmDown }
func (h moeMMAHoles) Terms() int { return moeMMATerms }

// KD is the GEMM's depth, NOut its output columns, Cols the columns of a
// block (64 act columns, whose gate and up rows make 128 weight rows, or
// 128 out columns) and NS its 32-deep k slices.
func (h moeMMAHoles) KD() int   { return h.pick(h.I, h.H) }
func (h moeMMAHoles) NOut() int { return h.pick(h.H, h.I) }
func (h moeMMAHoles) Cols() int { return h.pick(128, 64) }
func (h moeMMAHoles) NS() int   { return (h.KD() + 31) / 32 }

func (h moeMMAHoles) pick(down, gateUp int) int {
	if h.Down() {
		return down
	}
	return gateUp
}

// Frags are the fragments of mma_slice: with the gate/up GEMM, n tiles 0, 1
// of a warp are gate rows (shared W rows 0..63) and 2, 3 the matching up
// rows (64..127).
func (h moeMMAHoles) Frags() mmaFrags {
	wrow := "(j >> 1) * 64 + wn * 16 + (j & 1) * 8"
	if h.Down() {
		wrow = "wn * 32 + j * 8"
	}
	return mmaFrags{XS: "xsh", WS: "wsh", WRow: wrow, SkipEmpty: true}
}

// moeMMAStage fills moe_mma_load (K0) and moe_mma_store (Buf).
type moeMMAStage struct {
	moeMMAHoles
	K0, Buf string
}

func (h moeMMAHoles) Load(k0 string) moeMMAStage   { return moeMMAStage{h, k0, ""} }
func (h moeMMAHoles) Store(buf string) moeMMAStage { return moeMMAStage{h, "", buf} }

// moeMMATmpl is the tensor-core kernel of the gate/up GEMM with its SwiGLU
// (x rows of the pairs' tokens, act out) or of the down GEMM (act rows in,
// out), one block per (tile table entry: 64 pairs of one expert,
// 64 act columns or 128 out columns). The numerics and the data path are
// matmul_mma's (mma.go): mma.sync m16n8k16 bf16, x split into three bf16
// terms multiplied into f32 accumulators, the smallest first; 32-deep k
// slices in two shared buffers, each lane's 16-byte shared reads covering
// its fragments of both 16-deep steps (the same permutation of k for A and
// B). The rows of the tile are gathered: row r is pair order[q0 + r], so a
// thread looks up the two rows it stages once. Warps with no valid rows
// skip the multiplies.
var moeMMATmpl = kernelTemplate("moe_mma", `
{{- if .Down -}}
// moe_down, tensor cores: out[p, r] = down_e[r]·act[p]; down {{.DT}}[{{.E}}·{{.H}}, {{.I}}]
{{- else -}}
// moe_gate_up, tensor cores: act[p, i] = silu(gate_e[i]·x[t]) · up_e[i]·x[t]; gate_up {{.GUT}}[{{.E}}·{{.TwoI}}, {{.H}}]
{{- end -}}
, over the pairs p = (t, slot) of the experts with more than {{.MinPairs}} pairs (moe_group's tile table); one block per ({{.MMARows}} pairs of one expert, {{.Cols}} columns); mma.sync m16n8k16 bf16 on x split into {{.Terms}} bf16 terms.
extern "C" __global__ void __launch_bounds__(256) KNAME({{if .Down}}const pio_bf16* __restrict__ down{{else}}const float* __restrict__ x, const pio_bf16* __restrict__ gu{{end}}, float* ws, int T) {
  enum { E = {{.E}}, K = {{.K}}, H = {{.H}}, I = {{.I}} };
{{- if .Down}}
{{- template "moe_scratch" .Regions "start" "order" "act" "out" "tiles"}}
{{- else}}
{{- template "moe_scratch" .Regions "start" "order" "act" "tiles"}}
{{- end}}
  constexpr long KD = {{.KD}}, NOUT = {{.NOut}};  // depth, output columns
  constexpr int NS = {{.NS}};  // k slices
  if ((int)blockIdx.y >= tiles[0]) return;
  const int ex = tiles[1 + 2 * blockIdx.y], q0 = tiles[2 + 2 * blockIdx.y];
  const int M = min(start[ex + 1] - q0, {{.MMARows}});  // rows (pairs) of the tile
  const pio_bf16* w = {{if .Down}}down + (long)ex * H * I{{else}}gu + (long)ex * 2 * I * H{{end}};
  // x's bf16 terms and W: [buffer]([term])[row][k pair] (bf16 pairs, low k in the low half)
  __align__(16) __shared__ unsigned xsh[2][{{.Terms}}][64][16];
  __align__(16) __shared__ unsigned wsh[2][128][16];
  __shared__ int pr[64];  // the pair of each row
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int wm = warp >> 2, wn = warp & 3;  // warp tile: rows wm*32.., weight rows below
  const long n0 = (long)blockIdx.x * {{.Cols}};
  if (tid < 64) pr[tid] = tid < M ? order[q0 + tid] : 0;
  __syncthreads();
  const float* xrow[2];  // the rows this thread stages: tid / 8 and 32 + tid / 8
#pragma unroll
  for (int i = 0; i < 2; i++) {
    const int r = (tid + i * 256) >> 3;
    xrow[i] = r < M ? {{if .Down}}act + (long)pr[r] * I{{else}}x + (long)(pr[r] / K) * H{{end}} : nullptr;
  }
  float4 xr[2];
  uint4 wr[2];
  float acc[2][4][4];
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int c = 0; c < 4; c++) acc[i][j][c] = 0.f;
  {
{{template "moe_mma_load" .Load "0L"}}
{{template "moe_mma_store" .Store "0"}}
  }
  __syncthreads();
  for (int s = 0; s < NS; s++) {
    const int B = s & 1;
    if (s + 1 < NS) {
{{include "moe_mma_load" (.Load "(s + 1) * 32L") | indent}}
    }
    if (wm * 32 < M) {
{{include "mma_slice" .Frags | indent}}
    }
    if (s + 1 < NS) {
{{include "moe_mma_store" (.Store "B ^ 1") | indent}}
    }
    __syncthreads();
  }
  // Accumulator c of tile (i, j) is row g + 8·(c >> 1), column 2t + (c & 1).
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < {{if .Down}}4{{else}}2{{end}}; j++)
#pragma unroll
      for (int c = 0; c < 4; c++) {
        const int r = wm * 32 + i * 16 + g + (c >> 1) * 8;
{{- if .Down}}
        const long gn = n0 + wn * 32 + j * 8 + 2 * t + (c & 1);
        if (r < M && gn < NOUT) out[(long)pr[r] * H + gn] = acc[i][j][c];
{{- else}}
        const long gn = n0 + wn * 16 + j * 8 + 2 * t + (c & 1);
        if (r < M && gn < NOUT) act[(long)pr[r] * I + gn] = __fmul_rn(acc[i][j][c] / (1.0f + expf(-acc[i][j][c])), acc[i][j + 2][c]);
{{- end}}
      }
}
`)

// moeMMALoadTmpl stages a k slice (from K0) in registers: two float4 of the
// thread's gathered rows and two 16-byte vectors of W.
var moeMMALoadTmpl = kernelTemplate("moe_mma_load", `#pragma unroll
    for (int i = 0; i < 2; i++) {
      const long kk = {{.K0}} + ((tid + i * 256) & 7) * 4;  // x: 64 rows × 8 float4
      xr[i] = (xrow[i] && kk < KD) ? pio_ld4(xrow[i] + kk) : float4{0.f, 0.f, 0.f, 0.f};
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int el = tid + i * 256, r = el >> 2, c = (el & 3) * 8;  // w: 128 rows × 4 vectors of 8
{{- if .Down}}
      const long gn = n0 + r, kk = {{.K0}} + c, wrow = gn;
{{- else}}
      const long gn = n0 + (r & 63), kk = {{.K0}} + c, wrow = gn + (r >> 6) * NOUT;  // gate rows, then up rows
{{- end}}
      wr[i] = (gn < NOUT && kk < KD) ? pio_ld16(w + wrow * KD + kk) : uint4{0u, 0u, 0u, 0u};
    }`)

// moeMMAStoreTmpl stores the staged slice into shared buffer Buf, x split into
// its bf16 terms.
var moeMMAStoreTmpl = kernelTemplate("moe_mma_store", `#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int el = tid + i * 256, r = el >> 3, c = (el & 7) * 2;
      float v[4] = {xr[i].x, xr[i].y, xr[i].z, xr[i].w};
#pragma unroll
      for (int p = 0; p < {{.Terms}}; p++) {
        xsh[{{.Buf}}][p][r][c] = pio_bf16x2_take(v[0], v[1]);
        xsh[{{.Buf}}][p][r][c + 1] = pio_bf16x2_take(v[2], v[3]);
      }
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int el = tid + i * 256;
      *reinterpret_cast<uint4*>(&wsh[{{.Buf}}][el >> 2][(el & 3) * 4]) = wr[i];
    }`)
