package compiler

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/cpu/kern"
	"github.com/inference-pio/pio/runtime/engine"
)

// Every E4M3 code the encoder may emit decodes (kern.F8) and re-encodes to
// itself; values between codes round to the nearer one; no subnormal codes.
func TestEncodeE4M3(t *testing.T) {
	for b := 0; b < 256; b++ {
		if b&0x78 == 0 && b&7 != 0 || b&0x7f == 0x7f {
			continue // subnormal or NaN
		}
		if got := encodeE4M3(kern.F8(byte(b))); got != byte(b) && !(b == 0x80 && got == 0x80) {
			t.Errorf("encode(decode(%#x)) = %#x", b, got)
		}
	}
	for _, c := range []struct {
		v    float32
		want byte
	}{{1e9, 0x7e}, {-1e9, 0xfe}, {448, 0x7e}, {1.0625, 0x38}, {1.0626, 0x39}, {1.1875, 0x3a}, {0.005, 0}, {0.01, 0x08}, {0.0156, 0x08}} {
		if got := encodeE4M3(c.v); got != c.want {
			t.Errorf("encode(%g) = %#x, want %#x", c.v, got, c.want)
		}
	}
}

// Quantized rows decode (kern.Dequant*) to within half a step of the
// original weights (int4 may clip a few large ones by its scale search).
func TestQuantizeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	const n, k = 3, 128
	w := make([]float32, n*k)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	for _, f := range ir.QuantFormats {
		for _, group := range []int{32, 64, 128} {
			codes, scales, err := quantize(w, n, k, f, group)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]float32, k)
			for row := 0; row < n; row++ {
				s := scales[row*k/group : (row+1)*k/group]
				switch f {
				case "int8":
					q := make([]int8, k)
					for i := range q {
						q[i] = int8(codes[row*k+i])
					}
					kern.DequantQ8(got, q, s, group)
				case "int4":
					kern.DequantQ4(got, codes[row*k/2:(row+1)*k/2], s, group)
				case "fp8":
					kern.DequantF8(got, codes[row*k:(row+1)*k], s, group)
				}
				for i, g := range got {
					x, sc := w[row*k+i], s[i/group]
					tol := float64(sc) * 0.5001 // int: half a step
					switch f {
					case "fp8": // 3 mantissa bits: half an ulp of 2^-3 relative, plus the zero flush
						tol = math.Abs(float64(x))/16 + float64(sc)*0x1p-6
					case "int4": // clipped weights lie within (amax - 7·s) ≤ 1.5·s
						tol = float64(sc) * 1.5
					}
					if d := math.Abs(float64(g - x)); d > tol {
						t.Fatalf("%s/g%d row %d [%d]: %g decodes to %g (|d| %g > %g)", f, group, row, i, x, g, d, tol)
					}
				}
			}
		}
	}
}

// quantAccuracy returns the top-1 agreement and mean KL(ref ‖ q) of the
// next-token distributions of two engines, teacher-forced on tokens (every
// position's logits from one prefill step).
func quantAccuracy(t *testing.T, refPath, qPath string, tokens []int32) (top1, kl float64) {
	t.Helper()
	logits := func(path string) ([]float32, int) {
		e, err := engine.Open(path, engine.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		be, err := cpu.FromEngine(e, cpu.Options{MaxTokens: len(tokens), BlockSize: 16, NumBlocks: (len(tokens) + 15) / 16, MaxSeqs: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer be.Close()
		bt := &runtime.Batch{Tokens: tokens, Seqs: []runtime.SeqView{{}}}
		for i := range tokens {
			bt.Positions = append(bt.Positions, int32(i))
			bt.SeqOfToken = append(bt.SeqOfToken, 0)
			bt.LogitRows = append(bt.LogitRows, int32(i))
			if i%16 == 0 {
				bt.Seqs[0].Blocks = append(bt.Seqs[0].Blocks, int32(i/16))
			}
		}
		if err := be.Step(bt); err != nil {
			t.Fatal(err)
		}
		out, shape, err := be.Output("logits")
		if err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), out...), shape[len(shape)-1]
	}
	ref, v := logits(refPath)
	q, _ := logits(qPath)
	rows := len(ref) / v
	for r := 0; r < rows; r++ {
		a, b := ref[r*v:(r+1)*v], q[r*v:(r+1)*v]
		if argmax(a) == argmax(b) {
			top1++
		}
		kl += klDiv(a, b)
	}
	return top1 / float64(rows), kl / float64(rows)
}

func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// klDiv is KL(softmax(a) ‖ softmax(b)) in nats, in f64.
func klDiv(a, b []float32) float64 {
	lse := func(x []float32) float64 {
		m := math.Inf(-1)
		for _, v := range x {
			m = math.Max(m, float64(v))
		}
		s := 0.0
		for _, v := range x {
			s += math.Exp(float64(v) - m)
		}
		return m + math.Log(s)
	}
	la, lb := lse(a), lse(b)
	kl := 0.0
	for i := range a {
		lp, lq := float64(a[i])-la, float64(b[i])-lb
		kl += math.Exp(lp) * (lp - lq)
	}
	return kl
}

// TestQuantAccuracy builds the golden tiny models as bf16 and with each
// quantization scheme and bounds the top-1 agreement and mean KL of the
// quantized engines against bf16, teacher-forced on 64 random tokens.
// Bounds are about twice the measured distance (printed with -v), so a
// broken kernel or layout (agreement near chance, KL of nats) fails.
func TestQuantAccuracy(t *testing.T) {
	// Measured (group 32): qwen3-a int8 0.953 / 0.0011, fp8 0.750 / 0.022,
	// int4 (int8 lm_head) 0.484 / 0.25; qwen3-b int8 1.000 / 0.00005, fp8 0.969 / 0.0008,
	// int4 0.797 / 0.015 (top-1 / KL nats). qwen3-a's sharper logits make
	// it the more sensitive of the two.
	type bound struct{ minTop1, maxKL float64 }
	bounds := map[string]map[string]bound{
		"qwen3-a": {"int8": {0.85, 0.003}, "fp8": {0.60, 0.05}, "int4": {0.30, 0.6}},
		"qwen3-b": {"int8": {0.95, 0.0002}, "fp8": {0.90, 0.002}, "int4": {0.65, 0.04}},
	}
	dir := t.TempDir()
	for _, model := range []string{"qwen3-a", "qwen3-b"} {
		src := filepath.Join("..", "testdata", "tiny", model)
		ref := filepath.Join(dir, model+"-bf16.pio")
		if _, err := Build(Options{Source: src, Output: ref, DType: ir.BF16}); err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(7, 7))
		tokens := make([]int32, 64)
		for i := range tokens {
			tokens[i] = int32(r.IntN(300)) // both vocabularies hold 300 ids
		}
		for _, f := range ir.QuantFormats {
			out := filepath.Join(dir, model+"-"+f+".pio")
			if _, err := Build(Options{Source: src, Output: out, DType: ir.BF16, Quant: f}); err != nil {
				t.Fatal(err)
			}
			top1, kl := quantAccuracy(t, ref, out, tokens)
			t.Logf("%s %s (group %d): top-1 agreement %.3f, mean KL %.5f nats", model, f, DefaultQuantGroup, top1, kl)
			if b := bounds[model][f]; top1 < b.minTop1 || kl > b.maxKL {
				t.Errorf("%s %s: top-1 %.3f (want ≥ %.2f), KL %.5f (want ≤ %.3f)", model, f, top1, b.minTop1, kl, b.maxKL)
			}
		}
	}
	if _, err := Build(Options{Source: filepath.Join("..", "testdata", "tiny", "qwen3-a"), Output: filepath.Join(dir, "x.pio"), Quant: "int3"}); err == nil {
		t.Error("--quant int3: want an error")
	}
}
