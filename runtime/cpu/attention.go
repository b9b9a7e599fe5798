package cpu

import (
	"math"
)

// attentionK is causal paged GQA attention:
// q [T, Hq, D], k [T, Hkv, D], v [T, Hkv, Dv] -> y [T, Hq, Dv].
//
// It first writes every token's k and v into its sequence's cache slot
// (block Blocks[pos/BlockSize], offset pos%BlockSize), then, for each token
// and query head h (kv head h/(Hq/Hkv)), scores positions 0..pos of the
// token's sequence from the cache: s = (q·k)·scale in f32, softmax in f32
// after subtracting the max (the sum of the exponentials accumulated in f64
// and rounded to f32), y = Σ p·v accumulated in f32. A bf16 cache holds k
// and v rounded to nearest even; the arithmetic is the same (kvPool).
type attentionK struct {
	b       *Backend
	q, k, v tensor
	y       []float32
	hq, hkv int
	d, dv   int
	scale   float32
	kc, vc  kvPool // the cache pools: [NumBlocks·BlockSize, Hkv, D] and [.., Hkv, Dv]
}

func (k *attentionK) exec(b *Backend) error {
	bt, bs := b.batch, b.opt.BlockSize
	kr, vr := k.hkv*k.d, k.hkv*k.dv
	for t := 0; t < b.t; t++ {
		pos := int(bt.Positions[t])
		slot := int(bt.Seqs[bt.SeqOfToken[t]].Blocks[pos/bs])*bs + pos%bs
		k.kc.put(slot*kr, k.k.f32[t*kr:(t+1)*kr])
		k.vc.put(slot*vr, k.v.f32[t*vr:(t+1)*vr])
	}
	n := b.t * k.hq
	b.pool.do(k, n, b.pool.grainFor(n, 1))
	return nil
}

func (k *attentionK) run(lo, hi, w int) {
	bt, bs := k.b.batch, k.b.opt.BlockSize
	sc := &k.b.scratch[w]
	d, dv := k.d, k.dv
	group := k.hq / k.hkv
	for i := lo; i < hi; i++ {
		t, h := i/k.hq, i%k.hq
		kvh := h / group
		q := k.q.f32[i*d : (i+1)*d]
		blocks := bt.Seqs[bt.SeqOfToken[t]].Blocks
		n := int(bt.Positions[t]) + 1
		scores := sc.scores[:n]

		m := float32(math.Inf(-1))
		for j := range scores {
			slot := int(blocks[j/bs])*bs + j%bs
			off := (slot*k.hkv + kvh) * d
			s := k.kc.dot(q, off) * k.scale
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

		acc := sc.acc[:dv]
		clear(acc)
		for j, e := range scores {
			p := e * inv
			slot := int(blocks[j/bs])*bs + j%bs
			k.vc.axpy(acc, p, (slot*k.hkv+kvh)*dv)
		}
		copy(k.y[(t*k.hq+h)*dv:(t*k.hq+h+1)*dv], acc)
	}
}
