package cuda_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/inference-pio/pio/codegen/cuda"
	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime/engine"
)

// vlPlans builds the tiny Qwen3-VL with pioc's driver and returns its vision
// stage and text plans, f32 and bf16 weights.
func vlPlans(t *testing.T) map[string]*ir.Plan {
	t.Helper()
	ps := map[string]*ir.Plan{}
	for _, dt := range []ir.DType{ir.F32, ir.BF16} {
		path := filepath.Join(t.TempDir(), "vl.pio")
		if _, err := compiler.Build(compiler.Options{Source: "../../testdata/tiny/qwen3vl", Output: path, DType: dt}); err != nil {
			t.Fatal(err)
		}
		e, err := engine.Open(path, engine.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Meta.Stages) != 1 {
			t.Fatalf("%d stages, want the vision stage", len(e.Meta.Stages))
		}
		ps["vision/"+dt.String()] = e.Meta.Stages[0].Plan
		ps["text/"+dt.String()] = e.Meta.Plan
		e.Close()
	}
	return ps
}

// TestGenerateVisionPlans: every step of both Qwen3-VL plans gets a launch,
// and each vision-family op its own kernel.
func TestGenerateVisionPlans(t *testing.T) {
	want := map[string][]string{
		"vision": {"layer_norm_", "gelu_", "bias_add_", "segment_attention_", "mrope_", "weighted_rows_"},
		"text":   {"mrope_", "add_rows_", "set_rows_"},
	}
	for name, p := range vlPlans(t) {
		m, err := cuda.Generate(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		launched := make([]bool, len(p.Steps))
		for _, l := range m.Launches {
			launched[l.Step] = true
			if !slices.Contains(m.Kernels, l.Kernel) {
				t.Errorf("%s: step %d launches unknown kernel %s", name, l.Step, l.Kernel)
			}
		}
		if i := slices.Index(launched, false); i >= 0 {
			t.Errorf("%s: step %d (%v) has no launch", name, i, p.Steps[i].Op)
		}
		for _, prefix := range want[strings.Split(name, "/")[0]] {
			if !slices.ContainsFunc(m.Kernels, func(k string) bool { return strings.HasPrefix(k, prefix) }) {
				t.Errorf("%s: no %s kernel among %v", name, prefix, m.Kernels)
			}
		}
	}
}

// TestCompileVisionPlans compiles every kernel of both tiny Qwen3-VL plans
// (f32 and bf16 weights) for every target arch with the real nvcc,
// warnings as errors. It skips without nvcc.
func TestCompileVisionPlans(t *testing.T) {
	nvcc, err := cuda.FindNVCC()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	if testing.Short() {
		t.Skip("skipping nvcc in -short mode")
	}
	var src strings.Builder
	src.WriteString(cuda.Prelude)
	seen := map[string]bool{}
	var names []string
	for _, p := range vlPlans(t) {
		m, err := cuda.Generate(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range m.Kernels {
			if !seen[k] {
				seen[k] = true
				names = append(names, k)
			}
		}
		for _, b := range cuda.ModuleBodies(m) {
			if !seen["body:"+b] {
				seen["body:"+b] = true
				src.WriteString("\n" + b)
			}
		}
	}
	imgs, err := cuda.Compile(context.Background(), src.String(), cuda.CompileOptions{NVCC: nvcc, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range imgs {
		for _, k := range names {
			if !strings.Contains(string(im.Data), k) {
				t.Errorf("%s: kernel %s missing from the image", im.Arch, k)
			}
		}
	}
	t.Logf("%d kernels compiled for %v", len(names), cuda.DefaultArchs)
}
