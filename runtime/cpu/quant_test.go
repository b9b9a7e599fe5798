package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	goruntime "runtime"
	"testing"
	"unsafe"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime/cpu/kern"
)

// randQ returns a random quantized [N, K] matrix in format f and its f32
// decoding.
func randQ(r *rand.Rand, f qformat, N, K, G int) (*qmatrix, []float32) {
	q := &qmatrix{rows: N, cols: K, group: G, format: f, scale: make([]float32, N*K/G)}
	for i := range q.scale {
		q.scale[i] = float32(0.01 + 0.05*r.Float64())
	}
	nb := N * K
	if f == qInt4 {
		nb /= 2
	}
	codes := make([]byte, nb)
	for i := range codes {
		codes[i] = byte(r.IntN(256))
		if f == qFP8 && (codes[i]&0x78 == 0 || codes[i]&0x7f == 0x7f) {
			codes[i] = 0x38 // no subnormal or NaN codes
		}
	}
	if f == qInt8 {
		q.i8 = unsafe.Slice((*int8)(unsafe.Pointer(&codes[0])), nb)
	} else {
		q.u8 = codes
	}
	w := make([]float32, N*K)
	for n := 0; n < N; n++ {
		q.rowInto(n, w[n*K:(n+1)*K])
	}
	return q, w
}

// matmul_q on either path (dot products for decode, decoded tiles and the
// micro-kernel for prefill) equals the f32 matmul of the decoded weights up
// to f32 summation order.
func TestMatMulQ(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const K, N, G = 128, 37, 32
	be := &Backend{pool: newPool(3), scratch: make([]scratch, 3)}
	defer be.pool.close()
	for i := range be.scratch {
		be.scratch[i].w = make([]float32, nTile*K)
	}
	for _, f := range []qformat{qInt8, qInt4, qFP8} {
		q, w := randQ(r, f, N, K, G)
		for _, M := range []int{1, 3, 9, 70} {
			t.Run(fmt.Sprintf("format%d/M%d", f, M), func(t *testing.T) {
				x := make([]float32, M*K)
				for i := range x {
					x[i] = float32(r.NormFloat64())
				}
				be.t = M
				k := &matmulK{b: be, x: tensor{dt: ir.F32, shape: ir.Sh(ir.T, K), f32: x}, q: q, y: make([]float32, M*N), k: K, n: N}
				if err := k.exec(be); err != nil {
					t.Fatal(err)
				}
				for m := 0; m < M; m++ {
					for n := 0; n < N; n++ {
						var ref, abs float64
						for i := 0; i < K; i++ {
							p := float64(x[m*K+i]) * float64(w[n*K+i])
							ref, abs = ref+p, abs+math.Abs(p)
						}
						if d := math.Abs(float64(k.y[m*N+n]) - ref); d > 4*K*0x1p-24*abs {
							t.Fatalf("y[%d,%d] = %g, want %g", m, n, k.y[m*N+n], ref)
						}
					}
				}
				if a := testing.AllocsPerRun(5, func() { k.exec(be) }); a != 0 {
					t.Errorf("matmul_q allocates %v times per step", a)
				}
			})
		}
	}
}

// BenchmarkMatMulQ is BenchmarkMatMul for quantized weights: decode (M = 1)
// reads the codes in place; compare the MB/s (weight bytes) across formats.
func BenchmarkMatMulQ(b *testing.B) {
	const K, N, G = 1024, 3072, 32
	r := rand.New(rand.NewPCG(3, 4))
	for _, f := range []qformat{qInt8, qInt4, qFP8} {
		q, _ := randQ(r, f, N, K, G)
		for _, M := range []int{1, 4, 64} {
			b.Run(fmt.Sprintf("%s/%dx%d·%dx%d", []string{"", "int8", "int4", "fp8"}[f], M, K, K, N), func(b *testing.B) {
				threads := goruntime.GOMAXPROCS(0)
				be := &Backend{pool: newPool(threads), scratch: make([]scratch, threads), t: M}
				defer be.pool.close()
				for i := range be.scratch {
					be.scratch[i].w = make([]float32, nTile*K)
				}
				x := make([]float32, M*K)
				k := &matmulK{b: be, x: tensor{dt: ir.F32, shape: ir.Sh(ir.T, K), f32: x}, q: q, y: make([]float32, M*N), k: K, n: N}
				bytes := len(q.i8) + len(q.u8) + 4*len(q.scale)
				b.SetBytes(int64(bytes))
				for b.Loop() {
					k.exec(be)
				}
				b.ReportMetric(2*float64(M*N*K)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
	b.Logf("kernels: %s", kern.Features())
}
