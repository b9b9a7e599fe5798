package qwen3_test

import (
	"os"
	"testing"
	"time"

	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/kvcache"
)

// Fused against unfused engines on the CPU: prefill (one step over a
// prompt) and decode (one token per step) throughput in tokens/s, on the
// tiny golden model and, when PIO_BENCH_CKPT names a checkpoint directory
// (for example Qwen3-0.6B's shape with random weights from
// `go run ./cmd/internal/randckpt -o build/qwen3-0.6b-random`), on that:
//
//	go test ./models/qwen3 -run '^$' -bench Fusion -benchtime 3x
func BenchmarkFusion(b *testing.B) {
	g, err := golden.Load("qwen3-a")
	if err != nil {
		b.Fatal(err)
	}
	models := []struct {
		name, dir       string
		prefill, decode int
		dt              ir.DType
	}{{"tiny", g.Dir, 48, 32, ir.F32}}
	if dir := os.Getenv("PIO_BENCH_CKPT"); dir != "" {
		models = append(models, struct {
			name, dir       string
			prefill, decode int
			dt              ir.DType
		}{"ckpt", dir, 32, 8, ir.BF16})
	} else {
		b.Log("PIO_BENCH_CKPT not set: benchmarking the tiny golden model only")
	}
	for _, m := range models {
		for _, fuse := range []bool{false, true} {
			name := m.name + "/unfused"
			if fuse {
				name = m.name + "/fused"
			}
			b.Run(name, func(b *testing.B) {
				p, be := buildWith(b, m.dir, m.dt, !fuse, false)
				b.ReportMetric(float64(len(p.Steps)), "steps")
				ids := make([]int32, m.prefill)
				for i := range ids {
					ids[i] = int32(i*7 + 3)
				}
				var prefillNs, decodeNs float64
				for b.Loop() {
					alloc := kvcache.NewAllocator(64, 4)
					gen := runtime.NewGenerator(be, alloc, 64)
					var s runtime.Sequence
					t0 := nowNs()
					if _, err := gen.Feed(&s, ids); err != nil {
						b.Fatal(err)
					}
					t1 := nowNs()
					for i := 0; i < m.decode; i++ {
						if _, err := gen.Feed(&s, []int32{int32(i + 1)}); err != nil {
							b.Fatal(err)
						}
					}
					t2 := nowNs()
					gen.Release(&s)
					prefillNs += float64(t1 - t0)
					decodeNs += float64(t2 - t1)
				}
				b.ReportMetric(float64(b.N*m.prefill)/(prefillNs/1e9), "prefill-tok/s")
				b.ReportMetric(float64(b.N*m.decode)/(decodeNs/1e9), "decode-tok/s")
			})
		}
	}
}

func nowNs() int64 { return time.Now().UnixNano() }
