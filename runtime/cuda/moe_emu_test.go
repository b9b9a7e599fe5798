package cuda

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/internal/modeltest"
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
				gen := modeltest.NewGenerator(be, kvcache.NewAllocator(64, 4), 64)
				var err error
				toks[i], err = gen.Generate(context.Background(), p.IDs, modeltest.GenerateOptions{MaxTokens: 6}, nil)
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

// TestEmulatedMLASplitDecode: GLM's latent attention decoding at positions
// past several decode splits (SplitSize positions each; the split kernel
// and the combine) agrees with the CPU backend, and so does the prefill of
// those 300 positions.
func TestEmulatedMLASplitDecode(t *testing.T) {
	gxx := useFakeDriver(t)
	e, _ := emuEngine(t, gxx, "glm4moelite", compiler.Options{DType: ir.F32})
	const n, bs = 300, 4
	gpu, ref := engineBackends(t, e, Options{MaxTokens: n, NumBlocks: 128, BlockSize: bs, MaxSeqs: 1})
	if gpu.splits < 2 {
		t.Fatalf("%d decode splits: the test wants several", gpu.splits)
	}
	var blocks []int32
	for i := 0; i < 128; i++ {
		blocks = append(blocks, int32(127-i)) // not in order
	}
	step := func(be runtime.Backend, toks []int32, pos0 int) []float32 {
		bt := runtime.Batch{Tokens: toks, Seqs: []runtime.SeqView{{Blocks: blocks}}}
		for i := range toks {
			bt.Positions = append(bt.Positions, int32(pos0+i))
			bt.SeqOfToken = append(bt.SeqOfToken, 0)
		}
		bt.LogitRows = []int32{int32(len(toks) - 1)}
		if err := be.Step(&bt); err != nil {
			t.Fatal(err)
		}
		out, _, err := be.Output("logits")
		if err != nil {
			t.Fatal(err)
		}
		return slices.Clone(out)
	}
	prompt := make([]int32, n)
	for i := range prompt {
		prompt[i] = int32((i*37 + 11) % 250)
	}
	if err := golden.RelErr(step(gpu, prompt, 0), step(ref, prompt, 0)); err > 1e-4 {
		t.Fatalf("prefill of %d: relative error %.3g", n, err)
	}
	for i, tok := range []int32{3, 77, 140} {
		got, want := step(gpu, []int32{tok}, n+i), step(ref, []int32{tok}, n+i)
		if err := golden.RelErr(got, want); err > 1e-4 {
			t.Errorf("decode at position %d: relative error %.3g", n+i, err)
		}
	}
}
