package cpu

import (
	"math"
	"math/rand/v2"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/inference-pio/pio/internal/tolerance"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
)

// testBackend is the part of a Backend the vision kernels read in exec: the
// step's T and the worker pool.
func testBackend(t *testing.T, tokens int) *Backend {
	b := &Backend{t: tokens, opt: Options{MaxTokens: tokens}, pool: newPool(2)}
	t.Cleanup(b.pool.close)
	return b
}

func randF32(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func f32T(v []float32, dims ...ir.Dim) tensor {
	return tensor{dt: ir.F32, shape: ir.Sh(dims...), f32: v}
}
func i32T(v []int32, dims ...ir.Dim) tensor { return tensor{dt: ir.I32, shape: ir.Sh(dims...), i32: v} }

func TestLayerNormGELUBias(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n, d = 5, 24
	b := testBackend(t, n)
	x, w, bias := randF32(r, n*d), randF32(r, d), randF32(r, d)
	for i := range x {
		x[i] = x[i]*3 + 1.5 // a mean far from 0 exercises the two-pass variance
	}
	y := make([]float32, n*d)
	if err := (&layerNormK{x: f32T(x, ir.T, d), w: w, bias: bias, y: y, eps: 1e-6, d: d}).exec(b); err != nil {
		t.Fatal(err)
	}
	want := make([]float64, n*d)
	for r := 0; r < n; r++ {
		var m, v float64
		for _, f := range x[r*d : (r+1)*d] {
			m += float64(f) / d
		}
		for _, f := range x[r*d : (r+1)*d] {
			v += (float64(f) - m) * (float64(f) - m) / d
		}
		for i := 0; i < d; i++ {
			want[r*d+i] = (float64(x[r*d+i])-m)/math.Sqrt(v+1e-6)*float64(w[i]) + float64(bias[i])
		}
	}
	if e := maxRel(y, want); !tolerance.Within(t, e, 1e-6) {
		t.Errorf("layer_norm: rel err %g", e)
	}

	g := make([]float32, n*d)
	for _, approx := range []bool{false, true} {
		if err := (&geluK{x: f32T(x, ir.T, d), y: g, tanh: approx}).exec(b); err != nil {
			t.Fatal(err)
		}
		for i, v := range x {
			f := float64(v)
			want := f * 0.5 * math.Erfc(-f/math.Sqrt2)
			if approx {
				want = f / (1 + math.Exp(-2*math.Sqrt(2/math.Pi)*(f+0.044715*f*f*f))) // 0.5(1+tanh u) = σ(2u)
			}
			if math.Abs(float64(g[i])-want) > 1e-6*max(1, math.Abs(want)) {
				t.Fatalf("gelu(tanh=%v)(%v) = %v, want %v", approx, v, g[i], want)
			}
		}
	}
	if err := (&biasAddK{x: f32T(x, ir.T, d), bias: bias, y: g}).exec(b); err != nil {
		t.Fatal(err)
	}
	if g[d+3] != x[d+3]+bias[3] {
		t.Errorf("bias_add: %v, want %v", g[d+3], x[d+3]+bias[3])
	}
}

func TestSegmentAttention(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const n, g, h, d = 5, 4, 2, 8 // tokens 0-1 are image 7, tokens 2-4 image 3
	seg := []int32{7, 7, 3, 3, 3}
	q, k, v := randF32(r, n*g*h*d), randF32(r, n*g*h*d), randF32(r, n*g*h*d)
	y := make([]float32, n*g*h*d)
	b := testBackend(t, n)
	sh := []ir.Dim{ir.T, g, h, d}
	kr := &segmentAttentionK{q: f32T(q, sh...), k: f32T(k, sh...), v: f32T(v, sh...), seg: i32T(seg, ir.T), y: y,
		g: g, h: h, d: d, scale: 1 / math.Sqrt(d), starts: make([]int, n), ends: make([]int, n)}
	if err := kr.exec(b); err != nil {
		t.Fatal(err)
	}
	// Reference: full softmax over all rows with a mask.
	want := make([]float64, len(y))
	for i := 0; i < n*g; i++ {
		for hh := 0; hh < h; hh++ {
			var w []float64
			var sum float64
			for j := 0; j < n*g; j++ {
				if seg[j/g] != seg[i/g] {
					w = append(w, 0)
					continue
				}
				var dot float64
				for c := 0; c < d; c++ {
					dot += float64(q[(i*h+hh)*d+c]) * float64(k[(j*h+hh)*d+c])
				}
				e := math.Exp(dot / math.Sqrt(d))
				w = append(w, e)
				sum += e
			}
			for j, e := range w {
				for c := 0; c < d; c++ {
					want[(i*h+hh)*d+c] += e / sum * float64(v[(j*h+hh)*d+c])
				}
			}
		}
	}
	if e := maxRel(y, want); !tolerance.Within(t, e, 1e-6) {
		t.Errorf("segment_attention: rel err %g", e)
	}
	kr.seg = i32T([]int32{1, 2, 1, 1, 1}, ir.T)
	if err := kr.exec(b); err == nil || !strings.Contains(err.Error(), "not contiguous") {
		t.Errorf("split segment: %v", err)
	}
}

// TestMRoPEInterleaved checks Qwen3-VL's text MRoPE against a transcription
// of transformers' apply_interleaved_mrope: per-axis freqs, then the H and W
// slots overwritten at offsets 1 and 2, stride 3; bit-exact.
func TestMRoPEInterleaved(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const n, h, d = 3, 2, 32
	secs := []int64{6, 5, 5} // head_dim 32: 16 slots, like [24, 20, 20] for 128
	pos := []int32{4, 4, 4, 5, 5, 6, 5, 7, 9}
	x := randF32(r, n*h*d)
	y := make([]float32, len(x))
	b := testBackend(t, n)
	inv := ropeInvFreq(5e6, d)
	kr := &mropeK{x: f32T(x, ir.T, h, d), pos: i32T(pos, ir.T, 3), y: y, h: h, d: d, inv: inv, axisOf: mropeSlots(secs, "interleaved"), axes: 3}
	if err := kr.exec(b); err != nil {
		t.Fatal(err)
	}
	for tk := 0; tk < n; tk++ {
		var freqs [3][d / 2]float32
		for a := 0; a < 3; a++ {
			for i := range freqs[a] {
				freqs[a][i] = float32(pos[tk*3+a]) * inv[i]
			}
		}
		ft := freqs[0]
		for dim, off := range []int{1, 2} {
			for i := off; i < int(secs[dim+1])*3; i += 3 {
				ft[i] = freqs[dim+1][i]
			}
		}
		for hh := 0; hh < h; hh++ {
			xs := x[(tk*h+hh)*d : (tk*h+hh+1)*d]
			for c := 0; c < d; c++ {
				f := float64(ft[c%(d/2)])
				cs, sn := float32(math.Cos(f)), float32(math.Sin(f))
				var rot float32
				if c < d/2 {
					rot = -xs[c+d/2]
				} else {
					rot = xs[c-d/2]
				}
				// float32(·) rounds each product as the kernel does: Go may
				// otherwise fuse a*b+c into one FMA (it does on arm64).
				want := float32(xs[c]*cs) + float32(rot*sn)
				if got := y[(tk*h+hh)*d+c]; got != want {
					t.Fatalf("token %d head %d ch %d: %v, want %v", tk, hh, c, got, want)
				}
			}
		}
	}
	// the slot layout of the real model: 24 T, 20 H, 20 W
	ax := mropeSlots([]int64{24, 20, 20}, "interleaved")
	cnt := [3]int{}
	for _, a := range ax {
		cnt[a]++
	}
	if cnt != [3]int{24, 20, 20} || ax[1] != 1 || ax[2] != 2 || ax[3] != 0 || ax[58] != 1 || ax[59] != 2 || ax[60] != 0 || ax[61] != 0 {
		t.Errorf("interleaved [24,20,20]: counts %v, slots 0-5 %v, 57-63 %v", cnt, ax[:6], ax[57:])
	}
}

// TestMRoPEVision checks the 2-D rope of the vision tower: head_dim 16,
// inv_freq over dim 8 (4 frequencies), θ = [row·inv ‖ col·inv], emb = [θ ‖ θ].
func TestMRoPEVision(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const n, g, h, d = 2, 4, 1, 16
	pos := []int32{0, 0, 0, 1, 1, 0, 1, 1, 0, 2, 0, 3, 1, 2, 1, 3}
	x := randF32(r, n*g*h*d)
	y := make([]float32, len(x))
	b := testBackend(t, n)
	base := ropeInvFreq(10000, d/2)
	inv := make([]float32, d/2)
	for i := range inv {
		inv[i] = base[i%len(base)]
	}
	kr := &mropeK{x: f32T(x, ir.T, g, h, d), pos: i32T(pos, ir.T, g, 2), y: y, h: h, d: d, inv: inv, axisOf: mropeSlots([]int64{4, 4}, "chunked"), axes: 2}
	if err := kr.exec(b); err != nil {
		t.Fatal(err)
	}
	for row := 0; row < n*g; row++ {
		theta := make([]float32, 0, d)
		for _, p := range pos[row*2 : row*2+2] {
			for _, f := range base {
				theta = append(theta, float32(p)*f)
			}
		}
		theta = append(theta, theta...)
		xs := x[row*d : (row+1)*d]
		for c := 0; c < d; c++ {
			cs, sn := float32(math.Cos(float64(theta[c]))), float32(math.Sin(float64(theta[c])))
			rot := xs[(c+d/2)%d]
			if c < d/2 {
				rot = -rot
			}
			if want := float32(xs[c]*cs) + float32(rot*sn); y[row*d+c] != want { // rounded products, as in TestMRoPEInterleaved
				t.Fatalf("row %d ch %d: %v, want %v", row, c, y[row*d+c], want)
			}
		}
	}
}

func TestWeightedAndMaskRows(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const n, kk, rows, d = 3, 4, 6, 5
	table := randF32(r, rows*d)
	idx := []int32{0, 1, 2, 3, 5, 5, 4, 0, 1, 1, 1, 1}
	w := randF32(r, n*kk)
	y := make([]float32, n*d)
	b := testBackend(t, n)
	kr := &weightedRowsK{table: matrix{rows: rows, cols: d, dt: ir.F32, f32: table}, idx: i32T(idx, ir.T, kk), w: f32T(w, ir.T, kk), y: y, kk: kk, row: make([]float32, d)}
	if err := kr.exec(b); err != nil {
		t.Fatal(err)
	}
	for tk := 0; tk < n; tk++ {
		for c := 0; c < d; c++ {
			var s float32
			for j := 0; j < kk; j++ {
				s += w[tk*kk+j] * table[int(idx[tk*kk+j])*d+c]
			}
			if y[tk*d+c] != s {
				t.Fatalf("token %d ch %d: %v, want %v", tk, c, y[tk*d+c], s)
			}
		}
	}
	idx[5] = rows
	if err := kr.exec(b); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("bad index: %v", err)
	}

	h, f := randF32(r, n*d), randF32(r, n*d)
	mask := []int32{0, 1, 0}
	for _, set := range []bool{false, true} {
		out := make([]float32, n*d)
		if err := (&maskRowsK{h: f32T(h, ir.T, d), f: f32T(f, ir.T, d), mask: i32T(mask, ir.T), y: out, d: d, set: set}).exec(b); err != nil {
			t.Fatal(err)
		}
		for i := range out {
			want := h[i]
			if mask[i/d] != 0 {
				want = f[i]
				if !set {
					want += h[i]
				}
			}
			if out[i] != want {
				t.Fatalf("set=%v: element %d = %v, want %v", set, i, out[i], want)
			}
		}
	}
}

// TestVisionOpsInPlan runs the ops through New and Step (builders, operand
// binding, buffer sizing), using tokens as the i32[T] segment ids and mask.
// (mrope and weighted_rows need [T, A] i32 inputs, which the backend does not
// bind yet; they are tested on their kernels above.)
func TestVisionOpsInPlan(t *testing.T) {
	ws := newWeightSet(11)
	b := ir.NewBuilder("vision")
	tok := b.Input("tokens", ir.I32, ir.T)
	x := b.Embedding(ws.add(b, "emb", ir.F32, 1, 16, 32), tok)
	x = b.LayerNorm(x, ws.add(b, "ln.w", ir.F32, 1, 32), ws.add(b, "ln.b", ir.F32, 1, 32), 1e-6)
	x = b.BiasAdd(x, ws.add(b, "bias", ir.F32, 1, 32))
	x = b.GELU(x, "tanh")
	q := b.Reshape(x, ir.T, 2, 2, 8)
	a := b.SegmentAttention(q, q, q, tok, 0.3)
	h := b.AddRows(b.Reshape(a, ir.T, 32), b.GELU(x, "erf"), tok)
	h = b.SetRows(h, x, tok)
	b.Output("h", h)
	b.Output("a", a)
	p := finish(t, b)
	be := newBackend(t, p, ws.weights(p), Options{MaxTokens: 8, Threads: 2})
	bt := makeBatch(chunk{blocks: []int32{0}, tokens: []int32{0, 0, 3, 3, 3}})
	step(t, be, bt)
	hv, shape := output(t, be, "h")
	if len(shape) != 2 || shape[0] != 5 || shape[1] != 32 {
		t.Fatalf("h shape %v", shape)
	}
	// tokens 0, 1 have mask 0: h = attention output; tokens 2-4: set_rows gives x.
	av, _ := output(t, be, "a")
	for i := 0; i < 2*32; i++ {
		if hv[i] != av[i] {
			t.Fatalf("h[%d] = %v, want the attention output %v", i, hv[i], av[i])
		}
	}
	// Tokens 2-4 share embedding row 3 and a segment: identical outputs.
	for i := 0; i < 32; i++ {
		if hv[2*32+i] != hv[4*32+i] || av[2*32+i] != av[3*32+i] {
			t.Fatalf("rows of one segment differ at %d", i)
		}
	}
}

func TestNewStageInputs(t *testing.T) {
	ws := newWeightSet(12)
	b := ir.NewBuilder("stage")
	tok := b.Input("tokens", ir.I32, ir.T)
	f := b.Input("feats", ir.F32, ir.T, 8)
	mask := b.Input("mask", ir.I32, ir.T)
	b.Output("y", b.AddRows(b.Embedding(ws.add(b, "emb", ir.F32, 1, 4, 8), tok), f, mask))
	p := finish(t, b)
	be, err := NewStage(p, ws.weights(p), Options{MaxTokens: 4, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	for _, c := range []struct {
		name string
		f32  []float32
		i32  []int32
		want string
	}{
		{"nope", nil, []int32{1}, "no input"},
		{"tokens", nil, []int32{1}, "bound to the batch"},
		{"feats", nil, []int32{1}, "is f32"},
		{"feats", make([]float32, 7), nil, "rows of 8"},
		{"feats", make([]float32, 40), nil, "rows of 8"},
		{"mask", nil, nil, "rows of 1"},
	} {
		if err := be.SetInput(c.name, c.f32, c.i32); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("SetInput(%s, %d f32, %d i32): %v, want %q", c.name, len(c.f32), len(c.i32), err, c.want)
		}
	}
	feats := make([]float32, 16)
	for i := range feats {
		feats[i] = float32(i)
	}
	if err := be.SetInput("feats", feats, nil); err != nil {
		t.Fatal(err)
	}
	if err := be.SetInput("mask", nil, []int32{0, 1}); err != nil {
		t.Fatal(err)
	}
	step(t, be, makeBatch(chunk{tokens: []int32{2, 3}}))
	y, _ := output(t, be, "y")
	emb := ws.vals["emb"]
	if y[0] != emb[2*8] || y[8+5] != emb[3*8+5]+13 {
		t.Errorf("y = %v", y)
	}
}

// TestBatchInputs: New binds a plan's named inputs to Batch.Inputs, checks
// them before the step runs, and refuses a step that lacks one.
func TestBatchInputs(t *testing.T) {
	ws := newWeightSet(12)
	b := ir.NewBuilder("stage")
	tok := b.Input("tokens", ir.I32, ir.T)
	f := b.Input("feats", ir.F32, ir.T, 8)
	mask := b.Input("mask", ir.I32, ir.T)
	b.Output("y", b.AddRows(b.Embedding(ws.add(b, "emb", ir.F32, 1, 4, 8), tok), f, mask))
	p := finish(t, b)
	be, err := New(p, ws.weights(p), Options{MaxTokens: 4, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	feats := make([]float32, 16)
	for i := range feats {
		feats[i] = float32(i)
	}
	bad := []struct {
		in   map[string]runtime.Input
		want string
	}{
		{nil, `"feats" missing`},
		{map[string]runtime.Input{"feats": {F32: feats}}, `"mask" missing`},
		{map[string]runtime.Input{"feats": {F32: feats[:8]}, "mask": {I32: []int32{0, 1}}}, `"feats": 8 f32`},
		{map[string]runtime.Input{"feats": {I32: make([]int32, 16)}, "mask": {I32: []int32{0, 1}}}, `"feats": 0 f32 and 16 i32`},
		{map[string]runtime.Input{"feats": {F32: feats}, "mask": {I32: []int32{0, 1}}, "extra": {I32: []int32{0, 1}}}, `"extra": the plan has no such input`},
		{map[string]runtime.Input{"feats": {F32: feats}, "mask": {I32: []int32{0, 1}}, "tokens": {I32: []int32{0, 1}}}, `"tokens": the plan has no such input`},
	}
	for _, c := range bad {
		bt := makeBatch(chunk{tokens: []int32{2, 3}})
		bt.Inputs = c.in
		if err := be.Step(bt); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Step with inputs %v: %v, want %q", c.in, err, c.want)
		}
	}
	for _, m := range []int32{1, 0} {
		bt := makeBatch(chunk{tokens: []int32{2, 3}})
		bt.Inputs = map[string]runtime.Input{"feats": {F32: feats}, "mask": {I32: []int32{0, m}}}
		step(t, be, bt)
		y, _ := output(t, be, "y")
		emb := ws.vals["emb"]
		if want := emb[3*8+5] + 13*float32(m); y[0] != emb[2*8] || y[8+5] != want {
			t.Errorf("mask %d: y[0] = %v, y[13] = %v, want %v, %v", m, y[0], y[13], emb[2*8], want)
		}
	}
}

// BenchmarkSegmentAttention: one 512×512 image at Qwen3-VL-2B's vision
// geometry (1024 patches as 256 rows of 4, 16 heads × 64); "ref" is the
// plain f64 loop of TestSegmentAttention's reference, for a ratio.
func BenchmarkSegmentAttention(bm *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	const n, g, h, d = 256, 4, 16, 64
	q, k, v := randF32(r, n*g*h*d), randF32(r, n*g*h*d), randF32(r, n*g*h*d)
	y := make([]float32, len(q))
	seg := make([]int32, n)
	sh := []ir.Dim{ir.T, g, h, d}
	b := &Backend{t: n, opt: Options{MaxTokens: n}, pool: newPool(goruntime.GOMAXPROCS(0))}
	defer b.pool.close()
	kr := &segmentAttentionK{q: f32T(q, sh...), k: f32T(k, sh...), v: f32T(v, sh...), seg: i32T(seg, ir.T), y: y,
		g: g, h: h, d: d, scale: 0.125, starts: make([]int, n), ends: make([]int, n)}
	bm.Run("kernel", func(bm *testing.B) {
		for range bm.N {
			if err := kr.exec(b); err != nil {
				bm.Fatal(err)
			}
		}
	})
	bm.Run("ref", func(bm *testing.B) {
		w := make([]float64, n*g)
		for range bm.N {
			for i := 0; i < n*g; i++ {
				for hh := 0; hh < h; hh++ {
					var sum float64
					for j := range w {
						var dot float64
						for c := 0; c < d; c++ {
							dot += float64(q[(i*h+hh)*d+c]) * float64(k[(j*h+hh)*d+c])
						}
						w[j] = math.Exp(dot * 0.125)
						sum += w[j]
					}
					for c := 0; c < d; c++ {
						var a float64
						for j, e := range w {
							a += e / sum * float64(v[(j*h+hh)*d+c])
						}
						y[(i*h+hh)*d+c] = float32(a)
					}
				}
			}
		}
	})
}
