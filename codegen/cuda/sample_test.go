package cuda

import (
	"fmt"
	"strings"
	"testing"

	"github.com/inference-pio/pio/ir"
)

// TestGenerateCandidates: a plan with [S, V] f32 logits gets the
// candidates kernel, specialised to V and listed with the module's kernels;
// a plan without logits gets none.
func TestGenerateCandidates(t *testing.T) {
	for _, c := range allPlans(t) {
		m, err := Generate(c.plan)
		if err != nil {
			t.Fatal(err)
		}
		v := c.plan.Buffers[c.plan.Outputs[0].Buffer].Shape[1]
		if !strings.HasPrefix(m.Candidates, "candidates_") || !strings.Contains(strings.Join(m.Kernels, " "), m.Candidates) {
			t.Errorf("%s: candidates kernel %q not among %v", c.name, m.Candidates, m.Kernels)
			continue
		}
		if !strings.Contains(m.Source, " "+m.Candidates+"(") || !strings.Contains(m.Source, fmt.Sprintf("each row of %d logits: the tokens within", v)) {
			t.Errorf("%s: candidates kernel %s over %d logits not in the source", c.name, m.Candidates, v)
		}
	}
	b := ir.NewBuilder("nologits")
	tokens := b.Input("tokens", ir.I32, ir.T)
	b.Output("h", b.Embedding(b.Weight("table", ir.F32, 16, 8), tokens))
	m, err := Generate(LoweredPlan(t, b))
	if err != nil {
		t.Fatal(err)
	}
	if m.Candidates != "" || m.Argmax != "" {
		t.Errorf("plan without logits: candidates %q, argmax %q", m.Candidates, m.Argmax)
	}
}

// TestCompileCandidates compiles the candidates kernel for Qwen3's
// vocabulary, a tiny one and one that is not a multiple of a tile, for
// every target arch with the real nvcc (warnings are errors). It skips
// where nvcc is not installed.
func TestCompileCandidates(t *testing.T) {
	nvcc := NVCCOrSkip(t)
	src := NewKernelSource()
	for _, v := range []int{151936, 512, 1001} {
		name := fmt.Sprintf("candidates_v%d", v)
		text, err := candidatesText(int64(v))
		if err != nil {
			t.Fatal(err)
		}
		src.AddKernel(name, strings.ReplaceAll(text, "KNAME", name))
	}
	if imgs := CompileEveryArch(t, nvcc, src.String(), src.Names); len(imgs) != len(DefaultArchs) {
		t.Errorf("%d images for %v", len(imgs), DefaultArchs)
	}
}
