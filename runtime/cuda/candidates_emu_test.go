package cuda

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/inference-pio/pio/ir"
)

// TestEmulatedCandidates: the candidates kernel against the Go reference
// on the tiny model's logits and on synthetic rows (checkCandidates), for
// the model's 512-token vocabulary and for a 4999-token one that spans
// three of the kernel's tiles and ends in a partial one.
func TestEmulatedCandidates(t *testing.T) {
	gxx := useFakeDriver(t)
	t.Run("qwen3-a", func(t *testing.T) {
		gpu, _, _, _ := emuBackends(t, gxx, "qwen3-a", ir.F32, false)
		checkCandidates(t, gpu)
	})
	t.Run("vocab4999", func(t *testing.T) {
		const v = 4999
		b := ir.NewBuilder("rows")
		tokens := b.Input("tokens", ir.I32, ir.T)
		rows := b.Input("logit_rows", ir.I32, ir.S)
		b.Output("logits", b.GatherRows(b.Embedding(b.Weight("table", ir.F32, 16, v), tokens), rows))
		p := loweredPlan(t, b)
		data := make([]byte, 16*v*4)
		for j := 0; j < 16*v; j++ {
			binary.LittleEndian.PutUint32(data[4*j:], math.Float32bits(float32((j*7919)%1013)/64))
		}
		gpu, err := New(p, []Weight{{DType: ir.F32, Shape: []int64{16, v}, Data: data}}, emuKernels(t, gxx, p), Options{MaxTokens: 8, MaxSeqs: 4, NumBlocks: 4, BlockSize: 4})
		if err != nil {
			t.Fatal(err)
		}
		defer gpu.Close()
		checkCandidates(t, gpu)
	})
}

// TestEmulatedServeSampled is TestGPUServeSampled on the emulator: seeded
// sampling requests served from the device's candidates give the CPU
// backend's tokens (same engine, f32 KV cache), also when most rows have
// too many candidates and fall back to the logits.
func TestEmulatedServeSampled(t *testing.T) {
	gxx := useFakeDriver(t)
	gpu, ref, g, _ := emuBackends(t, gxx, "qwen3-a", ir.F32, false)
	serveSampled(t, gpu, ref, g, 64, 4, 4, 0)
	serveSampled(t, gpu, ref, g, 64, 4, 4, 4) // rows past 4 candidates sample from the logits
}
