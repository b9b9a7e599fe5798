package cpu

import (
	"fmt"
	"math"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime/cpu/kern"
)

// Multi-head latent attention and its helpers (ir/op_moe.go): head_matmul
// and mla_attention over a latent cache.

func init() {
	builders[ir.OpHeadMatMul] = buildHeadMatMul
	builders[ir.OpMLAAttention] = buildMLAAttention
}

// headMatMulK applies per-head blocks of a weight W [H·P, R]: head h uses
// B_h = rows h·P+start .. h·P+start+rows of W.
//
//	transpose=0: x [T, H, R]    -> y[t,h,n] = Σ_c B_h[n,c]·x[t,h,c]   (y [T, H, rows])
//	transpose=1: x [T, H, rows] -> y[t,h,c] = Σ_n B_h[n,c]·x[t,h,n]   (y [T, H, R])
//
// Work items are (head, tile of B_h's rows) without transpose, heads with
// it; either way each decoded weight row serves every token of the step.
type headMatMulK struct {
	b           *Backend
	x           tensor
	w           matrix
	y           []float32
	heads, per  int
	start, rows int
	transpose   bool
	xDim, yDim  int
	tiles       int
}

func buildHeadMatMul(b *Backend, s ir.Step, y tensor) (kernel, error) {
	x := b.operand(s.Args[0])
	w := b.weightRows(s.Args[1])
	heads := int(x.shape[1])
	k := &headMatMulK{b: b, x: x, w: w, y: y.f32, heads: heads, per: w.rows / heads,
		start: int(s.Attr().Int("start")), rows: int(s.Attr().Int("rows")), transpose: s.Attr().Bool("transpose"),
		xDim: int(x.shape[2]), yDim: int(y.shape[2])}
	k.tiles = (k.rows + nTileHM - 1) / nTileHM
	for i := range b.scratch {
		if len(b.scratch[i].w) < nTileHM*w.cols {
			b.scratch[i].w = make([]float32, nTileHM*w.cols)
		}
	}
	return k, nil
}

const nTileHM = 16

func (k *headMatMulK) exec(b *Backend) error {
	if k.transpose {
		b.pool.do(k, k.heads, 1)
	} else {
		b.pool.do(k, k.heads*k.tiles, 1)
	}
	return nil
}

func (k *headMatMulK) run(lo, hi, w int) {
	T, R := k.b.t, k.w.cols
	row := k.b.scratch[w].w
	for i := lo; i < hi; i++ {
		if k.transpose {
			h := i
			for t := 0; t < T; t++ {
				clear(k.y[(t*k.heads+h)*k.yDim : (t*k.heads+h+1)*k.yDim])
			}
			for n := 0; n < k.rows; n++ {
				r := row[:R]
				k.w.rowInto(h*k.per+k.start+n, r)
				for t := 0; t < T; t++ {
					a := k.x.f32[(t*k.heads+h)*k.xDim+n]
					y := k.y[(t*k.heads+h)*k.yDim : (t*k.heads+h+1)*k.yDim]
					for c, v := range r {
						y[c] += a * v
					}
				}
			}
			continue
		}
		h, tile := i/k.tiles, i%k.tiles
		n0, n1 := tile*nTileHM, min((tile+1)*nTileHM, k.rows)
		if T < moeDirect && k.w.dt == ir.BF16 { // decode: dots straight off the stored rows
			for t := 0; t < T; t++ {
				x := k.x.f32[(t*k.heads+h)*k.xDim : (t*k.heads+h+1)*k.xDim]
				y := k.y[(t*k.heads+h)*k.yDim:]
				for n := n0; n < n1; n++ {
					r := h*k.per + k.start + n
					y[n] = kern.DotBF16(x, k.w.u16[r*R:(r+1)*R])
				}
			}
			continue
		}
		wt := row[:(n1-n0)*R]
		for n := n0; n < n1; n++ {
			k.w.rowInto(h*k.per+k.start+n, wt[(n-n0)*R:])
		}
		for t := 0; t < T; t++ {
			x := k.x.f32[(t*k.heads+h)*k.xDim : (t*k.heads+h+1)*k.xDim]
			y := k.y[(t*k.heads+h)*k.yDim:]
			for n := n0; n < n1; n++ {
				y[n] = kern.Dot(x, wt[(n-n0)*R:(n-n0+1)*R])
			}
		}
	}
}

// mlaAttentionK is causal multi-head latent attention in absorbed form over
// a latent paged cache: q_lat [T, H, R], q_rope [T, H, Dr], c_kv [T, R],
// k_rope [T, Dr] -> o_lat [T, H, R].
//
// It first writes every token's c_kv and k_rope into its sequence's cache
// slot, then for each token and head scores positions 0..pos of the
// sequence: s = (q_lat·c_kv[j] + q_rope·k_rope[j])·scale in f32, softmax in
// f32 (max subtracted, the sum accumulated in f64), o = Σ p·c_kv[j]. One
// latent entry serves all heads, so the cache holds R+Dr values per token
// and layer whatever the head count. A bf16 cache holds c_kv and k_rope
// rounded to nearest even; the arithmetic is the same (kvPool).
type mlaAttentionK struct {
	b            *Backend
	qLat, qRope  tensor
	ckv, kRope   tensor
	y            []float32
	heads, r, dr int
	scale        float32
	cc, kc       kvPool // cache pools: [NumBlocks·BlockSize, R] and [.., Dr]
}

func buildMLAAttention(b *Backend, s ir.Step, y tensor) (kernel, error) {
	ql, qr, ckv, kr := b.operand(s.Args[0]), b.operand(s.Args[1]), b.operand(s.Args[2]), b.operand(s.Args[3])
	ci := int(s.Attr().Int("cache"))
	if ci < 0 || ci >= len(b.caches) {
		return nil, fmt.Errorf("cache %d not declared (the plan has %d)", ci, len(b.caches))
	}
	c := b.caches[ci]
	r, dr := ckv.shape[1], kr.shape[1]
	if c.spec.Kind != ir.CacheLatent || len(c.spec.Entries) != 2 ||
		!c.spec.Entries[0].Equal(ir.Sh(r)) || !c.spec.Entries[1].Equal(ir.Sh(dr)) {
		return nil, fmt.Errorf("cache %d (%v %v) does not hold c_kv [%v] and k_rope [%v]", ci, c.spec.Kind, c.spec.Entries, r, dr)
	}
	ctx := b.opt.NumBlocks * b.opt.BlockSize
	for i := range b.scratch {
		if len(b.scratch[i].scores) < ctx {
			b.scratch[i].scores = make([]float32, ctx)
		}
		if len(b.scratch[i].acc) < int(r) {
			b.scratch[i].acc = make([]float32, r)
		}
	}
	return &mlaAttentionK{b: b, qLat: ql, qRope: qr, ckv: ckv, kRope: kr, y: y.f32,
		heads: int(ql.shape[1]), r: int(r), dr: int(dr), scale: float32(s.Attr().Float("scale")),
		cc: c.pool(0), kc: c.pool(1)}, nil
}

func (k *mlaAttentionK) exec(b *Backend) error {
	bt, bs := b.batch, b.opt.BlockSize
	for t := 0; t < b.t; t++ {
		pos := int(bt.Positions[t])
		slot := int(bt.Seqs[bt.SeqOfToken[t]].Blocks[pos/bs])*bs + pos%bs
		k.cc.put(slot*k.r, k.ckv.f32[t*k.r:(t+1)*k.r])
		k.kc.put(slot*k.dr, k.kRope.f32[t*k.dr:(t+1)*k.dr])
	}
	n := b.t * k.heads
	b.pool.do(k, n, b.pool.grainFor(n, 1))
	return nil
}

func (k *mlaAttentionK) run(lo, hi, w int) {
	bt, bs := k.b.batch, k.b.opt.BlockSize
	sc := &k.b.scratch[w]
	r, dr := k.r, k.dr
	for i := lo; i < hi; i++ {
		t := i / k.heads
		ql := k.qLat.f32[i*r : (i+1)*r]
		qr := k.qRope.f32[i*dr : (i+1)*dr]
		blocks := bt.Seqs[bt.SeqOfToken[t]].Blocks
		n := int(bt.Positions[t]) + 1
		scores := sc.scores[:n]

		m := float32(math.Inf(-1))
		for j := range scores {
			slot := int(blocks[j/bs])*bs + j%bs
			s := (k.cc.dot(ql, slot*r) + k.kc.dot(qr, slot*dr)) * k.scale
			scores[j] = s
			m = max(m, s)
		}
		var sum float64
		for j, s := range scores {
			e := float32(math.Exp(float64(s - m)))
			scores[j] = e
			sum += float64(e)
		}
		inv := 1 / float32(sum)

		acc := sc.acc[:r]
		clear(acc)
		for j, e := range scores {
			p := e * inv
			slot := int(blocks[j/bs])*bs + j%bs
			k.cc.axpy(acc, p, slot*r)
		}
		copy(k.y[i*r:(i+1)*r], acc)
	}
}
