package cuda

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/kvcache"
)

// TestEmulatedMoEMLA runs the tiny Qwen3-MoE and GLM-4.7-Flash goldens
// (routed experts, the fused moe_routed, MLA over the latent cache) on the
// emulated CUDA backend: logits match transformers within the CPU
// backend's tolerance and the CPU backend within 1e-4 (f32 compute both
// ways, summation order differs), and greedy decoding through the cache
// gives the CPU backend's tokens.
func TestEmulatedMoEMLA(t *testing.T) {
	gxx := useFakeDriver(t)
	for _, c := range []struct {
		model  string
		dt     ir.DType
		noFuse bool
	}{{"qwen3moe", ir.BF16, false}, {"qwen3moe", ir.F32, true}, {"glm4moelite", ir.BF16, false}, {"glm4moelite", ir.F32, true}} {
		t.Run(fmt.Sprintf("%s/%v/nofuse=%v", c.model, c.dt, c.noFuse), func(t *testing.T) {
			gpu, ref, g, _ := emuBackends(t, gxx, c.model, c.dt, c.noFuse)
			for pi, p := range g.Prompts {
				got, want := forward(t, gpu, p.IDs), forward(t, ref, p.IDs)
				t.Logf("prompt %d: relative error vs CPU %.3g, vs transformers %.3g (CPU %.3g)", pi, golden.RelErr(got, want), golden.RelErr(got, p.Logits), golden.RelErr(want, p.Logits))
				if e := golden.RelErr(got, want); e > 1e-4 {
					t.Errorf("prompt %d: logits vs CPU backend: relative error %.3g", pi, e)
				}
				if e, we := golden.RelErr(got, p.Logits), golden.RelErr(want, p.Logits); e > max(2*we, 1e-4) {
					t.Errorf("prompt %d: logits vs transformers: relative error %.3g (CPU backend %.3g)", pi, e, we)
				}
			}
			p := g.Prompts[0]
			var toks [2][]int32
			for i, be := range []runtime.Backend{gpu, ref} {
				gen := runtime.NewGenerator(be, kvcache.NewAllocator(64, 4), 64)
				var err error
				toks[i], err = gen.Generate(context.Background(), p.IDs, runtime.GenerateOptions{MaxTokens: 6}, nil)
				if err != nil {
					t.Fatal(err)
				}
			}
			if !slices.Equal(toks[0], toks[1]) {
				t.Errorf("greedy: emulated CUDA %v, CPU %v", toks[0], toks[1])
			}
		})
	}
}
