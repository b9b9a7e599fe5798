package cpu

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/inference-pio/pio/internal/tolerance"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/passes"
	"github.com/inference-pio/pio/runtime"
)

// blockOpts picks the variants of a decoder block the fused kernels must
// cover beyond Qwen3's own.
type blockOpts struct {
	dt         ir.DType
	unitOffset bool   // (1+w) norms
	style      string // rope style
	rotary     int    // rotary dims (< D: partial RoPE)
	dv         int    // value head dim (D when 0)
	qkNorm     bool
	gate       bool     // Qwen3-Next gated attention: q_proj rows per head [query | gate]
	kv         ir.DType // KV cache dtype (f32 when unset)
}

// fusedBlock builds one decoder block (attention with GQA, SwiGLU MLP,
// residuals, a final add+norm) with core ops. fuse runs the pass pipeline
// on it; for the gated variant, which no pass makes yet, it writes the
// qkv_attention{gate=1} step itself.
func fusedBlock(t *testing.T, ws *weightSet, o blockOpts, fuse bool) *ir.Plan {
	t.Helper()
	const V, H, Hq, Hkv, D, I = 29, 24, 4, 2, 8, 20
	dv := o.dv
	if dv == 0 {
		dv = D
	}
	dq := D
	if o.gate {
		dq = 2 * D
	}
	dt := o.dt
	b := ir.NewBuilder("block")
	tok := b.Input("tokens", ir.I32, ir.T)
	pos := b.Input("positions", ir.I32, ir.T)
	rows := b.Input("logit_rows", ir.I32, ir.S)
	sc := 1 / math.Sqrt(H)
	emb := ws.add(b, "emb", dt, 1, V, H)
	x := b.Embedding(emb, tok)
	n := b.RMSNorm(x, ws.add(b, "ln1", dt, 0.3, H), 1e-6, o.unitOffset)
	wq := ws.add(b, "p.q_proj.weight", dt, sc, ir.Dim(Hq*dq), H)
	wk := ws.add(b, "p.k_proj.weight", dt, sc, ir.Dim(Hkv*D), H)
	wv := ws.add(b, "p.v_proj.weight", dt, sc, ir.Dim(Hkv*dv), H)
	var qn, kn *ir.Value
	if o.qkNorm {
		qn, kn = ws.add(b, "qn", dt, 1, D), ws.add(b, "kn", dt, 1, D)
	}
	kv := o.kv
	if kv == ir.DInvalid {
		kv = ir.F32
	}
	c := b.Cache(ir.CacheSpec{Kind: ir.CacheKV, DType: kv, Entries: []ir.Shape{ir.Sh(Hkv, D), ir.Sh(Hkv, ir.Dim(dv))}})
	ro := ir.RoPEOpts{Theta: 10000, RotaryDims: o.rotary, Style: o.style}
	scale := 1 / math.Sqrt(D)
	var a *ir.Value
	if o.gate && fuse {
		qkv := b.Op(ir.OpFusedMatMul, []*ir.Value{x, b.Concat(0, "p.qkv", wq, wk, wv), n.Args[1]},
			ir.Int("norm", 1), ir.Float("eps", 1e-6), ir.Int("unit_offset", b2i(o.unitOffset)))
		args := []*ir.Value{qkv, pos}
		attrs := []ir.Attr{ir.Ints("heads", Hq, Hkv), ir.Int("head_dim", D), ir.Int("gate", 1),
			ir.Float("theta", ro.Theta), ir.Int("rotary_dims", int64(ro.RotaryDims)), ir.Str("style", ro.Style),
			ir.Int("cache", int64(c)), ir.Float("scale", scale)}
		if o.qkNorm {
			args = append(args, qn, kn)
			attrs = append(attrs, ir.Float("eps", 1e-6), ir.Int("unit_offset", b2i(o.unitOffset)))
		}
		a = b.Op(ir.OpQKVAttention, args, attrs...)
	} else {
		q := b.Reshape(b.MatMul(n, wq), ir.T, Hq, ir.Dim(dq))
		var g *ir.Value
		if o.gate {
			g = b.Op(ir.OpSection, []*ir.Value{q}, ir.Int("start", D), ir.Int("size", D))
			q = b.Op(ir.OpSection, []*ir.Value{q}, ir.Int("start", 0), ir.Int("size", D))
		}
		k := b.Reshape(b.MatMul(n, wk), ir.T, Hkv, D)
		v := b.Reshape(b.MatMul(n, wv), ir.T, Hkv, ir.Dim(dv))
		if o.qkNorm {
			q, k = b.RMSNorm(q, qn, 1e-6, o.unitOffset), b.RMSNorm(k, kn, 1e-6, o.unitOffset)
		}
		a = b.Attention(b.RoPE(q, pos, ro), b.RoPE(k, pos, ro), v, c, scale)
		if o.gate {
			a = b.Mul(a, b.Sigmoid(g))
		}
	}
	h := b.Add(x, b.MatMul(b.Reshape(a, ir.T, ir.Dim(Hq*dv)), ws.add(b, "wo", dt, sc, H, ir.Dim(Hq*dv))))
	m := b.RMSNorm(h, ws.add(b, "ln2", dt, 0.3, H), 1e-6, o.unitOffset)
	gate := b.MatMul(m, ws.add(b, "mlp.gate.weight", dt, sc, I, H))
	up := b.MatMul(m, ws.add(b, "mlp.up.weight", dt, sc, I, H))
	h = b.Add(h, b.MatMul(b.Mul(b.SiLU(gate), up), ws.add(b, "mlp.down.weight", dt, 1/math.Sqrt(I), H, I)))
	fin := b.RMSNorm(b.Add(h, x), ws.add(b, "lnf", dt, 0.3, H), 1e-5, o.unitOffset)
	b.Output("hidden", fin)
	b.Output("logits", b.MatMul(b.GatherRows(fin, rows), emb))
	g, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	opt := passes.Options{Check: true, NoFuse: !fuse}
	if err := passes.Run(g, opt); err != nil {
		t.Fatal(err)
	}
	p, err := passes.Lower(g)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// planWeights is weightSet.weights with build-time concats (axis 0)
// assembled from their parts, as the compiler does.
func planWeights(ws *weightSet, p *ir.Plan) []Weight {
	var vals func(t ir.PlanTensor) []float32
	vals = func(t ir.PlanTensor) []float32 {
		if t.Recipe == nil {
			return ws.vals[t.Name]
		}
		var out []float32
		for _, part := range t.Recipe.Parts {
			out = append(out, vals(part)...)
		}
		return out
	}
	out := make([]Weight, len(p.Weights))
	for i, pw := range p.Weights {
		shape := make([]int64, len(pw.Shape))
		for j, d := range pw.Shape {
			shape[j] = int64(d)
		}
		out[i] = Weight{DType: pw.DType, Shape: shape, Data: encode(pw.DType, vals(pw))}
	}
	return out
}

// Every fused kernel gives what the core ops it replaces give: a decoder
// block built both ways runs a two-sequence prefill and then decode steps
// (block size 4, so blocks are crossed), and every output of every step
// agrees within 1e-5 relative.
func TestFusedKernelsMatchUnfused(t *testing.T) {
	for _, o := range []blockOpts{
		{dt: ir.F32, style: "neox", rotary: 8, qkNorm: true},
		{dt: ir.BF16, style: "neox", rotary: 8, qkNorm: true},
		{dt: ir.F32, style: "interleaved", rotary: 4, dv: 6, unitOffset: true},
		{dt: ir.F32, style: "neox", rotary: 4, qkNorm: true, gate: true, unitOffset: true},
		{dt: ir.BF16, style: "interleaved", rotary: 8, gate: true},
		{dt: ir.BF16, style: "neox", rotary: 8, qkNorm: true, kv: ir.BF16},
		{dt: ir.F32, style: "interleaved", rotary: 4, dv: 6, kv: ir.BF16},
		{dt: ir.BF16, style: "neox", rotary: 4, qkNorm: true, gate: true, kv: ir.BF16},
	} {
		t.Run(fmt.Sprintf("%+v", o), func(t *testing.T) {
			ws := newWeightSet(7)
			fp, up := fusedBlock(t, ws, o, true), fusedBlock(t, ws, o, false)
			ops := map[ir.Op]bool{}
			for _, s := range fp.Steps {
				ops[s.Op] = true
			}
			for _, op := range []ir.Op{ir.OpFusedMatMul, ir.OpQKVAttention, ir.OpAddRMSNorm} {
				if !ops[op] {
					t.Errorf("fused plan has no %v step:\n%s", op, ir.PrintPlan(fp))
				}
			}
			if ops[ir.OpAttention] || ops[ir.OpRoPE] || ops[ir.OpRMSNorm] || ops[ir.OpAdd] || ops[ir.OpSiLU] || ops[ir.OpMul] {
				t.Errorf("fused plan kept unfused steps:\n%s", ir.PrintPlan(fp))
			}
			opt := Options{BlockSize: 4, NumBlocks: 16, Threads: 2, MaxTokens: 32}
			fused, plain := newBackend(t, fp, planWeights(ws, fp), opt), newBackend(t, up, planWeights(ws, up), opt)
			a, c := randTokens(ws.rng, 9, 29), randTokens(ws.rng, 6, 29)
			batches := []struct {
				a, c []int32
				at   int32
			}{{a[:7], c[:4], 0}, {a[7:8], c[4:5], 0}, {a[8:9], c[5:6], 0}}
			posA, posC := int32(0), int32(0)
			for si, bt := range batches {
				batch := makeBatch(chunk{[]int32{3, 9, 1}, posA, bt.a}, chunk{[]int32{4, 0}, posC, bt.c})
				posA += int32(len(bt.a))
				posC += int32(len(bt.c))
				step(t, fused, batch)
				step(t, plain, batch)
				for _, name := range []string{"hidden", "logits"} {
					got, gs := output(t, fused, name)
					want, wsh := output(t, plain, name)
					if !slices.Equal(gs, wsh) {
						t.Fatalf("step %d %s: shape %v vs %v", si, name, gs, wsh)
					}
					if e := maxRel(got, f64s(want)); !tolerance.Within(t, e, 1e-5) {
						t.Errorf("step %d %s: fused vs unfused max relative error %.3g", si, name, e)
					}
				}
			}
		})
	}
}

// A section copies its range of the last dim, for any rank.
func TestSection(t *testing.T) {
	b := ir.NewBuilder("s")
	tok := b.Input("tokens", ir.I32, ir.T)
	ws := newWeightSet(3)
	x := b.Reshape(b.Embedding(ws.add(b, "emb", ir.F32, 1, 5, 12), tok), ir.T, 2, 6)
	b.Output("y", b.Op(ir.OpSection, []*ir.Value{x}, ir.Int("start", 1), ir.Int("size", 3)))
	p := finish(t, b)
	be := newBackend(t, p, ws.weights(p), Options{Threads: 1})
	step(t, be, makeBatch(chunk{nil, 0, []int32{4, 0}}))
	got, shape := output(t, be, "y")
	emb := ws.vals["emb"]
	var want []float32
	for _, id := range []int{4, 0} {
		for h := 0; h < 2; h++ {
			want = append(want, emb[id*12+h*6+1:id*12+h*6+4]...)
		}
	}
	if !slices.Equal(shape, []int{2, 2, 3}) || !slices.Equal(got, want) {
		t.Errorf("got %v %v, want [2 2 3] %v", shape, got, want)
	}
}

// The routed MoE step gives what router matmul, router_topk,
// router_weights and moe give as separate steps.
func TestMoERoutedMatchesUnfused(t *testing.T) {
	const V, H, E, I = 29, 16, 6, 8
	for _, tc := range []struct {
		dt    ir.DType
		attrs []ir.Attr
		bias  bool
	}{
		{ir.F32, []ir.Attr{ir.Int("k", 2), ir.Str("scoring", "softmax"), ir.Int("normalize", 1)}, false},
		{ir.BF16, []ir.Attr{ir.Int("k", 3), ir.Str("scoring", "sigmoid"), ir.Int("normalize", 1), ir.Float("scale", 1.8)}, true},
	} {
		t.Run(fmt.Sprintf("%v/bias=%v", tc.dt, tc.bias), func(t *testing.T) {
			ws := newWeightSet(5)
			plan := func(fuse bool) *ir.Plan {
				b := ir.NewBuilder("moe")
				tok := b.Input("tokens", ir.I32, ir.T)
				x := b.Embedding(ws.add(b, "emb", tc.dt, 1, V, H), tok)
				n := b.RMSNorm(x, ws.add(b, "ln", tc.dt, 0.3, H), 1e-6, false)
				l := b.MatMul(n, ws.add(b, "router", tc.dt, 0.5, E, H))
				targs := []*ir.Value{l}
				if tc.bias {
					targs = append(targs, ws.add(b, "bias", tc.dt, 0.1, E))
				}
				ids := b.Op(ir.OpRouterTopK, targs, tc.attrs[:2]...)
				w := b.Op(ir.OpRouterWeights, []*ir.Value{l, ids}, tc.attrs[1:]...)
				y := b.Op(ir.OpMoE, []*ir.Value{n, ids, w, ws.add(b, "gu", tc.dt, 0.3, E*2*I, H), ws.add(b, "down", tc.dt, 0.3, E*H, I)}, ir.Int("experts", E))
				b.Output("y", b.Add(x, y))
				g, err := b.Finish()
				if err != nil {
					t.Fatal(err)
				}
				if err := passes.Run(g, passes.Options{Check: true, NoFuse: !fuse}); err != nil {
					t.Fatal(err)
				}
				p, err := passes.Lower(g)
				if err != nil {
					t.Fatal(err)
				}
				return p
			}
			fp, up := plan(true), plan(false)
			// embedding, then moe_routed with the norm in its prologue and the
			// residual add in its epilogue.
			if len(fp.Steps) != 2 || fp.Steps[1].Op != ir.OpMoERouted || !fp.Steps[1].Attr().Bool("norm") || !fp.Steps[1].Attr().Bool("residual") {
				t.Fatalf("want embedding and moe_routed{norm=1, residual=1}:\n%s", ir.PrintPlan(fp))
			}
			opt := Options{Threads: 2, MaxTokens: 16}
			fused, plain := newBackend(t, fp, planWeights(ws, fp), opt), newBackend(t, up, planWeights(ws, up), opt)
			for _, n := range []int{9, 1} {
				bt := makeBatch(chunk{nil, 0, randTokens(ws.rng, n, V)})
				step(t, fused, bt)
				step(t, plain, bt)
				got, _ := output(t, fused, "y")
				want, _ := output(t, plain, "y")
				if e := maxRel(got, f64s(want)); !tolerance.Within(t, e, 1e-5) {
					t.Errorf("%d tokens: fused vs unfused max relative error %.3g", n, e)
				}
				if a := testing.AllocsPerRun(5, func() { step(t, fused, bt) }); a != 0 {
					t.Errorf("%d tokens: moe_routed step allocates %v times", n, a)
				}
			}
		})
	}
}

// Steps of fused plans allocate nothing either (bf16 KV cache: the k heads
// go through per-worker scratch).
func TestFusedStepDoesNotAllocate(t *testing.T) {
	ws := newWeightSet(9)
	o := blockOpts{dt: ir.BF16, style: "neox", rotary: 8, qkNorm: true, kv: ir.BF16}
	p := fusedBlock(t, ws, o, true)
	be := newBackend(t, p, planWeights(ws, p), Options{BlockSize: 4, NumBlocks: 16, Threads: 3, MaxTokens: 32})
	prefill := makeBatch(chunk{[]int32{2, 3, 4}, 0, randTokens(ws.rng, 9, 29)})
	decode := makeBatch(chunk{[]int32{2, 3, 4}, 9, []int32{5}}, chunk{[]int32{0, 1}, 0, []int32{1, 2, 3}})
	for name, bt := range map[string]*runtime.Batch{"prefill": prefill, "decode": decode} {
		if n := testing.AllocsPerRun(20, func() {
			if err := be.Step(bt); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: Step allocates %v times", name, n)
		}
	}
}
