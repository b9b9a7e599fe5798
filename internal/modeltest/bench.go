// Package modeltest holds test and benchmark helpers shared by the model
// packages. It is for tests only.
package modeltest

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	"github.com/inference-pio/pio/passes"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/kvcache"
)

// BenchDecode measures one-token decode steps of a model at its real widths
// with the depth cut to layers, on random bf16 weights (a table of random
// values tiled over every tensor: the bytes read are what matters). It
// reports tokens/s and the weight bytes one decode token reads: every
// non-expert weight in full, one embedding row, and k/E of each stacked
// expert weight (the chosen experts).
func BenchDecode(b *testing.B, config string, layers, k, experts int) {
	js := regexp.MustCompile(`"num_hidden_layers":\d+`).ReplaceAllString(config, `"num_hidden_layers":`+strconv.Itoa(layers))
	cfg, err := hf.ParseConfig([]byte(js))
	if err != nil {
		b.Fatal(err)
	}
	m, err := models.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	g, err := m.Build(models.BuildOptions{WeightDType: ir.BF16})
	if err != nil {
		b.Fatal(err)
	}
	if err := passes.Run(g, passes.Options{}); err != nil {
		b.Fatal(err)
	}
	p, err := passes.Lower(g)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	table := make([]byte, 1<<20)
	for i := 0; i < len(table); i += 2 {
		f := float32(rng.NormFloat64() * 0.02)
		binary.LittleEndian.PutUint16(table[i:], uint16(math.Float32bits(f)>>16))
	}
	var ws []cpu.Weight
	var perToken float64
	for _, w := range p.Weights {
		n, _ := w.Shape.Elems(0, 0)
		data := make([]byte, n*int64(w.DType.Size()))
		for off := 0; off < len(data); off += len(table) {
			copy(data[off:], table)
		}
		if w.DType == ir.F32 { // small f32 tensors (selection bias): keep them finite
			for i := 0; i+4 <= len(data); i += 4 {
				binary.LittleEndian.PutUint32(data[i:], math.Float32bits(0.01))
			}
		}
		shape := make([]int64, len(w.Shape))
		for i, d := range w.Shape {
			shape[i] = int64(d)
		}
		ws = append(ws, cpu.Weight{DType: w.DType, Shape: shape, Data: data})
		switch {
		case strings.HasSuffix(w.Name, "embed_tokens.weight"):
			perToken += float64(w.Shape.Last()) * float64(w.DType.Size())
		case strings.Contains(w.Name, ".mlp.experts."):
			perToken += float64(len(data)) * float64(k) / float64(experts)
		default:
			perToken += float64(len(data))
		}
	}
	be, err := cpu.New(p, ws, cpu.Options{MaxTokens: 16, NumBlocks: 64, BlockSize: 16, MaxSeqs: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	gen := NewGenerator(be, kvcache.NewAllocator(64, 16), 16)
	var s Sequence
	defer gen.Release(&s)
	if _, err := gen.Feed(&s, []int32{1, 2, 3, 4, 5, 6, 7, 8}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := gen.Feed(&s, []int32{int32(100 + i%500)}); err != nil {
			b.Fatal(err)
		}
		if len(s.Tokens) > 900 {
			b.StopTimer()
			gen.Release(&s)
			if _, err := gen.Feed(&s, []int32{1}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(1/sec, "tok/s")
	b.ReportMetric(perToken/1e6, "MB/token")
	b.ReportMetric(perToken/sec/1e9, "GB/s")
}
