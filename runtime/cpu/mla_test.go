package cpu

import (
	"math"
	"testing"

	"github.com/inference-pio/pio/internal/tolerance"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime/cpu/kern"
)

// A tiny MLA block in absorbed form: q_lat = W_UKᵀ·q_nope per head,
// latent attention over (c_kv, k_rope), o = W_UV·o_lat per head.
type mlaGeom struct{ vocab, d, heads, dn, dr, dv, r int }

func mlaPlan(t *testing.T, ws *weightSet, g mlaGeom, dt ir.DType) *ir.Plan {
	return mlaPlanKV(t, ws, g, dt, ir.F32)
}

// mlaPlanKV is mlaPlan with a latent cache of dtype cdt.
func mlaPlanKV(t *testing.T, ws *weightSet, g mlaGeom, dt, cdt ir.DType) *ir.Plan {
	b := ir.NewBuilder("mla")
	tok := b.Input("tokens", ir.I32, ir.T)
	b.Input("positions", ir.I32, ir.T)
	x := b.Embedding(ws.add(b, "emb", ir.F32, 1, ir.Dim(g.vocab), ir.Dim(g.d)), tok)
	H := ir.Dim(g.heads)
	q := b.Reshape(b.MatMul(x, ws.add(b, "wq", dt, 0.3, H*ir.Dim(g.dn+g.dr), ir.Dim(g.d))), ir.T, H, ir.Dim(g.dn+g.dr))
	kv := b.MatMul(x, ws.add(b, "wkva", dt, 0.3, ir.Dim(g.r+g.dr), ir.Dim(g.d)))
	kvb := ws.add(b, "wkvb", dt, 0.3, H*ir.Dim(g.dn+g.dv), ir.Dim(g.r))
	qLat := b.HeadMatMul(b.Slice(q, 0, g.dn), kvb, 0, g.dn, true)
	c := b.Cache(ir.CacheSpec{Kind: ir.CacheLatent, DType: cdt, Entries: []ir.Shape{ir.Sh(ir.Dim(g.r)), ir.Sh(ir.Dim(g.dr))}})
	oLat := b.MLAAttention(qLat, b.Slice(q, g.dn, g.dr), b.Slice(kv, 0, g.r), b.Slice(kv, g.r, g.dr), c, 1/math.Sqrt(float64(g.dn+g.dr)))
	b.Output("o", b.HeadMatMul(oLat, kvb, g.dn, g.dv, false))
	return finish(t, b)
}

// mlaRef is the expanded form (what transformers computes): per head
// K = [W_UK·c_kv ‖ k_rope], V = W_UV·c_kv, causal softmax attention with
// q = [q_nope ‖ q_rope], in float64. It returns [T, heads, dv].
func mlaRef(ws *weightSet, g mlaGeom, toks []int32) []float64 { return mlaRefKV(ws, g, toks, false) }

// mlaRefKV is mlaRef with, when bf16, c_kv and k_rope rounded to bfloat16
// as a bf16 latent cache stores them.
func mlaRefKV(ws *weightSet, g mlaGeom, toks []int32, bf16 bool) []float64 {
	lin := func(w []float32, x []float64, rows, cols int) []float64 {
		y := make([]float64, rows)
		for i := range y {
			for c := 0; c < cols; c++ {
				y[i] += float64(w[i*cols+c]) * x[c]
			}
		}
		return y
	}
	T, qd, kd := len(toks), g.dn+g.dr, g.dn+g.dv
	var qs, ks, vs [][]float64 // [t·heads+h]
	for _, tok := range toks {
		x := f64s(ws.vals["emb"][int(tok)*g.d : int(tok+1)*g.d])
		q := lin(ws.vals["wq"], x, g.heads*qd, g.d)
		kv := lin(ws.vals["wkva"], x, g.r+g.dr, g.d)
		if bf16 {
			for c, v := range kv {
				kv[c] = float64(kern.BF16(ir.ToBF16(float32(v))))
			}
		}
		full := lin(ws.vals["wkvb"], kv[:g.r], g.heads*kd, g.r)
		for h := 0; h < g.heads; h++ {
			qs = append(qs, q[h*qd:(h+1)*qd])
			ks = append(ks, append(append([]float64(nil), full[h*kd:h*kd+g.dn]...), kv[g.r:]...))
			vs = append(vs, full[h*kd+g.dn:(h+1)*kd])
		}
	}
	scale := 1 / math.Sqrt(float64(qd))
	var out []float64
	for t := 0; t < T; t++ {
		for h := 0; h < g.heads; h++ {
			s := make([]float64, t+1)
			m := math.Inf(-1)
			for j := range s {
				for c := range qd {
					s[j] += qs[t*g.heads+h][c] * ks[j*g.heads+h][c]
				}
				s[j] *= scale
				m = max(m, s[j])
			}
			var sum float64
			for j := range s {
				s[j] = math.Exp(s[j] - m)
				sum += s[j]
			}
			o := make([]float64, g.dv)
			for j, p := range s {
				for c := range o {
					o[c] += p / sum * vs[j*g.heads+h][c]
				}
			}
			out = append(out, o...)
		}
	}
	return out
}

// The absorbed form through the latent cache equals the expanded reference,
// for one full step and for a prefill chunk followed by one-token steps
// (block size 4, so blocks are crossed).
func TestMLAAbsorbedEqualsExpanded(t *testing.T) {
	g := mlaGeom{vocab: 30, d: 32, heads: 3, dn: 12, dr: 8, dv: 10, r: 16}
	for _, dt := range []ir.DType{ir.F32, ir.BF16} {
		ws := newWeightSet(11)
		p := mlaPlan(t, ws, g, dt)
		be := newBackend(t, p, ws.weights(p), Options{MaxTokens: 16, NumBlocks: 8, BlockSize: 4, Threads: 2})
		toks := []int32{4, 9, 1, 28, 17, 5, 0, 13, 22, 7}
		want := mlaRef(ws, g, toks)
		blocks := []int32{5, 2, 7}
		step(t, be, makeBatch(chunk{blocks: blocks, tokens: toks}))
		full, _ := output(t, be, "o")
		if e := maxRel(full, want); !tolerance.Within(t, e, 1e-5) {
			t.Errorf("%v: full step: relative error %.3g", dt, e)
		}
		row := g.heads * g.dv
		step(t, be, makeBatch(chunk{blocks: blocks, tokens: toks[:6]}))
		got, _ := output(t, be, "o")
		for i := 6; i < len(toks); i++ {
			step(t, be, makeBatch(chunk{blocks: blocks, start: int32(i), tokens: toks[i : i+1]}))
			o, _ := output(t, be, "o")
			got = append(got, o...)
		}
		if e := maxRel(got, want); !tolerance.Within(t, e, 1e-5) {
			t.Errorf("%v: incremental: relative error %.3g", dt, e)
		}
		if e := maxRel(got[len(got)-row:], want[len(want)-row:]); !tolerance.Within(t, e, 1e-5) {
			t.Errorf("%v: last decode step: relative error %.3g", dt, e)
		}
	}
}

// The latent cache holds r + dr values per token whatever the head count.
func TestMLACacheIsLatent(t *testing.T) {
	g := mlaGeom{vocab: 30, d: 32, heads: 3, dn: 12, dr: 8, dv: 10, r: 16}
	ws := newWeightSet(2)
	p := mlaPlan(t, ws, g, ir.F32)
	be := newBackend(t, p, ws.weights(p), Options{MaxTokens: 8, NumBlocks: 8, BlockSize: 4, Threads: 1})
	if len(be.caches) != 1 {
		t.Fatalf("%d caches, want 1", len(be.caches))
	}
	c := be.caches[0]
	if got, want := len(c.entries[0])+len(c.entries[1]), 8*4*(g.r+g.dr); got != want {
		t.Errorf("latent cache holds %d values, want %d (positions × (r+dr))", got, want)
	}
}

// A plan whose mla_attention names a kv cache is rejected at New.
func TestMLAWrongCacheKind(t *testing.T) {
	g := mlaGeom{vocab: 30, d: 32, heads: 3, dn: 12, dr: 8, dv: 10, r: 16}
	ws := newWeightSet(2)
	p := mlaPlan(t, ws, g, ir.F32)
	p.Caches[0].Kind = ir.CacheKV
	if _, err := New(p, ws.weights(p), Options{MaxTokens: 8}); err == nil {
		t.Error("mla_attention over a kv cache accepted")
	}
}

// A bf16 latent cache holds half the bytes, and the absorbed form through
// it equals the expanded reference with c_kv and k_rope rounded to bf16,
// in one step and one token at a time.
func TestMLABF16Cache(t *testing.T) {
	g := mlaGeom{vocab: 30, d: 32, heads: 3, dn: 12, dr: 8, dv: 10, r: 16}
	ws := newWeightSet(11)
	p := mlaPlanKV(t, ws, g, ir.F32, ir.BF16)
	opt := Options{MaxTokens: 16, NumBlocks: 8, BlockSize: 4, Threads: 2}
	be := newBackend(t, p, ws.weights(p), opt)
	if got, want := be.caches[0].bytes(), int64(8*4*(g.r+g.dr)*2); got != want {
		t.Errorf("bf16 latent cache: %d bytes, want %d", got, want)
	}
	toks := []int32{4, 9, 1, 28, 17, 5, 0, 13, 22, 7}
	want := mlaRefKV(ws, g, toks, true)
	blocks := []int32{5, 2, 7}
	step(t, be, makeBatch(chunk{blocks: blocks, tokens: toks}))
	full, _ := output(t, be, "o")
	if e := maxRel(full, want); !tolerance.Within(t, e, 1e-5) {
		t.Errorf("full step: relative error %.3g vs the bf16-rounded reference", e)
	}
	if e := maxRel(full, mlaRef(ws, g, toks)); e <= 1e-5 {
		t.Errorf("full step: within 1e-5 of the unrounded reference (%.3g): is the cache rounding?", e)
	}
	one := newBackend(t, p, ws.weights(p), opt)
	var got []float32
	for i := range toks {
		step(t, one, makeBatch(chunk{blocks: blocks, start: int32(i), tokens: toks[i : i+1]}))
		o, _ := output(t, one, "o")
		got = append(got, o...)
	}
	if e := maxRel(got, want); !tolerance.Within(t, e, 1e-5) {
		t.Errorf("one token per step: relative error %.3g", e)
	}
}
