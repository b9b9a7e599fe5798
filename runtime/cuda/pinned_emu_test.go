package cuda

import (
	"testing"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
)

// Outputs come back through page-locked host memory: the slice Output
// returns lies in a cuMemAllocHost buffer, a bigger step replaces it (the
// old one freed), the values still match the CPU backend, and Close frees
// every such buffer.
func TestEmulatedPinnedOutputs(t *testing.T) {
	gxx := useFakeDriver(t)
	var live func() int32
	purego.RegisterLibFunc(&live, 0, "fake_host_allocs_live") // 0: RTLD_DEFAULT, the fake is loaded RTLD_GLOBAL
	before := live()
	gpu, ref, _, _ := emuBackends(t, gxx, "qwen3-a", ir.F32, false)
	step := func(n int) {
		t.Helper()
		bt := &runtime.Batch{Seqs: []runtime.SeqView{{Blocks: []int32{0, 1, 2, 3, 4, 5, 6, 7}}}}
		for i := 0; i < n; i++ {
			bt.Tokens = append(bt.Tokens, int32(3+i%11))
			bt.Positions = append(bt.Positions, int32(i))
			bt.SeqOfToken = append(bt.SeqOfToken, 0)
			bt.LogitRows = append(bt.LogitRows, int32(i)) // every row: S grows with n
		}
		for _, be := range []runtime.Backend{gpu, ref} {
			if err := be.Step(bt); err != nil {
				t.Fatal(err)
			}
		}
		got, _, err := gpu.Output("logits")
		if err != nil {
			t.Fatal(err)
		}
		want, _, err := ref.Output("logits")
		if err != nil {
			t.Fatal(err)
		}
		if e := golden.RelErr(got, want); e > 1e-4 {
			t.Fatalf("%d rows: relative error %.3g", n, e)
		}
		p, ok := gpu.pinned[gpu.outputs["logits"]]
		if !ok || unsafe.Pointer(&got[0]) != p {
			t.Fatalf("%d rows: logits not in page-locked memory", n)
		}
		if live()-before != 1 {
			t.Fatalf("%d rows: %d page-locked buffers live, want 1", n, live()-before)
		}
	}
	step(2)
	step(9)
	step(4) // fits: no new buffer
	gpu.Close()
	if live() != before {
		t.Errorf("after Close: %d page-locked buffers live, want %d", live(), before)
	}
}
