package cpu

import (
	"fmt"
	"math"

	"github.com/inference-pio/pio/ir"
)

// Kernels of the fused ops (ir/op_fused.go). Each computes exactly what the
// core ops it replaces compute, with the same formulas and rounding, so a
// fused engine matches an unfused one to the last bits wherever the
// summation order is the same. Intermediates a fused step needs (the
// normalised rows of a GEMM prologue, the gate/up product of a SwiGLU
// epilogue, q when it cannot live in the output) go to one scratch region
// shared by all fused steps of a backend, never to the arena.
func init() {
	builders[ir.OpFusedMatMul] = buildFusedMatMul
	builders[ir.OpAddRMSNorm] = buildAddRMSNorm
	builders[ir.OpQKVAttention] = buildQKVAttention
	builders[ir.OpMoERouted] = buildMoERouted
}

// fusedScratch is the backend-wide scratch of the fused kernels: steps run
// one at a time, so they can all use the same memory. It grows while the
// kernels are built; kernels slice it when they run.
type fusedScratch struct{ f32 []float32 }

type sharesScratch interface{ scratchOf() *fusedScratch }

// sharedScratch returns the backend's fused scratch, at least n floats long.
func sharedScratch(b *Backend, n int) *fusedScratch {
	var s *fusedScratch
	for _, k := range b.kernels {
		if sk, ok := k.(sharesScratch); ok {
			s = sk.scratchOf()
			break
		}
	}
	if s == nil {
		s = &fusedScratch{}
	}
	if len(s.f32) < n {
		s.f32 = make([]float32, n)
	}
	return s
}

// rmsRow is rmsNormK's row: y = x·(1/sqrt(mean(x²)+eps))·w, the sum of
// squares in f64, the rest in f32. x and y may be the same slice.
func rmsRow(x, w, y []float32, eps float32) {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	mean := float32(ss / float64(len(x)))
	inv := float32(1 / math.Sqrt(float64(mean+eps)))
	w, y = w[:len(x)], y[:len(x)]
	for i, v := range x {
		y[i] = float32(v*inv) * w[i]
	}
}

// normWeight returns a norm weight operand as f32, as 1+w for unit_offset.
func normWeight(b *Backend, r ir.Ref, unitOffset bool) []float32 {
	w := b.operand(r).f32
	if unitOffset {
		w1 := make([]float32, len(w))
		for i, v := range w {
			w1[i] = 1 + v
		}
		w = w1
	}
	return w
}

// silu and sigmoid are the elementwise kernels' formulas.
func silu(v float32) float32    { x := float64(v); return float32(x / (1 + math.Exp(-x))) }
func sigmoid(v float32) float32 { return float32(1 / (1 + math.Exp(-float64(v)))) }

// fusedMatMulK runs fused_matmul: the RMSNorm prologue into scratch, the
// GEMM of matmul.go, then the SwiGLU and residual epilogue over the rows.
type fusedMatMulK struct {
	x        tensor
	normW    []float32 // nil: no prologue
	eps      float32
	swiglu   bool
	res      tensor // f32 == nil: no residual
	y        []float32
	k, n     int // W is [n, k]
	zOff     int // where z lives in scratch when it is not y
	mm       matmulK
	scratch  *fusedScratch
	rows     int // x's rows at the largest step
	phase, m int
}

func (k *fusedMatMulK) scratchOf() *fusedScratch { return k.scratch }

func buildFusedMatMul(b *Backend, s ir.Step, y tensor) (kernel, error) {
	at := s.Attr()
	normArg, resArg, nargs := ir.FusedMatMulLayout(at)
	if len(s.Args) != nargs {
		return nil, fmt.Errorf("want %d args, got %d", nargs, len(s.Args))
	}
	w, err := b.matrixOf(s.Args[1])
	if err != nil {
		return nil, err
	}
	k := &fusedMatMulK{x: b.operand(s.Args[0]), y: y.f32, k: w.cols, n: w.rows,
		swiglu: at.String("act") == "swiglu"}
	maxT := int64(b.opt.MaxTokens)
	xn, _ := k.x.shape.Elems(maxT, maxT) // x's largest size
	k.rows = int(xn) / k.k
	need := 0
	if normArg >= 0 {
		k.normW = normWeight(b, s.Args[normArg], at.Bool("unit_offset"))
		k.eps = float32(at.Float("eps"))
		need = k.rows * k.k
	}
	if k.swiglu {
		k.zOff = need
		need += k.rows * k.n
	}
	if resArg >= 0 {
		k.res = b.operand(s.Args[resArg])
	}
	k.scratch = sharedScratch(b, need)
	k.mm = matmulK{b: b, x: tensor{dt: ir.F32, shape: k.x.shape}, w: w, k: k.k, n: k.n}
	if w.dt != ir.F32 {
		for i := range b.scratch {
			if len(b.scratch[i].w) < nTile*w.cols {
				b.scratch[i].w = make([]float32, nTile*w.cols)
			}
		}
	}
	return k, nil
}

func (k *fusedMatMulK) exec(b *Backend) error {
	k.m = b.elems(k.x.shape) / k.k
	k.mm.x.f32 = k.x.f32
	if k.normW != nil {
		k.mm.x.f32 = k.scratch.f32[:k.rows*k.k]
		k.phase = 0
		b.pool.do(k, k.m, b.pool.grainFor(k.m, max(1, 4096/k.k)))
	}
	k.mm.y = k.y
	if k.swiglu {
		k.mm.y = k.scratch.f32[k.zOff : k.zOff+k.rows*k.n]
	}
	if err := k.mm.exec(b); err != nil {
		return err
	}
	if k.swiglu || k.res.f32 != nil {
		k.phase = 1
		b.pool.do(k, k.m, b.pool.grainFor(k.m, max(1, 4096/k.n)))
	}
	return nil
}

func (k *fusedMatMulK) run(lo, hi, _ int) {
	K := k.k
	if k.phase == 0 { // prologue: normalise rows of x
		for r := lo; r < hi; r++ {
			rmsRow(k.x.f32[r*K:(r+1)*K], k.normW, k.mm.x.f32[r*K:(r+1)*K], k.eps)
		}
		return
	}
	out := k.n
	if k.swiglu {
		out = k.n / 2
	}
	for r := lo; r < hi; r++ {
		y := k.y[r*out : (r+1)*out]
		if k.swiglu {
			z := k.mm.y[r*k.n : (r+1)*k.n]
			gate, up := z[:out], z[out:]
			for j := range y {
				y[j] = silu(gate[j]) * up[j]
			}
		}
		if k.res.f32 != nil {
			res := k.res.f32[r*out : (r+1)*out]
			for j, v := range res {
				y[j] = v + y[j]
			}
		}
	}
}

// addRMSNormK is add then rmsNormK, the sum kept in y between the two.
type addRMSNormK struct {
	a, c tensor
	w    []float32
	y    []float32
	eps  float32
	d    int
}

func buildAddRMSNorm(b *Backend, s ir.Step, y tensor) (kernel, error) {
	a := b.operand(s.Args[0])
	return &addRMSNormK{a: a, c: b.operand(s.Args[1]), y: y.f32, d: int(a.shape.Last()),
		w:   normWeight(b, s.Args[2], s.Attr().Bool("unit_offset")),
		eps: float32(s.Attr().Float("eps"))}, nil
}

func (k *addRMSNormK) exec(b *Backend) error {
	rows := b.elems(k.a.shape) / k.d
	b.pool.do(k, rows, b.pool.grainFor(rows, max(1, 4096/k.d)))
	return nil
}

func (k *addRMSNormK) run(lo, hi, _ int) {
	d := k.d
	for r := lo; r < hi; r++ {
		a, c, y := k.a.f32[r*d:(r+1)*d], k.c.f32[r*d:(r+1)*d], k.y[r*d:(r+1)*d]
		for i, v := range a {
			y[i] = v + c[i]
		}
		rmsRow(y, k.w, y, k.eps)
	}
}

// qkvAttentionK runs qkv_attention: for each token, q/k per-head norm and
// RoPE straight out of the fused qkv row, k and v into the cache slot, q
// into the output buffer (or scratch when its rows are not the output's
// shape); then attentionK's attention phase over the cache, and the
// sigmoid gate when there is one.
type qkvAttentionK struct {
	b            *Backend
	qkv, pos     tensor
	qn, kn       []float32 // nil: no q/k norm
	eps          float32
	hq, hkv      int
	d, dv, dq    int // dq = d, or 2d with a gate
	gate         bool
	inv          []float32 // rope inverse frequencies [rd/2]
	neox         bool
	q            []float32 // roped q [maxT, hq, d]: y itself or scratch
	att          attentionK
	scratch      *fusedScratch
	phase, width int
}

func (k *qkvAttentionK) scratchOf() *fusedScratch { return k.scratch }

func buildQKVAttention(b *Backend, s ir.Step, y tensor) (kernel, error) {
	at := s.Attr()
	heads := at.Ints("heads")
	d := int(at.Int("head_dim"))
	k := &qkvAttentionK{b: b, qkv: b.operand(s.Args[0]), pos: b.operand(s.Args[1]),
		hq: int(heads[0]), hkv: int(heads[1]), d: d, dv: int(at.Int("v_head_dim")),
		gate: at.Bool("gate"), neox: at.String("style") == "neox"}
	k.dq = d
	if k.gate {
		k.dq = 2 * d
		if k.dv != d {
			return nil, fmt.Errorf("a gate needs v_head_dim = head_dim, got %d and %d", k.dv, d)
		}
	}
	k.width = int(k.qkv.shape.Last())
	if len(s.Args) == 4 {
		uo := at.Bool("unit_offset")
		k.qn, k.kn = normWeight(b, s.Args[2], uo), normWeight(b, s.Args[3], uo)
		k.eps = float32(at.Float("eps"))
	}
	k.inv = ropeInvFreq(at.Float("theta"), int(at.Int("rotary_dims")))
	ci := int(at.Int("cache"))
	if ci < 0 || ci >= len(b.caches) {
		return nil, fmt.Errorf("cache %d not declared", ci)
	}
	c := b.caches[ci]
	if c.spec.Kind != ir.CacheKV || len(c.spec.Entries) != 2 ||
		!c.spec.Entries[0].Equal(ir.Sh(ir.Dim(k.hkv), ir.Dim(d))) || !c.spec.Entries[1].Equal(ir.Sh(ir.Dim(k.hkv), ir.Dim(k.dv))) {
		return nil, fmt.Errorf("cache %d (%v %v) does not hold k [%d, %d] and v [%d, %d]", ci, c.spec.Kind, c.spec.Entries, k.hkv, d, k.hkv, k.dv)
	}
	maxT := b.opt.MaxTokens
	need := 0
	if k.dv != d || k.gate {
		need = maxT * k.hq * d
	}
	k.scratch = sharedScratch(b, need)
	ctx := b.opt.NumBlocks * b.opt.BlockSize
	for i := range b.scratch {
		sc := &b.scratch[i]
		if len(sc.scores) < ctx {
			sc.scores = make([]float32, ctx)
		}
		if len(sc.acc) < k.dv {
			sc.acc = make([]float32, k.dv)
		}
		if len(sc.kv) < d {
			sc.kv = make([]float32, d)
		}
		if len(sc.cos) < len(k.inv) {
			sc.cos, sc.sin = make([]float32, len(k.inv)), make([]float32, len(k.inv))
		}
	}
	k.att = attentionK{b: b, y: y.f32, hq: k.hq, hkv: k.hkv, d: d, dv: k.dv,
		scale: float32(s.Attr().Float("scale")), kc: c.pool(0), vc: c.pool(1)}
	return k, nil
}

func (k *qkvAttentionK) exec(b *Backend) error {
	k.q = k.att.y
	if k.dv != k.d || k.gate {
		k.q = k.scratch.f32[:b.opt.MaxTokens*k.hq*k.d]
	}
	k.att.q = tensor{dt: ir.F32, f32: k.q}
	k.phase = 0
	b.pool.do(k, b.t, b.pool.grainFor(b.t, 1))
	n := b.t * k.hq
	b.pool.do(&k.att, n, b.pool.grainFor(n, 1))
	if k.gate {
		k.phase = 1
		b.pool.do(k, b.t, b.pool.grainFor(b.t, 1))
	}
	return nil
}

func (k *qkvAttentionK) run(lo, hi, w int) {
	bt, bs := k.b.batch, k.b.opt.BlockSize
	d, hq, hkv := k.d, k.hq, k.hkv
	if k.phase == 1 { // gate epilogue: y ⊙= sigmoid(gate)
		for t := lo; t < hi; t++ {
			row := k.qkv.f32[t*k.width:]
			for h := 0; h < hq; h++ {
				g := row[h*k.dq+d : h*k.dq+2*d]
				y := k.att.y[(t*hq+h)*d : (t*hq+h+1)*d]
				for c := range y {
					y[c] *= sigmoid(g[c])
				}
			}
		}
		return
	}
	half := len(k.inv)
	sc := &k.b.scratch[w]
	cos, sin := sc.cos[:half], sc.sin[:half]
	kOff, vOff := hq*k.dq, hq*k.dq+hkv*d
	for t := lo; t < hi; t++ {
		pos := int(bt.Positions[t])
		p := float32(k.pos.i32[t])
		for j, f := range k.inv {
			a := float64(p * f)
			cos[j], sin[j] = float32(math.Cos(a)), float32(math.Sin(a))
		}
		row := k.qkv.f32[t*k.width : (t+1)*k.width]
		for h := 0; h < hq; h++ {
			k.head(row[h*k.dq:h*k.dq+d], k.q[(t*hq+h)*d:(t*hq+h+1)*d], k.qn, cos, sin)
		}
		slot := int(bt.Seqs[bt.SeqOfToken[t]].Blocks[pos/bs])*bs + pos%bs
		kh := sc.kv[:d]
		for h := 0; h < hkv; h++ {
			k.head(row[kOff+h*d:kOff+(h+1)*d], kh, k.kn, cos, sin)
			k.att.kc.put((slot*hkv+h)*d, kh)
		}
		k.att.vc.put(slot*hkv*k.dv, row[vOff:vOff+hkv*k.dv])
	}
}

// head writes one head of q or k: norm (when w != nil), then RoPE, as
// rmsNormK and ropeK compute them.
func (k *qkvAttentionK) head(src, dst, w, cos, sin []float32) {
	if w != nil {
		rmsRow(src, w, dst, k.eps)
	} else {
		copy(dst, src)
	}
	half := len(cos)
	if k.neox {
		for j := 0; j < half; j++ {
			x1, x2 := dst[j], dst[j+half]
			c, s := cos[j], sin[j]
			dst[j] = float32(x1*c) - float32(x2*s)
			dst[j+half] = float32(x2*c) + float32(x1*s)
		}
		return
	}
	for j := 0; j < half; j++ {
		x1, x2 := dst[2*j], dst[2*j+1]
		c, s := cos[j], sin[j]
		dst[2*j] = float32(x1*c) - float32(x2*s)
		dst[2*j+1] = float32(x2*c) + float32(x1*s)
	}
}

// moeRoutedK runs moe_routed: the router GEMM into scratch, then the
// routing and expert kernels of moe.go over the scratch logits, ids and
// weights.
type moeRoutedK struct {
	mm       matmulK
	topk     routerTopKK
	weights  routerWeightsK
	moe      *moeK
	scratch  *fusedScratch
	e, k     int
	x        tensor
	normW    []float32 // nil: no norm prologue
	eps      float32
	res      tensor // f32 == nil: no residual
	y        []float32
	h, m     int
	phase    int
	xnOff    int // normalised x in scratch
	routeOff int // logits, ids, weights in scratch

	logitsShape, idsShape ir.Shape // [T, E], [T, k]
}

func (k *moeRoutedK) scratchOf() *fusedScratch { return k.scratch }

func buildMoERouted(b *Backend, s ir.Step, y tensor) (kernel, error) {
	at := s.Attr()
	biasArg, normArg, resArg, nargs := ir.MoERoutedLayout(at)
	if len(s.Args) != nargs {
		return nil, fmt.Errorf("want %d args, got %d", nargs, len(s.Args))
	}
	router, err := b.matrixOf(s.Args[1])
	if err != nil {
		return nil, err
	}
	x := b.operand(s.Args[0])
	e, kk := router.rows, int(at.Int("k"))
	maxT := b.opt.MaxTokens
	h0 := int(x.shape.Last())
	k := &moeRoutedK{e: e, k: kk, x: x, y: y.f32, h: h0,
		logitsShape: ir.Sh(ir.T, ir.Dim(e)), idsShape: ir.Sh(ir.T, ir.Dim(kk))}
	need := maxT * (e + 2*kk)
	if normArg >= 0 {
		k.normW = normWeight(b, s.Args[normArg], at.Bool("unit_offset"))
		k.eps = float32(at.Float("eps"))
		k.routeOff = maxT * h0
		need += maxT * h0
	}
	if resArg >= 0 {
		k.res = b.operand(s.Args[resArg])
	}
	k.scratch = sharedScratch(b, need)
	k.mm = matmulK{b: b, x: x, w: router, k: router.cols, n: e}
	if router.dt != ir.F32 {
		for i := range b.scratch {
			if len(b.scratch[i].w) < nTile*router.cols {
				b.scratch[i].w = make([]float32, nTile*router.cols)
			}
		}
	}
	softmax := at.String("scoring") == "softmax"
	k.topk = routerTopKK{e: e, k: kk, softmax: softmax, score: make([]float32, e), taken: make([]bool, e)}
	if biasArg >= 0 {
		k.topk.bias = b.operand(s.Args[biasArg]).f32
	}
	k.weights = routerWeightsK{e: e, k: kk, softmax: softmax, normalize: at.Bool("normalize"),
		scale: float32(at.Float("scale")), score: make([]float32, e)}
	// The expert step, as buildMoE makes it, with ids and weights that
	// live in scratch (set before each run).
	e2 := int(at.Int("experts"))
	gu, down := b.weightRows(s.Args[2]), b.weightRows(s.Args[3])
	h := int(x.shape[1])
	if gu.cols != h || gu.rows%(2*e2) != 0 || down.rows != e2*h || down.cols != gu.rows/(2*e2) {
		return nil, fmt.Errorf("expert weights [%d, %d] and [%d, %d] do not fit %d experts of hidden %d", gu.rows, gu.cols, down.rows, down.cols, e2, h)
	}
	inter := gu.rows / (2 * e2)
	pairs := maxT * kk
	k.moe = &moeK{b: b, x: x, gu: gu, down: down, y: y.f32, e: e2, k: kk, h: h, inter: inter,
		act: make([]float32, pairs*2*inter), out: make([]float32, pairs*h),
		count: make([]int, e2), start: make([]int, e2+1), order: make([]int32, pairs), perm: make([]int, kk)}
	tiles := (2*inter+moeTile-1)/moeTile + (h+moeTile-1)/moeTile
	k.moe.items = make([]moeItem, 0, e2*tiles)
	for i := range b.scratch {
		if len(b.scratch[i].w) < moeTile*max(h, inter) {
			b.scratch[i].w = make([]float32, moeTile*max(h, inter))
		}
	}
	return k, nil
}

func (k *moeRoutedK) exec(b *Backend) error {
	maxT := b.opt.MaxTokens
	k.m = b.t
	xs := k.x
	if k.normW != nil {
		xs.f32 = k.scratch.f32[k.xnOff : k.xnOff+maxT*k.h]
	}
	k.mm.x, k.moe.x = xs, xs
	if k.normW != nil {
		k.phase = 0
		b.pool.do(k, k.m, b.pool.grainFor(k.m, max(1, 4096/k.h)))
	}
	sc := k.scratch.f32[k.routeOff:]
	logits := sc[:maxT*k.e]
	ids := i32View(sc[maxT*k.e : maxT*(k.e+k.k)])
	w := sc[maxT*(k.e+k.k) : maxT*(k.e+2*k.k)]
	lt := tensor{dt: ir.F32, shape: k.logitsShape, f32: logits}
	it := tensor{dt: ir.I32, shape: k.idsShape, i32: ids}
	k.mm.y = logits
	if err := k.mm.exec(b); err != nil {
		return err
	}
	k.topk.logits, k.topk.ids = lt, ids
	if err := k.topk.exec(b); err != nil {
		return err
	}
	k.weights.logits, k.weights.ids, k.weights.w = lt, it, w
	if err := k.weights.exec(b); err != nil {
		return err
	}
	k.moe.ids, k.moe.w = it, w
	if err := k.moe.exec(b); err != nil {
		return err
	}
	if k.res.f32 != nil {
		k.phase = 1
		b.pool.do(k, k.m, b.pool.grainFor(k.m, max(1, 4096/k.h)))
	}
	return nil
}

func (k *moeRoutedK) run(lo, hi, _ int) {
	h := k.h
	for r := lo; r < hi; r++ {
		if k.phase == 0 {
			rmsRow(k.x.f32[r*h:(r+1)*h], k.normW, k.mm.x.f32[r*h:(r+1)*h], k.eps)
			continue
		}
		y, res := k.y[r*h:(r+1)*h], k.res.f32[r*h:(r+1)*h]
		for j, v := range res {
			y[j] = v + y[j]
		}
	}
}
