package cuda

import (
	"fmt"
	"strings"

	"github.com/inference-pio/pio/ir"
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
	name := g.kernel("layer_norm", fmt.Sprintf(`// layer_norm over rows of %[4]d: y = (x − mean)/sqrt(var + eps)·w + b (biased variance).
extern "C" __global__ void __launch_bounds__(%[6]d) KNAME(const %[1]s* x, const %[2]s* __restrict__ w, const %[3]s* __restrict__ b, float* y, int T, int S) {
  __shared__ float red[32];
  const long row = blockIdx.x;  // one block per row
  const %[1]s* xr = x + row * %[4]dL;
  float* yr = y + row * %[4]dL;
  float s = 0.f;
  for (int c = threadIdx.x; c < %[4]d; c += %[6]d) s += pio_f32(xr[c]);
  const float mean = pio_block_sum(s, red) / %[4]d.0f;
  float ss = 0.f;
  for (int c = threadIdx.x; c < %[4]d; c += %[6]d) {
    const float v = pio_f32(xr[c]) - mean;
    ss = fmaf(v, v, ss);
  }
  const float rstd = 1.0f / sqrtf(pio_block_sum(ss, red) / %[4]d.0f + %[5]s);
  for (int c = threadIdx.x; c < %[4]d; c += %[6]d)
    yr[c] = __fadd_rn(__fmul_rn(__fmul_rn(pio_f32(xr[c]) - mean, rstd), pio_f32(w[c])), pio_f32(b[c]));
}
`, ts[0], ts[1], ts[2], d, cf(s.Attr().Float("eps")), block))
	g.launch(Launch{Step: step, Kernel: name, Params: stdParams(3), Block: block, Grid: [3]Expr{grid, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

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
	name := g.kernel("gelu", fmt.Sprintf(`// gelu (%[4]s) over %[2]s elements.
extern "C" __global__ void __launch_bounds__(256) KNAME(const %[1]s* x, float* y, int T, int S) {
  const long n = %[2]s;
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    const float v = pio_f32(x[i]);
    y[i] = %[3]s;
  }
}
`, ts[0], cExpr(t, sq, f), expr, s.Attr().String("approximate")))
	g.launch(Launch{Step: step, Kernel: name, Params: stdParams(1), Block: 256,
		Grid: [3]Expr{{T: t, S: sq, Fixed: f, Div: 256}, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

// biasAdd: y[..., n] = x[..., n] + b[n].
func (g *gen) biasAdd(step int, s ir.Step) error {
	ts, err := g.floatTypes(s, 0, 1)
	if err != nil {
		return err
	}
	_, xsh := g.operand(s.Args[0])
	n := int64(xsh.Last())
	t, sq, f := count(xsh)
	name := g.kernel("bias_add", fmt.Sprintf(`// bias_add: y[i] = x[i] + b[i %% %[4]d] over %[3]s elements.
extern "C" __global__ void __launch_bounds__(256) KNAME(const %[1]s* x, const %[2]s* __restrict__ b, float* y, int T, int S) {
  const long n = %[3]s;
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    y[i] = __fadd_rn(pio_f32(x[i]), pio_f32(b[i %% %[4]dL]));
}
`, ts[0], ts[1], cExpr(t, sq, f), n))
	g.launch(Launch{Step: step, Kernel: name, Params: stdParams(2), Block: 256,
		Grid: [3]Expr{{T: t, S: sq, Fixed: f, Div: 256}, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

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
	op, set := "add_rows", "__fadd_rn(pio_f32(hr[c]), pio_f32(fr[c]))"
	if s.Op == ir.OpSetRows {
		op, set = "set_rows", "pio_f32(fr[c])"
	}
	name := g.kernel(op, fmt.Sprintf(`// %[3]s over rows of %[5]d: y[t] = mask[t] ≠ 0 ? %[4]s : h[t].
extern "C" __global__ void __launch_bounds__(128) KNAME(const %[1]s* h, const %[2]s* f, const int* __restrict__ mask, float* y, int T, int S) {
  const long t = blockIdx.x;  // one block per token
  const %[1]s* hr = h + t * %[5]dL;
  const %[2]s* fr = f + t * %[5]dL;
  float* yr = y + t * %[5]dL;
  if (mask[t] != 0) {
    for (int c = threadIdx.x; c < %[5]d; c += blockDim.x) yr[c] = %[6]s;
  } else {
    for (int c = threadIdx.x; c < %[5]d; c += blockDim.x) yr[c] = pio_f32(hr[c]);
  }
}
`, ts[0], ts[1], op, map[bool]string{true: "f[t]", false: "h[t] + f[t]"}[s.Op == ir.OpSetRows], d, set))
	g.launch(Launch{Step: step, Kernel: name, Params: stdParams(3), Block: 128, Grid: [3]Expr{grid, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

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
	name := g.kernel("weighted_rows", fmt.Sprintf(`// weighted_rows: y[r] = Σ_k<%[5]d w[r,k]·table[idx[r,k]], k in order; table [%[3]d, %[4]d]; an index outside it gives a NaN row.
extern "C" __global__ void __launch_bounds__(128) KNAME(const %[1]s* __restrict__ table, const int* __restrict__ idx, const %[2]s* __restrict__ w, float* __restrict__ y, int T, int S) {
  const long r = blockIdx.x;  // one block per output row
  const int* ir = idx + r * %[5]dL;
  float* yr = y + r * %[4]dL;
  bool ok = true;
  for (int j = 0; j < %[5]d; j++) ok = ok && ir[j] >= 0 && ir[j] < %[3]d;
  if (!ok) {
    for (int c = threadIdx.x; c < %[4]d; c += blockDim.x) yr[c] = __uint_as_float(0x7fc00000u);
    return;
  }
  for (int c = threadIdx.x; c < %[4]d; c += blockDim.x) {
    float acc = 0.f;
    for (int j = 0; j < %[5]d; j++) {
      const float p = __fmul_rn(pio_f32(w[r * %[5]dL + j]), pio_f32(table[(long)ir[j] * %[4]dL + c]));
      acc = j == 0 ? p : __fadd_rn(acc, p);
    }
    yr[c] = acc;
  }
}
`, ts[0], ts[1], n, d, k))
	g.launch(Launch{Step: step, Kernel: name, Params: stdParams(3), Block: 128, Grid: [3]Expr{grid, {Fixed: 1}, {Fixed: 1}}})
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
	pass := ""
	if 2*half < hd {
		pass = fmt.Sprintf(`  if (x != y) {
    for (int e = threadIdx.x; e < %[1]d * %[2]d; e += blockDim.x) {
      const long i = (r * %[1]d + e / %[2]d) * %[3]dL + %[4]d + e %% %[2]d;
      y[i] = x[i];
    }
  }
`, heads, hd-2*half, hd, 2*half)
	}
	name := g.kernel("mrope", fmt.Sprintf(`// mrope (%[8]s, sections %[9]v): rotate-half RoPE of the first 2·%[3]d of %[2]d channels of %[1]d heads; slot i takes the position of axis KNAME_ax[i] of %[6]d.
__constant__ float KNAME_inv[%[3]d] = {%[4]s};
__constant__ int KNAME_ax[%[3]d] = {%[5]s};
extern "C" __global__ void __launch_bounds__(128) KNAME(const float* x, const int* __restrict__ pos, float* y, int T, int S) {
  const long r = blockIdx.x;  // one block per row of pos
  const int* p = pos + r * %[6]dL;
  for (int e = threadIdx.x; e < %[1]d * %[3]d; e += blockDim.x) {
    const int h = e / %[3]d, j = e %% %[3]d;
    const float a = __fmul_rn((float)p[KNAME_ax[j]], KNAME_inv[j]);
    double sd, cd;
    sincos((double)a, &sd, &cd);
    const float sn = (float)sd, cs = (float)cd;
    const long base = (r * %[1]d + h) * %[2]dL;
    const float x1 = x[base + j], x2 = x[base + j + %[3]d];
    y[base + j] = __fmul_rn(x1, cs) - __fmul_rn(x2, sn);
    y[base + j + %[3]d] = __fmul_rn(x2, cs) + __fmul_rn(x1, sn);
  }
%[7]s}
`, heads, hd, half, strings.Join(inv, ", "), strings.Join(ax, ", "), axes, pass, layout, secs))
	g.launch(Launch{Step: step, Kernel: name, Params: stdParams(2), Block: 128, Grid: [3]Expr{grid, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

// Segment attention tiling: a block of segWarps warps owns segRows
// consecutive query rows (t, g) of one head and streams the keys of their
// segments through shared memory segKeys at a time.
const (
	segWarps = 8
	segKeys  = 32
)

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
	name := g.kernel("segment_attention", fmt.Sprintf(`// segment_attention: bidirectional attention within runs of equal seg ids; q, k, v [T, %[1]d, %[2]d, %[3]d]; tiles of %[4]d query rows, %[5]d keys per chunk (q may be y).
extern "C" __global__ void __launch_bounds__(%[6]d) KNAME(const float* q, const float* __restrict__ k, const float* __restrict__ v, const int* __restrict__ seg, float* y, int T, int S) {
  constexpr int G = %[1]d, H = %[2]d, D = %[3]d, ROWS = %[4]d, BK = %[5]d, NT = %[6]d, NW = %[7]d, RPW = %[8]d, VC = %[9]d;
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
    qs[e / D][e %% D] = r < r1 ? q[(r * H + head) * D + e %% D] : 0.f;
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
      ks[e / D][e %% D] = in ? k[(kr * H + head) * D + e %% D] : 0.f;
      vs[e / D][e %% D] = in ? v[(kr * H + head) * D + e %% D] : 0.f;
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
        sc = dd * %[10]s;
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
`, gr, heads, d, bq, segKeys, segWarps*32, segWarps, rpw, vc, cf(s.Attr().Float("scale"))))
	g.launch(Launch{Step: step, Kernel: name, Params: stdParams(4), Block: segWarps * 32,
		Grid: [3]Expr{{T: gr, Div: int64(bq)}, {Fixed: heads}, {Fixed: 1}}})
	return nil
}
