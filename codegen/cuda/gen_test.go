package cuda

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	_ "github.com/inference-pio/pio/models/all"
	"github.com/inference-pio/pio/passes"
)

var update = flag.Bool("update", false, "rewrite testdata/*.cu from the generator")

// goldenModels are the tiny checkpoints of testdata/tiny.
var goldenModels = []string{"qwen3-a", "qwen3-b"}

// planOf builds the plan of a tiny checkpoint as pioc build does.
func planOf(t *testing.T, name string, dt ir.DType) *ir.Plan { return buildPlan(t, name, dt, true) }

// unfusedPlanOf lowers the model's graph with no passes at all: every core
// op of the model stays a step of its own.
func unfusedPlanOf(t *testing.T, name string, dt ir.DType) *ir.Plan {
	return buildPlan(t, name, dt, false)
}

func buildPlan(t *testing.T, name string, dt ir.DType, pipeline bool) *ir.Plan {
	t.Helper()
	root, err := golden.Root()
	if err != nil {
		t.Fatal(err)
	}
	ck, err := hf.OpenCheckpoint(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	m, err := models.New(ck.Config)
	if err != nil {
		t.Fatal(err)
	}
	has := func(n string) bool { _, ok := ck.Tensor(n); return ok }
	g, err := m.Build(models.BuildOptions{WeightDType: dt, Has: has})
	if err != nil {
		t.Fatal(err)
	}
	if pipeline {
		if err := passes.Run(g, passes.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := passes.Lower(g)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGenerateCoversEveryStep(t *testing.T) {
	for _, c := range allPlans(t) {
		name, p := c.name, c.plan
		m, err := Generate(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		seen := make([]bool, len(p.Steps))
		kernels := map[string]bool{}
		for _, k := range m.Kernels {
			kernels[k] = true
			if !strings.Contains(m.Source, `extern "C" __global__ void __launch_bounds__`) || !strings.Contains(m.Source, " "+k+"(") {
				t.Errorf("%s: kernel %s not in the source", name, k)
			}
		}
		for _, l := range m.Launches {
			seen[l.Step] = true
			if !kernels[l.Kernel] {
				t.Errorf("%s: step %d launches unknown kernel %s", name, l.Step, l.Kernel)
			}
			if l.Block <= 0 || l.Block > 1024 || l.Block%32 != 0 {
				t.Errorf("%s: step %d: block %d", name, l.Step, l.Block)
			}
		}
		for i, ok := range seen {
			if !ok {
				t.Errorf("%s: step %d (%v) has no launch", name, i, p.Steps[i].Op)
			}
		}
		// Identical instantiations are shared across the layers.
		if countPrefix(m.Kernels, "matmul_warp_") == 0 || len(m.Kernels) >= len(m.Launches) {
			t.Errorf("%s: %d kernels for %d launches: %v", name, len(m.Kernels), len(m.Launches), m.Kernels)
		}
		if m.Argmax == "" || m.ArgmaxVocab != int(p.Buffers[p.Outputs[0].Buffer].Shape[1]) {
			t.Errorf("%s: argmax %q over %d", name, m.Argmax, m.ArgmaxVocab)
		}
		if m.TileTokens < 1 || m.TileTokens > maxTileTokens {
			t.Errorf("%s: tile tokens %d", name, m.TileTokens)
		}
	}
}

type namedPlan struct {
	name string
	plan *ir.Plan
}

// allPlans are the plans of every golden model, fused (the pipeline) and
// unfused, with bf16 and f32 weights.
func allPlans(t *testing.T) []namedPlan {
	var ps []namedPlan
	for _, name := range goldenModels {
		for _, dt := range []ir.DType{ir.BF16, ir.F32} {
			ps = append(ps, namedPlan{name + "/" + dt.String(), planOf(t, name, dt)})
			ps = append(ps, namedPlan{name + "/" + dt.String() + "/unfused", unfusedPlanOf(t, name, dt)})
		}
	}
	return ps
}

func countPrefix(ss []string, p string) int {
	n := 0
	for _, s := range ss {
		if strings.HasPrefix(s, p) {
			n++
		}
	}
	return n
}

// TestGenerateDeterministic: the same plan gives the same bytes (the nvcc
// cache and the engine's reproducibility depend on it).
func TestGenerateDeterministic(t *testing.T) {
	p := planOf(t, "qwen3-a", ir.BF16)
	a, err := Generate(p)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generate(p)
	if a.Source != b.Source {
		t.Fatal("two generations differ")
	}
}

func TestGenerateRejects(t *testing.T) {
	p := planOf(t, "qwen3-a", ir.BF16)
	bad := *p
	bad.Steps = append([]ir.Step(nil), p.Steps...)
	bad.Steps[3].Op = ir.OpReshape
	if _, err := Generate(&bad); err == nil || !strings.Contains(err.Error(), "step 3: op reshape has no CUDA template") {
		t.Errorf("reshape step: got %v", err)
	}
	if _, err := Generate(nil); err == nil {
		t.Error("nil plan accepted")
	}
}

// TestGoldenSource snapshots the generated module of qwen3-a (bf16): a
// change to a template shows up as a diff here (go test -update rewrites it).
func TestGoldenSource(t *testing.T) {
	m, err := Generate(planOf(t, "qwen3-a", ir.BF16))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "qwen3-a.bf16.cu")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(m.Source), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./codegen/cuda -update)", err)
	}
	if string(want) != m.Source {
		t.Errorf("generated source differs from %s (go test ./codegen/cuda -update to accept):\n%s", path, firstDiff(string(want), m.Source))
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return "line " + strconv.Itoa(i+1) + ":\n-" + x + "\n+" + y
		}
	}
	return ""
}

// TestCompileAllGoldenModels compiles every generated kernel of every
// golden model (f32 and bf16 weights, fused and unfused) and of the real
// Qwen3-0.6B and 4B shapes for every target arch with the real nvcc (with
// warnings as errors, so a kernel over the shared-memory limit fails). CI
// installs nvcc; elsewhere the test skips.
func TestCompileAllGoldenModels(t *testing.T) {
	nvcc := NVCCOrSkip(t)
	// One module holds every distinct kernel of every plan: one nvcc run per arch.
	src := NewKernelSource()
	plans := allPlans(t)
	for name := range realShapes {
		plans = append(plans, namedPlan{name, configPlan(t, name)})
	}
	for _, c := range plans {
		m, err := Generate(c.plan)
		if err != nil {
			t.Fatal(err)
		}
		src.Add(m, nil, nil)
	}
	CompileEveryArch(t, nvcc, src.String(), src.Names)
	t.Logf("%d kernels compiled for %v", len(src.Names), DefaultArchs)
}
