package qwen3vl_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/frontends/image"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models/qwen3vl"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/engine"
)

const tinyVL = "../../testdata/tiny/qwen3vl"

// TestUnsortedDeepStackRuns builds the tiny Qwen3-VL from a copy whose
// deepstack_visual_indexes is [3, 0, 2] instead of [0, 2, 3], its DeepStack
// mergers renumbered to match (merger k holds the shipped merger for the
// block the new list names at k). transformers computes the same DeepStack
// features for both (it collects them in block order, each block with the
// merger at its position in the list; see TestDeepStackOrder), so the
// vision stage's outputs must be equal to the bit.
func TestUnsortedDeepStackRuns(t *testing.T) {
	sorted, unsorted := []int{0, 2, 3}, []int{3, 0, 2}
	dir := t.TempDir()
	entries, err := os.ReadDir(tinyVL)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(tinyVL, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		switch e.Name() {
		case "config.json":
			var c map[string]any
			if err := json.Unmarshal(b, &c); err != nil {
				t.Fatal(err)
			}
			c["vision_config"].(map[string]any)["deepstack_visual_indexes"] = unsorted
			if b, err = json.Marshal(c); err != nil {
				t.Fatal(err)
			}
		case "model.safetensors":
			b = renumberMergers(t, filepath.Join(tinyVL, e.Name()), sorted, unsorted)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, got := runVision(t, tinyVL), runVision(t, dir)
	for name, w := range want {
		if g := got[name]; !slices.Equal(g, w) {
			t.Errorf("%s differs with deepstack_visual_indexes %v", name, unsorted)
		}
	}
	if len(want) != 1+len(sorted) {
		t.Errorf("vision outputs %d, want image_embeds and %d DeepStack features", len(want), len(sorted))
	}
}

// renumberMergers returns the safetensors file at path with merger k of
// the unsorted list holding the sorted list's merger for the same block.
func renumberMergers(t *testing.T, path string, sorted, unsorted []int) []byte {
	t.Helper()
	f, err := hf.OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const p = "model.visual.deepstack_merger_list."
	var ts []hf.Tensor
	for _, name := range f.Names() {
		x, _ := f.Tensor(name)
		c := *x
		if rest, ok := strings.CutPrefix(name, p); ok {
			idx, tail, _ := strings.Cut(rest, ".")
			k, err := strconv.Atoi(idx)
			if err != nil {
				t.Fatal(err)
			}
			// sorted's merger k serves block sorted[k], which unsorted lists at j.
			c.Name = p + strconv.Itoa(slices.Index(unsorted, sorted[k])) + "." + tail
		}
		c.Data = bytes.Clone(x.Data)
		ts = append(ts, c)
	}
	var buf bytes.Buffer
	if err := hf.WriteSafetensors(&buf, ts, f.Metadata()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// runVision compiles the checkpoint in dir and runs its vision stage on
// the test images a.png and b.png, returning every output.
func runVision(t *testing.T, dir string) map[string][]float32 {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vl.pio")
	if _, err := compiler.Build(compiler.Options{Source: dir, Output: path, DType: ir.BF16, Check: true}); err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(path, engine.OpenOptions{VerifyWeights: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	hc, err := hf.ParseConfig(e.Meta.Model.ConfigJSON)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := qwen3vl.ParseConfig(hc)
	if err != nil {
		t.Fatal(err)
	}
	po, err := image.ParseOptions(e.Meta.PreprocessorConfigJSON)
	if err != nil {
		t.Fatal(err)
	}
	var files [][]byte
	for _, n := range []string{"a.png", "b.png"} {
		b, err := os.ReadFile(filepath.Join("../../testdata/images", n))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b)
	}
	imgs, err := image.ProcessAll(files, po)
	if err != nil {
		t.Fatal(err)
	}
	side := 1
	for side*side < cfg.Vision.NumPositionEmbeddings {
		side++
	}
	vin, err := image.NewVisionInputs(imgs, side, cfg.Vision.MergeSize)
	if err != nil {
		t.Fatal(err)
	}
	be, err := cpu.StageFromEngine(e, qwen3vl.StageNames[0], cpu.Options{MaxTokens: vin.Tokens, MaxSeqs: 1, NumBlocks: 1, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	bt := &runtime.Batch{Seqs: []runtime.SeqView{{}}, LogitRows: []int32{int32(vin.Tokens - 1)},
		Inputs: map[string]runtime.Input{
			qwen3vl.InPixels: {F32: vin.Pixels}, qwen3vl.InPosIdx: {I32: vin.PosIdx}, qwen3vl.InPosW: {F32: vin.PosW},
			qwen3vl.InRoPEPos: {I32: vin.RoPEPos}, qwen3vl.InSegments: {I32: vin.Segments},
		}}
	for i := range vin.Tokens {
		bt.Tokens = append(bt.Tokens, 0)
		bt.Positions = append(bt.Positions, int32(i))
		bt.SeqOfToken = append(bt.SeqOfToken, 0)
	}
	if err := be.Step(bt); err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	for _, o := range e.Meta.Stages[0].Plan.Outputs {
		v, _, err := be.Output(o.Name)
		if err != nil {
			t.Fatal(err)
		}
		out[o.Name] = slices.Clone(v)
	}
	return out
}
