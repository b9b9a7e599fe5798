package cpu

import (
	"fmt"
	"math"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime/cpu/kern"
)

// MoE routing and experts (ir/op_moe.go).

func init() {
	builders[ir.OpRouterTopK] = buildRouterTopK
	builders[ir.OpRouterWeights] = buildRouterWeights
	builders[ir.OpMoE] = buildMoE
}

// routerScores writes the scores of one row of router logits into dst:
// softmax in f32 (max subtracted, exponentials rounded to f32, their sum
// accumulated in f64 and rounded once), or an elementwise sigmoid.
func routerScores(dst, logits []float32, softmax bool) {
	if !softmax {
		for i, v := range logits {
			dst[i] = float32(1 / (1 + math.Exp(-float64(v))))
		}
		return
	}
	m := float32(math.Inf(-1))
	for _, v := range logits {
		m = max(m, v)
	}
	var sum float64
	for i, v := range logits {
		e := float32(math.Exp(float64(v - m)))
		dst[i] = e
		sum += float64(e)
	}
	inv := float32(sum)
	for i := range dst[:len(logits)] {
		dst[i] /= inv
	}
}

// routerTopKK chooses experts: logits [T, E] (+ bias [E] for selection
// only) -> ids i32 [T, k], in order of decreasing selection score; equal
// scores go to the lower expert index.
type routerTopKK struct {
	logits  tensor
	bias    []float32 // nil: no bias
	ids     []int32
	e, k    int
	softmax bool
	score   []float32 // [E]
	taken   []bool    // [E]
}

func buildRouterTopK(b *Backend, s ir.Step, y tensor) (kernel, error) {
	l := b.operand(s.Args[0])
	e := int(l.shape[1])
	k := &routerTopKK{logits: l, ids: y.i32, e: e, k: int(s.Attr().Int("k")),
		softmax: s.Attr().String("scoring") == "softmax", score: make([]float32, e), taken: make([]bool, e)}
	if len(s.Args) == 2 {
		k.bias = b.operand(s.Args[1]).f32
	}
	return k, nil
}

func (k *routerTopKK) exec(b *Backend) error {
	for t := 0; t < b.t; t++ {
		routerScores(k.score, k.logits.f32[t*k.e:(t+1)*k.e], k.softmax)
		if k.bias != nil {
			for i, v := range k.bias[:k.e] {
				k.score[i] += v
			}
		}
		clear(k.taken)
		for j := 0; j < k.k; j++ {
			best := -1
			for i, v := range k.score {
				if !k.taken[i] && (best < 0 || v > k.score[best] || math.IsNaN(float64(k.score[best]))) {
					best = i
				}
			}
			k.taken[best] = true
			k.ids[t*k.k+j] = int32(best)
		}
	}
	return nil
}

// routerWeightsK weighs the chosen experts: w[t, j] = score(logits[t])[ids[t, j]]
// (the unbiased score), divided by the sum over j when normalize is set, times
// scale; all in f32.
type routerWeightsK struct {
	logits    tensor
	ids       tensor
	w         []float32
	e, k      int
	softmax   bool
	normalize bool
	scale     float32
	score     []float32
}

func buildRouterWeights(b *Backend, s ir.Step, y tensor) (kernel, error) {
	l, ids := b.operand(s.Args[0]), b.operand(s.Args[1])
	e := int(l.shape[1])
	return &routerWeightsK{logits: l, ids: ids, w: y.f32, e: e, k: int(ids.shape[1]),
		softmax: s.Attr().String("scoring") == "softmax", normalize: s.Attr().Bool("normalize"),
		scale: float32(s.Attr().Float("scale")), score: make([]float32, e)}, nil
}

func (k *routerWeightsK) exec(b *Backend) error {
	for t := 0; t < b.t; t++ {
		routerScores(k.score, k.logits.f32[t*k.e:(t+1)*k.e], k.softmax)
		ids, w := k.ids.i32[t*k.k:(t+1)*k.k], k.w[t*k.k:(t+1)*k.k]
		var sum float32
		for j, id := range ids {
			if id < 0 || int(id) >= k.e {
				return fmt.Errorf("router_weights: token %d: expert %d outside 0..%d", t, id, k.e-1)
			}
			w[j] = k.score[id]
			sum += w[j]
		}
		for j := range w {
			if k.normalize {
				w[j] /= sum
			}
			w[j] *= k.scale
		}
	}
	return nil
}

// moeK runs the routed experts: x [T, H], ids i32 [T, k], w f32 [T, k],
// gate_up [E·2I, H] (expert e's gate rows e·2I.., then its up rows), down
// [E·H, I] -> y [T, H]:
//
//	y[t] = Σ_j w[t,j] · down_e( silu(gate_e·x[t]) ⊙ (up_e·x[t]) ),  e = ids[t,j]
//
// Only experts that some token chose are touched: the step groups the
// (token, slot) pairs by expert, then (1) for each hit expert and tile of
// its gate/up rows computes the activations of all its tokens, (2) for each
// hit expert and tile of its down rows the per-pair outputs, and (3) sums
// each token's pairs in increasing expert order (transformers' order),
// each scaled by its weight in f32. A tile's weight rows are decoded once
// and reused for every token routed to the expert.
type moeK struct {
	b        *Backend
	x, ids   tensor
	w        []float32
	gu, down matrix
	y        []float32
	e, k     int
	h, inter int
	act, out []float32 // [MaxTokens·k, 2I], [MaxTokens·k, H]
	count    []int     // [E] pairs per expert this step
	start    []int     // [E+1] offsets into order
	order    []int32   // [T·k] pair indices (t·k+j), grouped by expert
	perm     []int     // [k] a token's slots in expert order
	items    []moeItem // this phase's work
	phase    int
}

// The phases of a moe step.
const (
	moeGateUp   = iota // act[p] = [gate_e·x; up_e·x]
	moeActivate        // act[p][:I] = silu(gate) ⊙ up
	moeDown            // out[p] = down_e·act[p][:I]
)

// moeItem is one tile of one expert's weight rows.
type moeItem struct{ expert, row0, row1 int }

const moeTile = 16

// moeDirect: an expert with fewer (token, slot) pairs than this reads its
// weight rows in their stored dtype (decode); otherwise a tile's rows are
// decoded to f32 once and reused for every pair.
const moeDirect = 4

func buildMoE(b *Backend, s ir.Step, y tensor) (kernel, error) {
	x, ids := b.operand(s.Args[0]), b.operand(s.Args[1])
	e := int(s.Attr().Int("experts"))
	gu, down := b.weightRows(s.Args[3]), b.weightRows(s.Args[4])
	h, kk := int(x.shape[1]), int(ids.shape[1])
	if gu.cols != h || gu.rows%(2*e) != 0 || down.rows != e*h {
		return nil, fmt.Errorf("expert weights [%d, %d] and [%d, %d] do not fit %d experts of hidden %d", gu.rows, gu.cols, down.rows, down.cols, e, h)
	}
	inter := gu.rows / (2 * e)
	if down.cols != inter {
		return nil, fmt.Errorf("down has %d columns, want the intermediate size %d", down.cols, inter)
	}
	pairs := b.opt.MaxTokens * kk
	k := &moeK{b: b, x: x, ids: ids, w: b.operand(s.Args[2]).f32, gu: gu, down: down, y: y.f32,
		e: e, k: kk, h: h, inter: inter,
		act: make([]float32, pairs*2*inter), out: make([]float32, pairs*h),
		count: make([]int, e), start: make([]int, e+1), order: make([]int32, pairs), perm: make([]int, kk)}
	tiles := (2*inter+moeTile-1)/moeTile + (h+moeTile-1)/moeTile
	k.items = make([]moeItem, 0, e*tiles)
	cols := max(h, inter)
	for i := range b.scratch {
		if len(b.scratch[i].w) < moeTile*cols {
			b.scratch[i].w = make([]float32, moeTile*cols)
		}
	}
	return k, nil
}

// weightRows returns a weight of any rank as rows of its last dim, in its
// stored dtype, or an f32 buffer the same way.
func (b *Backend) weightRows(r ir.Ref) matrix {
	if r.Kind == ir.RefWeight {
		return b.weights[r.Index]
	}
	t := b.operand(r)
	n, _ := t.shape.Elems(0, 0)
	c := int(t.shape.Last())
	return matrix{rows: int(n) / c, cols: c, dt: ir.F32, f32: t.f32}
}

func (k *moeK) exec(b *Backend) error {
	n := b.t * k.k
	clear(k.count)
	for i, id := range k.ids.i32[:n] {
		if id < 0 || int(id) >= k.e {
			return fmt.Errorf("moe: token %d: expert %d outside 0..%d", i/k.k, id, k.e-1)
		}
		k.count[id]++
	}
	k.start[0] = 0
	for e, c := range k.count {
		k.start[e+1] = k.start[e] + c
	}
	fill := k.count // reused as a cursor; recomputed next step
	for e := range fill {
		fill[e] = k.start[e]
	}
	for i, id := range k.ids.i32[:n] {
		k.order[fill[id]] = int32(i)
		fill[id]++
	}

	for _, phase := range []int{moeGateUp, moeActivate, moeDown} {
		k.phase = phase
		if phase == moeActivate {
			b.pool.do(k, n, b.pool.grainFor(n, 4))
			continue
		}
		rows := 2 * k.inter
		if phase == moeDown {
			rows = k.h
		}
		k.items = k.items[:0]
		for e := 0; e < k.e; e++ {
			if k.start[e+1] == k.start[e] {
				continue // no token chose this expert: nothing to do
			}
			for r := 0; r < rows; r += moeTile {
				k.items = append(k.items, moeItem{e, r, min(r+moeTile, rows)})
			}
		}
		b.pool.do(k, len(k.items), 1)
	}

	// Combine: each token's pairs in increasing expert order.
	for t := 0; t < b.t; t++ {
		y := k.y[t*k.h : (t+1)*k.h]
		clear(y)
		ids := k.ids.i32[t*k.k : (t+1)*k.k]
		perm := k.perm
		for j := range perm { // insertion sort of the slots by expert id
			perm[j] = j
			for c := j; c > 0 && ids[perm[c]] < ids[perm[c-1]]; c-- {
				perm[c], perm[c-1] = perm[c-1], perm[c]
			}
		}
		for _, j := range perm {
			wt := k.w[t*k.k+j]
			src := k.out[(t*k.k+j)*k.h : (t*k.k+j+1)*k.h]
			for i, v := range src {
				y[i] += v * wt
			}
		}
	}
	return nil
}

func (k *moeK) run(lo, hi, w int) {
	if k.phase == moeActivate {
		for p := lo; p < hi; p++ {
			a := k.act[p*2*k.inter : (p+1)*2*k.inter]
			g, u := a[:k.inter], a[k.inter:]
			for i, v := range g {
				x := float64(v)
				g[i] = float32(x/(1+math.Exp(-x))) * u[i]
			}
		}
		return
	}
	sc := k.b.scratch[w].w
	for _, it := range k.items[lo:hi] {
		pairs := k.order[k.start[it.expert]:k.start[it.expert+1]]
		m, rowBase, cols := k.gu, it.expert*2*k.inter, k.h
		if k.phase == moeDown {
			m, rowBase, cols = k.down, it.expert*k.h, k.inter
		}
		direct := len(pairs) < moeDirect && m.dt != ir.F16
		var wt []float32
		if !direct { // decode the tile once for all its tokens
			wt = sc[:(it.row1-it.row0)*cols]
			for r := it.row0; r < it.row1; r++ {
				m.rowInto(rowBase+r, wt[(r-it.row0)*cols:])
			}
		}
		for _, p := range pairs {
			var in, out []float32
			if k.phase == moeGateUp {
				t := int(p) / k.k
				in, out = k.x.f32[t*k.h:(t+1)*k.h], k.act[int(p)*2*k.inter:(int(p)+1)*2*k.inter]
			} else {
				in, out = k.act[int(p)*2*k.inter:int(p)*2*k.inter+k.inter], k.out[int(p)*k.h:(int(p)+1)*k.h]
			}
			for r := it.row0; r < it.row1; r++ {
				switch {
				case !direct:
					out[r] = kern.Dot(in, wt[(r-it.row0)*cols:(r-it.row0+1)*cols])
				case m.dt == ir.BF16:
					out[r] = kern.DotBF16(in, m.u16[(rowBase+r)*cols:(rowBase+r+1)*cols])
				default:
					out[r] = kern.Dot(in, m.f32[(rowBase+r)*cols:(rowBase+r+1)*cols])
				}
			}
		}
	}
}
