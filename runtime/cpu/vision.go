package cpu

import (
	"fmt"
	"math"

	"github.com/inference-pio/pio/ir"
)

// Kernels of the vision family (ir/op_vision.go): Qwen3-VL's vision tower
// (layer_norm, gelu, bias_add, segment_attention, 2-D mrope, weighted_rows)
// and the multimodal text ops (interleaved mrope, add_rows, set_rows).
// All compute in f32 with f64 where transformers' own kernels reduce in
// higher precision (norm statistics, softmax sums, transcendental functions).
func init() {
	builders[ir.OpLayerNorm] = buildLayerNorm
	builders[ir.OpGELU] = buildGELU
	builders[ir.OpSegmentAttention] = buildSegmentAttention
	builders[ir.OpMRoPE] = buildMRoPE
	builders[ir.OpWeightedRows] = buildWeightedRows
	builders[ir.OpAddRows] = buildMaskRows(false)
	builders[ir.OpSetRows] = buildMaskRows(true)
	builders[ir.OpBiasAdd] = buildBiasAdd
}

// layerNormK: x [..., D] -> (x − mean)/sqrt(var + eps)·w + b, with the
// biased variance; statistics in f64.
type layerNormK struct {
	x       tensor
	w, bias []float32
	y       []float32
	eps     float64
	d       int
}

func buildLayerNorm(b *Backend, s ir.Step, y tensor) (kernel, error) {
	x := b.operand(s.Args[0])
	return &layerNormK{x: x, w: b.operand(s.Args[1]).f32, bias: b.operand(s.Args[2]).f32, y: y.f32,
		eps: s.Attr().Float("eps"), d: int(x.shape.Last())}, nil
}

func (k *layerNormK) exec(b *Backend) error {
	rows := b.elems(k.x.shape) / k.d
	b.pool.do(k, rows, b.pool.grainFor(rows, max(1, 4096/k.d)))
	return nil
}

func (k *layerNormK) run(lo, hi, _ int) {
	d := k.d
	for r := lo; r < hi; r++ {
		x, y := k.x.f32[r*d:(r+1)*d], k.y[r*d:(r+1)*d]
		var sum float64
		for _, v := range x {
			sum += float64(v)
		}
		mean := sum / float64(d)
		var ss float64
		for _, v := range x {
			dv := float64(v) - mean
			ss += dv * dv
		}
		rstd := 1 / math.Sqrt(ss/float64(d)+k.eps)
		for i, v := range x {
			y[i] = float32((float64(v)-mean)*rstd)*k.w[i] + k.bias[i]
		}
	}
}

// geluK: y = x·Φ(x) ("erf") or 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
// ("tanh"), evaluated in f64 and rounded once.
type geluK struct {
	x    tensor
	y    []float32
	tanh bool
}

func buildGELU(b *Backend, s ir.Step, y tensor) (kernel, error) {
	return &geluK{x: b.operand(s.Args[0]), y: y.f32, tanh: s.Attr().String("approximate") == "tanh"}, nil
}

func (k *geluK) exec(b *Backend) error {
	n := b.elems(k.x.shape)
	b.pool.do(k, n, b.pool.grainFor(n, 4096))
	return nil
}

func (k *geluK) run(lo, hi, _ int) {
	x, y := k.x.f32[lo:hi], k.y[lo:hi]
	if k.tanh {
		c := math.Sqrt(2 / math.Pi)
		for i, v := range x {
			f := float64(v)
			y[i] = float32(0.5 * f * (1 + math.Tanh(c*(f+0.044715*f*f*f))))
		}
		return
	}
	for i, v := range x {
		f := float64(v)
		y[i] = float32(0.5 * f * (1 + math.Erf(f/math.Sqrt2)))
	}
}

// biasAddK: y[..., n] = x[..., n] + b[n].
type biasAddK struct {
	x    tensor
	bias []float32
	y    []float32
}

func buildBiasAdd(b *Backend, s ir.Step, y tensor) (kernel, error) {
	return &biasAddK{x: b.operand(s.Args[0]), bias: b.operand(s.Args[1]).f32, y: y.f32}, nil
}

func (k *biasAddK) exec(b *Backend) error {
	n, d := b.elems(k.x.shape), len(k.bias)
	for r := 0; r < n/d; r++ {
		x, y := k.x.f32[r*d:(r+1)*d], k.y[r*d:(r+1)*d]
		for i, v := range x {
			y[i] = v + k.bias[i]
		}
	}
	return nil
}

// segmentAttentionK: q, k, v [T, G, H, D] (G = 1 for [T, H, D]); each row
// (t, g) attends, per head, to every row (t', g') with seg[t'] = seg[t]
// (bidirectional, no cache). Equal segment ids must be contiguous in T.
// In f32 like transformers' eager attention (q·kᵀ, softmax, ·v), with the
// softmax's exponentials and sum in f64; tasks are (head, block of segBlock
// query rows).
type segmentAttentionK struct {
	q, k, v, seg tensor
	y            []float32
	g, h, d      int
	scale        float64
	starts       []int // per token: first token of its segment
	ends         []int
	rows         int // query rows in the step: T·G
}

// segBlock is the number of query rows one task handles.
const segBlock = 8

func buildSegmentAttention(b *Backend, s ir.Step, y tensor) (kernel, error) {
	q := b.operand(s.Args[0])
	g := 1
	if len(q.shape) == 4 {
		g = int(q.shape[1])
	}
	n := len(q.shape)
	return &segmentAttentionK{q: q, k: b.operand(s.Args[1]), v: b.operand(s.Args[2]), seg: b.operand(s.Args[3]), y: y.f32,
		g: g, h: int(q.shape[n-2]), d: int(q.shape[n-1]), scale: s.Attr().Float("scale"),
		starts: make([]int, b.opt.MaxTokens), ends: make([]int, b.opt.MaxTokens)}, nil
}

func (k *segmentAttentionK) exec(b *Backend) error {
	seg := k.seg.i32[:b.t]
	seen := map[int32]bool{}
	for t := 0; t < b.t; {
		e := t + 1
		for e < b.t && seg[e] == seg[t] {
			e++
		}
		if seen[seg[t]] {
			return fmt.Errorf("segment_attention: segment %d is not contiguous (again at token %d)", seg[t], t)
		}
		seen[seg[t]] = true
		for i := t; i < e; i++ {
			k.starts[i], k.ends[i] = t, e
		}
		t = e
	}
	k.rows = b.t * k.g
	blocks := (k.rows + segBlock - 1) / segBlock
	b.pool.do(k, blocks*k.h, 1)
	return nil
}

func dot32(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func (k *segmentAttentionK) run(lo, hi, _ int) {
	g, h, d := k.g, k.h, k.d
	scale := float32(k.scale)
	var scores []float32
	acc := make([]float32, d)
	for task := lo; task < hi; task++ {
		head, blk := task%h, task/h
		for i := blk * segBlock; i < min((blk+1)*segBlock, k.rows); i++ {
			t := i / g
			q := k.q.f32[(i*h+head)*d : (i*h+head+1)*d]
			r0, r1 := k.starts[t]*g, k.ends[t]*g // key rows of the segment
			scores = scores[:0]
			mx := float32(math.Inf(-1))
			for r := r0; r < r1; r++ {
				sc := dot32(q, k.k.f32[(r*h+head)*d:]) * scale
				scores = append(scores, sc)
				mx = max(mx, sc)
			}
			var sum float64
			for j, sc := range scores {
				e := math.Exp(float64(sc - mx))
				scores[j] = float32(e)
				sum += e
			}
			inv := float32(1 / sum)
			clear(acc)
			for j, p := range scores {
				r := r0 + j
				p *= inv
				vv := k.v.f32[(r*h+head)*d : (r*h+head+1)*d]
				for c, v := range vv {
					acc[c] += p * v
				}
			}
			copy(k.y[(i*h+head)*d:(i*h+head+1)*d], acc)
		}
	}
}

// mropeK: rotate-half RoPE with per-slot position axes. x [T, (G,) H, D],
// pos i32[T, (G,) A]. Slot i (i < Σsections) has inverse frequency
// inv[i mod freq_dim/2] (inv as in rope.go) and takes its position from
// axis axisOf[i]; channels i and i+slots rotate together; channels past
// 2·slots pass through. Angles as transformers: f32 product, cos/sin of it.
type mropeK struct {
	x, pos tensor
	y      []float32
	h, d   int
	inv    []float32 // per slot
	axisOf []int     // per slot
	axes   int
}

// mropeSlots returns each slot's position axis: "chunked" gives axis a the
// slots [Σ_{b<a} s_b, Σ_{b≤a} s_b); "interleaved" (Qwen3-VL) gives axis
// a ≥ 1 the slots a, a+3, … below 3·s_a and axis 0 the rest.
func mropeSlots(secs []int64, layout string) []int {
	n := 0
	for _, s := range secs {
		n += int(s)
	}
	axis := make([]int, n)
	if layout == "interleaved" {
		for a := 1; a < len(secs); a++ {
			for i := a; i < 3*int(secs[a]); i += 3 {
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

func buildMRoPE(b *Backend, s ir.Step, y tensor) (kernel, error) {
	x, pos := b.operand(s.Args[0]), b.operand(s.Args[1])
	secs := s.Attr().Ints("sections")
	axisOf := mropeSlots(secs, s.Attr().String("layout"))
	base := ropeInvFreq(s.Attr().Float("theta"), int(s.Attr().Int("freq_dim")))
	inv := make([]float32, len(axisOf))
	for i := range inv {
		inv[i] = base[i%len(base)]
	}
	n := len(x.shape)
	return &mropeK{x: x, pos: pos, y: y.f32, h: int(x.shape[n-2]), d: int(x.shape[n-1]), inv: inv, axisOf: axisOf, axes: len(secs)}, nil
}

func (k *mropeK) exec(b *Backend) error {
	rows := b.elems(k.pos.shape) / k.axes // tokens × G
	b.pool.do(k, rows, b.pool.grainFor(rows, 1))
	return nil
}

func (k *mropeK) run(lo, hi, _ int) {
	half := len(k.inv)
	cos, sin := make([]float32, half), make([]float32, half)
	for r := lo; r < hi; r++ {
		p := k.pos.i32[r*k.axes : (r+1)*k.axes]
		for i, f := range k.inv {
			a := float64(float32(p[k.axisOf[i]]) * f)
			cos[i], sin[i] = float32(math.Cos(a)), float32(math.Sin(a))
		}
		for hh := 0; hh < k.h; hh++ {
			o := (r*k.h + hh) * k.d
			x, y := k.x.f32[o:o+k.d], k.y[o:o+k.d]
			for j := 0; j < half; j++ {
				x1, x2 := x[j], x[j+half]
				y[j] = float32(x1*cos[j]) - float32(x2*sin[j])
				y[j+half] = float32(x2*cos[j]) + float32(x1*sin[j])
			}
			if &x[0] != &y[0] {
				copy(y[2*half:], x[2*half:])
			}
		}
	}
}

// weightedRowsK: y[r] = Σ_k w[r,k]·table[idx[r,k]] in f32, k in order
// (((w0·t0 + w1·t1) + w2·t2) + w3·t3), as transformers sums the four
// bilinear corners. An index outside the table is an error.
type weightedRowsK struct {
	table  matrix
	idx, w tensor
	y      []float32
	kk     int
	row    []float32
}

func buildWeightedRows(b *Backend, s ir.Step, y tensor) (kernel, error) {
	table, err := b.matrixOf(s.Args[0])
	if err != nil {
		return nil, err
	}
	idx := b.operand(s.Args[1])
	return &weightedRowsK{table: table, idx: idx, w: b.operand(s.Args[2]), y: y.f32, kk: int(idx.shape.Last()), row: make([]float32, table.cols)}, nil
}

func (k *weightedRowsK) exec(b *Backend) error {
	n := b.elems(k.idx.shape)
	d := k.table.cols
	for i, id := range k.idx.i32[:n] {
		if id < 0 || int(id) >= k.table.rows {
			return fmt.Errorf("weighted_rows: index %d at %d outside the table's %d rows", id, i, k.table.rows)
		}
	}
	for r := 0; r < n/k.kk; r++ {
		y := k.y[r*d : (r+1)*d]
		for j := 0; j < k.kk; j++ {
			k.table.rowInto(int(k.idx.i32[r*k.kk+j]), k.row)
			w := k.w.f32[r*k.kk+j]
			for c, v := range k.row[:d] {
				if j == 0 {
					y[c] = w * v
				} else {
					y[c] += w * v
				}
			}
		}
	}
	return nil
}

// maskRowsK: y[t] = mask[t] ≠ 0 ? (set ? f[t] : h[t] + f[t]) : h[t].
type maskRowsK struct {
	h, f, mask tensor
	y          []float32
	d          int
	set        bool
}

func buildMaskRows(set bool) func(b *Backend, s ir.Step, y tensor) (kernel, error) {
	return func(b *Backend, s ir.Step, y tensor) (kernel, error) {
		h := b.operand(s.Args[0])
		return &maskRowsK{h: h, f: b.operand(s.Args[1]), mask: b.operand(s.Args[2]), y: y.f32, d: int(h.shape.Last()), set: set}, nil
	}
}

func (k *maskRowsK) exec(b *Backend) error {
	d := k.d
	for t := 0; t < b.t; t++ {
		h, f, y := k.h.f32[t*d:(t+1)*d], k.f.f32[t*d:(t+1)*d], k.y[t*d:(t+1)*d]
		switch {
		case k.mask.i32[t] == 0:
			copy(y, h)
		case k.set:
			copy(y, f)
		default:
			for i, v := range h {
				y[i] = v + f[i]
			}
		}
	}
	return nil
}
