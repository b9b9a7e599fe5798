package cuda

import (
	"strings"
	"testing"

	"github.com/inference-pio/pio/ir"
)

// withCacheDType returns a copy of p whose paged caches are stored as dt,
// as pioc build --kv-dtype does.
func withCacheDType(p *ir.Plan, dt ir.DType) *ir.Plan {
	q := *p
	q.Caches = append([]ir.CacheSpec(nil), p.Caches...)
	for i := range q.Caches {
		if q.Caches[i].Kind.Paged() {
			q.Caches[i].DType = dt
		}
	}
	return &q
}

// TestBF16CacheKernels: with bf16 paged caches (pioc's default for bf16
// engines) the kernels that touch a cache — kv_append, qkv_prep, the
// prefill and decode attention, MLA's latent append and attention — take
// pio_bf16 cache pointers, and only they change; with nvcc, every such
// kernel of the golden models (GQA, gated and MLA attention) and the real
// Qwen3 shapes compiles for every target arch with warnings as errors.
func TestBF16CacheKernels(t *testing.T) {
	plans := allPlans(t)
	for _, name := range []string{"glm4moelite", "qwen3next/dense"} {
		plans = append(plans, namedPlan{name, planOf(t, name, ir.BF16)})
	}
	for name := range realShapes {
		plans = append(plans, namedPlan{name, configPlan(t, name)})
	}
	var src strings.Builder
	src.WriteString(prelude)
	seen := map[string]bool{}
	for _, c := range plans {
		m32, err := Generate(withCacheDType(c.plan, ir.F32))
		if err != nil {
			t.Fatal(err)
		}
		m16, err := Generate(withCacheDType(c.plan, ir.BF16))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		old := map[string]bool{}
		for _, b := range m32.bodies {
			old[b] = true
		}
		changed := 0
		for _, b := range m16.bodies {
			if old[b] {
				continue
			}
			changed++
			if !strings.Contains(b, "pio_bf16* __restrict__") {
				t.Errorf("%s: a kernel changed with the cache dtype but takes no bf16 pointer:\n%.300s", c.name, b)
			}
			if !seen[b] {
				seen[b] = true
				src.WriteString("\n" + b)
			}
		}
		if changed == 0 {
			t.Errorf("%s: no kernel depends on the cache dtype", c.name)
		}
	}
	CompileEveryArch(t, NVCCOrSkip(t), src.String(), nil)
	t.Logf("%d bf16-cache kernel bodies compiled for %v", len(seen), DefaultArchs)
}
