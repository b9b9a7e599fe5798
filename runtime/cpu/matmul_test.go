package cpu

import (
	"fmt"
	goruntime "runtime"
	"testing"

	"github.com/inference-pio/pio/ir"
)

// BenchmarkMatMul times y = x·Wᵀ for x [M, 1024] and W [3072, 1024] (a
// Qwen3-0.6B gate projection) on GOMAXPROCS threads: M = 1 is a decode
// step, M = 64 a prefill chunk.
func BenchmarkMatMul(b *testing.B) {
	const K, N = 1024, 3072
	for _, dt := range []ir.DType{ir.F32, ir.BF16} {
		for _, M := range []int{1, 64} {
			b.Run(fmt.Sprintf("%v/%dx%d·%dx%d", dt, M, K, K, N), func(b *testing.B) {
				ws := newWeightSet(1)
				w := encode(dt, func() []float32 {
					v := make([]float32, N*K)
					for i := range v {
						v[i] = roundTo(dt, float32(ws.rng.NormFloat64()))
					}
					return v
				}())
				x := make([]float32, M*K)
				for i := range x {
					x[i] = float32(ws.rng.NormFloat64())
				}
				threads := goruntime.GOMAXPROCS(0)
				be := &Backend{pool: newPool(threads), scratch: make([]scratch, threads), t: M}
				defer be.pool.close()
				m := matrix{rows: N, cols: K, dt: dt}
				if dt == ir.F32 {
					m.f32 = viewF32(w)
				} else {
					m.u16 = viewU16(w)
				}
				for i := range be.scratch {
					be.scratch[i].w = make([]float32, nTile*K)
				}
				k := &matmulK{b: be, x: tensor{dt: ir.F32, shape: ir.Sh(ir.T, K), f32: x}, w: m, y: make([]float32, M*N), k: K, n: N}
				b.SetBytes(int64(len(w)))
				b.ResetTimer()
				for b.Loop() {
					k.exec(be)
				}
				b.ReportMetric(2*float64(M*N*K)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
