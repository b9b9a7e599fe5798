package cpu

import (
	"math"
	"strings"
	"testing"

	"github.com/inference-pio/pio/internal/tolerance"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
)

// A small DeltaNet mixer: tokens -> embedding x [T, 16] -> conv1d_causal
// (silu) over x; q, k [T, 2, 8], v [T, 4, 6], g, beta [T, 4] from
// projections of x -> gated_delta_rule. Every intermediate is an output, so
// the test recomputes the op from exactly the values the kernel read.
const (
	dnVocab, dnHidden      = 50, 16
	dnHk, dnHv, dnDk, dnDv = 2, 4, 8, 6
	dnConvK                = 4
)

func deltaNetPlan(t testing.TB, chunk int) (*ir.Plan, []Weight) {
	ws := newWeightSet(7)
	b := ir.NewBuilder("deltanet")
	tok := b.Input("tokens", ir.I32, ir.T)
	x := b.Embedding(ws.add(b, "embed", ir.F32, 1, dnVocab, dnHidden), tok)
	conv := b.Cache(ir.CacheSpec{Kind: ir.CacheState, DType: ir.F32, Entries: []ir.Shape{ir.Sh(dnHidden, dnConvK-1)}})
	rec := b.Cache(ir.CacheSpec{Kind: ir.CacheState, DType: ir.F32, Entries: []ir.Shape{ir.Sh(dnHv, dnDk, dnDv)}})
	c := b.Conv1DCausal(x, ws.add(b, "conv", ir.BF16, 0.5, dnHidden, 1, dnConvK), conv, true)
	q := b.Reshape(b.MatMul(x, ws.add(b, "wq", ir.F32, 0.3, dnHk*dnDk, dnHidden)), ir.T, dnHk, dnDk)
	k := b.Reshape(b.MatMul(x, ws.add(b, "wk", ir.F32, 0.3, dnHk*dnDk, dnHidden)), ir.T, dnHk, dnDk)
	v := b.Reshape(b.MatMul(x, ws.add(b, "wv", ir.F32, 0.3, dnHv*dnDv, dnHidden)), ir.T, dnHv, dnDv)
	a := b.MatMul(x, ws.add(b, "wa", ir.F32, 0.3, dnHv, dnHidden))
	g := b.DeltaNetDecay(a, ws.add(b, "A_log", ir.F32, 1, dnHv), ws.add(b, "dt_bias", ir.F32, 1, dnHv))
	beta := b.Sigmoid(b.MatMul(x, ws.add(b, "wb", ir.F32, 1, dnHv, dnHidden)))
	o := b.GatedDeltaRule(q, k, v, g, beta, rec, ir.DeltaRuleOpts{Scale: 1 / math.Sqrt(dnDk), L2Norm: true, Chunk: chunk})
	for _, out := range []struct {
		name string
		v    *ir.Value
	}{{"x", x}, {"conv", c}, {"q", q}, {"k", k}, {"v", v}, {"a", a}, {"g", g}, {"beta", beta}, {"o", o}} {
		b.Output(out.name, out.v)
	}
	p := finish(t, b)
	return p, ws.weights(p)
}

// refState is one sequence's f64 reference state.
type refState struct {
	conv [dnHidden][dnConvK - 1]float64
	s    [dnHv][dnDk][dnDv]float64
}

// step runs the reference over one run of T tokens from the backend's
// outputs and returns the expected conv and delta-rule outputs.
func (st *refState) step(t *testing.T, be *Backend, cw []float32) (conv, o []float64) {
	x, _ := output(t, be, "x")
	q, _ := output(t, be, "q")
	k, _ := output(t, be, "k")
	v, _ := output(t, be, "v")
	g, _ := output(t, be, "g")
	beta, _ := output(t, be, "beta")
	T := len(x) / dnHidden
	for tt := 0; tt < T; tt++ {
		for ch := 0; ch < dnHidden; ch++ {
			win := append(st.conv[ch][:], float64(x[tt*dnHidden+ch]))
			var acc float64
			for j := 0; j < dnConvK; j++ {
				acc += float64(cw[ch*dnConvK+j]) * win[j]
			}
			conv = append(conv, acc/(1+math.Exp(-acc)))
			copy(st.conv[ch][:], win[1:])
		}
	}
	norm := func(x []float32) []float64 {
		var ss float64
		for _, v := range x {
			ss += float64(v) * float64(v)
		}
		out := make([]float64, len(x))
		for i, v := range x {
			out[i] = float64(v) / math.Sqrt(ss+1e-6)
		}
		return out
	}
	o = make([]float64, T*dnHv*dnDv)
	for tt := 0; tt < T; tt++ {
		for h := 0; h < dnHv; h++ {
			kh := h / (dnHv / dnHk)
			qn := norm(q[(tt*dnHk+kh)*dnDk : (tt*dnHk+kh+1)*dnDk])
			kn := norm(k[(tt*dnHk+kh)*dnDk : (tt*dnHk+kh+1)*dnDk])
			vv := v[(tt*dnHv+h)*dnDv : (tt*dnHv+h+1)*dnDv]
			d, bb := math.Exp(float64(g[tt*dnHv+h])), float64(beta[tt*dnHv+h])
			S := &st.s[h]
			var delta [dnDv]float64
			for i := range dnDk {
				for j := range dnDv {
					S[i][j] *= d
					delta[j] += S[i][j] * kn[i]
				}
			}
			for j := range dnDv {
				delta[j] = (float64(vv[j]) - delta[j]) * bb
			}
			for i := range dnDk {
				for j := range dnDv {
					S[i][j] += kn[i] * delta[j]
					o[(tt*dnHv+h)*dnDv+j] += S[i][j] * qn[i] / math.Sqrt(dnDk)
				}
			}
		}
	}
	return conv, o
}

// weightF32 decodes the plan weight called name.
func weightF32(p *ir.Plan, w []Weight, name string) []float32 {
	for i, pw := range p.Weights {
		if pw.Name != name {
			continue
		}
		if pw.DType == ir.BF16 {
			out := make([]float32, len(w[i].Data)/2)
			decodeBF16(out, viewU16(w[i].Data))
			return out
		}
		return viewF32(w[i].Data)
	}
	panic("no weight " + name)
}

func oneSeq(start int32, tokens []int32, slot int32) *runtime.Batch {
	bt := makeBatch(chunk{start: start, tokens: tokens})
	bt.Seqs[0].Slot = slot
	return bt
}

func seqTokens(n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32((i*37 + 11) % dnVocab)
	}
	return out
}

// The chunked form (runs of more than one token, crossing chunk boundaries)
// and the recurrent form (one-token steps) both match an f64 recurrence, and
// the state carries across steps of any size.
func TestGatedDeltaRuleMatchesRecurrence(t *testing.T) {
	for _, chunkLen := range []int{64, 5} {
		p, w := deltaNetPlan(t, chunkLen)
		be := newBackend(t, p, w, Options{MaxTokens: 160, MaxSeqs: 2, Threads: 2})
		toks := seqTokens(150)
		var ref refState
		cw := weightF32(p, w, "conv")
		pos := 0
		for _, n := range []int{130, 1, 1, 7, 1, 10} { // one run over two chunk boundaries, then decode and short runs
			step(t, be, oneSeq(int32(pos), toks[pos:pos+n], 1))
			wantConv, wantO := ref.step(t, be, cw)
			gotConv, _ := output(t, be, "conv")
			gotO, _ := output(t, be, "o")
			if e := maxRel(gotConv, wantConv); !tolerance.Within(t, e, 1e-5) {
				t.Errorf("chunk %d, run of %d at %d: conv relative error %.3g", chunkLen, n, pos, e)
			}
			if e := maxRel(gotO, wantO); !tolerance.Within(t, e, 2e-5) {
				t.Errorf("chunk %d, run of %d at %d: delta rule relative error %.3g", chunkLen, n, pos, e)
			}
			pos += n
		}
	}
}

// The decay gate is −exp(A_log)·softplus(a + dt_bias), with softplus's
// linear branch above 20.
func TestDeltaNetDecay(t *testing.T) {
	p, w := deltaNetPlan(t, 64)
	be := newBackend(t, p, w, Options{MaxTokens: 16, MaxSeqs: 1, Threads: 1})
	step(t, be, oneSeq(0, seqTokens(9), 0))
	a, _ := output(t, be, "a")
	g, _ := output(t, be, "g")
	alog, dtb := weightF32(p, w, "A_log"), weightF32(p, w, "dt_bias")
	want := make([]float64, len(a))
	for i, av := range a {
		x := float64(av + dtb[i%dnHv])
		want[i] = -math.Exp(float64(alog[i%dnHv])) * math.Log1p(math.Exp(x))
	}
	if e := maxRel(g, want); !tolerance.Within(t, e, 1e-6) {
		t.Errorf("decay relative error %.3g", e)
	}
}

// A run that starts at position 0 ignores whatever its slot held; two
// sequences of different lengths in one step equal each run alone.
func TestDeltaNetSlots(t *testing.T) {
	p, w := deltaNetPlan(t, 64)
	alone := func(tokens []int32) []float32 {
		be := newBackend(t, p, w, Options{MaxTokens: 160, MaxSeqs: 2, Threads: 2})
		step(t, be, oneSeq(0, tokens, 0))
		o, _ := output(t, be, "o")
		return o
	}
	a, bTok := seqTokens(90), seqTokens(20)[3:]
	wantA, wantB := alone(a), alone(bTok)

	be := newBackend(t, p, w, Options{MaxTokens: 160, MaxSeqs: 2, Threads: 2})
	step(t, be, oneSeq(0, seqTokens(40), 1)) // dirty slot 1
	bt := makeBatch(chunk{tokens: bTok}, chunk{tokens: a})
	bt.Seqs[0].Slot, bt.Seqs[1].Slot = 1, 0
	step(t, be, bt)
	o, _ := output(t, be, "o")
	nb := len(bTok) * dnHv * dnDv
	if e := maxRel(o[:nb], f64s(wantB)); !tolerance.Within(t, e, 1e-6) {
		t.Errorf("sequence in a reused slot: relative error %.3g", e)
	}
	if e := maxRel(o[nb:], f64s(wantA)); !tolerance.Within(t, e, 1e-6) {
		t.Errorf("batched with another sequence: relative error %.3g", e)
	}
}

// A state cache of the wrong shape is refused when the backend is built.
func TestDeltaNetBadCache(t *testing.T) {
	ws := newWeightSet(1)
	b := ir.NewBuilder("bad")
	x := b.Embedding(ws.add(b, "embed", ir.F32, 1, 10, 8), b.Input("tokens", ir.I32, ir.T))
	c := b.Cache(ir.CacheSpec{Kind: ir.CacheState, DType: ir.F32, Entries: []ir.Shape{ir.Sh(8, 4)}})
	b.Output("y", b.Conv1DCausal(x, ws.add(b, "w", ir.F32, 1, 8, 4), c, false))
	p := finish(t, b)
	_, err := New(p, ws.weights(p), Options{MaxTokens: 4})
	if err == nil || !strings.Contains(err.Error(), "is not a state cache of one entry [8, 3]") {
		t.Errorf("got %v, want a cache shape error", err)
	}
}

// A sequence may continue at position p > 0 only from the slot holding its
// state after p positions: a prefix reused without its state (the prefix
// cache's blocks alone) or the wrong slot is an error, and the state is
// left as it was.
func TestDeltaNetStateContinuity(t *testing.T) {
	p, w := deltaNetPlan(t, 64)
	be := newBackend(t, p, w, Options{MaxTokens: 64, MaxSeqs: 2, Threads: 1})
	toks := seqTokens(30)
	if err := be.Step(oneSeq(10, toks[10:20], 0)); err == nil || !strings.Contains(err.Error(), "holds no state") {
		t.Errorf("prefix without state: got %v", err)
	}
	step(t, be, oneSeq(0, toks[:10], 0))
	if err := be.Step(oneSeq(12, toks[12:20], 0)); err == nil || !strings.Contains(err.Error(), "holds the state after 10 positions") {
		t.Errorf("gap: got %v", err)
	}
	if err := be.Step(oneSeq(10, toks[10:20], 1)); err == nil || !strings.Contains(err.Error(), "slot 1") {
		t.Errorf("wrong slot: got %v", err)
	}
	// The failed steps left slot 0 intact: continuing matches one run.
	step(t, be, oneSeq(10, toks[10:20], 0))
	got, _ := output(t, be, "o")
	step(t, be, oneSeq(0, toks[:20], 1))
	want, _ := output(t, be, "o")
	if e := maxRel(got, f64s(want[10*dnHv*dnDv:])); !tolerance.Within(t, e, 1e-5) {
		t.Errorf("continuation after rejected steps: relative error %.3g", e)
	}
}
