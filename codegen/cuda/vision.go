package cuda

import (
	"fmt"
	"strings"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
)

// Templates of the vision family (ir/op_vision.go): Qwen3-VL's vision tower
// (layer_norm, gelu, bias_add, segment_attention, 2-D mrope, weighted_rows)
// and the multimodal text ops (interleaved mrope, add_rows, set_rows), with
// runtime/cpu/vision.go's semantics. Activations are f32; weights, biases
// and tables f32, bf16 or f16.
func init() {
	templates[ir.OpLayerNorm] = (*gen).layerNorm
	templates[ir.OpGELU] = (*gen).gelu
	templates[ir.OpBiasAdd] = (*gen).biasAdd
	templates[ir.OpSegmentAttention] = (*gen).segmentAttention
	templates[ir.OpMRoPE] = (*gen).mrope
	templates[ir.OpWeightedRows] = (*gen).weightedRows
	templates[ir.OpAddRows] = (*gen).maskRows
	templates[ir.OpSetRows] = (*gen).maskRows
	// The vision stage also cuts q, k and v out of the fused qkv projection
	// with section, a core op (gen.go).
}

// floatTypes returns the CUDA element types of step operands.
func (g *gen) floatTypes(s ir.Step, args ...int) ([]string, error) {
	ts := make([]string, len(args))
	for i, a := range args {
		dt, _ := g.operand(s.Args[a])
		t, err := ctype(dt)
		if err != nil {
			return nil, fmt.Errorf("operand %d: %w", a, err)
		}
		ts[i] = t
	}
	return ts, nil
}

// layerNormHoles fill layer_norm.
type layerNormHoles struct {
	XT, WT, BT string // x, weight and bias element types
	D          int64  // row length
	Eps        string // C literal
	Block      int    // threads
}

// layerNormTmpl: one block per row, both statistics from two passes over it.
var layerNormTmpl = kernelTemplate("layer_norm", `// layer_norm over rows of {{.D}}: y = (x − mean)/sqrt(var + eps)·w + b (biased variance).
extern "C" __global__ void __launch_bounds__({{.Block}}) KNAME(const {{.XT}}* x, const {{.WT}}* __restrict__ w, const {{.BT}}* __restrict__ b, float* y, int T, int S) {
  __shared__ float red[32];
  const long row = blockIdx.x;  // one block per row
  const {{.XT}}* xr = x + row * {{.D}}L;
  float* yr = y + row * {{.D}}L;
  float s = 0.f;
  for (int c = threadIdx.x; c < {{.D}}; c += {{.Block}}) s += pio_f32(xr[c]);
  const float mean = pio_block_sum(s, red) / {{.D}}.0f;
  float ss = 0.f;
  for (int c = threadIdx.x; c < {{.D}}; c += {{.Block}}) {
    const float v = pio_f32(xr[c]) - mean;
    ss = fmaf(v, v, ss);
  }
  const float rstd = 1.0f / sqrtf(pio_block_sum(ss, red) / {{.D}}.0f + {{.Eps}});
  for (int c = threadIdx.x; c < {{.D}}; c += {{.Block}})
    yr[c] = __fadd_rn(__fmul_rn(__fmul_rn(pio_f32(xr[c]) - mean, rstd), pio_f32(w[c])), pio_f32(b[c]));
}
`)

// layerNorm: one block per row of d: y = (x − mean)·rstd·w + b with the
// biased variance, both statistics from two passes over the row.
func (g *gen) layerNorm(step int, s ir.Step) error {
	ts, err := g.floatTypes(s, 0, 1, 2)
	if err != nil {
		return err
	}
	_, xsh := g.operand(s.Args[0])
	d := int64(xsh.Last())
	grid, _, err := rows(xsh, d)
	if err != nil {
		return err
	}
	block := 128
	if d > 1024 {
		block = 256
	}
	name, err := g.emit("layer_norm", layerNormTmpl, layerNormHoles{XT: ts[0], WT: ts[1], BT: ts[2], D: d, Eps: cf(s.Attr().Float("eps")), Block: block})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(3), Block: block, Grid: [3]abi.Expr{grid, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

// geluHoles fill gelu.
type geluHoles struct {
	XT     string // x element type
	N      string // C expression: the elements
	Expr   string // C expression of y from v
	Approx string // erf or tanh
}

// geluTmpl is elementwise gelu.
var geluTmpl = kernelTemplate("gelu", `// gelu ({{.Approx}}) over {{.N}} elements.
extern "C" __global__ void __launch_bounds__(256) KNAME(const {{.XT}}* x, float* y, int T, int S) {
  const long n = {{.N}};
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    const float v = pio_f32(x[i]);
    y[i] = {{.Expr}};
  }
}
`)

// gelu: elementwise x·Φ(x), exact (erf) or the tanh approximation.
func (g *gen) gelu(step int, s ir.Step) error {
	ts, err := g.floatTypes(s, 0)
	if err != nil {
		return err
	}
	var expr string
	switch a := s.Attr().String("approximate"); a {
	case "erf":
		expr = "0.5f * v * (1.0f + erff(v * 0.707106781f))"
	case "tanh":
		expr = "0.5f * v * (1.0f + tanhf(0.797884561f * (v + 0.044715f * v * v * v)))"
	default:
		return fmt.Errorf("approximate %q has no CUDA template", a)
	}
	_, xsh := g.operand(s.Args[0])
	t, sq, f := count(xsh)
	name, err := g.emit("gelu", geluTmpl, geluHoles{XT: ts[0], N: cExpr(t, sq, f), Expr: expr, Approx: s.Attr().String("approximate")})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(1), Block: 256,
		Grid: [3]abi.Expr{{T: t, S: sq, Fixed: f, Div: 256}, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

// biasAddHoles fill bias_add.
type biasAddHoles struct {
	XT, BT string // x and bias element types
	N      string // C expression: the elements
	Cols   int64  // the bias length
}

// biasAddTmpl adds the bias to every row.
var biasAddTmpl = kernelTemplate("bias_add", `// bias_add: y[i] = x[i] + b[i % {{.Cols}}] over {{.N}} elements.
extern "C" __global__ void __launch_bounds__(256) KNAME(const {{.XT}}* x, const {{.BT}}* __restrict__ b, float* y, int T, int S) {
  const long n = {{.N}};
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    y[i] = __fadd_rn(pio_f32(x[i]), pio_f32(b[i % {{.Cols}}L]));
}
`)

// biasAdd: y[..., n] = x[..., n] + b[n].
func (g *gen) biasAdd(step int, s ir.Step) error {
	ts, err := g.floatTypes(s, 0, 1)
	if err != nil {
		return err
	}
	_, xsh := g.operand(s.Args[0])
	n := int64(xsh.Last())
	t, sq, f := count(xsh)
	name, err := g.emit("bias_add", biasAddTmpl, biasAddHoles{XT: ts[0], BT: ts[1], N: cExpr(t, sq, f), Cols: n})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(2), Block: 256,
		Grid: [3]abi.Expr{{T: t, S: sq, Fixed: f, Div: 256}, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

// maskRowsHoles fill mask_rows.
type maskRowsHoles struct {
	HT, FT string // h and f element types
	Op     string // add_rows or set_rows
	D      int64  // row length
	Set    bool   // set_rows, else add_rows
}

// maskRowsTmpl is add_rows and set_rows: one block per token.
var maskRowsTmpl = kernelTemplate("mask_rows", `// {{.Op}} over rows of {{.D}}: y[t] = mask[t] ≠ 0 ? {{if .Set}}f[t]{{else}}h[t] + f[t]{{end}} : h[t].
extern "C" __global__ void __launch_bounds__(128) KNAME(const {{.HT}}* h, const {{.FT}}* f, const int* __restrict__ mask, float* y, int T, int S) {
  const long t = blockIdx.x;  // one block per token
  const {{.HT}}* hr = h + t * {{.D}}L;
  const {{.FT}}* fr = f + t * {{.D}}L;
  float* yr = y + t * {{.D}}L;
  if (mask[t] != 0) {
    for (int c = threadIdx.x; c < {{.D}}; c += blockDim.x) yr[c] = {{if .Set}}pio_f32(fr[c]){{else}}__fadd_rn(pio_f32(hr[c]), pio_f32(fr[c])){{end}};
  } else {
    for (int c = threadIdx.x; c < {{.D}}; c += blockDim.x) yr[c] = pio_f32(hr[c]);
  }
}
`)

// maskRows: add_rows (y[t] = h[t] + f[t] where mask[t] ≠ 0) and set_rows
// (y[t] = f[t] there); elsewhere y[t] = h[t]. One block per token.
func (g *gen) maskRows(step int, s ir.Step) error {
	ts, err := g.floatTypes(s, 0, 1)
	if err != nil {
		return err
	}
	_, hsh := g.operand(s.Args[0])
	d := int64(hsh.Last())
	grid, _, err := rows(hsh, d)
	if err != nil {
		return err
	}
	op := "add_rows"
	if s.Op == ir.OpSetRows {
		op = "set_rows"
	}
	name, err := g.emit(op, maskRowsTmpl, maskRowsHoles{HT: ts[0], FT: ts[1], Op: op, D: d, Set: s.Op == ir.OpSetRows})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(3), Block: 128, Grid: [3]abi.Expr{grid, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

// weightedRowsHoles fill weighted_rows.
type weightedRowsHoles struct {
	TT, WT string // table and weight element types
	N, D   int64  // the table is [N, D]
	K      int64  // rows summed per output row
}

// weightedRowsTmpl: one block per output row.
var weightedRowsTmpl = kernelTemplate("weighted_rows", `// weighted_rows: y[r] = Σ_k<{{.K}} w[r,k]·table[idx[r,k]], k in order; table [{{.N}}, {{.D}}]; an index outside it gives a NaN row.
extern "C" __global__ void __launch_bounds__(128) KNAME(const {{.TT}}* __restrict__ table, const int* __restrict__ idx, const {{.WT}}* __restrict__ w, float* __restrict__ y, int T, int S) {
  const long r = blockIdx.x;  // one block per output row
  const int* ir = idx + r * {{.K}}L;
  float* yr = y + r * {{.D}}L;
  bool ok = true;
  for (int j = 0; j < {{.K}}; j++) ok = ok && ir[j] >= 0 && ir[j] < {{.N}};
  if (!ok) {
    for (int c = threadIdx.x; c < {{.D}}; c += blockDim.x) yr[c] = __uint_as_float(0x7fc00000u);
    return;
  }
  for (int c = threadIdx.x; c < {{.D}}; c += blockDim.x) {
    float acc = 0.f;
    for (int j = 0; j < {{.K}}; j++) {
      const float p = __fmul_rn(pio_f32(w[r * {{.K}}L + j]), pio_f32(table[(long)ir[j] * {{.D}}L + c]));
      acc = j == 0 ? p : __fadd_rn(acc, p);
    }
    yr[c] = acc;
  }
}
`)

// weightedRows: y[r] = Σ_k w[r,k]·table[idx[r,k]], k in order
// (((w0·t0 + w1·t1) + w2·t2) + …) without contraction, as the CPU sums.
// An index outside the table makes the row NaN (the CPU backend reports an
// error; a kernel cannot, so the result is poisoned rather than read out
// of bounds).
func (g *gen) weightedRows(step int, s ir.Step) error {
	ts, err := g.floatTypes(s, 0, 2)
	if err != nil {
		return err
	}
	_, tsh := g.operand(s.Args[0])
	_, ish := g.operand(s.Args[1])
	n, d := int64(tsh[0]), int64(tsh[1])
	k := int64(ish.Last())
	grid, _, err := rows(ish, k)
	if err != nil {
		return err
	}
	name, err := g.emit("weighted_rows", weightedRowsTmpl, weightedRowsHoles{TT: ts[0], WT: ts[1], N: n, D: d, K: k})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(3), Block: 128, Grid: [3]abi.Expr{grid, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

// mropeAxes returns each frequency slot's position axis, as runtime/cpu's
// mropeSlots: "chunked" gives axis a the slots [Σ_{b<a} s_b, Σ_{b≤a} s_b);
// "interleaved" (Qwen3-VL's text) gives axis a ≥ 1 the slots a, a+3, …
// below 3·s_a and axis 0 the rest.
func mropeAxes(secs []int64, layout string) []int {
	n := 0
	for _, s := range secs {
		n += int(s)
	}
	axis := make([]int, n)
	if layout == "interleaved" {
		for a := 1; a < len(secs); a++ {
			for i := a; i < 3*int(secs[a]) && i < n; i += 3 {
				axis[i] = a
			}
		}
		return axis
	}
	i := 0
	for a, s := range secs {
		for range s {
			axis[i] = a
			i++
		}
	}
	return axis
}

// mropeHoles fill mrope.
type mropeHoles struct {
	Heads, HD int64   // heads, head dim
	Half      int64   // frequency slots
	Inv, Ax   string  // C initialisers: each slot's inverse frequency and position axis
	Axes      int64   // position axes
	Pass      bool    // channels past 2·Half pass through
	Layout    string  // chunked or interleaved
	Sections  []int64 // frequency slots per axis
}

// mropeTmpl: one block per row of pos.
var mropeTmpl = kernelTemplate("mrope", `// mrope ({{.Layout}}, sections {{.Sections}}): rotate-half RoPE of the first 2·{{.Half}} of {{.HD}} channels of {{.Heads}} heads; slot i takes the position of axis KNAME_ax[i] of {{.Axes}}.
__constant__ float KNAME_inv[{{.Half}}] = { {{- .Inv -}} };
__constant__ int KNAME_ax[{{.Half}}] = { {{- .Ax -}} };
extern "C" __global__ void __launch_bounds__(128) KNAME(const float* x, const int* __restrict__ pos, float* y, int T, int S) {
  const long r = blockIdx.x;  // one block per row of pos
  const int* p = pos + r * {{.Axes}}L;
  for (int e = threadIdx.x; e < {{.Heads}} * {{.Half}}; e += blockDim.x) {
    const int h = e / {{.Half}}, j = e % {{.Half}};
    const float a = __fmul_rn((float)p[KNAME_ax[j]], KNAME_inv[j]);
    double sd, cd;
    sincos((double)a, &sd, &cd);
    const float sn = (float)sd, cs = (float)cd;
    const long base = (r * {{.Heads}} + h) * {{.HD}}L;
    const float x1 = x[base + j], x2 = x[base + j + {{.Half}}];
    y[base + j] = __fmul_rn(x1, cs) - __fmul_rn(x2, sn);
    y[base + j + {{.Half}}] = __fmul_rn(x2, cs) + __fmul_rn(x1, sn);
  }
{{- if .Pass}}
  if (x != y) {
    for (int e = threadIdx.x; e < {{.Heads}} * {{.PassCh}}; e += blockDim.x) {
      const long i = (r * {{.Heads}} + e / {{.PassCh}}) * {{.HD}}L + {{.PassAt}} + e % {{.PassCh}};
      y[i] = x[i];
    }
  }
{{- end}}
}
`)

// PassAt is the first channel that passes through, PassCh their number.
func (h mropeHoles) PassAt() int64 { return 2 * h.Half }
func (h mropeHoles) PassCh() int64 { return h.HD - 2*h.Half }

// mrope: rotate-half RoPE whose slot i (i < Σsections) has inverse
// frequency inv[i mod freq_dim/2] and the position of axis axisOf[i];
// channels i and i + slots rotate together, channels past 2·slots pass
// through. One block per row of pos (token, or token × patch).
func (g *gen) mrope(step int, s ir.Step) error {
	xdt, xsh := g.operand(s.Args[0])
	if xdt != ir.F32 {
		return fmt.Errorf("x dtype %v: want f32", xdt)
	}
	_, psh := g.operand(s.Args[1])
	secs := s.Attr().Ints("sections")
	layout := s.Attr().String("layout")
	if layout != "chunked" && layout != "interleaved" {
		return fmt.Errorf("layout %q has no CUDA template", layout)
	}
	axisOf := mropeAxes(secs, layout)
	base := ropeInvFreq(s.Attr().Float("theta"), int(s.Attr().Int("freq_dim")))
	if len(base) == 0 || len(axisOf) == 0 {
		return fmt.Errorf("freq_dim %d, sections %v: no frequency slots", s.Attr().Int("freq_dim"), secs)
	}
	var inv, ax []string
	for i, a := range axisOf {
		inv = append(inv, cf(float64(base[i%len(base)])))
		ax = append(ax, fmt.Sprint(a))
	}
	n := len(xsh)
	heads, hd := int64(xsh[n-2]), int64(xsh[n-1])
	half := int64(len(axisOf))
	axes := int64(len(secs))
	grid, _, err := rows(psh, axes)
	if err != nil {
		return err
	}
	name, err := g.emit("mrope", mropeTmpl, mropeHoles{Heads: heads, HD: hd, Half: half, Inv: strings.Join(inv, ", "), Ax: strings.Join(ax, ", "), Axes: axes, Pass: 2*half < hd, Layout: layout, Sections: secs})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(2), Block: 128, Grid: [3]abi.Expr{grid, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

// Segment attention tiling: a block of segWarps warps owns segRows
// consecutive query rows (t, g) of one head and streams the keys of their
// segments through shared memory segKeys at a time.
const (
	segWarps = 8
	segKeys  = 32
)

// segmentAttentionHoles fill segment_attention.
type segmentAttentionHoles struct {
	G                   int64  // rows per token
	H, D                int64  // heads and head dim
	Rows                int    // query rows of a block
	BK                  int    // keys per chunk
	Threads, Warps, RPW int    // the block's threads and warps, rows per warp
	VC                  int64  // 32-lane chunks of a row
	Scale               string // C literal
}

// segmentAttentionTmpl is FlashAttention-2 within segments (see segmentAttention).
var segmentAttentionTmpl = kernelTemplate("segment_attention", `// segment_attention: bidirectional attention within runs of equal seg ids; q, k, v [T, {{.G}}, {{.H}}, {{.D}}]; tiles of {{.Rows}} query rows, {{.BK}} keys per chunk (q may be y).
extern "C" __global__ void __launch_bounds__({{.Threads}}) KNAME(const float* q, const float* __restrict__ k, const float* __restrict__ v, const int* __restrict__ seg, float* y, int T, int S) {
  constexpr int G = {{.G}}, H = {{.H}}, D = {{.D}}, ROWS = {{.Rows}}, BK = {{.BK}}, NT = {{.Threads}}, NW = {{.Warps}}, RPW = {{.RPW}}, VC = {{.VC}};
  __shared__ float qs[ROWS][D];
  __shared__ float ks[BK][D + 1];
  __shared__ float vs[BK][D];
  __shared__ int kseg[BK];
  __shared__ int red[32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int head = blockIdx.y;
  const long nrows = (long)T * G, r0 = (long)blockIdx.x * ROWS;
  if (r0 >= nrows) return;
  const long r1 = min(nrows, r0 + ROWS);
  for (int e = threadIdx.x; e < ROWS * D; e += NT) {
    const long r = r0 + e / D;
    qs[e / D][e % D] = r < r1 ? q[(r * H + head) * D + e % D] : 0.f;
  }
  // The keys: from the start of the first row's segment to the end of the last row's.
  const long tf = r0 / G, tl = (r1 - 1) / G;
  const int idf = seg[tf], idl = seg[tl];
  long klo = 0, khi = T;
  for (long b = tf; b >= 0; b -= NT) {
    const long p = b - threadIdx.x;
    int c = p >= 0 && seg[p] != idf ? (int)p : -1;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) c = max(c, __shfl_xor_sync(0xffffffffu, c, o));
    __syncthreads();
    if (lane == 0) red[warp] = c;
    __syncthreads();
    c = red[0];
    for (int w = 1; w < NW; w++) c = max(c, red[w]);
    if (c >= 0) { klo = c + 1; break; }
  }
  for (long b = tl; b < T; b += NT) {
    const long p = b + threadIdx.x;
    int c = p < T && seg[p] != idl ? (int)p : 0x7fffffff;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) c = min(c, __shfl_xor_sync(0xffffffffu, c, o));
    __syncthreads();
    if (lane == 0) red[warp] = c;
    __syncthreads();
    c = red[0];
    for (int w = 1; w < NW; w++) c = min(c, red[w]);
    if (c != 0x7fffffff) { khi = c; break; }
  }
  int rid[RPW];
  float m[RPW], l[RPW], acc[RPW][VC];
#pragma unroll
  for (int rr = 0; rr < RPW; rr++) {
    const long r = r0 + warp + rr * NW;
    rid[rr] = r < r1 ? seg[r / G] : 0;
    m[rr] = -INFINITY;
    l[rr] = 0.f;
#pragma unroll
    for (int c = 0; c < VC; c++) acc[rr][c] = 0.f;
  }
  for (long kb = klo * G; kb < khi * G; kb += BK) {
    __syncthreads();
    for (int e = threadIdx.x; e < BK * D; e += NT) {
      const long kr = kb + e / D;
      const bool in = kr < khi * G;
      ks[e / D][e % D] = in ? k[(kr * H + head) * D + e % D] : 0.f;
      vs[e / D][e % D] = in ? v[(kr * H + head) * D + e % D] : 0.f;
    }
    for (int j = threadIdx.x; j < BK; j += NT) kseg[j] = kb + j < khi * G ? seg[(kb + j) / G] : 0;
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < RPW; rr++) {
      const int r = warp + rr * NW;
      if (r0 + r >= r1) continue;
      float sc = -INFINITY;
      if (lane < BK && kb + lane < khi * G && kseg[lane] == rid[rr]) {
        float dd = 0.f;
#pragma unroll 8
        for (int c = 0; c < D; c++) dd = fmaf(qs[r][c], ks[lane][c], dd);
        sc = dd * {{.Scale}};
      }
      const float mx = pio_warp_max(sc);
      if (mx == -INFINITY) continue;  // no key of this row's segment in the chunk
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
          if (lane + 32 * c < D) acc[rr][c] = fmaf(pb, vs[j][lane + 32 * c], acc[rr][c]);
      }
      m[rr] = mn;
    }
  }
  __syncthreads();  // every warp has read its q rows before y (which may be q) is written
#pragma unroll
  for (int rr = 0; rr < RPW; rr++) {
    const long r = r0 + warp + rr * NW;
    if (r >= r1) continue;
    float* yr = y + (r * H + head) * D;
    const float inv = 1.0f / l[rr];
#pragma unroll
    for (int c = 0; c < VC; c++)
      if (lane + 32 * c < D) yr[lane + 32 * c] = acc[rr][c] * inv;
  }
}
`)

// segmentAttention: softmax(q·kᵀ·scale)·v over the rows of the same segment
// (bidirectional, no cache), FlashAttention-2 style so that one image of
// 65k rows needs no T² scores: one block per (tile of query rows, head);
// the block finds the first and last segment of its rows by scanning seg
// outwards from them (so equal ids must be contiguous, as the CPU backend
// checks), then walks their keys in chunks with an online softmax per row,
// masking keys of another segment.
func (g *gen) segmentAttention(step int, s ir.Step) error {
	for i := 0; i < 3; i++ {
		if dt, _ := g.operand(s.Args[i]); dt != ir.F32 {
			return fmt.Errorf("operand %d has dtype %v: want f32", i, dt)
		}
	}
	_, qsh := g.operand(s.Args[0])
	n := len(qsh)
	gr := int64(1)
	if n == 4 {
		gr = int64(qsh[1])
	}
	heads, d := int64(qsh[n-2]), int64(qsh[n-1])
	// Rows per block: as many as shared memory affords, up to 8 per warp.
	kv := segKeys*(2*int(d)+2)*4 + 128 // ks, vs, kseg; red
	bq := 8 * segWarps
	for bq > segWarps && kv+bq*int(d)*4 > staticSmem {
		bq /= 2
	}
	if kv+bq*int(d)*4 > staticSmem {
		return fmt.Errorf("head dim %d does not fit %d bytes of shared memory", d, staticSmem)
	}
	rpw := bq / segWarps
	vc := (d + 31) / 32
	name, err := g.emit("segment_attention", segmentAttentionTmpl, segmentAttentionHoles{G: gr, H: heads, D: d, Rows: bq, BK: segKeys, Threads: segWarps * 32, Warps: segWarps, RPW: rpw, VC: vc, Scale: cf(s.Attr().Float("scale"))})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(4), Block: segWarps * 32,
		Grid: [3]abi.Expr{{T: gr, Div: int64(bq)}, {Fixed: heads}, {Fixed: 1}}})
	return nil
}
