package cpu

import (
	"math"
	"slices"
	"sort"
	"testing"

	"github.com/inference-pio/pio/internal/tolerance"
	"github.com/inference-pio/pio/ir"
)

// moeGraph: tokens -> x = embedding -> router logits -> top-k -> moe, with
// the ids, weights and result as outputs.
type moeGeom struct {
	vocab, h, inter, e, k int
	scoring               string
	normalize, bias       bool
	scale                 float64
	fused                 bool // 3-D expert weights
}

func moePlan(t *testing.T, ws *weightSet, g moeGeom, dt ir.DType) *ir.Plan {
	b := ir.NewBuilder("moe")
	tok := b.Input("tokens", ir.I32, ir.T)
	b.Input("positions", ir.I32, ir.T)
	x := b.Embedding(ws.add(b, "emb", ir.F32, 1, ir.Dim(g.vocab), ir.Dim(g.h)), tok)
	logits := b.MatMul(x, ws.add(b, "gate", dt, 0.5, ir.Dim(g.e), ir.Dim(g.h)))
	var bias *ir.Value
	if g.bias {
		bias = ws.add(b, "bias", ir.F32, 0.3, ir.Dim(g.e))
	}
	ids, w := b.Router(logits, bias, ir.RouterOpts{K: g.k, Scoring: g.scoring, Normalize: g.normalize, Scale: g.scale})
	var gu, down *ir.Value
	if g.fused {
		gu = ws.add(b, "gu", dt, 0.3, ir.Dim(g.e), ir.Dim(2*g.inter), ir.Dim(g.h))
		down = ws.add(b, "down", dt, 0.3, ir.Dim(g.e), ir.Dim(g.h), ir.Dim(g.inter))
	} else {
		gu = ws.add(b, "gu", dt, 0.3, ir.Dim(g.e*2*g.inter), ir.Dim(g.h))
		down = ws.add(b, "down", dt, 0.3, ir.Dim(g.e*g.h), ir.Dim(g.inter))
	}
	b.Output("logits", logits)
	b.Output("ids", ids)
	b.Output("w", w)
	b.Output("y", b.MoE(x, ids, w, gu, down, g.e))
	return finish(t, b)
}

// moeRef computes the routing and the experts in float64 from the test's
// weights, for one token's x and logits.
func moeRef(ws *weightSet, g moeGeom, x, logits []float32) (ids []int, w []float64, y []float64) {
	e := g.e
	score := make([]float64, e)
	if g.scoring == "softmax" {
		m := math.Inf(-1)
		for _, v := range logits {
			m = max(m, float64(v))
		}
		var sum float64
		for i, v := range logits {
			score[i] = math.Exp(float64(v) - m)
			sum += score[i]
		}
		for i := range score {
			score[i] /= sum
		}
	} else {
		for i, v := range logits {
			score[i] = 1 / (1 + math.Exp(-float64(v)))
		}
	}
	sel := slices.Clone(score)
	if g.bias {
		for i := range sel {
			sel[i] += float64(ws.vals["bias"][i])
		}
	}
	order := make([]int, e)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return sel[order[a]] > sel[order[b]] })
	ids = order[:g.k]
	var sum float64
	for _, id := range ids {
		w = append(w, score[id])
		sum += score[id]
	}
	for j := range w {
		if g.normalize {
			w[j] /= sum
		}
		if g.scale != 0 {
			w[j] *= g.scale
		}
	}
	y = make([]float64, g.h)
	gu, down := ws.vals["gu"], ws.vals["down"]
	for j, id := range ids {
		act := make([]float64, g.inter)
		for i := range act {
			var gs, us float64
			for c := 0; c < g.h; c++ {
				gs += float64(gu[(id*2*g.inter+i)*g.h+c]) * float64(x[c])
				us += float64(gu[(id*2*g.inter+g.inter+i)*g.h+c]) * float64(x[c])
			}
			act[i] = gs / (1 + math.Exp(-gs)) * us
		}
		for r := 0; r < g.h; r++ {
			var s float64
			for i, a := range act {
				s += float64(down[(id*g.h+r)*g.inter+i]) * a
			}
			y[r] += w[j] * s
		}
	}
	return ids, w, y
}

func TestMoEAgainstReference(t *testing.T) {
	for _, tc := range []struct {
		name string
		g    moeGeom
		dt   ir.DType
	}{
		{"softmax/renormalised (Qwen3-MoE)", moeGeom{vocab: 40, h: 24, inter: 20, e: 8, k: 3, scoring: "softmax", normalize: true}, ir.F32},
		{"sigmoid/bias/scale (GLM)", moeGeom{vocab: 40, h: 24, inter: 20, e: 8, k: 2, scoring: "sigmoid", normalize: true, bias: true, scale: 1.8}, ir.BF16},
		{"softmax/fused 3-D/no normalize", moeGeom{vocab: 40, h: 24, inter: 36, e: 5, k: 2, scoring: "softmax", fused: true}, ir.BF16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := newWeightSet(7)
			p := moePlan(t, ws, tc.g, tc.dt)
			be := newBackend(t, p, ws.weights(p), Options{MaxTokens: 16, NumBlocks: 4, BlockSize: 4, Threads: 2})
			toks := []int32{3, 17, 5, 39, 0, 22, 11}
			step(t, be, makeBatch(chunk{blocks: []int32{0, 1}, tokens: toks}))
			ids, _ := output(t, be, "ids")
			wts, _ := output(t, be, "w")
			y, _ := output(t, be, "y")
			logits, _ := output(t, be, "logits")
			emb := ws.vals["emb"]
			var wantY []float64
			for i, tok := range toks {
				x := emb[int(tok)*tc.g.h : int(tok+1)*tc.g.h]
				rid, rw, ry := moeRef(ws, tc.g, x, logits[i*tc.g.e:(i+1)*tc.g.e])
				for j := range rid {
					if int(ids[i*tc.g.k+j]) != rid[j] {
						t.Errorf("token %d: ids %v, want %v", i, ids[i*tc.g.k:(i+1)*tc.g.k], rid)
						break
					}
				}
				if e := maxRel(wts[i*tc.g.k:(i+1)*tc.g.k], rw); !tolerance.Within(t, e, 1e-6) {
					t.Errorf("token %d: weights %v, want %v", i, wts[i*tc.g.k:(i+1)*tc.g.k], rw)
				}
				wantY = append(wantY, ry...)
			}
			if e := maxRel(y, wantY); !tolerance.Within(t, e, 1e-5) {
				t.Errorf("moe output: relative error %.3g", e)
			}
		})
	}
}

// An expert no token chose costs nothing: a one-token step schedules work
// for exactly its k experts.
func TestMoESkipsIdleExperts(t *testing.T) {
	g := moeGeom{vocab: 40, h: 24, inter: 20, e: 16, k: 2, scoring: "softmax", normalize: true}
	ws := newWeightSet(3)
	p := moePlan(t, ws, g, ir.BF16)
	be := newBackend(t, p, ws.weights(p), Options{MaxTokens: 8, NumBlocks: 4, BlockSize: 4, Threads: 1})
	step(t, be, makeBatch(chunk{blocks: []int32{0}, tokens: []int32{9}}))
	var k *moeK
	for _, kk := range be.kernels {
		if m, ok := kk.(*moeK); ok {
			k = m
		}
	}
	if k == nil {
		t.Fatal("no moe kernel")
	}
	downTiles := (g.h + moeTile - 1) / moeTile
	if len(k.items) != g.k*downTiles { // the last phase's items
		t.Errorf("down phase scheduled %d tiles, want %d (%d experts × %d tiles)", len(k.items), g.k*downTiles, g.k, downTiles)
	}
	hit := 0
	for e := 0; e < g.e; e++ {
		if k.start[e+1] > k.start[e] {
			hit++
		}
	}
	if hit != g.k {
		t.Errorf("%d experts hit, want %d", hit, g.k)
	}
}

// Ties in the selection score go to the lower expert index, and the chosen
// ids come in decreasing score order.
func TestRouterTopKTies(t *testing.T) {
	k := &routerTopKK{e: 6, k: 3, logits: tensor{f32: []float32{1, 3, 3, 0, 3, 2}}, ids: make([]int32, 3),
		score: make([]float32, 6), taken: make([]bool, 6)}
	if err := k.exec(&Backend{t: 1}); err != nil {
		t.Fatal(err)
	}
	if want := []int32{1, 2, 4}; !slices.Equal(k.ids, want) {
		t.Errorf("ids %v, want %v", k.ids, want)
	}
	k.bias = []float32{0, 0, 0, 0, 0, 0.5}
	k.softmax = false
	k.logits.f32 = []float32{0, 1, 2, 3, 4, 0}
	if err := k.exec(&Backend{t: 1}); err != nil {
		t.Fatal(err)
	}
	// Selection scores: sigmoid(0)+0.5 = 1.0 > sigmoid(4) ≈ 0.982 > sigmoid(3) ≈ 0.953.
	if want := []int32{5, 4, 3}; !slices.Equal(k.ids, want) {
		t.Errorf("biased ids %v, want %v", k.ids, want)
	}
}

// A moe step rejects an expert id outside the table instead of panicking.
func TestMoEBadExpertID(t *testing.T) {
	k := &moeK{e: 4, k: 1, ids: tensor{i32: []int32{7}}, count: make([]int, 4)}
	if err := k.exec(&Backend{t: 1}); err == nil {
		t.Error("expert 7 of 4 accepted")
	}
}
