package qwen3next_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/inference-pio/pio/internal/modeltest"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	"github.com/inference-pio/pio/models/qwen3next"
	"github.com/inference-pio/pio/passes"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/kvcache"
)

// benchConfig is Qwen3-Coder-Next at its real widths (hidden 2048; DeltaNet
// 16 key / 32 value heads of 128; gated attention 16/2 heads of 256; MoE
// top-10 of intermediate 512 plus the shared expert) with reduced depth
// (layers 0–2 DeltaNet, layer 3 full attention, the real 3:1 pattern), 16
// experts instead of 512 (a token still runs 10 routed experts and the
// shared one; 512 experts would need 3.2 GB per layer) and a vocabulary of
// 8192 instead of 151936.
const benchConfig = `{"architectures":["Qwen3NextForCausalLM"],"hidden_size":2048,"num_hidden_layers":4,
	"full_attention_interval":4,"num_attention_heads":16,"num_key_value_heads":2,"head_dim":256,
	"partial_rotary_factor":0.25,"rope_theta":5000000,"linear_num_key_heads":16,"linear_num_value_heads":32,
	"linear_key_head_dim":128,"linear_value_head_dim":128,"linear_conv_kernel_dim":4,"num_experts":16,
	"num_experts_per_tok":10,"moe_intermediate_size":512,"shared_expert_intermediate_size":512,
	"norm_topk_prob":true,"decoder_sparse_step":1,"mlp_only_layers":[],"intermediate_size":5120,
	"vocab_size":8192,"rms_norm_eps":1e-6,"tie_word_embeddings":false}`

// randomWeights fills every plan weight with small random values in its
// dtype (bf16 here), quickly.
func randomWeights(p *ir.Plan, seed uint64) []cpu.Weight {
	rng := rand.New(rand.NewPCG(seed, 2))
	var out []cpu.Weight
	for _, pw := range p.Weights {
		n, _ := pw.Shape.Elems(0, 0)
		shape := make([]int64, len(pw.Shape))
		for i, d := range pw.Shape {
			shape[i] = int64(d)
		}
		data := make([]byte, n*int64(pw.DType.Size()))
		for i := int64(0); i < n; i++ {
			f := float32(rng.Float64()*0.06 - 0.03)
			switch pw.DType {
			case ir.BF16:
				binary.LittleEndian.PutUint16(data[2*i:], uint16(math.Float32bits(f)>>16))
			default:
				binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(f))
			}
		}
		out = append(out, cpu.Weight{DType: pw.DType, Shape: shape, Data: data})
	}
	return out
}

// BenchmarkDecode measures one-token decode steps (the recurrent DeltaNet
// form) after a 64-token chunked prefill, on random bf16 weights:
//
//	go test ./models/qwen3next -run '^$' -bench Decode -benchtime 20x
//
// Metrics: tok/s of decode, state_B/seq (this depth) and full_state_B/seq
// (the 48-layer model's 36 DeltaNet layers).
//
// Sub-benchmarks: moe16 is the config above; dense5632 replaces every MoE
// block by a dense SwiGLU of intermediate 5632 = 11 × 512, the multiply-adds
// a token spends in its 10 routed experts plus the shared one, so it shows
// what the MoE layers cost with dense-matmul efficiency.
func BenchmarkDecode(b *testing.B) {
	for _, v := range []struct{ name, patch string }{
		{"moe16", ""},
		{"dense5632", `,"mlp_only_layers":[0,1,2,3],"intermediate_size":5632`},
	} {
		b.Run(v.name, func(b *testing.B) { benchDecode(b, benchConfig[:len(benchConfig)-1]+v.patch+"}") })
	}
}

func benchDecode(b *testing.B, js string) {
	cfg := parse(b, js)
	qc, err := qwen3next.ParseConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	full, err := qwen3next.ParseConfig(parse(b, coderNext))
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
	be, err := cpu.New(p, randomWeights(p, 1), cpu.Options{MaxTokens: 256, BlockSize: 16, NumBlocks: 256, MaxSeqs: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	gen := modeltest.NewGenerator(be, kvcache.NewAllocator(256, 16), 256)
	var s modeltest.Sequence
	prompt := make([]int32, 64)
	for i := range prompt {
		prompt[i] = int32(i * 31 % qc.Vocab)
	}
	start := time.Now()
	if _, err := gen.Feed(&s, prompt); err != nil {
		b.Fatal(err)
	}
	prefill := time.Since(start)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if len(s.Tokens) >= 256*16-1 {
			b.StopTimer()
			gen.Release(&s)
			if _, err := gen.Feed(&s, prompt); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		if _, err := gen.Feed(&s, []int32{int32(i % qc.Vocab)}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
	b.ReportMetric(float64(len(prompt))/prefill.Seconds(), "prefill_tok/s")
	b.ReportMetric(float64(qc.StateBytesPerSequence()), "state_B/seq")
	b.ReportMetric(float64(full.StateBytesPerSequence()), "full_state_B/seq")
	if testing.Verbose() {
		fmt.Printf("plan: %d steps, %d weights, arena %d·T + %d bytes\n", len(p.Steps), len(p.Weights), p.ArenaPerT, p.ArenaFixed)
	}
}
