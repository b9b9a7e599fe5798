package cpu

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/frontends/image"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	"github.com/inference-pio/pio/models/qwen3vl"
	"github.com/inference-pio/pio/passes"
	"github.com/inference-pio/pio/runtime"
)

const tinyVLDir = "../../testdata/tiny/qwen3vl"

// stageBackend is New for a plan stage whose inputs go beyond tokens,
// positions and logit_rows: those three bind to the batch as usual; every
// other input is a backend-owned tensor the caller fills before Step
// (runtime binding of stage inputs is not in the backend yet).
func stageBackend(t *testing.T, p *ir.Plan, ws []Weight, opt Options) (*Backend, map[string]tensor) {
	t.Helper()
	opt, err := opt.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	b := &Backend{plan: p, opt: opt, outputs: map[string]int{}, seen: make([]bool, opt.MaxSeqs)}
	if err := b.bindWeights(ws); err != nil {
		t.Fatal(err)
	}
	extra := map[string]tensor{}
	for _, in := range p.Inputs {
		n, _ := in.Shape.Elems(int64(opt.MaxTokens), int64(opt.MaxTokens))
		tn := tensor{dt: in.DType, shape: in.Shape}
		if in.DType == ir.I32 {
			tn.i32 = make([]int32, n)
		} else {
			tn.f32 = make([]float32, n)
		}
		bind, ok := inputBinds[in.Name]
		if !ok {
			bind = -1
			extra[in.Name] = tn
		}
		b.inputs = append(b.inputs, tn)
		b.binds = append(b.binds, bind)
	}
	if err := b.allocArena(); err != nil {
		t.Fatal(err)
	}
	if err := b.allocCaches(); err != nil {
		t.Fatal(err)
	}
	b.scratch = make([]scratch, opt.Threads)
	for i, s := range p.Steps {
		if builders[s.Op] == nil {
			t.Fatalf("step %d: no kernel for %v", i, s.Op)
		}
		k, err := builders[s.Op](b, s, b.bufs[s.Out])
		if err != nil {
			t.Fatalf("step %d (%v): %v", i, s.Op, err)
		}
		b.kernels = append(b.kernels, k)
	}
	for _, o := range p.Outputs {
		b.outputs[o.Name] = o.Buffer
	}
	b.pool = newPool(opt.Threads)
	t.Cleanup(func() { b.Close() })
	return b, extra
}

// checkpointWeights returns the plan's weights from the checkpoint, raw, in
// the plan's shapes (the patch embedding's [D, C, Tp, P, P] is declared as
// its [D, C·Tp·P·P] view: same bytes).
func checkpointWeights(t *testing.T, ck *hf.Checkpoint, p *ir.Plan) []Weight {
	t.Helper()
	var ws []Weight
	for _, pw := range p.Weights {
		x, ok := ck.Tensor(pw.Name)
		if !ok || x.DType != hf.BF16 || pw.DType != ir.BF16 {
			t.Fatalf("weight %s: missing or not bf16", pw.Name)
		}
		shape := make([]int64, len(pw.Shape))
		for i, d := range pw.Shape {
			shape[i] = int64(d)
		}
		ws = append(ws, Weight{DType: ir.BF16, Shape: shape, Data: x.Data})
	}
	return ws
}

func lowerGraph(t *testing.T, build func(models.BuildOptions) (*ir.Graph, error), opt models.BuildOptions) *ir.Plan {
	t.Helper()
	g, err := build(opt)
	if err != nil {
		t.Fatal(err)
	}
	p, err := passes.Lower(g)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func goldenF32(t *testing.T, f *hf.SafetensorsFile, name string) []float64 {
	t.Helper()
	x, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("golden %s missing", name)
	}
	v, err := x.Float32()
	if err != nil {
		t.Fatal(err)
	}
	return f64s(v)
}

func goldenI64(t *testing.T, f *hf.SafetensorsFile, name string) []int32 {
	t.Helper()
	x, ok := f.Tensor(name)
	if !ok || x.DType != hf.I64 {
		t.Fatalf("golden %s missing or not i64", name)
	}
	out := make([]int32, len(x.Data)/8)
	for i := range out {
		out[i] = int32(int64(uint64(x.Data[8*i]) | uint64(x.Data[8*i+1])<<8 | uint64(x.Data[8*i+2])<<16 | uint64(x.Data[8*i+3])<<24 |
			uint64(x.Data[8*i+4])<<32 | uint64(x.Data[8*i+5])<<40 | uint64(x.Data[8*i+6])<<48 | uint64(x.Data[8*i+7])<<56))
	}
	return out
}

// TestQwen3VLMatchesTransformers runs the tiny Qwen3-VL end to end from the
// image files: frontends/image preprocessing and layout, the vision stage,
// the text stage at prefill (image features and DeepStack placed by the
// image mask), then greedy decoding with positions cache+rope_delta; every
// recorded tensor is compared with transformers' (f32 compute from
// bf16-exact weights on both sides).
func TestQwen3VLMatchesTransformers(t *testing.T) {
	ck, err := hf.OpenCheckpoint(tinyVLDir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	gf, err := hf.OpenSafetensors(filepath.Join(tinyVLDir, "golden.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer gf.Close()
	mm, err := qwen3vl.New(ck.Config)
	if err != nil {
		t.Fatal(err)
	}
	m := mm.(*qwen3vl.Model)
	cfg := m.Config()
	opt := models.BuildOptions{WeightDType: ir.BF16, Has: func(n string) bool { _, ok := ck.Tensor(n); return ok }, Taps: true}

	// Preprocess and lay out, as a server would.
	po := image.DefaultOptions()
	po.MinPixels, po.MaxPixels = 32*32, 96*96 // preprocessor_config.json of the tiny model
	var imgs []*image.Pixels
	for _, name := range []string{"a.png", "b.png"} {
		data, err := os.ReadFile(filepath.Join("../../testdata/images", name))
		if err != nil {
			t.Fatal(err)
		}
		px, err := image.Process(data, po)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, px)
	}
	vin, err := image.NewVisionInputs(imgs, 4, cfg.Vision.MergeSize)
	if err != nil {
		t.Fatal(err)
	}
	ids := goldenI64(t, gf, "input_ids")
	var prompt []int32
	for i, id := range ids {
		if id == cfg.ImageToken && i > 0 && ids[i-1] == cfg.ImageToken {
			continue
		}
		prompt = append(prompt, id)
	}
	lay, err := image.ExpandPrompt(prompt, imgs, image.TokenIDs{Image: cfg.ImageToken, VisionStart: cfg.VisionStart, VisionEnd: cfg.VisionEnd}, cfg.Vision.MergeSize)
	if err != nil {
		t.Fatal(err)
	}

	// Vision stage.
	vp := lowerGraph(t, m.BuildVision, opt)
	vb, vx := stageBackend(t, vp, checkpointWeights(t, ck, vp), Options{MaxTokens: 16, Threads: 2})
	copy(vx[qwen3vl.InPixels].f32, vin.Pixels)
	copy(vx[qwen3vl.InPosIdx].i32, vin.PosIdx)
	copy(vx[qwen3vl.InPosW].f32, vin.PosW)
	copy(vx[qwen3vl.InRoPEPos].i32, vin.RoPEPos)
	copy(vx[qwen3vl.InSegments].i32, vin.Segments)
	vt := make([]int32, vin.Tokens)
	step(t, vb, makeBatch(chunk{tokens: vt}))
	const tol = 2e-5
	for _, c := range []struct{ ours, hf string }{
		{"vision.hidden", "vision.last_hidden_state"}, {qwen3vl.OutImage, "vision.merged"},
		{qwen3vl.OutDeep + "0", "vision.deepstack.0"}, {qwen3vl.OutDeep + "1", "vision.deepstack.1"}, {qwen3vl.OutDeep + "2", "vision.deepstack.2"},
	} {
		got, _ := output(t, vb, c.ours)
		if e := maxRel(got, goldenF32(t, gf, c.hf)); e > tol {
			t.Errorf("%s vs %s: rel err %.3g", c.ours, c.hf, e)
		} else {
			t.Logf("%s: rel err %.3g", c.ours, e)
		}
	}

	// Text stage, prefill.
	tp := lowerGraph(t, m.BuildText, opt)
	tb, tx := stageBackend(t, tp, checkpointWeights(t, ck, tp), Options{MaxTokens: 32, Threads: 2})
	H := cfg.Text.Hidden
	place := func(name, from string) {
		feats, _ := output(t, vb, from)
		dst := tx[name].f32
		clear(dst)
		r := 0
		for i, mk := range lay.ImageMask {
			if mk != 0 {
				copy(dst[i*H:(i+1)*H], feats[r*H:(r+1)*H])
				r++
			}
		}
	}
	place(qwen3vl.OutImage, qwen3vl.OutImage)
	for k := range cfg.Vision.DeepStack {
		place(qwen3vl.OutDeep+strconv.Itoa(k), qwen3vl.OutDeep+strconv.Itoa(k))
	}
	copy(tx[qwen3vl.InMRoPE].i32, lay.Positions)
	copy(tx[qwen3vl.InMask].i32, lay.ImageMask)
	bt := makeBatch(chunk{blocks: []int32{0, 1, 2, 3}, tokens: lay.Tokens})
	bt.LogitRows = bt.LogitRows[:0]
	for i := range lay.Tokens {
		bt.LogitRows = append(bt.LogitRows, int32(i))
	}
	step(t, tb, bt)
	for i := 0; i < cfg.Text.Layers; i++ {
		got, _ := output(t, tb, "hidden."+strconv.Itoa(i))
		if e := maxRel(got, goldenF32(t, gf, "hidden."+strconv.Itoa(i))); e > tol {
			t.Errorf("hidden.%d: rel err %.3g", i, e)
		}
	}
	for _, n := range []string{"norm", "logits"} {
		got, _ := output(t, tb, n)
		if e := maxRel(got, goldenF32(t, gf, n)); e > tol {
			t.Errorf("%s: rel err %.3g", n, e)
		} else {
			t.Logf("%s: rel err %.3g", n, e)
		}
	}

	// Greedy decode: one token a step, all three axes at cache position + rope_delta.
	want := goldenI64(t, gf, "greedy")
	logits, _ := output(t, tb, "logits")
	V := cfg.Text.Vocab
	next := argmax(logits[(len(lay.Tokens)-1)*V:])
	got := []int32{next}
	for n := len(lay.Tokens); len(got) < len(want); n++ {
		p := int32(n) + lay.RopeDelta
		copy(tx[qwen3vl.InMRoPE].i32, []int32{p, p, p})
		tx[qwen3vl.InMask].i32[0] = 0
		step(t, tb, &runtime.Batch{Tokens: []int32{next}, Positions: []int32{int32(n)}, SeqOfToken: []int32{0},
			Seqs: []runtime.SeqView{{Blocks: []int32{0, 1, 2, 3}}}, LogitRows: []int32{0}})
		lg, _ := output(t, tb, "logits")
		next = argmax(lg)
		got = append(got, next)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("greedy: %v, transformers %v", got, want)
		}
	}
}

func argmax(v []float32) int32 {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return int32(best)
}
