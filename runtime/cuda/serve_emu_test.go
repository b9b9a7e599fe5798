package cuda

import (
	"testing"

	"github.com/inference-pio/pio/ir"
)

// TestEmulatedServe is TestGPUServe on the emulator: the default engine
// (bf16 weights and KV cache) served by the scheduler, greedy tokens taken
// from the device argmax, against the CPU backend.
func TestEmulatedServe(t *testing.T) {
	gxx := useFakeDriver(t)
	gpu, ref, g, e := emuBackendsKV(t, gxx, "qwen3-a", ir.BF16, ir.DInvalid, false)
	if c := e.Meta.Plan.Caches; len(c) == 0 || c[0].DType != ir.BF16 {
		t.Fatalf("default engine's caches %+v: want bf16", c)
	}
	serveParity(t, gpu, ref, g, 64, 4, 4)
}
