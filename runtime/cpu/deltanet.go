package cpu

import (
	"fmt"
	"math"

	"github.com/inference-pio/pio/ir"
)

// Kernels of the Gated DeltaNet family (ir/op_deltanet.go) and the concat
// of activations its graphs use (section is a core op, runtime/cpu/backend.go).
//
// State caches hold one slot per sequence (Options.MaxSeqs slots); a
// sequence's slot is Batch.Seqs[s].Slot. A sequence whose run in the step
// starts at position 0 starts from zero state, so a reused slot needs no
// reset. A run that starts at position p > 0 must find its slot holding the
// state after exactly p positions (each state kernel records, per slot, the
// position its state has reached); anything else — a prefix taken from the
// prefix cache without its state, a slot mix-up — is an error, reported by
// the first state step before it writes any state.
func init() {
	builders[ir.OpConv1DCausal] = buildConv1DCausal
	builders[ir.OpGatedDeltaRule] = buildGatedDeltaRule
	builders[ir.OpDeltaNetDecay] = buildDeltaNetDecay
	builders[ir.OpMulRows] = buildMulRows
	builders[ir.OpConcat] = buildConcat // activations; concats of weights fold at build time
}

// seqRun is one sequence's contiguous tokens in the step.
type seqRun struct {
	t0, n int  // first token, token count
	pos   int  // position of the first token
	slot  int  // state slot
	fresh bool // the run starts at position 0: start from zero state
}

// runsOf splits the current batch into its sequences' runs (the batch
// check guarantees each sequence's tokens are contiguous).
func runsOf(b *Backend, dst []seqRun) []seqRun {
	bt := b.batch
	dst = dst[:0]
	for t := 0; t < b.t; {
		s := bt.SeqOfToken[t]
		e := t + 1
		for e < b.t && bt.SeqOfToken[e] == s {
			e++
		}
		dst = append(dst, seqRun{t0: t, n: e - t, pos: int(bt.Positions[t]), slot: int(bt.Seqs[s].Slot), fresh: bt.Positions[t] == 0})
		t = e
	}
	return dst
}

// slotPositions records, per state slot, the position its state has
// reached (-1: none yet).
type slotPositions []int

func newSlotPositions(n int) slotPositions {
	p := make(slotPositions, n)
	for i := range p {
		p[i] = -1
	}
	return p
}

// check reports a run that would continue from a state the slot does not
// hold.
func (p slotPositions) check(runs []seqRun) error {
	for _, r := range runs {
		if !r.fresh && p[r.slot] != r.pos {
			have := "no state"
			if p[r.slot] >= 0 {
				have = fmt.Sprintf("the state after %d positions", p[r.slot])
			}
			return fmt.Errorf("a sequence continues at position %d in state slot %d, which holds %s "+
				"(models with state caches cannot reuse a cached prefix without its state)", r.pos, r.slot, have)
		}
	}
	return nil
}

// advance records the positions the runs reached.
func (p slotPositions) advance(runs []seqRun) {
	for _, r := range runs {
		p[r.slot] = r.pos + r.n
	}
}

// stateCache returns cache ci after checking it is a state cache whose
// only entry has shape want.
func (b *Backend) stateCache(ci int64, want ir.Shape) (cache, error) {
	if ci < 0 || int(ci) >= len(b.caches) {
		return cache{}, fmt.Errorf("cache %d not declared", ci)
	}
	c := b.caches[ci]
	if c.spec.Kind != ir.CacheState || len(c.spec.Entries) != 1 || !c.spec.Entries[0].Equal(want) {
		return cache{}, fmt.Errorf("cache %d (%v %v) is not a state cache of one entry %v", ci, c.spec.Kind, c.spec.Entries, want)
	}
	return c, nil
}

func silu32(v float32) float32 {
	x := float64(v)
	return float32(x / (1 + math.Exp(-x)))
}

// conv1dK is the depthwise causal convolution: x [T, C], w [C, K] ->
// y [T, C], per sequence run, with the K−1 inputs before the run read from
// (and the last K−1 inputs written back to) the conv state [slot, C, K−1].
// The K products are summed in f32 in kernel order; SiLU in f64.
type conv1dK struct {
	x     tensor
	w     []float32 // [C·K]
	y     []float32
	state []float32 // [MaxSeqs, C, K−1]
	c, k  int
	silu  bool
	runs  []seqRun
	at    slotPositions
}

func buildConv1DCausal(b *Backend, s ir.Step, y tensor) (kernel, error) {
	x, w := b.operand(s.Args[0]), b.operand(s.Args[1])
	c := int(x.shape[1])
	k := int(w.shape.Last())
	st, err := b.stateCache(s.Attr().Int("cache"), ir.Sh(ir.Dim(c), ir.Dim(k-1)))
	if err != nil {
		return nil, err
	}
	return &conv1dK{x: x, w: w.f32, y: y.f32, state: st.entries[0], c: c, k: k,
		silu: s.Attr().String("activation") == "silu", runs: make([]seqRun, 0, b.opt.MaxSeqs), at: newSlotPositions(b.opt.MaxSeqs)}, nil
}

func (k *conv1dK) exec(b *Backend) error {
	k.runs = runsOf(b, k.runs)
	if err := k.at.check(k.runs); err != nil {
		return err
	}
	b.pool.do(k, k.c, b.pool.grainFor(k.c, 64))
	k.at.advance(k.runs)
	return nil
}

func (k *conv1dK) run(lo, hi, _ int) {
	C, K := k.c, k.k
	h := K - 1
	var hist, next [maxConvKernel]float32
	for ch := lo; ch < hi; ch++ {
		w := k.w[ch*K : (ch+1)*K]
		for _, r := range k.runs {
			st := k.state[(r.slot*C+ch)*h : (r.slot*C+ch+1)*h]
			if r.fresh {
				clear(hist[:h])
			} else {
				copy(hist[:h], st)
			}
			in := func(i int) float32 { // input i of the run; i < 0 reads the history
				if i < 0 {
					return hist[h+i]
				}
				return k.x.f32[(r.t0+i)*C+ch]
			}
			for i := 0; i < r.n; i++ {
				var acc float32
				for j := 0; j < K; j++ {
					acc += w[j] * in(i-h+j)
				}
				if k.silu {
					acc = silu32(acc)
				}
				k.y[(r.t0+i)*C+ch] = acc
			}
			for m := 0; m < h; m++ {
				next[m] = in(r.n - h + m)
			}
			copy(st, next[:h])
		}
	}
}

// maxConvKernel bounds the conv kernel length (the IR allows up to 64).
const maxConvKernel = 64

// deltaRuleK is the gated delta rule: q, k [T, Hk, dk], v [T, Hv, dv],
// g, beta [T, Hv] -> o [T, Hv, dv], per (sequence run, value head), over
// the recurrent state [slot, Hv, dk, dv] in f32. Value head h reads key head
// h/(Hv/Hk). q and k are l2-normalised (x·1/sqrt(Σx² + 1e-6)) when l2norm
// is set, then q is scaled. A one-token run takes the recurrent form; longer
// runs take the chunked (WY / UT-transform) form in chunks of `chunk`
// tokens, as transformers' torch_chunk_gated_delta_rule does; the two agree
// to rounding.
type deltaRuleK struct {
	q, k, v, g, beta tensor
	y                []float32
	state            []float32
	hk, hv, dk, dv   int
	scale            float32
	l2               bool
	chunk            int
	runs             []seqRun
	at               slotPositions
	ws               []deltaScratch // per worker
}

// deltaScratch is one worker's memory for one chunk.
type deltaScratch struct {
	q, k     []float32 // [chunk, dk] normalised q (scaled) and k
	u, w     []float32 // [chunk, dv], [chunk, dk]: the UT-transformed values and decayed keys
	vn       []float32 // [chunk, dv] v_new
	a        []float32 // [chunk, chunk] strictly lower βKKᵀ ⊙ Γ, then QKᵀ ⊙ Γ
	gc, beta []float32 // [chunk] cumulative log-decay, β
	tmp      []float32 // [max(dk, dv)]
}

func buildGatedDeltaRule(b *Backend, s ir.Step, y tensor) (kernel, error) {
	q, kk, v := b.operand(s.Args[0]), b.operand(s.Args[1]), b.operand(s.Args[2])
	hk, dk := int(q.shape[1]), int(q.shape[2])
	hv, dv := int(v.shape[1]), int(v.shape[2])
	st, err := b.stateCache(s.Attr().Int("cache"), ir.Sh(ir.Dim(hv), ir.Dim(dk), ir.Dim(dv)))
	if err != nil {
		return nil, err
	}
	k := &deltaRuleK{
		q: q, k: kk, v: v, g: b.operand(s.Args[3]), beta: b.operand(s.Args[4]), y: y.f32, state: st.entries[0],
		hk: hk, hv: hv, dk: dk, dv: dv,
		scale: float32(s.Attr().Float("scale")), l2: s.Attr().Bool("l2norm"),
		chunk: int(s.Attr().Int("chunk")), runs: make([]seqRun, 0, b.opt.MaxSeqs), at: newSlotPositions(b.opt.MaxSeqs),
	}
	c := k.chunk
	for range b.opt.Threads {
		k.ws = append(k.ws, deltaScratch{
			q: make([]float32, c*dk), k: make([]float32, c*dk), u: make([]float32, c*dv), w: make([]float32, c*dk),
			vn: make([]float32, c*dv), a: make([]float32, c*c), gc: make([]float32, c), beta: make([]float32, c),
			tmp: make([]float32, max(dk, dv)),
		})
	}
	return k, nil
}

func (k *deltaRuleK) exec(b *Backend) error {
	k.runs = runsOf(b, k.runs)
	if err := k.at.check(k.runs); err != nil {
		return err
	}
	n := len(k.runs) * k.hv
	b.pool.do(k, n, 1)
	k.at.advance(k.runs)
	return nil
}

func (k *deltaRuleK) run(lo, hi, w int) {
	sc := &k.ws[w]
	for i := lo; i < hi; i++ {
		r, h := k.runs[i/k.hv], i%k.hv
		S := k.state[(r.slot*k.hv+h)*k.dk*k.dv : (r.slot*k.hv+h+1)*k.dk*k.dv]
		if r.fresh {
			clear(S)
		}
		for c0 := 0; c0 < r.n; c0 += k.chunk {
			n := min(k.chunk, r.n-c0)
			k.load(sc, r.t0+c0, n, h)
			if n == 1 {
				k.recurrent(sc, S, r.t0+c0, h)
			} else {
				k.chunked(sc, S, r.t0+c0, n, h)
			}
		}
	}
}

// load normalises the chunk's q and k of value head h into the scratch and
// reads β and the cumulative log-decay.
func (k *deltaRuleK) load(sc *deltaScratch, t0, n, h int) {
	dk, kh := k.dk, h/(k.hv/k.hk)
	var G float32
	for r := 0; r < n; r++ {
		t := t0 + r
		off := (t*k.hk + kh) * dk
		qr, kr := sc.q[r*dk:(r+1)*dk], sc.k[r*dk:(r+1)*dk]
		copy(qr, k.q.f32[off:off+dk])
		copy(kr, k.k.f32[off:off+dk])
		if k.l2 {
			l2normalize(qr)
			l2normalize(kr)
		}
		for j := range qr {
			qr[j] *= k.scale
		}
		G += k.g.f32[t*k.hv+h]
		sc.gc[r] = G
		sc.beta[r] = k.beta.f32[t*k.hv+h]
	}
}

// l2normalize scales x by 1/sqrt(Σx² + 1e-6) (the sum in f64).
func l2normalize(x []float32) {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	inv := float32(1 / math.Sqrt(float64(float32(ss)+1e-6)))
	for i := range x {
		x[i] *= inv
	}
}

func exp32(x float32) float32 { return float32(math.Exp(float64(x))) }

// recurrent applies one token: S ← e^g·S; δ = β(v − Sᵀk); S ← S + kδᵀ;
// o = Sᵀq.
func (k *deltaRuleK) recurrent(sc *deltaScratch, S []float32, t, h int) {
	dk, dv := k.dk, k.dv
	q, kv := sc.q[:dk], sc.k[:dk]
	v := k.v.f32[(t*k.hv+h)*dv : (t*k.hv+h+1)*dv]
	decay, beta := exp32(sc.gc[0]), sc.beta[0]
	delta := sc.tmp[:dv]
	clear(delta)
	for i := 0; i < dk; i++ {
		row := S[i*dv : (i+1)*dv]
		ki := kv[i]
		for j := range row {
			row[j] *= decay
			delta[j] += row[j] * ki
		}
	}
	for j := range delta {
		delta[j] = (v[j] - delta[j]) * beta
	}
	o := k.y[(t*k.hv+h)*dv : (t*k.hv+h+1)*dv]
	clear(o)
	for i := 0; i < dk; i++ {
		row := S[i*dv : (i+1)*dv]
		ki, qi := kv[i], q[i]
		for j := range row {
			row[j] += ki * delta[j]
			o[j] += row[j] * qi
		}
	}
}

// chunked applies n tokens at once. With G the cumulative log-decay in the
// chunk and Γ[r,s] = e^(G_r−G_s) (r ≥ s):
//
//	A = strict_lower(diag(β)·K·Kᵀ ⊙ Γ);  (I + A)·U = diag(β)·V;  (I + A)·W = diag(β·e^G)·K
//	V_new = U − W·S
//	O = diag(e^G)·Q·S + lower(Q·Kᵀ ⊙ Γ)·V_new
//	S ← e^(G_n)·S + (diag(e^(G_n−G))·K)ᵀ·V_new
func (k *deltaRuleK) chunked(sc *deltaScratch, S []float32, t0, n, h int) {
	dk, dv, C := k.dk, k.dv, k.chunk
	Q, K, G, B := sc.q, sc.k, sc.gc, sc.beta
	A, U, W, VN := sc.a, sc.u, sc.w, sc.vn
	// A and the two triangular solves, row by row (forward substitution).
	for r := 0; r < n; r++ {
		kr := K[r*dk : (r+1)*dk]
		for s := 0; s < r; s++ {
			A[r*C+s] = B[r] * dot(kr, K[s*dk:(s+1)*dk]) * exp32(G[r]-G[s])
		}
		u, wr := U[r*dv:(r+1)*dv], W[r*dk:(r+1)*dk]
		v := k.v.f32[((t0+r)*k.hv+h)*dv : ((t0+r)*k.hv+h+1)*dv]
		eg := B[r] * exp32(G[r])
		for j := range u {
			u[j] = B[r] * v[j]
		}
		for j := range wr {
			wr[j] = eg * kr[j]
		}
		for s := 0; s < r; s++ {
			a := A[r*C+s]
			us, ws := U[s*dv:(s+1)*dv], W[s*dk:(s+1)*dk]
			for j := range u {
				u[j] -= a * us[j]
			}
			for j := range wr {
				wr[j] -= a * ws[j]
			}
		}
	}
	// V_new = U − W·S, and the inter-chunk part of O: e^G·(Q·S).
	for r := 0; r < n; r++ {
		vn := VN[r*dv : (r+1)*dv]
		copy(vn, U[r*dv:(r+1)*dv])
		o := k.y[((t0+r)*k.hv+h)*dv : ((t0+r)*k.hv+h+1)*dv]
		clear(o)
		wr, qr := W[r*dk:(r+1)*dk], Q[r*dk:(r+1)*dk]
		for i := 0; i < dk; i++ {
			row := S[i*dv : (i+1)*dv]
			wi, qi := wr[i], qr[i]
			for j, sv := range row {
				vn[j] -= wi * sv
				o[j] += qi * sv
			}
		}
		eg := exp32(G[r])
		for j := range o {
			o[j] *= eg
		}
	}
	// The intra-chunk part: O_r += Σ_{s≤r} (q_r·k_s)·Γ[r,s]·V_new_s.
	for r := 0; r < n; r++ {
		o := k.y[((t0+r)*k.hv+h)*dv : ((t0+r)*k.hv+h+1)*dv]
		qr := Q[r*dk : (r+1)*dk]
		for s := 0; s <= r; s++ {
			a := dot(qr, K[s*dk:(s+1)*dk]) * exp32(G[r]-G[s])
			vs := VN[s*dv : (s+1)*dv]
			for j := range o {
				o[j] += a * vs[j]
			}
		}
	}
	// The state update.
	last := G[n-1]
	el := exp32(last)
	for i := range S {
		S[i] *= el
	}
	for s := 0; s < n; s++ {
		e := exp32(last - G[s])
		ks, vs := K[s*dk:(s+1)*dk], VN[s*dv:(s+1)*dv]
		for i := 0; i < dk; i++ {
			row := S[i*dv : (i+1)*dv]
			f := e * ks[i]
			for j := range row {
				row[j] += f * vs[j]
			}
		}
	}
}

// decayK: g = −exp(A_log)·softplus(a + dt_bias) over a [T, H] (f32, as
// transformers; softplus is x above 20, else log1p(e^x)).
type decayK struct {
	a         tensor
	alog, dtb []float32
	y         []float32
	h         int
}

func buildDeltaNetDecay(b *Backend, s ir.Step, y tensor) (kernel, error) {
	a := b.operand(s.Args[0])
	return &decayK{a: a, alog: b.operand(s.Args[1]).f32, dtb: b.operand(s.Args[2]).f32, y: y.f32, h: int(a.shape[1])}, nil
}

func (k *decayK) exec(b *Backend) error {
	for t := 0; t < b.t; t++ {
		for j := 0; j < k.h; j++ {
			x := k.a.f32[t*k.h+j] + k.dtb[j]
			sp := x
			if x <= 20 {
				sp = float32(math.Log1p(math.Exp(float64(x))))
			}
			k.y[t*k.h+j] = -exp32(k.alog[j]) * sp
		}
	}
	return nil
}

// mulRowsK: y[t, ...] = x[t, ...]·s[t].
type mulRowsK struct {
	x, s tensor
	y    []float32
	row  int
}

func buildMulRows(b *Backend, s ir.Step, y tensor) (kernel, error) {
	x := b.operand(s.Args[0])
	row, _ := x.shape[1:].Elems(0, 0)
	return &mulRowsK{x: x, s: b.operand(s.Args[1]), y: y.f32, row: int(row)}, nil
}

func (k *mulRowsK) exec(b *Backend) error {
	w := k.row
	for t := 0; t < b.t; t++ {
		f := k.s.f32[t]
		x, y := k.x.f32[t*w:(t+1)*w], k.y[t*w:(t+1)*w]
		for i, v := range x {
			y[i] = v * f
		}
	}
	return nil
}

// concatK joins f32 operands along axis (activations; concats of weights are
// folded at build time).
type concatK struct {
	parts []tensor
	y     []float32
	axis  int
	inner []int // per part: elements per outer index (its axis dim × the dims after it)
	total int
}

func buildConcat(b *Backend, s ir.Step, y tensor) (kernel, error) {
	k := &concatK{y: y.f32, axis: int(s.Attr().Int("axis"))}
	for _, r := range s.Args {
		t := b.operand(r)
		if t.dt != ir.F32 {
			return nil, fmt.Errorf("part has dtype %v", t.dt)
		}
		n, _ := t.shape[k.axis:].Elems(0, 0)
		k.parts = append(k.parts, t)
		k.inner = append(k.inner, int(n))
		k.total += int(n)
	}
	return k, nil
}

func (k *concatK) exec(b *Backend) error {
	outer := 1
	if k.total > 0 {
		outer = b.elems(k.parts[0].shape) / k.inner[0]
	}
	for o := 0; o < outer; o++ {
		off := o * k.total
		for i, p := range k.parts {
			n := k.inner[i]
			copy(k.y[off:off+n], p.f32[o*n:(o+1)*n])
			off += n
		}
	}
	return nil
}
