package cuda

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/frontends/image"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/internal/modeltest"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
	"github.com/inference-pio/pio/pio"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/engine"
)

// The tests here start from what `pioc build --target cuda` writes for the
// tiny Qwen3-VL: a kernels section per plan (the vision stage's and the
// text plan's). nvcc is a stand-in (the images are replaced), and each
// section's stored source is compiled for the emulator, so the launch
// tables and the code are the engine's own.

// cudaVLEngine builds the tiny Qwen3-VL with --target cuda (a stand-in
// nvcc) and rewrites it with every kernels section's images replaced by
// the emulator's build of that section's stored source. It returns the
// rewritten engine's path.
func cudaVLEngine(t *testing.T, gxx string, dt ir.DType) string {
	t.Helper()
	dir := t.TempDir()
	nvcc := filepath.Join(dir, "nvcc")
	script := `#!/bin/sh
if [ "$1" = "--version" ]; then echo "Cuda compilation tools, stand-in"; exit 0; fi
out=""
while [ $# -gt 0 ]; do
  case "$1" in -o) out="$2"; shift ;; esac
  shift
done
echo "not an image" > "$out"
`
	if err := os.WriteFile(nvcc, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // the stand-in's images stay out of the real cache
	built := filepath.Join(dir, "vl-cuda.pio")
	if _, err := compiler.Build(compiler.Options{Source: tinyVLDir, Output: built, DType: dt, Target: compiler.TargetCUDA, NVCC: nvcc}); err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(built, engine.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	meta := e.Meta
	if len(meta.Stages) != 1 || meta.Stages[0].Kernels == nil || meta.Kernels == nil {
		t.Fatalf("--target cuda engine: stages %d, stage kernels %v, main kernels %v", len(meta.Stages), len(meta.Stages) == 1 && meta.Stages[0].Kernels != nil, meta.Kernels != nil)
	}
	meta.Kernels = emuSection(t, gxx, meta.Kernels)
	meta.Stages = slices.Clone(meta.Stages)
	meta.Stages[0].Kernels = emuSection(t, gxx, meta.Stages[0].Kernels)
	specs := make([]engine.WeightSpec, len(e.Weights))
	for i, w := range e.Weights {
		specs[i] = engine.WeightSpec{Name: w.Name, DType: w.DType, Shape: w.Shape}
	}
	path := filepath.Join(dir, "vl-emu.pio")
	fill := func(i int, dst []byte) error { copy(dst, e.WeightData(i)); return nil }
	if err := engine.Create(path, &meta, specs, fill, engine.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return path
}

// emuSection returns a copy of a kernels section whose one image is the
// emulator's build of the section's own source (emuKernels does the same
// for a freshly generated module).
func emuSection(t *testing.T, gxx string, k *engine.Kernels) *engine.Kernels {
	t.Helper()
	var src strings.Builder
	src.Write(k.Source)
	src.WriteString("\n#include \"invoke.h\"\n")
	seen := map[string]bool{}
	for _, l := range k.Launches {
		if !seen[l.Kernel] {
			seen[l.Kernel] = true
			fmt.Fprintf(&src, "PIO_KERNEL(%s)\n", l.Kernel)
		}
	}
	for _, h := range []string{k.Argmax, k.Candidates} { // the sampling helpers
		if h != "" && !seen[h] {
			seen[h] = true
			fmt.Fprintf(&src, "PIO_KERNEL(%s)\n", h)
		}
	}
	so := emuBuild(t, gxx, src.String())
	c := *k
	c.Images = []abi.Image{{Arch: "sm_80", Data: append([]byte(so), 0)}}
	return &c
}

// imageInputs are the vision stage's inputs for the two test images, as
// pio lays them out.
func imageInputs(t *testing.T) (int, map[string]runtime.Input) {
	t.Helper()
	pc, err := os.ReadFile(filepath.Join(tinyVLDir, "preprocessor_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	po, err := image.ParseOptions(pc)
	if err != nil {
		t.Fatal(err)
	}
	var imgs []*image.Pixels
	for _, data := range modeltest.Images(t, "a.png", "b.png") {
		px, err := image.Process(data, po)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, px)
	}
	vin, err := image.NewVisionInputs(imgs, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	return vin.Tokens, map[string]runtime.Input{"pixel_values": {F32: vin.Pixels}, "pos_idx": {I32: vin.PosIdx}, "pos_w": {F32: vin.PosW},
		"vision_pos": {I32: vin.RoPEPos}, "segments": {I32: vin.Segments}}
}

// TestEmulatedStageFromEngine: StageFromEngine runs the vision stage of a
// --target cuda engine from the stage's own kernels section, and its image
// features and DeepStack features match the CPU backend's (f32 compute
// both ways; the CPU reduces norms and softmax sums in f64, hence 1e-4).
// A stage without kernels (a CPU-built engine) and an unknown stage are
// errors that say so.
func TestEmulatedStageFromEngine(t *testing.T) {
	gxx := useFakeDriver(t)
	e, err := engine.Open(cudaVLEngine(t, gxx, ir.BF16), engine.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	gpu, err := StageFromEngine(e, "vision", Options{MaxTokens: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer gpu.Close()
	ref, err := cpu.StageFromEngine(e, "vision", cpu.Options{MaxTokens: 64, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	if len(gpu.launches) != len(e.Meta.Stages[0].Kernels.Launches) {
		t.Errorf("%d launches, the stage's section has %d", len(gpu.launches), len(e.Meta.Stages[0].Kernels.Launches))
	}
	T, in := imageInputs(t)
	names := outputNames(e.Meta.Stages[0].Plan)
	if len(names) < 2 {
		t.Fatalf("vision outputs %v: want image_embeds and DeepStack features", names)
	}
	outs := stepBoth(t, visionBatch(T, in), names, gpu, ref)
	for i, n := range names {
		if e := golden.RelErr(outs[0][i], outs[1][i]); e > 1e-4 || len(outs[0][i]) != len(outs[1][i]) || len(outs[0][i]) == 0 {
			t.Errorf("%s: emulated CUDA vs CPU relative error %.3g (%d and %d values)", n, e, len(outs[0][i]), len(outs[1][i]))
		} else {
			t.Logf("%s: %d values, relative error %.3g", n, len(outs[0][i]), e)
		}
	}

	if _, err := StageFromEngine(e, "audio", Options{MaxTokens: 64}); err == nil || !strings.Contains(err.Error(), `no stage "audio"`) {
		t.Errorf("unknown stage: %v", err)
	}
	cpuPath := filepath.Join(t.TempDir(), "vl-cpu.pio")
	if _, err := compiler.Build(compiler.Options{Source: tinyVLDir, Output: cpuPath, DType: ir.BF16}); err != nil {
		t.Fatal(err)
	}
	ce, err := engine.Open(cpuPath, engine.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ce.Close()
	if _, err := StageFromEngine(ce, "vision", Options{MaxTokens: 64}); !errors.Is(err, ErrNoKernels) || !strings.Contains(err.Error(), `stage "vision"`) {
		t.Errorf("stage without kernels: %v, want ErrNoKernels naming the stage", err)
	}
}

// countSteps counts a backend's steps.
type countSteps struct {
	runtime.Backend
	n *int
}

func (c countSteps) Step(b *runtime.Batch) error { *c.n++; return c.Backend.Step(b) }

// TestEmulatedVLGolden: the whole image+text path through pio with a CUDA
// backend factory (as `piort serve --device cuda` plugs in): the vision
// stage and the text plan both run on the emulated CUDA backend, from the
// --target cuda engine's two kernels sections, and the greedy continuation
// of the two-image prompt is transformers'.
func TestEmulatedVLGolden(t *testing.T) {
	gxx := useFakeDriver(t)
	vlPioGolden(t, cudaVLEngine(t, gxx, ir.BF16))
}

// vlPioGolden loads the Qwen3-VL engine at path through pio with CUDA
// backends for both plans and checks the greedy continuation of the
// two-image golden prompt against transformers.
func vlPioGolden(t *testing.T, path string) {
	t.Helper()
	steps := map[string]*int{}
	factory := func(f *engine.Engine, sz pio.BackendSize) (runtime.Backend, error) {
		b, err := StageFromEngine(f, sz.Stage, Options{MaxTokens: sz.MaxTokens, NumBlocks: sz.NumBlocks, BlockSize: sz.BlockSize, MaxSeqs: sz.MaxSeqs})
		if err != nil {
			return nil, err
		}
		n := new(int)
		steps[sz.Stage] = n
		return countSteps{b, n}, nil
	}
	e, err := pio.Load(path, pio.Options{Threads: 1, MaxStepTokens: 16, CacheTokens: 256, BlockSize: 4, MaxSeqs: 2, MaxImageTokens: 32, Backend: factory})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if len(steps) != 2 || steps[""] == nil || steps["vision"] == nil {
		var made []string
		for k := range steps {
			made = append(made, fmt.Sprintf("%q", k))
		}
		t.Fatalf("backends made for stages %v, want the text plan (\"\") and \"vision\"", made)
	}
	prompt, want := vlGolden(t)
	zero := 0.0
	res, err := e.GenerateIDs(context.Background(), prompt, pio.GenerateOptions{MaxTokens: len(want), Temperature: &zero, IgnoreEOS: true, Images: modeltest.Images(t, "a.png", "b.png")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Tokens, want) {
		t.Errorf("greedy on CUDA %v, transformers %v", res.Tokens, want)
	}
	if *steps["vision"] != 1 || *steps[""] < len(want) {
		t.Errorf("%d vision steps (want 1), %d text steps (want at least %d)", *steps["vision"], *steps[""], len(want))
	}
}

// vlGolden returns transformers' prompt (one <|image_pad|> per image: pio
// expands each to the image's tokens) and its greedy continuation.
func vlGolden(t *testing.T) (prompt, greedy []int32) {
	t.Helper()
	f, err := hf.OpenSafetensors(filepath.Join(tinyVLDir, "golden.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	i64 := func(name string) []int32 {
		x, ok := f.Tensor(name)
		if !ok || x.DType != hf.I64 {
			t.Fatalf("golden %s missing or not i64", name)
		}
		out := make([]int32, len(x.Data)/8)
		for i := range out {
			out[i] = int32(int64(binary.LittleEndian.Uint64(x.Data[8*i:])))
		}
		return out
	}
	var cfg struct {
		ImageToken int32 `json:"image_token_id"`
	}
	if err := json.Unmarshal(mustRead(t, filepath.Join(tinyVLDir, "config.json")), &cfg); err != nil || cfg.ImageToken == 0 {
		t.Fatalf("config.json image_token_id: %v", err)
	}
	ids := i64("input_ids")
	for i, id := range ids {
		if id == cfg.ImageToken && i > 0 && ids[i-1] == cfg.ImageToken {
			continue
		}
		prompt = append(prompt, id)
	}
	return prompt, i64("greedy")
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
