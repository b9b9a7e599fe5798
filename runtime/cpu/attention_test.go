package cpu

import (
	"math"
	"strings"
	"testing"

	"github.com/inference-pio/pio/internal/tolerance"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu/kern"
)

// layer is a tiny Qwen3-style attention block: embedding, RMSNorm, q/k/v
// projections, per-head q/k RMSNorm, rotate-half RoPE, causal GQA attention
// through the paged cache (Hq = 4 query heads over Hkv = 2 kv heads, and a
// value head size Dv unlike D), the output projection and the residual.
type layer struct {
	V, H, Hq, Hkv, D, Dv int
	theta                float64
	ws                   *weightSet
}

func newLayer() *layer {
	return &layer{V: 29, H: 24, Hq: 4, Hkv: 2, D: 8, Dv: 6, theta: 10000, ws: newWeightSet(11)}
}

// plan builds the block with weights of dtype dt and an f32 KV cache.
func (l *layer) plan(t testing.TB, dt ir.DType) *ir.Plan { return l.planKV(t, dt, ir.F32) }

// planKV builds the block with weights of dtype dt and a KV cache of dtype kv.
func (l *layer) planKV(t testing.TB, dt, kv ir.DType) *ir.Plan {
	b := ir.NewBuilder("layer")
	ws := l.ws
	tok := b.Input("tokens", ir.I32, ir.T)
	pos := b.Input("positions", ir.I32, ir.T)
	rows := b.Input("logit_rows", ir.I32, ir.S)
	x := b.Embedding(ws.add(b, "emb", dt, 1, ir.Dim(l.V), ir.Dim(l.H)), tok)
	h := b.RMSNorm(x, ws.add(b, "ln", dt, 1, ir.Dim(l.H)), 1e-6, false)
	sc := 1 / math.Sqrt(float64(l.H))
	q := b.Reshape(b.MatMul(h, ws.add(b, "wq", dt, sc, ir.Dim(l.Hq*l.D), ir.Dim(l.H))), ir.T, ir.Dim(l.Hq), ir.Dim(l.D))
	k := b.Reshape(b.MatMul(h, ws.add(b, "wk", dt, sc, ir.Dim(l.Hkv*l.D), ir.Dim(l.H))), ir.T, ir.Dim(l.Hkv), ir.Dim(l.D))
	v := b.Reshape(b.MatMul(h, ws.add(b, "wv", dt, sc, ir.Dim(l.Hkv*l.Dv), ir.Dim(l.H))), ir.T, ir.Dim(l.Hkv), ir.Dim(l.Dv))
	q = b.RMSNorm(q, ws.add(b, "qn", dt, 1, ir.Dim(l.D)), 1e-6, false)
	k = b.RMSNorm(k, ws.add(b, "kn", dt, 1, ir.Dim(l.D)), 1e-6, false)
	ro := ir.RoPEOpts{Theta: l.theta, RotaryDims: l.D, Style: "neox"}
	q, k = b.RoPE(q, pos, ro), b.RoPE(k, pos, ro)
	c := b.Cache(ir.CacheSpec{Kind: ir.CacheKV, DType: kv, Entries: []ir.Shape{ir.Sh(ir.Dim(l.Hkv), ir.Dim(l.D)), ir.Sh(ir.Dim(l.Hkv), ir.Dim(l.Dv))}})
	a := b.Attention(q, k, v, c, 1/math.Sqrt(float64(l.D)))
	o := b.MatMul(b.Reshape(a, ir.T, ir.Dim(l.Hq*l.Dv)), ws.add(b, "wo", dt, sc, ir.Dim(l.H), ir.Dim(l.Hq*l.Dv)))
	out := b.Add(x, o)
	b.Output("hidden", out)
	b.Output("last", b.GatherRows(out, rows))
	return finish(t, b)
}

// reference returns the block's output at every position of one sequence,
// in float64.
func (l *layer) reference(tokens []int32) [][]float64 { return l.referenceKV(tokens, false) }

// referenceKV is reference with, when bf16, every cached k and v value
// (after norm and RoPE) rounded to bfloat16 as a bf16 cache stores it.
func (l *layer) referenceKV(tokens []int32, bf16 bool) [][]float64 {
	w := func(n string) []float64 { return l.ws.f64(n) }
	x := l.ws.rows("emb", tokens)
	n := len(tokens)
	qs, ks, vs := make([][]float64, n), make([][]float64, n), make([][]float64, n)
	headNorm := func(v []float64, heads, d int, g []float64) {
		for h := 0; h < heads; h++ {
			copy(v[h*d:], refRMSNorm([][]float64{v[h*d : (h+1)*d]}, g, 1e-6, false))
		}
	}
	rope := func(v []float64, heads int, p float64) {
		half := l.D / 2
		for h := 0; h < heads; h++ {
			r := v[h*l.D : (h+1)*l.D]
			for j := 0; j < half; j++ {
				f := p * math.Pow(l.theta, -2*float64(j)/float64(l.D))
				c, s := math.Cos(f), math.Sin(f)
				r[j], r[j+half] = r[j]*c-r[j+half]*s, r[j+half]*c+r[j]*s
			}
		}
	}
	for i := range tokens {
		h := refRMSNorm(x[i:i+1], w("ln"), 1e-6, false)
		hh := [][]float64{h}
		qs[i], ks[i], vs[i] = refMatMul(hh, w("wq"), l.Hq*l.D), refMatMul(hh, w("wk"), l.Hkv*l.D), refMatMul(hh, w("wv"), l.Hkv*l.Dv)
		headNorm(qs[i], l.Hq, l.D, w("qn"))
		headNorm(ks[i], l.Hkv, l.D, w("kn"))
		rope(qs[i], l.Hq, float64(i))
		rope(ks[i], l.Hkv, float64(i))
		if bf16 {
			for _, r := range [][]float64{ks[i], vs[i]} {
				for c, x := range r {
					r[c] = float64(kern.BF16(ir.ToBF16(float32(x))))
				}
			}
		}
	}
	out := make([][]float64, n)
	g := l.Hq / l.Hkv
	for i := range tokens {
		att := make([]float64, l.Hq*l.Dv)
		for h := 0; h < l.Hq; h++ {
			kv := h / g
			s := make([]float64, i+1)
			m := math.Inf(-1)
			for j := 0; j <= i; j++ {
				for c := 0; c < l.D; c++ {
					s[j] += qs[i][h*l.D+c] * ks[j][kv*l.D+c]
				}
				s[j] /= math.Sqrt(float64(l.D))
				m = max(m, s[j])
			}
			var sum float64
			for j := range s {
				s[j] = math.Exp(s[j] - m)
				sum += s[j]
			}
			for j := range s {
				for c := 0; c < l.Dv; c++ {
					att[h*l.Dv+c] += s[j] / sum * vs[j][kv*l.Dv+c]
				}
			}
		}
		o := refMatMul([][]float64{att}, w("wo"), l.H)
		for c := range o {
			o[c] += x[i][c]
		}
		out[i] = o
	}
	return out
}

func TestAttentionMatchesReference(t *testing.T) {
	l := newLayer()
	p := l.plan(t, ir.F32)
	be := newBackend(t, p, l.ws.weights(p), Options{BlockSize: 4, NumBlocks: 8, Threads: 3})
	a := randTokens(l.ws.rng, 9, l.V)
	c := randTokens(l.ws.rng, 6, l.V)
	ba, bc := []int32{3, 1, 4}, []int32{0, 6}

	// Prefill both sequences in one step, then decode one token of each.
	step(t, be, makeBatch(chunk{ba, 0, a[:7]}, chunk{bc, 0, c[:5]}))
	got, shape := output(t, be, "hidden")
	if shape[0] != 12 || shape[1] != l.H {
		t.Fatalf("hidden shape %v, want [12 %d]", shape, l.H)
	}
	want := append(l.reference(a[:7]), l.reference(c[:5])...)
	if e := maxRel(got, flat(want)); !tolerance.Within(t, e, tol) {
		t.Errorf("prefill: max relative error %.3g > %g", e, tol)
	}
	last, shape := output(t, be, "last")
	if shape[0] != 2 {
		t.Fatalf("last shape %v, want [2 %d]", shape, l.H)
	}
	if e := maxRel(last, flat([][]float64{want[6], want[11]})); !tolerance.Within(t, e, tol) {
		t.Errorf("prefill last rows: max relative error %.3g > %g", e, tol)
	}

	step(t, be, makeBatch(chunk{ba, 7, a[7:9]}, chunk{bc, 5, c[5:6]}))
	got, _ = output(t, be, "hidden")
	ra, rc := l.reference(a), l.reference(c)
	if e := maxRel(got, flat([][]float64{ra[7], ra[8], rc[5]})); !tolerance.Within(t, e, tol) {
		t.Errorf("decode: max relative error %.3g > %g", e, tol)
	}
}

// TestPrefillEqualsDecode runs one sequence through the paged cache in one
// step, one token per step and in uneven chunks: block size 4, so it crosses
// blocks, over the non-contiguous table [5, 2, 7].
func TestPrefillEqualsDecode(t *testing.T) {
	l := newLayer()
	p := l.plan(t, ir.F32)
	tokens := randTokens(l.ws.rng, 11, l.V)
	blocks := []int32{5, 2, 7}
	opt := Options{BlockSize: 4, NumBlocks: 8, Threads: 2}

	run := func(sizes ...int) []float32 {
		be := newBackend(t, p, l.ws.weights(p), opt)
		var all []float32
		at := 0
		for _, n := range sizes {
			step(t, be, makeBatch(chunk{blocks, int32(at), tokens[at : at+n]}))
			got, _ := output(t, be, "hidden")
			all = append(all, got...)
			at += n
		}
		return all
	}
	prefill := run(11)
	ones := make([]int, 11)
	for i := range ones {
		ones[i] = 1
	}
	for name, got := range map[string][]float32{"one token per step": run(ones...), "chunks 3+5+3": run(3, 5, 3)} {
		// Rows of few tokens take the matmul's row path, so the last bits may differ.
		if e := maxRel(got, f64s(prefill)); !tolerance.Within(t, e, 1e-6) {
			t.Errorf("%s vs prefill: max relative error %.3g", name, e)
		}
	}
	if e := maxRel(prefill, flat(l.reference(tokens))); !tolerance.Within(t, e, tol) {
		t.Errorf("prefill vs reference: max relative error %.3g > %g", e, tol)
	}
}

// TestBatchEqualsAlone checks that sequences batched together give what each
// gives alone, and that the thread count changes nothing.
func TestBatchEqualsAlone(t *testing.T) {
	l := newLayer()
	p := l.plan(t, ir.F32)
	a := randTokens(l.ws.rng, 8, l.V)
	c := randTokens(l.ws.rng, 10, l.V)
	ba, bc := []int32{6, 0, 2}, []int32{1, 3, 5}
	opt := Options{BlockSize: 4, NumBlocks: 8}

	run := func(threads int, steps ...*runtime.Batch) []float32 {
		o := opt
		o.Threads = threads
		be := newBackend(t, p, l.ws.weights(p), o)
		var all []float32
		for _, bt := range steps {
			step(t, be, bt)
			got, _ := output(t, be, "hidden")
			all = append(all, got...)
		}
		return all
	}
	together := run(3,
		makeBatch(chunk{ba, 0, a[:6]}, chunk{bc, 0, c[:7]}),
		makeBatch(chunk{ba, 6, a[6:7]}, chunk{bc, 7, c[7:9]}),
		makeBatch(chunk{bc, 9, c[9:]}, chunk{ba, 7, a[7:]}))
	aloneA := run(1, makeBatch(chunk{ba, 0, a[:6]}), makeBatch(chunk{ba, 6, a[6:7]}), makeBatch(chunk{ba, 7, a[7:]}))
	aloneC := run(1, makeBatch(chunk{bc, 0, c[:7]}), makeBatch(chunk{bc, 7, c[7:9]}), makeBatch(chunk{bc, 9, c[9:]}))

	H := l.H
	var want []float32
	want = append(want, aloneA[:6*H]...)
	want = append(want, aloneC[:7*H]...)
	want = append(want, aloneA[6*H:7*H]...)
	want = append(want, aloneC[7*H:9*H]...)
	want = append(want, aloneC[9*H:]...)
	want = append(want, aloneA[7*H:]...)
	if e := maxRel(together, f64s(want)); !tolerance.Within(t, e, 1e-6) {
		t.Errorf("batched vs alone: max relative error %.3g", e)
	}
	// Each output element is computed by one worker in a fixed order.
	again := run(1,
		makeBatch(chunk{ba, 0, a[:6]}, chunk{bc, 0, c[:7]}),
		makeBatch(chunk{ba, 6, a[6:7]}, chunk{bc, 7, c[7:9]}),
		makeBatch(chunk{bc, 9, c[9:]}, chunk{ba, 7, a[7:]}))
	for i := range again {
		if math.Float32bits(again[i]) != math.Float32bits(together[i]) {
			t.Fatalf("element %d: %v with 1 thread, %v with 3", i, again[i], together[i])
		}
	}
}

// TestLowPrecisionLayer runs the whole block with bf16 and f16 weights
// against their f32 upcast: identical through prefill and decode.
func TestLowPrecisionLayer(t *testing.T) {
	for _, dt := range []ir.DType{ir.BF16, ir.F16} {
		l := newLayer()
		pl, pu := l.plan(t, dt), l.plan(t, ir.F32)
		opt := Options{BlockSize: 4, NumBlocks: 8, Threads: 2}
		low, up := newBackend(t, pl, l.ws.weights(pl), opt), newBackend(t, pu, l.ws.weights(pu), opt)
		tokens := randTokens(l.ws.rng, 9, l.V)
		for _, bt := range []*runtime.Batch{makeBatch(chunk{[]int32{1, 0, 7}, 0, tokens[:8]}), makeBatch(chunk{[]int32{1, 0, 7}, 8, tokens[8:]})} {
			step(t, low, bt)
			step(t, up, bt)
			a, _ := output(t, low, "hidden")
			b, _ := output(t, up, "hidden")
			if e := maxRel(a, f64s(b)); e != 0 {
				t.Errorf("%v weights differ from their f32 upcast by %g", dt, e)
			}
		}
	}
}

// TestStepDoesNotAllocate checks the hot path, with an f32 and a bf16 KV
// cache.
func TestStepDoesNotAllocate(t *testing.T) {
	for _, kv := range []ir.DType{ir.F32, ir.BF16} {
		l := newLayer()
		p := l.planKV(t, ir.F32, kv)
		be := newBackend(t, p, l.ws.weights(p), Options{BlockSize: 4, NumBlocks: 8, Threads: 3})
		if got, want := int64(len(be.arena))*4, p.ArenaPerT*runtime.DefaultMaxStepTokens+p.ArenaFixed; got != want {
			t.Errorf("arena of %d bytes, want %d", got, want)
		}
		prefill := makeBatch(chunk{[]int32{2, 3, 4}, 0, randTokens(l.ws.rng, 9, l.V)})
		decode := makeBatch(chunk{[]int32{2, 3, 4}, 9, []int32{5}}, chunk{[]int32{0, 1}, 0, []int32{1, 2, 3}})
		for name, bt := range map[string]*runtime.Batch{"prefill": prefill, "decode": decode} {
			if n := testing.AllocsPerRun(20, func() {
				if err := be.Step(bt); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("%v kv cache, %s: Step allocates %v times", kv, name, n)
			}
		}
	}
}

// A paged cache in a dtype the backend does not store is an error at New.
func TestKVCacheDTypeRejected(t *testing.T) {
	l := newLayer()
	p := l.planKV(t, ir.F32, ir.F16)
	if _, err := New(p, l.ws.weights(p), Options{BlockSize: 4, NumBlocks: 8}); err == nil || !strings.Contains(err.Error(), "f32 or bf16") {
		t.Errorf("f16 kv cache: got %v", err)
	}
}

// TestBF16KVCache: a bf16 KV cache takes half the bytes of an f32 one, and
// the block through it equals the float64 reference whose cached k and v
// are rounded to bfloat16 (to the f32 bound, tol), through a prefill, a
// decode step of two sequences and one token at a time; the unrounded
// reference is further off, by the up-to-2^-8 relative rounding of k and v.
func TestBF16KVCache(t *testing.T) {
	l := newLayer()
	p32, p16 := l.planKV(t, ir.F32, ir.F32), l.planKV(t, ir.F32, ir.BF16)
	opt := Options{BlockSize: 4, NumBlocks: 8, Threads: 3}
	be32, be16 := newBackend(t, p32, l.ws.weights(p32), opt), newBackend(t, p16, l.ws.weights(p16), opt)
	want32 := int64(opt.NumBlocks*opt.BlockSize*l.Hkv*(l.D+l.Dv)) * 4
	if got := be32.caches[0].bytes(); got != want32 {
		t.Errorf("f32 cache: %d bytes, want %d", got, want32)
	}
	if got := be16.caches[0].bytes(); got != want32/2 || len(be16.caches[0].entries) != 0 {
		t.Errorf("bf16 cache: %d bytes (%d f32 entries), want %d", got, len(be16.caches[0].entries), want32/2)
	}

	a := randTokens(l.ws.rng, 9, l.V)
	c := randTokens(l.ws.rng, 6, l.V)
	ba, bc := []int32{3, 1, 4}, []int32{0, 6}
	ra, rc := l.referenceKV(a, true), l.referenceKV(c, true)
	step(t, be16, makeBatch(chunk{ba, 0, a[:7]}, chunk{bc, 0, c[:5]}))
	got, _ := output(t, be16, "hidden")
	if e := maxRel(got, flat(append(ra[:7:7], rc[:5]...))); !tolerance.Within(t, e, tol) {
		t.Errorf("prefill: max relative error %.3g > %g vs the bf16-rounded reference", e, tol)
	}
	unrounded := append(l.reference(a)[:7:7], l.reference(c)[:5]...)
	if e := maxRel(got, flat(unrounded)); e <= tol {
		t.Errorf("prefill: within %g of the unrounded reference (%.3g): is the cache rounding?", tol, e)
	}
	step(t, be16, makeBatch(chunk{ba, 7, a[7:9]}, chunk{bc, 5, c[5:6]}))
	got, _ = output(t, be16, "hidden")
	if e := maxRel(got, flat([][]float64{ra[7], ra[8], rc[5]})); !tolerance.Within(t, e, tol) {
		t.Errorf("decode: max relative error %.3g > %g", e, tol)
	}

	// One token per step through the bf16 cache gives the one-step prefill.
	one := newBackend(t, p16, l.ws.weights(p16), opt)
	var inc []float32
	for i := range a {
		step(t, one, makeBatch(chunk{ba, int32(i), a[i : i+1]}))
		o, _ := output(t, one, "hidden")
		inc = append(inc, o...)
	}
	if e := maxRel(inc, flat(ra)); !tolerance.Within(t, e, tol) {
		t.Errorf("one token per step: max relative error %.3g > %g", e, tol)
	}
}
