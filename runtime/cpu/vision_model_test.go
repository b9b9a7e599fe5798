package cpu

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/frontends/image"
	"github.com/inference-pio/pio/internal/tolerance"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models/qwen3vl"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/engine"
)

const tinyVLDir = "../../testdata/tiny/qwen3vl"

func stage(t *testing.T, e *engine.Engine, name string, opt Options) *Backend {
	t.Helper()
	b, err := StageFromEngine(e, name, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
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
// image files through a two-stage engine file: frontends/image
// preprocessing and layout, the vision stage,
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

	// Preprocess and lay out, as a server would.
	pc, err := os.ReadFile(filepath.Join(tinyVLDir, "preprocessor_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	po, err := image.ParseOptions(pc)
	if err != nil {
		t.Fatal(err)
	}
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

	// Both stages in one engine file, as pioc builds it, then the vision
	// stage. The KV cache is f32, as the f32 reference computes (a bf16
	// cache rounds K/V by up to 2^-8, far beyond tol).
	path := filepath.Join(t.TempDir(), "vl.pio")
	if _, err := compiler.Build(compiler.Options{Source: tinyVLDir, Output: path, DType: ir.BF16, KVDType: ir.F32, Taps: true, Check: true}); err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(path, engine.OpenOptions{VerifyWeights: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if len(e.Meta.Stages) != 1 || e.Meta.Stages[0].Name != "vision" || len(e.Meta.PreprocessorConfigJSON) == 0 {
		t.Fatalf("engine stages %v, preprocessor config %d bytes: want one vision stage and the config", len(e.Meta.Stages), len(e.Meta.PreprocessorConfigJSON))
	}
	vb := stage(t, e, "vision", Options{MaxTokens: 16, Threads: 2})
	vt := make([]int32, vin.Tokens)
	vbt := makeBatch(chunk{tokens: vt})
	vbt.Inputs = map[string]runtime.Input{
		qwen3vl.InPixels: {F32: vin.Pixels}, qwen3vl.InPosIdx: {I32: vin.PosIdx}, qwen3vl.InPosW: {F32: vin.PosW},
		qwen3vl.InRoPEPos: {I32: vin.RoPEPos}, qwen3vl.InSegments: {I32: vin.Segments},
	}
	step(t, vb, vbt)
	const tol = 2e-5
	for _, c := range []struct{ ours, hf string }{
		{"vision.hidden", "vision.last_hidden_state"}, {qwen3vl.OutImage, "vision.merged"},
		{qwen3vl.OutDeep + "0", "vision.deepstack.0"}, {qwen3vl.OutDeep + "1", "vision.deepstack.1"}, {qwen3vl.OutDeep + "2", "vision.deepstack.2"},
	} {
		got, _ := output(t, vb, c.ours)
		if e := maxRel(got, goldenF32(t, gf, c.hf)); !tolerance.Within(t, e, tol) {
			t.Errorf("%s vs %s: rel err %.3g", c.ours, c.hf, e)
		} else {
			t.Logf("%s: rel err %.3g", c.ours, e)
		}
	}

	// Text stage, prefill.
	tb := stage(t, e, "", Options{MaxTokens: 32, Threads: 2})
	H := cfg.Text.Hidden
	bt := makeBatch(chunk{blocks: []int32{0, 1, 2, 3}, tokens: lay.Tokens})
	bt.Inputs = map[string]runtime.Input{qwen3vl.InMRoPE: {I32: lay.Positions}, qwen3vl.InMask: {I32: lay.ImageMask}}
	place := func(name string) {
		feats, _ := output(t, vb, name)
		dst, err := lay.Scatter(feats, H)
		if err != nil {
			t.Fatal(err)
		}
		bt.Inputs[name] = runtime.Input{F32: dst}
	}
	place(qwen3vl.OutImage)
	for k := range cfg.Vision.DeepStack {
		place(qwen3vl.OutDeep + strconv.Itoa(k))
	}
	bt.LogitRows = bt.LogitRows[:0]
	for i := range lay.Tokens {
		bt.LogitRows = append(bt.LogitRows, int32(i))
	}
	step(t, tb, bt)
	for i := 0; i < cfg.Text.Layers; i++ {
		got, _ := output(t, tb, "hidden."+strconv.Itoa(i))
		if e := maxRel(got, goldenF32(t, gf, "hidden."+strconv.Itoa(i))); !tolerance.Within(t, e, tol) {
			t.Errorf("hidden.%d: rel err %.3g", i, e)
		}
	}
	for _, n := range []string{"norm", "logits"} {
		got, _ := output(t, tb, n)
		if e := maxRel(got, goldenF32(t, gf, n)); !tolerance.Within(t, e, tol) {
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
		zero := make([]float32, H)
		in := map[string]runtime.Input{qwen3vl.InMRoPE: {I32: []int32{p, p, p}}, qwen3vl.InMask: {I32: []int32{0}}, qwen3vl.OutImage: {F32: zero}}
		for k := range cfg.Vision.DeepStack {
			in[qwen3vl.OutDeep+strconv.Itoa(k)] = runtime.Input{F32: zero}
		}
		step(t, tb, &runtime.Batch{Tokens: []int32{next}, Positions: []int32{int32(n)}, SeqOfToken: []int32{0},
			Seqs: []runtime.SeqView{{Blocks: []int32{0, 1, 2, 3}}}, LogitRows: []int32{0}, Inputs: in})
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
