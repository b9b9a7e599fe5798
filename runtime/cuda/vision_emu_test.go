package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/engine"
)

const tinyVLDir = "../../testdata/tiny/qwen3vl"

// vlEngine builds the tiny Qwen3-VL (two plans: the vision stage and the
// text decoder) with pioc's driver.
func vlEngine(t *testing.T, dt ir.DType) *engine.Engine {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vl.pio")
	if _, err := compiler.Build(compiler.Options{Source: tinyVLDir, Output: path, DType: dt}); err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(path, engine.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if len(e.Meta.Stages) != 1 || e.Meta.Stages[0].Name != "vision" {
		t.Fatalf("engine stages %v: want one vision stage", e.Meta.Stages)
	}
	return e
}

// emuStage is the emulated CUDA backend of the engine's vision stage.
func emuStage(t *testing.T, gxx string, e *engine.Engine, opt Options) *Backend {
	t.Helper()
	p := e.Meta.Stages[0].Plan
	ws := make([]Weight, len(p.Weights))
	for i := range p.Weights {
		j := e.StageWeights[0][i]
		ws[i] = Weight{DType: e.Weights[j].DType, Shape: e.Weights[j].Shape, Data: e.WeightData(j)}
	}
	b, err := New(p, ws, emuKernels(t, gxx, p), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// outputsOf runs a step on both backends and returns every named output of
// each.
func stepBoth(t *testing.T, bt *runtime.Batch, names []string, bes ...runtime.Backend) [][][]float32 {
	t.Helper()
	outs := make([][][]float32, len(bes))
	for i, be := range bes {
		if err := be.Step(bt); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			o, _, err := be.Output(n)
			if err != nil {
				t.Fatal(err)
			}
			outs[i] = append(outs[i], slices.Clone(o))
		}
	}
	return outs
}

func outputNames(p *ir.Plan) []string {
	var ns []string
	for _, o := range p.Outputs {
		ns = append(ns, o.Name)
	}
	return ns
}

// visionBatch is a vision-stage step of T merged tokens with the given
// inputs (tokens are placeholders: the stage has no token input).
func visionBatch(T int, in map[string]runtime.Input) *runtime.Batch {
	bt := &runtime.Batch{Seqs: []runtime.SeqView{{}}, LogitRows: []int32{0}, Inputs: in}
	for i := 0; i < T; i++ {
		bt.Tokens = append(bt.Tokens, 0)
		bt.Positions = append(bt.Positions, int32(i))
		bt.SeqOfToken = append(bt.SeqOfToken, 0)
	}
	return bt
}

// TestEmulatedVisionStage: the emulated CUDA kernels of the tiny Qwen3-VL's
// vision stage (layer_norm, both gelus, bias_add, segment_attention, 2-D
// mrope, weighted_rows, slice, matmuls) give the CPU backend's image
// features and DeepStack features, on the two test images (two segments of
// different sizes) and on a synthetic step of three segments whose 40
// tokens (160 patch rows) span several attention tiles. f32 compute both
// ways; the CPU reduces norms and softmax sums in f64, hence 1e-4.
func TestEmulatedVisionStage(t *testing.T) {
	gxx := useFakeDriver(t)
	for _, dt := range []ir.DType{ir.BF16, ir.F32} {
		t.Run(dt.String(), func(t *testing.T) {
			e := vlEngine(t, dt)
			p := e.Meta.Stages[0].Plan
			gpu := emuStage(t, gxx, e, Options{MaxTokens: 64})
			ref, err := cpu.StageFromEngine(e, "vision", cpu.Options{MaxTokens: 64, Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			names := outputNames(p)

			// The test images, as the server lays them out.
			tokens, real := imageInputs(t)

			// Synthetic: 3 segments of 7, 20 and 13 tokens.
			const T = 40
			r := rand.New(rand.NewPCG(1, 2))
			row := func(name string) int {
				for _, in := range p.Inputs {
					if in.Name == name {
						n, _ := in.Shape[1:].Elems(0, 0)
						return int(n)
					}
				}
				t.Fatalf("no input %s", name)
				return 0
			}
			syn := map[string]runtime.Input{}
			var px, pw []float32
			var idx, vp, seg []int32
			for range T * row("pixel_values") {
				px = append(px, float32(r.NormFloat64()))
			}
			for range T * row("pos_w") {
				pw = append(pw, r.Float32())
				idx = append(idx, int32(r.IntN(16)))
			}
			for range T * row("vision_pos") {
				vp = append(vp, int32(r.IntN(12)))
			}
			for i := range T {
				seg = append(seg, map[bool]int32{true: 0, false: map[bool]int32{true: 1, false: 2}[i < 27]}[i < 7])
			}
			syn["pixel_values"], syn["pos_w"], syn["pos_idx"] = runtime.Input{F32: px}, runtime.Input{F32: pw}, runtime.Input{I32: idx}
			syn["vision_pos"], syn["segments"] = runtime.Input{I32: vp}, runtime.Input{I32: seg}

			for _, c := range []struct {
				name string
				t    int
				in   map[string]runtime.Input
			}{{"images", tokens, real}, {"synthetic", T, syn}} {
				outs := stepBoth(t, visionBatch(c.t, c.in), names, gpu, ref)
				for i, n := range names {
					if e := golden.RelErr(outs[0][i], outs[1][i]); e > 1e-4 || len(outs[0][i]) != len(outs[1][i]) {
						t.Errorf("%s: %s: emulated CUDA vs CPU relative error %.3g", c.name, n, e)
					} else {
						t.Logf("%s: %s: relative error %.3g", c.name, n, e)
					}
				}
			}

			// Bad named inputs are errors before anything runs.
			bad := maps(real)
			delete(bad, "segments")
			if err := gpu.Step(visionBatch(tokens, bad)); err == nil || !strings.Contains(err.Error(), `"segments" missing`) {
				t.Errorf("missing input: %v", err)
			}
			bad = maps(real)
			bad["pos_w"] = runtime.Input{F32: real["pos_w"].F32[1:]}
			if err := gpu.Step(visionBatch(tokens, bad)); err == nil || !strings.Contains(err.Error(), `"pos_w"`) {
				t.Errorf("short input: %v", err)
			}
			bad = maps(real)
			bad["segments"] = runtime.Input{F32: make([]float32, tokens)}
			if err := gpu.Step(visionBatch(tokens, bad)); err == nil || !strings.Contains(err.Error(), `"segments"`) {
				t.Errorf("f32 for an i32 input: %v", err)
			}
			bad = maps(real)
			bad["nope"] = runtime.Input{I32: []int32{1}}
			if err := gpu.Step(visionBatch(tokens, bad)); err == nil || !strings.Contains(err.Error(), `"nope"`) {
				t.Errorf("unknown input: %v", err)
			}
		})
	}
}

func maps(m map[string]runtime.Input) map[string]runtime.Input {
	c := make(map[string]runtime.Input, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// TestEmulatedVLText: the text plan of the tiny Qwen3-VL (interleaved
// MRoPE [4,2,2], set_rows, add_rows, the paged attention) on the emulated
// CUDA backend matches the CPU backend, at prefill with image rows and at
// decode (a captured graph reading the named inputs uploaded each step).
func TestEmulatedVLText(t *testing.T) {
	gxx := useFakeDriver(t)
	e := vlEngine(t, ir.F32)
	p := e.Meta.Plan
	e.Meta.Kernels = emuKernels(t, gxx, p)
	opt := Options{MaxTokens: 32, NumBlocks: 16, BlockSize: 4, MaxSeqs: 2}
	gpu, err := FromEngine(e, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer gpu.Close()
	ref, err := cpu.StageFromEngine(e, "", cpu.Options{MaxTokens: 32, NumBlocks: 16, BlockSize: 4, MaxSeqs: 2, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	var hidden int
	for _, in := range p.Inputs {
		if in.Name == "image_embeds" {
			hidden = int(in.Shape[1])
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	feats := func(n int) []float32 {
		v := make([]float32, n*hidden)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	inputs := func(T int, mask []int32, mpos []int32) map[string]runtime.Input {
		in := map[string]runtime.Input{"image_mask": {I32: mask}, "mrope_positions": {I32: mpos}, "image_embeds": {F32: feats(T)}}
		for k := 0; k < 3; k++ {
			in[fmt.Sprintf("deepstack.%d", k)] = runtime.Input{F32: feats(T)}
		}
		return in
	}
	// Prefill: 12 tokens, 4 of them image tokens on a 2×2 grid.
	const T = 12
	bt := &runtime.Batch{Seqs: []runtime.SeqView{{Blocks: []int32{3, 1, 4, 0, 5}}}}
	var mask, mpos []int32
	for i := 0; i < T; i++ {
		bt.Tokens = append(bt.Tokens, int32(10+i*7%200))
		bt.Positions = append(bt.Positions, int32(i))
		bt.SeqOfToken = append(bt.SeqOfToken, 0)
		bt.LogitRows = append(bt.LogitRows, int32(i))
		img := i >= 3 && i < 7
		mask = append(mask, map[bool]int32{true: 1}[img])
		if img {
			mpos = append(mpos, 3, int32(3+(i-3)/2), int32(3+(i-3)%2))
		} else {
			q := int32(i)
			if i >= 7 {
				q = int32(i - 2)
			}
			mpos = append(mpos, q, q, q)
		}
	}
	bt.Inputs = inputs(T, mask, mpos)
	outs := stepBoth(t, bt, []string{"logits"}, gpu, ref)
	if e := golden.RelErr(outs[0][0], outs[1][0]); e > 1e-4 {
		t.Errorf("prefill logits: emulated CUDA vs CPU relative error %.3g", e)
	}
	// Decode: one token a step, all axes at position + rope_delta (−2).
	for n := T; n < T+3; n++ {
		q := int32(n - 2)
		d := &runtime.Batch{Tokens: []int32{int32(argmax(outs[1][0][len(outs[1][0])-len(outs[1][0])/len(bt.LogitRows):]))}, Positions: []int32{int32(n)},
			SeqOfToken: []int32{0}, Seqs: bt.Seqs, LogitRows: []int32{0}, Inputs: inputs(1, []int32{0}, []int32{q, q, q})}
		outs = stepBoth(t, d, []string{"logits"}, gpu, ref)
		bt = d
		if e := golden.RelErr(outs[0][0], outs[1][0]); e > 1e-4 {
			t.Errorf("decode position %d: emulated CUDA vs CPU relative error %.3g", n, e)
		}
	}
	if len(gpu.graphs) != 1 {
		t.Errorf("%d decode graphs captured, want 1", len(gpu.graphs))
	}
}

// fillWeights gives a plan's weights deterministic values, for both
// backends.
func fillWeights(p *ir.Plan) ([]Weight, []cpu.Weight) {
	var ws []Weight
	var cws []cpu.Weight
	for i, w := range p.Weights {
		n, _ := w.Shape.Elems(0, 0)
		data := make([]byte, n*int64(w.DType.Size()))
		for j := int64(0); j < n; j++ {
			v := float32(((j*7919+int64(i)*31)%97)-48) / 64
			bits := math.Float32bits(v)
			if w.DType == ir.BF16 {
				binary.LittleEndian.PutUint16(data[2*j:], uint16(bits>>16))
			} else {
				binary.LittleEndian.PutUint32(data[4*j:], bits)
			}
		}
		shape := make([]int64, len(w.Shape))
		for j, d := range w.Shape {
			shape[j] = int64(d)
		}
		ws = append(ws, Weight{DType: w.DType, Shape: shape, Data: data})
		cws = append(cws, cpu.Weight{DType: w.DType, Shape: shape, Data: data})
	}
	return ws, cws
}

// TestEmulatedVisionOps runs the vision templates on shapes the tiny
// Qwen3-VL does not have, against the CPU backend: segment_attention over
// [T, H, D] with D = 40 (two lanes' worth of channels, not a multiple of
// 32) on 300 rows in 5 tiles, one segment of 280 rows (the bound scans
// cross a block's stride); chunked MRoPE with 3 axes and pass-through
// channels, interleaved MRoPE; layer_norm over 2200 channels (256
// threads); weighted_rows with K = 3 over [T, 2, 3]; both gelus, bias_add,
// add_rows and set_rows. An index outside the table gives a NaN row (the
// CPU backend reports an error).
func TestEmulatedVisionOps(t *testing.T) {
	gxx := useFakeDriver(t)
	b := ir.NewBuilder("vision-ops")
	x := b.Input("x", ir.F32, ir.T, 3, 40)
	seg := b.Input("seg", ir.I32, ir.T)
	pos := b.Input("pos", ir.I32, ir.T, 3)
	idx := b.Input("idx", ir.I32, ir.T, 2, 3)
	wts := b.Input("wts", ir.F32, ir.T, 2, 3)
	mask := b.Input("mask", ir.I32, ir.T)
	q := b.MRoPE(x, pos, ir.MRoPEOpts{Theta: 10000, FreqDim: 12, Sections: []int64{3, 2, 2}, Layout: "chunked"})
	k := b.MRoPE(x, pos, ir.MRoPEOpts{Theta: 5e6, FreqDim: 16, Sections: []int64{4, 2, 2}, Layout: "interleaved"})
	v := b.GELU(x, "erf")
	a := b.Reshape(b.SegmentAttention(q, k, v, seg, 0.3), ir.T, 120)
	h := b.GELU(b.BiasAdd(b.LayerNorm(a, b.Weight("ln.w", ir.BF16, 120), b.Weight("ln.b", ir.F32, 120), 1e-5), b.Weight("bias", ir.BF16, 120)), "tanh")
	set := b.SetRows(h, a, mask)
	add := b.AddRows(set, h, mask)
	wr := b.WeightedRows(b.Weight("table", ir.BF16, 9, 1100), idx, wts)
	ln := b.LayerNorm(b.Reshape(wr, ir.T, 2200), b.Weight("ln2.w", ir.F32, 2200), b.Weight("ln2.b", ir.BF16, 2200), 1e-6)
	b.Output("y", add)
	b.Output("wr", wr)
	b.Output("ln", ln)
	p := loweredPlan(t, b)
	ws, cws := fillWeights(p)
	gpu, ref := planBackends(t, gxx, p, ws, cws, Options{MaxTokens: 320})
	const T = 300
	r := rand.New(rand.NewPCG(5, 6))
	in := map[string]runtime.Input{}
	var xs, wv []float32
	var sg, ps, ix, mk []int32
	for range T * 120 {
		xs = append(xs, float32(r.NormFloat64()))
	}
	for i := range T {
		sg = append(sg, map[bool]int32{true: 7, false: map[bool]int32{true: 3, false: 9}[i < 285]}[i < 5])
		ps = append(ps, int32(r.IntN(50)), int32(r.IntN(50)), int32(r.IntN(50)))
		mk = append(mk, int32(i%3))
	}
	for range T * 6 {
		ix = append(ix, int32(r.IntN(9)))
		wv = append(wv, r.Float32())
	}
	in["x"], in["seg"], in["pos"], in["idx"], in["wts"], in["mask"] = runtime.Input{F32: xs}, runtime.Input{I32: sg}, runtime.Input{I32: ps},
		runtime.Input{I32: ix}, runtime.Input{F32: wv}, runtime.Input{I32: mk}
	names := []string{"y", "wr", "ln"}
	outs := stepBoth(t, visionBatch(T, in), names, gpu, ref)
	for i, n := range names {
		if e := golden.RelErr(outs[0][i], outs[1][i]); e > 1e-4 || len(outs[0][i]) != len(outs[1][i]) {
			t.Errorf("%s: emulated CUDA vs CPU relative error %.3g (%d and %d values)", n, e, len(outs[0][i]), len(outs[1][i]))
		}
	}
	ix[6*17+4] = 9 // token 17, patch 1, tap 1: one past the table
	if err := ref.Step(visionBatch(T, in)); err == nil || !strings.Contains(err.Error(), "outside the table") {
		t.Errorf("CPU backend, bad index: %v", err)
	}
	if err := gpu.Step(visionBatch(T, in)); err != nil {
		t.Fatal(err)
	}
	got, _, err := gpu.Output("wr")
	if err != nil {
		t.Fatal(err)
	}
	for j, v := range got[17*2200 : 19*2200] {
		if nan := v != v; nan != (j >= 1100 && j < 2200) {
			t.Fatalf("bad index: value %d of token 17's rows is %v", j, v)
		}
	}
}
