package qwen3_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/internal/modeltest"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/kvcache"
)

// BenchmarkFusion compares fused and unfused engines on the CPU: prefill
// (one step over a prompt) and decode (one token per step) in tokens/s,
// and their ratio unfused/fused time (the speedup), in wall time and in
// CPU time (which a busy machine disturbs less). Both engines run in every
// iteration, alternating which goes first, so machine noise hits both
// alike. It runs
// the tiny golden model and, when PIO_BENCH_CKPT names checkpoint
// directories (comma-separated; for example Qwen3-0.6B's shape with random
// weights from `go run ./cmd/internal/randckpt -o build/qwen3-0.6b-random`),
// those too, with bf16 weights:
//
//	PIO_BENCH_CKPT=build/qwen3-0.6b-random go test ./models/qwen3 -run '^$' -bench Fusion -benchtime 5x
func BenchmarkFusion(b *testing.B) {
	g, err := golden.Load("qwen3-a")
	if err != nil {
		b.Fatal(err)
	}
	type model struct {
		name, dir       string
		dt              ir.DType
		prefill, decode int
	}
	models := []model{{"tiny-golden", g.Dir, ir.F32, 48, 32}}
	if dirs := os.Getenv("PIO_BENCH_CKPT"); dirs != "" {
		for _, dir := range strings.Split(dirs, ",") {
			models = append(models, model{filepath.Base(dir), dir, ir.BF16, 32, 8})
		}
	} else {
		b.Log("PIO_BENCH_CKPT not set: the tiny golden model only")
	}
	for _, m := range models {
		b.Run(m.name, func(b *testing.B) {
			up, plain := buildWith(b, m.dir, m.dt, true, false)
			fp, fused := buildWith(b, m.dir, m.dt, false, false)
			ids := make([]int32, m.prefill)
			for i := range ids {
				ids[i] = int32(i*7 + 3)
			}
			// run times one prefill and m.decode decode steps, in wall time
			// and in CPU time.
			run := func(be *cpu.Backend) (prefill, decode, prefillCPU, decodeCPU time.Duration) {
				gen := modeltest.NewGenerator(be, kvcache.NewAllocator(64, 4), 64)
				var s modeltest.Sequence
				defer gen.Release(&s)
				t0, c0 := time.Now(), cpuTime()
				if _, err := gen.Feed(&s, ids); err != nil {
					b.Fatal(err)
				}
				t1, c1 := time.Now(), cpuTime()
				for i := 0; i < m.decode; i++ {
					if _, err := gen.Feed(&s, []int32{int32(i + 1)}); err != nil {
						b.Fatal(err)
					}
				}
				return t1.Sub(t0), time.Since(t1), c1 - c0, cpuTime() - c1
			}
			run(plain) // touch every weight page once
			run(fused)
			var pre, dec, preCPU, decCPU [2]time.Duration // unfused, fused
			i := 0
			for b.Loop() {
				for j := range 2 {
					k := (i + j) % 2
					p, d, pc, dc := run([]*cpu.Backend{plain, fused}[k])
					pre[k] += p
					dec[k] += d
					preCPU[k] += pc
					decCPU[k] += dc
				}
				i++
			}
			rate := func(n int, d time.Duration) float64 { return float64(i*n) / d.Seconds() }
			b.ReportMetric(float64(len(up.Steps)), "steps-unfused")
			b.ReportMetric(float64(len(fp.Steps)), "steps-fused")
			b.ReportMetric(rate(m.prefill, pre[0]), "prefill-tok/s-unfused")
			b.ReportMetric(rate(m.prefill, pre[1]), "prefill-tok/s-fused")
			b.ReportMetric(rate(m.decode, dec[0]), "decode-tok/s-unfused")
			b.ReportMetric(rate(m.decode, dec[1]), "decode-tok/s-fused")
			b.ReportMetric(pre[0].Seconds()/pre[1].Seconds(), "prefill-speedup")
			b.ReportMetric(dec[0].Seconds()/dec[1].Seconds(), "decode-speedup")
			if preCPU[1] > 0 && decCPU[1] > 0 {
				// CPU time per token: what the work costs, whatever else the
				// machine is running.
				b.ReportMetric(preCPU[0].Seconds()/preCPU[1].Seconds(), "prefill-cpu-speedup")
				b.ReportMetric(decCPU[0].Seconds()/decCPU[1].Seconds(), "decode-cpu-speedup")
			}
		})
	}
}
