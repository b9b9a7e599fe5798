package cuda

import (
	"context"
	"strings"
	"testing"

	"github.com/inference-pio/pio/ir"
)

// moeModels are the tiny MoE and MLA checkpoints of testdata/tiny.
var moeModels = []string{"qwen3moe", "glm4moelite"}

// moePlans are their plans, fused and unfused, with bf16 and f32 weights.
func moePlans(t *testing.T) []namedPlan {
	var ps []namedPlan
	for _, name := range moeModels {
		for _, dt := range []ir.DType{ir.BF16, ir.F32} {
			ps = append(ps, namedPlan{name + "/" + dt.String(), planOf(t, name, dt)})
			ps = append(ps, namedPlan{name + "/" + dt.String() + "/unfused", unfusedPlanOf(t, name, dt)})
		}
	}
	return ps
}

// TestGenerateMoEPlans: every step of the MoE and MLA goldens' plans has a
// launch, every MoE op family template is used, and the workspace of the
// expert kernels covers their scratch.
func TestGenerateMoEPlans(t *testing.T) {
	used := map[string]bool{}
	for _, c := range moePlans(t) {
		m, err := Generate(c.plan)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		seen := make([]bool, len(c.plan.Steps))
		for _, l := range m.Launches {
			seen[l.Step] = true
			if l.Block <= 0 || l.Block > 1024 || l.Block%32 != 0 {
				t.Errorf("%s: step %d: block %d", c.name, l.Step, l.Block)
			}
			op := c.plan.Steps[l.Step].Op
			for _, p := range l.Params {
				if p.Kind == PWorkspace && l.Workspace <= 0 && (op == ir.OpMoE || op == ir.OpMoERouted) {
					t.Errorf("%s: step %d (%v): %s takes the workspace but asks for none", c.name, l.Step, op, l.Kernel)
				}
			}
			used[l.Kernel[:strings.LastIndex(l.Kernel, "_")]] = true
		}
		for i, ok := range seen {
			if !ok {
				t.Errorf("%s: step %d (%v) has no launch", c.name, i, c.plan.Steps[i].Op)
			}
		}
	}
	for _, k := range []string{"moe_route", "moe_group", "moe_gate_up", "moe_down", "moe_combine", "moe_norm", "moe_router",
		"slice", "head_matmul", "head_matmul_t", "latent_append", "mla_attention"} {
		if !used[k] {
			t.Errorf("no plan launches %s", k)
		}
	}
}

// TestCompileMoEModels compiles every kernel of the MoE and MLA goldens'
// plans for every target arch with the real nvcc (warnings as errors); it
// skips where nvcc is absent.
func TestCompileMoEModels(t *testing.T) {
	nvcc, err := FindNVCC()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	if testing.Short() {
		t.Skip("skipping nvcc in -short mode")
	}
	var src strings.Builder
	src.WriteString(prelude)
	seen := map[string]bool{}
	var names []string
	for _, c := range moePlans(t) {
		m, err := Generate(c.plan)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range m.Kernels {
			if !seen[k] {
				seen[k] = true
				names = append(names, k)
			}
		}
		for _, b := range m.bodies {
			if !seen["body:"+b] {
				seen["body:"+b] = true
				src.WriteString("\n" + b)
			}
		}
	}
	imgs, err := Compile(context.Background(), src.String(), CompileOptions{NVCC: nvcc, CacheDir: t.TempDir()})
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
	t.Logf("%d kernels compiled for %v", len(names), DefaultArchs)
}
