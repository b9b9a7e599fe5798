package image

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/inference-pio/pio/frontends/hf"
)

// tinyVL is the tiny Qwen3-VL of testdata/tiny/qwen3vl (make_golden.py):
// image token 250, vision start 248, end 249; a 4×4 position grid.
var tinyVL = TokenIDs{Image: 250, VisionStart: 248, VisionEnd: 249}

func ints(t *testing.T, f *hf.SafetensorsFile, name string) []int64 {
	t.Helper()
	x, ok := f.Tensor(name)
	if !ok || x.DType != hf.I64 {
		t.Fatalf("golden %s: missing or not i64", name)
	}
	out := make([]int64, len(x.Data)/8)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(x.Data[8*i:]))
	}
	return out
}

func floats(t *testing.T, f *hf.SafetensorsFile, name string) []float32 {
	t.Helper()
	x, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("golden %s missing", name)
	}
	v, err := x.Float32()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestLayoutMatchesHF preprocesses the tiny model's two images from their
// files, lays out the prompt and the vision inputs, and compares them with
// what transformers recorded: input_ids, MRoPE position ids, rope_delta,
// the position-embedding taps and weights, the vision rope positions
// (exact) and pixel_values (bit-exact for these PNGs).
func TestLayoutMatchesHF(t *testing.T) {
	f, err := hf.OpenSafetensors("../../testdata/tiny/qwen3vl/golden.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o := DefaultOptions()
	o.MinPixels, o.MaxPixels = 32*32, 96*96 // testdata/tiny/qwen3vl/preprocessor_config.json
	var imgs []*Pixels
	for _, name := range []string{"a.png", "b.png"} {
		data, err := os.ReadFile(filepath.Join(imagesDir, name))
		if err != nil {
			t.Fatal(err)
		}
		px, err := Process(data, o)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, px)
	}
	// The prompt as a chat template writes it: one pad per image.
	var prompt []int32
	for _, id := range ints(t, f, "input_ids") {
		if id == int64(tinyVL.Image) && len(prompt) > 0 && prompt[len(prompt)-1] == tinyVL.Image {
			continue
		}
		prompt = append(prompt, int32(id))
	}
	l, err := ExpandPrompt(prompt, imgs, tinyVL, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := ints(t, f, "input_ids")
	if len(l.Tokens) != len(want) {
		t.Fatalf("%d tokens, HF %d", len(l.Tokens), len(want))
	}
	pos := ints(t, f, "position_ids") // [3, L]
	for i := range want {
		if int64(l.Tokens[i]) != want[i] {
			t.Errorf("token %d: %d, HF %d", i, l.Tokens[i], want[i])
		}
		for a := 0; a < 3; a++ {
			if int64(l.Positions[i*3+a]) != pos[a*len(want)+i] {
				t.Errorf("position of token %d axis %d: %d, HF %d", i, a, l.Positions[i*3+a], pos[a*len(want)+i])
			}
		}
		if (l.ImageMask[i] == 1) != (want[i] == int64(tinyVL.Image)) {
			t.Errorf("image mask %d: %d", i, l.ImageMask[i])
		}
	}
	if d := ints(t, f, "rope_delta")[0]; int64(l.RopeDelta) != d {
		t.Errorf("rope_delta %d, HF %d", l.RopeDelta, d)
	}

	v, err := NewVisionInputs(imgs, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	if v.Tokens != 8 || len(v.Segments) != 8 || v.Segments[1] != 0 || v.Segments[2] != 1 {
		t.Errorf("tokens %d, segments %v", v.Tokens, v.Segments)
	}
	idx, w := ints(t, f, "vision.interp_indices"), floats(t, f, "vision.interp_weights")
	for i := range idx {
		if int64(v.PosIdx[i]) != idx[i] || v.PosW[i] != w[i] {
			t.Fatalf("tap %d: (%d, %v), HF (%d, %v)", i, v.PosIdx[i], v.PosW[i], idx[i], w[i])
		}
	}
	vp := ints(t, f, "vision.position_ids")
	for i := range vp {
		if int64(v.RoPEPos[i]) != vp[i] {
			t.Fatalf("vision rope position %d: %d, HF %d", i, v.RoPEPos[i], vp[i])
		}
	}
	pv := floats(t, f, "pixel_values")
	if len(pv) != len(v.Pixels) {
		t.Fatalf("%d pixel values, HF %d", len(v.Pixels), len(pv))
	}
	for i := range pv {
		if v.Pixels[i] != pv[i] {
			t.Fatalf("pixel_values[%d] = %v, HF %v", i, v.Pixels[i], pv[i])
		}
	}
}

func TestExpandPromptErrors(t *testing.T) {
	px := &Pixels{GridT: 1, GridH: 2, GridW: 4, Values: make([]float32, 8*1536)}
	if _, err := ExpandPrompt([]int32{1, 250, 250}, []*Pixels{px}, tinyVL, 2); err == nil {
		t.Error("two placeholders, one image: no error")
	}
	if _, err := ExpandPrompt([]int32{1, 2}, []*Pixels{px}, tinyVL, 2); err == nil {
		t.Error("no placeholder, one image: no error")
	}
	odd := &Pixels{GridT: 1, GridH: 3, GridW: 4, Values: make([]float32, 12*1536)}
	if _, err := ExpandPrompt([]int32{250}, []*Pixels{odd}, tinyVL, 2); err == nil {
		t.Error("odd grid: no error")
	}
	l, err := ExpandPrompt([]int32{7, 8}, nil, tinyVL, 2)
	if err != nil || l.RopeDelta != 0 || len(l.Positions) != 6 || l.Positions[5] != 1 {
		t.Errorf("text only: %+v, %v", l, err)
	}
}

func TestAxisTapsFractional(t *testing.T) {
	// 6 rows over a 4-entry axis: src = i·3/5.
	taps, w := axisTaps(6, 4)
	for i := range 6 {
		src := float64(i) * 3 / 5
		fl := math.Floor(src)
		if int(taps[i][0]) != int(fl) || math.Abs(float64(w[i][0])-(1-(src-fl))) > 1e-6 {
			t.Errorf("row %d: taps %v weights %v", i, taps[i], w[i])
		}
	}
}

// TestPrepareAndCacheTokens checks the one-call entry point and that
// prefix-cache ids of image tokens depend on the image content only.
func TestPrepareAndCacheTokens(t *testing.T) {
	a, err := os.ReadFile(filepath.Join(imagesDir, "a.png"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := os.ReadFile(filepath.Join(imagesDir, "d.webp")) // same resized size as a.png (64×32)
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.MinPixels, o.MaxPixels = 32*32, 96*96
	prompt := []int32{5, 248, 250, 249, 6}
	p1, err := Prepare([][]byte{a}, prompt, tinyVL, o, 4)
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := Prepare([][]byte{a}, prompt, tinyVL, o, 4)
	p3, _ := Prepare([][]byte{d}, prompt, tinyVL, o, 4)
	if p1.Vision == nil || p1.Vision.Tokens != 2 || len(p1.Layout.Tokens) != 6 {
		t.Fatalf("prepared %+v", p1.Layout)
	}
	c1, c2, c3 := p1.Layout.CacheTokens, p2.Layout.CacheTokens, p3.Layout.CacheTokens
	if len(c1) != 6 || c1[0] != 5 || c1[1] != 248 || c1[5] != 6 {
		t.Fatalf("cache tokens %v", c1)
	}
	if !slices.Equal(c1, c2) {
		t.Errorf("same image, different cache ids: %v %v", c1, c2)
	}
	if c1[2] >= 0 || c1[3] >= 0 || c1[2] == c1[3] || c1[2] == c3[2] || c1[3] == c3[3] {
		t.Errorf("image cache ids %v vs another image's %v", c1[2:4], c3[2:4])
	}
	if p, err := Prepare(nil, []int32{1, 2}, tinyVL, o, 4); err != nil || p.Vision != nil {
		t.Errorf("text only: %+v, %v", p, err)
	}
	// Scatter: two image tokens at rows 2, 3 of 6.
	sc, err := p1.Layout.Scatter([]float32{1, 2, 3, 4}, 2)
	if err != nil || !slices.Equal(sc, []float32{0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0}) {
		t.Errorf("scatter: %v, %v", sc, err)
	}
	if _, err := p1.Layout.Scatter([]float32{1, 2, 3}, 2); err == nil {
		t.Error("scatter of 3 values for 2 tokens of width 2: no error")
	}
}
