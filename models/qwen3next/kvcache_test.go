package qwen3next_test

import (
	"testing"

	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/internal/modeltest"
	"github.com/inference-pio/pio/ir"
)

// pioc's default engine for the bf16 dense checkpoint stores the gated
// attention layers' KV cache in bf16 and keeps the DeltaNet state caches
// f32. Every cached K and V is rounded by up to 2^-8 relative (≈3.9e-3); the
// attention layers read them and the rounding compounds to about 2^-8 of
// the tensor scale (measured: up to 4.1e-3), so the goldens hold within
// 2e-2 (about 5·2^-8, still far below an O(1) error such as a wrong slot
// or gate), and the greedy continuation is unchanged.
func TestBF16KVCache(t *testing.T) {
	g, err := golden.Load("qwen3next/dense")
	if err != nil {
		t.Fatal(err)
	}
	e, be := modeltest.BuildKV(t, g.Dir, ir.BF16, ir.DInvalid, true, geometry)
	var kv, state int
	for _, c := range e.Meta.Plan.Caches {
		switch {
		case c.Kind == ir.CacheKV && c.DType == ir.BF16:
			kv++
		case c.Kind == ir.CacheState && c.DType == ir.F32:
			state++
		default:
			t.Errorf("%v cache (layer %d) of %v", c.Kind, c.Layer, c.DType)
		}
	}
	if kv == 0 || state == 0 {
		t.Fatalf("%d bf16 kv caches, %d f32 state caches: want both", kv, state)
	}
	for pi, p := range g.Prompts {
		modeltest.CheckGolden(t, be, geometry, pi, p, 2e-2)
	}
	modeltest.CheckGreedy(t, be, geometry, g.Prompts)
}
