package qwen3_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/internal/modeltest"
	"github.com/inference-pio/pio/internal/tolerance"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	"github.com/inference-pio/pio/passes"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/engine"
	"github.com/inference-pio/pio/runtime/kvcache"
)

// buildWith compiles a checkpoint with the given fusion and taps settings
// and loads it on the CPU backend.
func buildWith(t testing.TB, dir string, dt ir.DType, noFuse, taps bool) (*ir.Plan, *cpu.Backend) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "e.pio")
	res, err := compiler.Build(compiler.Options{Source: dir, Output: path, DType: dt, Check: true, Taps: taps, NoFuse: noFuse})
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(path, engine.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	be, err := cpu.FromEngine(e, cpu.Options{MaxTokens: 64, BlockSize: 4, NumBlocks: 64, MaxSeqs: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return res.Plan, be
}

// Fused and unfused engines of every golden model give the same outputs:
// every prompt's logits and, with taps, every layer's hidden state and the
// final norm, within 1e-5 relative (f32 compute both ways; the fused
// kernels round exactly as the core ops do, so the only differences come
// from summation order). Greedy generation, which decodes token by token
// through the paged cache, gives the same tokens.
func TestFusedMatchesUnfused(t *testing.T) {
	const tol = 1e-5
	for _, model := range []string{"qwen3-a", "qwen3-b"} {
		for _, dt := range []ir.DType{ir.F32, ir.BF16} {
			for _, taps := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%v/taps=%v", model, dt, taps), func(t *testing.T) {
					g, err := golden.Load(model)
					if err != nil {
						t.Fatal(err)
					}
					fp, fused := buildWith(t, g.Dir, dt, false, taps)
					up, plain := buildWith(t, g.Dir, dt, true, taps)
					if len(fp.Steps) >= len(up.Steps) {
						t.Errorf("fused plan has %d steps, unfused %d", len(fp.Steps), len(up.Steps))
					}
					names := []string{"logits"}
					if taps {
						names = append(names, "norm")
						for l := range g.Prompts[0].Hidden {
							names = append(names, fmt.Sprintf("hidden.%d", l))
						}
					}
					for pi, p := range g.Prompts {
						fullForward(t, fused, p.IDs)
						fullForward(t, plain, p.IDs)
						for _, name := range names {
							if e := golden.RelErr(output(t, fused, name), output(t, plain, name)); !tolerance.Within(t, e, tol) {
								t.Errorf("prompt %d %s: fused vs unfused relative error %.3g > %g", pi, name, e, tol)
							}
						}
					}
					for pi, p := range g.Prompts {
						var got [2][]int32
						for i, be := range []*cpu.Backend{fused, plain} {
							gen := modeltest.NewGenerator(be, kvcache.NewAllocator(64, 4), 64)
							got[i], err = gen.Generate(context.Background(), p.IDs, modeltest.GenerateOptions{MaxTokens: 8}, nil)
							if err != nil {
								t.Fatal(err)
							}
						}
						if !slices.Equal(got[0], got[1]) {
							t.Errorf("prompt %d greedy: fused %v, unfused %v", pi, got[0], got[1])
						}
					}
				})
			}
		}
	}
}

// Steps per decoder layer on Qwen3-0.6B's real shape: 18 unfused (norm,
// q/k/v, q/k norms, two ropes, attention, o, add, norm, gate, up, silu, mul,
// down, add), 5 fused (norm+qkv GEMM, qkv_attention, o+residual, norm+gate/up
// +SwiGLU, down+residual); the rest of the plan is embedding, final norm,
// gather and lm_head.
func TestStepsPerLayer(t *testing.T) {
	cfg, err := hf.ParseConfig([]byte(realConfigs["qwen3-0.6b (v4 spelling)"]))
	if err != nil {
		t.Fatal(err)
	}
	m, err := models.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		noFuse bool
		want   int
	}{{true, 18}, {false, 5}} {
		g, err := m.Build(models.BuildOptions{WeightDType: ir.BF16})
		if err != nil {
			t.Fatal(err)
		}
		if err := passes.Run(g, passes.Options{Check: true, NoFuse: tc.noFuse}); err != nil {
			t.Fatal(err)
		}
		p, err := passes.Lower(g)
		if err != nil {
			t.Fatal(err)
		}
		if got := (len(p.Steps) - 4) / cfg.NumHiddenLayers; got != tc.want || (len(p.Steps)-4)%cfg.NumHiddenLayers != 0 {
			t.Errorf("noFuse=%v: %d steps, %d per layer; want %d per layer", tc.noFuse, len(p.Steps), got, tc.want)
		}
	}
}
